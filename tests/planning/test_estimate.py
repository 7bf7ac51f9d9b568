"""The estimation model (carbonsched.planning.estimate) against hand-computed cases, and one end-to-end
plan on the embedded data checked against an independent reading of data/profiles.csv."""
from __future__ import annotations

import csv
import math
from datetime import datetime, timedelta, timezone
from importlib import resources

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from carbonsched.errors import JobSpecError
from carbonsched.models import EMBODIED_LIFE_HOURS, PowerModel
from carbonsched.planning.estimate import OfferingArrays, estimate, runtime_hours, window_mean


def _cum(*series):
    """(R, H+1) prefix sums of hourly series, the layout window_mean expects."""
    s = np.array(series, dtype=float)
    return np.concatenate([np.zeros((s.shape[0], 1)), np.cumsum(s, axis=1)], axis=1)


# ---------------------------------------------------------------- runtime_hours

def _rt(hours_ref, n_ref, ref_speed, n, speed, eff=0.9):
    return float(runtime_hours(hours_ref, n_ref, ref_speed, np.array([n]), np.array([speed]), eff)[0])


def test_runtime_same_gpu_and_count_is_reference_hours():
    assert _rt(10, 8, 1.0, 8, 1.0) == pytest.approx(10.0)
    assert _rt(7.5, 1, 312.0, 1, 312.0) == pytest.approx(7.5)


def test_runtime_twice_the_speed_takes_half_the_time():
    # 10 h * (8 * 1) / (8 * 2) = 5 h
    assert _rt(10, 8, 1.0, 8, 2.0) == pytest.approx(5.0)
    # datasheet units: 12 h on A100 (312 TFLOPS) -> H100 (989): 12 * 312 / 989
    assert _rt(12, 8, 312.0, 8, 989.0) == pytest.approx(12 * 312 / 989)


def test_runtime_doubling_gpus_keeps_scaling_efficiency():
    # E(16)/E(8) = 0.9 ** log2(2) = 0.9 -> 10 h * 8 / (16 * 0.9) = 10 / (2 * 0.9) = 5.5556 h
    assert _rt(10, 8, 1.0, 16, 1.0, eff=0.9) == pytest.approx(10 / (2 * 0.9))
    # four times the GPUs: 0.9 ** 2 = 0.81 -> 10 * 8 / (32 * 0.81) = 3.0864 h
    assert _rt(10, 8, 1.0, 32, 1.0, eff=0.9) == pytest.approx(10 / (4 * 0.81))
    # perfect scaling (eff = 1): 10 / 2
    assert _rt(10, 8, 1.0, 16, 1.0, eff=1.0) == pytest.approx(5.0)


def test_runtime_fewer_gpus_regains_the_efficiency_lost_by_scaling():
    # halving: E(4)/E(8) = 0.9 ** -1 -> 10 * 8 / (4 / 0.9) = 10 * 2 * 0.9 = 18 h
    assert _rt(10, 8, 1.0, 4, 1.0, eff=0.9) == pytest.approx(18.0)
    # 8 -> 1: 0.9 ** -3 -> 10 * 8 * 0.729 = 58.32 h
    assert _rt(10, 8, 1.0, 1, 1.0, eff=0.9) == pytest.approx(58.32)


def test_runtime_is_vectorised_over_offerings():
    n = np.array([8, 16, 4, 16])
    speed = np.array([1.0, 1.0, 1.0, 2.5])
    got = runtime_hours(10.0, 8, 1.0, n, speed, 0.9)
    # last: 10 * 8 / (16 * 2.5 * 0.9) = 80 / 36
    np.testing.assert_allclose(got, [10.0, 10 / 1.8, 18.0, 80 / 36])


# ---------------------------------------------------------------- window_mean

SERIES = [100.0, 200.0, 300.0, 400.0]  # cum = [0, 100, 300, 600, 1000]


@pytest.mark.parametrize("start, runtime, expected", [
    (0.0, 1.0, 100.0),
    (0.0, 4.0, 250.0),  # whole series, ends exactly at the last hour boundary
    (1.0, 2.0, 250.0),  # (200 + 300) / 2
    (0.5, 2.0, 200.0),  # (0.5*100 + 200 + 0.5*300) / 2
    (1.5, 0.25, 200.0),  # inside one hour
    (2.25, 1.75, (0.75 * 300 + 400) / 1.75),  # = 357.142857..., ends at the boundary H
    (0.75, 0.5, (0.25 * 100 + 0.25 * 200) / 0.5),  # = 150, straddles one boundary
])
def test_window_mean_piecewise_constant(start, runtime, expected):
    got = window_mean(_cum(SERIES), np.array([0]), np.array([start]), np.array([runtime]))
    assert got.shape == (1, 1)
    assert got[0, 0] == pytest.approx(expected)


def test_window_mean_several_regions_and_starts():
    cum = _cum(SERIES, [10.0, 10.0, 50.0, 50.0])
    region_index = np.array([1, 0])  # offering 0 -> second series, offering 1 -> first
    starts = np.array([0.0, 0.5, 1.0])
    runtimes = np.array([2.0, 1.5])
    got = window_mean(cum, region_index, starts, runtimes)
    expected = [
        # region 1, 2 h: (10+10)/2; (0.5*10 + 10 + 0.5*50)/2; (10+50)/2
        [10.0, 20.0, 30.0],
        # region 0, 1.5 h: (100 + 0.5*200)/1.5; (0.5*100 + 200)/1.5; (200 + 0.5*300)/1.5
        [200 / 1.5, 250 / 1.5, 350 / 1.5],
    ]
    np.testing.assert_allclose(got, expected)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.integers(0, 900), min_size=1, max_size=30),
    a=st.floats(0, 1), b=st.floats(0, 1),
)
def test_window_mean_equals_overlap_weighted_average(values, a, b):
    # independent definition: sum over hours i of v[i] * |[i, i+1) n [s, e)| / (e - s)
    H = len(values)
    s, e = sorted((a * H, b * H))
    if e - s < 1e-6:
        return
    expected = sum(v * max(0.0, min(i + 1, e) - max(i, s)) for i, v in enumerate(values)) / (e - s)
    got = window_mean(_cum(values), np.array([0]), np.array([s]), np.array([e - s]))[0, 0]
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-6)


# ---------------------------------------------------------------- estimate()

def test_estimate_hand_computed_two_offerings():
    power = PowerModel(utilisation_factor=0.75, host_w_per_vcpu=2.5, host_w_per_gib=0.5,
                       gpu_scaling_efficiency=0.9, embodied_life_hours=10000.0)
    o = OfferingArrays(
        gpu_count=np.array([4.0, 4.0]), speed=np.array([1.0, 2.5]), tdp_w=np.array([400.0, 700.0]),
        vcpus=np.array([48.0, 0.0]), memory_gib=np.array([200.0, 0.0]), pue=np.array([1.5, 1.2]),
        embodied_kg_per_gpu=np.array([150.0, 200.0]), usd_per_hour=np.array([12.5, 30.0]),
        region_index=np.array([0, 1]),
    )
    # region 0: 100 g/kWh for hours 0-4, 300 for hours 5-23; region 1: flat 50
    cum = _cum([100.0] * 5 + [300.0] * 19, [50.0] * 24)
    est = estimate(o, hours_ref=10.0, n_ref=4, ref_speed=1.0, power=power,
                   start_h=np.array([0.0, 0.5]), intensity_cum=cum)

    # runtime: same count; speed 1 -> 10 h; speed 2.5 -> 10 / 2.5 = 4 h
    np.testing.assert_allclose(est.runtime_h, [10.0, 4.0])
    # power: 4*0.75*400 + 48*2.5 + 200*0.5 = 1200 + 120 + 100 = 1420 W; 4*0.75*700 = 2100 W
    np.testing.assert_allclose(est.power_w, [1420.0, 2100.0])
    # energy: 1420 W * 10 h * 1.5 / 1000 = 21.3 kWh; 2100 * 4 * 1.2 / 1000 = 10.08 kWh
    np.testing.assert_allclose(est.energy_kwh, [21.3, 10.08])
    # cost: 12.5 * 10 = 125; 30 * 4 = 120
    np.testing.assert_allclose(est.cost_usd, [125.0, 120.0])
    # embodied: 4 * 150 * 10 / 10000 = 0.6 kg; 4 * 200 * 4 / 10000 = 0.32 kg
    np.testing.assert_allclose(est.kg_embodied, [0.6, 0.32])
    # mean intensity, offering 0: start 0 -> (5*100 + 5*300)/10 = 200; start 0.5 ->
    # (4.5*100 + 5.5*300)/10 = 210. Offering 1: flat 50.
    np.testing.assert_allclose(est.mean_intensity, [[200.0, 210.0], [50.0, 50.0]])
    # operational = energy * mean / 1000: 21.3*200/1000 = 4.26, 21.3*210/1000 = 4.473; 10.08*50/1000 = 0.504
    np.testing.assert_allclose(est.kg_operational, [[4.26, 4.473], [0.504, 0.504]])
    np.testing.assert_allclose(est.kg_operational, est.energy_kwh[:, None] * est.mean_intensity / 1000)
    # total = operational + embodied
    np.testing.assert_allclose(est.kg_co2e, [[4.86, 5.073], [0.824, 0.824]])


def test_estimate_default_power_model_uses_documented_constants():
    # one 700 W GPU (the H100 SXM of the docstring), 10 vCPUs, 100 GiB, PUE 1, 1 h at 1000 g/kWh:
    # P = 0.84*700 + 10*3.4 + 100*0.3725 = 588 + 34 + 37.25 = 659.25 W -> 0.65925 kWh -> 0.65925 kg
    # embodied: 1 GPU * 1314.9 kg * 1 h / 13149 h = 0.1 kg
    o = OfferingArrays(
        gpu_count=np.array([1.0]), speed=np.array([1.0]), tdp_w=np.array([700.0]), vcpus=np.array([10.0]),
        memory_gib=np.array([100.0]), pue=np.array([1.0]), embodied_kg_per_gpu=np.array([1314.9]),
        usd_per_hour=np.array([4.0]), region_index=np.array([0]),
    )
    est = estimate(o, hours_ref=1.0, n_ref=1, ref_speed=1.0, power=PowerModel(),
                   start_h=np.array([0.0]), intensity_cum=_cum([1000.0, 1000.0]))
    assert EMBODIED_LIFE_HOURS == 13149.0
    assert est.power_w[0] == pytest.approx(659.25)
    assert est.energy_kwh[0] == pytest.approx(0.65925)
    assert est.kg_embodied[0] == pytest.approx(0.1)
    assert est.kg_co2e[0, 0] == pytest.approx(0.75925)


# ---------------------------------------------------------------- PowerModel validation

@pytest.mark.parametrize("kwargs", [
    {"utilisation_factor": float("nan")},
    {"utilisation_factor": -0.1},
    {"utilisation_factor": 0.0},  # the range is (0, 1.5]
    {"utilisation_factor": 1.5001},
    {"utilisation_factor": float("inf")},
    {"utilisation_factor": True},
    {"utilisation_factor": "0.8"},
    {"host_w_per_vcpu": -1.0},
    {"host_w_per_vcpu": float("nan")},
    {"host_w_per_gib": -0.01},
    {"gpu_scaling_efficiency": 0.0},
    {"gpu_scaling_efficiency": 1.01},
    {"gpu_scaling_efficiency": float("nan")},
    {"embodied_life_hours": 0.0},
    {"embodied_life_hours": -5.0},
])
def test_power_model_rejects_bad_values(kwargs):
    with pytest.raises(JobSpecError):
        PowerModel(**kwargs)


@pytest.mark.parametrize("kwargs", [
    {"utilisation_factor": 1.5}, {"utilisation_factor": 0.45}, {"host_w_per_vcpu": 0.0},
    {"host_w_per_gib": 0.0}, {"gpu_scaling_efficiency": 1.0}, {"utilisation_factor": 1},
])
def test_power_model_accepts_boundary_values(kwargs):
    pm = PowerModel(**kwargs)
    for name, value in kwargs.items():
        assert getattr(pm, name) == value


# ---------------------------------------------------------------- end to end through plan()

NOW = datetime(2026, 11, 27, 10, 30, tzinfo=timezone.utc)


def _profile_mean(zone: str) -> dict[tuple[int, int], float]:
    """{(month, hour): mean g/kWh} of one zone, read from data/profiles.csv with csv."""
    text = resources.files("carbonsched.data").joinpath("profiles.csv").read_text()
    out = {}
    for row in csv.DictReader(text.splitlines()):
        if row["zone"] == zone and row["stat"] == "mean":
            for h in range(24):
                out[(int(row["month"]), h)] = float(row[f"h{h:02d}"])
    assert len(out) == 12 * 24
    return out


def _region_profile_zone(region_id: str) -> str:
    text = resources.files("carbonsched.data").joinpath("regions.csv").read_text()
    (row,) = [r for r in csv.DictReader(text.splitlines()) if r["region_id"] == region_id]
    return row["profile_zone"]


def _independent_mean(zone: str, start: datetime, end: datetime) -> float:
    """Time-average of the zone's month x hour cells over [start, end), partial hours weighted."""
    table = _profile_mean(zone)
    t = start.replace(minute=0, second=0, microsecond=0)
    total = 0.0
    while t < end:
        nxt = t + timedelta(hours=1)
        overlap = (min(nxt, end) - max(t, start)) / timedelta(hours=1)
        total += overlap * table[(t.month, t.hour)]
        t = nxt
    return total / ((end - start) / timedelta(hours=1))


@pytest.fixture(scope="module")
def a100_plan():
    from carbonsched.spec.job import job_from_dict
    from carbonsched.planning import plan
    from carbonsched.settings import Settings

    job = job_from_dict({"gpu": "A100", "gpus": 8, "hours": 12, "window": {"max_delay": "24h"}})
    return plan(job, now=NOW, settings=Settings(), top=None)


def test_plan_placements_are_self_consistent(a100_plan):
    p = a100_plan
    assert p.placements and p.baseline is not None
    latest = NOW + timedelta(hours=24)
    for x in list(p.placements) + [p.baseline]:
        assert x.kg_co2e_operational == pytest.approx(x.energy_kwh * x.mean_intensity_g_per_kwh / 1000, rel=1e-9)
        assert x.kg_co2e == pytest.approx(x.kg_co2e_operational + x.kg_co2e_embodied, rel=1e-12)
        assert (x.end - x.start) / timedelta(hours=1) == pytest.approx(x.runtime_hours, abs=1e-6)
        assert NOW <= x.start <= latest
        assert x.runtime_hours > 0 and x.energy_kwh > 0 and x.kg_co2e_embodied > 0
        assert x.cost_usd == pytest.approx(x.price_usd_per_hour * x.runtime_hours)
    # the baseline is "default region (aws:us-east-1), start now", on the job's own hardware
    assert p.baseline.start == NOW and p.baseline.region_id == "aws:us-east-1"
    assert p.baseline.runtime_hours == pytest.approx(12.0)
    # ranked by carbon (the default objective), one entry per offering
    kg = [x.kg_co2e for x in p.placements]
    assert kg == sorted(kg)
    # the placements' starts are "now" or whole UTC hours
    for x in p.placements:
        assert x.start == NOW or (x.start.minute, x.start.second, x.start.microsecond) == (0, 0, 0)


def test_plan_mean_intensity_matches_profiles_csv(a100_plan):
    # top placement (whole-hour start) and baseline (starts at 10:30, so partial first hour)
    checked = 0
    for x in (a100_plan.placements[0], a100_plan.baseline):
        assert x.intensity_source == "embedded-profile"
        zone = _region_profile_zone(x.region_id)
        assert zone
        expected = _independent_mean(zone, x.start, x.end)
        assert x.mean_intensity_g_per_kwh == pytest.approx(expected, rel=1e-6)
        checked += 1
    assert checked == 2
