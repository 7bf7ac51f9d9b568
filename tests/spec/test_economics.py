"""Spot restarts and dataset transfer: the maths, the job tables, and the plan's identities."""
from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from carbonsched.spec.economics import DEFAULT_TRANSFER_KWH_PER_GB, DataSpec, SpotModel
from carbonsched.errors import JobSpecError
from carbonsched.planning.estimate import spot_expected_runtime
from carbonsched.spec.job import job_from_dict
from carbonsched.planning import plan
from carbonsched.settings import Settings

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)
BASE = {"gpu": "A100", "gpus": 8, "hours": 10, "window": {"max_delay": "6h"}, "constraints": {"gpu_types": ["A100"]}}


def test_spot_runtime_by_hand():
    # 0.1 preemptions/h, each losing 1h/2 + 0.5h = 1 h: T = 10 / (1 - 0.1) = 11.11 h
    assert spot_expected_runtime(np.array([10.0]), np.array([0.1]), 1.0)[0] == pytest.approx(100 / 9)
    assert spot_expected_runtime(np.array([10.0]), np.array([0.0]), 1.0)[0] == 10.0
    with pytest.raises(JobSpecError, match="never finishes"):
        spot_expected_runtime(np.array([10.0]), np.array([1.0]), 1.0)


def test_spot_model_rates_and_validation():
    m = SpotModel(preemption_rates={"aws": 0.2, "gcp:europe-*": 0.03, "gcp:europe-west4": 0.01})
    assert m.rate_for("aws:us-east-1") == 0.2
    assert m.rate_for("gcp:europe-west4") == 0.01 and m.rate_for("gcp:europe-west1") == 0.03
    assert m.rate_for("gcp:us-central1") == m.preemption_rate_per_hour
    with pytest.raises(JobSpecError, match="never finish"):
        SpotModel(preemption_rate_per_hour=1.0, checkpoint_interval_hours=2.0)


def test_egress_prices():
    d = DataSpec(size_gb=100, home_region="aws:us-east-1")
    assert d.usd_per_gb_to("aws:us-east-1") == 0.0
    assert d.usd_per_gb_to("aws:eu-west-1") == 0.02
    assert d.usd_per_gb_to("gcp:europe-west4") == 0.09
    assert DataSpec(size_gb=1, home_region="gcp:us-central1").usd_per_gb_to("aws:us-east-1") == 0.12


def test_job_tables_and_errors():
    job = job_from_dict({**BASE, "spot": {"checkpoint_interval": "30m", "preemption_rates": {"AWS": 0.1}},
                         "data": {"size_gb": 500, "home_region": "us-east-1"}})
    assert job.spot_model.checkpoint_interval_hours == 0.5 and job.spot_model.preemption_rates == {"aws": 0.1}
    assert job.data.home_region == "aws:us-east-1"
    assert job.to_dict()["data"]["size_gb"] == 500
    with pytest.raises(JobSpecError, match="needs data.home_region"):
        job_from_dict({**BASE, "data": {"size_gb": 5}})
    with pytest.raises(JobSpecError, match="did you mean 'data.size_gb'"):
        job_from_dict({**BASE, "data": {"size_g": 5, "home_region": "aws:us-east-1"}})
    with pytest.raises(JobSpecError, match="matches no provider or region"):
        job_from_dict({**BASE, "spot": {"preemption_rates": {"azure": 0.1}}})
    with pytest.raises(JobSpecError, match="did you mean 'constraints.spot'"):
        job_from_dict({**BASE, "spot": True})


def _identities(p):
    assert p.kg_co2e == pytest.approx(p.kg_co2e_operational + p.kg_co2e_embodied + p.kg_co2e_transfer)
    assert p.kg_co2e_operational == pytest.approx(p.energy_kwh * p.mean_intensity_g_per_kwh / 1000)
    assert p.cost_usd == pytest.approx(p.price_usd_per_hour * p.runtime_hours + p.data_transfer_usd)


def test_plan_includes_spot_restarts():
    job = job_from_dict({**BASE, "constraints": {**BASE["constraints"], "spot": True},
                         "spot": {"preemption_rate_per_hour": 0.1, "checkpoint_interval": "1h", "restart_overhead": "30m"}})
    result = plan(job, now=NOW, settings=Settings(), top=None)
    spot = [p for p in result.placements if p.market == "spot"]
    ondemand = [p for p in result.placements if p.market == "on-demand"]
    assert spot and ondemand
    for p in spot:  # runtime = T0 / (1 - 0.1 * 1.0): overhead = T0 / 9
        assert p.spot_restart_overhead_hours == pytest.approx((p.runtime_hours - p.spot_restart_overhead_hours) / 9)
        _identities(p)
    assert all(p.spot_restart_overhead_hours == 0 for p in ondemand)


def test_plan_includes_data_transfer():
    job = job_from_dict({**BASE, "data": {"size_gb": 1000, "home_region": "aws:us-east-1"}})
    result = plan(job, now=NOW, settings=Settings(), top=None)
    rows = result.placements + (result.baseline,)
    for p in rows:
        _identities(p)
        if p.region_id == "aws:us-east-1":
            assert p.data_transfer_usd == 0 and p.data_transfer_kwh == 0 and p.kg_co2e_transfer == 0
        else:
            assert p.data_transfer_kwh == pytest.approx(1000 * DEFAULT_TRANSFER_KWH_PER_GB)
            assert p.data_transfer_usd == pytest.approx(1000 * (0.02 if p.provider == "aws" else 0.09))
            assert p.kg_co2e_transfer > 0
    plain = plan(job_from_dict(BASE), now=NOW, settings=Settings(), top=None)
    assert all(p.data_transfer_usd == 0 and p.kg_co2e_transfer == 0 for p in plain.placements)
    doc = result.to_dict()["placements"][0]
    assert {"spot_restart_overhead_hours", "data_transfer_usd", "data_transfer_kwh", "kg_co2e_transfer"} <= set(doc)


def test_expensive_transfer_changes_the_cost_ranking():
    cheap = plan(job_from_dict({**BASE, "policy": {"objective": "cost"}}), now=NOW, settings=Settings()).best
    heavy = {**BASE, "policy": {"objective": "cost"},
             "data": {"size_gb": 1e6, "home_region": "aws:us-east-1", "egress_usd_per_gb": 1.0}}
    best = plan(job_from_dict(heavy), now=NOW, settings=Settings()).best
    assert best.region_id == "aws:us-east-1" and best.data_transfer_usd == 0
    assert cheap.cost_usd <= best.cost_usd
