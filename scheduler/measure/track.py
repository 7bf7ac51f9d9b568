"""Measure what a command really used: ``carbonsched track -- CMD ...`` as a library.

``run_tracked(cmd, ...)`` starts CMD as a child process, forwards SIGINT/SIGTERM/SIGHUP/SIGUSR1/
SIGUSR2 to it, samples energy readers every ``interval_s`` while it runs, and returns a
``Measurement`` with the child's exit status (a child killed by signal N reports ``128 + N``, as
shells do; a command that cannot be found reports 127, one that cannot be executed 126).

Energy comes from the readers in ``measure/energy.py`` (NVML, RAPL, else the power model); the
record says which method produced each number.

Measurement record (``Measurement.to_dict()``, JSON, ``schema_version`` 1; see ``RECORD_FIELDS``).
"""
from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from contextlib import contextmanager
from typing import Callable, Sequence

from carbonsched.errors import CarbonschedError, TrackError
from carbonsched.fileio import write_json_atomic
from carbonsched.measure.energy import CPU_CHAIN, CPU_READERS, GPU_CHAIN, GPU_READERS, J_PER_KWH, open_first
from carbonsched.models import PowerModel
from carbonsched.units import iso_utc, parse_utc
from carbonsched import __version__
from carbonsched.errors import UserInputError
from carbonsched.run.store import MeasurementExistsError, Store, UnknownJobError
from carbonsched.settings import resolve_settings
from carbonsched.record import SCHEMA, SCHEMA_VERSION

FORWARDED_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2")

RECORD_FIELDS = {
    "schema": "always 'carbonsched.measurement'",
    "schema_version": "1",
    "job_id": "job id given with --job (else $CARBONSCHED_JOB_ID, set by launchers), or null",
    "command": "argv of the tracked command",
    "exit_code": "the command's exit status (128+N when killed by signal N; 127 not found)",
    "signals_forwarded": "names of the signals passed on to the command, in order",
    "started_at / ended_at": "ISO 8601 UTC",
    "wall_seconds": "elapsed time (monotonic clock)",
    "host": "{hostname, vcpus, memory_gib}",
    "region_id": "where it ran (--region), or null",
    "plan_file": "the plan JSON given with --plan, or null",
    "gpu": "{method, energy_kwh, devices: [{index, name, method, energy_kwh, mean_power_w, tdp_w, "
           "utilisation_mean_pct, utilisation_max_pct, samples, missed_samples}]}",
    "cpu": "{method, energy_kwh, domains}",
    "memory": "{method, energy_kwh, memory_gib}",
    "it_energy_kwh": "gpu + cpu + memory (before PUE)",
    "hourly": "[{hour, it_energy_kwh}] energy per UTC hour (sums to it_energy_kwh)",
    "power_model": "the PowerModel behind any modelled part",
    "sample_interval_s / samples": "sampling period and count",
    "warnings": "fallbacks taken and anything else to know",
    "ran_on": "added by the agent for a launched job: {launcher, where ('this machine' or 'cloud'), region_id, "
              "instance_type, market, gpu, gpu_count, gpu_source ('nvml' or 'placement'), resource_id}",
    "segments": "for a run in segments (interruptible jobs): [{started_at, ended_at, wall_seconds, it_energy_kwh, "
                "exit_code}], the sums above cover them all",
}


def hourly_split(started_at: datetime, samples: list[tuple[float, float]]) -> list[dict]:
    """Energy per UTC hour from cumulative samples ``(t_s, joules)`` (t_s from the start).

    Between two samples energy is taken as linear in time, so an interval crossing an hour
    boundary is split by the time on each side.
    """
    out: dict[datetime, float] = {}
    for (t0, e0), (t1, e1) in zip(samples, samples[1:]):
        if t1 <= t0:
            continue
        a, b = started_at + timedelta(seconds=t0), started_at + timedelta(seconds=t1)
        rate = (e1 - e0) / (t1 - t0)
        while a < b:
            hour = a.replace(minute=0, second=0, microsecond=0)
            nxt = min(b, hour + timedelta(hours=1))
            out[hour] = out.get(hour, 0.0) + rate * (nxt - a).total_seconds()
            a = nxt
    if not out:
        out[started_at.replace(minute=0, second=0, microsecond=0)] = samples[-1][1] if samples else 0.0
    return [{"hour": iso_utc(h), "it_energy_kwh": j / J_PER_KWH} for h, j in sorted(out.items())]


@dataclass(frozen=True)
class Measurement:
    """What one tracked run used. ``to_dict()`` is the measurement record (module docstring)."""

    command: tuple[str, ...]
    exit_code: int
    started_at: datetime
    ended_at: datetime
    wall_seconds: float
    gpu: dict
    cpu: dict
    memory: dict
    hourly: tuple[dict, ...]
    host: dict
    power_model: dict
    sample_interval_s: float
    samples: int
    signals_forwarded: tuple[str, ...] = ()
    job_id: str | None = None
    region_id: str | None = None
    plan_file: str | None = None
    warnings: tuple[str, ...] = field(default=())

    @property
    def it_energy_kwh(self) -> float:
        return self.gpu["energy_kwh"] + self.cpu["energy_kwh"] + self.memory["energy_kwh"]

    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "carbonsched_version": __version__,
            "job_id": self.job_id, "command": list(self.command), "exit_code": self.exit_code,
            "signals_forwarded": list(self.signals_forwarded),
            "started_at": iso_utc(self.started_at), "ended_at": iso_utc(self.ended_at),
            "wall_seconds": self.wall_seconds, "host": dict(self.host), "region_id": self.region_id,
            "plan_file": self.plan_file, "gpu": self.gpu, "cpu": self.cpu, "memory": self.memory,
            "it_energy_kwh": self.it_energy_kwh, "hourly": list(self.hourly), "power_model": self.power_model,
            "sample_interval_s": self.sample_interval_s, "samples": self.samples, "warnings": list(self.warnings),
        }


def memory_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return 0.0


def _terminal_already_delivers(signum: int) -> bool:
    """True for SIGINT when we are the terminal's foreground process group: Ctrl-C reaches the whole
    group (the child included), so forwarding would deliver it twice. A SIGINT sent to the tracker
    alone (``kill -INT``, no terminal) is forwarded."""
    if signum != signal.SIGINT:
        return False
    try:
        return os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


class Sampler:
    """The sampling shared by ``run_tracked`` (a child process) and ``measure.inprocess.Tracker``
    (a block of this process): opens the first working reader of each chain, keeps cumulative
    samples ``(t_s, joules)`` (GPU + CPU + modelled memory), and closes into the record's parts.

    ``start()`` takes the first sample, ``take()`` one more (any thread, one at a time),
    ``stop()`` the last; then ``measurement(...)`` builds the ``Measurement``.
    """

    def __init__(self, *, gpu_chain: Sequence = GPU_CHAIN, cpu_chain: Sequence = CPU_CHAIN,
                 power: PowerModel | None = None, gpu: str | None = None, gpus: int = 0, vcpus: float | None = None,
                 memory_gib_: float | None = None, rapl_root: str | Path = "/sys/class/powercap", nvml=None,
                 monotonic: Callable[[], float] = time.monotonic):
        self.power = power or PowerModel()
        self.monotonic = monotonic
        self.warnings: list[str] = []
        kw = dict(power=self.power, gpu=gpu, gpus=gpus, vcpus=vcpus, rapl_root=rapl_root, nvml=nvml)
        self.gpu_reader = open_first(gpu_chain, GPU_READERS, self.warnings, "GPU", **kw)
        self.cpu_reader = open_first(cpu_chain, CPU_READERS, self.warnings, "CPU", **kw)
        self.mem_gib = memory_gib() if memory_gib_ is None else memory_gib_
        if self.gpu_reader.method == "model" and not gpus:
            self.warnings.append("GPU: no GPU measured and none given (--gpu/--gpus): GPU energy is 0")
        self.samples: list[tuple[float, float]] = []
        self.t0: float | None = None
        self.wall_seconds: float | None = None
        self._parts: dict | None = None

    def start(self) -> float:
        self.t0 = self.monotonic()
        self.take(self.t0)
        return self.t0

    def take(self, t_abs: float | None = None) -> float:
        """One cumulative sample at monotonic time ``t_abs`` (default: now); its joules."""
        t_abs = self.monotonic() if t_abs is None else t_abs
        t = t_abs - self.t0
        joules = (self.gpu_reader.sample(t_abs) + self.cpu_reader.sample(t_abs)
                  + self.mem_gib * self.power.host_w_per_gib * t)
        self.samples.append((t, joules))
        return joules

    def stop(self) -> None:
        t_end = self.monotonic()
        self.take(t_end)
        self.wall_seconds = wall = t_end - self.t0
        g, c = self.gpu_reader.close(t_end), self.cpu_reader.close(t_end)
        self.warnings.extend(_missed_sample_warnings(g["devices"]))
        self._parts = _energy_parts(g, c, self.mem_gib * self.power.host_w_per_gib * wall, self.mem_gib)

    def measurement(self, started_at: datetime, *, command: Sequence[str], exit_code: int, interval_s: float,
                    signals_forwarded: Sequence[str] = (), job_id: str | None = None, region_id: str | None = None,
                    plan_file: str | None = None, warnings: Sequence[str] = ()) -> Measurement:
        """The ``Measurement`` of a stopped sampler that started at wall-clock ``started_at``."""
        wall = self.wall_seconds
        return Measurement(
            command=tuple(command), exit_code=exit_code, started_at=started_at,
            ended_at=started_at + timedelta(seconds=wall), wall_seconds=wall, **self._parts,
            hourly=tuple(hourly_split(started_at, self.samples)),
            host={"hostname": socket.gethostname(), "vcpus": os.cpu_count(), "memory_gib": round(self.mem_gib, 3)},
            power_model=self.power.to_dict(), sample_interval_s=interval_s, samples=len(self.samples),
            signals_forwarded=tuple(signals_forwarded), job_id=job_id, region_id=region_id, plan_file=plan_file,
            warnings=tuple(self.warnings) + tuple(warnings),
        )


def run_tracked(cmd: Sequence[str], *, gpu_chain: Sequence = GPU_CHAIN, cpu_chain: Sequence = CPU_CHAIN,
                power: PowerModel | None = None, gpu: str | None = None, gpus: int = 0, vcpus: float | None = None,
                memory_gib_: float | None = None, interval_s: float = 1.0, job_id: str | None = None,
                region_id: str | None = None, plan_file: str | None = None,
                clock: Callable[[], datetime] | None = None, monotonic: Callable[[], float] = time.monotonic,
                rapl_root: str | Path = "/sys/class/powercap", nvml=None, on_start: Callable | None = None) -> Measurement:
    """Run ``cmd`` to completion under measurement (see the module docstring).

    ``gpu_chain``/``cpu_chain`` hold reader names (``GPU_READERS``/``CPU_READERS``) or ready
    readers (tests inject fakes here). ``gpu``/``gpus`` name the hardware for the model fallback.
    ``clock`` gives the wall-clock start (UTC); durations come from ``monotonic``.
    """
    check_args(cmd, interval_s)
    clock = clock or (lambda: datetime.now(timezone.utc))
    sampler = Sampler(gpu_chain=gpu_chain, cpu_chain=cpu_chain, power=power, gpu=gpu, gpus=gpus, vcpus=vcpus,
                      memory_gib_=memory_gib_, rapl_root=rapl_root, nvml=nvml, monotonic=monotonic)
    started_at = clock()
    forwarded: list[str] = []
    sampler.start()
    proc = _start(cmd)
    with _forwarding_signals(proc, forwarded):
        if on_start:
            on_start(proc)
        while True:
            try:
                proc.wait(timeout=interval_s)
                break
            except subprocess.TimeoutExpired:
                sampler.take()
    sampler.stop()
    code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
    return sampler.measurement(started_at, command=cmd, exit_code=code, interval_s=interval_s,
                               signals_forwarded=forwarded, job_id=job_id, region_id=region_id, plan_file=plan_file)


def check_args(cmd: Sequence[str], interval_s: float) -> None:
    """TrackError (exit 2) for an empty command or a sampling period that is not a positive number."""
    if not cmd:
        raise TrackError("nothing to track: give the command after --, e.g. carbonsched track -- python train.py",
                         exit_code=2)
    if not (interval_s > 0 and math.isfinite(interval_s)):
        raise TrackError(f"--interval must be a positive number of seconds, got {interval_s!r}", exit_code=2)


def _energy_parts(g: dict, c: dict, mem_j: float, mem_gib: float) -> dict:
    """The record's gpu, cpu and memory sections from the readers' summaries (joules -> kWh)."""
    return {
        "gpu": {"method": g["method"], "energy_kwh": g["energy_j"] / J_PER_KWH, "devices": g["devices"]},
        "cpu": {"method": c["method"], "energy_kwh": c["energy_j"] / J_PER_KWH, "domains": c.get("domains", []),
                **({"vcpus": c["vcpus"]} if "vcpus" in c else {})},
        "memory": {"method": "model", "energy_kwh": mem_j / J_PER_KWH, "memory_gib": mem_gib},
    }


def _start(cmd: Sequence[str]) -> subprocess.Popen:
    """The child process (no shell); TrackError with the shell's exit codes when it cannot start."""
    try:
        return subprocess.Popen(list(cmd))
    except FileNotFoundError:
        raise TrackError(f"command not found: {cmd[0]}", exit_code=127) from None
    except PermissionError:
        raise TrackError(f"command not executable: {cmd[0]}", exit_code=126) from None


@contextmanager
def _forwarding_signals(proc: subprocess.Popen, forwarded: list[str]):
    """While inside, FORWARDED_SIGNALS go to ``proc`` (unless the terminal already sent them to
    its process group) and their names are appended to ``forwarded``; handlers restored after."""
    def forward(signum, _frame):
        if not _terminal_already_delivers(signum):
            try:
                proc.send_signal(signum)
            except ProcessLookupError:
                pass
        forwarded.append(signal.Signals(signum).name)

    previous = {}
    for name in FORWARDED_SIGNALS:
        sig = getattr(signal, name, None)
        if sig is not None:
            previous[sig] = signal.signal(sig, forward)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _missed_sample_warnings(devices: list[dict]) -> list[str]:
    return [f"GPU {d['index']} ({d['name']}): {d['missed_samples']} NVML reads failed; their samples are missing "
            "(the counter keeps its last value, sampled power is integrated across the gap)"
            for d in devices if d.get("missed_samples")]


# -- records on disk and in the job store -----------------------------------------------------
def open_store(settings=None):
    """The job store (``$CARBONSCHED_HOME/jobs.sqlite``), which keeps measurements by job id."""
    return Store.for_settings(settings or resolve_settings())


def measurement_dir(settings) -> Path:
    return Path(settings.home) / "measurements"


def write_record(record: dict, path: str | Path) -> Path:
    return write_json_atomic(path, record, indent=2)


def check_destination(settings, *, job_id: str | None = None, out: str | Path | None = None, replace: bool = False,
                      store=None) -> tuple[str | None, Store | None]:
    """Before a tracked run, where ``save_record`` will keep its record, checked: a run whose record
    could not be kept is not made (UserInputError, nothing run). ``job_id`` is resolved once: a
    unique prefix of a stored job's id becomes that id (said on stderr); any other label, an
    ambiguous prefix included, stays as it is; a job that has a measurement already is refused unless
    ``replace``. Returns (the job id to save under, the open job store, or None when it is
    unusable: the record will go to the measurements folder)."""
    problems = []
    if job_id:
        try:
            store = store or open_store(settings)
            job_id = store.get(job_id).id
        except UnknownJobError:  # AmbiguousJobError too: several jobs start so, it names none of them
            pass  # a label used only with `track --job`
        except CarbonschedError as exc:
            store, problems = None, [f"the job store is unusable ({exc})"]
        if store is not None and not replace:
            try:
                store.check_measurement_absent(job_id)
            except MeasurementExistsError:
                raise
            except CarbonschedError as exc:
                store, problems = None, [f"the job store is unusable ({exc})"]
    kept = bool(job_id) and store is not None
    if out:
        why = f"{out} is a folder" if Path(out).is_dir() else _unwritable(Path(out).parent)
        if why:
            problems.append(f"--out {out}: {why}")
        kept = kept or not why
    if problems or not (job_id or out):
        fallback = measurement_dir(settings)
        why = _unwritable(fallback)
        if why and not kept:
            raise UserInputError("the run's record would have nowhere to go: " + "; ".join(problems + [
                f"the measurements folder {fallback}: {why}"]) + "; nothing was run. Point CARBONSCHED_HOME (or home "
                "in the config file) at a writable folder, or --out at a writable file")
    return job_id, store


def _unwritable(folder: Path) -> str | None:
    """Why a record cannot be written into ``folder`` (created when missing, as a write would), or None."""
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        return f"cannot be written to ({exc.strerror or exc})"
    return None


def save_record(record: dict, settings, *, job_id: str | None = None, out: str | Path | None = None,
                store=None, replace: bool = False) -> tuple[list, list[str]]:
    """Keep a run's record where ``carbonsched track`` keeps it: ``out`` (a JSON file) and/or the
    job store under ``job_id`` (a measurement already there is replaced only with ``replace``);
    with neither, ``$CARBONSCHED_HOME/measurements/<start>.json``. The run happened, so its
    record is never lost: an unwritable ``out``, an unusable store or a measurement already there
    falls back to the measurements folder, with a note (``check_destination`` made sure before
    the run that some place can take it; when none could after all, OSError, and the caller
    still holds the record). Returns (where it went, notes)."""
    stamp = parse_utc(record["started_at"]).strftime("%Y%m%dT%H%M%SZ")
    written: list = []
    problems: list[str] = []
    name = f"{stamp}.json"
    if out:
        try:
            written.append(write_record(record, out))
        except OSError as exc:
            problems.append(f"cannot write {out} ({exc.strerror})")
    if job_id:
        try:
            (store or open_store(settings)).save_measurement(job_id, record, replace=replace)
            written.append(f"job store ({job_id})")
        except MeasurementExistsError as exc:  # stored meanwhile (another track of the same job)
            problems.append(str(exc))
            name = f"{job_id}-{stamp}.json"
        except CarbonschedError as exc:
            problems.append(f"the job store is unusable ({exc})")
            name = f"{job_id}.json"
    if problems or not (job_id or out):
        fallback = measurement_dir(settings) / name
        try:
            written.append(write_record(record, fallback))
        except OSError as exc:
            if not written:
                raise
            problems.append(f"cannot write {fallback} either ({exc.strerror})")
        else:
            problems = [f"{p}; record kept in {fallback}" for p in problems]
    return written, problems


def read_record(path: str | Path) -> dict:
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserInputError(f"measurement file {path} does not exist; write one with `carbonsched track --out`") from None
    except json.JSONDecodeError as exc:
        raise UserInputError(f"measurement file {path} is not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise UserInputError(f"{path} is not a carbonsched measurement record (no schema {SCHEMA!r})")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise UserInputError(f"{path}: measurement schema_version {doc.get('schema_version')!r} is not supported "
                             f"(this carbonsched reads {SCHEMA_VERSION})")
    return doc


def load_job_record(job_id: str, settings, store=None) -> dict:
    """The record of ``job_id`` from the job store (``store`` or the settings' one)."""
    return (store or open_store(settings)).load_measurement(job_id)


def past_records(settings, store=None) -> list[dict]:
    """Every measurement in the job store plus the loose records in the measurement directory
    (runs tracked without --job), for calibration."""
    out = list((store or open_store(settings)).list_measurements())
    for p in sorted(measurement_dir(settings).glob("*.json")):
        try:
            out.append(read_record(p))
        except (UserInputError, OSError, UnicodeDecodeError):  # a foreign or broken file is skipped
            continue
    return out
