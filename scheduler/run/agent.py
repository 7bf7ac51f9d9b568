"""The agent: launch deferred jobs when they come due, resume launches whose lease expired, and
record how running jobs end.

One pass (``agent_pass``): jobs in *launching* whose lease expired are reclaimed (atomically, the
expiry checked again) and resumed with reconciliation first; due *scheduled* jobs are claimed and
launched, re-planned first when late or planned on a stale forecast (``replan.py``); *running*
jobs are polled: paused at the end of a planned segment, or finished with their measurement
brought home (``measured.py``); so are the runs of jobs cancelled in the last hour, once stopped
(``submit.collect_cancelled``: the energy a cancelled run used counts too). Every claim is stamped with the clock at the claim (not at the
start of the pass) and holds a lease of ``lease_s`` renewed while the launch runs. Due jobs are
claimed one at a time (``Store.claim_next``), each just before its launch, so agents sharing a
PostgreSQL store split the queue between them and no claim waits behind another job's launch. One job's
failure never stops the agent: a carbonsched error is recorded on the job; any other exception
(a bug, a poison input) fails that job with the error's type and text, and the pass goes on.
"""
from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Callable

from carbonsched.errors import CarbonschedError
from carbonsched.providers.cloud.launcher import Launcher
from carbonsched.planning.policy_check import placement_violations
from carbonsched.run.measured import segments_done
from carbonsched.run.replan import replan_job, replan_reason
from carbonsched.run.store import DEFAULT_LEASE_S, Job, Store
from carbonsched.run.submit import START_TOLERANCE, LaunchOutcome, collect_cancelled, launch_job, refresh_status, worker_id
from carbonsched.units import iso_utc

MAX_ERRORS = 5  # a job's launch or poll may err this many times before it fails (never-ending retries hide trouble)
CANCELLED_RECORD_S = 3600.0  # how long after a cancel the agent looks for the stopped run's record


def agent_pass(store: Store, launcher_factory: Callable[[str], Launcher], now: datetime, *,
               worker: str | None = None, stale_after_s: float = DEFAULT_LEASE_S,
               clock: Callable[[], datetime] | None = None, max_launches: int = 100,
               replan: Callable[[Job, datetime], dict] | None = None,
               max_errors: int = MAX_ERRORS, policy=None) -> list[LaunchOutcome]:
    """One pass of the agent (see the module docstring). ``stale_after_s`` is the lease this agent
    takes on the jobs it claims (and how old a lease-less legacy claim must be to be resumed);
    ``clock`` stamps each claim (default: ``now`` for every job of the pass); at most
    ``max_launches`` due jobs are claimed per pass, so running jobs are polled in between.
    ``replan`` (``run/replan.make_replanner``) re-plans late or stale jobs before they launch;
    a job whose launch errs ``max_errors`` times fails with the last error; with ``policy`` (a
    ``PolicyFile``) a job launches only on the placements it allows (``police``)."""
    worker = worker or worker_id()
    clock = clock or (lambda: now)
    out: list[LaunchOutcome] = []
    lease = dict(worker=worker, lease_s=stale_after_s, clock=clock)

    for job in store.stale_launching(clock(), stale_after_s):
        if store.reclaim(job.id, worker, clock(), job.claimed_by, lease_s=stale_after_s, older_than_s=stale_after_s):
            _guarded(store, job, clock, out, lambda: launch_job(store, job.id, launcher_factory, now=clock(), claimed=True, **lease),
                     max_errors)
    for _ in range(max_launches):
        job = store.claim_next(worker, clock(), stale_after_s)
        if job is None:
            break
        _guarded(store, job, clock, out,
                 lambda: _replan_then_launch(store, job, launcher_factory, clock, replan, lease, policy), max_errors)
    for job in store.jobs(("running",)):
        _guarded(store, job, clock, out, lambda: _poll(store, job, launcher_factory, clock), max_errors)
    for job in store.jobs(("cancelled",), changed_since=clock() - timedelta(seconds=CANCELLED_RECORD_S)):
        if job.resource_id:  # it ran: bring its record home when its process has ended
            _guarded(store, job, clock, out, lambda: collect_cancelled(store, job, launcher_factory, clock()), max_errors)
    return [o for o in out if o.state != "skipped"]


def _poll(store: Store, job: Job, launcher_factory, clock) -> LaunchOutcome | None:
    """Poll a running job; its outcome when the pass saw it end (succeeded, failed: with its exit
    code) or pause, so ``agent --once`` says so and exits 1 for a failure. None: still running."""
    after = refresh_status(store, job, launcher_factory, clock(), segments=True)
    if after.state == job.state:
        return None
    return LaunchOutcome(job.id, after.state, after.resource_id,
                         message="" if after.exit_code is None else f"exit code {after.exit_code}")


def _replan_then_launch(store: Store, job: Job, launcher_factory, clock, replan, lease: dict, policy=None):
    """Re-plan a claimed job that is late or planned on a stale forecast (not a paused run: its
    segments are fixed), keep only the placements the organisation's ``policy`` allows, then
    launch it, unless it moved to a later, greener start."""
    fresh = not segments_done(store, job) and not store.attempts(job.id)
    reason = replan_reason(job, clock()) if replan is not None and job.state == "launching" else None
    if reason and fresh:
        if replan_job(store, job, replan, clock(), reason, START_TOLERANCE) is None:
            moved = store.get(job.id)
            return LaunchOutcome(job.id, "rescheduled", message=f"{reason}; re-planned to start at {iso_utc(moved.start_at)}")
        job = store.get(job.id)
    if policy is not None and fresh:
        refused = police(store, job, policy, clock())
        if refused is not None:
            return refused
    return launch_job(store, job.id, launcher_factory, now=clock(), claimed=True, **lease)


def police(store: Store, job: Job, policy, now: datetime) -> LaunchOutcome | None:
    """Drop the stored placements the policy forbids (a job submitted before the policy, or
    without it); fail the job naming the rules when none is left. None: launch what remains."""
    placements = job.plan.get("placements") or []
    broken = {i: placement_violations(p, job.spec, policy, job.created_at) for i, p in enumerate(placements)}
    keep = [p for i, p in enumerate(placements) if not broken[i]]
    if len(keep) == len(placements):
        return None
    rules = sorted({r for rs in broken.values() for r in rs})
    detail = {"policy": policy.name, "dropped": len(placements) - len(keep), "rules": rules}
    if not keep:
        reason = f"policy {policy.name!r}: every planned placement breaks it ({'; '.join(rules)}); re-submit the job"
        store.set_state(job.id, "failed", now, expect=("launching",), detail={"reason": reason, **detail})
        return LaunchOutcome(job.id, "failed", message=reason)
    store.replace_plan(job.id, plan={**job.plan, "placements": keep}, start_at=job.start_at, now=now, release=False,
                       detail={"reason": f"policy {policy.name!r} forbids {detail['dropped']} placement(s)", **detail,
                               "action": "launching the placements it allows"})
    return None


def _guarded(store: Store, job: Job, clock, out: list, fn, max_errors: int = MAX_ERRORS) -> None:
    """Run one job's step; its failure is recorded on the job and never escapes the pass. A job
    whose launch errs ``max_errors`` times (an unreachable API, expired credentials) fails with
    the last error instead of being retried on every pass."""
    try:
        result = fn()
    except CarbonschedError as exc:  # one job's cloud trouble must not stop the agent
        store.add_event(job.id, clock(), "agent-error", {"message": str(exc)})
        result = LaunchOutcome(job.id, "error", message=str(exc))
        errors = sum(1 for e in store.events(job.id) if e["kind"] == "agent-error")
        if errors >= max_errors:
            reason = f"gave up after {errors} errors; the last: {exc}"
            # launching only: a running job's instance may still be there; polling it again is right
            if store.set_state(job.id, "failed", clock(), expect=("launching",), detail={"reason": reason}):
                result = LaunchOutcome(job.id, "failed", message=reason)
    except Exception as exc:  # noqa: BLE001 -- a poison job must not take the agent (and every other job) down
        reason = f"internal error while handling this job: {type(exc).__name__}: {exc}"
        try:
            store.add_event(job.id, clock(), "agent-error", {"message": reason})
            store.set_state(job.id, "failed", clock(), expect=("launching",), detail={"reason": reason})
        except CarbonschedError:
            pass  # the store itself is in trouble: the next pass will say so
        result = LaunchOutcome(job.id, "failed", message=reason)
    if isinstance(result, LaunchOutcome):
        out.append(result)


def run_agent(store: Store, launcher_factory, clock: Callable[[], datetime], *, once: bool = False,
              interval_s: float = 60.0, stale_after_s: float = DEFAULT_LEASE_S, log=print,
              sleep: Callable[[float], None] = time.sleep, troubles: list | None = None,
              replan: Callable[[Job, datetime], dict] | None = None, max_errors: int = MAX_ERRORS,
              policy=None) -> int:
    """Loop ``agent_pass`` every ``interval_s`` (``once``: a single pass). Returns jobs launched;
    outcomes that failed or erred are appended to ``troubles`` when given."""
    launched = 0
    while True:
        for o in agent_pass(store, launcher_factory, clock(), stale_after_s=stale_after_s, clock=clock, replan=replan,
                            max_errors=max_errors, policy=policy):
            launched += o.state == "running"
            if troubles is not None and o.state in ("failed", "error"):
                troubles.append(o)
            where = f" in {o.placement.get('region_id')} ({o.placement.get('instance_type')})" if o.placement else ""
            if o.resource_id and o.resource_id.startswith("local:"):  # the local launcher runs it here, whatever the plan said
                where = " on this machine" + (f" (planned{where})" if where else "")
            log(f"{iso_utc(clock())} job {o.job_id}: {o.state}{where}{': ' + o.message if o.message else ''}")
        if once:
            return launched
        sleep(interval_s)
