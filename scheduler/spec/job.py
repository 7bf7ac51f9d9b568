"""Job specifications: the TOML format, its validation, and the JobSpec value type.

A job file (every key documented; unknown keys are errors with a suggestion)::

    name = "bert-pretrain"          # label (optional, default "job")
    command = "python train.py"     # what to run (split into arguments, no shell); stored with the
                                    # plan, used by `submit`. Or run/setup/workdir/file_mounts/
                                    # secrets/num_nodes/checkpoint_dir: see carbonsched.spec.payload
    image = "nvcr.io/nvidia/pytorch:24.10-py3"   # optional: run the command in this container
    env = { HF_HOME = "/data/hf" }  # environment for the command (not secrets: names that look
                                    # like tokens/passwords/keys are refused; the job store,
                                    # user-data and instance metadata are readable)
    gpu = "A100"                    # reference GPU: the type your runtime estimate is for
    gpus = 8                        # GPUs per instance (reference run and candidates)
    hours = 12                      # runtime on gpus x gpu, hours (or "90m", "2d")
    priority = 1                    # batch planning: when capacity is short, higher (1-1000) is placed first

    [window]                        # when the job may run (UTC; ISO 8601)
    earliest_start = "2026-11-28T00:00:00Z"   # default: now
    deadline = "2026-11-30T00:00:00Z"         # must FINISH by then
    max_delay = "24h"               # latest start = earliest_start + max_delay
                                    # neither deadline nor max_delay: start at earliest_start only

    [constraints]
    gpu_types = ["A100", "A100-80GB", "H100"] # acceptable GPU types (default: every GPU with at
                                              # least the reference GPU's memory)
    gpu_counts = [8]                # acceptable GPUs per instance (default: [gpus]); other counts
                                    # scale the runtime (see [power].gpu_scaling_efficiency)
    min_gpu_memory_gb = 40
    providers = ["aws", "gcp"]
    regions = ["aws:eu-*", "gcp:europe-*"]    # glob patterns on region ids (data residency)
    exclude_regions = ["aws:eu-south-*"]
    max_usd_per_hour = 40.0
    max_total_usd = 500.0
    carbon_budget_kg = 100.0        # kgCO2e, operational + embodied
    spot = false                    # also consider spot capacity

    [policy]
    objective = "carbon"            # carbon | cost | time | weighted | lexicographic | pareto
    weights = { carbon = 1.0, cost = 0.5, time = 0.0 }   # for "weighted"
    order = ["carbon", "cost", "time"]                   # for "lexicographic"
    tolerance_pct = 1.0             # lexicographic: differences below this count as ties
    risk = "mean"                   # "p90": rank carbon by the forecast's upper decile (risk-averse)
    min_gain_pct = 0.0              # carbon/cost/time: wait or move region only to save more than this %
    deferral = "robust"             # wait only when the later window's p90 beats starting now; "expected": for any mean gain

    [power]                         # the estimation model, see carbonsched.planning.estimate
    utilisation_factor = 0.84       # mean GPU power / TDP while training
    host_w_per_vcpu = 3.4
    host_w_per_gib = 0.3725
    gpu_scaling_efficiency = 0.9    # throughput kept per doubling of GPU count

    [throughput]                    # optional measured speeds (any unit, same for all GPUs);
    A100 = 1.0                      # must include the reference GPU; others scale by datasheet
    H100 = 2.6

    [baseline]
    region = "aws:us-east-1"        # "default region, now" comparison (default from settings)

    [interruptible]                 # the job can pause and resume from checkpoints: it runs in the
                                    # greenest slots before its deadline (carbonsched.planning.interruptible)
    max_segments = 3                # k: at most this many runs (k - 1 resumes), whole number >= 1
    overhead = "10m"                # per resume: restore time at full power, no progress (default 0)
    overhead_kwh = 0.5              # per resume: extra facility energy, e.g. checkpoint I/O (default 0)

    [spot]                          # restart assumptions when constraints.spot = true
    preemption_rate_per_hour = 0.05 # expected preemptions per running hour (default; an assumption)
    preemption_rates = { "aws" = 0.08, "gcp:europe-*" = 0.03 }  # per provider, region id or glob
    checkpoint_interval = "1h"      # a preemption loses half of this on average (default 1h)
    restart_overhead = "15m"        # re-acquire + load per preemption (default 15m)

    [data]                          # the training data and where it lives
    size_gb = 500                   # moved once to any placement outside home_region
    home_region = "aws:us-east-1"   # required with size_gb
    egress_usd_per_gb = 0.09        # optional: override the provider price table
    transfer_kwh_per_gb = 0.0053    # optional: network energy factor

Spot and data defaults, with their sources, are in ``carbonsched.spec.economics``; the maths in
``carbonsched.planning.estimate``.

What a launched job sees (every launcher): it runs under ``carbonsched track`` (its energy is
measured and comes back into the job store), with ``CARBONSCHED_JOB_ID`` set. The checkpoint
contract of an ``[interruptible]`` job: at the end of each planned segment the agent sends
SIGTERM; the job saves its state where it will find it again (a path of its own, e.g. under
``HF_HOME`` or a mounted volume) and exits within 30 s (it is killed after that). At the next
segment it is started again with the same command and ``CARBONSCHED_RESUME=1`` and
``CARBONSCHED_SEGMENT=k`` (1, 2, ...): it loads the state and goes on. Energy is measured per
segment and summed. A job that finishes early simply exits; the remaining segments are not used.
The local launcher stops and resumes runs; the EC2 and GCE launchers run such a job start to end
(an event says so).
"""
from __future__ import annotations

import difflib
import fnmatch
import math
import shlex
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from carbonsched.errors import JobSpecError
from carbonsched.spec.economics import DataSpec, SpotModel
from carbonsched.spec.payload import PAYLOAD_KEYS, Payload, payload_from_flat
from carbonsched.models import PowerModel
from carbonsched.providers.cloud.launcher import image_reference_error
from carbonsched.spec.tomlfile import number, read_toml, typed_value

from carbonsched.policies import Policy
from carbonsched.errors import UnknownNameError, did_you_mean
from carbonsched.refdata import read_gpus, read_regions, resolve_gpu, resolve_region
from carbonsched.units import iso_utc

PROVIDERS = ("aws", "gcp", "kubernetes")  # kubernetes: the contexts in the settings (carbonsched.kubernetes)
MAX_JOB_HOURS = 8760.0
MAX_PRIORITY = 1000
MAX_NAME_CHARS = 256
# bidirectional embedding/override/isolate controls: they reorder the text printed after them
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")

SCHEMA: dict[str, object] = {
    "name": str, "command": str, "image": str, "env": "strmap", "gpu": str, "gpus": int, "hours": "duration",
    "priority": int,
    "run": str, "setup": str, "workdir": str, "envs": "strmap", "secrets": "strlist", "num_nodes": int,
    "checkpoint_dir": str, "file_mounts": "pathmap",
    "window": {"earliest_start": "time", "deadline": "time", "max_delay": "duration"},
    "constraints": {
        "gpu_types": "strlist", "gpu_counts": "intlist", "min_gpu_memory_gb": "number",
        "providers": "strlist", "regions": "strlist", "exclude_regions": "strlist",
        "max_usd_per_hour": "number", "max_total_usd": "number", "carbon_budget_kg": "number",
        "spot": bool,
    },
    "policy": {"objective": str, "weights": "numbermap", "order": "strlist", "tolerance_pct": "number", "risk": str,
               "deferral": str,
               "min_gain_pct": "number"},
    "power": {"utilisation_factor": "number", "host_w_per_vcpu": "number", "host_w_per_gib": "number",
              "gpu_scaling_efficiency": "number"},
    "throughput": "numbermap",
    "baseline": {"region": str},
    "interruptible": {"max_segments": int, "overhead": "duration", "overhead_kwh": "number"},
    "spot": {"preemption_rate_per_hour": "number", "preemption_rates": "numbermap",
             "checkpoint_interval": "duration", "restart_overhead": "duration"},
    "data": {"size_gb": "number", "home_region": str, "egress_usd_per_gb": "number", "transfer_kwh_per_gb": "number"},
}
REQUIRED = ("gpu", "gpus", "hours")


@dataclass(frozen=True)
class InterruptibleSpec:
    """``[interruptible]``: at most ``max_segments`` runs, each resume costing ``overhead_hours``
    (at full power, no progress) and ``overhead_kwh`` (extra facility energy)."""

    max_segments: int
    overhead_hours: float = 0.0
    overhead_kwh: float = 0.0

    def __post_init__(self):
        if isinstance(self.max_segments, bool) or not isinstance(self.max_segments, int) or self.max_segments < 1:
            raise JobSpecError(f"interruptible.max_segments must be a whole number >= 1, got {self.max_segments!r}")
        number(self.overhead_hours, "interruptible.overhead")
        number(self.overhead_kwh, "interruptible.overhead_kwh")

    def to_dict(self) -> dict:
        return {"max_segments": self.max_segments, "overhead_hours": self.overhead_hours,
                "overhead_kwh": self.overhead_kwh}


@dataclass(frozen=True)
class JobSpec:
    """A validated training job. Times are aware UTC datetimes; durations are hours."""

    gpu: str
    gpus: int
    hours: float
    name: str = "job"
    command: str | None = None
    image: str | None = None
    env: dict[str, str] | None = None
    earliest_start: datetime | None = None
    deadline: datetime | None = None
    max_delay_hours: float | None = None
    gpu_types: tuple[str, ...] | None = None
    gpu_counts: tuple[int, ...] | None = None
    min_gpu_memory_gb: float | None = None
    providers: tuple[str, ...] | None = None
    regions: tuple[str, ...] | None = None
    exclude_regions: tuple[str, ...] = ()
    max_usd_per_hour: float | None = None
    max_total_usd: float | None = None
    carbon_budget_kg: float | None = None
    spot: bool = False
    throughput: dict[str, float] | None = None
    power: PowerModel = field(default_factory=PowerModel)
    policy: Policy = field(default_factory=Policy)
    baseline_region: str | None = None
    interruptible: InterruptibleSpec | None = None
    spot_model: SpotModel = field(default_factory=SpotModel)
    data: DataSpec | None = None
    priority: int = 1  # batch planning: when capacity is short, higher priorities are placed first
    payload: Payload = field(default_factory=Payload)  # run, setup, workdir, mounts, secrets, nodes (spec/payload.py)

    def __post_init__(self):
        if isinstance(self.name, str) and (len(self.name) > MAX_NAME_CHARS or any(
                ord(ch) < 32 or ord(ch) == 127 or ch in _BIDI for ch in self.name)):
            raise JobSpecError(f"name must be printable text of at most {MAX_NAME_CHARS} characters (no control or "
                               f"text-direction characters: it is printed in tables and logs), got {self.name[:40]!r}"
                               + ("..." if len(self.name) > 40 else ""))
        if isinstance(self.gpus, bool) or not isinstance(self.gpus, int) or self.gpus < 1:
            raise JobSpecError(f"gpus must be a whole number >= 1, got {self.gpus!r}")
        if isinstance(self.hours, bool) or not isinstance(self.hours, (int, float)) \
                or not math.isfinite(self.hours) or self.hours <= 0:
            raise JobSpecError(f"hours must be > 0 (a finite number of hours), got {self.hours!r}")
        if self.hours > MAX_JOB_HOURS:
            raise JobSpecError(f"hours must be at most {MAX_JOB_HOURS:.0f} (a year); split longer training into jobs")
        if self.gpus > 1024:
            raise JobSpecError(f"gpus must be at most 1024 per instance, got {self.gpus}")
        if isinstance(self.priority, bool) or not isinstance(self.priority, int) or not 1 <= self.priority <= MAX_PRIORITY:
            raise JobSpecError(f"priority must be a whole number from 1 to {MAX_PRIORITY} (higher: placed first when "
                               f"a batch does not fit), got {self.priority!r}")
        for name in ("max_delay_hours", "min_gpu_memory_gb", "max_usd_per_hour", "max_total_usd", "carbon_budget_kg"):
            value = getattr(self, name)
            if value is not None:
                number(value, name)

    def with_policy(self, policy: Policy) -> "JobSpec":
        return replace(self, policy=policy)

    def to_dict(self) -> dict:
        """A JSON-friendly echo of the job (as in the plan's ``job`` field)."""
        return {
            "name": self.name, "command": self.command, "image": self.image, "env": dict(self.env) if self.env else None,
            "gpu": self.gpu, "gpus": self.gpus, "hours": self.hours, "priority": self.priority,
            "window": {
                "earliest_start": iso_utc(self.earliest_start) if self.earliest_start else None,
                "deadline": iso_utc(self.deadline) if self.deadline else None,
                "max_delay_hours": self.max_delay_hours,
            },
            "constraints": {
                "gpu_types": list(self.gpu_types) if self.gpu_types else None,
                "gpu_counts": list(self.gpu_counts) if self.gpu_counts else None,
                "min_gpu_memory_gb": self.min_gpu_memory_gb,
                "providers": list(self.providers) if self.providers else None,
                "regions": list(self.regions) if self.regions else None,
                "exclude_regions": list(self.exclude_regions),
                "max_usd_per_hour": self.max_usd_per_hour, "max_total_usd": self.max_total_usd,
                "carbon_budget_kg": self.carbon_budget_kg, "spot": self.spot,
            },
            "policy": {"objective": self.policy.objective, "weights": dict(self.policy.weights),
                       "order": list(self.policy.order), "tolerance_pct": self.policy.tolerance_pct,
                       "min_gain_pct": self.policy.min_gain_pct,
                       "risk": self.policy.risk,
                       "deferral": self.policy.deferral},
            "power": self.power.to_dict(),
            "throughput": dict(self.throughput) if self.throughput else None,
            "baseline_region": self.baseline_region,
            "interruptible": self.interruptible.to_dict() if self.interruptible else None,
            "spot_model": self.spot_model.to_dict(),
            "data": self.data.to_dict() if self.data else None,
            **self.payload.to_dict(),
        }


def _where(path: tuple[str, ...]) -> str:
    return ".".join(path)


def _check_keys(table: dict, schema: dict, path: tuple[str, ...]) -> None:
    for key in table:
        if key in schema:
            continue
        elsewhere = [f"{sub}.{key}" for sub, inner in SCHEMA.items() if isinstance(inner, dict) and key in inner]
        if not path and elsewhere:
            hint = f"; it belongs in a table: write it as {elsewhere[0]!r} (under [{elsewhere[0].split('.')[0]}])"
        else:
            close = difflib.get_close_matches(key, list(schema), n=1, cutoff=0.6)
            hint = f"; did you mean {_where(path + (close[0],))!r}?" if close else f"; allowed here: {', '.join(schema)}"
        raise JobSpecError(f"unknown key {_where(path + (key,))!r}{hint}")


def _flatten(raw: dict, schema: dict, path: tuple[str, ...] = ()) -> dict:
    """Type-check ``raw`` against ``schema``; returns {dotted key: value}."""
    if not isinstance(raw, dict):
        raise JobSpecError(f"{_where(path) or 'job'} must be a table")
    _check_keys(raw, schema, path)
    out = {}
    for key, value in raw.items():
        kind = schema[key]
        if isinstance(kind, dict):
            if not isinstance(value, dict):
                elsewhere = [f"{sub}.{key}" for sub, inner in SCHEMA.items() if isinstance(inner, dict) and key in inner]
                hint = f" (did you mean {elsewhere[0]!r}?)" if elsewhere and not path else ""
                raise JobSpecError(f"{_where(path + (key,))} must be a table ([{key}]), got {value!r}{hint}")
            out.update(_flatten(value, kind, path + (key,)))
        else:
            out[_where(path + (key,))] = typed_value(value, kind, _where(path + (key,)))
    return out


def read_job_file(path: str | Path) -> dict:
    """Raw TOML of a job file; JobSpecError with the position when it is malformed."""
    return read_toml(path, hint="pass a TOML file or use flags (--gpu, --gpus, --hours)")


def merge(base: dict, override: dict) -> dict:
    """Deep merge of raw job tables (``override`` wins), used for file + CLI flags."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def job_from_echo(echo: dict) -> JobSpec:
    """The job back from its echo (``JobSpec.to_dict()``, what the store and the plan keep), through
    the same validation as a job file: the agent re-plans a stored job with it."""
    def kept(d: dict | None, keys=None) -> dict:
        return {k: v for k, v in (d or {}).items() if v is not None and v != [] and (keys is None or k in keys)}

    w, sm, inter = echo.get("window") or {}, echo.get("spot_model") or {}, echo.get("interruptible")
    raw = {**kept({k: echo.get(k) for k in ("name", "command", "image", "env", "gpu", "gpus", "hours", "priority",
                                             "throughput")}),
           "data": kept(echo.get("data")),
           "window": kept({"earliest_start": w.get("earliest_start"), "deadline": w.get("deadline"),
                           "max_delay": w.get("max_delay_hours")}),
           "constraints": kept(echo.get("constraints"), SCHEMA["constraints"]),
           # an echo without a deferral was stored when "expected" was the default: it keeps that meaning
           "policy": {"deferral": "expected", **kept(echo.get("policy"), SCHEMA["policy"])},
           "power": kept(echo.get("power"), SCHEMA["power"]),
           "spot": kept({"preemption_rate_per_hour": sm.get("preemption_rate_per_hour"),
                         "preemption_rates": sm.get("preemption_rates") or None,
                         "checkpoint_interval": sm.get("checkpoint_interval_hours"),
                         "restart_overhead": sm.get("restart_overhead_hours")})}
    raw.update({k: echo[k] for k in PAYLOAD_KEYS if echo.get(k)})  # stored absolute: no base needed
    if echo.get("baseline_region"):
        raw["baseline"] = {"region": echo["baseline_region"]}
    if inter:
        raw["interruptible"] = kept({"max_segments": inter.get("max_segments"), "overhead": inter.get("overhead_hours"),
                                     "overhead_kwh": inter.get("overhead_kwh")})
    return job_from_dict({k: v for k, v in raw.items() if v != {}})


def job_from_dict(raw: dict, base: Path | None = None) -> JobSpec:
    """Validate a raw job table (from TOML or flags) into a JobSpec; JobSpecError when wrong.
    ``base``: the job file's folder (relative workdir and mount paths start there)."""
    flat = _flatten(raw, SCHEMA)
    if "envs" in flat:  # SkyPilot's name for env
        if "env" in flat:
            raise JobSpecError("give env or envs (SkyPilot's name for it), not both")
        flat["env"] = flat.pop("envs")
    missing = [k for k in REQUIRED if k not in flat]
    if missing:
        raise JobSpecError(
            f"job lacks {', '.join(missing)}: say which GPU the runtime is for and how long it takes, "
            "e.g. gpu = \"A100\", gpus = 8, hours = 12 (or --gpu A100 --gpus 8 --hours 12)"
        )
    policy_kwargs = {}
    for key, attr in (("policy.objective", "objective"), ("policy.weights", "weights"),
                      ("policy.order", "order"), ("policy.tolerance_pct", "tolerance_pct"), ("policy.risk", "risk"),
                      ("policy.min_gain_pct", "min_gain_pct"), ("policy.deferral", "deferral")):
        if key in flat:
            policy_kwargs[attr] = flat[key]
    if "weights" in policy_kwargs:
        policy_kwargs["weights"] = {"carbon": 0.0, "cost": 0.0, "time": 0.0, **policy_kwargs["weights"]}
    power_kwargs = {k.split(".", 1)[1]: v for k, v in flat.items() if k.startswith("power.")}
    if "image" in flat and image_reference_error(flat["image"]):
        raise JobSpecError(image_reference_error(flat["image"]))
    if "command" in flat:
        try:
            shlex.split(flat["command"])
        except ValueError as exc:  # the command itself is not repeated: it could hold a secret
            raise JobSpecError(f"command cannot be split into arguments ({exc}); check its quoting") from None
    job = JobSpec(
        gpu=flat["gpu"], gpus=flat["gpus"], hours=flat["hours"],
        name=flat.get("name", "job"), command=flat.get("command"), image=flat.get("image"), env=flat.get("env"),
        earliest_start=flat.get("window.earliest_start"), deadline=flat.get("window.deadline"),
        max_delay_hours=flat.get("window.max_delay"),
        gpu_types=flat.get("constraints.gpu_types"), gpu_counts=flat.get("constraints.gpu_counts"),
        min_gpu_memory_gb=flat.get("constraints.min_gpu_memory_gb"),
        providers=flat.get("constraints.providers"), regions=flat.get("constraints.regions"),
        exclude_regions=flat.get("constraints.exclude_regions", ()),
        max_usd_per_hour=flat.get("constraints.max_usd_per_hour"),
        max_total_usd=flat.get("constraints.max_total_usd"),
        carbon_budget_kg=flat.get("constraints.carbon_budget_kg"),
        spot=flat.get("constraints.spot", False),
        throughput=flat.get("throughput"),
        power=PowerModel(**power_kwargs),
        policy=Policy(**policy_kwargs),
        baseline_region=flat.get("baseline.region"),
        interruptible=_interruptible(flat), spot_model=_spot_model(flat), data=_data(flat),
        priority=flat.get("priority", 1), payload=payload_from_flat(flat, base),
    )
    return resolve_job(job)


def _interruptible(flat: dict) -> InterruptibleSpec | None:
    keys = [k for k in flat if k.startswith("interruptible.")]
    if not keys:
        return None
    if "interruptible.max_segments" not in flat:
        raise JobSpecError("[interruptible] needs max_segments (how many runs the job may be split into), e.g. max_segments = 3")
    return InterruptibleSpec(max_segments=flat["interruptible.max_segments"],
                             overhead_hours=flat.get("interruptible.overhead", 0.0),
                             overhead_kwh=flat.get("interruptible.overhead_kwh", 0.0))


def _spot_model(flat: dict) -> SpotModel:
    kwargs = {attr: flat[key] for key, attr in (
        ("spot.preemption_rate_per_hour", "preemption_rate_per_hour"), ("spot.preemption_rates", "preemption_rates"),
        ("spot.checkpoint_interval", "checkpoint_interval_hours"), ("spot.restart_overhead", "restart_overhead_hours"))
        if key in flat}
    return SpotModel(**kwargs)


def _data(flat: dict) -> DataSpec | None:
    keys = [k for k in flat if k.startswith("data.")]
    if not keys:
        return None
    missing = [k for k in ("data.size_gb", "data.home_region") if k not in flat]
    if missing:
        raise JobSpecError(f"[data] needs {' and '.join(missing)}: the dataset size and the region it lives in, "
                           "e.g. size_gb = 500, home_region = \"aws:us-east-1\"")
    return DataSpec(size_gb=flat["data.size_gb"], home_region=flat["data.home_region"],
                    egress_usd_per_gb=flat.get("data.egress_usd_per_gb"),
                    transfer_kwh_per_gb=flat.get("data.transfer_kwh_per_gb", DataSpec.transfer_kwh_per_gb))


def _names(value, what: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = (value,)
    if not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise JobSpecError(f"{what} must be a non-empty list of names, got {value!r}")
    return tuple(v.strip() for v in value)


def resolve_job(job: JobSpec) -> JobSpec:
    """Resolve and check the names in a JobSpec against the embedded data (GPU aliases, region
    patterns, providers, throughput units). ``job_from_dict`` and ``plan`` both call it, so a
    JobSpec built in Python gets the same checks as a job file."""
    gpus = read_gpus()
    ref = resolve_gpu(job.gpu, gpus)
    gpu_types = _names(job.gpu_types, "constraints.gpu_types")
    if gpu_types is not None:
        gpu_types = tuple(dict.fromkeys(resolve_gpu(g, gpus).name for g in gpu_types))
    counts = job.gpu_counts
    if counts is not None:
        counts = tuple(sorted({typed_value(c, int, "constraints.gpu_counts") for c in ((counts,) if isinstance(counts, int) else counts)}))
    providers = _names(job.providers, "constraints.providers")
    if providers is not None:
        providers = tuple(p.lower() for p in providers)
        for p in providers:
            if p not in PROVIDERS:
                raise JobSpecError(f"constraints.providers: unknown provider {p!r}; known: {', '.join(PROVIDERS)}")
    region_ids = sorted(read_regions())
    patterns = {}
    for key, value in (("constraints.regions", job.regions), ("constraints.exclude_regions", job.exclude_regions or None)):
        pats = _names(value, key)
        if pats is not None:
            pats = tuple(p.lower() for p in pats)
            for pattern in pats:
                if not fnmatch.filter(region_ids, pattern):
                    hint = did_you_mean(pattern, region_ids) or "; patterns look like 'aws:eu-*' or 'gcp:europe-west4'"
                    raise JobSpecError(f"{key}: {pattern!r} matches no known region{hint} (see `carbonsched regions`)")
        patterns[key] = pats
    throughput = job.throughput
    if throughput is not None:
        throughput = {resolve_gpu(k, gpus).name: number(v, f"throughput.{k}", positive=True) for k, v in throughput.items()}
        if ref.name not in throughput:
            raise JobSpecError(f"throughput must include the reference GPU {ref.name} (the speed your hours were measured at)")
    window = {}
    for name in ("earliest_start", "deadline"):
        t = getattr(job, name)
        if t is not None and (not isinstance(t, datetime) or t.tzinfo is None):
            raise JobSpecError(f"window.{name} must be a timezone-aware datetime (UTC), got {t!r}")
        if t is not None:  # start hours are UTC hours: 08:30+05:30 is 03:00Z, not a start at :30
            window[name] = t.astimezone(timezone.utc)
    if job.earliest_start and job.deadline and job.deadline <= job.earliest_start:
        raise JobSpecError("window.deadline must be after window.earliest_start")
    baseline = resolve_region(job.baseline_region).region_id if job.baseline_region else None
    data = job.data
    if data is not None:
        try:
            data = replace(data, home_region=resolve_region(data.home_region).region_id)
        except UnknownNameError as exc:
            raise JobSpecError(f"data.home_region: {exc}") from None
    for key in job.spot_model.preemption_rates:
        k = key.lower()
        if k not in PROVIDERS and not fnmatch.filter(region_ids, k):
            hint = did_you_mean(k, list(PROVIDERS) + region_ids) or "; keys are a provider ('aws'), a region id or a glob ('gcp:europe-*')"
            raise JobSpecError(f"spot.preemption_rates: {key!r} matches no provider or region{hint}")
    spot_model = replace(job.spot_model, preemption_rates={k.lower(): v for k, v in job.spot_model.preemption_rates.items()})
    return replace(job, data=data, spot_model=spot_model, gpu=ref.name, gpu_types=gpu_types, gpu_counts=counts, providers=providers,
                   regions=patterns["constraints.regions"], exclude_regions=patterns["constraints.exclude_regions"] or (),
                   throughput=throughput, baseline_region=baseline, **window)


def load_job(path: str | Path, overrides: dict | None = None) -> JobSpec:
    """Read, merge CLI overrides into, and validate a job file."""
    return job_from_dict(merge(read_job_file(path), overrides or {}), base=Path(path).resolve().parent)
