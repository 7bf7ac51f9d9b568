"""Hourly intensity series as they come from sources, before they become a plan's Forecast.

Every source's ``_parse_*`` returns an ``HourlySeries``: UTC hour-aligned, one value per hour
(NaN where the source has no value), with its signal and provenance. ``to_hourly`` turns
irregular (e.g. 5-minute or half-hourly) timestamped points into such a series by averaging the
points that fall in each UTC hour.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

import numpy as np

SIGNALS = ("average-lca", "average-direct", "marginal")
KINDS = ("history", "forecast", "latest")


@dataclass(frozen=True, eq=False)
class HourlySeries:
    zone: str
    start: datetime  # aware UTC, on an hour boundary
    values_g_per_kwh: np.ndarray  # float, NaN = missing
    signal: str  # average-lca | average-direct | marginal
    source: str  # e.g. electricitymaps, watttime, uk-carbon-intensity, file
    kind: str  # history | forecast | latest
    fetched_at: datetime | None = None
    note: str = ""
    warnings: tuple[str, ...] = ()  # what the source did to the data that a plan should say (e.g. averaging)

    def __post_init__(self):
        if self.start.tzinfo is None or self.start.utcoffset() != timedelta(0):
            raise ValueError("HourlySeries.start must be aware UTC")
        if self.start.minute or self.start.second or self.start.microsecond:
            raise ValueError("HourlySeries.start must be on an hour boundary")
        if self.signal not in SIGNALS:
            raise ValueError(f"signal must be one of {SIGNALS}, got {self.signal!r}")

    @property
    def hours(self) -> int:
        return int(self.values_g_per_kwh.shape[0])

    @property
    def end(self) -> datetime:
        return self.start + timedelta(hours=self.hours)

    def times(self) -> list[datetime]:
        return [self.start + timedelta(hours=i) for i in range(self.hours)]

    def window(self, start: datetime, hours: int) -> np.ndarray:
        """Values for ``[start, start + hours)`` (NaN where the series has none)."""
        offset = int(round((start - self.start) / timedelta(hours=1)))
        out = np.full(hours, np.nan)
        lo, hi = max(0, offset), min(self.hours, offset + hours)
        if hi > lo:
            out[lo - offset:hi - offset] = self.values_g_per_kwh[lo:hi]
        return out

    def with_values(self, values: np.ndarray, **changes) -> "HourlySeries":
        return replace(self, values_g_per_kwh=values, **changes)


def hour_slots(times: list[datetime]) -> tuple[datetime, np.ndarray]:
    """The first UTC hour of timestamped points (aware datetimes) and each point's hour after it."""
    hours = np.floor(np.array([t.timestamp() for t in times]) / 3600.0).astype(np.int64)
    first = int(hours.min())
    return datetime.fromtimestamp(first * 3600, tz=timezone.utc), hours - first


def hourly_means(hour_index: np.ndarray, values, n_hours: int | None = None) -> np.ndarray:
    """The mean of the finite ``values`` in each hour slot (NaN where a slot has none)."""
    v = np.asarray(values, dtype=float)  # None -> NaN
    ok = np.isfinite(v)
    n = int(hour_index.max()) + 1 if n_hours is None else n_hours
    sums = np.bincount(hour_index[ok], weights=v[ok], minlength=n)
    counts = np.bincount(hour_index[ok], minlength=n)
    with np.errstate(invalid="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def to_hourly(times: list[datetime], values: list[float], **fields) -> HourlySeries:
    """Average timestamped points (aware datetimes, any spacing) into UTC hours."""
    if not times:
        raise ValueError("no points")
    start, index = hour_slots(times)
    return HourlySeries(start=start, values_g_per_kwh=hourly_means(index, values), **fields)


FLAT_RUN_HOURS = 6  # a run this long of one unchanged value is a candidate gap fill
RECURRING_RUNS = 3  # ... unless the value forms this many runs in the series (a value the mix produces)


def flat_fill_mask(x: np.ndarray) -> np.ndarray:
    """True where an hour belongs to a flat run judged to be gap fill: a run of >= FLAT_RUN_HOURS
    identical consecutive values, unless that value forms >= RECURRING_RUNS such runs (then it is
    a value the grid's mix produces, e.g. pure hydro, not a carried-over reading). Published
    histories often back/forward-fill their gaps; scoring a forecaster on the fills flatters it."""
    runs = []  # (start, length, value)
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and x[j + 1] == x[i]:
            j += 1
        if j - i + 1 >= FLAT_RUN_HOURS:
            runs.append((i, j - i + 1, x[i]))
        i = j + 1
    recurring = Counter(v for _, _, v in runs)
    mask = np.zeros(len(x), dtype=bool)
    for start, length, value in runs:
        if recurring[value] < RECURRING_RUNS:
            mask[start:start + length] = True
    return mask
