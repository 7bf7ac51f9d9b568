"""Submitting jobs and launching them: plan -> store -> launch now or defer -> fail over.

``submit`` plans the job, checks what the launch will need before anything is stored (the
launcher can honour the job's payload, its local paths exist, the cloud credentials are there,
and for an immediate launch its secrets), stores it with the full plan and the forecasts behind
it, and launches it at once when the best start is now and the job's earliest start has come
(else leaves it scheduled for the agent). ``launch_job`` is shared by ``submit`` and the agent:

1. claim the job atomically (scheduled -> launching), so it is launched at most once;
2. for attempt n (placement n in rank order, at most ``max_attempts``): record the attempt as
   *pending* with its token BEFORE calling the cloud, then ask the launcher whether this attempt
   already has a resource (reconciliation), else launch;
3. capacity/quota/stockout errors -> record and try the next-ranked placement; any other launch
   error -> record and fail the job with the message.

The claim is a lease (``store.py``) renewed by a heartbeat (``lease.py``) while the launch runs,
and re-checked before every cloud call: a launch that lost its lease stops. After a crash the
agent (``agent.py``) finds jobs whose lease expired and resumes them: a pending attempt is first
looked up (``find``) and only launched if nothing exists, with the same token. ``cancel`` looks up
what every attempt may have started (by resource id, else by token/tag) and terminates it, so a
job cancelled after a crashed launch leaves no instance behind.

A launcher named after a cloud (``aws``, ``gcp``) can only start that cloud's placements:
``restrict_to_launcher`` confines the job's providers before planning, and ``submit`` refuses a
plan whose placements it could not launch.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Callable

from carbonsched.errors import CapacityError, CarbonschedError, LaunchError, UserInputError
from carbonsched.planning import plan as make_plan
from carbonsched.planning.region_forecast import forecast_to_dict
from carbonsched.providers.cloud import get_launcher
from carbonsched.providers.cloud.launcher import Launcher, job_command, launch_token, payload_gaps, secret_env
from carbonsched.run.lease import Lease
from carbonsched.run.measured import (collect_measurement, current_attempt, in_segments, note_elsewhere, note_unmeasured,
                                      pause, ran_on, run_placement, segment_ended, segment_token, segments_done)
from carbonsched.run.store import DEFAULT_LEASE_S, FINAL, Job, Store
from carbonsched.spec.job import PROVIDERS
from carbonsched.spec.payload import check_payload_paths

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


def restrict_to_launcher(job, launcher: str):
    """``job`` confined to the provider a cloud-named launcher can start (``aws``, ``gcp``); as is for
    ``auto`` and ``local``. UserInputError when the job's own providers exclude that cloud."""
    if launcher not in PROVIDERS:
        return job
    if job.providers is not None and launcher not in job.providers:
        raise UserInputError(f"--launcher {launcher} can only start {launcher} placements, but the job allows only "
                             f"{', '.join(job.providers)}; use --launcher auto or allow {launcher}")
    return replace(job, providers=(launcher,))


def check_launchable(job, plan, launcher: str) -> None:
    """Refuse a plan the launcher could not start, and a command that cannot be split, before
    anything is stored."""
    if launcher in PROVIDERS:
        others = sorted({p.provider for p in plan.placements} - {launcher})
        if others:
            raise UserInputError(f"--launcher {launcher} cannot start placements on {', '.join(others)}; "
                                 f"plan with the job restricted to {launcher} (restrict_to_launcher) or use --launcher auto")
    spec = job.to_dict()
    try:
        job_command(_SpecOnly(spec))  # now, rather than when the agent launches it
    except LaunchError as exc:
        raise UserInputError(str(exc).replace("job (not stored yet)", "the job")) from None
    names = {launcher} if launcher != "auto" else {provider_launcher(p.provider) for p in plan.placements}
    for name in sorted(names):
        missing = payload_gaps(spec, name)
        if missing:
            raise UserInputError(f"the {name} launcher cannot honour this job's {', '.join(missing)}; submit it with "
                                 "--launcher skypilot (or drop those keys)")
    check_payload_paths(spec)


@dataclass(frozen=True)
class _SpecOnly:
    spec: dict
    id: str = "(not stored yet)"


def submit(job, *, now: datetime, settings, store: Store, launcher: str, plan=None, launch: bool = True,
           launcher_factory: Callable[[str], Launcher] | None = None, max_attempts: int = 3,
           team: str = "") -> tuple[Job, LaunchOutcome | None]:
    """Plan (unless ``plan`` is given), store (as ``team``'s job), and launch now if the best start is due."""
    job = restrict_to_launcher(job, launcher)
    plan = plan or make_plan(job, now=now, settings=settings, top=max(max_attempts, 10))
    check_launchable(job, plan, launcher)
    factory = launcher_factory or (lambda name: get_launcher(name, settings))
    launch_now = launch and due_now(plan.best.start, job.earliest_start, now)
    if launch:
        check_credentials(plan, launcher, factory, max_attempts)
    if launch_now:
        try:
            secret_env(_SpecOnly(job.to_dict()))  # launched now, by this process: its secrets must be here
        except LaunchError as exc:
            raise UserInputError(str(exc).replace("job (not stored yet)", "the job") + "; nothing was stored") from None

    stored = store.add_job(name=job.name, spec=job.to_dict(), plan=plan_document(plan), start_at=plan.best.start,
                           launcher=launcher, now=now, max_attempts=max_attempts, team=team)
    if launch_now:
        return stored, launch_job(store, stored.id, factory, now=now,
                                  lease_s=getattr(settings, "lease_seconds", DEFAULT_LEASE_S))
    return stored, None


def plan_document(plan) -> dict:
    """The plan as the store keeps it: ``plan --json`` plus the forecasts the decision used, so a
    report can compare them with what happened."""
    doc = plan.to_dict()
    doc["forecasts"] = {rid: forecast_to_dict(f) for rid, f in sorted(plan.forecasts.items())}
    return doc


def due_now(start: datetime, earliest_start: datetime | None, now: datetime) -> bool:
    """Whether a job planned to start at ``start`` launches at ``now``: within ``START_TOLERANCE``
    of it, but never before the job's own earliest start (the agent launches it then)."""
    return start <= now + START_TOLERANCE and (earliest_start is None or earliest_start <= now)


def check_credentials(plan, launcher: str, factory, max_attempts: int) -> None:
    """Before anything is stored: every launcher the first ``max_attempts`` placements would use
    can authenticate (``Launcher.check``, where it has one). UserInputError with what to do."""
    names = dict.fromkeys(launcher if launcher != "auto" else provider_launcher(p.provider)
                          for p in plan.placements[:max_attempts])
    for name in names:
        check = getattr(factory(name), "check", None)
        if check is None:
            continue
        try:
            check()
        except LaunchError as exc:
            hint = (" or keep the job on clouds you can launch on (--launcher aws|gcp, constraints.providers)"
                    if launcher == "auto" else "")
            raise UserInputError(f"cannot launch with the {name} launcher: {exc}; nothing was stored "
                                 f"(fix the credentials{hint}, or submit with --launcher local)") from None


def provider_launcher(provider: str) -> str:
    """The launcher ``auto`` uses for a provider's placements: its own cloud's; a Kubernetes
    context's is SkyPilot (``infra: k8s/CONTEXT``)."""
    return "skypilot" if provider == "kubernetes" else provider


def launcher_name(job: Job, placement: dict) -> str:
    """The launcher for one placement: the job's, or with ``auto`` the placement's own cloud."""
    return provider_launcher(placement.get("provider", "")) if job.launcher == "auto" else job.launcher


def launch_job(store: Store, job_id: str, launchers: Callable[[str], Launcher], *, now: datetime,
               worker: str | None = None, claimed: bool = False, lease_s: float = DEFAULT_LEASE_S,
               clock: Callable[[], datetime] | None = None) -> LaunchOutcome:
    """Claim and launch one job (see the module docstring). ``claimed``: this worker already holds
    the job's lease (it claimed it with ``claim_next``, or reclaimed a launch whose lease expired).

    ``launchers(name)`` gives the launcher for a name; with the job's launcher ``auto`` each
    placement goes to its own cloud, so failover can cross providers. The lease lasts ``lease_s``
    and is renewed from ``clock`` (default: the system clock) while the launch runs.
    """
    worker = worker or worker_id()
    clock = clock or (lambda: datetime.now(timezone.utc))
    job = store.get(job_id)
    if not claimed and not store.claim(job.id, worker, now, lease_s):
        return LaunchOutcome(job.id, "skipped", message="claimed by another agent or no longer scheduled")
    with Lease(store, job.id, worker, lease_s, clock) as lease:
        return _launch_claimed(store, job, launchers, now, worker, lease)


def _launch_claimed(store: Store, job: Job, launchers, now: datetime, worker: str, lease: Lease) -> LaunchOutcome:
    """Attempts in rank order for a job this worker holds (see the module docstring)."""
    placements = job.plan.get("placements") or []
    k = segments_done(store, job)
    if k:  # a paused interruptible run: its next segment, on the placement it runs on
        return _resume(store, job, launchers, now, worker, lease, k)
    attempts = store.attempts(job.id)
    if attempts and attempts[-1].resource_id and attempts[-1].outcome in ("launched", "reconciled"):
        # a crash fell after the attempt was recorded but before the job was: finish that, launch nothing
        last = attempts[-1]
        return _running(store, job, placements[last.attempt], last.resource_id, now, launchers,
                        launcher=launchers(last.launcher))
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
        try:
            existing = launcher.find(job, n, token)
        except LaunchError as exc:
            if exc.retryable:
                raise  # the cloud is unreachable: the lease runs out and a later pass resumes this attempt
            # no credentials, a denied permission: no later pass can do better until a person acts
            return _attempt_failed(store, job, n, placement, exc, now)
        if existing:
            store.finish_attempt(job.id, n, outcome="reconciled", now=now, resource_id=existing)
            return _running(store, job, placement, existing, now, launchers, launcher=launcher)
        if lease.lost or not store.renew(job.id, worker, lease.clock(), lease.lease_s):
            return LaunchOutcome(job.id, "skipped", placement=placement,
                                 message="lost the launch lease (reclaimed after expiry, or cancelled); launched nothing")
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
                return _running(store, job, placement, found, now, launchers, launcher=launcher)
            return _attempt_failed(store, job, n, placement, exc, now)
        _fault_point("after-launch")
        store.finish_attempt(job.id, n, outcome="launched", now=now, resource_id=resource)
        return _running(store, job, placement, resource, now, launchers, launcher=launcher)
    reason = (f"no capacity in the {n} best placement(s); raise max attempts or relax the constraints"
              if n else "the plan has no placements to launch")
    store.set_state(job.id, "failed", now, expect=("launching",), detail={"reason": reason})
    return LaunchOutcome(job.id, "failed", message=reason)


def _resume(store: Store, job: Job, launchers, now: datetime, worker: str, lease: Lease, k: int) -> LaunchOutcome:
    """Launch segment ``k`` of a paused run (run/measured.py): found by its own token after a crash."""
    a = current_attempt(store, job)
    placement = job.plan["placements"][a.attempt]
    launcher = launchers(a.launcher)
    token = segment_token(job.id, a.attempt, k)
    try:
        found = launcher.find(job, a.attempt, token, segment=k)
        if found is None:
            if lease.lost or not store.renew(job.id, worker, lease.clock(), lease.lease_s):
                return LaunchOutcome(job.id, "skipped", placement=placement,
                                     message="lost the launch lease (reclaimed after expiry, or cancelled); launched nothing")
            store.add_event(job.id, now, "resuming", {"segment": k, "token": token})
            found = launcher.launch(job, placement, a.attempt, token, segment=k)
    except LaunchError as exc:
        if exc.retryable:
            raise
        reason = f"segment {k + 1} could not be resumed: {exc}"
        store.set_state(job.id, "failed", now, expect=("launching",), detail={"reason": reason})
        return LaunchOutcome(job.id, "failed", placement=placement, message=reason)
    return _running(store, job, placement, found, now, launchers, launcher=launcher, detail={"segment": k})


def _attempt_failed(store: Store, job: Job, n: int, placement: dict, exc: LaunchError, now: datetime) -> LaunchOutcome:
    """Record attempt ``n`` as an error and fail the job with its reason."""
    store.finish_attempt(job.id, n, outcome="error", now=now, error_code=exc.code, message=str(exc))
    store.set_state(job.id, "failed", now, expect=("launching",), detail={"reason": str(exc)})
    return LaunchOutcome(job.id, "failed", placement=placement, message=str(exc))


def _fault_point(name: str) -> None:
    """Crash-test hook: with CARBONSCHED_FAULT=<name> the process kills itself (SIGKILL) right here,
    between the cloud call and the store write, as a power cut would. Used by the crash tests."""
    if os.environ.get("CARBONSCHED_FAULT") == name:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def _running(store: Store, job: Job, placement: dict, resource: str, now: datetime, launchers, *,
             launcher: Launcher, detail: dict | None = None) -> LaunchOutcome:
    """Record the launched resource and where ``launcher`` really runs it (``measured.ran_on``),
    unless the job was cancelled meanwhile: then terminate it."""
    facts = ran_on(launcher, placement, resource)
    if store.set_state(job.id, "running", now, expect=("launching",), resource_id=resource,
                       region_id=facts.get("region_id"),
                       instance_type=facts.get("instance_type") or ("this machine" if facts.get("where") == "this machine" else None),
                       detail={"resource_id": resource, **(detail or {})}):
        if not (detail or {}).get("segment"):
            note_elsewhere(store, job, facts, placement, now)
        return LaunchOutcome(job.id, "running", resource_id=resource, placement=placement)
    launchers(launcher_for_resource(resource)).cancel(resource)
    store.add_event(job.id, now, "terminated", {"resource_id": resource, "reason": "cancelled during launch"})
    return LaunchOutcome(job.id, store.get(job.id).state, resource_id=resource, placement=placement,
                         message="the job was cancelled while it launched; its resource was terminated")


def launcher_for_resource(resource_id: str) -> str:
    """Resource ids start with their launcher: ``aws:...``, ``gcp:...``, ``local:...``."""
    return resource_id.split(":", 1)[0]


def refresh_status(store: Store, job: Job, launchers: Callable[[str], Launcher], now: datetime, *,
                   segments: bool = False) -> Job:
    """Poll a running job's resource: pause it at the end of a planned segment (``segments``: the
    agent; ``status`` only looks), or record its end and bring its measurement home."""
    if job.state != "running" or not job.resource_id:
        return job
    launcher = launchers(launcher_for_resource(job.resource_id))
    k = segments_done(store, job)
    if segments and in_segments(job):
        placement = run_placement(store, job)
        if segment_ended(placement, k, now):
            return pause(store, job, launcher, placement, k, now)
    state, code = launcher.status(job.resource_id)
    if state in ("succeeded", "failed") and store.set_state(job.id, state, now, expect=("running",), exit_code=code):
        collect_measurement(store, job, launcher, job.resource_id, run_placement(store, job), now, segment=k)
    return store.get(job.id)


def collect_cancelled(store: Store, job: Job, launchers: Callable[[str], Launcher], now: datetime) -> bool:
    """A cancelled run's record, once its process has ended (the tracker writes it when SIGTERM
    ends the command): stored as any run's, so the energy it used counts in the ledger. Once: a
    ``measured`` or ``unmeasured`` event after the cancel ends the wait. True when it was settled."""
    events = store.events(job.id)
    cut = max((i for i, e in enumerate(events) if e["kind"] == "cancelled"), default=-1)
    if cut < 0 or not job.resource_id or any(e["kind"] in ("measured", "unmeasured") for e in events[cut + 1:]):
        return False
    launcher = launchers(launcher_for_resource(job.resource_id))
    segment = segments_done(store, job)
    try:
        if launcher.status(job.resource_id)[0] == "running":
            return False  # still stopping (its grace after SIGTERM): a later pass
    except CarbonschedError as exc:  # a terminated cloud instance may not answer: settle it, once
        note_unmeasured(store, job, now, segment, f"the launcher could not report the cancelled run ({exc})")
        return True
    collect_measurement(store, job, launcher, job.resource_id, run_placement(store, job), now, segment=segment)
    return True


def cancel(store: Store, job_id: str, launcher_factory: Callable[[str], Launcher], now: datetime) -> Job:
    """Cancel a job and terminate whatever any of its attempts started.

    The state changes first, so an agent still launching it terminates what it starts (``_running``);
    then every attempt is reconciled: its recorded resource, else a lookup by its token/tag (an agent
    that died after the cloud call and before the store write left no resource id)."""
    job = store.get(job_id)
    if job.state in FINAL:
        return job
    store.set_state(job.id, "cancelled", now, expect=("scheduled", "launching", "running", "paused"),
                    detail={"resource_id": job.resource_id})
    terminated = []
    for resource in _started_resources(store, job, launcher_factory):
        launcher_factory(launcher_for_resource(resource)).cancel(resource)
        terminated.append(resource)
    if terminated:
        store.add_event(job.id, now, "terminated", {"resources": terminated, "reason": "cancelled"})
    return store.get(job.id)


def _started_resources(store: Store, job: Job, launcher_factory) -> list[str]:
    found = [job.resource_id] if job.resource_id else []
    for a in store.attempts(job.id):
        if a.resource_id:
            rid = a.resource_id
        elif a.outcome in ("pending", "error"):  # error: an unclear failure may have started something
            rid = launcher_factory(a.launcher).find(job, a.attempt, a.token)
        else:
            rid = None
        if rid and rid not in found:
            found.append(rid)
    return found
