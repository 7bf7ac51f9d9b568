"""Pipeline embedding: block a pipeline step until its green window opens.

``wait_for_window(job)`` plans the job, sleeps until the best placement's start, and re-plans at
most ``max_replans`` times on the way (every ``replan_every``), so a newer forecast can move the
window; then it returns the Placement the step should start for. The job's window is pinned at
the first plan (``earliest_start`` = the first "now" unless the job sets one), so re-planning
never drifts the window later, and ``max_wait`` caps how long the step may wait (it becomes the
job's max delay when that is shorter). Clock and sleep are injected, so tests run instantly::

    from carbonsched.run.wait import wait_for_window
    placement = wait_for_window(job, max_wait=timedelta(hours=12))
    run_training(region=placement.region_id)          # now is the green window

Errors are carbonsched errors (``InfeasibleError`` when nothing fits), raised before any sleep.
"""
from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Callable

from carbonsched.errors import UserInputError
from carbonsched.spec.job import JobSpec, resolve_job
from carbonsched.models import Placement
from carbonsched.planning import plan


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def pin_window(job: JobSpec, now: datetime, max_wait: timedelta | None = None) -> JobSpec:
    """The job with its window fixed at ``now``: ``earliest_start`` set, ``max_delay`` capped by
    ``max_wait`` (without a deadline or max delay, ``max_wait`` becomes the max delay)."""
    job = resolve_job(job)
    earliest = job.earliest_start or now
    delay = job.max_delay_hours
    if max_wait is not None:
        wait_h = max_wait.total_seconds() / 3600
        if wait_h < 0:
            raise UserInputError(f"max_wait must be >= 0, got {max_wait}")
        # the window opens at `earliest`; waiting until `now + max_wait` is a delay of:
        cap = max(0.0, (now + max_wait - earliest).total_seconds() / 3600)
        delay = cap if delay is None else min(delay, cap)
    return replace(job, earliest_start=earliest, max_delay_hours=delay)


def wait_for_window(job: JobSpec, *, now_fn: Callable[[], datetime] = _utc_now,
                    sleep: Callable[[float], None] = time.sleep, settings=None, max_wait: timedelta | None = None,
                    replan_every: timedelta = timedelta(hours=1), max_replans: int = 3,
                    plan_fn=None, on_replan: Callable[[Placement, Placement], None] | None = None,
                    **plan_kwargs) -> Placement:
    """Block until the job's best start, re-planning at most ``max_replans`` times; return the
    Placement to start (see the module docstring).

    ``plan_fn(job, now=..., settings=..., **plan_kwargs)`` defaults to ``carbonsched.planning.plan``
    (pass ``forecast_source``/``offerings_source`` through ``plan_kwargs``). ``on_replan(old, new)``
    is called when a re-plan moved the placement. Sleeps are chunks of at most ``replan_every``
    while re-plans remain, then one sleep to the start.
    """
    if isinstance(max_replans, bool) or not isinstance(max_replans, int) or max_replans < 0:
        raise UserInputError(f"max_replans must be a whole number >= 0, got {max_replans!r}")
    if replan_every <= timedelta(0):
        raise UserInputError("replan_every must be positive")
    if plan_fn is None:
        plan_fn = plan
    now = now_fn()
    pinned = pin_window(job, now, max_wait)
    best = plan_fn(pinned, now=now, settings=settings, **plan_kwargs).best
    replans = 0
    while True:
        now = now_fn()
        left = (best.start - now).total_seconds()
        if left <= 0:
            return best
        if replans >= max_replans:
            sleep(left)
            return best
        sleep(min(left, replan_every.total_seconds()))
        now = now_fn()
        if now >= best.start:
            return best
        replans += 1
        new = plan_fn(pinned, now=now, settings=settings, **plan_kwargs).best
        if (new.region_id, new.instance_type, new.market, new.start) != \
                (best.region_id, best.instance_type, best.market, best.start) and on_replan is not None:
            on_replan(best, new)
        best = new
