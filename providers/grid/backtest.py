"""Rolling-origin backtest of the forecasting models.

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

The history files it scores are read by ``history.read_history_csv`` / ``read_histories``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable

import numpy as np

from carbonsched.providers.grid.forecaster import DEFAULT_FIT_HISTORY_H, LOOKBACK_H, MIN_HISTORY_H, MODELS

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
