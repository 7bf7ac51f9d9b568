"""Broken caches (the grid's forecast cache and the user's catalog cache) are reported and ignored:
a plan falls back to what comes next (live source, forecaster, embedded data) and says which file
was ignored and why, instead of crashing or trusting it."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from carbonsched.errors import SourceUnavailableError
from carbonsched.providers.grid.cache import SeriesCache
from carbonsched.providers.grid.chain import ChainedSource
from carbonsched.refdata import read_regions
from grid_server import GridServer

UTC = timezone.utc
NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
REGION = "gcp:europe-west3"  # zone DE


class _Down:
    """A live source that is down (stands in for a vendor API: the point is the cache below it)."""

    name = "electricitymaps"
    signal = "average-lca"

    def series(self, region, start, hours):
        raise SourceUnavailableError("electricitymaps: down", source=self.name)


def _forecast_doc(values, start=NOW, fetched_at=NOW) -> dict:
    return {"format": 1, "zone": "DE", "start": start.isoformat(), "values_g_per_kwh": values,
            "signal": "average-lca", "source": "electricitymaps", "kind": "forecast",
            "fetched_at": fetched_at.isoformat(), "note": ""}


BROKEN_FORECASTS = {  # file text
    "not JSON": "{not json",
    "old format": json.dumps({"format": 99}),
    "empty list": [],
    "list of numbers": [1, 2],
    "negative values": _forecast_doc([-300.0] * 6),
    "beyond any grid": _forecast_doc([1e9] * 6),
    "one bad hour": _forecast_doc([300.0, 300.0, 4000.0, 300.0, 300.0, 300.0]),
    "values not a list": _forecast_doc("300"),
}


@pytest.mark.parametrize("name", sorted(BROKEN_FORECASTS))
def test_a_broken_forecast_cache_is_ignored_and_the_forecast_says_so(tmp_path, name):
    cache = SeriesCache(tmp_path / "grid")
    path = cache.path("electricitymaps", "DE", "average-lca", "forecast")
    path.parent.mkdir(parents=True)
    doc = BROKEN_FORECASTS[name]
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    chain = ChainedSource(_Down(), cache, clock=lambda: NOW)
    f = chain.forecast(read_regions()[REGION], NOW, 6)
    assert [s["source"] for s in f.segments] == ["embedded-profile"], name  # not the cached values
    assert np.all((f.intensity_g_per_kwh > 0) & (f.intensity_g_per_kwh < 3000))
    ignored = [w for w in f.warnings if "ignored unreadable cache file" in w]
    assert len(ignored) == 1 and str(path) in ignored[0] and "delete it" in ignored[0], f.warnings


def test_a_plausible_cache_is_still_used(tmp_path):
    cache = SeriesCache(tmp_path / "grid")
    path = cache.path("electricitymaps", "DE", "average-lca", "forecast")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(_forecast_doc([0.0, 250.0, None, 2999.0, 300.0, 300.0], fetched_at=NOW - timedelta(hours=3))))
    f = ChainedSource(_Down(), cache, clock=lambda: NOW).forecast(read_regions()[REGION], NOW, 6)
    assert f.intensity_g_per_kwh[[0, 1, 3]].tolist() == [0.0, 250.0, 2999.0]
    assert not any("ignored" in w for w in f.warnings) and cache.problems == []
    assert any("using its cached forecast fetched 3 h ago" in w for w in f.warnings)


def test_a_corrupt_history_cache_is_reported_too(tmp_path):
    cache = SeriesCache(tmp_path / "grid")
    path = cache.path("electricitymaps", "DE", "average-lca", "history")
    path.parent.mkdir(parents=True)
    path.write_text("[1, 2]")
    f = ChainedSource(_Down(), cache, clock=lambda: NOW).forecast(read_regions()[REGION], NOW, 6)
    assert any("ignored unreadable cache file" in w and str(path) in w for w in f.warnings), f.warnings


@pytest.fixture
def em_rejects():
    """Electricity Maps answering 401 at once: the chain falls back to its cache without waiting."""
    routes = {f"GET /v3/carbon-intensity/{k}": (401, {}, {"message": "bad token"}) for k in ("forecast", "history")}
    with GridServer(routes) as srv:
        yield srv


def _home_with_forecast_cache(tmp_path, doc) -> tuple[dict, object]:
    home = tmp_path / "home"
    path = home / "cache" / "grid" / "electricitymaps__DE__average-lca__forecast.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(doc))
    return {"CARBONSCHED_HOME": str(home), "ELECTRICITYMAPS_TOKEN": "fake"}, path


def test_cli_forecast_and_plan_with_a_list_in_the_forecast_cache(cli, tmp_path, em_rejects):
    env, path = _home_with_forecast_cache(tmp_path, [])
    env["CARBONSCHED_ELECTRICITYMAPS_URL"] = em_rejects.url + "/v3"
    r = cli("forecast", "DE", "--hours", "4", extra_env=env)
    assert r.returncode == 0, r.stderr
    assert f"warning: ignored unreadable cache file {path}" in r.stdout
    r = cli("plan", "--gpu", "A100", "--gpus", "8", "--hours", "4", "--region", REGION, "--top", "1", "--json",
            extra_env=env)
    assert r.returncode == 0, r.stderr
    assert any("ignored unreadable cache file" in w and str(path) in w for w in json.loads(r.stdout)["warnings"])


def test_cli_forecast_does_not_show_implausible_cached_values(cli, tmp_path, em_rejects):
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    env, path = _home_with_forecast_cache(tmp_path, _forecast_doc([-300.0, 1e9] * 6, start=now, fetched_at=now))
    env["CARBONSCHED_ELECTRICITYMAPS_URL"] = em_rejects.url + "/v3"
    r = cli("forecast", "DE", "--hours", "4", "--json", extra_env=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert "electricitymaps" not in doc["source"]
    assert all(0 < v["intensity_g_per_kwh"] < 3000 for v in doc["values"])
    assert any("ignored unreadable cache file" in w and "-300 g/kWh" in w for w in doc["warnings"])


# -- the catalog cache (`carbonsched catalog refresh`) ------------------------------------------

from carbonsched import data  # noqa: E402
from carbonsched.errors import DataError  # noqa: E402
from carbonsched.providers.cloud.cache import ROW_FIELDS, cache_path, choose_offering_source  # noqa: E402
from carbonsched.providers.cloud.catalog import parse_offerings, read_offerings  # noqa: E402
from carbonsched.settings import Settings  # noqa: E402

CACHED_REGIONS = ["us-east-1", "eu-west-1"]


def _write_catalog_cache(home, column: str, bad: str) -> tuple[object, list]:
    """A fresh aws section of the embedded rows of two regions, its first row's ``column`` set to ``bad``."""
    rows = [[r.get(c, "") or "" for c in ROW_FIELDS] for r in data.read_rows("offerings.csv")
            if r["provider"] == "aws" and r["region"] in CACHED_REGIONS]
    rows[0][ROW_FIELDS.index(column)] = bad
    fetched = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    doc = {"schema_version": 1, "providers": {"aws": {
        "fetched_at": fetched, "source": "test", "prices": "test", "regions": CACHED_REGIONS, "notes": [],
        "missing_permissions": [], "columns": ROW_FIELDS, "rows": rows}}}
    path = cache_path(Settings(home=home))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path, rows[0]


BAD_CELLS = [("price_usd_per_hour", "abc"), ("price_usd_per_hour", "-1.5"), ("price_usd_per_hour", "nan"),
             ("spot_price_usd_per_hour", "inf"), ("vcpus", "many"), ("gpu_count", "0"), ("gpu_count", "-8"),
             ("on_demand_max_instances", "inf")]


@pytest.mark.parametrize("column,bad", BAD_CELLS)
def test_a_catalog_cache_row_that_does_not_parse_falls_back_to_the_embedded_catalog(tmp_path, column, bad):
    path, _ = _write_catalog_cache(tmp_path, column, bad)
    source = choose_offering_source(Settings(home=tmp_path), now=datetime.now(UTC), max_age=7)
    offerings = source.list_offerings()  # did raise DataError naming neither the file nor a fix
    aws = [o for o in offerings if o.provider == "aws"]
    assert aws and {o.source for o in aws} == {"embedded"}
    assert len(aws) == sum(1 for o in read_offerings() if o.provider == "aws")
    (warning,) = [w for w in source.warnings if "does not parse" in w]
    assert str(path) in warning and "'aws' section" in warning and f"{column} {bad!r}" in warning
    assert "carbonsched catalog refresh --provider aws" in warning
    assert "embedded snapshot" in source.describe()["providers"]["aws"]["source"]


@pytest.mark.parametrize("count", ["0", "-2", "1.5", "abc"])
def test_offerings_without_a_whole_positive_gpu_count_are_rejected(count):
    row = {**next(r for r in data.read_rows("offerings.csv") if r["gpu_count"] == "8"), "gpu_count": count}
    with pytest.raises(DataError, match=rf"gpu_count {count!r} .*row {row['provider']} {row['region']}"):
        parse_offerings([row])


def test_cli_plan_regions_and_catalog_show_survive_a_bad_catalog_row(cli, tmp_path):
    path, _ = _write_catalog_cache(tmp_path / "home", "price_usd_per_hour", "abc")
    env = {"CARBONSCHED_HOME": str(tmp_path / "home")}
    r = cli("plan", "--gpu", "A100", "--gpus", "8", "--hours", "4", "--top", "1", "--json", extra_env=env)
    assert r.returncode == 0, r.stderr
    (warning,) = [w for w in json.loads(r.stdout)["warnings"] if "does not parse" in w]
    assert str(path) in warning and "'abc'" in warning and "catalog refresh" in warning
    assert cli("regions", extra_env=env).returncode == 0
    r = cli("catalog", "show", "--json", extra_env=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert "price_usd_per_hour 'abc'" in doc["providers"]["aws"]["error"]
    assert "cache rows do not parse" in doc["plans_use"]["providers"]["aws"]["reason"]
    r = cli("catalog", "show", extra_env=env)
    assert r.returncode == 0 and "cache rows do not parse" in r.stdout


def test_cli_plan_with_a_zero_gpu_row_prints_no_numpy_warning(cli, tmp_path):
    _write_catalog_cache(tmp_path / "home", "gpu_count", "0")
    r = cli("plan", "--gpu", "T4", "--gpus", "4", "--hours", "4", "--top", "1", "--json",
            extra_env={"CARBONSCHED_HOME": str(tmp_path / "home")})
    assert r.returncode == 0, r.stderr
    assert "RuntimeWarning" not in r.stderr and "gpu_count '0'" in r.stdout


def test_a_catalog_cache_fetched_in_the_future_is_not_taken_as_fresh(tmp_path):
    """A cache written by a clock ahead of this one read "-1623617 min old" and was used as fresh."""
    path, _ = _write_catalog_cache(tmp_path, "price_usd_per_hour", "1.0")
    now = datetime.now(UTC)
    assert choose_offering_source(Settings(home=tmp_path), now=now, max_age=7).describe()["providers"]["aws"]["source"] \
        .startswith("user cache")
    source = choose_offering_source(Settings(home=tmp_path), now=now - timedelta(days=3), max_age=7)
    assert {o.source for o in source.list_offerings() if o.provider == "aws"} == {"embedded"}
    (warning,) = [w for w in source.warnings if "in the future" in w or "from now" in w]
    assert "3.0 days from now" in warning and "catalog refresh --provider aws" in warning
