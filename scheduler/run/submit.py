"""Submitting jobs and launching them: plan -> store -> launch now or defer -> fail over.

``submit`` plans the job, stores it with the full plan, and launches it at once when the best
start is now (else leaves it scheduled for the agent). ``launch_job`` is shared by ``submit``
and the agent:

1. claim the job atomically (scheduled -> launching), so it is launched at most once;
2. for attempt n (placement n in rank order, at most ``max_attempts``): record the attempt as
   *pending* with its token BEFORE calling the cloud, then ask the launcher whether this attempt
   already has a resource (reconciliation), else launch;
3. capacity/quota/stockout errors -> record and try the next-ranked placement; any other launch
   error -> record and fail the job with the message.

After a crash the agent finds jobs stuck in *launching* and resumes them: a pending attempt is
first looked up (``find``) and only launched if nothing exists, with the same token.
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from carbonsched.errors import CapacityError, CarbonschedError, LaunchError
from carbonsched.providers.cloud import get_launcher
from carbonsched.providers.cloud.launcher import Launcher, launch_token
from carbonsched.run.store import FINAL, Job, Store
from carbonsched.units import iso_utc
from carbonsched.planning import plan as make_plan
from carbonsched.planning.region_forecast import forecast_to_dict

START_TOLERANCE = timedelta(minutes=1)  # a best start within this of now launches at once


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class LaunchOutcome:
    job_id: str
    state: str  # running | failed | skipped (claimed elsewhere / not due)
    resource_id: str | None = None
    placement: dict | None = None
    message: str = ""


def submit(job, *, now: datetime, settings, store: Store, launcher: str, plan=None, launch: bool = True,
           launcher_factory: Callable[[str], Launcher] | None = None, max_attempts: int = 3) -> tuple[Job, LaunchOutcome | None]:
    """Plan (unless ``plan`` is given), store, and launch now if the best start is due."""
    plan = plan or make_plan(job, now=now, settings=settings, top=max(max_attempts, 10))

    doc = plan.to_dict()
    # the store keeps the forecasts the decision used, so a report can compare them with what happened
    doc["forecasts"] = {rid: forecast_to_dict(f) for rid, f in sorted(plan.forecasts.items())}
    stored = store.add_job(name=job.name, spec=job.to_dict(), plan=doc, start_at=plan.best.start,
                           launcher=launcher, now=now, max_attempts=max_attempts)
    if launch and plan.best.start <= now + START_TOLERANCE:
        factory = launcher_factory or (lambda name: get_launcher(name, settings))
        return stored, launch_job(store, stored.id, factory, now=now)
    return stored, None


def launcher_name(job: Job, placement: dict) -> str:
    """The launcher for one placement: the job's, or with ``auto`` the placement's own cloud."""
    return placement.get("provider", "") if job.launcher == "auto" else job.launcher


def launch_job(store: Store, job_id: str, launchers: Callable[[str], Launcher], *, now: datetime,
               worker: str | None = None, resume: bool = False) -> LaunchOutcome:
    """Claim and launch one job (see the module docstring). ``resume`` continues a stale launch.

    ``launchers(name)`` gives the launcher for a name; with the job's launcher ``auto`` each
    placement goes to its own cloud, so failover can cross providers.
    """
    worker = worker or worker_id()
    job = store.get(job_id)
    if not resume and not store.claim(job.id, worker, now):
        return LaunchOutcome(job.id, "skipped", message="claimed by another agent or no longer scheduled")
    placements = job.plan.get("placements") or []
    attempts = store.attempts(job.id)
    if attempts and attempts[-1].resource_id and attempts[-1].outcome in ("launched", "reconciled"):
        # a crash fell after the attempt was recorded but before the job was: finish that, launch nothing
        last = attempts[-1]
        return _running(store, job, placements[last.attempt], last.resource_id, now, launchers)
    n = len(attempts)
    if attempts and attempts[-1].outcome == "pending":
        n -= 1  # resume the attempt a crash interrupted
    while n < min(job.max_attempts, len(placements)):
        placement = placements[n]
        token = launch_token(job.id, n)
        launcher = launchers(launcher_name(job, placement))
        if not (attempts and n < len(attempts)):
            store.begin_attempt(job.id, attempt=n, rank=placement.get("rank"), launcher=launcher.name,
                                placement=placement, token=token, now=now)
        existing = launcher.find(job, n, token)
        if existing:
            store.finish_attempt(job.id, n, outcome="reconciled", now=now, resource_id=existing)
            return _running(store, job, placement, existing, now, launchers)
        try:
            resource = launcher.launch(job, placement, n, token)
        except CapacityError as exc:
            store.finish_attempt(job.id, n, outcome="capacity", now=now, error_code=exc.code, message=str(exc))
            n += 1
            attempts = store.attempts(job.id)
            continue
        except LaunchError as exc:
            # an unclear failure (timeout after the request was sent) may still have started something
            found = launcher.find(job, n, token) if exc.retryable else None
            if found:
                store.finish_attempt(job.id, n, outcome="reconciled", now=now, resource_id=found,
                                     error_code=exc.code, message=str(exc))
                return _running(store, job, placement, found, now, launchers)
            store.finish_attempt(job.id, n, outcome="error", now=now, error_code=exc.code, message=str(exc))
            store.set_state(job.id, "failed", now, expect=("launching",), detail={"reason": str(exc)})
            return LaunchOutcome(job.id, "failed", placement=placement, message=str(exc))
        _fault_point("after-launch")
        store.finish_attempt(job.id, n, outcome="launched", now=now, resource_id=resource)
        return _running(store, job, placement, resource, now, launchers)
    reason = (f"no capacity in the {n} best placement(s); raise max attempts or relax the constraints"
              if n else "the plan has no placements to launch")
    store.set_state(job.id, "failed", now, expect=("launching",), detail={"reason": reason})
    return LaunchOutcome(job.id, "failed", message=reason)


def _fault_point(name: str) -> None:
    """Crash-test hook: with CARBONSCHED_FAULT=<name> the process kills itself (SIGKILL) right here,
    between the cloud call and the store write, as a power cut would. Used by the crash tests."""
    if os.environ.get("CARBONSCHED_FAULT") == name:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def _running(store: Store, job: Job, placement: dict, resource: str, now: datetime, launchers) -> LaunchOutcome:
    """Record the launched resource, unless the job was cancelled meanwhile: then terminate it."""
    if store.set_state(job.id, "running", now, expect=("launching",), resource_id=resource,
                       region_id=placement.get("region_id"), instance_type=placement.get("instance_type")):
        return LaunchOutcome(job.id, "running", resource_id=resource, placement=placement)
    launchers(launcher_for_resource(resource)).cancel(resource)
    store.add_event(job.id, now, "terminated", {"resource_id": resource, "reason": "cancelled during launch"})
    return LaunchOutcome(job.id, store.get(job.id).state, resource_id=resource, placement=placement,
                         message="the job was cancelled while it launched; its resource was terminated")


def launcher_for_resource(resource_id: str) -> str:
    """Resource ids start with their launcher: ``aws:...``, ``gcp:...``, ``local:...``."""
    return resource_id.split(":", 1)[0]


def refresh_status(store: Store, job: Job, launchers: Callable[[str], Launcher], now: datetime) -> Job:
    """Poll a running job's resource and record its end."""
    if job.state != "running" or not job.resource_id:
        return job
    state, code = launchers(launcher_for_resource(job.resource_id)).status(job.resource_id)
    if state in ("succeeded", "failed"):
        store.set_state(job.id, state, now, expect=("running",), exit_code=code)
    return store.get(job.id)


def cancel(store: Store, job_id: str, launcher_factory: Callable[[str], Launcher], now: datetime) -> Job:
    job = store.get(job_id)
    if job.state in FINAL:
        return job
    if job.resource_id:
        launcher_factory(launcher_for_resource(job.resource_id)).cancel(job.resource_id)
    store.set_state(job.id, "cancelled", now, expect=("scheduled", "launching", "running"),
                    detail={"resource_id": job.resource_id, "terminated": bool(job.resource_id)})
    return store.get(job.id)


def agent_pass(store: Store, launcher_factory: Callable[[str], Launcher], now: datetime, *,
               worker: str | None = None, stale_after_s: float = 300.0) -> list[LaunchOutcome]:
    """One pass of the agent: resume stale launches, launch due jobs, poll running ones."""
    worker = worker or worker_id()
    out = []
    def guarded(job: Job, fn) -> None:
        try:
            result = fn()
        except CarbonschedError as exc:  # one job's cloud trouble must not stop the agent
            store.add_event(job.id, now, "agent-error", {"message": str(exc)})
            result = LaunchOutcome(job.id, "error", message=str(exc))
        if isinstance(result, LaunchOutcome):
            out.append(result)

    for job in store.stale_launching(now, stale_after_s):
        if store.reclaim(job.id, worker, now, job.claimed_by):
            guarded(job, lambda: launch_job(store, job.id, launcher_factory, now=now, worker=worker, resume=True))
    for job in store.due(now):
        guarded(job, lambda: launch_job(store, job.id, launcher_factory, now=now, worker=worker))
    for job in store.jobs(("running",)):
        guarded(job, lambda: refresh_status(store, job, launcher_factory, now))
    return [o for o in out if o.state != "skipped"]


def run_agent(store: Store, launcher_factory, clock: Callable[[], datetime], *, once: bool = False,
              interval_s: float = 60.0, stale_after_s: float = 300.0, log=print,
              sleep: Callable[[float], None] = time.sleep) -> int:
    """Loop ``agent_pass`` every ``interval_s`` (``once``: a single pass). Returns jobs launched."""
    launched = 0
    while True:
        for o in agent_pass(store, launcher_factory, clock(), stale_after_s=stale_after_s):
            launched += o.state == "running"
            where = f" in {o.placement.get('region_id')} ({o.placement.get('instance_type')})" if o.placement else ""
            log(f"{iso_utc(clock())} job {o.job_id}: {o.state}{where}{': ' + o.message if o.message else ''}")
        if once:
            return launched
        sleep(interval_s)
