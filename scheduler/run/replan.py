"""Re-planning a deferred job just before the agent launches it.

A job is planned when it is submitted, often hours before it starts. When the agent claims it,
``replan_reason`` asks whether that plan can still be trusted:

* late: the agent reaches it more than ``late_after`` after its planned start (the agent was
  down, the queue was long); the window it chose has partly passed;
* stale: the forecast behind it is older than ``max_age`` (``plan.now``); a newer forecast may
  see a greener window.

If so, ``replan_job`` plans the job again from its stored spec, with the window it was submitted
with (an unset earliest start stays the submission instant, so re-planning never stretches the
deadline), restricted to the job's launcher as at submission. If the new best start is later than
now (a greener feasible window before the deadline), the job goes back to *scheduled* at that
start with the new plan; else it launches now on the new plan's ranking. Either way a
``replanned`` event records why, the old and new start, and the planned kgCO2e before and after.
When re-planning fails (no placement is feasible any more, the window has closed, a source is
down), the stored plan is launched as it is and a ``replan-failed`` event says why.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Callable

from carbonsched.errors import CarbonschedError
from carbonsched.planning.policy_check import enforce_policy
from carbonsched.run.store import Job, Store
from carbonsched.run.submit import plan_document, restrict_to_launcher
from carbonsched.spec.job import job_from_echo
from carbonsched.units import iso_utc, parse_utc

LATE_AFTER = timedelta(minutes=10)
MAX_FORECAST_AGE = timedelta(hours=6)


def replan_reason(job: Job, now: datetime, *, late_after: timedelta = LATE_AFTER,
                  max_age: timedelta = MAX_FORECAST_AGE) -> str | None:
    """Why the job's plan should be made again before it launches (None: launch it as planned)."""
    late = now - job.start_at
    if late > late_after:
        return f"late: planned to start at {iso_utc(job.start_at)}, {_hours(late)} ago"
    planned_at = job.plan.get("now")
    if planned_at and now - parse_utc(planned_at) > max_age:
        return f"stale forecast: planned at {planned_at}, {_hours(now - parse_utc(planned_at))} ago"
    return None


def _hours(d: timedelta) -> str:
    h = d.total_seconds() / 3600
    return f"{h:.1f} h" if h >= 1 else f"{d.total_seconds() / 60:.0f} min"


def make_replanner(settings, policy=None) -> Callable[[Job, datetime], dict]:
    """``replan(job, now) -> plan document`` with these settings (the CLI's and the server's agent),
    under the organisation's ``policy`` (a ``PolicyFile``) when there is one."""
    def replan(job: Job, now: datetime) -> dict:
        spec = job_from_echo(job.spec)
        if spec.earliest_start is None and job.plan.get("now"):
            spec = replace(spec, earliest_start=parse_utc(job.plan["now"]))  # keep the submitted window
        spec = restrict_to_launcher(spec, job.launcher)
        return plan_document(enforce_policy(spec, policy, now=now, settings=settings, top=max(job.max_attempts, 10)))

    return replan


def replan_job(store: Store, job: Job, replan: Callable[[Job, datetime], dict], now: datetime, reason: str,
               tolerance: timedelta) -> Job | None:
    """Plan ``job`` (claimed, in *launching*) again; the job to launch now, or None when it moved to a
    later start (back to *scheduled*). See the module docstring."""
    try:
        doc = replan(job, now)
    except CarbonschedError as exc:  # infeasible now, the window closed, a source failed: keep the decision made
        store.add_event(job.id, now, "replan-failed", {"reason": reason, "message": str(exc),
                                                       "action": "launching the stored plan"})
        return job
    old, new = (job.plan.get("placements") or [{}])[0], doc["placements"][0]
    start = parse_utc(new["start"])
    detail = {"reason": reason, "old_start": iso_utc(job.start_at), "new_start": new["start"],
              "old_region_id": old.get("region_id"), "new_region_id": new.get("region_id"),
              "old_kg_co2e": old.get("kg_co2e"), "new_kg_co2e": new.get("kg_co2e")}
    later = start > now + tolerance
    store.replace_plan(job.id, plan=doc, start_at=max(start, now) if later else now, now=now, release=later,
                       detail={**detail, "action": "moved to a greener window" if later else "launching now"})
    return None if later else store.get(job.id)
