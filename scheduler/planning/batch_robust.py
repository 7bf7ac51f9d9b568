"""Robust deferral in a batch: the solver places, then each job keeps the deferral rule ``plan``
applies to it alone.

The solver ranks every start by its objective value (the expected kg for the carbon objective),
so on its own it would wait for gains that ``plan``'s robust rule (``policies.ranking.
robust_starts``: a later start counts only when its p90 beats the expected kg of starting now
there and on the greenest offering now) refuses as within the forecast's error. Pricing those
waits at "now" inside the LP made it degenerate and tight batches 2-4x slower, so the rule is
applied after the solve, as a repair:

1. For a job whose own policy is carbon with ``deferral = "robust"`` (and a forecast with a p90),
   ``robust_choices`` is ``plan``'s ranking of it (``policies.rank``: one start per offering,
   robust starts only), first ``ROBUST_CHOICES``; ``build_problem`` adds them to the job's columns
   so that they can be chosen.
2. ``repair`` walks the jobs in submission order. A job placed at a start the rule refuses moves
   to the first of its robust choices that fits the capacity the other placed jobs leave (a move
   never displaces anyone, so every placed job stays placed); if none fits it keeps its place: it
   waits because capacity is full then, not for a forecast gain. A job placed at a start the rule
   accepts stays where the solver put it.
3. Jobs left out are then offered, highest priority first, their cheapest column that fits the
   capacity the moves freed (``batch_heuristics.fill``), among the starts their rule accepts.

The same repair applies to the greedy comparison, so "vs greedy" compares like with like. With
unlimited capacity every robust job ends at ``plan``'s first choice: a one-job batch is ``plan``.
The solver's gap is for its own assignment (before the repair); the repair's effect on the
objective is reported beside it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from carbonsched.policies import rank
from carbonsched.policies.batch_heuristics import fill, hold, usage
from carbonsched.policies.ranking import robust_starts

if TYPE_CHECKING:
    from carbonsched.planning.batch import BatchColumns
    from carbonsched.planning.candidates import JobCandidates

ROBUST_CHOICES = 8  # of plan's ranking (one start per offering) kept as each robust job's columns


def applies(jc: JobCandidates, objective: str) -> bool:
    """Does the robust rule govern ``jc`` in a batch with this objective?"""
    p = jc.policy
    return (objective == "carbon" and p.objective == "carbon" and p.deferral == "robust"
            and jc.cands.kg_co2e_p90 is not None)


def robust_choices(jc: JobCandidates) -> tuple[np.ndarray, np.ndarray]:
    """(flat candidate indices of ``plan``'s first ``ROBUST_CHOICES`` choices, best first; (O, K)
    mask of the starts the rule accepts)."""
    r = rank(jc.cands, jc.feasible, jc.policy)
    n = min(ROBUST_CHOICES, len(r.offering))
    flat = np.ravel_multi_index((r.offering[:n], r.start[:n]), jc.feasible.shape)
    return flat.astype(np.int64), robust_starts(jc.cands, jc.feasible, jc.policy.tie_fraction)


def repair(batch: BatchColumns, choice: np.ndarray, rules: list) -> tuple[np.ndarray, dict]:
    """``choice`` (a column per job, -1 = left out) with the robust rule applied (module
    docstring); ``rules[j]`` is job j's ``robust_choices`` or None. Returns the new choice and
    ``{"moved", "waiting_for_capacity", "placed_after"}``."""
    p = batch.problem
    S = p.n_slots
    choice = choice.copy()
    load = usage(p, choice).ravel()
    bounds = np.searchsorted(p.job, np.arange(p.n_jobs + 1))  # each job's columns are listed together
    where: dict = {}  # (rule, columns) -> positions of the rule's choices among them, best first
    moved = waiting = 0
    for j in range(p.n_jobs):
        c = int(choice[j])
        if c < 0 or rules[j] is None:
            continue
        flat, ok = rules[j]
        if ok[batch.offering[c], batch.start[c]]:
            continue
        lo, hi = bounds[j], bounds[j + 1]
        to = _choices_in(batch, lo, hi, rules[j], where)
        hold(p, load.reshape(-1, S), c, -1.0)
        base = p.resource[to].astype(np.int64) * S + p.first_hour[to]
        span = base[:, None] + np.minimum(np.arange(int(p.n_hours[to].max(initial=1))), p.n_hours[to][:, None] - 1)
        fits = load[span].max(axis=1, initial=0.0) + p.demand[to] <= p.capacity[p.resource[to]] + 1e-9
        if not fits.any():
            hold(p, load.reshape(-1, S), c, +1.0)
            waiting += 1
            continue
        choice[j] = to[int(fits.argmax())]
        hold(p, load.reshape(-1, S), choice[j], +1.0)
        moved += 1
    placed_after = 0
    left = np.flatnonzero(choice < 0)
    if moved and len(left):
        cand = np.concatenate([_accepted(batch, j, rules[j]) for j in left])
        chosen, still = fill(p, choice[choice >= 0], left, cand)
        choice = np.full(p.n_jobs, -1)
        choice[p.job[chosen]] = chosen
        placed_after = len(left) - len(still)
    return choice, {"moved": moved, "waiting_for_capacity": waiting, "placed_after": placed_after}


def _choices_in(batch: BatchColumns, lo: int, hi: int, rule, where: dict) -> np.ndarray:
    """The columns ``lo..hi-1`` (one job's) that are its rule's choices, best first. Jobs sharing
    a rule share their columns (one candidate build): positions are searched once per rule and
    checked for every other job."""
    flat, ok = rule
    got = where.get(id(rule))
    if got is not None:
        pos, want = got
        if hi - lo > (pos.max(initial=-1)) and np.array_equal(
                np.ravel_multi_index((batch.offering[lo + pos], batch.start[lo + pos]), ok.shape), want):
            return lo + pos
    f = np.ravel_multi_index((batch.offering[lo:hi], batch.start[lo:hi]), ok.shape)
    at = {v: i for i, v in enumerate(f.tolist())}
    pos = np.array([at[v] for v in flat.tolist() if v in at], dtype=np.int64)
    where[id(rule)] = (pos, f[pos])
    return lo + pos


def _accepted(batch: BatchColumns, j: int, rule) -> np.ndarray:
    """Job ``j``'s columns at starts its rule accepts (all of them without a rule)."""
    cols = _columns_of(batch.problem, j)
    return cols if rule is None else cols[rule[1][batch.offering[cols], batch.start[cols]]]


def _columns_of(p, j: int) -> np.ndarray:
    """Job ``j``'s columns (the problem lists each job's columns together, in job order)."""
    lo, hi = np.searchsorted(p.job, [j, j + 1])
    return np.arange(lo, hi)
