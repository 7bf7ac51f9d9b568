"""Unit conversions and time parsing, in one place."""
from __future__ import annotations

import math
import re
from datetime import date, datetime, timedelta, timezone

from carbonsched.errors import JobSpecError

W_PER_KW = 1000.0
G_PER_KG = 1000.0

_DURATION_RE = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?)\s*(m|min|h|d|w)?\s*$", re.IGNORECASE)
_DURATION_UNIT_HOURS = {"m": 1 / 60, "min": 1 / 60, "h": 1.0, "d": 24.0, "w": 168.0}


def watts_hours_to_kwh(watts, hours):
    """Energy in kWh from power in W sustained for ``hours`` (works on numpy arrays)."""
    return watts * hours / W_PER_KW


def g_to_kg(grams):
    """Mass in kg from grams; g/kWh x kWh = g, so this turns intensity x energy into kgCO2e."""
    return grams / G_PER_KG


def parse_duration_hours(value, what: str = "duration") -> float:
    """Parse ``24h``, ``90m``, ``2d``, ``1w`` or a bare number of hours into hours (float >= 0)."""
    if isinstance(value, bool):
        raise JobSpecError(f"{what} must be a duration like '24h', got {value!r}")
    if isinstance(value, (int, float)):
        hours = float(value)
    elif isinstance(value, str):
        m = _DURATION_RE.match(value)
        if not m:
            raise JobSpecError(f"{what}: cannot read {value!r} as a duration; write e.g. '24h', '90m', '2d' or a number of hours")
        hours = float(m.group(1)) * _DURATION_UNIT_HOURS[(m.group(2) or "h").lower()]
    else:
        raise JobSpecError(f"{what} must be a duration like '24h', got {value!r}")
    if not math.isfinite(hours) or hours < 0:
        raise JobSpecError(f"{what} must be a finite duration >= 0, got {value!r}")
    return hours


MIN_YEAR, MAX_YEAR = 1970, 2200


def parse_utc(value, what: str = "time") -> datetime:
    """Parse an ISO 8601 timestamp (or a datetime) into an aware UTC datetime.

    A timestamp without offset is taken as UTC (documented; plans are in UTC throughout).
    """
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):  # a bare TOML date: midnight UTC
        dt = datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise JobSpecError(f"{what}: cannot read {value!r} as ISO 8601; write e.g. 2026-11-27T14:00:00Z") from None
    else:
        raise JobSpecError(f"{what} must be an ISO 8601 timestamp, got {value!r}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    if not MIN_YEAR <= dt.year <= MAX_YEAR:  # e.g. 9999-12-31 would overflow every window after it
        raise JobSpecError(f"{what}: {value!r} is outside {MIN_YEAR}..{MAX_YEAR}; give a real date")
    return dt.astimezone(timezone.utc)


def utc_instant(value, what: str = "now") -> datetime:
    """An aware datetime given to the library (``plan(job, now=...)``), as UTC: the same instant
    in any zone plans the same (hour slots and profiles are UTC hours)."""
    if not isinstance(value, datetime):
        raise JobSpecError(f"{what} must be a timezone-aware datetime, e.g. datetime.now(timezone.utc); "
                           f"got {type(value).__name__} {value!r}"[:200])
    if value.tzinfo is None or value.utcoffset() is None:
        raise JobSpecError(f"{what} must be timezone-aware (UTC); e.g. datetime.now(timezone.utc)")
    return value.astimezone(timezone.utc)


def iso_utc(dt: datetime) -> str:
    """ISO 8601 in UTC with a trailing Z, to the second."""
    return dt.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def hours_between(a: datetime, b: datetime) -> float:
    return (b - a) / timedelta(hours=1)
