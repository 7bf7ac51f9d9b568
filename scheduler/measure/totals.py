"""The cross-job ledger: planned, measured and baseline emissions summed over a store's jobs.

Per job (optionally one team's, created since an instant):

* planned kgCO2e: the stored plan's best placement (``placements[0].kg_co2e``), the estimate the
  decision was made on; baseline kgCO2e: the plan's own "default region, start now" baseline.
* measured kgCO2e: where the job has a measurement (``carbonsched track --job`` or a measured
  launch), the report's ledger (``measure/ledger.build_ledger``): metered energy x the grid's
  intensity in the hours it ran; its counterfactual baseline is the same energy in the default
  region at the same hours.

Totals: planned and baseline over every job with a plan, the planned saving
``(baseline - planned) / baseline``; measured and its baseline over measured jobs, the measured
saving the same way; how many of the jobs that ran were measured, and of those how many had some
of their energy modelled (no NVML/RAPL reading) rather than metered. A job whose measurement
cannot be turned into kgCO2e (a record from an unknown region, say) counts as unmeasured, with a
warning naming it.
"""
from __future__ import annotations

from datetime import datetime

from carbonsched.errors import CarbonschedError
from carbonsched.measure.ledger import build_ledger
from carbonsched.run.store import Store, UnknownJobError
from carbonsched.units import iso_utc

RAN = ("running", "succeeded", "failed")


def _pct(base: float, value: float) -> float | None:
    return round(100 * (base - value) / base, 2) if base > 0 else None


def job_ledger_row(store: Store, job, *, source, baseline_region: str | None,
                   regions: dict | None = None) -> tuple[dict, str | None]:
    """One job's row and a warning (or None)."""
    best = (job.plan.get("placements") or [None])[0] or {}
    base = job.plan.get("baseline") or {}
    row = {"id": job.id, "name": job.name, "team": job.team, "state": job.state, "created_at": iso_utc(job.created_at),
           "region_id": job.region_id or best.get("region_id"), "planned_kg_co2e": best.get("kg_co2e"),
           "baseline_kg_co2e": base.get("kg_co2e"), "measured_kg_co2e": None, "measured_baseline_kg_co2e": None,
           "measured_energy_kwh": None, "energy_modelled": None,
           "ran": job.state in RAN or (job.state == "cancelled" and job.resource_id is not None)}  # a cancelled run ran
    try:
        record = store.load_measurement(job.id)
    except UnknownJobError:
        return row, None
    try:  # where the job ran (the report's rule): never the plan's region for a run on this machine
        ledger = build_ledger(record, source=source, region=job.region_id, plan=job.plan,
                              baseline_region=baseline_region, regions=regions)
    except CarbonschedError as exc:
        return row, f"job {job.id}: its measurement could not be costed ({exc})"
    row.update(region_id=ledger.region_id, measured_kg_co2e=ledger.kg_co2e,
               measured_energy_kwh=ledger.facility_energy_kwh,
               measured_baseline_kg_co2e=ledger.baseline["kg_co2e"] if ledger.baseline else None,
               energy_modelled=any(ledger.energy_methods.get(k) == "model" for k in ("gpu", "cpu")))  # memory: always the model
    return row, None


def team_ledger(store: Store, *, source, team: str | None = None, since: datetime | None = None,
                baseline_region: str | None = None, regions: dict | None = None) -> dict:
    """The ledger document (module docstring): ``jobs`` rows and ``totals``."""
    jobs = [j for j in store.jobs(team=team) if since is None or j.created_at >= since]
    rows, warnings = [], []
    for job in jobs:
        row, warning = job_ledger_row(store, job, source=source, baseline_region=baseline_region, regions=regions)
        rows.append(row)
        if warning:
            warnings.append(warning)
    planned = [r for r in rows if r["planned_kg_co2e"] is not None and r["baseline_kg_co2e"] is not None]
    measured = [r for r in rows if r["measured_kg_co2e"] is not None]
    m_based = [r for r in measured if r["measured_baseline_kg_co2e"] is not None]
    ran = [r for r in rows if r["ran"]]
    p_kg, p_base = sum(r["planned_kg_co2e"] for r in planned), sum(r["baseline_kg_co2e"] for r in planned)
    m_kg, m_base = sum(r["measured_kg_co2e"] for r in m_based), sum(r["measured_baseline_kg_co2e"] for r in m_based)
    totals = {
        "jobs": len(rows), "jobs_ran": len(ran), "jobs_measured": len(measured),
        "measured_share_of_ran_pct": round(100 * len([r for r in measured if r["ran"]]) / len(ran), 1) if ran else None,
        "planned_kg_co2e": p_kg, "baseline_kg_co2e": p_base,
        "planned_saving_kg_co2e": p_base - p_kg, "planned_saving_pct": _pct(p_base, p_kg),
        "measured_kg_co2e": sum(r["measured_kg_co2e"] for r in measured),
        "measured_baseline_kg_co2e": m_base, "measured_saving_kg_co2e": m_base - m_kg,
        "measured_saving_pct": _pct(m_base, m_kg),
        "measured_jobs_energy_modelled": len([r for r in measured if r["energy_modelled"]]),
    }
    return {"schema_version": 1, "team": team, "since": iso_utc(since) if since else None, "totals": totals,
            "jobs": rows, "warnings": warnings}
