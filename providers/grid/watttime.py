"""WattTime API v3: login, region from location, forecast and historical emissions rates.

Endpoints (https://docs.watttime.org; WattTime's "Transitioning from APIv2 to APIv3" guide and its
python client ``watttime/api.py``):

- ``GET /login`` with HTTP basic auth -> ``{"token": "<JWT>"}`` (valid 30 min); every other call
  sends ``Authorization: Bearer <token>``. We cache the token on the source object and log in
  again once when a call answers 401 (expired token).
- ``GET /v3/region-from-loc?latitude=&longitude=&signal_type=`` ->
  ``{"region": "CAISO_NORTH", "region_full_name": ..., "signal_type": "co2_moer"}``
- ``GET /v3/forecast?region=&signal_type=&horizon_hours=`` (0-72 h) and
  ``GET /v3/historical?region=&start=&end=&signal_type=`` (``start``/``end`` with offsets, at most
  32 days per call) -> ``{"data": [{"point_time": "...+00:00", "value": 870.2}, ...],
  "meta": {"region", "signal_type", "units": "lbs_co2_per_mwh", "data_point_period_seconds": 300,
  "generated_at", "model": {"date"}, "warnings": [...]}}``

Signals (WattTime "Data Signals" page):

- ``co2_moer``: Marginal Operating Emissions Rate -- the emissions of the generators that respond
  to a change in load. Labelled ``marginal``. It is *not* comparable with average intensities
  (Electricity Maps, UK CI, the embedded profiles): never rank one region by MOER against another
  by an average.
- ``co2_aoer``: Average Operating Emissions Rate -- total emissions of the generators in the
  region divided by their output, from annual per-fuel emission factors applied to hourly
  generation. We read those factors as combustion (operational) factors, so the signal is labelled
  ``average-direct``; note it is production-based (imports/exports not traced), unlike
  Electricity Maps' consumption-based figures. WattTime publishes it as history only (no forecast),
  hourly, within about 72 h.

Units: values come in ``lbs_co2_per_mwh``; 1 lb/MWh = 453.59237 g / 1000 kWh = 0.45359237 g/kWh.
Any other ``meta.units`` is refused (``SourcePayloadError``) rather than guessed. 5-minute points
are averaged into UTC hours (``to_hourly``).

Credentials: ``WATTTIME_USERNAME`` (or ``WATTTIME_USER``) / ``WATTTIME_PASSWORD``; base URL override ``CARBONSCHED_WATTTIME_URL``.
"""
from __future__ import annotations

import math
import os
import time
from datetime import datetime, timedelta, timezone
from typing import Callable

import requests

from carbonsched.errors import SourceAuthError, SourceNotFoundError, SourcePayloadError
from carbonsched.models import Forecast, Region

from carbonsched.providers.grid.http import DEFAULT_DEADLINE_S, covered_forecast, get_json, load_payload, number, parse_utc_timestamp, region_window, utc_hour
from carbonsched.providers.grid.series import HourlySeries, to_hourly

SOURCE = "watttime"
DEFAULT_BASE_URL = "https://api.watttime.org"
ENV_USERNAME = "WATTTIME_USERNAME"
ENV_PASSWORD = "WATTTIME_PASSWORD"
ENV_URL = "CARBONSCHED_WATTTIME_URL"
SIGNAL_BY_TYPE = {"co2_moer": "marginal", "co2_aoer": "average-direct"}
G_PER_KWH_PER_LB_PER_MWH = 0.45359237
UNIT_FACTORS = {"lbs_co2_per_mwh": G_PER_KWH_PER_LB_PER_MWH}
MAX_HORIZON_HOURS = 72
HISTORICAL_MAX_DAYS = 30  # the API allows 32 days per call; stay under it
AUTH_HINT = (f"set {ENV_USERNAME} and {ENV_PASSWORD} to your WattTime account (forecast/historical need a "
             "subscription for regions other than CAISO_NORTH)")


def _check_signal_type(signal_type: str) -> str:
    if signal_type not in SIGNAL_BY_TYPE:
        raise ValueError(f"signal_type must be one of {sorted(SIGNAL_BY_TYPE)}, got {signal_type!r}")
    return signal_type


def _base(base_url: str | None) -> str:
    return (base_url or os.environ.get(ENV_URL) or DEFAULT_BASE_URL).rstrip("/")


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _object(payload, what: str) -> dict:
    if not isinstance(payload, dict):
        raise SourcePayloadError(f"{SOURCE}: {what} answered a {type(payload).__name__}, expected an object",
                                 source=SOURCE)
    return payload


# --- get_*: network -----------------------------------------------------------------------------

def login(session=None, base_url: str | None = None, username: str | None = None, password: str | None = None,
          **http) -> str:
    """Basic-auth login -> bearer token (valid about 30 minutes)."""
    # WATTTIME_USER is what WattTime's own Python client reads; accept both
    username = username if username is not None else (os.environ.get(ENV_USERNAME) or os.environ.get("WATTTIME_USER", ""))
    password = password if password is not None else os.environ.get(ENV_PASSWORD, "")
    if not username or not password:
        raise SourceAuthError(f"{SOURCE}: no credentials; {AUTH_HINT}", source=SOURCE)
    payload = _object(get_json(session, "GET", f"{_base(base_url)}/login", auth=(username, password),
                               source=SOURCE, auth_hint=AUTH_HINT, **http), "/login")
    token = payload.get("token")
    if not isinstance(token, str) or not token:
        raise SourcePayloadError(f"{SOURCE}: /login answered without a 'token'", source=SOURCE)
    return token


def get_region_from_loc(token: str, latitude: float, longitude: float, signal_type: str = "co2_moer", *,
                        session=None, base_url: str | None = None, **http) -> dict:
    params = {"latitude": f"{latitude:.4f}", "longitude": f"{longitude:.4f}",
              "signal_type": _check_signal_type(signal_type)}
    return _object(get_json(session, "GET", f"{_base(base_url)}/v3/region-from-loc", headers=_bearer(token),
                            params=params, source=SOURCE, auth_hint=AUTH_HINT, **http), "/v3/region-from-loc")


def get_forecast(token: str, region: str, signal_type: str = "co2_moer", horizon_hours: int = 24, *,
                 session=None, base_url: str | None = None, **http) -> dict:
    """The most recent forecast for ``region``, ``horizon_hours`` (0-72) ahead."""
    params = {"region": region, "signal_type": _check_signal_type(signal_type),
              "horizon_hours": max(0, min(MAX_HORIZON_HOURS, int(horizon_hours)))}
    return _object(get_json(session, "GET", f"{_base(base_url)}/v3/forecast", headers=_bearer(token),
                            params=params, source=SOURCE, auth_hint=AUTH_HINT, **http), "/v3/forecast")


def get_historical(token: str, region: str, start: datetime, end: datetime, signal_type: str = "co2_moer", *,
                   session=None, base_url: str | None = None, **http) -> dict:
    """Historical points in ``[start, end]``, fetched in chunks of at most 30 days and concatenated."""
    data: list = []
    merged: dict = {"data": data, "meta": {}}
    t = start
    while t < end:
        chunk_end = min(end, t + timedelta(days=HISTORICAL_MAX_DAYS))
        params = {"region": region, "signal_type": _check_signal_type(signal_type),
                  "start": t.astimezone(timezone.utc).isoformat(), "end": chunk_end.astimezone(timezone.utc).isoformat()}
        part = _object(get_json(session, "GET", f"{_base(base_url)}/v3/historical", headers=_bearer(token),
                                params=params, source=SOURCE, auth_hint=AUTH_HINT, **http), "/v3/historical")
        if not isinstance(part.get("data"), list):
            raise SourcePayloadError(f"{SOURCE}: /v3/historical answer has no 'data' list", source=SOURCE)
        data.extend(part["data"])
        merged["meta"] = part.get("meta", merged["meta"])
        t = chunk_end
    return merged


# --- read_* / _parse_*: payload -> HourlySeries -------------------------------------------------------

def read_region(payload_or_path) -> str:
    return _parse_region(load_payload(payload_or_path, SOURCE))


def read_forecast(payload_or_path, signal_type: str = "co2_moer", fetched_at: datetime | None = None) -> HourlySeries:
    return _parse_data(load_payload(payload_or_path, SOURCE), "forecast", signal_type, fetched_at)


def read_historical(payload_or_path, signal_type: str = "co2_moer",
                    fetched_at: datetime | None = None) -> HourlySeries:
    return _parse_data(load_payload(payload_or_path, SOURCE), "history", signal_type, fetched_at)


def _parse_region(payload) -> str:
    region = payload.get("region") if isinstance(payload, dict) else None
    if not isinstance(region, str) or not region:
        raise SourcePayloadError(f"{SOURCE}: region-from-loc answer has no 'region'", source=SOURCE)
    return region


def _parse_data(payload, kind: str, signal_type: str, fetched_at: datetime | None) -> HourlySeries:
    """``{"data": [{"point_time", "value"}], "meta": {"region", "signal_type", "units"}}`` -> g/kWh per UTC hour."""
    _check_signal_type(signal_type)
    if not isinstance(payload, dict) or not isinstance(payload.get("meta"), dict):
        raise SourcePayloadError(f"{SOURCE}: payload has no 'meta' object", source=SOURCE)
    meta, points = payload["meta"], payload.get("data")
    if not isinstance(points, list) or not points:
        raise SourcePayloadError(f"{SOURCE}: payload has no (or an empty) 'data' list", source=SOURCE)
    units = meta.get("units")
    if units not in UNIT_FACTORS:
        raise SourcePayloadError(f"{SOURCE}: unknown units {units!r} (known: {', '.join(UNIT_FACTORS)}); "
                                 "refusing to guess a conversion", source=SOURCE)
    declared = meta.get("signal_type")
    if declared is not None and declared != signal_type:
        raise SourcePayloadError(f"{SOURCE}: asked for {signal_type}, the answer is {declared!r}", source=SOURCE)
    region = meta.get("region")
    if not isinstance(region, str) or not region:
        raise SourcePayloadError(f"{SOURCE}: meta has no 'region'", source=SOURCE)
    factor = UNIT_FACTORS[units]
    times, values = [], []
    for p in points:
        if not isinstance(p, dict) or "point_time" not in p or "value" not in p:
            raise SourcePayloadError(f"{SOURCE}: data point lacks 'point_time' or 'value': {p!r:.120}", source=SOURCE)
        times.append(parse_utc_timestamp(p["point_time"], SOURCE, "point_time"))
        values.append(number(p["value"], SOURCE, "value") * factor)
    label = "marginal operating emissions rate (MOER)" if signal_type == "co2_moer" else \
        "average operating emissions rate (AOER, production-based)"
    note = f"WattTime {signal_type}: {label}, converted from {units}"
    if meta.get("generated_at"):
        note += f", generated {meta['generated_at']}"
    return to_hourly(times, values, zone=region, signal=SIGNAL_BY_TYPE[signal_type], source=SOURCE, kind=kind,
                     fetched_at=fetched_at, note=note)


# --- the forecast source ----------------------------------------------------------------------------

class WattTimeSource:
    """Forecast source over WattTime; region -> WattTime region via ``/v3/region-from-loc`` on lat/lon.

    ``signal_type`` ``co2_moer`` (default, labelled ``marginal``) or ``co2_aoer`` (history only).
    """

    name = SOURCE

    def __init__(self, session: requests.Session | None = None, base_url: str | None = None,
                 username: str | None = None, password: str | None = None, signal_type: str = "co2_moer",
                 clock: Callable[[], datetime] | None = None, sleep: Callable[[float], None] = time.sleep,
                 retries: int = 3, timeout_s: float = 10,
                 deadline_s: float = DEFAULT_DEADLINE_S):
        self.session = session or requests.Session()
        self.base_url = base_url
        self.username, self.password = username, password
        self.signal_type = _check_signal_type(signal_type)
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self._http = {"session": self.session, "base_url": base_url, "sleep": sleep, "retries": retries,
                      "timeout_s": timeout_s,
                      "deadline_s": deadline_s}
        self._token: str | None = None
        self._regions: dict[tuple[float, float, str], str] = {}

    def _call(self, fn, *args, **kw):
        """Call ``fn(token, ...)``; on a 401 (expired token) log in again once and retry."""
        if self._token is None:
            self._token = login(username=self.username, password=self.password, **self._http)
        try:
            return fn(self._token, *args, **kw, **self._http)
        except SourceAuthError as err:
            if getattr(err, "status", None) != 401:
                raise
        self._token = login(username=self.username, password=self.password, **self._http)
        return fn(self._token, *args, **kw, **self._http)

    def region_for(self, region: Region) -> str:
        key = (region.latitude, region.longitude, self.signal_type)
        if key not in self._regions:
            self._regions[key] = _parse_region(self._call(get_region_from_loc, region.latitude, region.longitude,
                                                          self.signal_type))
        return self._regions[key]

    @property
    def signal(self) -> str:
        return SIGNAL_BY_TYPE[self.signal_type]

    def _historical(self, wt_region: str, start: datetime, end: datetime) -> HourlySeries:
        end = min(end, self.clock())
        raw = self._call(get_historical, wt_region, start, end, self.signal_type)
        return _parse_data(raw, "history", self.signal_type, self.clock())

    def series(self, region: Region, start: datetime, hours: int) -> HourlySeries:
        """Hourly g/kWh for ``[start, start + hours)``, NaN where WattTime has none."""
        start = utc_hour(start)
        end = start + timedelta(hours=hours)
        now = self.clock()
        wt_region = self.region_for(region)
        if end <= utc_hour(now):
            full = self._historical(wt_region, start, end)
        else:
            if self.signal_type == "co2_aoer":
                raise SourceNotFoundError(f"{SOURCE}: WattTime publishes no co2_aoer forecast (history only); use "
                                          "co2_moer or another source for future windows", source=SOURCE)
            horizon = math.ceil((end - now) / timedelta(hours=1))
            raw = self._call(get_forecast, wt_region, self.signal_type, max(1, min(MAX_HORIZON_HOURS, horizon)))
            full = _parse_data(raw, "forecast", self.signal_type, self.clock())
        return region_window(full, region, start, hours)

    def history(self, region: Region, end: datetime, hours: int) -> HourlySeries:
        """Observed hourly values for ``[end - hours, end)`` from /v3/historical."""
        end = utc_hour(end)
        start = end - timedelta(hours=hours)
        return region_window(self._historical(self.region_for(region), start, end), region, start, hours)

    def forecast(self, region: Region, start: datetime, hours: int) -> Forecast:
        start = utc_hour(start)
        return covered_forecast(region, self.series(region, start, hours), start, hours)
