"""On-disk cache of fetched intensity series, with fetch time.

One JSON file per (source, zone, signal, kind) under ``<cache_dir>/grid/`` (``Settings.cache_dir``:
``<home>/cache`` when a home is set, else ``$XDG_CACHE_HOME/carbonsched``). Writes are atomic
(temp file + rename), so a crash never leaves a half-written cache. History entries accumulate:
a new history fetch is merged into what is cached (newer values win), so the cache builds up
the two weeks the forecaster needs. A corrupt file (not the layout ``_dump`` writes, or values
outside the plausible 0 .. 3,000 g/kWh that intensity files are held to) is reported and ignored,
never trusted: ``get`` appends a warning to the caller's ``problems`` list (the forecast's
warnings, so the plan says so) as well as to ``SeriesCache.problems``.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from carbonsched.fileio import write_json_atomic
from carbonsched.providers.grid.history import MAX_G_PER_KWH
from carbonsched.providers.grid.series import HourlySeries

FORMAT_VERSION = 1
MAX_HISTORY_HOURS = 24 * 120  # keep at most ~4 months of history per zone


def _key(source: str, zone: str, signal: str, kind: str) -> str:
    safe = lambda s: re.sub(r"[^A-Za-z0-9_.-]", "_", s)  # noqa: E731
    return f"{safe(source)}__{safe(zone)}__{safe(signal)}__{safe(kind)}.json"


def _dump(series: HourlySeries) -> dict:
    return {
        "format": FORMAT_VERSION, "zone": series.zone, "start": series.start.isoformat(),
        "values_g_per_kwh": [None if not np.isfinite(v) else round(float(v), 4) for v in series.values_g_per_kwh],
        "signal": series.signal, "source": series.source, "kind": series.kind,
        "fetched_at": series.fetched_at.isoformat() if series.fetched_at else None, "note": series.note,
    }


def _load(doc) -> HourlySeries:
    """The series ``_dump`` wrote; ValueError/KeyError/TypeError for anything else (a JSON list, an
    implausible value, a time without zone), so the file is reported and ignored."""
    if not isinstance(doc, dict):
        raise ValueError(f"a JSON {type(doc).__name__}, not the cache's object")
    if doc.get("format") != FORMAT_VERSION:
        raise ValueError(f"cache format {doc.get('format')!r} is not {FORMAT_VERSION}")
    raw = doc["values_g_per_kwh"]
    if not isinstance(raw, list):
        raise ValueError(f"values_g_per_kwh is a JSON {type(raw).__name__}, not a list")
    values = np.array([np.nan if v is None else float(v) for v in raw], dtype=float)
    bad = np.flatnonzero(np.array([v is not None for v in raw], dtype=bool) & ~((values >= 0) & (values <= MAX_G_PER_KWH)))
    if bad.size:  # the same range intensity files are held to (history._parse_value); NaN/inf never are written
        raise ValueError(f"value {values[bad[0]]:g} g/kWh at hour {int(bad[0])} is not within 0 .. {MAX_G_PER_KWH:g}")
    fetched_at = datetime.fromisoformat(doc["fetched_at"]) if doc.get("fetched_at") else None
    if fetched_at is not None and fetched_at.tzinfo is None:
        raise ValueError(f"fetched_at {doc['fetched_at']!r} has no time zone")
    return HourlySeries(
        zone=doc["zone"], start=datetime.fromisoformat(doc["start"]), values_g_per_kwh=values,
        signal=doc["signal"], source=doc["source"], kind=doc["kind"], fetched_at=fetched_at,
        note=doc.get("note", ""),
    )


def merge_history(old: HourlySeries, new: HourlySeries, max_hours: int = MAX_HISTORY_HOURS) -> HourlySeries:
    """Union of two hourly series of the same zone/signal; ``new`` wins where both have a value."""
    start = min(old.start, new.start)
    end = max(old.end, new.end)
    hours = int((end - start) / timedelta(hours=1))
    values = old.window(start, hours)
    fresh = new.window(start, hours)
    values = np.where(np.isfinite(fresh), fresh, values)
    if hours > max_hours:
        start, values = end - timedelta(hours=max_hours), values[-max_hours:]
    return new.with_values(values, start=start)


class SeriesCache:
    """Series cached under ``root``; ``problems`` collects unreadable entries (for warnings; ``get``
    and ``put`` also append each to the ``problems`` list they are given: one forecast's warnings)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.problems: list[str] = []

    def path(self, source: str, zone: str, signal: str, kind: str) -> Path:
        return self.root / _key(source, zone, signal, kind)

    def get(self, source: str, zone: str, signal: str, kind: str,
            problems: list[str] | None = None) -> HourlySeries | None:
        path = self.path(source, zone, signal, kind)
        try:
            with path.open(encoding="utf-8") as fh:
                return _load(json.load(fh))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problem = f"ignored unreadable cache file {path} ({exc}); delete it or run again online"
            self.problems.append(problem)
            if problems is not None and problem not in problems:
                problems.append(problem)
            return None

    def put(self, series: HourlySeries, problems: list[str] | None = None) -> HourlySeries:
        """Store ``series`` (merged into cached history for kind "history"); returns what was stored."""
        if series.kind == "history":
            old = self.get(series.source, series.zone, series.signal, "history", problems)
            if old is not None:
                series = merge_history(old, series)
        path = self.path(series.source, series.zone, series.signal, series.kind)
        write_json_atomic(path, _dump(series))
        return series
