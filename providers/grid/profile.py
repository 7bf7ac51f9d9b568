"""Offline "forecast" from the embedded typical-day profiles.

``data/profiles.csv`` holds, per Electricity Maps zone, the 2022 hourly lifecycle (LCA) intensity
aggregated by month x hour-of-day (UTC): mean, p10 and p90. The value for hour ``t`` is the
profile cell of ``t``'s month and hour. This is a climatology, not a forecast of tomorrow: it
captures the daily and seasonal shape (solar noon dips, evening peaks) and the level of each grid,
which is what spatial and coarse temporal shifting need. Regions whose zone has no hourly data
get their yearly mean as a flat series (``kind="yearly"``) and the planner warns.
"""
from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache

import numpy as np

from carbonsched import data
from carbonsched.errors import DataError
from carbonsched.models import Forecast, Region

SIGNAL = "average-lca"
SOURCE = "embedded-profile"


def _split_zones(text: str) -> dict[str, list[str]]:
    """CSV text -> {zone: its data lines} (cheap; numbers are parsed per zone on demand)."""
    lines = text.splitlines()
    header = lines[0].split(",")
    if header[:3] != ["zone", "month", "stat"] or len(header) != 27:
        raise DataError("profiles.csv has an unexpected header; rebuild the data (tools/build_data.py)")
    by_zone: dict[str, list[str]] = {}
    for line in lines[1:]:
        if line:
            zone, rest = line.split(",", 1)
            by_zone.setdefault(zone, []).append(rest)
    return by_zone


def _parse_zone_profile(zone: str, lines: list[str]) -> dict[str, np.ndarray]:
    """One zone's lines (``month,stat,h00..h23``) -> {"mean"|"p10"|"p90": array (12, 24)}."""
    stats: dict[str, np.ndarray] = {}
    for rest in lines:
        parts = rest.split(",")
        month, stat = int(parts[0]), parts[1]
        values = np.array(parts[2:], dtype=float)
        if values.shape != (24,) or not np.all(np.isfinite(values)) or not 1 <= month <= 12:
            raise DataError(f"profiles.csv: bad row for zone {zone} month {month} {stat}")
        stats.setdefault(stat, np.full((12, 24), np.nan))[month - 1] = values
    for stat, table in stats.items():
        if np.isnan(table).any():
            raise DataError(f"profiles.csv: zone {zone} {stat} lacks some months")
    if "mean" not in stats:
        raise DataError(f"profiles.csv: zone {zone} has no mean profile")
    return stats


@lru_cache(maxsize=1)
def _zone_lines() -> dict[str, list[str]]:
    return _split_zones(data.read_text("profiles.csv"))


@lru_cache(maxsize=None)
def read_zone_profile(zone: str) -> dict[str, np.ndarray] | None:
    """The month x hour tables of ``zone`` (None when the zone has no profile)."""
    lines = _zone_lines().get(zone)
    return None if lines is None else _parse_zone_profile(zone, lines)


def profile_zones() -> frozenset[str]:
    return frozenset(_zone_lines())


def hour_grid(start: datetime, hours: int) -> tuple[np.ndarray, np.ndarray]:
    """(month index 0..11, hour of day 0..23) for each of ``hours`` UTC hours from ``start`` (an
    aware datetime in any zone, or naive UTC)."""
    utc = start.astimezone(timezone.utc).replace(tzinfo=None) if start.tzinfo is not None else start
    t0 = np.datetime64(utc, "h")
    t = t0 + np.arange(hours)
    month = t.astype("datetime64[M]").astype(np.int64) % 12
    hour = t.astype(np.int64) % 24
    return month, hour


def profile_series(tables: dict[str, np.ndarray], start: datetime, hours: int) -> dict[str, np.ndarray]:
    """Hourly mean/p10/p90 series from month x hour tables (pure)."""
    month, hour = hour_grid(start, hours)
    return {stat: table[month, hour] for stat, table in tables.items()}


class ProfileSource:
    """Typical-day profiles shipped with carbonsched; works offline for every region."""

    name = "profile"
    signal = SIGNAL

    def forecast(self, region: Region, start: datetime, hours: int) -> Forecast:
        zone = region.profile_zone
        if zone:
            tables = read_zone_profile(zone)
            if tables is None:
                raise DataError(f"no embedded profile for zone {zone} of {region.region_id}; rebuild the data")
            series = profile_series(tables, start, hours)
            return Forecast(
                region_id=region.region_id, zone=zone, start=start,
                intensity_g_per_kwh=series["mean"], p10_g_per_kwh=series.get("p10"), p90_g_per_kwh=series.get("p90"),
                source=SOURCE, kind="profile", signal=SIGNAL,
                note="typical day for the month (Electricity Maps 2022 hourly LCA, ODbL)",
            )
        flat = np.full(hours, region.yearly_intensity_g_per_kwh)
        return Forecast(
            region_id=region.region_id, zone=region.grid_zone, start=start,
            intensity_g_per_kwh=flat, p10_g_per_kwh=None, p90_g_per_kwh=None,
            source="embedded-yearly", kind="yearly", signal=SIGNAL,
            note=f"no hourly data for zone {region.grid_zone}: flat {region.yearly_intensity_basis}",
        )
