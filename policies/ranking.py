"""Ranking: choose each offering's best start, then order the offerings.

For one job the search is exact enumeration over all ``(o, k)`` candidates, vectorised:

1. Per offering ``o``, the best start ``k*(o)`` minimises the objective's primary array over
   feasible ``k``, ties to the earliest start (for the carbon objective, ties within
   ``min_gain_pct``, and with ``deferral = "robust"`` only the later starts whose p90 beats the
   expected carbon of starting now there and on the greenest offering now (``robust_starts``);
   for the weighted and lexicographic objectives, robust deferral keeps the later starts whose
   p90 beats starting now on the same offering; cost does not depend on ``k`` and finish time
   grows with it, so "cost" and "time" take the earliest feasible start).
2. Offerings are sorted (``np.lexsort``) by the objective's keys at their best start; for the
   single-term objectives the term in tie buckets first, then the start, then the other terms.

Pareto mode keeps every non-dominated candidate: within a row cost is constant and time grows
with ``k``, so only starts whose carbon is strictly below every earlier feasible start's can be
non-dominated; those survivors are then filtered against each other on (carbon, cost, time).
Cost: O(O*K) for step 1, O(O log O) for step 2.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from carbonsched.policies.candidates import Candidates
from carbonsched.policies.objectives import Policy, bucketed, weighted_score


@dataclass(frozen=True, eq=False)
class Ranking:
    offering: np.ndarray  # (N,) offering index o of each ranked candidate, best first
    start: np.ndarray  # (N,) start index k
    score: np.ndarray  # (N,) objective value shown to users (term value or weighted score)
    n_feasible: int


def _row_argmin(x: np.ndarray, feasible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows with any feasible candidate, their argmin column) of ``x`` restricted to feasible."""
    masked = np.where(feasible, x, np.inf)
    cols = np.argmin(masked, axis=1)
    rows = np.flatnonzero(feasible[np.arange(len(cols)), cols])  # a row's argmin is feasible iff any is
    return rows, cols[rows]


def row_earliest_within(x: np.ndarray, feasible: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row with a feasible candidate, the first feasible column within ``fraction`` (relative)
    of the row's feasible minimum."""
    rows = np.flatnonzero(feasible.any(axis=1))
    masked = np.where(feasible[rows], x[rows], np.inf)
    best = masked.min(axis=1, keepdims=True)
    return rows, np.argmax(masked <= best + fraction * np.abs(best), axis=1)


def robust_bar(c: Candidates, feasible: np.ndarray, tie_fraction: float = 0.0, across: bool = True) -> np.ndarray:
    """(O, 1) what a later start's upper decile must beat under robust deferral: the expected kg of
    starting now on the same offering, or (``across``) on the greenest offering that can start now
    if that is lower by more than ``tie_fraction`` (a greener "now" within ``min_gain_pct`` is a
    tie, and ties do not count against waiting)."""
    rows = feasible.any(axis=1)
    first = np.argmax(feasible, axis=1)
    now_kg = np.where(rows, c.expected_kg[np.arange(c.shape[0]), first], np.inf)[:, None]
    return np.minimum(now_kg, now_kg.min() * (1.0 + tie_fraction)) if across else now_kg


def robust_starts(c: Candidates, feasible: np.ndarray, tie_fraction: float = 0.0, across: bool = True) -> np.ndarray:
    """The robust deferral rule: per offering, its earliest feasible start ("now"), and the later
    starts whose upper decile (``kg_co2e_p90``) still beats ``robust_bar`` -- the expected carbon
    of starting now there and (``across``, the carbon objective) on the greenest offering now: a
    gain the forecast's own error could erase justifies neither waiting nor waiting somewhere else.
    The weighted and lexicographic objectives weigh other terms across offerings (the greenest
    "now" may be the dearest), so for them only the offering's own "now" sets the bar. As
    ``feasible`` when the candidates carry no upper decile."""
    if c.kg_co2e_p90 is None:
        return feasible
    first = np.argmax(feasible, axis=1)
    is_first = np.arange(c.shape[1])[None, :] == first[:, None]
    return feasible & (is_first | (c.kg_co2e_p90 < robust_bar(c, feasible, tie_fraction, across)))


def _row_lexmin(keys: list[np.ndarray], feasible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the first column minimising ``keys`` lexicographically among feasible columns."""
    rows = np.flatnonzero(feasible.any(axis=1))
    mask = feasible[rows].copy()
    for key in keys:
        k = np.where(mask, key[rows], np.inf)
        mask &= k <= k.min(axis=1, keepdims=True)
    return rows, np.argmax(mask, axis=1)


def _pareto(c: Candidates, feasible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    carbon = np.where(feasible, c.kg_co2e, np.inf)
    prev_min = np.minimum.accumulate(carbon, axis=1)
    prev_min = np.concatenate([np.full((carbon.shape[0], 1), np.inf), prev_min[:, :-1]], axis=1)
    o, k = np.nonzero(feasible & (carbon < prev_min))
    pts = np.stack([c.kg_co2e[o, k], c.cost_usd[o], c.start_h[k] + c.runtime_h[o]], axis=1)
    order = np.lexsort((pts[:, 2], pts[:, 1], pts[:, 0]))
    front: list[int] = []
    for i in order:
        p = pts[i]
        if front:
            f = pts[front]
            if np.any(np.all(f <= p, axis=1) & np.any(f < p, axis=1)):
                continue  # sorted lexicographically, so nothing later can dominate an earlier point
        front.append(i)
    idx = np.array(front, dtype=int)
    return o[idx], k[idx]


def rank(c: Candidates, feasible: np.ndarray, policy: Policy) -> Ranking:
    """Rank candidates under ``policy``; one entry per offering (its best start), or the Pareto front."""
    n_feasible = int(np.count_nonzero(feasible))
    if n_feasible == 0:
        empty = np.array([], dtype=int)
        return Ranking(empty, empty, np.array([]), 0)
    if policy.objective == "pareto":
        o, k = _pareto(c, feasible)
        return Ranking(o, k, c.kg_co2e[o, k], n_feasible)

    # robust deferral: the starts a multi-term objective may wait for (its own "now" sets each bar)
    eligible = robust_starts(c, feasible, policy.tie_fraction, across=False) if policy.deferral == "robust" else feasible
    if policy.objective == "weighted":
        primary = weighted_score(c, policy, feasible)
        rows, ks = _row_argmin(primary, eligible)
        keys = [c.start_h[ks] + c.runtime_h[rows], c.cost_usd[rows], c.kg_co2e[rows, ks], primary[rows, ks]]
        score = primary[rows, ks]
    elif policy.objective == "lexicographic":
        arrays = {t: c.term(t) for t in policy.key_order}
        bucket = {t: bucketed(a, feasible, policy.tolerance_pct) for t, a in arrays.items()}
        row_keys = [bucket[t] for t in policy.key_order[:-1]] + [arrays[policy.key_order[-1]]]
        rows, ks = _row_lexmin(row_keys, eligible)
        keys = [arrays[policy.key_order[-1]][rows, ks]] + [bucket[t][rows, ks] for t in reversed(policy.key_order[:-1])]
        score = arrays[policy.key_order[0]][rows, ks]
    else:
        # single term (objectives.py): per row, "carbon" takes the earliest start within the tie
        # fraction of the row's greenest; "cost" (constant in k) and "time" the earliest feasible start
        if policy.objective == "carbon":
            eligible = robust_starts(c, feasible, policy.tie_fraction) if policy.deferral == "robust" else feasible
            rows, ks = row_earliest_within(c.kg_co2e, eligible, policy.tie_fraction)
        else:
            rows, ks = _row_argmin(np.broadcast_to(c.start_h, c.shape), feasible)
        values = {"carbon": c.kg_co2e[rows, ks], "cost": c.cost_usd[rows], "time": c.start_h[ks] + c.runtime_h[rows]}
        score = values[policy.objective]
        if policy.objective == "time":
            keys = [values[t] for t in reversed(policy.key_order)]
        else:  # ties (within the fraction) go to the earliest start, then the lower cost
            rest = [t for t in ("cost", "carbon", "time") if t != policy.objective]
            keys = [values["time"], score] + [values[t] for t in reversed(rest)] + \
                [c.start_h[ks], bucketed(score, np.ones(score.shape, dtype=bool), 100 * policy.tie_fraction)]
    order = np.lexsort(keys)
    return Ranking(rows[order], ks[order], score[order], n_feasible)
