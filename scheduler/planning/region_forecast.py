"""Carbon-intensity forecasts for a region or grid zone (the library behind ``carbonsched forecast``)."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from carbonsched.errors import UnknownNameError, did_you_mean
from carbonsched.models import Forecast, Region
from carbonsched.refdata import read_regions, resolve_region
from carbonsched.errors import UserInputError
from carbonsched.providers.grid import build_forecast_source
from carbonsched.providers.grid.profile import profile_zones
from carbonsched.units import iso_utc, utc_instant


def resolve_target(target: str) -> Region:
    """A cloud region id (``aws:eu-west-1``) or an Electricity Maps zone code (``DE``) as a Region."""
    if ":" in target:
        return resolve_region(target)
    regions = read_regions()
    zone = target.strip()
    for r in regions.values():
        if r.grid_zone.lower() == zone.lower():
            return replace(r, region_id=r.grid_zone, provider="", region="", location=f"grid zone {r.grid_zone}")
    zones = {z.lower(): z for z in profile_zones()}
    if zone.lower() in zones:
        z = zones[zone.lower()]
        return Region(region_id=z, provider="", region="", location=f"grid zone {z}", country="", latitude=float("nan"),
                      longitude=float("nan"), grid_zone=z, profile_zone=z, zone_basis="", pue=1.0, pue_source="",
                      yearly_intensity_g_per_kwh=float("nan"), yearly_intensity_basis="")
    try:
        return resolve_region(zone)
    except UnknownNameError:
        hint = did_you_mean(zone.upper(), sorted(zones.values()))
        raise UnknownNameError(f"{target!r} is neither a region (provider:region) nor a known grid zone{hint}") from None


def forecast_intensity(target: str, *, now: datetime, hours: int = 48, settings=None, source: str | None = None,
                       forecast_source=None) -> Forecast:
    """Hourly intensity for ``target`` from the hour containing ``now`` for ``hours`` hours."""
    if not 1 <= hours <= 24 * 14:
        raise UserInputError(f"--hours must be between 1 and 336, got {hours}")
    region = resolve_target(target)
    fs = forecast_source or build_forecast_source(settings, name=source)
    start = utc_instant(now).replace(minute=0, second=0, microsecond=0)  # the UTC hour (India is +05:30)
    return fs.forecast(region, start, hours)


def forecast_to_dict(f: Forecast) -> dict:
    rows = []
    for i in range(f.hours):
        rows.append({
            "time": iso_utc(f.start + timedelta(hours=i)),
            "intensity_g_per_kwh": float(f.intensity_g_per_kwh[i]),
            "p10_g_per_kwh": None if f.p10_g_per_kwh is None else float(f.p10_g_per_kwh[i]),
            "p90_g_per_kwh": None if f.p90_g_per_kwh is None else float(f.p90_g_per_kwh[i]),
        })
    return {"schema_version": 1, **f.provenance(), "start": iso_utc(f.start), "hours": f.hours, "values": rows}
