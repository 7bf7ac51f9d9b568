"""Policies as code: ``policy.toml``, its validation, and applying it to a job.

A policy file (every key documented; unknown keys are errors with a suggestion)::

    version = 1                       # required: the policy-file format version (this reader: 1)
    name = "green-eu"                 # label (optional)
    objective = "weighted"            # carbon | cost | time | weighted | lexicographic | pareto
    weights = { carbon = 1.0, cost = 0.3 }   # for "weighted" (missing terms are 0)
    order = ["carbon", "cost"]        # for "lexicographic"
    tolerance_pct = 1.0               # lexicographic ties
    risk = "mean"                     # or "p90"
    deferral = "robust"               # wait only for gains beyond the forecast's error (the default; or "expected")
    residency = ["aws:eu-*", "gcp:europe-*"]  # data residency: jobs run only in matching regions
    max_delay = "24h"                 # jobs may wait at most this long for a greener window

    [constraints]                     # organisation-wide limits
    providers = ["aws", "gcp"]
    exclude_regions = ["aws:eu-south-*"]
    gpu_types = ["A100", "H100"]
    min_gpu_memory_gb = 40
    max_usd_per_hour = 80.0
    max_total_usd = 2000.0
    carbon_budget_kg = 200.0
    spot = true                       # whether spot capacity may be used (replaces the job's choice)

    [spot]                            # preemption assumptions (see carbonsched.spec.economics)
    preemption_rate_per_hour = 0.05
    preemption_rates = { "aws" = 0.08 }

How a policy combines with a job (``apply_policy``): the objective keys given replace the job's;
constraints take the stricter of job and policy (lower maxima, higher minima, the intersection
of providers, GPU types and of the regions allowed by the job and by ``residency``, the union of
excluded regions); ``max_delay`` caps the job's (or sets it when the job has none); ``spot``
replaces the job's; ``[spot]`` rates fill in where the job gives none.

Enforcement: ``carbonsched plan``, ``plan --batch`` and ``submit`` take ``--policy FILE``; without it
they use the settings' ``policy = "PATH"`` (config file, relative to its folder) or
``CARBONSCHED_POLICY``, and the server enforces its settings' policy on ``POST /v1/plan`` and
``POST /v1/jobs``. There is no bypass flag: an organisation sets the policy once; ``--policy``
can only name another file. The job is planned as ``apply_policy`` leaves it
(``carbonsched.planning.policy_check.enforce_policy``) and the plan records the file
(``policy_file``: name, version, path, sha256 of its bytes, the changes). Refused with
``PolicyViolationError`` (exit 2; ``submit`` then stores nothing), naming the rule and what would
satisfy it:

* the job's own choices leave nothing under the policy: its regions outside ``residency``, its
  providers or GPU types disjoint from the policy's;
* no placement is feasible under the policy while the job alone has one: the rules that the
  job's best placement without the policy breaks are named, with the value that would admit it.

A job's ``spot = true`` only allows spot capacity, it never requires it: a policy with
``spot = false`` narrows such a job to on-demand rather than refusing it.
"""
from __future__ import annotations

import difflib
import fnmatch
import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path

from carbonsched.errors import JobSpecError, PolicyFileError, PolicyViolationError
from carbonsched.spec.job import JobSpec
from carbonsched.spec.tomlfile import read_toml_bytes, typed_value
from carbonsched.policies import Policy
from carbonsched.refdata import read_regions
from carbonsched.spec.job import resolve_job

POLICY_VERSION = 1
SCHEMA: dict[str, object] = {
    "version": int, "name": str, "objective": str, "weights": "numbermap", "order": "strlist",
    "tolerance_pct": "number", "risk": str, "min_gain_pct": "number", "deferral": str, "residency": "strlist", "max_delay": "duration",
    "constraints": {"providers": "strlist", "exclude_regions": "strlist", "gpu_types": "strlist",
                    "min_gpu_memory_gb": "number", "max_usd_per_hour": "number", "max_total_usd": "number",
                    "carbon_budget_kg": "number", "spot": bool},
    "spot": {"preemption_rate_per_hour": "number", "preemption_rates": "numbermap"},
}
REQUIRED = ("version",)
_POLICY_KEYS = ("objective", "weights", "order", "tolerance_pct", "risk", "min_gain_pct", "deferral")


@dataclass(frozen=True)
class PolicyFile:
    """A validated policy file: ``values`` maps dotted keys (``constraints.spot``) to typed values;
    ``path`` and ``sha256`` (of the file's bytes) when it was read from a file (``load_policy``)."""

    version: int
    name: str = "policy"
    values: dict = field(default_factory=dict)
    path: str | None = None
    sha256: str | None = None

    def get(self, key: str, default=None):
        return self.values.get(key, default)

    def provenance(self, changes: list[str] | tuple[str, ...] = ()) -> dict:
        """What a plan records about the policy it was made under (``policy_file`` in ``plan --json``)."""
        return {"name": self.name, "version": self.version, "path": self.path, "sha256": self.sha256,
                "changes": list(changes)}

    def to_dict(self) -> dict:
        out: dict = {"version": self.version, "name": self.name}
        for key, value in sorted(self.values.items()):
            table = out
            *parents, leaf = key.split(".")
            for part in parents:
                table = table.setdefault(part, {})
            table[leaf] = list(value) if isinstance(value, tuple) else value
        return out


def _flatten(raw: dict, schema: dict, path: tuple[str, ...] = ()) -> dict:
    out = {}
    for key, value in raw.items():
        where = ".".join(path + (key,))
        if key not in schema:
            close = difflib.get_close_matches(key, list(schema), n=1, cutoff=0.6)
            hint = f"; did you mean {'.'.join(path + (close[0],))!r}?" if close else f"; allowed here: {', '.join(schema)}"
            raise PolicyFileError(f"policy: unknown key {where!r}{hint}")
        kind = schema[key]
        if isinstance(kind, dict):
            if not isinstance(value, dict):
                raise PolicyFileError(f"policy: {where} must be a table ([{key}]), got {value!r}")
            out.update(_flatten(value, kind, path + (key,)))
        else:
            try:
                out[where] = typed_value(value, kind, where)
            except JobSpecError as exc:
                raise PolicyFileError(f"policy: {exc}") from None
    return out


def policy_from_dict(raw: dict) -> PolicyFile:
    """Validate a raw policy table; PolicyFileError when wrong."""
    if not isinstance(raw, dict):
        raise PolicyFileError("policy must be a table")
    flat = _flatten(raw, SCHEMA)
    if "version" not in flat:
        raise PolicyFileError(f"policy lacks version: start the file with version = {POLICY_VERSION}")
    if flat["version"] != POLICY_VERSION:
        raise PolicyFileError(f"policy version {flat['version']} is not supported (this carbonsched reads version "
                              f"{POLICY_VERSION}); upgrade carbonsched or rewrite the file for version {POLICY_VERSION}")

    try:  # check objective, weights, order, risk now, not when the policy is first applied
        Policy(**_policy_kwargs(flat, Policy()))
    except JobSpecError as exc:
        raise PolicyFileError(f"policy: {exc}") from None
    except Exception as exc:  # Policy raises UserInputError subclasses
        raise PolicyFileError(f"policy: {exc}") from None
    values = {k: v for k, v in flat.items() if k not in ("version", "name")}
    return PolicyFile(version=flat["version"], name=flat.get("name", "policy"), values=values)


def load_policy(path: str | Path) -> PolicyFile:
    """Read and validate a policy TOML file; PolicyFileError naming the file when it is missing or wrong."""
    raw, data = read_toml_bytes(path, "policy file", PolicyFileError, hint="pass a policy TOML file")
    try:
        pf = policy_from_dict(raw)
    except PolicyFileError as exc:
        raise PolicyFileError(f"policy file {str(path)!r}: {str(exc).removeprefix('policy: ')}") from None
    return replace(pf, path=str(Path(path).resolve()), sha256=hashlib.sha256(data).hexdigest())


def _policy_kwargs(flat: dict, current) -> dict:
    kw = {"objective": current.objective, "weights": dict(current.weights), "order": tuple(current.order),
          "tolerance_pct": current.tolerance_pct, "risk": current.risk, "min_gain_pct": current.min_gain_pct,
          "deferral": current.deferral}
    for key in _POLICY_KEYS:
        if key in flat:
            kw[key] = flat[key]
    if "weights" in flat:
        kw["weights"] = {"carbon": 0.0, "cost": 0.0, "time": 0.0, **flat["weights"]}
    return kw


def _stricter(a, b, fn):
    return b if a is None else a if b is None else fn(a, b)


def apply_policy(job: JobSpec, pf: PolicyFile) -> tuple[JobSpec, list[str]]:
    """The job under the policy (see the module docstring) and what changed, in words."""
    job = resolve_job(job)
    changes: list[str] = []
    policy = Policy(**_policy_kwargs(pf.values, job.policy))
    for key in _POLICY_KEYS:
        old, new = getattr(job.policy, key), getattr(policy, key)
        if old != new:
            changes.append(f"{key}: {_show(old)} -> {_show(new)}")
    kw: dict = {"policy": policy}
    for key, fn in (("max_usd_per_hour", min), ("max_total_usd", min), ("carbon_budget_kg", min),
                    ("min_gpu_memory_gb", max)):
        new = _stricter(getattr(job, key), pf.get(f"constraints.{key}"), fn)
        if new != getattr(job, key):
            kw[key] = new
            changes.append(f"{key}: {_show(getattr(job, key))} -> {_show(new)}")
    for key in ("providers", "gpu_types"):
        mine, theirs = getattr(job, key), pf.get(f"constraints.{key}")
        if theirs is None:
            continue
        theirs = tuple(t.lower() for t in theirs) if key == "providers" else theirs
        new = theirs if mine is None else tuple(x for x in mine if x in theirs)
        if not new:
            flag = "--provider" if key == "providers" else "--accept-gpu"
            raise PolicyViolationError(
                f"policy {pf.name!r}: rule constraints.{key} allows {', '.join(theirs)} but the job only "
                f"{', '.join(mine)}: nothing is left; to satisfy it, allow one of {', '.join(theirs)} in the job "
                f"(constraints.{key} / {flag})", rules=(f"constraints.{key}",))
        if new != mine:
            kw[key] = new
            changes.append(f"{key}: {_show(mine)} -> {_show(new)}")
    exclude = pf.get("constraints.exclude_regions")
    if exclude:
        new = tuple(dict.fromkeys(tuple(job.exclude_regions) + tuple(e.lower() for e in exclude)))
        if new != tuple(job.exclude_regions):
            kw["exclude_regions"] = new
            changes.append(f"exclude_regions: {_show(job.exclude_regions)} -> {_show(new)}")
    residency = pf.get("residency")
    if residency:
        residency = tuple(r.lower() for r in residency)
        if job.regions is None:
            new = residency
        else:  # intersection of two pattern lists, as concrete region ids
            ids = sorted(read_regions())
            new = tuple(r for r in ids if any(fnmatch.fnmatchcase(r, p) for p in job.regions)
                        and any(fnmatch.fnmatchcase(r, p) for p in residency))
            if not new:
                raise PolicyViolationError(
                    f"policy {pf.name!r}: rule residency allows regions matching {', '.join(residency)} but the "
                    f"job's regions {', '.join(job.regions)} have no region in common with it; to satisfy it, allow "
                    f"a region matching {' or '.join(residency)} in the job (constraints.regions / --region)",
                    rules=("residency",))
        kw["regions"] = new
        changes.append(f"regions: {_show(job.regions)} -> {_show(new)} (residency)")
    if pf.get("max_delay") is not None:
        new = _stricter(job.max_delay_hours, pf.get("max_delay"), min)
        if new != job.max_delay_hours:
            kw["max_delay_hours"] = new
            changes.append(f"max_delay_hours: {_show(job.max_delay_hours)} -> {new:g}")
    if pf.get("constraints.spot") is not None and pf.get("constraints.spot") != job.spot:
        kw["spot"] = pf.get("constraints.spot")
        changes.append(f"spot: {job.spot} -> {kw['spot']}")
    sm = job.spot_model
    rates = {**{k.lower(): v for k, v in (pf.get("spot.preemption_rates") or {}).items()}, **sm.preemption_rates}
    default_rate = type(sm)().preemption_rate_per_hour
    rate = pf.get("spot.preemption_rate_per_hour") if sm.preemption_rate_per_hour == default_rate \
        and pf.get("spot.preemption_rate_per_hour") is not None else sm.preemption_rate_per_hour
    if rates != sm.preemption_rates or rate != sm.preemption_rate_per_hour:
        kw["spot_model"] = replace(sm, preemption_rates=rates, preemption_rate_per_hour=rate)
        changes.append("spot preemption rates from the policy")
    try:
        return resolve_job(replace(job, **kw)), changes
    except JobSpecError as exc:
        raise PolicyFileError(f"the policy makes the job invalid: {exc}") from None


def _show(v) -> str:
    if v is None:
        return "none"
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(map(str, v)) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}={w:g}" for k, w in v.items()) + "}"
    return f"{v:g}" if isinstance(v, float) else str(v)
