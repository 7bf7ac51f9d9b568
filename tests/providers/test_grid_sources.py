"""Live intensity sources (Electricity Maps, WattTime, UK Carbon Intensity) against a local server.

Payloads under tests/data/grid follow each vendor's documented schema (see the README there).
Nothing here may reach the internet: an autouse fixture refuses non-loopback connections.
"""
from __future__ import annotations

import json
import socket
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import requests
from grid_server import GridServer

from carbonsched.errors import (
    GridSourceError,
    SourceAuthError,
    SourceNotFoundError,
    SourcePayloadError,
    SourceQuotaError,
    SourceUnavailableError,
)
from carbonsched.models import Forecast
from carbonsched.providers.grid import electricitymaps as em
from carbonsched.providers.grid import ukci
from carbonsched.providers.grid import watttime as wt
from carbonsched.providers.grid.http import get_json, parse_retry_after
from carbonsched.refdata import read_regions
from conftest import REPO

DATA = REPO / "tests" / "data" / "grid"
UTC = timezone.utc
NOW = datetime(2026, 11, 27, 10, 30, tzinfo=UTC)
LB = 0.45359237


def load(name: str):
    return json.loads((DATA / name).read_text())


def ok(name_or_body):
    return (200, {}, load(name_or_body) if isinstance(name_or_body, str) else name_or_body)


@pytest.fixture(autouse=True)
def no_internet(monkeypatch):
    """Fail any connection that is not to the loopback test server; drop real credentials."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"test tried to reach {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    for var in ("ELECTRICITYMAPS_TOKEN", "WATTTIME_USERNAME", "WATTTIME_PASSWORD", "CARBONSCHED_ELECTRICITYMAPS_URL",
                "CARBONSCHED_WATTTIME_URL", "CARBONSCHED_UKCI_URL"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def server():
    with GridServer() as srv:
        yield srv


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def regions():
    return read_regions()


def em_source(srv, sleeps, **kw):
    kw.setdefault("token", "em-test-token-123")
    return em.ElectricityMapsSource(base_url=srv.url + "/v3", clock=lambda: NOW, sleep=sleeps.append, **kw)


def wt_source(srv, sleeps, **kw):
    return wt.WattTimeSource(base_url=srv.url, username="wt-user", password="wt-secret-pw", clock=lambda: NOW,
                             sleep=sleeps.append, **kw)


def uk_source(srv, sleeps):
    return ukci.UkCarbonIntensitySource(base_url=srv.url, clock=lambda: NOW, sleep=sleeps.append)


# --- http.get_json: retries and error mapping ------------------------------------------------------

def test_retry_after_seconds_then_success(server, sleeps):
    server.routes["GET /x"] = [(429, {"Retry-After": "7"}, {"error": "slow down"}), ok({"fine": True})]
    assert get_json(requests.Session(), "GET", server.url + "/x", sleep=sleeps.append, source="t") == {"fine": True}
    assert sleeps == [7.0]
    assert len(server.hits("GET /x")) == 2


def test_retry_after_http_date_and_cap():
    now = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    assert parse_retry_after("Fri, 27 Nov 2026 10:00:30 GMT", now) == pytest.approx(30)
    assert parse_retry_after("garbage") is None and parse_retry_after(None) is None


def test_retry_after_is_capped(server, sleeps):
    server.routes["GET /x"] = [(503, {"Retry-After": "86400"}, ""), ok({"a": 1})]
    get_json(None, "GET", server.url + "/x", sleep=sleeps.append, max_wait_s=60, deadline_s=120)
    assert sleeps == [60]


def test_persistent_503_is_unavailable_after_n_tries(server, sleeps):
    server.routes["GET /x"] = (503, {}, "Service Unavailable")
    with pytest.raises(SourceUnavailableError, match="after 4 tries") as exc:
        get_json(None, "GET", server.url + "/x", retries=3, backoff_s=0.5, jitter_s=0, sleep=sleeps.append, source="t")
    assert len(server.hits("GET /x")) == 4
    assert sleeps == [0.5, 1.0, 2.0]  # exponential backoff without Retry-After
    assert exc.value.status == 503 and exc.value.source == "t"


def test_backoff_jitter_stays_within_its_bound(server, sleeps):
    server.routes["GET /x"] = (502, {}, "Bad Gateway")
    with pytest.raises(SourceUnavailableError):
        get_json(None, "GET", server.url + "/x", retries=3, backoff_s=0.5, jitter_s=0.3, sleep=sleeps.append)
    assert len(sleeps) == 3
    assert all(base <= s < base + 0.3 for s, base in zip(sleeps, [0.5, 1.0, 2.0])), sleeps


def test_persistent_429_is_quota(server, sleeps):
    server.routes["GET /x"] = (429, {"Retry-After": "1"}, {"message": "monthly quota exceeded"})
    with pytest.raises(SourceQuotaError, match="quota exceeded"):
        get_json(None, "GET", server.url + "/x", retries=2, sleep=sleeps.append)
    assert sleeps == [1.0, 1.0]


def test_connection_error_is_unavailable(sleeps):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SourceUnavailableError, match="cannot reach"):
        get_json(None, "GET", f"http://127.0.0.1:{port}/x", retries=1, sleep=sleeps.append)
    assert len(sleeps) == 1


def test_non_json_body_is_payload_error(server):
    server.routes["GET /x"] = (200, {"Content-Type": "text/html"}, "<html>captive portal</html>")
    with pytest.raises(SourcePayloadError, match="not JSON"):
        get_json(None, "GET", server.url + "/x")


def test_error_messages_never_contain_secrets(server, sleeps):
    server.routes["GET /x"] = (401, {}, {"error": "bad token sekrit-token-42 rejected"})
    with pytest.raises(SourceAuthError) as exc:
        get_json(None, "GET", server.url + "/x?key=1", headers={"auth-token": "sekrit-token-42"},
                 auth_hint="set FOO_TOKEN")
    assert "sekrit-token-42" not in str(exc.value) and "FOO_TOKEN" in str(exc.value)
    assert "key=1" not in str(exc.value)


def test_an_echoed_basic_auth_header_is_scrubbed(server, sleeps):
    """WattTime logs in with HTTP Basic; a server that echoes the Authorization header back must
    not put the base64 of user:password into our message (it is stored with the job)."""
    echo = "Basic d2F0dC11c2VyOmh1bnRlcjItcGFzcw=="  # base64("watt-user:hunter2-pass")
    server.routes["GET /x"] = (403, {}, {"error": f"denied for Authorization: {echo}"})
    with pytest.raises(SourceAuthError) as exc:
        get_json(None, "GET", server.url + "/x", auth=("watt-user", "hunter2-pass"))
    assert "d2F0dC11c2VyOmh1bnRlcjItcGFzcw==" not in str(exc.value) and "***" in str(exc.value)


# --- Electricity Maps ------------------------------------------------------------------------------

def test_em_forecast_happy_path(server, sleeps, regions):
    server.routes["GET /v3/carbon-intensity/forecast"] = ok("em_forecast_DE.json")
    src = em_source(server, sleeps)
    fc = src.forecast(regions["aws:eu-central-1"], datetime(2026, 11, 27, 10, tzinfo=UTC), 12)
    payload = load("em_forecast_DE.json")["forecast"]
    assert isinstance(fc, Forecast) and fc.hours == 12
    np.testing.assert_allclose(fc.intensity_g_per_kwh, [p["carbonIntensity"] for p in payload[:12]])
    assert (fc.source, fc.kind, fc.signal, fc.zone, fc.fetched_at) == ("electricitymaps", "forecast", "average-lca",
                                                                       "DE", NOW)
    req = server.hits("GET /v3/carbon-intensity/forecast")[0]
    assert req.headers["auth-token"] == "em-test-token-123"
    assert req.query == {"zone": "DE", "emissionFactorType": "lifecycle"}


def test_em_direct_factor_labels_signal(server, sleeps, regions):
    server.routes["GET /v3/carbon-intensity/forecast"] = ok("em_forecast_DE_direct.json")
    src = em_source(server, sleeps, emission_factor_type="direct")
    fc = src.forecast(regions["gcp:europe-west3"], datetime(2026, 11, 27, 10, tzinfo=UTC), 3)
    assert fc.signal == "average-direct"
    assert server.requests[0].query["emissionFactorType"] == "direct"


def test_em_forecast_shorter_than_window(server, sleeps, regions):
    server.routes["GET /v3/carbon-intensity/forecast"] = ok("em_forecast_DE.json")  # 24 h
    src = em_source(server, sleeps)
    start = datetime(2026, 11, 27, 10, tzinfo=UTC)
    fc = src.forecast(regions["aws:eu-central-1"], start, 48)
    assert fc.hours == 24 and "covers 24 of the 48" in fc.note
    s = src.series(regions["aws:eu-central-1"], start, 48)
    assert s.hours == 48 and np.isfinite(s.values_g_per_kwh[:24]).all() and np.isnan(s.values_g_per_kwh[24:]).all()


def test_em_token_from_environment(server, sleeps, regions, monkeypatch):
    monkeypatch.setenv("ELECTRICITYMAPS_TOKEN", "env-token-xyz")
    server.routes["GET /v3/carbon-intensity/latest"] = ok("em_latest_DE.json")
    series = em.read_latest(em.get_latest("DE", base_url=server.url + "/v3"), "DE", fetched_at=NOW)
    assert server.requests[0].headers["auth-token"] == "env-token-xyz"
    assert series.kind == "latest" and series.hours == 1
    assert series.start == datetime(2026, 11, 27, 10, tzinfo=UTC)
    assert series.values_g_per_kwh[0] == load("em_latest_DE.json")["carbonIntensity"]


def test_em_missing_token_says_which_variable(server, regions):
    with pytest.raises(SourceAuthError, match="ELECTRICITYMAPS_TOKEN"):
        em.ElectricityMapsSource(base_url=server.url).forecast(regions["aws:eu-central-1"], NOW, 3)
    assert server.requests == []


def test_em_history_and_estimated_note(server, sleeps):
    server.routes["GET /v3/carbon-intensity/history"] = ok("em_history_DE.json")
    s = em.read_history(em.get_history("DE", base_url=server.url + "/v3", token="t0k3n"), "DE")
    points = load("em_history_DE.json")["history"]
    assert s.kind == "history" and s.hours == 24 and s.start == datetime(2026, 11, 26, 10, tzinfo=UTC)
    np.testing.assert_allclose(s.values_g_per_kwh, [p["carbonIntensity"] for p in points])
    assert "2 of 24 values estimated" in s.note


def test_em_past_window_uses_history_or_past_range(server, sleeps, regions):
    server.routes["GET /v3/carbon-intensity/history"] = ok("em_history_DE.json")
    server.routes["GET /v3/carbon-intensity/past-range"] = ok("em_past_range_DE.json")
    src = em_source(server, sleeps)
    recent = src.forecast(regions["aws:eu-central-1"], datetime(2026, 11, 27, 0, tzinfo=UTC), 6)
    assert recent.kind == "history" and recent.hours == 6
    old = src.forecast(regions["aws:eu-central-1"], datetime(2026, 11, 1, 12, tzinfo=UTC), 24)
    assert old.kind == "history" and old.hours == 24
    q = server.hits("GET /v3/carbon-intensity/past-range")[0].query
    assert (q["start"], q["end"]) == ("2026-11-01T12:00:00Z", "2026-11-02T12:00:00Z")
    data = load("em_past_range_DE.json")["data"]
    np.testing.assert_allclose(old.intensity_g_per_kwh, [p["carbonIntensity"] for p in data[12:36]])


def test_em_401_is_auth_error(server, sleeps, regions):
    server.routes["GET /v3/carbon-intensity/forecast"] = (401, {}, load("em_error_invalid_token.json"))
    with pytest.raises(SourceAuthError, match="ELECTRICITYMAPS_TOKEN") as exc:
        em_source(server, sleeps).forecast(regions["aws:eu-central-1"], NOW, 3)
    assert "token is invalid" in str(exc.value) and "em-test-token-123" not in str(exc.value)
    assert sleeps == []  # auth failures are not retried


@pytest.mark.parametrize("reply", [
    (404, {}, {"status": "error", "message": "Zone 'XX-NOPE' does not exist."}),
    (400, {}, {"error": "Bad request", "message": "Unknown zone: XX-NOPE"}),
])
def test_em_unknown_zone_is_not_found(server, sleeps, reply):
    server.routes["GET /v3/carbon-intensity/forecast"] = reply
    with pytest.raises(SourceNotFoundError):
        em.get_forecast("XX-NOPE", base_url=server.url + "/v3", token="t0k3n", sleep=sleeps.append)


def test_em_429_then_200_retries_once(server, sleeps, regions):
    server.routes["GET /v3/carbon-intensity/forecast"] = [(429, {"Retry-After": "3"}, {"message": "rate limited"}),
                                                         ok("em_forecast_DE.json")]
    fc = em_source(server, sleeps).forecast(regions["aws:eu-central-1"], NOW, 6)
    assert fc.hours == 6 and sleeps == [3.0]


def test_em_zone_mismatch_is_payload_error():
    payload = load("em_forecast_DE.json") | {"zone": "FR"}
    with pytest.raises(SourcePayloadError, match="falls back"):
        em.read_forecast(payload, "DE")


@pytest.mark.parametrize("payload", [
    {"zone": "DE"},
    {"zone": "DE", "forecast": []},
    {"zone": "DE", "forecast": [{"datetime": "2026-11-27T10:00:00.000Z"}]},
    {"zone": "DE", "forecast": [{"datetime": "2026-11-27T10:00:00", "carbonIntensity": 300}]},  # no offset
    {"zone": "DE", "forecast": [{"datetime": "2026-11-27T10:00:00Z", "carbonIntensity": "300"}]},
    {"forecast": [{"datetime": "2026-11-27T10:00:00Z", "carbonIntensity": 300}]},
    [],
])
def test_em_malformed_payloads(payload):
    with pytest.raises(SourcePayloadError):
        em.read_forecast(payload, "DE")


def test_em_factor_type_mismatch_is_payload_error():
    with pytest.raises(SourcePayloadError, match="direct"):
        em.read_history(load("em_history_DE.json"), "DE", emission_factor_type="direct")


def test_em_malformed_json_over_http(server, sleeps, regions):
    server.routes["GET /v3/carbon-intensity/forecast"] = (200, {"Content-Type": "application/json"}, '{"zone": "DE", ')
    with pytest.raises(SourcePayloadError):
        em_source(server, sleeps).forecast(regions["aws:eu-central-1"], NOW, 3)


def test_em_read_from_file_path():
    s = em.read_forecast(DATA / "em_forecast_DE.json", "DE")
    assert s.hours == 24 and s.source == "electricitymaps"


# --- WattTime ---------------------------------------------------------------------------------------

def wt_routes(server):
    server.routes.update({"GET /login": ok("wt_login.json"), "GET /v3/region-from-loc": ok("wt_region_from_loc.json"),
                          "GET /v3/forecast": ok("wt_forecast_CAISO_NORTH.json"),
                          "GET /v3/historical": ok("wt_historical_CAISO_NORTH.json")})


def test_wt_forecast_login_region_units_and_hourly_mean(server, sleeps, regions):
    wt_routes(server)
    src = wt_source(server, sleeps)
    start = datetime(2026, 11, 27, 10, tzinfo=UTC)
    fc = src.forecast(regions["gcp:us-west2"], start, 6)
    login = server.hits("GET /login")[0]
    assert login.headers["authorization"].startswith("Basic ")
    token = load("wt_login.json")["token"]
    loc = server.hits("GET /v3/region-from-loc")[0]
    assert loc.headers["authorization"] == f"Bearer {token}"
    assert loc.query == {"latitude": "34.0500", "longitude": "-118.2400", "signal_type": "co2_moer"}
    q = server.hits("GET /v3/forecast")[0].query
    assert q["region"] == "CAISO_NORTH" and q["signal_type"] == "co2_moer" and q["horizon_hours"] == "6"
    # 5-minute points averaged per UTC hour, then lbs/MWh -> g/kWh
    points = load("wt_forecast_CAISO_NORTH.json")["data"]
    first_hour = [p["value"] for p in points if p["point_time"].startswith("2026-11-27T10:")]
    second_hour = [p["value"] for p in points if p["point_time"].startswith("2026-11-27T11:")]
    assert len(first_hour) == 5 and len(second_hour) == 12
    assert fc.intensity_g_per_kwh[0] == pytest.approx(np.mean(first_hour) * LB)
    assert fc.intensity_g_per_kwh[1] == pytest.approx(np.mean(second_hour) * LB)
    assert (fc.signal, fc.kind, fc.source, fc.fetched_at) == ("marginal", "forecast", "watttime", NOW)
    assert "CAISO_NORTH" in fc.note and "MOER" in fc.note


def test_wt_unit_conversion_exact():
    payload = {"data": [{"point_time": "2026-11-27T10:00:00+00:00", "value": 1000.0},
                        {"point_time": "2026-11-27T10:05:00+00:00", "value": 800.0}],
               "meta": {"region": "X", "signal_type": "co2_moer", "units": "lbs_co2_per_mwh"}}
    s = wt.read_forecast(payload)
    assert s.values_g_per_kwh[0] == pytest.approx(900 * 0.45359237)


def test_wt_unknown_units_refused():
    payload = load("wt_forecast_CAISO_NORTH.json")
    payload["meta"]["units"] = "kg_co2_per_mwh"
    with pytest.raises(SourcePayloadError, match="unknown units"):
        wt.read_forecast(payload)


@pytest.mark.parametrize("mutate", [
    lambda p: p.pop("meta"),
    lambda p: p.update(data=[]),
    lambda p: p["data"][0].pop("value"),
    lambda p: p["meta"].update(signal_type="co2_aoer"),
    lambda p: p["meta"].pop("region"),
])
def test_wt_malformed_payloads(mutate):
    payload = load("wt_forecast_CAISO_NORTH.json")
    mutate(payload)
    with pytest.raises(SourcePayloadError):
        wt.read_forecast(payload)


def test_wt_token_cached_and_region_cached(server, sleeps, regions):
    wt_routes(server)
    src = wt_source(server, sleeps)
    for _ in range(2):
        src.forecast(regions["gcp:us-west2"], NOW, 3)
    assert len(server.hits("GET /login")) == 1 and len(server.hits("GET /v3/region-from-loc")) == 1
    assert len(server.hits("GET /v3/forecast")) == 2


def test_wt_relogin_once_on_401(server, sleeps, regions):
    wt_routes(server)
    server.routes["GET /login"] = [ok({"token": "old-token-aaaa"}), ok({"token": "new-token-bbbb"})]
    server.routes["GET /v3/forecast"] = lambda rec: (
        (200, {}, load("wt_forecast_CAISO_NORTH.json")) if rec.headers["authorization"] == "Bearer new-token-bbbb"
        else (401, {}, {"error": "token expired"}))
    src = wt_source(server, sleeps)
    src._regions[(34.05, -118.24, "co2_moer")] = "CAISO_NORTH"
    fc = src.forecast(regions["gcp:us-west2"], NOW, 3)
    assert fc.hours == 3 and len(server.hits("GET /login")) == 2


def test_wt_bad_credentials(server, sleeps, regions):
    server.routes["GET /login"] = (403, {}, {"error": "invalid credentials"})
    with pytest.raises(SourceAuthError, match="WATTTIME_USERNAME") as exc:
        wt_source(server, sleeps).forecast(regions["gcp:us-west2"], NOW, 3)
    assert "wt-secret-pw" not in str(exc.value)


def test_wt_missing_credentials(server, regions):
    with pytest.raises(SourceAuthError, match="WATTTIME_PASSWORD"):
        wt.WattTimeSource(base_url=server.url).forecast(regions["gcp:us-west2"], NOW, 3)
    assert server.requests == []


def test_wt_credentials_from_environment(server, sleeps, monkeypatch):
    monkeypatch.setenv("WATTTIME_USERNAME", "envuser")
    monkeypatch.setenv("WATTTIME_PASSWORD", "envpass")
    server.routes["GET /login"] = ok("wt_login.json")
    assert wt.login(base_url=server.url) == load("wt_login.json")["token"]
    import base64
    assert server.requests[0].headers["authorization"] == "Basic " + base64.b64encode(b"envuser:envpass").decode()


def test_wt_region_not_covered(server, sleeps, regions):
    wt_routes(server)
    server.routes["GET /v3/region-from-loc"] = (404, {}, {"error": "Coordinates not found in any region"})
    with pytest.raises(SourceNotFoundError):
        wt_source(server, sleeps).forecast(regions["aws:eu-central-1"], NOW, 3)


def test_wt_historical_for_past_window(server, sleeps, regions):
    wt_routes(server)
    src = wt_source(server, sleeps)
    fc = src.forecast(regions["gcp:us-west2"], datetime(2026, 11, 20, 0, tzinfo=UTC), 6)
    assert fc.kind == "history" and fc.hours == 6
    q = server.hits("GET /v3/historical")[0].query
    assert q["start"] == "2026-11-20T00:00:00+00:00" and q["end"] == "2026-11-20T06:00:00+00:00"
    pts = load("wt_historical_CAISO_NORTH.json")["data"]
    assert fc.intensity_g_per_kwh[5] == pytest.approx(np.mean([p["value"] for p in pts[60:72]]) * LB)


def test_wt_aoer_is_average_direct_history_only(server, sleeps, regions):
    s = wt.read_historical(load("wt_historical_aoer_CAISO.json"), signal_type="co2_aoer")
    assert s.signal == "average-direct" and s.hours == 6
    wt_routes(server)
    with pytest.raises(SourceNotFoundError, match="no co2_aoer forecast"):
        wt_source(server, sleeps, signal_type="co2_aoer").forecast(regions["gcp:us-west2"], NOW, 3)


def test_wt_503_then_unavailable(server, sleeps, regions):
    wt_routes(server)
    server.routes["GET /v3/forecast"] = (503, {}, "upstream down")
    with pytest.raises(SourceUnavailableError):
        wt_source(server, sleeps, retries=2).forecast(regions["gcp:us-west2"], NOW, 3)
    assert len(server.hits("GET /v3/forecast")) == 3


# --- UK Carbon Intensity -------------------------------------------------------------------------------

def test_uk_london_regional_forecast(server, sleeps, regions):
    server.routes["GET /regional/intensity/2026-11-27T09:30Z/fw48h/regionid/13"] = ok("ukci_regional_fw48h_13.json")
    src = uk_source(server, sleeps)
    for rid in ("aws:eu-west-2", "gcp:europe-west2"):
        fc = src.forecast(regions[rid], datetime(2026, 11, 27, 10, tzinfo=UTC), 48)
        periods = load("ukci_regional_fw48h_13.json")["data"]["data"]
        vals = [p["intensity"]["forecast"] for p in periods]
        # 96 half hours from 09:30Z: hours 10:00Z .. 08:00Z+2d in full, the last hour (09:00Z) from one half
        assert fc.hours == 48
        assert fc.intensity_g_per_kwh[0] == pytest.approx((vals[1] + vals[2]) / 2)
        assert fc.intensity_g_per_kwh[-1] == pytest.approx(vals[-1])
        assert (fc.signal, fc.source, fc.zone) == ("average-direct", "uk-carbon-intensity", "GB")
        assert "GB-ukci-13" in fc.note and "London" in fc.note
    assert all(r.headers.get("authorization") is None for r in server.requests)


def test_uk_current_national_and_regional(server, sleeps):
    server.routes["GET /intensity"] = ok("ukci_national_current.json")
    server.routes["GET /regional/regionid/13"] = ok("ukci_regional_current_13.json")
    nat = ukci.read_national(ukci.get_national(base_url=server.url), kind="latest")
    reg = ukci.read_regional(ukci.get_regional(13, base_url=server.url), 13, kind="latest")
    assert nat.zone == "GB" and nat.hours == 1 and nat.start == datetime(2026, 11, 27, 10, tzinfo=UTC)
    assert reg.zone == "GB-ukci-13" and reg.values_g_per_kwh[0] == \
        load("ukci_regional_current_13.json")["data"][0]["data"][0]["intensity"]["forecast"]


def test_uk_outside_gb_not_found(server, sleeps, regions):
    with pytest.raises(SourceNotFoundError, match="Great Britain only"):
        uk_source(server, sleeps).forecast(regions["aws:eu-central-1"], NOW, 3)
    assert server.requests == []


def test_uk_400_error_body(server, sleeps):
    server.routes["GET /regional/regionid/99"] = (400, {}, load("ukci_error_400.json"))
    with pytest.raises(GridSourceError, match="valid region ID"):
        ukci.get_regional(99, base_url=server.url, sleep=sleeps.append)


def test_uk_dst_spring_forward_stays_utc(server, sleeps, regions):
    """2026-03-29: UK clocks go 01:00 GMT -> 02:00 BST; the UTC hours stay contiguous."""
    server.routes["GET /intensity/2026-03-28T23:30Z/fw48h"] = ok("ukci_national_fw48h_dst_spring.json")
    src = uk_source(server, sleeps)
    region = replace(regions["aws:eu-west-2"], region_id="test:gb-elsewhere")  # GB, not London -> national
    assert src.regionid_for(region) is None
    # midnight London time (GMT) is 00:00Z; ask with a Europe/London-aware start
    start = datetime(2026, 3, 29, 0, 0, tzinfo=ZoneInfo("Europe/London"))
    s = src.series(region, start, 6)
    assert s.start == datetime(2026, 3, 29, 0, tzinfo=UTC)
    periods = load("ukci_national_fw48h_dst_spring.json")["data"]
    by_from = {p["from"]: p["intensity"]["forecast"] for p in periods}
    for i, t in enumerate(s.times()):
        a, b = t.strftime("%Y-%m-%dT%H:%MZ"), (t + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%MZ")
        assert s.values_g_per_kwh[i] == pytest.approx((by_from[a] + by_from[b]) / 2)
    # 02:30 BST on the day is 01:30Z: the hour 01:00Z holds it
    bst = datetime(2026, 3, 29, 2, 30, tzinfo=ZoneInfo("Europe/London"))
    assert bst.astimezone(UTC) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)


def test_uk_dst_autumn_back_stays_utc(server, sleeps, regions):
    """2026-10-25: UK clocks go 02:00 BST -> 01:00 GMT; local 01:xx happens twice, UTC never repeats."""
    route = "GET /regional/intensity/2026-10-24T23:30Z/fw48h/regionid/13"
    server.routes[route] = ok("ukci_regional_fw48h_13_dst_autumn.json")
    src = uk_source(server, sleeps)
    start = datetime(2026, 10, 25, 1, 0, tzinfo=ZoneInfo("Europe/London"))  # first 01:00, still BST = 00:00Z
    assert start.astimezone(UTC) == datetime(2026, 10, 25, 0, tzinfo=UTC)
    fc = src.forecast(regions["aws:eu-west-2"], start, 24)
    assert fc.start == datetime(2026, 10, 25, 0, tzinfo=UTC) and fc.hours == 24
    periods = load("ukci_regional_fw48h_13_dst_autumn.json")["data"]["data"]
    vals = [p["intensity"]["forecast"] for p in periods]  # periods[0] is 23:30Z the day before
    np.testing.assert_allclose(fc.intensity_g_per_kwh, [(vals[1 + 2 * i] + vals[2 + 2 * i]) / 2 for i in range(24)])
    assert len(server.hits(route)) == 1


def test_offset_timestamps_across_uk_clock_changes():
    """Points stamped with local offsets (+01:00 BST) land in the same UTC hours as 'Z' stamps."""
    payload = {"data": [{"point_time": "2026-10-25T01:55:00+01:00", "value": 100.0},   # 00:55Z (BST)
                        {"point_time": "2026-10-25T01:05:00+00:00", "value": 300.0},   # 01:05Z (GMT)
                        {"point_time": "2026-10-25T01:10:00Z", "value": 500.0}],
               "meta": {"region": "X", "signal_type": "co2_moer", "units": "lbs_co2_per_mwh"}}
    s = wt.read_historical(payload)
    assert s.start == datetime(2026, 10, 25, 0, tzinfo=UTC) and s.hours == 2
    np.testing.assert_allclose(s.values_g_per_kwh, [100 * LB, 400 * LB])
    spring = em.read_history({"zone": "GB", "history": [
        {"datetime": "2026-03-29T00:00:00.000Z", "carbonIntensity": 150},
        {"datetime": "2026-03-29T02:00:00+01:00", "carbonIntensity": 160},  # 01:00Z, first BST hour
        {"datetime": "2026-03-29T02:00:00.000Z", "carbonIntensity": 170}]}, "GB")
    np.testing.assert_allclose(spring.values_g_per_kwh, [150, 160, 170])
    assert ukci.format_from(datetime(2026, 3, 29, 2, 0, tzinfo=ZoneInfo("Europe/London"))) == "2026-03-29T01:00Z"


def test_uk_malformed_payloads():
    with pytest.raises(SourcePayloadError):
        ukci.read_regional({"data": {"regionid": 13, "data": [{"from": "2026-11-27T10:00Z"}]}}, 13)
    with pytest.raises(SourcePayloadError):
        ukci.read_regional({"data": {"regionid": 12, "data": []}}, 13)
    with pytest.raises(SourcePayloadError):
        ukci.read_national({"data": []})
    with pytest.raises(SourcePayloadError):
        ukci.read_national({"data": [{"from": "not a time", "intensity": {"forecast": 1}}]})


def test_uk_503_retries_then_unavailable(server, sleeps, regions):
    server.routes["GET /regional/intensity/2026-11-27T09:30Z/fw48h/regionid/13"] = \
        [(503, {"Retry-After": "2"}, ""), (502, {}, ""), ok("ukci_regional_fw48h_13.json")]
    fc = uk_source(server, sleeps).forecast(regions["aws:eu-west-2"], datetime(2026, 11, 27, 10, tzinfo=UTC), 4)
    assert fc.hours == 4 and sleeps[0] == 2.0 and len(sleeps) == 2
    assert 1.0 <= sleeps[1] < 1.25  # backoff 0.5 * 2 plus the default jitter (< 0.25 s)


def test_uk_base_url_from_environment(server, sleeps, monkeypatch):
    monkeypatch.setenv("CARBONSCHED_UKCI_URL", server.url)
    server.routes["GET /intensity"] = ok("ukci_national_current.json")
    assert ukci.get_national(sleep=sleeps.append)["data"]


def test_sources_satisfy_protocol():
    for cls in (em.ElectricityMapsSource, wt.WattTimeSource, ukci.UkCarbonIntensitySource):
        assert isinstance(cls.name, str) and callable(cls.forecast) and callable(cls.series)


# --- history() and the attributes the fallback chain relies on ----------------------------------------

def test_em_history_falls_back_to_24h_when_plan_lacks_past_range(server, sleeps, regions):
    server.routes["GET /v3/carbon-intensity/past-range"] = (403, {}, {"error": "Forbidden",
                                                                      "message": "endpoint not in your plan"})
    server.routes["GET /v3/carbon-intensity/history"] = ok("em_history_DE.json")
    src = em_source(server, sleeps)
    h = src.history(regions["aws:eu-central-1"], datetime(2026, 11, 27, 10, tzinfo=UTC), 28 * 24)
    assert h.kind == "history" and h.hours == 28 * 24 and h.zone == "DE" and src.signal == "average-lca"
    assert np.isfinite(h.values_g_per_kwh).sum() == 24 and np.isfinite(h.values_g_per_kwh[-24:]).all()
    q = server.hits("GET /v3/carbon-intensity/past-range")
    assert q and q[0].query["start"] == "2026-10-30T10:00:00Z"


def test_wt_history_labels_region_zone(server, sleeps, regions):
    wt_routes(server)
    src = wt_source(server, sleeps)
    h = src.history(regions["gcp:us-west2"], datetime(2026, 11, 20, 6, tzinfo=UTC), 6)
    assert h.zone == "US-CAL-CISO" and "source zone CAISO_NORTH" in h.note and h.signal == src.signal == "marginal"
    assert np.isfinite(h.values_g_per_kwh).all()


def test_uk_history_national_uses_actual_and_regional_range(server, sleeps, regions):
    server.routes["GET /intensity/2026-11-26T10:00Z/2026-11-27T10:00Z"] = ok("ukci_national_range.json")
    server.routes["GET /regional/intensity/2026-11-26T10:00Z/2026-11-27T10:00Z/regionid/13"] = \
        ok("ukci_regional_range_13.json")
    src = uk_source(server, sleeps)
    end = datetime(2026, 11, 27, 10, tzinfo=UTC)
    national = src.history(replace(regions["aws:eu-west-2"], region_id="test:gb-elsewhere"), end, 24)
    periods = load("ukci_national_range.json")["data"]
    assert national.kind == "history" and national.zone == "GB" and src.signal == "average-direct"
    assert national.values_g_per_kwh[0] == pytest.approx(
        (periods[0]["intensity"]["actual"] + periods[1]["intensity"]["actual"]) / 2)
    london = src.history(regions["aws:eu-west-2"], end, 24)
    assert np.isfinite(london.values_g_per_kwh).all() and "GB-ukci-13" in london.note


def test_live_source_inside_fallback_chain(server, sleeps, regions):
    """The chain fills the live head from the source and continues past its 24 h horizon."""
    from carbonsched.providers.grid.chain import ChainedSource

    server.routes["GET /v3/carbon-intensity/forecast"] = ok("em_forecast_DE.json")
    server.routes["GET /v3/carbon-intensity/history"] = ok("em_history_DE.json")
    server.routes["GET /v3/carbon-intensity/past-range"] = (403, {}, {"error": "Forbidden"})
    chain = ChainedSource(em_source(server, sleeps), None, clock=lambda: NOW)
    fc = chain.forecast(regions["aws:eu-central-1"], datetime(2026, 11, 27, 10, tzinfo=UTC), 48)
    assert fc.hours == 48 and np.isfinite(fc.intensity_g_per_kwh).all()
    head = load("em_forecast_DE.json")["forecast"]
    np.testing.assert_allclose(fc.intensity_g_per_kwh[:24], [p["carbonIntensity"] for p in head])
    assert fc.segments[0]["source"] == "electricitymaps" and fc.segments[0]["kind"] == "forecast"
