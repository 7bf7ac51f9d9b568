"""Deferral rules in a batch: the solver places, then each job keeps the start ``plan`` would
give it alone where capacity allows.

The solver ranks every start by its objective value (the expected kg for the carbon objective),
so on its own it would wait for gains that ``plan`` refuses: its robust rule
(``policies.ranking.robust_starts``: a later start counts only when its p90 beats the expected kg
of starting now there and on the greenest offering now) and ``min_gain_pct`` (the earliest start
within that much of the best). Pricing refused waits at "now" inside the LP made it degenerate and
tight batches 2-4x slower, so the rules are applied after the solve, as a repair:

1. For a job whose own policy is carbon, with ``deferral = "robust"`` (and a forecast with a p90)
   or ``min_gain_pct > 0``, ``job_rule`` is ``plan``'s ranking of it (``policies.rank``: one
   start per offering, best first; the first ``PLAN_CHOICES``) and the starts its rule accepts
   (robust: ``robust_starts``; else every feasible start). ``build_problem`` adds the choices to
   the job's columns so that they can be chosen.
2. ``repair`` walks the jobs in submission order. A placed job not at ``plan``'s first choice
   moves to the first of ``plan``'s choices that fits the capacity the other placed jobs leave; if
   none fits, it keeps the solver's start when the rule accepts it, else moves to its cheapest
   accepted start that fits (earliest on ties), else keeps its start: it waits because capacity
   is full, not for a forecast gain (``waiting_for_capacity``). A move never displaces anyone,
   so every placed job stays placed.
3. Jobs left out are then offered, highest priority first, their cheapest column that fits the
   capacity the moves freed (``batch_heuristics.fill``), among the starts their rule accepts.

The same repair applies to the greedy comparison, so "vs greedy" compares like with like. With
unlimited capacity every such job ends at ``plan``'s first choice: a one-job batch is ``plan``.
The solver's gap is for its own assignment (before the repair); the repair's effect on the
objective is reported beside it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from carbonsched.policies import rank
from carbonsched.policies.batch_heuristics import fill, usage
from carbonsched.policies.ranking import robust_starts

if TYPE_CHECKING:
    from carbonsched.planning.batch import BatchColumns
    from carbonsched.planning.candidates import JobCandidates

PLAN_CHOICES = 8  # of plan's ranking (one start per offering) kept as each such job's columns


def applies(jc: JobCandidates, objective: str) -> bool:
    """Does a deferral rule of its own govern ``jc`` in a batch with this objective?"""
    p = jc.policy
    robust = p.deferral == "robust" and jc.cands.kg_co2e_p90 is not None
    return objective == "carbon" and p.objective == "carbon" and (robust or p.min_gain_pct > 0)


def job_rule(jc: JobCandidates) -> tuple[np.ndarray, np.ndarray]:
    """(flat candidate indices of ``plan``'s first ``PLAN_CHOICES`` choices, best first; (O, K)
    mask of the starts the job's rule accepts)."""
    r = rank(jc.cands, jc.feasible, jc.policy)
    n = min(PLAN_CHOICES, len(r.offering))
    flat = np.ravel_multi_index((r.offering[:n], r.start[:n]), jc.feasible.shape)
    robust = jc.policy.deferral == "robust" and jc.cands.kg_co2e_p90 is not None
    ok = robust_starts(jc.cands, jc.feasible, jc.policy.tie_fraction) if robust else jc.feasible
    return flat.astype(np.int64), ok


def repair(batch: BatchColumns, choice: np.ndarray, rules: list) -> tuple[np.ndarray, dict]:
    """``choice`` (a column per job, -1 = left out) with the jobs' rules applied (module
    docstring); ``rules[j]`` is job j's ``job_rule`` or None. Returns the new choice and
    ``{"moved", "waiting_for_capacity", "placed_after"}``."""
    p = batch.problem
    choice = choice.copy()
    load = usage(p, choice).ravel()
    bounds = np.searchsorted(p.job, np.arange(p.n_jobs + 1))  # each job's columns are listed together
    where: dict = {}  # rule -> positions of its choices among its jobs' columns, and their flat indices
    moved = waiting = 0
    for j in range(p.n_jobs):
        c = int(choice[j])
        if c < 0 or rules[j] is None:
            continue
        flat, ok = rules[j]
        o, k = batch.offering[c], batch.start[c]
        if len(flat) and o * ok.shape[1] + k == flat[0]:
            continue  # plan's first choice
        _hold(p, load, c, -1.0)
        to = _choices_in(batch, bounds[j], bounds[j + 1], rules[j], where)
        fits = _fits(p, load, to)
        new = c
        if fits.any():
            new = int(to[fits.argmax()])
        elif not ok[o, k]:
            acc = _accepted(batch, j, rules[j])
            acc = acc[_fits(p, load, acc)]
            if len(acc):
                new = int(acc[np.lexsort((p.first_hour[acc], p.cost[acc]))[0]])
            else:
                waiting += 1
        _hold(p, load, new, +1.0)
        if new != c:
            choice[j] = new
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


def _hold(p, load: np.ndarray, c: int, sign: float) -> None:
    """Add (``sign`` -1: remove) column ``c``'s GPUs to the flat (resource, hour) ``load``."""
    a = p.resource[c] * p.n_slots + p.first_hour[c]
    load[a:a + p.n_hours[c]] += sign * p.demand[c]


def _fits(p, load: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Which of ``cols`` fit the capacity the flat (resource, hour) ``load`` leaves."""
    if not len(cols):
        return np.zeros(0, dtype=bool)
    n = p.n_hours[cols]
    span = (p.resource[cols].astype(np.int64) * p.n_slots + p.first_hour[cols])[:, None] \
        + np.minimum(np.arange(int(n.max())), n[:, None] - 1)
    return load[span].max(axis=1) + p.demand[cols] <= p.capacity[p.resource[cols]] + 1e-9


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
