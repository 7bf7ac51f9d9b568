"""Electricity Maps API v3: latest, recent history, past range and forecast carbon intensity.

Endpoints (https://docs.electricitymaps.com, portal API reference "Carbon Intensity"), all GET with
the header ``auth-token: <token>`` and query ``zone=<zone key>``:

- ``/carbon-intensity/latest``  -> ``{"zone", "carbonIntensity", "datetime", "updatedAt", "createdAt",
  "emissionFactorType", "isEstimated", "estimationMethod"}``
- ``/carbon-intensity/history`` (past 24 h) -> ``{"zone", "history": [<point as above>, ...]}``
- ``/carbon-intensity/past-range?start=&end=`` (at most 10 days per call at hourly granularity)
  -> ``{"zone", "data": [<point>, ...]}``
- ``/carbon-intensity/forecast`` -> ``{"zone", "forecast": [{"carbonIntensity", "datetime"}], "updatedAt"}``

Values are gCO2eq/kWh of the zone's *consumption* mix (flow-traced, imports included), hourly,
timestamps in UTC (``...Z``), each point holding for the hour that starts at its ``datetime``.
Which emission factors: the ``emissionFactorType`` query parameter, ``lifecycle`` (the API's
default; LCA, includes upstream emissions) or ``direct`` (operational, combustion only). We always
send it explicitly and label the series ``average-lca`` or ``average-direct`` accordingly, so a
plan never mixes the two. Neither is a marginal signal.

Credentials: ``ELECTRICITYMAPS_TOKEN``; base URL override ``CARBONSCHED_ELECTRICITYMAPS_URL``.
Free tokens cover one zone and only latest/history; forecast and past-range need a paid plan
(the API then answers 401/403, mapped to ``SourceAuthError`` with the server's reason).
If the API cannot resolve the zone it may fall back to the caller's location, so the parser
checks that the answer is for the zone asked for.
"""
from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone
from typing import Callable

import requests

from carbonsched.errors import GridSourceError, SourceAuthError, SourceNotFoundError, SourcePayloadError
from carbonsched.models import Forecast, Region

from carbonsched.providers.grid.http import DEFAULT_DEADLINE_S, covered_forecast, get_json, load_payload, number, parse_utc_timestamp, region_window, utc_hour
from carbonsched.providers.grid.series import HourlySeries, to_hourly

SOURCE = "electricitymaps"
DEFAULT_BASE_URL = "https://api.electricitymap.org/v3"
ENV_TOKEN = "ELECTRICITYMAPS_TOKEN"
ENV_URL = "CARBONSCHED_ELECTRICITYMAPS_URL"
SIGNAL_BY_FACTOR = {"lifecycle": "average-lca", "direct": "average-direct"}
PAST_RANGE_MAX_HOURS = 240  # documented limit per call at hourly granularity
AUTH_HINT = (f"set {ENV_TOKEN} to a valid Electricity Maps API token (free tokens cover one zone and no "
             "forecast/past-range; check the plan covers this zone and endpoint)")


def _check_factor(emission_factor_type: str) -> str:
    if emission_factor_type not in SIGNAL_BY_FACTOR:
        raise ValueError(f"emission_factor_type must be 'lifecycle' or 'direct', got {emission_factor_type!r}")
    return emission_factor_type


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- get_*: network -----------------------------------------------------------------------------

def _get(path: str, zone: str, *, session=None, base_url: str | None = None, token: str | None = None,
         emission_factor_type: str = "lifecycle", extra: dict | None = None, **http) -> dict:
    token = token if token is not None else os.environ.get(ENV_TOKEN, "")
    if not token:
        raise SourceAuthError(f"{SOURCE}: no API token; {AUTH_HINT}", source=SOURCE)
    base = (base_url or os.environ.get(ENV_URL) or DEFAULT_BASE_URL).rstrip("/")
    params = {"zone": zone, "emissionFactorType": _check_factor(emission_factor_type), **(extra or {})}
    try:
        payload = get_json(session, "GET", f"{base}{path}", headers={"auth-token": token}, params=params,
                           source=SOURCE, auth_hint=AUTH_HINT, **http)
    except GridSourceError as err:
        # An unknown zone comes back as 404, or as a 400 whose message names the zone.
        if type(err) is GridSourceError and getattr(err, "status", None) == 400 and "zone" in str(err).lower():
            raise SourceNotFoundError(f"{SOURCE}: zone {zone!r} is not known to Electricity Maps ({err}); "
                                      "check the region's grid_zone against /v3/zones", source=SOURCE) from None
        raise
    if not isinstance(payload, dict):
        raise SourcePayloadError(f"{SOURCE}: {path} answered a {type(payload).__name__}, expected an object",
                                 source=SOURCE)
    return payload


def get_latest(zone: str, **kw) -> dict:
    """The latest hourly value for ``zone`` (free tier)."""
    return _get("/carbon-intensity/latest", zone, **kw)


def get_history(zone: str, **kw) -> dict:
    """The past 24 hourly values for ``zone`` (free tier)."""
    return _get("/carbon-intensity/history", zone, **kw)


def get_past_range(zone: str, start: datetime, end: datetime, **kw) -> dict:
    """Hourly values in ``[start, end)``; ranges over 10 days are fetched in chunks and concatenated."""
    points: list = []
    payload: dict = {"zone": zone, "data": points}
    t = start
    while t < end:
        chunk_end = min(end, t + timedelta(hours=PAST_RANGE_MAX_HOURS))
        part = _get("/carbon-intensity/past-range", zone, extra={"start": _iso(t), "end": _iso(chunk_end)}, **kw)
        if not isinstance(part.get("data"), list):
            raise SourcePayloadError(f"{SOURCE}: past-range answer has no 'data' list", source=SOURCE)
        payload["zone"] = part.get("zone", zone)
        points.extend(part["data"])
        t = chunk_end
    return payload


def get_forecast(zone: str, horizon_hours: int | None = None, **kw) -> dict:
    """The latest hourly forecast for ``zone`` (paid plans; 24-72 h depending on the zone)."""
    extra = {"horizonHours": int(horizon_hours)} if horizon_hours else None
    return _get("/carbon-intensity/forecast", zone, extra=extra, **kw)


# --- read_*: payload or recorded file -> HourlySeries --------------------------------------------

def read_latest(payload_or_path, zone: str | None = None, emission_factor_type: str = "lifecycle",
                fetched_at: datetime | None = None) -> HourlySeries:
    return _parse_latest(load_payload(payload_or_path, SOURCE), zone, emission_factor_type, fetched_at)


def read_history(payload_or_path, zone: str | None = None, emission_factor_type: str = "lifecycle",
                 fetched_at: datetime | None = None) -> HourlySeries:
    return _parse_points(load_payload(payload_or_path, SOURCE), "history", "history", zone,
                         emission_factor_type, fetched_at)


def read_past_range(payload_or_path, zone: str | None = None, emission_factor_type: str = "lifecycle",
                    fetched_at: datetime | None = None) -> HourlySeries:
    return _parse_points(load_payload(payload_or_path, SOURCE), "data", "history", zone,
                         emission_factor_type, fetched_at)


def read_forecast(payload_or_path, zone: str | None = None, emission_factor_type: str = "lifecycle",
                  fetched_at: datetime | None = None) -> HourlySeries:
    return _parse_points(load_payload(payload_or_path, SOURCE), "forecast", "forecast", zone,
                         emission_factor_type, fetched_at)


# --- _parse_*: pure -------------------------------------------------------------------------------

def _zone_of(payload, zone: str | None) -> str:
    if not isinstance(payload, dict):
        raise SourcePayloadError(f"{SOURCE}: expected a JSON object, got {type(payload).__name__}", source=SOURCE)
    got = payload.get("zone")
    if not isinstance(got, str) or not got:
        raise SourcePayloadError(f"{SOURCE}: payload has no 'zone'", source=SOURCE)
    if zone is not None and got != zone:
        raise SourcePayloadError(f"{SOURCE}: asked for zone {zone!r} but the answer is for {got!r} (the API falls "
                                 "back to the caller's location when it cannot resolve a zone)", source=SOURCE)
    return got


def _signal(points: list[dict], emission_factor_type: str) -> str:
    """The signal label; a point that declares a different factor type than requested is an error."""
    _check_factor(emission_factor_type)
    for p in points:
        declared = p.get("emissionFactorType")
        if declared is not None and declared != emission_factor_type:
            raise SourcePayloadError(f"{SOURCE}: asked for {emission_factor_type} emission factors, the answer "
                                     f"says {declared!r}", source=SOURCE)
    return SIGNAL_BY_FACTOR[emission_factor_type]


def _point(p, what: str) -> tuple[datetime, float]:
    if not isinstance(p, dict) or "datetime" not in p or "carbonIntensity" not in p:
        raise SourcePayloadError(f"{SOURCE}: {what} point lacks 'datetime' or 'carbonIntensity': {p!r:.120}",
                                 source=SOURCE)
    return (parse_utc_timestamp(p["datetime"], SOURCE, f"{what} datetime"),
            number(p["carbonIntensity"], SOURCE, f"{what} carbonIntensity"))


def _estimated_note(points: list[dict]) -> str:
    n = sum(1 for p in points if p.get("isEstimated"))
    return f"{n} of {len(points)} values estimated by Electricity Maps" if n else ""


def _parse_points(payload, key: str, kind: str, zone: str | None, emission_factor_type: str,
                  fetched_at: datetime | None) -> HourlySeries:
    """``{"zone", key: [{"datetime", "carbonIntensity", ...}]}`` -> hourly series (UTC)."""
    got = _zone_of(payload, zone)
    points = payload.get(key)
    if not isinstance(points, list):
        raise SourcePayloadError(f"{SOURCE}: payload has no '{key}' list", source=SOURCE)
    if not points:
        raise SourcePayloadError(f"{SOURCE}: '{key}' is empty for zone {got}", source=SOURCE)
    signal = _signal(points, emission_factor_type)
    times, values = zip(*(_point(p, key) for p in points))
    return to_hourly(list(times), list(values), zone=got, signal=signal, source=SOURCE, kind=kind,
                     fetched_at=fetched_at, note=_estimated_note(points))


def _parse_latest(payload, zone: str | None, emission_factor_type: str,
                  fetched_at: datetime | None) -> HourlySeries:
    """The latest point -> a one-hour series of kind ``latest``."""
    got = _zone_of(payload, zone)
    signal = _signal([payload], emission_factor_type)
    t, v = _point(payload, "latest")
    return to_hourly([t], [v], zone=got, signal=signal, source=SOURCE, kind="latest", fetched_at=fetched_at,
                     note=_estimated_note([payload]))


# --- the forecast source ----------------------------------------------------------------------------

class ElectricityMapsSource:
    """Forecast source over Electricity Maps; region -> zone is ``Region.grid_zone``.

    ``series`` uses the forecast endpoint, or, for a window that lies wholly in the past, history
    (last 24 h) or past-range. ``emission_factor_type`` picks lifecycle (default) or direct.
    """

    name = SOURCE

    def __init__(self, session: requests.Session | None = None, base_url: str | None = None,
                 token: str | None = None, emission_factor_type: str = "lifecycle",
                 clock: Callable[[], datetime] | None = None, sleep: Callable[[float], None] = time.sleep,
                 retries: int = 3, timeout_s: float = 10,
                 deadline_s: float = DEFAULT_DEADLINE_S):
        self.session = session or requests.Session()
        self.base_url = base_url
        self.token = token
        self.emission_factor_type = _check_factor(emission_factor_type)
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self._http = {"sleep": sleep, "retries": retries, "timeout_s": timeout_s, "deadline_s": deadline_s}

    def _kw(self) -> dict:
        return {"session": self.session, "base_url": self.base_url, "token": self.token,
                "emission_factor_type": self.emission_factor_type, **self._http}

    @property
    def signal(self) -> str:
        return SIGNAL_BY_FACTOR[self.emission_factor_type]

    def _past(self, zone: str, start: datetime, end: datetime) -> HourlySeries:
        """Observed values: /history when the range lies in the last 24 h, else /past-range; a plan
        without past-range (free tokens) falls back to the 24 h of /history."""
        now = self.clock()
        end = min(end, utc_hour(now) + timedelta(hours=1))
        if start >= now - timedelta(hours=24):
            return read_history(get_history(zone, **self._kw()), zone, self.emission_factor_type, self.clock())
        try:
            raw = get_past_range(zone, start, end, **self._kw())
        except SourceAuthError:
            return read_history(get_history(zone, **self._kw()), zone, self.emission_factor_type, self.clock())
        return read_past_range(raw, zone, self.emission_factor_type, self.clock())

    def series(self, region: Region, start: datetime, hours: int) -> HourlySeries:
        """Hourly values for ``[start, start + hours)``, NaN where the source has none."""
        zone = region.grid_zone
        start = utc_hour(start)
        end = start + timedelta(hours=hours)
        if end <= utc_hour(self.clock()):  # wholly past: measured/estimated history, not a forecast
            full = self._past(zone, start, end)
        else:
            full = read_forecast(get_forecast(zone, **self._kw()), zone, self.emission_factor_type, self.clock())
        return region_window(full, region, start, hours)

    def history(self, region: Region, end: datetime, hours: int) -> HourlySeries:
        """Observed hourly values for ``[end - hours, end)`` (NaN where none; free plans: last 24 h)."""
        end = utc_hour(end)
        start = end - timedelta(hours=hours)
        return region_window(self._past(region.grid_zone, start, end), region, start, hours)

    def forecast(self, region: Region, start: datetime, hours: int) -> Forecast:
        start = utc_hour(start)
        return covered_forecast(region, self.series(region, start, hours), start, hours)
