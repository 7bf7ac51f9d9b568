"""UK Carbon Intensity API (NESO, no key): national and regional intensity and 48 h forecasts for GB.

Endpoints (https://carbon-intensity.github.io/api-definitions/), base https://api.carbonintensity.org.uk:

- ``GET /intensity`` -> ``{"data": [{"from": "2026-03-29T00:30Z", "to": "...", "intensity":
  {"forecast": 182, "actual": 175, "index": "moderate"}}]}`` (the current half hour)
- ``GET /intensity/{from}/fw48h`` -> the same ``data`` list, 96 half hours from ``from``
- ``GET /regional/regionid/{id}`` -> ``{"data": [{"regionid": 13, "dnoregion": "UKPN London",
  "shortname": "London", "data": [{"from", "to", "intensity": {"forecast", "index"},
  "generationmix": [...]}]}]}``
- ``GET /regional/intensity/{from}/fw48h/regionid/{id}`` -> ``{"data": {"regionid", "dnoregion",
  "shortname", "data": [...]}}`` (here the outer ``data`` is an object, not a list)
- history: ``GET /intensity/{from}/{to}`` (national, list as above) and
  ``GET /regional/intensity/{from}/{to}/regionid/{id}`` (object as above), at most 14 days a call

``from`` is ISO 8601 ``YYYY-MM-DDThh:mmZ`` in UTC; all returned times are UTC (``Z``), so the
British clock changes (last Sundays of March and October) do not shift anything: a day of
local time then has 46 or 50 half hours, and we never use local time. Each half-hour point holds
for ``[from, to)``; two of them average into a UTC hour. We ask for ``from`` half an hour before
the wanted hour so the first half hour of it is included however the API rounds ``from``.

Signal: the API's figures are gCO2/kWh of electricity consumed in GB from *direct* (operational,
combustion) emission factors of the generation mix, imports and losses included; no upstream
(lifecycle) emissions. Labelled ``average-direct``: not comparable with Electricity Maps'
default lifecycle figures. Forecasts use the ``forecast`` field; national history uses ``actual``
(the estimate from metered generation) where present, else ``forecast``; regional payloads only
carry ``forecast``.

Regions: 1-14 are DNO areas (13 = London, UKPN London), 15-17 England, Scotland, Wales,
18 GB. Cloud regions in London map to 13; any other region whose grid zone is GB uses the
national series; anything else is ``SourceNotFoundError``. Base URL override: ``CARBONSCHED_UKCI_URL``.
"""
from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone
from typing import Callable

import requests

from carbonsched.errors import SourceNotFoundError, SourcePayloadError
from carbonsched.models import Forecast, Region

from carbonsched.providers.grid.http import DEFAULT_DEADLINE_S, covered_forecast, get_json, load_payload, number, parse_utc_timestamp, region_window, utc_hour
from carbonsched.providers.grid.series import HourlySeries, to_hourly

SOURCE = "uk-carbon-intensity"
DEFAULT_BASE_URL = "https://api.carbonintensity.org.uk"
ENV_URL = "CARBONSCHED_UKCI_URL"
SIGNAL = "average-direct"
LONDON = 13
REGION_IDS = {"aws:eu-west-2": LONDON, "gcp:europe-west2": LONDON, "azure:uksouth": LONDON}
NATIONAL_ZONE = "GB"
HORIZON_HOURS = 48
RANGE_MAX_DAYS = 14


def zone_for_regionid(regionid: int | None) -> str:
    """The zone label of a series: ``GB`` nationally, ``GB-ukci-13`` for regional id 13."""
    return NATIONAL_ZONE if regionid is None else f"GB-ukci-{regionid}"


def format_from(t: datetime) -> str:
    """A ``from`` path parameter: UTC, minute precision, ``Z`` suffix (aware datetimes only)."""
    if t.tzinfo is None:
        raise ValueError("from time must be timezone-aware")
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


# --- get_*: network -----------------------------------------------------------------------------

def _get(path: str, *, session=None, base_url: str | None = None, **http) -> dict:
    base = (base_url or os.environ.get(ENV_URL) or DEFAULT_BASE_URL).rstrip("/")
    payload = get_json(session, "GET", f"{base}{path}", headers={"Accept": "application/json"}, source=SOURCE,
                       **http)
    if not isinstance(payload, dict):
        raise SourcePayloadError(f"{SOURCE}: {path} answered a {type(payload).__name__}, expected an object",
                                 source=SOURCE)
    return payload


def get_national(**kw) -> dict:
    """The current half hour, national."""
    return _get("/intensity", **kw)


def get_national_forecast(start: datetime, **kw) -> dict:
    """96 half hours forward from ``start``, national."""
    return _get(f"/intensity/{format_from(start)}/fw48h", **kw)


def get_regional(regionid: int, **kw) -> dict:
    """The current half hour for one region."""
    return _get(f"/regional/regionid/{int(regionid)}", **kw)


def get_regional_forecast(start: datetime, regionid: int, **kw) -> dict:
    """96 half hours forward from ``start`` for one region."""
    return _get(f"/regional/intensity/{format_from(start)}/fw48h/regionid/{int(regionid)}", **kw)


def _chunks(start: datetime, end: datetime):
    t = start
    while t < end:
        nxt = min(end, t + timedelta(days=RANGE_MAX_DAYS))
        yield t, nxt
        t = nxt


def get_national_range(start: datetime, end: datetime, **kw) -> dict:
    """Half hours in ``[start, end]``, national; long ranges fetched in 14-day chunks and concatenated."""
    data: list = []
    for a, b in _chunks(start, end):
        part = _get(f"/intensity/{format_from(a)}/{format_from(b)}", **kw)
        if not isinstance(part.get("data"), list):
            raise SourcePayloadError(f"{SOURCE}: national range answer has no 'data' list", source=SOURCE)
        data.extend(part["data"])
    return {"data": data}


def get_regional_range(start: datetime, end: datetime, regionid: int, **kw) -> dict:
    """Half hours in ``[start, end]`` for one region, in 14-day chunks concatenated."""
    merged: dict | None = None
    for a, b in _chunks(start, end):
        part = _get(f"/regional/intensity/{format_from(a)}/{format_from(b)}/regionid/{int(regionid)}", **kw)
        outer = part.get("data")
        outer = outer[0] if isinstance(outer, list) and len(outer) == 1 else outer
        if not isinstance(outer, dict) or not isinstance(outer.get("data"), list):
            raise SourcePayloadError(f"{SOURCE}: regional range answer has no region object", source=SOURCE)
        if merged is None:
            merged = {k: v for k, v in outer.items() if k != "data"} | {"data": []}
        merged["data"].extend(outer["data"])
    return {"data": merged or {"regionid": int(regionid), "data": []}}


# --- read_* / _parse_*: payload -> HourlySeries -------------------------------------------------------

def read_national(payload_or_path, kind: str = "forecast", fetched_at: datetime | None = None) -> HourlySeries:
    return _parse_national(load_payload(payload_or_path, SOURCE), kind, fetched_at)


def read_regional(payload_or_path, regionid: int | None = None, kind: str = "forecast",
                  fetched_at: datetime | None = None) -> HourlySeries:
    return _parse_regional(load_payload(payload_or_path, SOURCE), regionid, kind, fetched_at)


def _parse_periods(periods, zone: str, kind: str, fetched_at: datetime | None, note: str,
                   prefer_actual: bool = False) -> HourlySeries:
    if not isinstance(periods, list) or not periods:
        raise SourcePayloadError(f"{SOURCE}: no half-hour periods in the answer for {zone}", source=SOURCE)
    times, values = [], []
    for p in periods:
        intensity = p.get("intensity") if isinstance(p, dict) else None
        if not isinstance(intensity, dict) or "from" not in p or "forecast" not in intensity:
            raise SourcePayloadError(f"{SOURCE}: period lacks 'from' or 'intensity.forecast': {p!r:.120}",
                                     source=SOURCE)
        times.append(parse_utc_timestamp(p["from"], SOURCE, "from"))
        actual = intensity.get("actual") if prefer_actual else None
        values.append(number(intensity["forecast"] if actual is None else actual, SOURCE, "intensity"))
    return to_hourly(times, values, zone=zone, signal=SIGNAL, source=SOURCE, kind=kind, fetched_at=fetched_at,
                     note=note)


def _parse_national(payload, kind: str = "forecast", fetched_at: datetime | None = None) -> HourlySeries:
    """``{"data": [{"from", "to", "intensity": {"forecast", ...}}]}`` -> hourly GB series."""
    if not isinstance(payload, dict):
        raise SourcePayloadError(f"{SOURCE}: expected a JSON object", source=SOURCE)
    return _parse_periods(payload.get("data"), NATIONAL_ZONE, kind, fetched_at, "GB national (NESO)",
                          prefer_actual=kind == "history")


def _parse_regional(payload, regionid: int | None = None, kind: str = "forecast",
                    fetched_at: datetime | None = None) -> HourlySeries:
    """Regional payloads (outer ``data`` an object or a one-element list) -> hourly series of that region."""
    outer = payload.get("data") if isinstance(payload, dict) else None
    if isinstance(outer, list):
        outer = outer[0] if len(outer) == 1 else None
    if not isinstance(outer, dict) or "regionid" not in outer:
        raise SourcePayloadError(f"{SOURCE}: regional answer has no region object with 'regionid'", source=SOURCE)
    got = outer["regionid"]
    if regionid is not None and got != regionid:
        raise SourcePayloadError(f"{SOURCE}: asked for region {regionid}, the answer is for {got!r}", source=SOURCE)
    name = outer.get("shortname") or outer.get("dnoregion") or ""
    return _parse_periods(outer.get("data"), zone_for_regionid(got), kind, fetched_at,
                          f"GB region {got} {name} (NESO)".strip())


# --- the forecast source ----------------------------------------------------------------------------

class UkCarbonIntensitySource:
    """Forecast source for GB regions: London cloud regions -> regional id 13, other GB -> national."""

    name = SOURCE
    signal = SIGNAL

    def __init__(self, session: requests.Session | None = None, base_url: str | None = None,
                 region_ids: dict[str, int] | None = None, clock: Callable[[], datetime] | None = None,
                 sleep: Callable[[float], None] = time.sleep, retries: int = 3, timeout_s: float = 10,
                 deadline_s: float = DEFAULT_DEADLINE_S):
        self.session = session or requests.Session()
        self.base_url = base_url
        self.region_ids = dict(REGION_IDS if region_ids is None else region_ids)
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self._http = {"session": self.session, "base_url": base_url, "sleep": sleep, "retries": retries,
                      "timeout_s": timeout_s,
                      "deadline_s": deadline_s}

    def regionid_for(self, region: Region) -> int | None:
        """The API region id (None = national); SourceNotFoundError outside Great Britain."""
        if region.region_id in self.region_ids:
            return self.region_ids[region.region_id]
        if region.grid_zone == NATIONAL_ZONE:
            return None
        raise SourceNotFoundError(f"{SOURCE}: covers Great Britain only; {region.region_id} is on grid zone "
                                  f"{region.grid_zone}; use electricitymaps, watttime or the profile", source=SOURCE)

    def series(self, region: Region, start: datetime, hours: int) -> HourlySeries:
        """Hourly values for ``[start, start + hours)``, NaN beyond the 48 h the API forecasts."""
        start = utc_hour(start)
        regionid = self.regionid_for(region)
        from_ = start - timedelta(minutes=30)
        if regionid is None:
            full = _parse_national(get_national_forecast(from_, **self._http), "forecast", self.clock())
        else:
            full = _parse_regional(get_regional_forecast(from_, regionid, **self._http), regionid, "forecast",
                                   self.clock())
        return region_window(full, region, start, hours)

    def history(self, region: Region, end: datetime, hours: int) -> HourlySeries:
        """Past half hours for ``[end - hours, end)`` averaged to hours (national: ``actual`` values)."""
        end = utc_hour(end)
        start = end - timedelta(hours=hours)
        regionid = self.regionid_for(region)
        to = min(end, self.clock())
        if regionid is None:
            full = _parse_national(get_national_range(start, to, **self._http), "history", self.clock())
        else:
            full = _parse_regional(get_regional_range(start, to, regionid, **self._http), regionid, "history",
                                   self.clock())
        return region_window(full, region, start, hours)

    def forecast(self, region: Region, start: datetime, hours: int) -> Forecast:
        start = utc_hour(start)
        return covered_forecast(region, self.series(region, start, hours), start, hours)
