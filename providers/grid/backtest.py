"""Rolling-origin backtest of the forecasting models, and a reader for users' hourly history files.

``backtest(values, start, horizon_h=24, ...)``: at each origin ``o`` every model of
``forecaster.MODELS`` sees only ``values[o - history_h : o]`` and forecasts ``values[o : o + H]``.
Metrics per model, pooled over every (origin, lead hour) whose actual value is finite:

* ``mae`` -- mean absolute error, g/kWh (also ``per_horizon_mae[h]``, averaged over origins);
* ``mape`` -- mean of ``|forecast - actual| / |actual|`` in %, over the points whose
  ``|actual| >= mape_floor_g_per_kwh`` (default 1 g/kWh: below that the ratio is meaningless;
  the number of points skipped is reported as ``mape_skipped``). ``wape`` = sum |err| / sum |actual|
  in % is given as well (robust to small actuals);
* ``spearman`` -- per origin, the Spearman rank correlation between forecast and actual over
  the horizon window's hours with a finite actual (>= 3 of them; a constant forecast or actual
  has no rank order and is skipped), averaged over origins. ``spearman_origins`` says how many
  origins counted; with none (e.g. persistence, whose forecast is flat) it is NaN (``None`` in
  ``to_dict()``, since JSON has no NaN).

Missing actuals (NaN) are not scored; missing history is the models' business (the forecaster
fills gaps, the baselines skip them).

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
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from carbonsched.errors import UserInputError

from carbonsched.providers.grid.forecaster import DEFAULT_FIT_HISTORY_H, LOOKBACK_H, MIN_HISTORY_H, MODELS
from carbonsched.units import parse_utc

DEFAULT_HISTORY_H = DEFAULT_FIT_HISTORY_H + LOOKBACK_H + 168  # what the forecaster fits and looks back on
MODEL_ORDER = ("forecaster", "persistence", "seasonal_naive_24h", "weekly_mean")
HOUR = timedelta(hours=1)


@dataclass(frozen=True, eq=False)
class ModelScores:
    mae: float
    mape: float
    spearman: float
    wape: float
    per_horizon_mae: np.ndarray
    per_horizon_mape: np.ndarray
    points: int
    mape_skipped: int
    spearman_origins: int
    below_p10_pct: float = np.nan  # share of actuals below the low quantile (NaN: the model has no spread)
    above_p90_pct: float = np.nan  # share above the high quantile

    def to_dict(self, detail: bool = True) -> dict:
        out = {"mae": _num(self.mae), "mape": _num(self.mape), "spearman": _num(self.spearman)}
        if detail:
            out.update({"wape": _num(self.wape), "points": self.points, "mape_skipped": self.mape_skipped,
                        "spearman_origins": self.spearman_origins,
                        "below_p10_pct": _num(self.below_p10_pct), "above_p90_pct": _num(self.above_p90_pct),
                        "per_horizon_mae": [_num(v) for v in self.per_horizon_mae],
                        "per_horizon_mape": [_num(v) for v in self.per_horizon_mape]})
        return out


@dataclass(frozen=True, eq=False)
class BacktestResult:
    zone: str
    horizon_hours: int
    history_hours: int
    origins: tuple[datetime, ...]
    models: dict[str, ModelScores]
    skipped_origins: dict[str, int] = field(default_factory=dict)  # model -> origins it could not forecast

    def to_dict(self, detail: bool = True) -> dict:
        """``{"schema_version": 1, "zone", "horizon_hours", "models": {name: {"mae", "mape", "spearman", ...}}, ...}``."""
        return {
            "schema_version": 1,
            "zone": self.zone,
            "horizon_hours": self.horizon_hours,
            "models": {name: s.to_dict(detail) for name, s in self.models.items()},
            "origins": len(self.origins),
            "first_origin": _iso(self.origins[0]) if self.origins else None,
            "last_origin": _iso(self.origins[-1]) if self.origins else None,
            "history_hours": self.history_hours,
            "skipped_origins": dict(self.skipped_origins),
            "units": {"mae": "gCO2eq/kWh", "mape": "%", "wape": "%", "spearman": "rank correlation"},
        }


def _num(v: float):
    v = float(v)
    return v if np.isfinite(v) else None


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _to_utc(t: datetime) -> datetime:
    if t.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware (UTC)")
    return t.astimezone(timezone.utc)


def _origin_indices(n: int, start: datetime, horizon_h: int, origins, history_min: int) -> np.ndarray:
    """Origin indices into ``values``. ``origins``: None (every day at 00:00 UTC from the first
    with 14 days of history to the last with a full horizon), a sequence of datetimes / indices,
    or ``(first, last, step_h)`` with first/last datetimes or indices (inclusive)."""
    def idx(o) -> int:
        if isinstance(o, datetime):
            off = (_to_utc(o) - start) / HOUR
            if off != int(off):
                raise ValueError(f"origin {o} is not on an hour boundary of the series")
            return int(off)
        return int(o)

    if origins is None:
        first = history_min + (-(start + history_min * HOUR).hour) % 24  # next 00:00 UTC
        out = np.arange(first, n - horizon_h + 1, 24)
    elif (isinstance(origins, tuple) and len(origins) == 3 and not isinstance(origins[2], datetime)):
        first, last, step = idx(origins[0]), idx(origins[1]), int(origins[2])
        if step < 1:
            raise ValueError("origin step must be at least 1 hour")
        out = np.arange(first, last + 1, step)
    else:
        out = np.array([idx(o) for o in origins], dtype=int)
    bad = out[(out < 1) | (out > n - 1)]
    if bad.size:
        raise ValueError(f"origins outside the series (index {int(bad[0])} of {n} hours)")
    return out


def _spearman(f: np.ndarray, a: np.ndarray) -> float:
    ok = np.isfinite(a)
    if ok.sum() < 3:
        return np.nan
    f, a = f[ok], a[ok]
    if np.ptp(f) == 0 or np.ptp(a) == 0:
        return np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from scipy.stats import spearmanr  # scipy.stats costs ~0.8 s to import: only backtests need it

        return float(spearmanr(f, a).statistic)


def backtest(values: np.ndarray, start: datetime, *, horizon_h: int = 24,
             origins=None, history_h: int = DEFAULT_HISTORY_H, zone: str = "",
             models: Iterable[str] | None = None, mape_floor_g_per_kwh: float = 1.0,
             progress: Callable[[int, int], None] | None = None) -> BacktestResult:
    """Rolling-origin evaluation of ``models`` (default: all of ``MODELS``) on one hourly series.

    ``values[i]`` is the hour ``start + i h`` (NaN = missing). Each origin's models see at most
    ``history_h`` hours before it. Returns a ``BacktestResult``; see the module doc for metrics.
    ``progress(done, total)`` is called after each origin (the CLI draws a progress line with it).
    """
    x = np.asarray(values, dtype=float).ravel()
    start = _to_utc(start)
    if horizon_h < 1:
        raise ValueError("horizon_h must be at least 1")
    names = list(models) if models is not None else list(MODEL_ORDER)
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; known: {', '.join(MODELS)}")
    idx = _origin_indices(x.size, start, horizon_h, origins, MIN_HISTORY_H)
    if idx.size == 0:
        raise ValueError(f"no forecast origin fits: the series has {x.size} hours, the forecaster needs "
                         f"{MIN_HISTORY_H} of history plus {horizon_h} to score")
    abs_err = {m: np.full((idx.size, horizon_h), np.nan) for m in names}
    rel_err = {m: np.full((idx.size, horizon_h), np.nan) for m in names}
    rho = {m: np.full(idx.size, np.nan) for m in names}
    side = {m: np.full((idx.size, horizon_h), np.nan) for m in names}  # -1 below p10, +1 above p90, 0 inside
    spread = {m: False for m in names}
    skipped = {m: 0 for m in names}
    for i, o in enumerate(idx):
        if progress is not None:
            progress(i, idx.size)
        hist = x[max(0, o - history_h):o]
        actual = np.full(horizon_h, np.nan)
        seg = x[o:o + horizon_h]
        actual[:seg.size] = seg
        if not np.isfinite(actual).any():
            continue
        h_start = start + (o - hist.size) * HOUR
        big = np.abs(actual) >= mape_floor_g_per_kwh
        for m in names:
            try:
                fc = MODELS[m](hist, h_start, horizon_h)
            except ValueError:
                skipped[m] += 1
                continue
            f = fc.mean
            spread[m] |= bool(np.any(fc.p90 > fc.p10))
            with np.errstate(invalid="ignore"):
                side[m][i] = np.where(np.isfinite(actual), (actual > fc.p90).astype(float) - (actual < fc.p10), np.nan)
            err = np.abs(f - actual)
            abs_err[m][i] = err
            with np.errstate(divide="ignore", invalid="ignore"):
                rel_err[m][i] = np.where(big, err / np.abs(actual), np.nan)
            rho[m][i] = _spearman(f, actual)
    if progress is not None:
        progress(idx.size, idx.size)
    actual_all = np.abs(_pad_gather(x, idx, horizon_h))
    scores = {}
    for m in names:
        e, r = abs_err[m], rel_err[m]
        act = np.where(np.isfinite(e), actual_all, np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            scores[m] = ModelScores(
                mae=float(np.nanmean(e)) if np.isfinite(e).any() else np.nan,
                mape=float(100 * np.nanmean(r)) if np.isfinite(r).any() else np.nan,
                spearman=float(np.nanmean(rho[m])) if np.isfinite(rho[m]).any() else np.nan,
                wape=float(100 * np.nansum(e) / np.nansum(act)) if np.nansum(act) > 0 else np.nan,
                per_horizon_mae=np.nanmean(e, axis=0),
                per_horizon_mape=100 * np.nanmean(r, axis=0),
                points=int(np.isfinite(e).sum()),
                mape_skipped=int(np.isfinite(e).sum() - np.isfinite(r).sum()),
                spearman_origins=int(np.isfinite(rho[m]).sum()),
                below_p10_pct=_share_pct(side[m], -1) if spread[m] else np.nan,
                above_p90_pct=_share_pct(side[m], +1) if spread[m] else np.nan,
            )
    return BacktestResult(zone=zone, horizon_hours=horizon_h, history_hours=history_h,
                          origins=tuple(start + int(o) * HOUR for o in idx), models=scores,
                          skipped_origins={m: k for m, k in skipped.items() if k})


def _share_pct(side: np.ndarray, which: int) -> float:
    scored = side[np.isfinite(side)]
    return float(100 * np.mean(scored == which)) if scored.size else np.nan


def _pad_gather(x: np.ndarray, idx: np.ndarray, horizon_h: int) -> np.ndarray:
    xp = np.concatenate([x, np.full(horizon_h, np.nan)])
    return xp[idx[:, None] + np.arange(horizon_h)[None, :]]


# --------------------------------------------------------------------------- reading history files
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
    """Refuse what would be silently wrong: kg/kWh given for g/kWh, and one hour given twice with
    different values (averaging them would invent a number)."""
    finite = vals[np.isfinite(vals)]
    if finite.size and 0 < finite.max() < KG_SUSPECT_MAX:
        raise UserInputError(f"{path}: every {column!r} value is below {KG_SUSPECT_MAX:g} (max {finite.max():g}); "
                             "that is kg/kWh, not g/kWh: multiply the column by 1000")
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
    key = _file_key(path)
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
    ok = np.isfinite(vals)
    sums = np.bincount(axis.hour_index[ok], weights=vals[ok], minlength=axis.n_hours)
    counts = np.bincount(axis.hour_index[ok], minlength=axis.n_hours)
    with np.errstate(invalid="ignore"):
        values = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
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


def _file_key(path: Path) -> tuple:
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
    stamps = np.array([t.timestamp() for t in times])
    hours = np.floor(stamps / 3600.0).astype(np.int64)
    first = int(hours.min())
    distinct = np.unique(stamps)
    return _TimeAxis(times=times, start=datetime.fromtimestamp(first * 3600, tz=timezone.utc),
                     hour_index=hours - first, n_hours=int(hours.max()) - first + 1,
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
