"""`carbonsched plan` with a live source (Electricity Maps API served on loopback): it uses the
live forecast, caches it, and falls back visibly when the API fails."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from grid_server import GridServer

ZONE_LEVEL = {"SE-SE3": 20, "US-MIDA-PJM": 400, "CA-QC": 30}  # others: 250


def forecast_payload(rec):
    """A documented /v3/carbon-intensity/forecast answer for the requested zone, from this hour, 72 h."""
    zone = rec.query["zone"]
    base = ZONE_LEVEL.get(zone, 250)
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    points = [{"carbonIntensity": base + (i % 24), "datetime": (now + timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M:%S.000Z")}
              for i in range(72)]
    return 200, {}, {"zone": zone, "forecast": points, "updatedAt": now.strftime("%Y-%m-%dT%H:%M:%S.000Z")}


@pytest.fixture
def em_env(tmp_path):
    def env(server):
        return {"ELECTRICITYMAPS_TOKEN": "em-test-token", "CARBONSCHED_ELECTRICITYMAPS_URL": server.url + "/v3",
                "CARBONSCHED_HOME": str(tmp_path / "home")}
    return env


ARGS = ("plan", "--gpu", "H100", "--gpus", "8", "--hours", "6", "--max-delay", "6h", "--accept-gpu", "H100",
        "--region", "aws:eu-north-1", "--region", "aws:us-east-1", "--json")


def intensity_sources(doc):
    return {d["region_id"]: d for d in doc["data_sources"] if d["name"] == "intensity"}


def test_plan_uses_the_live_forecast_with_a_token(cli, em_env):
    with GridServer({"GET /v3/carbon-intensity/forecast": forecast_payload}) as srv:
        r = cli(*ARGS, extra_env=em_env(srv))
        assert r.returncode == 0, r.stderr
        assert all(h.headers.get("auth-token") == "em-test-token" for h in srv.requests)
        assert {h.query["zone"] for h in srv.requests} == {"SE-SE3", "US-MIDA-PJM"}
    doc = json.loads(r.stdout)
    sources = intensity_sources(doc)
    assert sources["aws:eu-north-1"]["source"] == "electricitymaps"
    assert sources["aws:eu-north-1"]["signal"] == "average-lca" and sources["aws:eu-north-1"]["fetched_at"]
    best = doc["placements"][0]
    assert best["region_id"] == "aws:eu-north-1"
    assert 20 <= best["mean_intensity_g_per_kwh"] <= 20 + 23  # the served values, not the embedded profile
    assert not any("typical-day profiles" in w for w in doc["warnings"])


def test_api_failure_falls_back_to_cache_then_profile_and_says_so(cli, em_env, tmp_path):
    with GridServer({"GET /v3/carbon-intensity/forecast": forecast_payload}) as srv:
        assert cli(*ARGS, extra_env=em_env(srv)).returncode == 0  # fills the cache
    down = {"GET /v3/carbon-intensity/forecast": (503, {}, {"error": "maintenance"})}
    with GridServer(down) as srv:
        env = {**em_env(srv), "CARBONSCHED_CACHE_TTL_HOURS": "0"}  # force a fetch, which fails
        r = cli(*ARGS, extra_env=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert any("electricitymaps failed for aws:eu-north-1" in w and "cached forecast" in w for w in doc["warnings"])
    assert intensity_sources(doc)["aws:eu-north-1"]["source"] == "electricitymaps"
    # with an empty cache the embedded profile answers, and the plan says so
    with GridServer(down) as srv:
        env = {**em_env(srv), "CARBONSCHED_HOME": str(tmp_path / "empty")}
        r = cli(*ARGS, extra_env=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert intensity_sources(doc)["aws:eu-north-1"]["source"] == "embedded-profile"
    assert any("no cached forecast" in w for w in doc["warnings"])


def test_bad_token_is_reported_and_plan_still_answers(cli, em_env):
    with GridServer({"GET /v3/carbon-intensity/forecast": (401, {}, {"message": "Invalid auth-token"})}) as srv:
        r = cli(*ARGS, extra_env=em_env(srv))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert any("ELECTRICITYMAPS_TOKEN" in w for w in doc["warnings"])
    assert "em-test-token" not in r.stdout + r.stderr  # never echo secrets
