"""Batch files: many jobs and their shared capacity, for ``carbonsched plan --batch``.

Either one TOML file::

    [capacity]                     # GPUs in use per hour, per region and GPU type
    default = 64                   # every other (region, GPU) pair; omit for unlimited
    "aws:eu-north-1" = { H100 = 16 }
    "gcp:us-west1" = { H100 = 8, A100 = 16 }

    [[job]]                        # each table is a job file's content (see carbonsched.spec.job)
    name = "a"
    priority = 10                  # placed before priority-1 jobs when not all fit (default 1)
    gpu = "A100"
    gpus = 8
    hours = 12
    [job.window]
    max_delay = "24h"

or a directory: every ``*.toml`` in it is one job file, except ``capacity.toml``, which holds the
``[capacity]`` table.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

from carbonsched.errors import JobSpecError, UnknownNameError
from carbonsched.refdata import read_gpus, read_regions, resolve_gpu, resolve_region
from carbonsched.spec.job import JobSpec, job_from_dict, read_job_file
from carbonsched.spec.tomlfile import read_toml


def _capacity(raw, where: str) -> tuple[dict, float | None]:
    if raw is None:
        return {}, None
    if not isinstance(raw, dict):
        raise JobSpecError(f"{where}: [capacity] must be a table")
    raw = dict(raw)
    default = raw.pop("default", None)
    regions, gpus = read_regions(), read_gpus()
    out, key_of = {}, {}
    for region, value in raw.items():
        if not isinstance(value, dict):
            raise JobSpecError(f"{where}: capacity.{region!r} must be a table of GPU type = count, e.g. {{ H100 = 16 }}")
        try:  # a key naming no known region or GPU would silently never apply
            region_id = resolve_region(region, regions).region_id
            cells = {}
            for gpu, n in value.items():
                name = resolve_gpu(gpu, gpus).name
                if name in cells:  # two spellings of one cell: which count is meant?
                    raise JobSpecError(f"{where}: capacity.{region}: {key_of[region, name]!r} and {gpu!r} are both "
                                       f"{name}; give it once")
                cells[name], key_of[region, name] = n, gpu
        except UnknownNameError as exc:
            raise JobSpecError(f"{where}: capacity.{region}: {exc}") from None
        if region_id in out:
            first = next(r for r in raw if r != region and resolve_region(r, regions).region_id == region_id)
            raise JobSpecError(f"{where}: capacity: {first!r} and {region!r} are both {region_id}; give it once")
        out[region_id] = cells
    return out, default


def read_batch(path: str | Path) -> tuple[list[JobSpec], dict, float | None]:
    """(jobs, capacity {region_id: {gpu: n}}, default capacity) from a batch file or directory."""
    path = Path(path)
    if path.is_dir():
        jobs = []
        for f in _job_files(path):
            try:
                raw = read_job_file(f)
                jobs.append(job_from_dict({"name": f.stem, **raw} if isinstance(raw, dict) else raw,
                                          base=f.resolve().parent))
            except (JobSpecError, UnknownNameError) as exc:
                raise type(exc)(f"{f.name}: {exc}") from None
        _unique(jobs, str(path), "(a job file without a name takes its file's)")
        cap_file = path / "capacity.toml"
        capacity, default = _capacity(_capacity_file(cap_file), str(cap_file))
        return jobs, capacity, default
    return batch_from_dict(_batch_toml(path), str(path))


def read_batch_raw(path: str | Path) -> dict:
    """The batch as one table, ``{"job": [job tables], "capacity": {...}}`` (what ``batch_from_dict``
    and the server's ``POST /v1/plan/batch`` take), from a batch file or directory, unvalidated."""
    path = Path(path)
    if not path.is_dir():
        return _batch_toml(path)
    raw: dict = {"job": [{"name": f.stem, **read_job_file(f)} for f in _job_files(path)]}
    cap = _capacity_file(path / "capacity.toml")
    return {**raw, "capacity": cap} if cap is not None else raw


def _batch_toml(path: Path) -> dict:
    return read_toml(path, "batch file", hint="pass a batch TOML file or a directory of job files")


def _job_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.glob("*.toml") if p.name != "capacity.toml")
    if not files:
        raise JobSpecError(f"{folder} holds no job files (*.toml)")
    return files


def _capacity_file(cap_file: Path) -> dict | None:
    """A folder's capacity.toml: its one [capacity] table (None without the file); anything else
    would silently leave the capacity unlimited."""
    if not cap_file.exists():
        return None
    raw = read_job_file(cap_file)
    if set(raw) != {"capacity"}:
        raise JobSpecError(f"{cap_file}: expected one [capacity] table (e.g. [capacity] default = 16), "
                           f"got {sorted(raw) or 'nothing'}")
    return raw["capacity"]


def batch_from_dict(raw: dict, where: str = "batch") -> tuple[list[JobSpec], dict, float | None]:
    """(jobs, capacity, default capacity) from a batch file's content (``[[job]]`` -> ``job``, a list
    of job tables; ``capacity``): the TOML file and the server's JSON body share this."""
    if not isinstance(raw, dict):
        raise JobSpecError(f"{where}: expected a table with [capacity] and [[job]]")
    unknown = set(raw) - {"job", "capacity"}
    if unknown:
        raise JobSpecError(f"{where}: unknown top-level key(s) {sorted(unknown)}; a batch file has [capacity] and [[job]] tables")
    entries = raw.get("job")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise JobSpecError(f"{where}: no [[job]] tables; write one [[job]] table per job")
    jobs = []
    seen: dict[str, JobSpec] = {}  # a queue repeats few shapes: entries equal but for the name parse once
    for i, entry in enumerate(entries, 1):
        name = entry.get("name")
        valid = isinstance(name, str) and name.strip()  # else job_from_dict's own error
        key = repr(sorted((k, v) for k, v in entry.items() if k != "name")) if valid else None
        try:
            if key in seen:
                jobs.append(replace(seen[key], name=name.strip()))  # as typed_value gives it
                continue
            jobs.append(job_from_dict(entry))
            if key is not None:
                seen[key] = jobs[-1]
        except (JobSpecError, UnknownNameError) as exc:  # an unknown GPU or region too: which job?
            raise type(exc)(f"{where}: job {i} ({_shown(entry.get('name', 'unnamed'))}): {exc}") from None
    _unique(jobs, where)
    capacity, default = _capacity(raw.get("capacity"), where)
    return jobs, capacity, default


def _shown(name) -> str:
    """A job's name for an error message: as written when it is short printable text, else its repr, cut."""
    text = str(name)
    return text if text.isprintable() and len(text) <= 60 else repr(text[:40]) + ("..." if len(text) > 40 else "")


def _unique(jobs: list[JobSpec], where: str, hint: str = "") -> None:
    """Job names identify jobs in the plan, its unplaced list and the store: one each."""
    dupes = sorted(n for n, k in Counter(j.name for j in jobs).items() if k > 1)
    if dupes:
        raise JobSpecError(f"{where}: job names must be unique within a batch; repeated: {', '.join(dupes)}"
                           + (f" {hint}" if hint else ""))
