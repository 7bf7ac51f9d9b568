"""Robust deferral in batch plans: a batch keeps the deferral rule ``plan`` applies to each job."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from carbonsched.cli.render import render_batch
from carbonsched.planning.batch import plan_batch
from carbonsched.planning.single import plan
from carbonsched.settings import Settings
from carbonsched.spec.batch_file import read_batch
from carbonsched.spec.job import job_from_dict

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)
SETTINGS = Settings()
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def h100(name, regions, deferral="robust", hours=6):
    return job_from_dict({"name": name, "gpu": "H100", "gpus": 8, "hours": hours, "window": {"max_delay": "24h"},
                          "constraints": {"gpu_types": ["H100"], "gpu_counts": [8], "regions": regions},
                          "policy": {"deferral": deferral}})


def where(p):
    return None if p is None else (p.region_id, p.instance_type, p.start)


@pytest.mark.parametrize("now", [NOW, datetime(2026, 6, 1, 3, 30, tzinfo=timezone.utc)])
def test_unlimited_batch_places_every_job_where_plan_puts_it_alone(now):
    jobs, _, _ = read_batch(EXAMPLES / "batch.toml")
    bp = plan_batch(jobs, now=now, settings=SETTINGS)
    assert [where(p) for p in bp.placements] == [where(plan(j, now=now, settings=SETTINGS).placements[0]) for j in jobs]
    assert [where(p) for p in bp.greedy] == [where(p) for p in bp.placements]  # greedy gets the same rule


def test_a_refused_wait_starts_now_and_the_solver_would_have_waited():
    regions = ["gcp:northamerica-northeast2", "aws:eu-north-1"]
    a = h100("a", regions)
    alone = plan(a, now=NOW, settings=SETTINGS).placements[0]
    expected = plan(h100("a", regions, "expected"), now=NOW, settings=SETTINGS).placements[0]
    assert alone.start == NOW and expected.start > NOW  # the mean forecast would wait; its p90 does not beat now
    bp = plan_batch([a], now=NOW, settings=SETTINGS)
    assert where(bp.placements[0]) == where(alone)
    r = bp.solver["robust_deferral"]
    assert r["moved"] == 1 and r["waiting_for_capacity"] == 0 and r["objective_change"] > 0
    assert bp.placements[0].kg_co2e == pytest.approx(alone.kg_co2e)
    # with deferral = "expected" the batch keeps the solver's (mean-forecast) choice: no rule to apply
    e = plan_batch([h100("a", regions, "expected")], now=NOW, settings=SETTINGS)
    assert where(e.placements[0]) == where(expected) and "robust_deferral" not in e.solver


def test_a_job_waits_only_when_capacity_is_full_now():
    region = ["aws:eu-north-1"]
    bp = plan_batch([h100("a", region), h100("b", region)], now=NOW, settings=SETTINGS, capacity=8)
    a, b = bp.placements
    assert a.start == NOW  # first come: plan's choice
    assert b.start >= a.end  # "now" is full until a ends: b waits for room, not for a forecast gain
    r = bp.solver["robust_deferral"]
    assert r == {**r, "moved": 1, "waiting_for_capacity": 1}
    text = render_batch(bp.to_dict())
    assert "robust deferral: 1 job(s) start where plan would put them" in text
    assert "1 wait because capacity is full earlier" in text


def test_moves_never_unplace_a_job_nor_break_capacity():
    regions = ["aws:eu-north-1", "aws:ca-central-1", "gcp:northamerica-northeast2"]
    jobs = [h100(f"j{i}", regions, hours=3 + i % 4) for i in range(9)]
    free = plan_batch(jobs, now=NOW, settings=SETTINGS, capacity=16)
    solver_only = plan_batch([h100(j.name, regions, "expected", hours=j.hours) for j in jobs], now=NOW,
                             settings=SETTINGS, capacity=16)
    assert free.totals()["jobs"] == solver_only.totals()["jobs"] == 9
    use: dict = {}
    for p in free.placements:
        first = int((p.start - NOW).total_seconds() // 3600)
        last = int(np.ceil((p.end - NOW).total_seconds() / 3600 - 1e-9))
        for h in range(first, last):
            use[(p.region_id, h)] = use.get((p.region_id, h), 0) + p.gpu_count
    assert max(use.values()) <= 16
    r = free.solver["robust_deferral"]
    assert r["moved"] >= 1 and r["moved"] + r["waiting_for_capacity"] <= 9
