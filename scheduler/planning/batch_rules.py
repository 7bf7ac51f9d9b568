"""Deferral rules in a batch: the solver places, then each job keeps the start ``plan`` would
give it alone where capacity allows, and waits only for gains its rule accepts among the options
that have room.

The solver ranks every start by its objective value (the expected kg for the carbon objective),
so on its own it would wait for gains that ``plan`` refuses: its robust rule
(``policies.ranking.robust_starts``: a later start counts only when its p90 beats the expected kg
of starting now there and on the greenest offering now) and ``min_gain_pct`` (the earliest start
within that much of the best). Pricing refused waits at "now" inside the LP made it degenerate and
tight batches 2-4x slower, so the rules are applied after the solve, as a repair.

Under capacity the robust rule compares a wait with the "now" starts that have room: a later start
of offering o is accepted when its p90 beats ``min(now_kg[o], (1 + tie) min_o' now_kg[o'])`` over
the offerings whose first start has room in the capacity the other placed jobs leave (o's own
"now" only if it has room; the others among the ``PLAN_CHOICES`` greenest "now" starts, which join
the job's columns). A green-region wait is not refused for losing to a "now" that is full. With
unlimited capacity this is ``robust_starts``.

1. For a job whose own policy is carbon, with ``deferral = "robust"`` (and a forecast with a p90)
   or ``min_gain_pct > 0``, ``job_rule`` holds ``plan``'s choices (``policies.rank``, first
   ``PLAN_CHOICES``), each offering's first start and its expected kg, and the p90s;
   ``build_problem`` adds plan's choices and the greenest "now" starts to the job's columns.
2. ``repair`` walks the jobs in submission order. A placed job at ``plan``'s first choice stays.
   Else, if its start is accepted (as above), it moves to plan's first choice only when that has
   room and is not dearer beyond ``min_gain_pct``; if its start is refused, it moves to plan's
   first choice if that has room, else to its best accepted start with room (``plan``'s rule
   among them: the earliest within ``min_gain_pct`` of the cheapest). A refused start always has
   one: the "now" with room that set the bar. A move never displaces anyone, so every placed job
   stays placed; a job whose "now" is full may keep a wait that beats the "now"s with room.
3. Jobs left out are then offered, highest priority first, their cheapest column that fits the
   capacity the moves freed (``batch_heuristics.fill``), among the starts their rule accepts.

The same repair applies to the greedy comparison, so "vs greedy" compares like with like. With
unlimited capacity every such job ends at ``plan``'s first choice: a one-job batch is ``plan``.
The solver's gap is for its own assignment (before the repair); the repair's effect on the
objective is reported beside it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from carbonsched.policies import rank
from carbonsched.policies.batch_heuristics import fill, usage

if TYPE_CHECKING:
    from carbonsched.planning.batch import BatchColumns
    from carbonsched.planning.candidates import JobCandidates

PLAN_CHOICES = 8  # of plan's ranking, and of the greenest "now" starts, kept as each such job's columns


@dataclass(frozen=True, eq=False)
class JobRule:
    """What ``repair`` needs of one job's rule (shared by the jobs of one candidate build)."""

    shape: tuple[int, int]  # (O, K) of the job's candidates
    plan_first: int  # flat index of plan's first choice
    extra: np.ndarray  # flat indices the job's columns must include: plan's choices, the greenest "now"s
    first_k: np.ndarray  # (O,) each offering's first feasible start (K: none)
    now_kg: np.ndarray  # (O,) the expected kg there (inf: none)
    greenest: np.ndarray  # offerings of the PLAN_CHOICES greenest "now" starts, greenest first
    p90: np.ndarray | None  # (O, K) the robust rule's upper deciles; None: min_gain_pct only
    tie: float  # min_gain_pct as a fraction


def applies(jc: JobCandidates, objective: str) -> bool:
    """Does a deferral rule of its own govern ``jc`` in a batch with this objective?"""
    p = jc.policy
    robust = p.deferral == "robust" and jc.cands.kg_co2e_p90 is not None
    return objective == "carbon" and p.objective == "carbon" and (robust or p.min_gain_pct > 0)


def job_rule(jc: JobCandidates) -> JobRule:
    """The rule of a job that ``applies`` (module docstring)."""
    c, feasible = jc.cands, jc.feasible
    O, K = feasible.shape
    r = rank(c, feasible, jc.policy)
    n = min(PLAN_CHOICES, len(r.offering))
    rows = feasible.any(axis=1)
    first_k = np.where(rows, np.argmax(feasible, axis=1), K)
    now_kg = np.where(rows, c.expected_kg[np.arange(O), np.minimum(first_k, K - 1)], np.inf)
    greenest = np.argsort(now_kg, kind="stable")[:PLAN_CHOICES]
    greenest = greenest[np.isfinite(now_kg[greenest])]
    plan = np.ravel_multi_index((r.offering[:n], r.start[:n]), (O, K))
    nows = np.ravel_multi_index((greenest, first_k[greenest]), (O, K))
    robust = jc.policy.deferral == "robust" and c.kg_co2e_p90 is not None
    return JobRule((O, K), int(plan[0]) if n else -1, np.unique(np.concatenate([plan, nows])).astype(np.int64),
                   first_k, now_kg, greenest, c.kg_co2e_p90 if robust else None, jc.policy.tie_fraction)


def repair(batch: BatchColumns, choice: np.ndarray, rules: list) -> tuple[np.ndarray, dict]:
    """``choice`` (a column per job, -1 = left out) with the jobs' rules applied (module
    docstring); ``rules[j]`` is job j's ``JobRule`` or None. Returns the new choice and
    ``{"moved", "placed_after"}``."""
    p = batch.problem
    choice = choice.copy()
    load = usage(p, choice).ravel()
    bounds = np.searchsorted(p.job, np.arange(p.n_jobs + 1))  # each job's columns are listed together
    moved = 0
    layout: dict = {}  # rule -> (columns, position of plan's first choice or -1, positions of "now" starts)
    for j in range(p.n_jobs):
        c, rule = int(choice[j]), rules[j]
        if c < 0 or rule is None:
            continue
        lo, hi = bounds[j], bounds[j + 1]
        _, at_first, at_now = _layout(batch, rule, lo, hi, layout)
        if c - lo == at_first:
            continue  # plan's first choice
        _hold(p, load, c, -1.0)
        # the rule's bar needs only the "now" columns' room: the full scan waits for a refused start
        small = lo + (np.append(at_first, at_now) if at_first >= 0 else at_now)
        room = _fits(p, load, small)
        first_fits = at_first >= 0 and room[0]
        room_now = room[len(small) - len(at_now):]  # plan's first, if listed, comes first: not a bar
        bar = _bar(rule, batch.offering[lo + at_now[room_now]])
        o, k = batch.offering[c], batch.start[c]
        new = c
        if k == rule.first_k[o] or rule.p90 is None or rule.p90[o, k] < bar[o]:  # accepted
            if first_fits and p.cost[lo + at_first] <= p.cost[c] * (1 + rule.tie) + 1e-12:
                new = lo + at_first
        elif first_fits:
            new = lo + at_first
        else:  # refused: its best accepted start with room (the "now" that set the bar is one)
            cols = np.arange(lo, hi)
            fits = _fits(p, load, cols)
            ok = fits & _accepted(batch, rule, cols, fits)
            if ok.any():
                new = _best(p, cols[ok], rule.tie)
        _hold(p, load, new, +1.0)
        if new != c:
            choice[j] = int(new)
            moved += 1
    placed_after = 0
    left = np.flatnonzero(choice < 0)
    if moved and len(left):
        cand = []
        for j in left:
            cols = np.arange(bounds[j], bounds[j + 1])
            if rules[j] is not None:
                cols = cols[_accepted(batch, rules[j], cols, _fits(p, load, cols))]
            cand.append(cols)
        chosen, still = fill(p, choice[choice >= 0], left, np.concatenate(cand))
        choice = np.full(p.n_jobs, -1)
        choice[p.job[chosen]] = chosen
        placed_after = len(left) - len(still)
    return choice, {"moved": moved, "placed_after": placed_after}


def _layout(batch: BatchColumns, rule: JobRule, lo: int, hi: int, seen: dict) -> tuple[int, int, np.ndarray]:
    """(columns, position of plan's first choice or -1, positions of each offering's first start)
    in one job's columns ``lo..hi-1``. Jobs sharing a rule share their columns (one candidate
    build): found once per rule, checked for every other job."""
    got = seen.get(id(rule))
    if got is not None and got[0] == hi - lo and (got[1] < 0 or batch.offering[lo + got[1]] * rule.shape[1]
                                                  + batch.start[lo + got[1]] == rule.plan_first):
        return got
    o, k = batch.offering[lo:hi], batch.start[lo:hi]
    at = np.flatnonzero(o * rule.shape[1] + k == rule.plan_first)
    got = seen[id(rule)] = (hi - lo, int(at[0]) if len(at) else -1, np.flatnonzero(k == rule.first_k[o]))
    return got


def _bar(rule: JobRule, now_with_room: np.ndarray) -> np.ndarray:
    """(O,) what a later start's p90 must beat, given the offerings whose first start ("now") has
    room: the expected kg there (if it has room), or at the greenest "now" with room among the
    rule's ``greenest`` within ``tie`` (inf: no "now" has room, any wait is accepted)."""
    has = np.zeros(rule.shape[0], dtype=bool)
    has[now_with_room] = True
    green = rule.greenest[has[rule.greenest]]
    greenest_now = rule.now_kg[green].min() if len(green) else np.inf
    return np.minimum(np.where(has, rule.now_kg, np.inf), greenest_now * (1.0 + rule.tie))


def _accepted(batch: BatchColumns, rule: JobRule, cols: np.ndarray, room: np.ndarray) -> np.ndarray:
    """Which of one job's columns ``cols`` (``room``: which fit) its rule accepts: every start
    without a robust rule; else each offering's first start, and the later ones whose p90 beats
    ``_bar``."""
    if rule.p90 is None:
        return np.ones(len(cols), dtype=bool)
    o, k = batch.offering[cols], batch.start[cols]
    is_now = k == rule.first_k[o]
    return is_now | (rule.p90[o, k] < _bar(rule, o[is_now & room])[o])


def _best(p, cols: np.ndarray, tie: float) -> int:
    """``plan``'s rule among ``cols``: the earliest start within ``tie`` of the cheapest, then the
    cheaper."""
    cost = p.cost[cols]
    near = cols[cost <= cost.min() + tie * abs(cost.min())]
    return int(near[np.lexsort((p.cost[near], p.first_hour[near]))[0]])


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
