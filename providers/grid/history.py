"""Users' hourly intensity history files: reading, validating, and joining them.

``read_history_csv(path, zone=None, signal="lca")`` accepts three CSV layouts (UTF-8, header row):

(a) simple: a time column named ``datetime_utc``, ``datetime``, ``timestamp`` or ``time`` and one
    value column: ``carbon_intensity_g_per_kwh`` (or ``intensity_g_per_kwh``,
    ``carbon_intensity``, ``value``), or any single other column;
(b) wide: ``datetime_utc`` + one column per zone code (the 123-zone Electricity Maps file):
    ``zone`` selects the column;
    For (a) and (b) the file does not say which signal it holds: ``signal`` labels it
    (the 123-zone file is lifecycle, "lca").
(c) the Electricity Maps data-portal export: ``Datetime (UTC)``, ``Zone Id``,
    ``Carbon Intensity gCO₂eq/kWh (direct)``, ``Carbon Intensity gCO₂eq/kWh (LCA)``,
    ``Data Estimated``, ...; ``signal`` picks LCA (lifecycle) or direct explicitly.

Timestamps are ISO 8601; with an offset or ``Z`` they are converted to UTC, without one they are
taken as UTC. Values in the same UTC hour (duplicates, sub-hourly data) are averaged, rows may be
unsorted, and hours with no row or an empty cell become NaN.
"""
from __future__ import annotations

import csv
import difflib
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from carbonsched.errors import UserInputError
from carbonsched.providers.grid.series import hour_slots, hourly_means
from carbonsched.units import parse_utc

TIME_COLUMNS = ("datetime_utc", "datetime", "timestamp", "time")
VALUE_COLUMNS = ("carbon_intensity_g_per_kwh", "intensity_g_per_kwh", "carbon_intensity", "value")
EM_TIME = "Datetime (UTC)"
EM_VALUE = {"lca": "Carbon Intensity gCO₂eq/kWh (LCA)", "direct": "Carbon Intensity gCO₂eq/kWh (direct)"}
SIGNAL_NAMES = {"lca": "average-lca", "direct": "average-direct"}


def _parse_time(text: str, path: Path, line: int) -> datetime:
    """ISO 8601 -> aware UTC (a time without offset is UTC), via the one parser in carbonsched.units."""
    return parse_utc(text.strip(), f"{path}, line {line}: timestamp")


MAX_G_PER_KWH = 3000.0  # lignite at its worst is ~1,100 g/kWh lifecycle; anything past 3,000 is a unit error
KG_SUSPECT_MAX = 1.0  # a whole history below 1 is kg/kWh (no grid's hourly mix stays under 1 g/kWh)
KG_MIXED_MEDIAN = 20.0  # values below 1 beside others with a median above this: kg/kWh rows mixed in


def _parse_value(text: str, path: Path, line: int, column: str) -> float:
    s = text.strip()
    if s == "" or s.lower() in ("nan", "na", "null", "none"):
        return np.nan
    try:
        v = float(s)
    except ValueError:
        raise UserInputError(f"{path}, line {line}: {column!r} is not a number: {text!r}") from None
    if not np.isfinite(v):
        return np.nan
    if v < 0:
        raise UserInputError(f"{path}, line {line}: {column!r} is negative ({text.strip()}); carbon intensity is "
                             "g CO2eq/kWh >= 0: fix the row or leave it empty (a gap)")
    if v > MAX_G_PER_KWH:
        raise UserInputError(f"{path}, line {line}: {column!r} = {v:g} g/kWh is beyond any grid (at most "
                             f"{MAX_G_PER_KWH:g}); check the unit (g CO2eq/kWh)")
    return v


def _check_plausible(axis, vals: np.ndarray, path: Path, column: str) -> None:
    """Refuse what would be silently wrong: kg/kWh given for g/kWh (the whole column, or rows of it:
    values in (0, 1) in a file whose other values have a median above ``KG_MIXED_MEDIAN``; a
    genuinely clean grid's hours below 1 g/kWh sit among low hours, not beside 300 g/kWh), and one
    hour given twice with different values (averaging them would invent a number)."""
    finite = vals[np.isfinite(vals)]
    if finite.size and 0 < finite.max() < KG_SUSPECT_MAX:
        raise UserInputError(f"{path}: every {column!r} value is below {KG_SUSPECT_MAX:g} (max {finite.max():g}); "
                             "that is kg/kWh, not g/kWh: multiply the column by 1000")
    tiny = (vals > 0) & (vals < KG_SUSPECT_MAX)  # NaN compares False
    rest = finite[finite >= KG_SUSPECT_MAX]  # the g/kWh-looking rows: their median, however many kg rows there are
    if tiny.any() and rest.size and np.median(rest) > KG_MIXED_MEDIAN:
        k = int(np.argmax(tiny))
        raise UserInputError(f"{path}, line {k + 2}: {column!r} = {vals[k]:g} is below {KG_SUSPECT_MAX:g} g/kWh while the "
                             f"median of the file's other values is {np.median(rest):g} ({int(tiny.sum())} rows below "
                             f"{KG_SUSPECT_MAX:g}): kg/kWh rows mixed into g/kWh ones? multiply those rows by 1000 "
                             "(or leave them empty, a gap)")
    if not axis.repeated_timestamps:
        return
    seen: dict = {}
    for k, (t, v) in enumerate(zip(axis.times, vals)):
        line = k + 2
        if t in seen and np.isfinite(v) and np.isfinite(seen[t][1]) and v != seen[t][1]:
            raise UserInputError(f"{path}, lines {seen[t][0]} and {line}: {t.isoformat()} appears twice with different "
                                 f"values ({seen[t][1]:g} and {v:g}); keep one row per timestamp")
        seen.setdefault(t, (line, v))


def _unknown_zone(zone: str, known: Sequence[str], path: Path) -> UserInputError:
    close = difflib.get_close_matches(zone, known, n=5, cutoff=0.5)
    close += [k for k in known if k.upper().startswith(zone.upper()) and k not in close][:5]
    hint = f"; did you mean {', '.join(close)}?" if close else f"; the file has: {', '.join(list(known)[:20])}"
    return UserInputError(f"zone {zone!r} is not a column of {path}{hint}")


def read_history_csv(path, zone: str | None = None, signal: str = "lca") -> tuple[np.ndarray, datetime, dict]:
    """Read an hourly intensity history (formats in the module doc) -> (values, start UTC, info).

    ``values`` is one float per UTC hour from ``start`` to the last hour present (NaN = gap).
    ``info``: zone, signal (average-lca / average-direct / as labelled), format, column, rows,
    hours, missing_hours, duplicate_rows, resolution_minutes (median spacing of the timestamps;
    points closer than an hour are averaged into their UTC hour), estimated_hours (portal export only).
    Raises ``UserInputError`` for unreadable files, wrong columns and unknown zones.
    """
    path = Path(path)
    if signal not in EM_VALUE:
        raise UserInputError(f"signal must be 'lca' (lifecycle) or 'direct', got {signal!r}")
    key = file_version(path)
    with _READ_LOCK:  # the rows and the time axis below are of this one version of the file
        return _read_version(path, key, zone, signal)


def _read_version(path: Path, key: tuple, zone: str | None, signal: str) -> tuple[np.ndarray, datetime, dict]:
    rows = _csv_rows(path, key)
    if len(rows) < 2:
        raise UserInputError(f"{path} has no data rows; expected a header and one row per hour")
    header = [h.strip() for h in rows[0]]
    body = rows[1:]
    info: dict = {"path": str(path)}
    estimated = None
    if EM_TIME in header:  # (c) Electricity Maps portal export
        col = EM_VALUE[signal]
        if col not in header:
            raise UserInputError(f"{path} looks like an Electricity Maps export but lacks the column {col!r}; "
                                 f"columns: {', '.join(header)}")
        t_i, v_i = header.index(EM_TIME), header.index(col)
        file_zones = sorted({r[header.index("Zone Id")].strip() for r in body
                             if "Zone Id" in header and len(r) > header.index("Zone Id")})
        if zone is not None and file_zones and zone not in file_zones:
            raise UserInputError(f"{path} holds zone {', '.join(file_zones)}, not {zone!r}; "
                                 "pass the zone of the file or another file")
        if len(file_zones) > 1:
            raise UserInputError(f"{path} mixes zones {', '.join(file_zones)}; export one zone per file")
        zone_name = zone or (file_zones[0] if file_zones else "")
        if "Data Estimated" in header:
            e_i = header.index("Data Estimated")
            estimated = [len(r) > e_i and r[e_i].strip().lower() == "true" for r in body]
        info.update(format="electricitymaps-portal", column=col, signal=SIGNAL_NAMES[signal])
    else:
        t_name = next((c for c in TIME_COLUMNS if c in header), None)
        if t_name is None:
            raise UserInputError(f"{path}: no time column; expected one of {', '.join(TIME_COLUMNS)} "
                                 f"or '{EM_TIME}' (Electricity Maps export), got {', '.join(header)}")
        t_i = header.index(t_name)
        others = [c for c in header if c != t_name]
        named = [c for c in VALUE_COLUMNS if c in others]
        if zone is not None and zone in others:
            col, fmt = zone, ("wide" if len(others) > 1 else "simple")
        elif named:
            col, fmt = named[0], "simple"
        elif len(others) == 1:
            col, fmt = others[0], "simple"
        elif zone is None:
            raise UserInputError(f"{path} has {len(others)} value columns ({', '.join(others[:10])}"
                                 f"{', ...' if len(others) > 10 else ''}); pass the zone to select one")
        else:
            raise _unknown_zone(zone, others, path)
        v_i = header.index(col)
        zone_name = zone or (col if fmt == "wide" else "")
        info.update(format=fmt, column=col, signal=SIGNAL_NAMES[signal])
    axis = _cached_axis(key, t_i)  # None when a row is short or a time does not parse
    vals = _fast_values(body, v_i)  # None when a cell needs the careful parser
    if axis is None or vals is None:
        vals = _careful_values(body, t_i, v_i, path, header)  # raises the first bad row's error, in file order
    _check_plausible(axis, vals, path, header[v_i])
    values = hourly_means(axis.hour_index, vals, axis.n_hours)
    if axis.resolution_minutes is not None:  # the typical spacing: 60 for hourly files, 15 or 30 for sub-hourly ones
        info["resolution_minutes"] = axis.resolution_minutes
    info.update(zone=zone_name, rows=len(body), hours=axis.n_hours, missing_hours=int(np.isnan(values).sum()),
                duplicate_rows=axis.duplicate_hours, unsorted=axis.unsorted)
    if estimated is not None:
        info["estimated_hours"] = int(np.unique(axis.hour_index[np.array(estimated, dtype=bool)]).size)
    return values, axis.start, info


def _fast_values(body: list, v_i: int) -> np.ndarray | None:
    """Column ``v_i`` as floats (NaN for gaps and infinities), vectorised; None when any cell is
    not a plain number within range (short rows, words, negatives, unit errors)."""
    try:
        vals = np.array([r[v_i].strip() or "nan" for r in body], dtype=float)
    except (IndexError, ValueError):
        return None
    finite = vals[np.isfinite(vals)]
    if (finite < 0).any() or (finite > MAX_G_PER_KWH).any():
        return None
    return np.where(np.isfinite(vals), vals, np.nan)


def _careful_values(body: list, t_i: int, v_i: int, path: Path, header: list) -> np.ndarray:
    """The row-by-row parser: the first bad row (time or value, in file order) raises its error
    with the path as the user gave it; otherwise the values (words like "NA" are gaps)."""
    out = []
    for k, r in enumerate(body):
        line = k + 2
        if len(r) <= max(t_i, v_i):
            raise UserInputError(f"{path}, line {line}: expected {len(header)} columns, got {len(r)}")
        _parse_time(r[t_i], path, line)
        out.append(_parse_value(r[v_i], path, line, header[v_i]))
    return np.array(out, dtype=float)


_READ_LOCK = threading.Lock()  # plans read the files of many regions from worker threads


def file_version(path: Path) -> tuple:
    """What identifies one version of a file: its resolved path, inode, size, and modification and
    change times (ctime moves on every write, even when a copy keeps the old mtime and size)."""
    try:
        st = path.stat()
        return str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns
    except OSError as exc:
        raise UserInputError(f"cannot read history file {path}: {exc}") from None


def _csv_rows(path: Path, key: tuple) -> list[list[str]]:
    """The file's non-blank rows, parsed once per process and file version: a many-zone file is read
    once for all its zones (a plan over 25 zones read the 123-zone file 25 times: 7 s)."""
    try:
        return _cached_rows(key)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserInputError(f"cannot read history file {path}: {exc}") from None


@lru_cache(maxsize=4)
def _cached_rows(key: tuple) -> list[list[str]]:
    with open(key[0], newline="", encoding="utf-8-sig") as fh:
        return [r for r in csv.reader(fh) if any(c.strip() for c in r)]


@dataclass(frozen=True, eq=False)
class _TimeAxis:
    """A file's time column, parsed once per file version and column (like ``_csv_rows``)."""

    times: list  # aware UTC datetimes, one per row
    start: datetime  # the first UTC hour
    hour_index: np.ndarray  # (rows,) each row's hour after start
    n_hours: int
    duplicate_hours: int  # rows in an hour another row already has (sub-hourly data or repeats)
    repeated_timestamps: bool
    unsorted: bool
    resolution_minutes: float | None  # median spacing of the distinct timestamps


@lru_cache(maxsize=8)
def _cached_axis(key: tuple, t_i: int) -> _TimeAxis | None:
    """The time column of the rows cached under ``key`` (read_history_csv holds _READ_LOCK from the
    rows to here, so they are the same version); None when a row is short or a time does not parse."""
    rows = _cached_rows(key)
    times = []
    try:
        for k, r in enumerate(rows[1:]):
            times.append(_parse_time(r[t_i], Path(key[0]), k + 2))
    except (IndexError, UserInputError):
        return None
    start, hours = hour_slots(times)
    stamps = np.array([t.timestamp() for t in times])
    distinct = np.unique(stamps)
    return _TimeAxis(times=times, start=start, hour_index=hours, n_hours=int(hours.max()) + 1,
                     duplicate_hours=int(hours.size - np.unique(hours).size),
                     repeated_timestamps=bool(distinct.size < stamps.size), unsorted=bool((np.diff(stamps) < 0).any()),
                     resolution_minutes=float(np.median(np.diff(distinct)) / 60.0) if distinct.size > 1 else None)


def read_histories(paths, zone: str | None = None, signal: str = "lca") -> tuple[np.ndarray, datetime, dict]:
    """``read_history_csv`` of several files (e.g. one per year) joined on one hourly axis: later
    files win where they overlap, hours none covers are NaN. ``info`` is the first file's, with
    ``files``, ``hours`` and ``resolution_minutes`` (the finest) over all of them."""
    parts = [read_history_csv(p, zone=zone, signal=signal) for p in paths]
    if len(parts) == 1:
        return parts[0]
    t0 = min(start for _, start, _ in parts)
    t1 = max(start + timedelta(hours=len(v)) for v, start, _ in parts)
    out = np.full(int((t1 - t0) / timedelta(hours=1)), np.nan)
    for v, start, _ in parts:
        at = int((start - t0) / timedelta(hours=1))
        seg = out[at: at + len(v)]
        out[at: at + len(v)] = np.where(np.isfinite(v), v, seg)
    info = {**parts[0][2], "files": [str(p) for p in paths], "hours": int(out.size),
            "resolution_minutes": min(i.get("resolution_minutes", 60.0) for _, _, i in parts)}
    return out, t0, info
