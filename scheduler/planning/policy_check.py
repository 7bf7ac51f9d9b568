"""What an organisation's policy file changes in a plan, and why (``carbonsched policy check``),
and enforcing it on plans, batches, submits and stored placements.

``check_policy(job, policy_file, now=...)`` plans the job as it is and under the policy
(``spec.policy_file.apply_policy``), and names the policy constraints the unconstrained best
placement violates: the ones that bind.

``enforce_policy(job, pf, now=...)`` is the plan ``plan``/``submit``/the server use when a policy
is set: the job is planned as ``apply_policy`` leaves it, and the plan records the file
(``Plan.policy_file``). Refusals are ``PolicyViolationError`` (exit 2) naming the rule and what
would satisfy it: the job's own choices leave nothing under the policy (from ``apply_policy``), or
no placement is feasible under the policy while the job alone has one (the rules the job's best
placement without the policy breaks). ``policy_batch.enforce_policy_batch`` does the same for a
batch (apart, so that a single plan under a policy does not load the batch solver).

``placement_violations(placement, job_spec, pf, now)`` checks a stored placement (a dict of
``plan.to_dict()["placements"]``) against a policy, e.g. before an agent launches a job that was
planned under an older policy. One implementation (``violations`` over ``Rules``) serves it,
``binding_constraints`` and the refusals.
"""
from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field, replace
from datetime import datetime

from carbonsched.errors import InfeasibleError, PolicyViolationError
from carbonsched.models import Plan
from carbonsched.refdata import read_gpus
from carbonsched.spec.job import JobSpec
from carbonsched.spec.policy_file import PolicyFile, apply_policy
from carbonsched.units import hours_between, parse_utc
from carbonsched.planning import plan as plan_job

# a rule's name in messages: the job's keys (binding_constraints), or the policy file's keys
JOB_RULE_NAMES = {"regions": "regions/residency", "exclude_regions": "exclude_regions", "providers": "providers",
                  "gpu_types": "gpu_types", "min_gpu_memory_gb": "min_gpu_memory_gb",
                  "max_usd_per_hour": "max_usd_per_hour", "max_total_usd": "max_total_usd",
                  "carbon_budget_kg": "carbon_budget_kg", "max_delay_hours": "max_delay", "spot": "spot"}
POLICY_RULE_NAMES = {**{k: f"constraints.{k}" for k in JOB_RULE_NAMES}, "regions": "residency",
                     "max_delay_hours": "max_delay"}


@dataclass(frozen=True)
class Rules:
    """Placement rules in one shape, from a job (``job_rules``) or from a policy file alone
    (``policy_rules``): what ``violations`` checks a placement against. None: no such rule."""

    names: dict = field(default_factory=lambda: dict(JOB_RULE_NAMES))
    regions: tuple[str, ...] | None = None  # region-id globs
    exclude_regions: tuple[str, ...] = ()
    providers: tuple[str, ...] | None = None
    gpu_types: tuple[str, ...] | None = None
    min_gpu_memory_gb: float | None = None
    max_usd_per_hour: float | None = None
    max_total_usd: float | None = None
    carbon_budget_kg: float | None = None
    max_delay_hours: float | None = None
    earliest_start: datetime | None = None  # where max_delay counts from (at the latest ``now``)
    spot: bool | None = None  # False: spot capacity is not allowed


def job_rules(job: JobSpec) -> Rules:
    return Rules(names=dict(JOB_RULE_NAMES), regions=job.regions, exclude_regions=tuple(job.exclude_regions),
                 providers=job.providers, gpu_types=job.gpu_types, min_gpu_memory_gb=job.min_gpu_memory_gb,
                 max_usd_per_hour=job.max_usd_per_hour, max_total_usd=job.max_total_usd,
                 carbon_budget_kg=job.carbon_budget_kg, max_delay_hours=job.max_delay_hours,
                 earliest_start=job.earliest_start, spot=job.spot)


def policy_rules(pf: PolicyFile, earliest_start: datetime | None = None) -> Rules:
    """The policy's own rules (not combined with any job's); ``earliest_start``: the job's window."""
    def lower(key):
        value = pf.get(key)
        return tuple(v.lower() for v in value) if value else None

    return Rules(names=dict(POLICY_RULE_NAMES), regions=lower("residency"),
                 exclude_regions=lower("constraints.exclude_regions") or (), providers=lower("constraints.providers"),
                 gpu_types=pf.get("constraints.gpu_types"), min_gpu_memory_gb=pf.get("constraints.min_gpu_memory_gb"),
                 max_usd_per_hour=pf.get("constraints.max_usd_per_hour"),
                 max_total_usd=pf.get("constraints.max_total_usd"),
                 carbon_budget_kg=pf.get("constraints.carbon_budget_kg"), max_delay_hours=pf.get("max_delay"),
                 earliest_start=earliest_start, spot=pf.get("constraints.spot"))


@dataclass(frozen=True)
class Violation:
    """One rule a placement breaks: ``rule`` (its name), ``detail`` (how), ``fix`` (what would admit it)."""

    rule: str
    detail: str
    fix: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.detail}"


@dataclass(frozen=True)
class _Facts:
    region_id: str
    provider: str
    gpu: str
    market: str
    price_usd_per_hour: float
    cost_usd: float
    kg_co2e: float
    start: datetime


def _facts(p) -> _Facts:
    """The fields the rules look at, from a ``Placement`` or its dict (``placement_to_dict``)."""
    if isinstance(p, dict):
        return _Facts(region_id=p["region_id"], provider=p["provider"], gpu=p["gpu"], market=p.get("market", "on-demand"),
                      price_usd_per_hour=float(p["price_usd_per_hour"]), cost_usd=float(p["cost_usd"]),
                      kg_co2e=float(p["kg_co2e"]), start=parse_utc(p["start"], "placement start"))
    return _Facts(region_id=p.region_id, provider=p.provider, gpu=p.gpu, market=p.market,
                  price_usd_per_hour=p.price_usd_per_hour, cost_usd=p.cost_usd, kg_co2e=p.kg_co2e, start=p.start)


def _some(items, k: int = 6) -> str:
    items = list(items)
    return ", ".join(items[:k]) + (f" (+{len(items) - k} more)" if len(items) > k else "")


def _up(x: float, digits: int = 2) -> str:
    """``x`` rounded up: a limit raised to it admits ``x``."""
    scale = 10 ** digits
    return f"{math.ceil(x * scale - 1e-9) / scale:.{digits}f}"


def violations(p, rules: Rules, now: datetime) -> list[Violation]:
    """The ``rules`` that placement ``p`` (a ``Placement`` or its dict) breaks, with what would admit it."""
    f, name, out = _facts(p), rules.names, []
    if rules.regions and not any(fnmatch.fnmatchcase(f.region_id, r) for r in rules.regions):
        out.append(Violation(name["regions"], f"{f.region_id} is not allowed (only {_some(rules.regions)})",
                             f"add {f.region_id} to {name['regions']}, or relax the job's own constraints so that it "
                             f"fits a region matching {_some(rules.regions)}"))
    hit = next((r for r in rules.exclude_regions if fnmatch.fnmatchcase(f.region_id, r)), None)
    if hit is not None:
        out.append(Violation(name["exclude_regions"], f"{f.region_id} is excluded (by {hit})",
                             f"remove {hit} from {name['exclude_regions']}, or relax the job's own constraints so "
                             "that it fits another region"))
    if rules.providers and f.provider not in rules.providers:
        out.append(Violation(name["providers"], f"{f.provider} is not allowed (only {_some(rules.providers)})",
                             f"add {f.provider} to {name['providers']}"))
    if rules.gpu_types and f.gpu not in rules.gpu_types:
        out.append(Violation(name["gpu_types"], f"{f.gpu} is not allowed (only {_some(rules.gpu_types)})",
                             f"add {f.gpu} to {name['gpu_types']}, or let the job run on {_some(rules.gpu_types)} "
                             "(--accept-gpu)"))
    if rules.min_gpu_memory_gb is not None:
        gpu = read_gpus().get(f.gpu)
        if gpu is not None and gpu.memory_gb < rules.min_gpu_memory_gb:
            out.append(Violation(name["min_gpu_memory_gb"], f"{f.gpu} has {gpu.memory_gb:g} GB",
                                 f"lower {name['min_gpu_memory_gb']} to {gpu.memory_gb:g}, or let the job run on a "
                                 f"GPU with at least {rules.min_gpu_memory_gb:g} GB"))
    if rules.max_usd_per_hour is not None and f.price_usd_per_hour > rules.max_usd_per_hour:
        out.append(Violation(name["max_usd_per_hour"], f"{f.price_usd_per_hour:.2f} > {rules.max_usd_per_hour:g}",
                             f"raise {name['max_usd_per_hour']} to at least {_up(f.price_usd_per_hour)}, or ask "
                             "for fewer or cheaper GPUs"))
    if rules.max_total_usd is not None and f.cost_usd > rules.max_total_usd:
        out.append(Violation(name["max_total_usd"], f"{f.cost_usd:.2f} > {rules.max_total_usd:g}",
                             f"raise {name['max_total_usd']} to at least {_up(f.cost_usd)}, or plan a shorter or "
                             "cheaper run"))
    if rules.carbon_budget_kg is not None and f.kg_co2e > rules.carbon_budget_kg:
        out.append(Violation(name["carbon_budget_kg"], f"{f.kg_co2e:.2f} > {rules.carbon_budget_kg:g}",
                             f"raise {name['carbon_budget_kg']} to at least {_up(f.kg_co2e)}"))
    if rules.max_delay_hours is not None:
        delay = hours_between(max(rules.earliest_start or now, now), f.start)
        if delay > rules.max_delay_hours + 1e-9:
            out.append(Violation(name["max_delay_hours"],
                                 f"starts {delay:.1f} h after the window opens > {rules.max_delay_hours:g} h",
                                 f"raise {name['max_delay_hours']} to at least {_up(delay, 1)}h"))
    if f.market == "spot" and rules.spot is False:
        out.append(Violation(name["spot"], "spot capacity is not allowed",
                             f"set {name['spot']} = true, or plan on on-demand capacity"))
    return out


def binding_constraints(p, job: JobSpec, now) -> list[str]:
    """The constraints of ``job`` that placement ``p`` (planned without them) violates, in words:
    the ones that bind, i.e. that moved the best placement."""
    return [str(v) for v in violations(p, job_rules(job), now)]


def placement_violations(placement: dict, job_spec: dict | None, pf: PolicyFile, now: datetime) -> list[str]:
    """The rules of policy ``pf`` that a stored placement breaks, in words (``"residency: aws:us-east-1
    is not allowed (only aws:eu-*)"``); [] when it complies. Pure.

    ``placement``: one of ``plan.to_dict()["placements"]`` (keys region_id, provider, gpu, market,
    price_usd_per_hour, cost_usd, kg_co2e, start); ``job_spec``: the stored ``JobSpec.to_dict()`` (its
    ``window.earliest_start`` is where ``max_delay`` counts from, else ``now``). Only the policy's own
    rules are checked, not the job's: the job's were checked when it was planned."""
    window = (job_spec or {}).get("window") or {}
    opens = parse_utc(window["earliest_start"], "window.earliest_start") if window.get("earliest_start") else None
    return [str(v) for v in violations(placement, policy_rules(pf, opens), now)]


def _describe(p) -> str:
    return (f"{p.region_id} {p.instance_type} ({p.gpu_count}x{p.gpu}{', spot' if p.market == 'spot' else ''}) "
            f"from {p.start:%Y-%m-%d %H:%M} UTC")


def refusal(job: JobSpec, applied: JobSpec, pf: PolicyFile, exc: InfeasibleError, *, now: datetime,
            **plan_kw) -> Exception:
    """Why ``applied`` (``job`` under ``pf``) has no feasible placement, as the error to raise: the
    job's own InfeasibleError when it has none even without the policy, else a PolicyViolationError
    naming the rules the job's best placement without the policy breaks, and what would admit it."""
    try:
        base = plan_job(job, now=now, **{**plan_kw, "top": 1})
    except InfeasibleError as own:
        return own
    found = violations(base.best, policy_rules(pf, job.earliest_start), now) or \
        violations(base.best, job_rules(applied), now)
    if not found:  # e.g. the policy's spot preemption rates made every spot run too long or too dear
        return PolicyViolationError(f"policy {pf.name!r} leaves job {job.name!r} no feasible placement: {exc}")
    broken = "; ".join(f"{v.rule}: {v.detail} (to satisfy it: {v.fix})" for v in found)
    return PolicyViolationError(
        f"policy {pf.name!r} leaves job {job.name!r} no feasible placement; without the policy the best would be "
        f"{_describe(base.best)}, which breaks {broken}", rules=tuple(v.rule for v in found))


def enforce_policy(job: JobSpec, pf: PolicyFile | None, *, now: datetime, settings=None, offerings_source=None,
                   forecast_source=None, top: int | None = 10) -> Plan:
    """The plan of ``job`` under policy ``pf`` (as ``apply_policy`` leaves the job), recording the
    policy (``Plan.policy_file``: name, version, path, sha256, changes); ``pf`` None: the plain plan.

    PolicyViolationError (exit 2) when the job's own choices leave nothing under the policy, or when
    the policy leaves no feasible placement that the job alone would have (the message names the
    rules and what would satisfy them); the job's own InfeasibleError when it has none at all."""
    kw = dict(settings=settings, offerings_source=offerings_source, forecast_source=forecast_source)
    if pf is None:
        return plan_job(job, now=now, top=top, **kw)
    applied, changes = apply_policy(job, pf)
    try:
        result = plan_job(applied, now=now, top=top, **kw)
    except InfeasibleError as exc:
        raise refusal(job, applied, pf, exc, now=now, **kw) from None
    return replace(result, policy_file=pf.provenance(changes))


def check_policy(job: JobSpec, pf: PolicyFile, *, now, settings=None, offerings_source=None,
                 forecast_source=None, top: int = 5) -> dict:
    """The plan of ``job`` as it is vs under ``pf``: what changed and why (JSON-friendly dict).

    Keys: ``schema_version`` (1), ``policy`` (the file), ``changes`` (settings the policy changed), ``default`` and
    ``under_policy`` (``{"plan": Plan.to_dict() | None, "error": str | None}``), ``binding``
    (policy constraints the default best placement violates), ``delta`` (best kg, USD, end),
    ``summary`` (one sentence). ``feasible`` is False when the policy leaves no placement.
    """
    applied, changes = apply_policy(job, pf)
    kw = dict(now=now, settings=settings, offerings_source=offerings_source, forecast_source=forecast_source, top=top)
    results = {}
    for label, j in (("default", job), ("under_policy", applied)):
        try:
            results[label] = (plan_job(j, **kw), None)
        except InfeasibleError as exc:
            results[label] = (None, str(exc))
    (base, base_err), (pol, pol_err) = results["default"], results["under_policy"]
    binding = binding_constraints(base.best, applied, now) if base is not None else []
    delta, summary = None, ""
    if base is not None and pol is not None:
        a, b = base.best, pol.best
        delta = {"kg_co2e": b.kg_co2e - a.kg_co2e, "cost_usd": b.cost_usd - a.cost_usd,
                 "end_hours": (b.end - a.end).total_seconds() / 3600,
                 "same_placement": (a.region_id, a.instance_type, a.market, a.start) ==
                                   (b.region_id, b.instance_type, b.market, b.start)}
        why = ("; binding: " + "; ".join(binding)) if binding else \
            ("; no constraint binds: the objective changed the ranking" if not delta["same_placement"] else "")
        summary = (f"best {a.region_id} {a.instance_type} -> {b.region_id} {b.instance_type}: "
                   f"{delta['kg_co2e']:+.2f} kgCO2e, {delta['cost_usd']:+.2f} USD{why}")
    elif pol is None:
        summary = "the policy leaves no feasible placement: " + (pol_err or "")
    else:
        summary = "the job alone is infeasible; under the policy it is feasible"
    return {"schema_version": 1, "policy": pf.to_dict(), "changes": changes,
            "default": {"plan": base.to_dict() if base else None, "error": base_err},
            "under_policy": {"plan": pol.to_dict() if pol else None, "error": pol_err},
            "binding": binding, "delta": delta, "summary": summary, "feasible": pol is not None}
