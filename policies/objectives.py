"""Objectives: what "best" means.

Terms, all "lower is better", for candidate ``(o, k)``:

* ``carbon`` = kg_co2e[o, k]   (operational over the run window + embodied)
* ``cost``   = cost_usd[o]     (price x runtime; the same for every start)
* ``time``   = start_h[k] + runtime_h[o]   (finish time, hours after now)

Objectives:

* ``carbon`` / ``cost`` / ``time``: minimise that term. Values within ``min_gain_pct`` of each
  other (default 0: only float noise, a relative 1e-9) are ties, and ties go to the earliest start,
  then to the lower cost (then carbon, then finish time): a plan waits, or moves to another
  region, only for a gain larger than that. Per offering, "carbon" takes the earliest start
  whose carbon is within ``min_gain_pct`` of its greenest; "cost", which does not change with
  the start, takes the earliest start (for the greenest window at the lowest price, use
  ``lexicographic`` with ``order = ["cost", "carbon"]``). Across offerings the term is compared in
  buckets of that width from its minimum, ``floor((x - min) / (tol * |min|))``.
* ``weighted``: minimise ``sum_t w_t * (x_t - min_t) / (max_t - min_t)`` where min/max are taken
  over the feasible candidates (min-max normalisation makes kg, USD and hours commensurable; a
  term with zero range contributes 0). Weights must be >= 0 and not all zero.
* ``lexicographic``: compare the terms of ``order`` followed by the remaining terms in the order
  carbon, cost, time (``Policy.key_order``); two values of a term count as equal when they fall in
  the same bucket ``floor((x - min_t) / (tol * |min_t|))`` with ``tol = tolerance_pct/100`` (so
  "1 % more carbon" is a tie and the next term decides). The last term of that full sequence is
  compared exactly.
* ``pareto``: the candidates no other feasible candidate beats on all of carbon, cost and time
  (at least as good on all, strictly better on one); listed by carbon. Exact duplicates all stay.

Candidates that tie exactly on every key keep their offering order (the sort is stable).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from carbonsched.errors import UserInputError

from carbonsched.policies.candidates import Candidates

TERMS = ("carbon", "cost", "time")
OBJECTIVES = ("carbon", "cost", "time", "weighted", "lexicographic", "pareto")
RISKS = ("mean", "p90")
DEFERRALS = ("expected", "robust")
TIE_REL = 1e-9  # float noise: values this close (relative) are the same value


@dataclass(frozen=True)
class Policy:
    objective: str = "carbon"
    weights: dict[str, float] = field(default_factory=lambda: {"carbon": 1.0, "cost": 0.0, "time": 0.0})
    order: tuple[str, ...] = ("carbon", "cost", "time")
    tolerance_pct: float = 1.0
    risk: str = "mean"  # "p90": the carbon term uses the forecast's upper decile (the planner supplies it)
    min_gain_pct: float = 0.0  # single-term objectives: smaller gains than this do not justify waiting or moving
    # "robust" (default): waits only for starts whose p90 beats the expected "now" (ranking.py: for
    # carbon, now here and on the greenest offering; weighted and lexicographic, now here);
    # "expected" waits for any gain in the mean forecast
    deferral: str = "robust"

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise UserInputError(f"unknown objective {self.objective!r}; choose one of {', '.join(OBJECTIVES)}")
        unknown = set(self.weights) - set(TERMS)
        if unknown:
            raise UserInputError(f"unknown weight term(s) {sorted(unknown)}; terms are {', '.join(TERMS)}")
        for term, w in self.weights.items():
            if not isinstance(w, (int, float)) or isinstance(w, bool) or not math.isfinite(w) or w < 0:
                raise UserInputError(f"weight for {term!r} must be a finite number >= 0, got {w!r}")
        if self.objective == "weighted" and not any(self.weights.get(t, 0) > 0 for t in TERMS):
            raise UserInputError("weighted objective needs at least one positive weight, e.g. weights = {carbon = 1, cost = 0.5}")
        bad = [t for t in self.order if t not in TERMS]
        if bad or not self.order or len(set(self.order)) != len(self.order):
            raise UserInputError(f"order must list distinct terms among {', '.join(TERMS)}, got {list(self.order)}")
        if self.risk not in RISKS:
            raise UserInputError(f"risk must be one of {', '.join(RISKS)}, got {self.risk!r}")
        if self.deferral not in DEFERRALS:
            raise UserInputError(f"deferral must be one of {', '.join(DEFERRALS)}, got {self.deferral!r}")
        tol = self.tolerance_pct
        if not isinstance(tol, (int, float)) or isinstance(tol, bool) or not math.isfinite(tol) or tol < 0:
            raise UserInputError(f"tolerance_pct must be a finite number >= 0, got {tol!r}")
        g = self.min_gain_pct
        if not isinstance(g, (int, float)) or isinstance(g, bool) or not math.isfinite(g) or not 0 <= g < 100:
            raise UserInputError(f"min_gain_pct must be a number from 0 to below 100 (percent of the objective a "
                                 f"later start or another region must save), got {g!r}")

    @property
    def tie_fraction(self) -> float:
        """The relative difference below which single-term objective values tie."""
        return max(self.min_gain_pct / 100.0, TIE_REL)

    @property
    def key_order(self) -> tuple[str, ...]:
        """Terms in comparison order for the single-term and lexicographic objectives."""
        if self.objective in TERMS:
            return (self.objective,) + tuple(t for t in TERMS if t != self.objective)
        if self.objective == "lexicographic":
            return tuple(self.order) + tuple(t for t in TERMS if t not in self.order)
        return TERMS


def term_range(c: Candidates, term: str, feasible: np.ndarray) -> tuple[float, float]:
    """(min, max) of a term over the feasible candidates, without (O, K) temporaries where possible."""
    rows = np.flatnonzero(feasible.any(axis=1))
    if term == "carbon":
        vals = c.kg_co2e[feasible]
        return float(vals.min()), float(vals.max())
    if term == "cost":
        vals = c.cost_usd[rows]
        return float(vals.min()), float(vals.max())
    # time: a row's earliest (latest) finish is at its first (last) feasible start
    sub = feasible[rows]
    first = np.argmax(sub, axis=1)
    last = sub.shape[1] - 1 - np.argmax(sub[:, ::-1], axis=1)
    runtime = c.runtime_h[rows]
    return float((c.start_h[first] + runtime).min()), float((c.start_h[last] + runtime).max())


def term_natural(c: Candidates, term: str) -> np.ndarray:
    """A term in its natural broadcastable shape: carbon (O, K), cost (O, 1), time (O, K)."""
    if term == "cost":
        return c.cost_usd[:, None]
    return c.term(term)


def weighted_score(c: Candidates, policy: Policy, feasible: np.ndarray) -> np.ndarray:
    """(O, K) weighted sum of min-max normalised terms (see module docstring)."""
    score = np.zeros(c.shape)
    for term in TERMS:
        w = float(policy.weights.get(term, 0.0))
        if w == 0:
            continue
        lo, hi = term_range(c, term, feasible)
        if hi > lo:
            score += (term_natural(c, term) - lo) * (w / (hi - lo))
    return score


def bucketed(x: np.ndarray, feasible: np.ndarray, tolerance_pct: float) -> np.ndarray:
    """Tolerance buckets of a term: ``floor((x - min) / (tol * |min|))`` (x itself when tol == 0)."""
    if tolerance_pct <= 0:
        return x
    vals = x[feasible] if x.shape == feasible.shape else np.broadcast_to(x, feasible.shape)[feasible]
    lo = float(vals.min())
    width = tolerance_pct / 100.0 * max(abs(lo), 1e-9)
    return np.floor((x - lo) / width)
