"""Decision backtest: what a "start now or wait" decision realises, replayed with the history cut at
each instant, for carbonsched's forecaster and for simple predictors.

Forecast error is not what a user lives with; the start a plan picks is. For a job of ``H`` hours
that may wait up to ``D`` hours, at each origin ``o`` (an hour of the scored span) and for each
predictor ``P`` that sees only ``values[: o]``:

* ``f = P(history)`` over the next ``D + H`` hours; its window means ``F[s] = mean(f[s : s + H])``
  for ``s = 0 .. D``;
* the chosen start ``s*`` is the planner's own rule (``policies.ranking.row_earliest_within`` with
  ``Policy.tie_fraction``): the earliest ``s`` whose ``F[s]`` is within ``max(min_gain_pct, tie)``
  of the smallest, so a gain inside the margin does not justify waiting; with ``robust`` (the
  planner's default, ``deferral = "robust"``) only
  starts whose p90 window mean beats ``F[0]`` may be chosen (a gain the forecast's own error
  could erase does not justify waiting; predictors without a spread are unchanged);
* with the actual series ``a``: run-now ``N = mean(a[o : o + H])``, realised
  ``R = mean(a[o + s* : o + s* + H])``, hindsight-best ``O = min_s mean(a[o + s : o + s + H])``.

Scores per predictor, pooled over origins (every job the same energy, so intensities add):
realised saving ``sum(N - R) / sum(N)``; the oracle's ``sum(N - O) / sum(N)``; the share of
the oracle's saving captured ``sum(N - R) / sum(N - O)``; the share of decisions worse than
starting now (``R > N``); the mean regret ``mean(R - O)`` in g/kWh; the share that waited.
Origins whose actual windows have a gap, or where a predictor cannot forecast (too little
history), are skipped for that predictor and counted.

Predictors (``PREDICTORS``): ``carbonsched`` (``forecaster.forecast_series``, what ``plan`` uses
with a history file), ``weekly-mean`` (same hour over the last 7 days), ``yesterday`` (the last
day repeated), ``last-year`` (the same calendar month a year before, hour of day by hour of day,
scaled to the level of the last 7 days; needs a year and a week of history).

Origins: every hour of the scored span where the job's whole window ``o .. o + D + H`` has actual
data; ``origins=N`` draws N of them with ``seed`` (sorted), else one per day at an hour drawn with
``seed``. Deterministic for a given seed.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Callable

import numpy as np

from carbonsched.policies import Policy
from carbonsched.policies.ranking import row_earliest_within
from carbonsched.providers.grid.forecaster import (ForecastArrays, forecast_series, seasonal_naive_24h,
                                                   weekly_mean)

YEAR_H = 364 * 24  # 52 weeks back: the same weekday and hour a year before


def last_year(history, history_start: datetime, horizon_h: int, quantiles=(0.1, 0.9)) -> ForecastArrays:
    """The same hours 52 weeks before, scaled so that their last 7 days match the last 7 days'
    mean level (module docstring). ValueError without a year and a week of history."""
    x = np.asarray(history, dtype=float)
    if x.size < YEAR_H + 168:
        raise ValueError(f"last-year needs {YEAR_H + 168} hours of history, got {x.size}")
    n = x.size
    ago = x[n - YEAR_H: n - YEAR_H + horizon_h]
    ago = np.concatenate([ago, np.full(horizon_h - ago.size, np.nan)]) if ago.size < horizon_h else ago
    before, recent = x[n - YEAR_H - 168: n - YEAR_H], x[n - 168:]
    ok = np.isfinite(before) & np.isfinite(recent)
    level = float(np.mean(recent[ok]) / np.mean(before[ok])) if ok.sum() >= 24 and np.mean(before[ok]) > 0 else 1.0
    mean = ago * level
    if not np.isfinite(mean).all():  # gaps a year ago: the last week's same-hour mean fills them
        fill = weekly_mean(x, history_start, horizon_h, quantiles).mean
        mean = np.where(np.isfinite(mean), mean, fill)
    start = history_start + timedelta(hours=n)
    return ForecastArrays(start, mean, mean.copy(), mean.copy(), "last_year", tuple(quantiles), {"level": level})


PREDICTORS: dict[str, Callable[..., ForecastArrays]] = {
    "carbonsched": forecast_series, "weekly-mean": weekly_mean, "yesterday": seasonal_naive_24h, "last-year": last_year,
}


@dataclass(frozen=True)
class DecisionScores:
    predictor: str
    origins: int  # decisions scored
    skipped: int  # origins this predictor could not forecast (with no origin scored the scores are NaN; None in to_dict)
    realised_saving_pct: float
    oracle_saving_pct: float
    captured_pct: float | None  # None when the oracle saves nothing
    worse_than_now_pct: float
    mean_regret_g_per_kwh: float
    waited_pct: float


@dataclass(frozen=True)
class DecisionBacktest:
    zone: str
    hours: int
    max_delay_hours: int
    min_gain_pct: float
    seed: int
    scored_from: datetime
    scored_to: datetime
    candidate_origins: int
    scores: tuple[DecisionScores, ...]
    robust: bool = True

    def to_dict(self) -> dict:
        """The result as strict JSON values: a score nothing was scored for (NaN) is ``None``."""
        return {"schema_version": 1, "zone": self.zone, "hours": self.hours, "max_delay_hours": self.max_delay_hours,
                "min_gain_pct": self.min_gain_pct, "seed": self.seed,
                "scored_from": self.scored_from.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "scored_to": self.scored_to.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "candidate_origins": self.candidate_origins, "robust": self.robust,
                "scores": [{k: _finite_or_none(v) for k, v in asdict(s).items()} for s in self.scores]}


def _finite_or_none(v):
    """NaN/inf -> None: JSON has no NaN (a predictor with no scored origin has no score)."""
    return None if isinstance(v, float) and not np.isfinite(v) else v


def window_means(x: np.ndarray, hours: int) -> np.ndarray:
    """``mean(x[s : s + hours])`` for every ``s`` that fits (NaN where the window has a gap)."""
    c = np.concatenate([[0.0], np.cumsum(np.nan_to_num(x))])
    bad = np.concatenate([[0], np.cumsum(~np.isfinite(x))])
    s = (c[hours:] - c[:-hours]) / hours
    return np.where(bad[hours:] - bad[:-hours] > 0, np.nan, s)


def choose_start(forecast_means: np.ndarray, min_gain_pct: float = 0.0, upper_means: np.ndarray | None = None) -> int:
    """The start the planner picks from forecast window means (module docstring). With
    ``upper_means`` (the windows' p90 means: the robust deferral rule) a later start is eligible
    only when even its upper decile beats the expected intensity of starting now."""
    upper = None if upper_means is None else np.asarray(upper_means, dtype=float)[None, :]
    return int(decide(np.asarray(forecast_means, dtype=float)[None, :], upper, min_gain_pct)[0])


def candidate_origins(values: np.ndarray, start: datetime, hours: int, max_delay: int,
                      score_from: datetime | None, min_history_h: int) -> np.ndarray:
    """Hours ``o`` from ``score_from`` on with ``min_history_h`` of history before them and a fully
    known actual window ``o .. o + max_delay + hours``."""
    full = window_means(values, max_delay + hours)  # finite where the whole window is known
    first = max(min_history_h, int((score_from - start) / timedelta(hours=1)) if score_from else 0)
    o = np.arange(first, full.size)
    return o[np.isfinite(full[o])]


def pick_origins(candidates: np.ndarray, start: datetime, origins: int | None, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if candidates.size == 0:
        return candidates
    if origins is not None:
        return np.sort(rng.choice(candidates, size=min(origins, candidates.size), replace=False))
    days = (candidates + start.hour) // 24  # one per UTC day, at an hour drawn for each day
    out = []
    for d in np.unique(days):
        in_day = candidates[days == d]
        out.append(in_day[rng.integers(in_day.size)])
    return np.array(out, dtype=int)


def forecast_windows(values: np.ndarray, start: datetime, origins: np.ndarray, hours: int, max_delay: int,
                     predictor, progress=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per origin, the predictor's window means ``F`` and p90 window means ``U`` for starts
    ``0 .. max_delay`` (``(n, max_delay + 1)``), and which origins it could forecast."""
    F = np.full((origins.size, max_delay + 1), np.nan)
    U = F.copy()
    ok = np.zeros(origins.size, dtype=bool)
    for i, o in enumerate(origins):
        try:
            fc = predictor(values[:o], start, max_delay + hours)
        except ValueError:
            continue
        F[i], U[i], ok[i] = window_means(fc.mean, hours), window_means(fc.p90, hours), True
        if progress is not None:
            progress()
    return F, U, ok


def decide(F: np.ndarray, U: np.ndarray | None, min_gain_pct: float = 0.0) -> np.ndarray:
    """The chosen start per row of forecast window means ``F`` (``choose_start`` for many origins
    at once; ``U`` given: the robust rule)."""
    fraction = Policy(objective="carbon", min_gain_pct=min_gain_pct).tie_fraction
    eligible = np.isfinite(F)
    if U is not None:
        eligible &= (np.arange(F.shape[1])[None, :] == 0) | (U < F[:, :1])
    out = np.zeros(F.shape[0], dtype=int)
    rows, cols = row_earliest_within(F, eligible, fraction)
    out[rows] = cols
    return out


def score_decisions(name: str, A: np.ndarray, starts: np.ndarray, skipped: int = 0) -> DecisionScores:
    """Scores of the starts chosen at each origin, ``A`` the actual window means ``(n, max_delay + 1)``."""
    rows = [(a[0], float(a[s]), float(np.min(a)), s) for a, s in zip(A, starts)]
    return _score(name, rows, skipped)


def decision_backtest(values: np.ndarray, start: datetime, *, hours: int, max_delay: int, zone: str = "",
                      origins: int | None = None, seed: int = 0, min_gain_pct: float = 0.0,
                      score_from: datetime | None = None, predictors: dict | None = None,
                      min_history_h: int = 14 * 24, robust: bool = True, progress=None) -> DecisionBacktest:
    """Replay the start decision at origins of ``values`` (hourly, from ``start``): see the module docstring."""
    if hours < 1 or max_delay < 1:
        raise ValueError("hours and max_delay must be at least 1 hour (with no delay there is no decision to score)")
    values = np.asarray(values, dtype=float)
    predictors = predictors or PREDICTORS
    cands = candidate_origins(values, start, hours, max_delay, score_from, min_history_h)
    chosen = pick_origins(cands, start, origins, seed)
    if chosen.size == 0:
        raise ValueError(f"no origin to score: it needs {min_history_h} h of history before it and "
                         f"{max_delay + hours} h of known values after it")
    A = actual_windows(values, chosen, hours, max_delay)
    total, done = chosen.size * len(predictors), [0]

    def tick():
        done[0] += 1
        if progress is not None:
            progress(done[0], total)

    scores = []
    for name, predictor in predictors.items():
        F, U, ok = forecast_windows(values, start, chosen, hours, max_delay, predictor, tick)
        starts = decide(F[ok], U[ok] if robust else None, min_gain_pct)
        scores.append(score_decisions(name, A[ok], starts, skipped=int((~ok).sum())))
    return DecisionBacktest(zone=zone, hours=hours, max_delay_hours=max_delay, min_gain_pct=min_gain_pct, seed=seed,
                            scored_from=start + timedelta(hours=int(chosen[0])),
                            scored_to=start + timedelta(hours=int(chosen[-1])), candidate_origins=int(cands.size),
                            scores=tuple(scores), robust=robust)


def actual_windows(values: np.ndarray, origins: np.ndarray, hours: int, max_delay: int) -> np.ndarray:
    """The actual window means for starts ``0 .. max_delay`` after each origin ``(n, max_delay + 1)``."""
    w = window_means(values, hours)
    return np.stack([w[o: o + max_delay + 1] for o in origins]) if origins.size else np.zeros((0, max_delay + 1))


def _score(name: str, rows: list, skipped: int) -> DecisionScores:
    if not rows:
        nan = float("nan")
        return DecisionScores(name, 0, skipped, nan, nan, None, nan, nan, nan)
    n, r, o, s = (np.array(c, dtype=float) for c in zip(*rows))
    oracle = float(np.sum(n - o))
    return DecisionScores(
        predictor=name, origins=len(rows), skipped=skipped,
        realised_saving_pct=float(100 * np.sum(n - r) / np.sum(n)),
        oracle_saving_pct=float(100 * oracle / np.sum(n)),
        captured_pct=float(100 * np.sum(n - r) / oracle) if oracle > 0 else None,
        worse_than_now_pct=float(100 * np.mean(r > n * (1 + 1e-9))),
        mean_regret_g_per_kwh=float(np.mean(r - o)), waited_pct=float(100 * np.mean(s > 0)))
