"""Cache, file source and the fallback chain (live -> cache -> forecaster -> profile), end to end."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from carbonsched.errors import UserInputError
from carbonsched.providers.grid import build_forecast_source
from carbonsched.providers.grid.cache import SeriesCache, merge_history
from carbonsched.providers.grid.chain import ChainedSource
from carbonsched.providers.grid.file import FileSource
from carbonsched.providers.grid.series import HourlySeries
from carbonsched.refdata import read_regions
from carbonsched.settings import Settings

from conftest import SHARED_DATA

UTC = timezone.utc
RAW = SHARED_DATA / "carbon_intensity" / "electricitymaps_hourly_raw"
needs_shared = pytest.mark.skipif(not RAW.exists(), reason="../shared/data is not present")


def series(start, values, kind="history", signal="average-lca", fetched_at=None):
    return HourlySeries(zone="XX", start=start, values_g_per_kwh=np.array(values, dtype=float), signal=signal,
                        source="test", kind=kind, fetched_at=fetched_at)


def test_cache_round_trip_and_history_merge(tmp_path):
    cache = SeriesCache(tmp_path / "c")
    t0 = datetime(2026, 3, 29, 0, tzinfo=UTC)  # a DST day in Europe; everything is UTC
    cache.put(series(t0, [1, 2, np.nan, 4], fetched_at=t0))
    got = cache.get("test", "XX", "average-lca", "history")
    assert got.start == t0 and got.fetched_at == t0
    np.testing.assert_array_equal(got.values_g_per_kwh, [1, 2, np.nan, 4])
    merged = cache.put(series(t0 + timedelta(hours=2), [30, 40, 50]))
    assert merged.start == t0
    np.testing.assert_array_equal(merged.values_g_per_kwh, [1, 2, 30, 40, 50])  # new wins, gaps filled
    assert list((tmp_path / "c").glob("*.tmp")) == []
    old = series(t0, [1.0] * 10)
    capped = merge_history(old, series(t0 + timedelta(hours=10), [2.0] * 10), max_hours=5)
    assert capped.start == t0 + timedelta(hours=15) and capped.hours == 5


def test_corrupt_cache_is_ignored_and_reported(tmp_path):
    cache = SeriesCache(tmp_path)
    path = cache.path("test", "XX", "average-lca", "forecast")
    path.write_text("{not json")
    assert cache.get("test", "XX", "average-lca", "forecast") is None
    assert "unreadable cache file" in cache.problems[0]
    path.write_text(json.dumps({"format": 99}))
    assert cache.get("test", "XX", "average-lca", "forecast") is None


@needs_shared
def test_file_source_replays_then_forecasts_then_profile():
    region = read_regions()["gcp:us-west2"]  # US-CAL-CISO
    source = FileSource([str(RAW / "US-CAL-CISO_2022_hourly.csv")], signal="lca")
    chain = ChainedSource(source, None, clock=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    start = datetime(2022, 12, 31, 12, tzinfo=UTC)
    f = chain.forecast(region, start, 48)
    assert np.all(np.isfinite(f.intensity_g_per_kwh)) and np.all(f.p10_g_per_kwh <= f.p90_g_per_kwh + 1e-9)
    kinds = [(s["source"], s["kind"]) for s in f.segments]
    assert kinds == [("file:US-CAL-CISO_2022_hourly.csv", "history"), ("forecaster", "forecast")]
    assert f.segments[0]["to"] == f.segments[1]["from"] == "2023-01-01T00:00:00Z"  # the seam
    # the replayed hours are exactly the file's LCA values
    values, t0, _ = __import__("carbonsched.providers.grid.history", fromlist=["x"]).read_history_csv(
        RAW / "US-CAL-CISO_2022_hourly.csv", signal="lca")
    i = int((start - t0) / timedelta(hours=1))
    np.testing.assert_allclose(f.intensity_g_per_kwh[:12], values[i:i + 12])
    assert any("from the statistical forecaster" in w for w in f.warnings)
    # far beyond the file: the history is too old to forecast from, so the profile answers
    later = chain.forecast(region, datetime(2023, 3, 1, tzinfo=UTC), 24)
    assert [s["source"] for s in later.segments] == ["embedded-profile"]
    assert any("only 0 h of recent history" in w for w in later.warnings)


@needs_shared
def test_profile_tail_is_scaled_to_a_direct_signal(tmp_path):
    # three days of direct-intensity history: too short for the forecaster, so the profile (LCA)
    # continues it, scaled to the direct level of the replayed hours
    lines = (RAW / "US-CAL-CISO_2022_hourly.csv").read_text(encoding="utf-8").splitlines()
    short = tmp_path / "ciso_3days.csv"
    short.write_text("\n".join(lines[:1] + lines[-72:]) + "\n", encoding="utf-8")
    region = read_regions()["gcp:us-west2"]
    chain = ChainedSource(FileSource([str(short)], signal="direct"), None, clock=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    f = chain.forecast(region, datetime(2022, 12, 31, 0, tzinfo=UTC), 48)
    assert [s["source"] for s in f.segments] == ["file:ciso_3days.csv", "embedded-profile"]
    assert f.signal == "average-direct" and "scaled x" in f.note
    assert any("only 72 h of recent history" in w for w in f.warnings)
    ratio = f.intensity_g_per_kwh[24:].mean() / f.intensity_g_per_kwh[:24].mean()
    assert 0.5 < ratio < 1.5  # level-matched to the direct replay, not left at the LCA level


def test_sub_hourly_files_are_averaged_and_said(tmp_path):
    """15-minute points become hourly means, and the forecast (so the plan) says so; hourly files say nothing."""
    quarter = tmp_path / "ie_15min.csv"
    rows = [f"2026-01-01T{h:02d}:{m:02d}:00Z,{100 + 10 * h + m}" for h in range(4) for m in (0, 15, 30, 45)]
    quarter.write_text("datetime_utc,carbon_intensity_g_per_kwh\n" + "\n".join(rows) + "\n")
    region = read_regions()["aws:eu-west-1"]
    got = FileSource([f"IE={quarter}"]).series(region, datetime(2026, 1, 1, tzinfo=UTC), 4)
    np.testing.assert_allclose(got.values_g_per_kwh, [100 + 10 * h + 22.5 for h in range(4)])
    chain = ChainedSource(FileSource([f"IE={quarter}"]), None, clock=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    f = chain.forecast(region, datetime(2026, 1, 1, tzinfo=UTC), 4)
    assert any("15-minute values were averaged into UTC hours" in w for w in f.warnings)
    hourly = tmp_path / "ie_hourly.csv"
    hourly.write_text("datetime_utc,carbon_intensity_g_per_kwh\n" + "\n".join(
        f"2026-01-01T{h:02d}:00:00Z,{100 + h}" for h in range(4)) + "\n")
    assert FileSource([f"IE={hourly}"]).series(region, datetime(2026, 1, 1, tzinfo=UTC), 4).warnings == ()


def test_file_source_errors(tmp_path):
    with pytest.raises(UserInputError, match="does not exist"):
        FileSource([str(tmp_path / "none.csv")])
    with pytest.raises(UserInputError, match="'lca' or 'direct'"):
        FileSource([str(tmp_path)], signal="marginal")
    simple = tmp_path / "mine.csv"
    simple.write_text("datetime_utc,carbon_intensity_g_per_kwh\n2026-01-01T00:00:00Z,100\n")
    region = read_regions()["aws:eu-west-1"]
    with pytest.raises(Exception, match="no intensity history file covers zone IE"):
        FileSource([str(simple)]).series(region, datetime(2026, 1, 1, tzinfo=UTC), 2)  # unlabelled single series
    got = FileSource([f"IE={simple}"]).series(region, datetime(2026, 1, 1, tzinfo=UTC), 2)
    assert got.values_g_per_kwh[0] == 100 and np.isnan(got.values_g_per_kwh[1])


def test_parquet_history_is_read(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    times = pd.date_range("2026-01-01", periods=4, freq="h", tz="UTC")
    path = tmp_path / "ie.parquet"
    pd.DataFrame({"datetime_utc": times.strftime("%Y-%m-%dT%H:%M:%SZ"), "carbon_intensity_g_per_kwh": [1, 2, 3, 4]}).to_parquet(path)
    got = FileSource([f"IE={path}"]).series(read_regions()["aws:eu-west-1"], datetime(2026, 1, 1, 1, tzinfo=UTC), 2)
    np.testing.assert_array_equal(got.values_g_per_kwh, [2, 3])


def test_auto_without_credentials_is_the_profile(tmp_path):
    src = build_forecast_source(Settings(home=tmp_path), env={})
    f = src.forecast(read_regions()["aws:eu-west-1"], datetime(2026, 6, 1, tzinfo=UTC), 24)
    assert f.source == "embedded-profile" and f.warnings == ()
    with pytest.raises(Exception, match="unknown intensity source"):
        build_forecast_source(Settings(home=tmp_path), name="greenapi", env={})


@needs_shared
def test_cli_plan_and_forecast_with_a_history_file(cli):
    path = RAW / "US-CAL-CISO_2022_hourly.csv"
    r = cli("forecast", "gcp:us-west2", "--intensity-file", path, "--now", "2022-07-01T00:00Z", "--hours", "24", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["source"] == "file:US-CAL-CISO_2022_hourly.csv" and doc["kind"] == "history" and len(doc["values"]) == 24
    r = cli("plan", "--gpu", "T4", "--gpus", "1", "--hours", "6", "--max-delay", "12h", "--region", "gcp:us-west2",
            "--intensity-file", path, "--now", "2022-07-01T00:00Z", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    sources = {d["region_id"]: d["source"] for d in doc["data_sources"] if d["name"] == "intensity"}
    assert sources["gcp:us-west2"] == "file:US-CAL-CISO_2022_hourly.csv"
    assert sources["aws:us-east-1"] == "embedded-profile"  # no file for the baseline's zone
    assert any("signals" not in w and "embedded typical-day" in w or "profile" in w for w in doc["warnings"])
    # named beside another source the file would go unused: refused (it was silently dropped)
    r = cli("plan", "--gpu", "T4", "--gpus", "1", "--hours", "6", "--intensity-source", "profile", "--intensity-file", path)
    assert r.returncode == 2 and "use it with --intensity-source file" in r.stderr
    # the settings' source gives way to a file given on the command line
    r = cli("forecast", "gcp:us-west2", "--intensity-file", path, "--now", "2022-07-01T00:00Z", "--hours", "24", "--json",
            extra_env={"CARBONSCHED_INTENSITY_SOURCE": "profile"})
    assert r.returncode == 0 and json.loads(r.stdout)["source"] == "file:US-CAL-CISO_2022_hourly.csv", r.stderr


def test_cli_forecast_table_json_plot_and_errors(cli, tmp_path):
    r = cli("forecast", "DE", "--hours", "24", "--now", "2026-11-27T10:30Z")
    assert r.returncode == 0 and "Intensity forecast for DE" in r.stdout and "embedded-profile" in r.stdout
    doc = json.loads(cli("forecast", "aws:eu-west-1", "--hours", "6", "--now", "2026-11-27T10:30Z", "--json").stdout)
    assert doc["schema_version"] == 1 and doc["zone"] == "IE" and doc["signal"] == "average-lca"
    assert [v["time"] for v in doc["values"]][:2] == ["2026-11-27T10:00:00Z", "2026-11-27T11:00:00Z"]
    assert all(v["p10_g_per_kwh"] <= v["p90_g_per_kwh"] for v in doc["values"])
    png = tmp_path / "ci.png"
    r = cli("forecast", "gcp:europe-west4", "--hours", "48", "--plot", png)
    assert r.returncode == 0, r.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    r = cli("forecast", "DEE")
    assert r.returncode == 2 and "did you mean" in r.stderr and "Traceback" not in r.stderr
    r = cli("forecast", "DE", "--hours", "0")
    assert r.returncode == 2 and "--hours" in r.stderr


@needs_shared
def test_cli_backtest_json_contract(cli):
    r = cli("forecast", "backtest", "--history", RAW / "ES_2022_hourly.csv", "--signal", "direct", "--horizon", "24", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["zone"] == "ES" and doc["horizon_hours"] == 24
    assert set(doc["models"]) == {"forecaster", "persistence", "seasonal_naive_24h", "weekly_mean"}
    for m in doc["models"].values():
        assert {"mae", "mape", "spearman"} <= set(m)
    assert doc["models"]["forecaster"]["mae"] < doc["models"]["seasonal_naive_24h"]["mae"]
    r = cli("forecast", "backtest")
    assert r.returncode == 2 and "--history" in r.stderr


class _Live:
    """A live source answering a flat 100 g/kWh forecast (stands in for a vendor API here: the
    point is the cache below it)."""

    name = "test"
    signal = "average-lca"

    def series(self, region, start, hours):
        return HourlySeries(zone=region.grid_zone, start=start, values_g_per_kwh=np.full(hours, 100.0),
                            signal=self.signal, source=self.name, kind="forecast", fetched_at=start)


def test_a_cache_that_cannot_be_written_does_not_cost_the_live_data(tmp_path):
    blocker = tmp_path / "home"
    blocker.write_text("a file where the cache folder should be")  # mkdir under it fails
    chain = ChainedSource(_Live(), SeriesCache(blocker / "cache" / "grid"), clock=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    f = chain.forecast(read_regions()["aws:eu-north-1"], datetime(2026, 1, 1, tzinfo=UTC), 6)
    np.testing.assert_allclose(f.intensity_g_per_kwh, 100.0)  # the live answer, not the profile
    assert any("cannot write the forecast cache" in w for w in f.warnings)


class _Short(_Live):
    """A live source whose forecast covers 2 hours of those asked and whose history fails."""

    def series(self, region, start, hours):
        values = np.full(hours, np.nan)
        values[:2] = 100.0
        return HourlySeries(zone=region.grid_zone, start=start, values_g_per_kwh=values,
                            signal=self.signal, source=self.name, kind="forecast", fetched_at=start)

    def history(self, region, end, hours):
        from carbonsched.errors import SourceUnavailableError

        raise SourceUnavailableError("503 after retries", self.name)


def test_a_failed_history_says_whether_a_cache_stands_in(tmp_path):
    """"using cached history" was said with nothing cached."""
    region, t0 = read_regions()["aws:eu-north-1"], datetime(2026, 1, 1, tzinfo=UTC)
    f = ChainedSource(_Short(), SeriesCache(tmp_path / "grid"), clock=lambda: t0).forecast(region, t0, 6)
    said = [w for w in f.warnings if "history failed" in w]
    assert said and all(w.endswith("; no cached history") for w in said), f.warnings
    SeriesCache(tmp_path / "grid").put(HourlySeries(
        zone=region.grid_zone, start=t0 - timedelta(days=15), values_g_per_kwh=np.full(15 * 24, 120.0),
        signal="average-lca", source="test", kind="history", fetched_at=t0))
    f = ChainedSource(_Short(), SeriesCache(tmp_path / "grid"), clock=lambda: t0).forecast(region, t0, 6)
    said = [w for w in f.warnings if "history failed" in w]
    assert said and all(w.endswith("; using cached history") for w in said), f.warnings
