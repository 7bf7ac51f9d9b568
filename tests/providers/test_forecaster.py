"""Forecaster, baselines, rolling-origin backtest and the history-file reader."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carbonsched.errors import UserInputError
from carbonsched.providers.grid.backtest import backtest
from carbonsched.providers.grid.history import read_history_csv
from carbonsched.providers.grid.forecaster import (
    MODELS, ForecastArrays, fill_gaps, forecast_series, persistence, seasonal_naive_24h, weekly_mean,
)
from conftest import SHARED_DATA

UTC = timezone.utc
T0 = datetime(2022, 3, 1, tzinfo=UTC)
RAW_ES = SHARED_DATA / "carbon_intensity" / "electricitymaps_hourly_raw" / "ES_2022_hourly.csv"


def daily(n: int, level=300.0, amp=80.0, phase=0.0) -> np.ndarray:
    t = np.arange(n)
    return level + amp * np.sin(2 * np.pi * t / 24 + phase)


# --------------------------------------------------------------------------- forecaster properties
@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(336, 900),
    horizon=st.integers(1, 168),
    level=st.floats(5, 900),
    amp=st.floats(0, 1),
    noise=st.floats(0, 0.3),
    seed=st.integers(0, 10_000),
    gap_frac=st.floats(0, 0.3),
)
def test_forecast_shape_finite_ordered(n, horizon, level, amp, noise, seed, gap_frac):
    rng = np.random.default_rng(seed)
    x = daily(n, level, amp * level * 0.5) * (1 + noise * rng.standard_normal(n))
    x[rng.random(n) < gap_frac] = np.nan
    x[-1 - int(rng.integers(0, 5)):] = np.nan if rng.random() < 0.3 else x[-1]
    if np.isfinite(x[-336:]).sum() < 168:
        with pytest.raises(ValueError):
            forecast_series(x, T0, horizon)
        return
    f = forecast_series(x, T0, horizon)
    assert isinstance(f, ForecastArrays)
    for arr in (f.mean, f.p10, f.p90):
        assert arr.shape == (horizon,)
        assert np.all(np.isfinite(arr))
    assert np.all(f.p10 <= f.mean) and np.all(f.mean <= f.p90)
    assert f.start == T0 + timedelta(hours=n)


@settings(max_examples=20, deadline=None)
@given(value=st.floats(0, 2000), n=st.integers(336, 1500), horizon=st.integers(1, 168))
def test_constant_history_constant_forecast(value, n, horizon):
    for name, model in MODELS.items():
        f = model(np.full(n, value), T0, horizon)
        np.testing.assert_allclose(f.mean, value, rtol=1e-9, atol=1e-9, err_msg=name)
        np.testing.assert_allclose(f.p90 - f.p10, 0.0, atol=1e-9 * max(1, value), err_msg=name)


def test_daily_sinusoid_forecast_nearly_exact():
    n = 6 * 168
    x = daily(n + 168)
    f = forecast_series(x[:n], T0, 168)
    np.testing.assert_allclose(f.mean, x[n:], atol=1e-6)
    assert np.max(f.p90 - f.p10) < 1e-6


def test_weekly_pattern_captured():
    rng = np.random.default_rng(1)
    n = 8 * 168
    t = np.arange(n + 168)
    weekend = ((t // 24) % 7 >= 5).astype(float)
    x = daily(n + 168, 400, 60) - 120 * weekend + rng.normal(0, 3, n + 168)
    f = forecast_series(x[:n], T0, 168)
    base = weekly_mean(x[:n], T0, 168)
    truth = x[n:]
    mae_f = np.mean(np.abs(f.mean - truth))
    mae_b = np.mean(np.abs(base.mean - truth))
    assert mae_f < 10, mae_f  # the weekday/weekend step is 120 g
    assert mae_f < 0.3 * mae_b


def test_trend_is_followed():
    n = 4 * 168
    t = np.arange(n + 24)
    x = daily(n + 24, 200, 40) + 0.2 * t
    f = forecast_series(x[:n], T0, 24)
    assert np.mean(np.abs(f.mean - x[n:])) < 3.0  # weekly mean would lag by ~0.2 * 96 = 19 g
    assert np.mean(np.abs(weekly_mean(x[:n], T0, 24).mean - x[n:])) > 15


@pytest.mark.parametrize("n", [0, 10, 335])
def test_too_short_history_raises(n):
    with pytest.raises(ValueError, match="336 hours"):
        forecast_series(daily(n) if n else np.array([]), T0, 24)


def test_mostly_missing_history_raises():
    x = daily(400)
    x[-336:-10] = np.nan
    with pytest.raises(ValueError, match="valid"):
        forecast_series(x, T0, 24)
    with pytest.raises(ValueError):
        forecast_series(np.full(500, np.nan), T0, 24)


def test_nan_gaps_leading_internal_trailing():
    n = 5 * 168
    x = daily(n + 24)
    h = x[:n].copy()
    h[:50] = np.nan
    h[300:305] = np.nan
    h[500:540] = np.nan
    h[-3:] = np.nan
    f = forecast_series(h, T0, 24)
    assert np.all(np.isfinite(f.mean))
    np.testing.assert_allclose(f.mean, x[n:], atol=1.0)
    assert f.diagnostics["imputed_hours"] == 50 + 5 + 40 + 3


def test_fill_gaps_follows_daily_shape():
    x = daily(24 * 10)
    h = x.copy()
    h[100:110] = np.nan
    np.testing.assert_allclose(fill_gaps(h), x, atol=1e-9)


def test_forecast_week_ahead_from_eight_weeks():
    # the shape the planner asks for (speed: benchmarks/plan_speed.py, table 4)
    x = daily(8 * 168) + np.random.default_rng(0).normal(0, 10, 8 * 168)
    f = forecast_series(x, T0, 168)
    assert f.mean.shape == (168,) and np.all(np.isfinite(f.mean))
    err = np.abs(f.mean - daily(9 * 168)[8 * 168:])
    assert err.mean() < 8.0 and err.max() < 25.0  # noise sd 10; a flat mean would be ~50 off on average


# --------------------------------------------------------------------------- baselines
def test_baselines_on_hand_made_series():
    # 8 days: day k has value 10 * k + hour / 10
    x = np.array([10.0 * k + h / 10 for k in range(8) for h in range(24)])
    p = persistence(x, T0, 30)
    np.testing.assert_allclose(p.mean, 72.3)
    s = seasonal_naive_24h(x, T0, 30)
    expected_day = 70 + np.arange(24) / 10
    np.testing.assert_allclose(s.mean, expected_day[np.arange(30) % 24])
    w = weekly_mean(x, T0, 30)
    # the last 7 days are days 1..7: mean 40 + hour / 10
    np.testing.assert_allclose(w.mean, (40 + np.arange(24) / 10)[np.arange(30) % 24])
    for f in (p, s, w):
        assert f.start == T0 + timedelta(hours=192)
        np.testing.assert_array_equal(f.p10, f.mean)


def test_baselines_skip_missing():
    x = np.array([10.0 * k + h for k in range(8) for h in range(24)])
    x[-1] = np.nan  # last hour missing: persistence uses the one before
    x[-24 + 5] = np.nan  # yesterday 05:00 missing: seasonal naive steps back a day
    assert persistence(x, T0, 1).mean[0] == x[-2]
    s = seasonal_naive_24h(x, T0, 24)
    assert s.mean[5] == 60 + 5
    assert s.mean[23] == 60 + 23
    w = weekly_mean(x, T0, 24)
    assert w.mean[5] == pytest.approx(np.mean([10 * k + 5 for k in range(1, 7)]))


def test_registry_names():
    assert set(MODELS) == {"forecaster", "persistence", "seasonal_naive_24h", "weekly_mean"}


# --------------------------------------------------------------------------- backtest
def test_backtest_hand_computed_mae():
    # 15 days of a flat 100 followed by one day of 110: at the single origin (day 14 00:00),
    # persistence / seasonal naive / weekly mean all say 100 -> MAE 10, MAPE 10/110.
    x = np.concatenate([np.full(336, 100.0), np.full(24, 110.0)])
    start = datetime(2022, 1, 1, tzinfo=UTC)
    res = backtest(x, start, horizon_h=24, zone="TEST")
    assert len(res.origins) == 1 and res.origins[0] == start + timedelta(days=14)
    d = res.to_dict()
    assert d["zone"] == "TEST" and d["horizon_hours"] == 24
    assert set(d["models"]) == {"forecaster", "persistence", "seasonal_naive_24h", "weekly_mean"}
    for name in ("persistence", "seasonal_naive_24h", "weekly_mean", "forecaster"):
        m = d["models"][name]
        assert m["mae"] == pytest.approx(10.0)
        assert m["mape"] == pytest.approx(100 * 10 / 110)
        assert m["spearman"] is None  # flat forecast and actual: no rank order
        assert m["per_horizon_mae"] == pytest.approx([10.0] * 24)
    json.dumps(d)  # JSON-safe (no NaN)


def test_backtest_hand_computed_two_origins_and_spearman():
    start = datetime(2022, 1, 1, tzinfo=UTC)
    base = np.tile(np.arange(24, dtype=float) + 100, 16)  # identical days 100..123
    x = base.copy()
    x[336:360] += 4.0  # day 14 is 4 g higher; day 15 equal to the pattern
    res = backtest(x, start, horizon_h=24, origins=(336, 360, 24), models=["seasonal_naive_24h", "persistence"])
    sn = res.models["seasonal_naive_24h"]
    # origin 336: forecast = day 13 -> error 4 everywhere; origin 360: forecast = day 14 -> error 4
    assert sn.mae == pytest.approx(4.0)
    assert sn.spearman == pytest.approx(1.0)
    pers = res.models["persistence"]
    # origin 336: last value 123 vs 104..127: mean |123 - (104 + h)| over h
    e1 = np.abs(123 - (104 + np.arange(24)))
    e2 = np.abs(127 - (100 + np.arange(24)))
    assert pers.mae == pytest.approx(np.mean(np.concatenate([e1, e2])))
    np.testing.assert_allclose(pers.per_horizon_mae, (e1 + e2) / 2)
    assert np.isnan(pers.spearman) and pers.spearman_origins == 0


def test_backtest_skips_missing_actuals_and_small_values_for_mape():
    start = datetime(2022, 1, 1, tzinfo=UTC)
    x = np.full(360, 0.5)
    x[:336] = 0.5
    x[340] = np.nan
    res = backtest(x, start, models=["persistence"], mape_floor_g_per_kwh=1.0)
    s = res.models["persistence"]
    assert s.points == 23 and s.mae == 0.0
    assert np.isnan(s.mape) and s.mape_skipped == 23
    assert res.to_dict()["models"]["persistence"]["mape"] is None


def test_backtest_datetime_origins_and_errors():
    start = datetime(2022, 1, 1, tzinfo=UTC)
    x = daily(24 * 20)
    res = backtest(x, start, origins=(start + timedelta(days=14), start + timedelta(days=19), 24))
    assert [o.day for o in res.origins] == [15, 16, 17, 18, 19, 20]
    assert res.skipped_origins == {}
    with pytest.raises(ValueError):
        backtest(x, start, models=["nope"])
    with pytest.raises(ValueError):
        backtest(x[:300], start)


# --------------------------------------------------------------------------- read_history_csv
def test_read_simple_csv_unsorted_duplicates_gaps(tmp_path):
    p = tmp_path / "h.csv"
    p.write_text(
        "datetime,carbon_intensity_g_per_kwh\n"
        "2022-01-01T02:00:00Z,30\n"
        "2022-01-01T00:00:00Z,10\n"
        "2022-01-01T02:00:00Z,30\n"  # the same row twice: harmless
        "2022-01-01T04:30:00+01:00,70\n"  # = 03:30 UTC
        "2022-01-01T05:00:00,\n"  # naive = UTC; empty value = missing
        "2022-01-01T06:00:00Z,60\n"
    )
    v, start, info = read_history_csv(p, zone="XX")
    assert start == datetime(2022, 1, 1, tzinfo=UTC)
    np.testing.assert_array_equal(np.isnan(v), [False, True, False, False, True, True, False])
    np.testing.assert_allclose(v[[0, 2, 3, 6]], [10, 30, 70, 60])
    assert info["format"] == "simple" and info["duplicate_rows"] == 1 and info["unsorted"]
    assert info["signal"] == "average-lca" and info["zone"] == "XX"


def test_history_files_that_would_be_silently_wrong_are_refused(tmp_path):
    """Issue 11: negative values, kg/kWh for g/kWh, one hour twice with different values, and an
    Electricity Maps export of another zone given as ZONE=PATH."""
    cases = {
        "negative": ("datetime,carbon_intensity\n2022-01-01T00:00Z,120\n2022-01-01T01:00Z,-5\n", "line 3.*negative"),
        "kg per kWh": ("datetime,carbon_intensity\n2022-01-01T00:00Z,0.41\n2022-01-01T01:00Z,0.38\n", "kg/kWh"),
        "conflicting duplicate": ("datetime,carbon_intensity\n2022-01-01T00:00Z,120\n2022-01-01T00:00Z,300\n",
                                  "lines 2 and 3.*twice"),
        "absurd": ("datetime,carbon_intensity\n2022-01-01T00:00Z,120000\n", "beyond any grid"),
    }
    for name, (text, match) in cases.items():
        p = tmp_path / f"{name}.csv"
        p.write_text(text)
        with pytest.raises(UserInputError, match=match):
            read_history_csv(p, zone="DE")
    export = tmp_path / "em_FR.csv"
    export.write_text("Datetime (UTC),Country,Zone Name,Zone Id,Carbon Intensity gCO\u2082eq/kWh (direct),"
                      "Carbon Intensity gCO\u2082eq/kWh (LCA),Low Carbon Percentage,Renewable Percentage,"
                      "Data Source,Data Estimated,Data Estimation Method\n"
                      "2022-01-01 00:00:00,France,France,FR,40,60,90,20,x,false,\n")
    from carbonsched.providers.grid.file import FileSource
    from carbonsched.refdata import read_regions

    src = FileSource([f"DE={export}"])
    with pytest.raises(UserInputError, match="holds zone FR, not 'DE'"):
        src.series(next(r for r in read_regions().values() if r.grid_zone == "DE"),
                   datetime(2022, 1, 1, tzinfo=UTC), 1)


def _hourly_csv(path, values):
    t0 = datetime(2022, 1, 1, tzinfo=UTC)
    path.write_text("datetime_utc,carbon_intensity_g_per_kwh\n" + "".join(
        f"{(t0 + timedelta(hours=i)).isoformat()},{v:g}\n" for i, v in enumerate(values)))
    return path


@pytest.mark.parametrize("kg_rows", [30, 300])  # kg rows a minority, and a majority (the median is then 0.4)
def test_kg_rows_mixed_into_a_g_per_kwh_file_are_refused_naming_the_first(tmp_path, kg_rows):
    """100 rows at 300-350 g/kWh, then rows at 0.4 (kg/kWh): a silently wrong "best hour" before."""
    p = _hourly_csv(tmp_path / "mixed.csv", list(np.linspace(300, 350, 100)) + [0.4] * kg_rows)
    with pytest.raises(UserInputError, match=rf"mixed.csv, line 102: .*0.4 is below 1 g/kWh.*{kg_rows} rows.*kg/kWh"):
        read_history_csv(p)


def test_genuinely_low_carbon_files_are_kept(tmp_path):
    rng = np.random.default_rng(0)
    p = _hourly_csv(tmp_path / "clean.csv", rng.uniform(5, 30, 500))
    assert np.isfinite(read_history_csv(p)[0]).all()
    # hydro with a few hours below 1 g/kWh among low ones (like Norway's direct signal)
    p = _hourly_csv(tmp_path / "hydro.csv", np.r_[rng.uniform(2, 15, 500), [0.9, 0.95]])
    assert read_history_csv(p)[0].size == 502


def test_read_simple_csv_other_value_column(tmp_path):
    p = tmp_path / "h.csv"
    p.write_text("datetime_utc,my_zone\n2022-06-01 00:00:00,1\n2022-06-01 01:00:00,2\n")
    v, start, info = read_history_csv(p, signal="direct")
    np.testing.assert_allclose(v, [1, 2])
    assert info["signal"] == "average-direct"


def test_read_wide_csv_and_unknown_zone(tmp_path):
    p = tmp_path / "wide.csv"
    p.write_text("datetime_utc,DE,DK-DK1,DK-DK2\n"
                 "2022-01-01T00:00:00Z,300,150,120\n2022-01-01T01:00:00Z,310,,125\n")
    v, start, info = read_history_csv(p, zone="DK-DK1")
    assert info["format"] == "wide" and info["zone"] == "DK-DK1"
    assert v[0] == 150 and np.isnan(v[1])
    with pytest.raises(UserInputError, match="DK-DK1"):
        read_history_csv(p, zone="DK-DK")
    with pytest.raises(UserInputError, match="zone"):
        read_history_csv(p)


def _portal_csv(rows) -> str:
    head = ("Datetime (UTC),Country,Zone Name,Zone Id,Carbon Intensity gCO₂eq/kWh (direct),"
            "Carbon Intensity gCO₂eq/kWh (LCA),Low Carbon Percentage,Renewable Percentage,Data Source,"
            "Data Estimated,Data Estimation Method\n")
    return head + "".join(f"{t},Spain,Spain,ES,{d},{lca},70,40,entsoe.eu,{est},\n" for t, d, lca, est in rows)


def test_read_portal_export_lca_and_direct(tmp_path):
    p = tmp_path / "ES.csv"
    p.write_text(_portal_csv([
        ("2022-01-01 01:00:00", 110, 150, "true"),
        ("2022-01-01 00:00:00", 100, 140, "false"),
        ("2022-01-01 03:00:00", 130, 170, "false"),
    ]), encoding="utf-8")
    v, start, info = read_history_csv(p, signal="lca")
    assert start == datetime(2022, 1, 1, tzinfo=UTC)
    np.testing.assert_allclose(v[[0, 1, 3]], [140, 150, 170])
    assert np.isnan(v[2])
    assert info["format"] == "electricitymaps-portal" and info["signal"] == "average-lca"
    assert info["zone"] == "ES" and info["estimated_hours"] == 1
    vd, _, info_d = read_history_csv(p, zone="ES", signal="direct")
    np.testing.assert_allclose(vd[[0, 1, 3]], [100, 110, 130])
    assert info_d["signal"] == "average-direct"
    with pytest.raises(UserInputError, match="ES"):
        read_history_csv(p, zone="FR")
    with pytest.raises(UserInputError, match="signal"):
        read_history_csv(p, signal="marginal")


def test_read_errors(tmp_path):
    with pytest.raises(UserInputError, match="cannot read"):
        read_history_csv(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("when,value\n2022-01-01,1\n")
    with pytest.raises(UserInputError, match="time column"):
        read_history_csv(bad)
    bad.write_text("datetime,value\nyesterday,1\n")
    with pytest.raises(UserInputError, match="timestamp"):
        read_history_csv(bad)
    bad.write_text("datetime,value\n2022-01-01T00:00:00Z,abc\n")
    with pytest.raises(UserInputError, match="not a number"):
        read_history_csv(bad)
    bad.write_bytes(b"\xff\xfe\x00garbage\x00")
    with pytest.raises(UserInputError):
        read_history_csv(bad)
    empty = tmp_path / "empty.csv"
    empty.write_text("datetime,value\n")
    with pytest.raises(UserInputError, match="no data rows"):
        read_history_csv(empty)


def test_dst_day_stays_utc(tmp_path):
    # Europe/Madrid springs forward on 2022-03-27 at 01:00 UTC; local-time stamps with offsets
    # must land on consecutive UTC hours, with no missing or doubled hour.
    local = ["2022-03-27T00:00:00+01:00", "2022-03-27T01:00:00+01:00", "2022-03-27T03:00:00+02:00",
             "2022-03-27T04:00:00+02:00"]
    p = tmp_path / "dst.csv"
    p.write_text("datetime,value\n" + "".join(f"{t},{i}\n" for i, t in enumerate(local)))
    v, start, info = read_history_csv(p)
    assert start == datetime(2022, 3, 26, 23, tzinfo=UTC) and start.utcoffset() == timedelta(0)
    np.testing.assert_allclose(v, [0, 1, 2, 3])
    assert info["missing_hours"] == 0 and info["duplicate_rows"] == 0
    # autumn: 2022-10-30 01:00 UTC clocks go back; 02:30+02:00 and 02:30+01:00 are different hours
    p.write_text("datetime,value\n2022-10-30T02:00:00+02:00,1\n2022-10-30T02:00:00+01:00,2\n")
    v, start, _ = read_history_csv(p)
    assert start == datetime(2022, 10, 30, 0, tzinfo=UTC)
    np.testing.assert_allclose(v, [1, 2])


@pytest.mark.skipif(not RAW_ES.exists(), reason="../shared/data is absent")
def test_read_real_portal_file_and_forecast():
    v, start, info = read_history_csv(RAW_ES, signal="lca")
    assert start == datetime(2022, 1, 1, tzinfo=UTC)
    assert v.shape == (8760,) and info["missing_hours"] == 0
    assert info["zone"] == "ES" and info["estimated_hours"] > 0
    assert v[0] == pytest.approx(175.54)
    vd, _, _ = read_history_csv(RAW_ES, signal="direct")
    assert vd[0] == pytest.approx(133.64)
    assert np.nanmean(v) > np.nanmean(vd)  # lifecycle > direct
    # a real DST day (2022-03-27) has 24 UTC hours in the file
    day = v[(datetime(2022, 3, 27, tzinfo=UTC) - start) // timedelta(hours=1):][:24]
    assert np.all(np.isfinite(day))
    f = forecast_series(v[:24 * 60], start, 48)
    assert np.all(np.isfinite(f.mean)) and np.all(f.p10 <= f.p90)


def test_flat_gap_fill_runs_are_masked_but_values_the_mix_repeats_are_kept():
    from carbonsched.providers.grid.series import flat_fill_mask

    x = np.array([1.0, 2, 3] + [7.0] * 6 + [4, 5] + [24.0] * 6 + [3] + [24.0] * 6 + [2] + [24.0] * 6 + [9])
    mask = flat_fill_mask(x)
    assert mask[3:9].all() and mask.sum() == 6  # the lone 6 h run of 7.0; 24.0 recurs in 3 runs: kept


def test_cli_backtest_can_leave_flat_gap_fill_unscored(cli, tmp_path):
    rows = ["datetime,carbon_intensity"]
    for h in range(24 * 40):
        v = 123.45 if 300 <= h < 330 else 200 + 50 * np.sin(h / 24 * 2 * np.pi) + (h % 7)
        rows.append(f"{(T0 + timedelta(hours=h)).strftime('%Y-%m-%dT%H:%M:%SZ')},{v:.2f}")
    f = tmp_path / "h.csv"
    f.write_text("\n".join(rows) + "\n")
    plain = json.loads(cli("forecast", "backtest", "--history", f, "--json").stdout)
    masked = json.loads(cli("forecast", "backtest", "--history", f, "--json", "--mask-flat-runs").stdout)
    assert masked["masked_flat_hours"] == 30 and "masked_flat_hours" not in plain
    assert masked["models"]["forecaster"]["mae"] != plain["models"]["forecaster"]["mae"]


def _ar_daily(n: int, seed: int) -> np.ndarray:
    """A daily cycle plus AR(1) weather-like noise (hourly persistence 0.9)."""
    rng = np.random.default_rng(seed)
    e = np.zeros(n)
    for i in range(1, n):
        e[i] = 0.9 * e[i - 1] + rng.normal(0, 8)
    return daily(n) + e


def test_backtest_reports_how_often_actuals_fall_outside_the_band():
    x = _ar_daily(24 * 120, 3)
    res = backtest(x, T0, horizon_h=24, origins=(24 * 90, 24 * 119, 24))
    f = res.models["forecaster"]
    # a calibrated p10-p90 band leaves ~10 % of the hours on each side
    assert 3 < f.below_p10_pct < 20 and 3 < f.above_p90_pct < 20
    doc = res.to_dict()
    assert doc["models"]["forecaster"]["below_p10_pct"] == pytest.approx(f.below_p10_pct)
    assert doc["models"]["persistence"]["below_p10_pct"] is None  # a point forecast has no band


def test_huber_fit_is_not_pulled_by_a_few_wild_targets():
    from carbonsched.providers.grid.forecaster import _huber_ridge, _ridge

    rng = np.random.default_rng(4)
    X = np.concatenate([np.ones((2, 2000, 1)), rng.normal(size=(2, 2000, 3))], axis=-1)  # 2 horizons
    beta = np.array([0.5, 1.0, -2.0, 0.3])
    y = X @ beta + rng.normal(0, 0.1, (2, 2000))
    y[:, rng.choice(2000, 100, replace=False)] += 25.0  # 5 % wild hours (a plant outage, a meter glitch)
    W = np.ones((2, 2000))
    plain, robust = _ridge(X, y, W, 0.1), _huber_ridge(X, y, W, 0.1)
    assert np.abs(plain - beta).max() > 1.0  # least squares: the intercept moves by ~5 % of 25
    assert np.abs(robust - beta).max() < 0.5 * np.abs(plain - beta).max()


def test_long_histories_fit_on_origins_near_the_forecast_hour_of_day():
    from carbonsched.providers.grid.forecaster import LOOKBACK_H, _training_origins

    short = _training_origins(24 * 30, 26 * 168)  # under 8 weeks of origins: every hour
    assert short.tolist() == list(range(LOOKBACK_H, 24 * 30))
    n = 24 * 200 + 5  # the forecast starts at 05:00 of its day
    long = _training_origins(n, 26 * 168)
    assert set(((long - n) % 24).tolist()) == {21, 22, 23, 0, 1, 2, 3}  # 02:00..08:00 origins only
    assert long.min() >= n - 26 * 168 and long.max() == n - 1  # 04:00 the same day
    # the forecast still follows a daily cycle whose amplitude differs by time of day
    t = np.arange(24 * 120)
    x = 300 + 80 * np.sin(2 * np.pi * t / 24) * (1 + 0.5 * (t % 24 < 12))
    f = forecast_series(x, T0, 24)
    np.testing.assert_allclose(f.mean, x[:24], atol=1e-6)


def test_a_many_zone_file_is_parsed_once_and_again_when_it_changes(tmp_path):
    from carbonsched.providers.grid import history as bt

    f = tmp_path / "wide.csv"
    rows = ["datetime_utc,DE,FR"] + [f"2022-01-01T{h:02d}:00:00Z,{300 + h},{50 + h}" for h in range(24)]
    f.write_text("\n".join(rows) + "\n")
    before = bt._cached_rows.cache_info().misses
    de, start, _ = read_history_csv(f, zone="DE")
    fr, _, _ = read_history_csv(f, zone="FR")
    assert bt._cached_rows.cache_info().misses == before + 1  # one parse for both zones
    assert de[3] == 303 and fr[3] == 53 and start == datetime(2022, 1, 1, tzinfo=UTC)
    f.write_text("\n".join(rows[:1] + [r.replace(",300,", ",1999,") for r in rows[1:]]) + "\n")  # edited in place
    assert read_history_csv(f, zone="DE")[0][0] == 1999  # a long-running agent sees the new file


def test_the_file_source_sees_a_history_file_that_changed(tmp_path):
    from carbonsched.providers.grid.file import FileSource

    f = tmp_path / "de.csv"
    rows = ["datetime_utc,carbon_intensity_g_per_kwh"] + [f"2022-01-01T{h:02d}:00:00Z,{300 + h}" for h in range(24)]
    f.write_text("\n".join(rows) + "\n")
    source = FileSource([f"DE={f}"])
    assert source._series_for("DE").values_g_per_kwh[0] == 300
    f.write_text("\n".join(rows[:1] + [r.replace(",300", ",1300") for r in rows[1:]]) + "\n")
    assert source._series_for("DE").values_g_per_kwh[0] == 1300  # was cached by path alone: 300 for ever
