"""What an organisation's policy file changes in a plan, and why (``carbonsched policy check``).

``check_policy(job, policy_file, now=...)`` plans the job as it is and under the policy
(``spec.policy_file.apply_policy``), and names the policy constraints the unconstrained best
placement violates: the ones that bind.
"""
from __future__ import annotations

import fnmatch

from carbonsched.errors import InfeasibleError
from carbonsched.refdata import read_gpus
from carbonsched.spec.job import JobSpec
from carbonsched.spec.policy_file import PolicyFile, apply_policy
from carbonsched.units import hours_between
from carbonsched.planning import plan as plan_job


def binding_constraints(p, job: JobSpec, now) -> list[str]:
    """The constraints of ``job`` that placement ``p`` (planned without them) violates, in words:
    the ones that bind, i.e. that moved the best placement."""
    out = []
    if job.regions and not any(fnmatch.fnmatchcase(p.region_id, r) for r in job.regions):
        out.append(f"regions/residency: {p.region_id} is not allowed")
    if job.exclude_regions and any(fnmatch.fnmatchcase(p.region_id, r) for r in job.exclude_regions):
        out.append(f"exclude_regions: {p.region_id} is excluded")
    if job.providers and p.provider not in job.providers:
        out.append(f"providers: {p.provider} is not allowed")
    if job.gpu_types and p.gpu not in job.gpu_types:
        out.append(f"gpu_types: {p.gpu} is not allowed")
    if job.min_gpu_memory_gb is not None and read_gpus()[p.gpu].memory_gb < job.min_gpu_memory_gb:
        out.append(f"min_gpu_memory_gb: {p.gpu} has {read_gpus()[p.gpu].memory_gb:g} GB")
    if job.max_usd_per_hour is not None and p.price_usd_per_hour > job.max_usd_per_hour:
        out.append(f"max_usd_per_hour: {p.price_usd_per_hour:.2f} > {job.max_usd_per_hour:g}")
    if job.max_total_usd is not None and p.cost_usd > job.max_total_usd:
        out.append(f"max_total_usd: {p.cost_usd:.2f} > {job.max_total_usd:g}")
    if job.carbon_budget_kg is not None and p.kg_co2e > job.carbon_budget_kg:
        out.append(f"carbon_budget_kg: {p.kg_co2e:.2f} > {job.carbon_budget_kg:g}")
    if job.max_delay_hours is not None:
        delay = hours_between(max(job.earliest_start or now, now), p.start)
        if delay > job.max_delay_hours + 1e-9:
            out.append(f"max_delay: starts {delay:.1f} h after the window opens > {job.max_delay_hours:g} h")
    if p.market == "spot" and not job.spot:
        out.append("spot: spot capacity is not allowed")
    return out


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
