"""Ledger arithmetic against hand-computed cases, with an injected grid source."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from carbonsched.errors import SourceUnavailableError, UserInputError
from carbonsched.models import EMBODIED_LIFE_HOURS, PowerModel
from carbonsched.measure.ledger import build_ledger, calibrate_utilisation, resolve_device_gpu, run_intensity
from carbonsched.models import Forecast
from carbonsched.providers.grid.series import HourlySeries
from carbonsched.refdata import resolve_region

T0 = datetime(2026, 11, 27, 10, tzinfo=timezone.utc)
RUN = "gcp:us-central1"
BASE = "aws:us-east-1"


class FakeLive:
    """History for the run's region: 100 g/kWh in hour 0 only (hour 1 not yet published)."""

    name = "fake-live"

    def __init__(self, fail: bool = False):
        self.fail = fail

    def history(self, region, end, hours):
        if self.fail:
            raise SourceUnavailableError("down")
        values = np.full(hours, np.nan)
        if region.region_id == RUN:
            values[0] = 100.0
        return HourlySeries(zone=region.grid_zone, start=end - timedelta(hours=hours), values_g_per_kwh=values,
                            signal="average-lca", source="fake-live", kind="history")


class FakeSource:
    """Forecast: 200 g/kWh (p10 150, p90 250) for the run's region, 400 for the baseline region."""

    def __init__(self, live=None):
        self.live = live

    def forecast(self, region, start, hours):
        level = 200.0 if region.region_id == RUN else 400.0
        v = np.full(hours, level)
        return Forecast(region_id=region.region_id, zone=region.grid_zone, start=start, intensity_g_per_kwh=v,
                        p10_g_per_kwh=v - 50, p90_g_per_kwh=v + 50, source="fake-forecast", kind="forecast",
                        signal="average-lca")


def record(gpu_kwh=0.6, cpu_kwh=0.3, mem_kwh=0.1, hourly=(1.0, 3.0), devices=1, method="nvml-energy", wall_h=2.0):
    return {
        "schema": "carbonsched.measurement", "schema_version": 1, "job_id": "j1", "command": ["train"],
        "exit_code": 0, "started_at": "2026-11-27T10:00:00Z", "ended_at": "2026-11-27T12:00:00Z",
        "wall_seconds": wall_h * 3600, "region_id": RUN,
        "gpu": {"method": method, "energy_kwh": gpu_kwh,
                "devices": [{"index": i, "name": "NVIDIA A100-SXM4-40GB", "method": method,
                             "energy_kwh": gpu_kwh / devices, "tdp_w": 400.0} for i in range(devices)]},
        "cpu": {"method": "rapl", "energy_kwh": cpu_kwh}, "memory": {"method": "model", "energy_kwh": mem_kwh},
        "it_energy_kwh": sum(hourly),
        "hourly": [{"hour": (T0 + timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M:%SZ"), "it_energy_kwh": e}
                   for i, e in enumerate(hourly)],
        "warnings": [],
    }


PLAN = {"placements": [{"rank": 1, "region_id": RUN, "start": "2026-11-27T10:00:00Z", "runtime_hours": 2.0,
                        "energy_kwh": 4.0, "mean_intensity_g_per_kwh": 150.0, "kg_co2e": 1.0, "gpu": "A100",
                        "gpu_count": 1, "intensity_source": "embedded-profile", "intensity_signal": "average-lca"}],
        "baseline": {"region_id": BASE}}


def test_hand_computed_ledger():
    led = build_ledger(record(), source=FakeSource(FakeLive()), plan=PLAN)
    pue, pue_b = resolve_region(RUN).pue, resolve_region(BASE).pue
    # hour 0: 1 kWh at 100 (history); hour 1: 3 kWh at 200 (forecast)
    assert led.it_energy_kwh == pytest.approx(4.0)
    assert led.facility_energy_kwh == pytest.approx(4.0 * pue)
    assert led.kg_co2e_operational == pytest.approx((1 * 100 + 3 * 200) * pue / 1000)
    assert led.intensity_g_per_kwh == pytest.approx(175.0)
    assert [h["label"] for h in led.hourly] == ["fake-live/history", "fake-forecast/forecast"]
    assert led.intensity_kind == "history+forecast"
    emb = 1 * 43.24 * 2.0 / EMBODIED_LIFE_HOURS  # A100 (40 GB) embodied 43.24 kg, 2 h of 13,149
    assert led.kg_co2e_embodied == pytest.approx(emb)
    total = led.kg_co2e_operational + emb
    # forecast: 1.0 kg, 4.0 kWh, 150 g/kWh
    f = led.forecast
    assert f["error_kg"] == pytest.approx(total - 1.0)
    assert f["error_pct"] == pytest.approx((total - 1.0) * 100)
    assert f["energy_error_pct"] == pytest.approx((4.0 * pue - 4.0) / 4.0 * 100)
    assert f["intensity_error_pct"] == pytest.approx((175 - 150) / 150 * 100)
    # baseline: the same 4 kWh at 400 g/kWh in aws:us-east-1, plus the same embodied
    b = led.baseline
    assert b["kg_co2e"] == pytest.approx(4.0 * pue_b * 400 / 1000 + emb)
    assert b["saving_pct"] == pytest.approx((b["kg_co2e"] - total) / b["kg_co2e"] * 100)
    # energy estimate: 0.84 x 400 W x 2 h = 0.672 kWh modelled vs 0.6 measured
    e = led.energy_estimate
    assert e["gpu_model_kwh"] == pytest.approx(0.672)
    assert e["error_pct"] == pytest.approx(12.0)
    assert e["implied_utilisation_factor"] == pytest.approx(0.75)
    # uncertainty: energy parts 0.6 kWh at 5 %, 0.3 at 10 %, 0.1 at 50 %; intensity: only hour 1 has a
    # spread (50 g on 200), weight 3/4, over the energy-weighted mean 175
    e_rel = np.sqrt((0.6 * 0.05) ** 2 + (0.3 * 0.10) ** 2 + (0.1 * 0.5) ** 2) / 1.0
    i_rel = 0.75 * 50 / 175
    assert led.uncertainty["energy_rel"] == pytest.approx(e_rel)
    assert led.uncertainty["intensity_rel"] == pytest.approx(i_rel)
    assert led.uncertainty["total_rel"] == pytest.approx(np.hypot(e_rel, i_rel))
    assert led.uncertainty["history_share"] == pytest.approx(0.25)


def test_without_history_the_forecast_is_used_and_labelled():
    led = build_ledger(record(), source=FakeSource(FakeLive(fail=True)))
    assert led.intensity_kind == "forecast"
    assert led.kg_co2e_operational == pytest.approx(4.0 * resolve_region(RUN).pue * 200 / 1000)
    assert any("no history from fake-live" in w for w in led.warnings)
    assert led.forecast is None and led.baseline is None


def test_baseline_region_argument_and_region_required():
    led = build_ledger(record(), source=FakeSource(), baseline_region=BASE)
    assert led.baseline["region_id"] == BASE
    rec = record()
    rec["region_id"] = None
    with pytest.raises(UserInputError, match="where did the job run"):
        build_ledger(rec, source=FakeSource())


def test_modelled_gpu_energy_is_not_compared_with_the_model():
    led = build_ledger(record(method="model"), source=FakeSource())
    assert led.energy_estimate is None
    assert led.uncertainty["energy_rel"] > 0.05


def test_run_intensity_fills_missing_history_hours():
    ri = run_intensity(resolve_region(RUN), T0, 3, FakeSource(FakeLive()))
    assert list(ri.values_g_per_kwh) == [100.0, 200.0, 200.0]
    assert ri.source == "fake-live+fake-forecast"


def test_device_names_resolve_to_reference_gpus():
    assert resolve_device_gpu("NVIDIA H100 80GB HBM3").name == "H100"
    assert resolve_device_gpu("NVIDIA A100-SXM4-40GB").name == "A100"
    assert resolve_device_gpu("Tesla V100-SXM2-16GB").name == "V100"
    assert resolve_device_gpu("Some Future GPU") is None


def test_calibration_is_gpu_time_weighted():
    r1 = record(gpu_kwh=0.3, devices=1, wall_h=1.0)  # 300 Wh of 400 W x 1 h -> 0.75
    r2 = record(gpu_kwh=0.7, devices=2, wall_h=1.0)  # 700 Wh of 800 W x 1 h -> 0.875
    modelled = record(method="model")
    cal = calibrate_utilisation([r1, r2, modelled])
    assert cal.utilisation_factor == pytest.approx(1000 / 1200)
    assert cal.runs == 2 and cal.gpu_hours == pytest.approx(3.0)
    assert cal.per_run == pytest.approx((0.75, 0.875))
    assert cal.power_model(PowerModel(host_w_per_vcpu=5.0)).utilisation_factor == pytest.approx(1000 / 1200)
    with pytest.raises(UserInputError, match="no past run has measured GPU energy"):
        calibrate_utilisation([modelled])
