"""Prefect 3 tasks (``pip install 'carbonsched[prefect]'``): plan, wait for the green window, submit.

- ``plan_placement(job, ...)``: plans the job under the policy; returns the placement (region,
  instance, start, kgCO2e, saving: ``placement.placement_summary``) and publishes the plan as a
  markdown artifact (key ``carbonsched-plan``: the best placements and the baseline).
- ``wait_for_green_window(placement, job, ...)``: two ways to wait, because Prefect 3 cannot park a
  running flow until a time: ``pause_flow_run`` keeps the process waiting and fails at its timeout
  instead of resuming, and ``suspend_flow_run`` ends the process but resumes only when something
  calls ``resume_flow_run``.

  * ``deployment="flow-name/deployment-name"`` (no process waits): the training deployment is
    scheduled with ``run_deployment(..., scheduled_time=start, timeout=0)``; Prefect's scheduler
    keeps the run in *Scheduled* until the green start and a worker picks it up then. The task
    returns at once (``scheduled_flow_run_id``). Prefer this for waits of hours.
  * without a deployment: the task sleeps in its flow's process until an hour (``replan_lead``)
    before the start, re-plans once (a newer forecast may move the window, which stays pinned at the
    first plan), sleeps until the start and returns the placement. It holds the process (not a GPU)
    for the whole wait: fine on a laptop or an agent host, wasteful on a paid worker.

  Either way a markdown artifact (``carbonsched-window``) records the window.
- ``submit_job(job, launcher=..., ...)``: ``carbonsched submit --yes``; with ``wait`` it polls the
  job store (``refresh_status``) until the job ends, launching it when due if it was scheduled
  (``launch_when_due``); a failed or cancelled job fails the task. Artifact ``carbonsched-job``.

The tasks do not cache (``NO_CACHE``): a plan is only as good as the time it was made. Clock: ``now``
(ISO 8601 UTC) fixes it like the CLI's ``--now``; ``skip_waits`` makes waits take no time (the clock
jumps to the moment waited for: ``placement.Clock``), which is how the tests run the example flow.
"""
from __future__ import annotations

import time
from datetime import timedelta

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.deployments import run_deployment

from carbonsched.errors import LaunchError, UserInputError
from carbonsched.integrations.placement import (Clock, job_summary, launch_if_due, launchers_for, pinned_to,
                                                placement_summary, plan_markdown, plan_under_policy, poll_job,
                                                read_job, read_policy, same_placement, settings_for,
                                                submit_under_policy)
from carbonsched.run.store import FINAL, Store
from carbonsched.run.submit import START_TOLERANCE
from carbonsched.units import iso_utc, parse_utc


def _clock(now: str | None, skip_waits: bool, not_before: str | None = None) -> Clock:
    fixed = parse_utc(now, "now") if now else None
    if fixed is not None and not_before is not None:
        fixed = max(fixed, parse_utc(not_before, "start"))
    return Clock.starting(fixed, skip_waits)


def _hours(max_wait_hours: float | None) -> timedelta | None:
    return None if max_wait_hours is None else timedelta(hours=max_wait_hours)


def _plan(job, policy, policy_file, settings, clock: Clock, top: int, max_wait_hours, first_now=None):
    settings = settings_for(settings)
    return plan_under_policy(read_job(job), read_policy(policy, policy_file, settings), now=clock.now(),
                             settings=settings, top=top, max_wait=_hours(max_wait_hours), first_now=first_now)


@task(name="carbonsched-plan", cache_policy=NO_CACHE)
def plan_placement(job, policy_file: str | None = None, policy: dict | str | None = None, now: str | None = None,
                   top: int = 5, max_wait_hours: float | None = None, settings: dict | None = None) -> dict:
    """Plan ``job`` (a job file path or a job table) under the policy (``policy_file``, or ``policy``
    as a table or TOML text, else the ``policy`` setting); publish the plan as the markdown artifact
    ``carbonsched-plan``; return the best placement (``placement_summary``)."""
    plan = _plan(job, policy, policy_file, settings, _clock(now, False), top, max_wait_hours)
    best = placement_summary(plan)
    create_markdown_artifact(markdown=plan_markdown(plan, top), key="carbonsched-plan",
                             description=f"carbonsched: {best['region_id']} from {best['start']}, "
                                         f"{best['kg_co2e']} kgCO2e")
    return best


@task(name="carbonsched-wait-for-green-window", cache_policy=NO_CACHE)
def wait_for_green_window(placement: dict, job=None, policy_file: str | None = None, policy: dict | str | None = None,
                          now: str | None = None, skip_waits: bool = False, deployment: str | None = None,
                          parameters: dict | None = None, replan_lead_hours: float = 1.0,
                          max_wait_hours: float | None = None, settings: dict | None = None) -> dict:
    """Wait for ``placement`` (from ``plan_placement``) as the module docstring says: schedule
    ``deployment`` at its start (with ``parameters``), or sleep here, re-planning ``job`` once ``replan_lead_hours``
    before the start. Returns the placement to run (with ``replanned``, ``moved_from``, and for the
    scheduled route ``scheduled_flow_run_id``)."""
    start = parse_utc(placement["start"], "placement start")
    if deployment:
        run = run_deployment(deployment, scheduled_time=start, parameters=parameters or {}, timeout=0)
        out = {**placement, "replanned": False, "moved_from": None, "scheduled_flow_run_id": str(run.id),
               "scheduled_time": iso_utc(start)}
        _window_artifact(out, f"scheduled flow run {run.id} of {deployment} for {placement['start']}")
        return out
    if job is None:
        raise UserInputError("wait_for_green_window needs the job to re-plan it (or a deployment to schedule)")
    clock = _clock(now, skip_waits)
    first_now = parse_utc(placement["planned_at"], "planned_at")
    moved, replanned = None, False
    if start > clock.now() + START_TOLERANCE:
        replanned = True
        clock = _sleep_until(clock, max(start - timedelta(hours=replan_lead_hours), clock.now()))
        plan = _plan(job, policy, policy_file, settings, clock, 5, max_wait_hours, first_now=first_now)
        new = placement_summary(plan)
        moved = None if same_placement(new, placement) else placement
        placement = new
        clock = _sleep_until(clock, parse_utc(placement["start"], "start"))
    out = {**placement, "replanned": replanned, "moved_from": moved, "opened_at": iso_utc(clock.now())}
    _window_artifact(out, "the window moved from " + f"{moved['region_id']} {moved['start']}" if moved else "")
    return out


def _sleep_until(clock: Clock, moment) -> Clock:
    while (left := clock.real_seconds_until(moment)) > 0:
        time.sleep(min(left, 3600.0))
    return clock.advanced_to(moment)


def _window_artifact(p: dict, note: str) -> None:
    md = (f"### green window for `{p['job']}`\n\n| region | instance | start (UTC) | kgCO2e | saving vs baseline |\n"
          f"|---|---|---|---:|---:|\n| {p['region_id']} | {p['instance_type']} | {p['start']} | {p['kg_co2e']} | "
          f"{p['saving_vs_baseline_pct']} % |\n" + (f"\n{note}\n" if note else ""))
    create_markdown_artifact(markdown=md, key="carbonsched-window", description=f"carbonsched: {p['region_id']}")


@task(name="carbonsched-submit", cache_policy=NO_CACHE)
def submit_job(job, launcher: str = "auto", policy_file: str | None = None, policy: dict | str | None = None,
               pin_to: dict | None = None, now: str | None = None, skip_waits: bool = False, wait: bool = True,
               poll_interval_s: float = 30.0, launch_when_due: bool = True, max_attempts: int = 3,
               settings: dict | None = None) -> dict:
    """Submit ``job`` (``launcher``: auto, local, aws, gcp, skypilot) under the policy; ``pin_to``: a
    placement (from ``wait_for_green_window``) to confine it to. With ``wait``, poll until it ends.
    Returns the job (``placement.job_summary``); artifact ``carbonsched-job``."""
    settings_ = settings_for(settings)
    job_ = read_job(job) if pin_to is None else pinned_to(read_job(job), pin_to)
    clock = _clock(now, skip_waits, not_before=pin_to["start"] if pin_to else None)
    factory = launchers_for(settings_)
    store = Store.for_settings(settings_)
    try:
        stored, _ = submit_under_policy(job_, read_policy(policy, policy_file, settings_), launcher=launcher,
                                        now=clock.now(), settings=settings_, store=store, max_attempts=max_attempts,
                                        launcher_factory=factory)
        current = store.get(stored.id)
        while wait and current.state not in FINAL:
            if current.state == "scheduled":
                if clock.real_seconds_until(current.start_at) > 0 or not launch_when_due:
                    # not due (or the agent launches it): sleep until the start, else poll
                    left = clock.real_seconds_until(current.start_at)
                    time.sleep(min(left, 3600.0) if left > 0 else poll_interval_s)
                    clock = clock.advanced_to(current.start_at)
                else:
                    current = launch_if_due(store, stored.id, clock.now(), settings_, factory, clock=clock.now)
                    continue
            else:
                time.sleep(poll_interval_s)
            current = poll_job(store, stored.id, clock.now(), factory)
        doc = job_summary(current)
    finally:
        store.close()
    create_markdown_artifact(
        markdown=(f"### carbonsched job `{doc['name']}`\n\n| job | state | exit code | region | instance | start (UTC) |\n"
                  f"|---|---|---:|---|---|---|\n| {doc['job_id']} | {doc['state']} | {doc['exit_code']} | "
                  f"{doc['region_id']} | {doc['instance_type']} | {doc['start_at']} |\n"),
        key="carbonsched-job", description=f"carbonsched job {doc['job_id']}: {doc['state']}")
    if doc["final"] and doc["state"] != "succeeded":
        raise LaunchError(f"carbonsched job {doc['job_id']} ended {doc['state']}"
                          + (f" with exit code {doc['exit_code']}" if doc["exit_code"] is not None else "")
                          + f"; `carbonsched status {doc['job_id']}` tells why")
    return doc
