"""wait_for_window: a fake clock and sleep; bounded re-planning; the window stays pinned."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from carbonsched.errors import InfeasibleError, UserInputError
from carbonsched.spec.job import job_from_dict
from carbonsched.run.wait import pin_window, wait_for_window
from carbonsched.settings import Settings

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)
JOB = job_from_dict({"gpu": "A100", "gpus": 8, "hours": 4, "window": {"max_delay": "24h"},
                     "constraints": {"gpu_types": ["A100"]}})


class Clock:
    def __init__(self):
        self.t, self.sleeps = T0, []

    def now(self):
        return self.t

    def sleep(self, seconds):
        assert seconds > 0
        self.sleeps.append(seconds)
        self.t += timedelta(seconds=seconds)


def test_waits_until_the_planned_start_with_bounded_replans():
    clock = Clock()
    calls = []

    def plan_fn(job, *, now, settings):
        from carbonsched.planning import plan

        calls.append((now, job.earliest_start, job.max_delay_hours))
        return plan(job, now=now, settings=settings)

    p = wait_for_window(JOB, now_fn=clock.now, sleep=clock.sleep, settings=Settings(), max_replans=2, plan_fn=plan_fn)
    assert clock.t >= p.start and clock.t - p.start < timedelta(seconds=1)
    assert len(calls) <= 3  # the first plan + at most 2 re-plans
    assert all(e == T0 and d == 24 for _, e, d in calls)  # the window is pinned at the first plan
    assert all(s <= 3600 for s in clock.sleeps[:-1])


class FakePlan:
    def __init__(self, best):
        self.best = best


def _placement(start):
    from carbonsched.models import Placement

    return Placement(provider="aws", region="eu-north-1", zone=None, instance_type="p4d.24xlarge", gpu="A100",
                     gpu_count=8, market="on-demand", start=start, end=start + timedelta(hours=4), runtime_hours=4,
                     energy_kwh=1, mean_intensity_g_per_kwh=1, kg_co2e_operational=0.001, kg_co2e_embodied=0,
                     kg_co2e=0.001, cost_usd=1, price_usd_per_hour=0.25, intensity_source="x", intensity_signal="y", pue=1)


def test_a_moved_window_is_followed_and_replans_are_bounded():
    clock = Clock()
    starts = iter([T0 + timedelta(hours=5), T0 + timedelta(hours=3), T0 + timedelta(hours=8), T0 + timedelta(hours=2)])
    moved = []
    p = wait_for_window(JOB, now_fn=clock.now, sleep=clock.sleep, max_replans=2, replan_every=timedelta(hours=1),
                        plan_fn=lambda job, now, settings: FakePlan(_placement(next(starts))),
                        on_replan=lambda old, new: moved.append((old.start, new.start)))
    # plan: +5 h; re-plan at +1 h: +3 h; re-plan at +2 h: +8 h; no re-plans left: sleep to +8 h
    assert p.start == T0 + timedelta(hours=8) and clock.t == p.start
    assert moved == [(T0 + timedelta(hours=5), T0 + timedelta(hours=3)), (T0 + timedelta(hours=3), T0 + timedelta(hours=8))]


def test_start_now_does_not_sleep():
    clock = Clock()
    p = wait_for_window(JOB, now_fn=clock.now, sleep=clock.sleep, plan_fn=lambda job, now, settings: FakePlan(_placement(now)))
    assert p.start == T0 and clock.sleeps == []


def test_max_wait_caps_the_window():
    pinned = pin_window(JOB, T0, timedelta(hours=3))
    assert pinned.earliest_start == T0 and pinned.max_delay_hours == 3
    assert pin_window(replace(JOB, max_delay_hours=None), T0, timedelta(hours=5)).max_delay_hours == 5
    clock = Clock()
    p = wait_for_window(JOB, now_fn=clock.now, sleep=clock.sleep, settings=Settings(), max_wait=timedelta(hours=2))
    assert p.start <= T0 + timedelta(hours=2)
    with pytest.raises(UserInputError):
        wait_for_window(JOB, now_fn=clock.now, sleep=clock.sleep, max_replans=-1)


def test_errors_raise_before_sleeping():
    clock = Clock()
    job = job_from_dict({"gpu": "A100", "gpus": 8, "hours": 4, "constraints": {"max_usd_per_hour": 0.01}})
    with pytest.raises(InfeasibleError):
        wait_for_window(job, now_fn=clock.now, sleep=clock.sleep, settings=Settings())
    assert clock.sleeps == []
