"""Deferral rules in a batch: the solver places, then each job takes the start ``plan`` would give
it alone where capacity allows, and waits only for gains its rule accepts among the starts that
have room.

The solver ranks every start by its objective value (the expected kg for the carbon objective),
so on its own it waits for gains ``plan`` refuses: its robust rule (``policies.ranking.
robust_starts``: a later start counts only when its p90 beats the expected kg of starting now
there and on the greenest offering now) and ``min_gain_pct`` (the earliest start within that much
of the best); among equally green starts it takes any. Pricing refused waits at "now" inside the
LP made it degenerate and tight batches 2-4x slower, so the rules are applied after the solve, as
a repair, to every job whose policy is carbon in a carbon batch.

Under capacity the robust rule compares a wait with the "now" starts that have room: a later
start of offering o is accepted when its p90 beats ``min(now_kg[o], (1 + tie) min now_kg)``, the
first over o's own first start if it has room, the second over the first starts with room of the
``GREENEST`` (region, GPU) resources with the greenest "now" (inf when none has room: any wait is
accepted). A green-region wait is not refused for losing to a "now" that other jobs fill. With
unlimited capacity this is ``robust_starts``.

1. ``job_rule``: ``plan``'s first ``PLAN_CHOICES`` choices (``policies.rank``), each offering's
   first start and its expected kg, the greenest "now"s, the p90s (robust deferral only).
   ``build_problem`` adds to each job's columns plan's choices, the greenest "now"s, and the first
   start of every offering among its columns, for the repair only: the solver does not see them
   (as solver columns they placed 9,906 of the 10k-job tight queue instead of 9,719, but doubled
   its solve time).
2. ``repair`` walks the jobs in submission order, twice (``MAX_PASSES``; once if nothing moves):
   a later job's move can free a "now" an earlier job's rule compared with, and the second pass
   sees it (a move in the second pass can leave such a "now" unseen: 21-82 second-pass moves on
   the 10k-job benchmark queues, against 1,600-4,400 in the first). A job at ``plan``'s first choice
   stays. Else, at a start its rule accepts, it moves to plan's first choice when that has room
   and is at most ``(1 + tie)^2`` dearer (plan's tie rule: within a row, then across rows); at a
   start its rule refuses, it moves to plan's first choice if that has room, else to its best
   accepted start with room (``plan``'s rule among them: the earliest within ``min_gain_pct`` of
   the cheapest) -- there is one: the "now" with room that set the bar. A move never displaces
   anyone, so every placed job stays placed.
3. Jobs left out are then offered, highest priority first, their cheapest column that fits the
   capacity left (``batch_heuristics.fill``), among the starts their rule accepts: the room the
   moves freed, and the repair's own columns, which the solver did not see (so its bound on the
   jobs placed covers its columns only: a plan that places more through them is not "proven
   maximal" unless every job is placed).

The same repair applies to the greedy comparison, so "vs greedy" compares like with like. With
unlimited capacity every carbon job ends at ``plan``'s first choice: a one-job batch is ``plan``.
The solver's gap is for its own assignment (before the repair); the moves' effect on the
objective is reported beside it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from carbonsched.policies import rank
from carbonsched.policies.batch_heuristics import cells, fill, fits_many, hold, usage

if TYPE_CHECKING:
    from carbonsched.planning.batch import BatchColumns
    from carbonsched.planning.candidates import JobCandidates

PLAN_CHOICES = 8  # of plan's ranking kept as each such job's columns
GREENEST = 16  # (region, GPU) resources whose greenest "now" start joins each such job's columns
MAX_PASSES = 2  # a move can change what an earlier job's rule accepts: one more pass sees it


@dataclass(frozen=True, eq=False)
class JobRule:
    """What ``repair`` needs of one job's rule (shared by the jobs of one candidate build)."""

    shape: tuple[int, int]  # (O, K) of the job's candidates
    plan_first: int  # flat index of plan's first choice
    extra: np.ndarray  # flat indices the job's columns must include: plan's choices, the greenest "now"s
    first_k: np.ndarray  # (O,) each offering's first feasible start (K: none)
    now_kg: np.ndarray  # (O,) the expected kg there (inf: none)
    greenest: np.ndarray  # per resource of the GREENEST greenest, its offering with the greenest "now"
    p90: np.ndarray | None  # (O, K) the robust rule's upper deciles; None: min_gain_pct only
    tie: float  # min_gain_pct as a fraction


def applies(jc: JobCandidates, objective: str) -> bool:
    """Does ``plan``'s rule for ``jc`` apply in a batch with this objective? (Carbon jobs in a
    carbon batch: even without robust deferral or min_gain_pct, plan takes the earliest of equally
    green starts, the LP any of them.)"""
    return objective == "carbon" and jc.policy.objective == "carbon"


def job_rule(jc: JobCandidates) -> JobRule:
    """The rule of a job that ``applies`` (module docstring)."""
    c, feasible = jc.cands, jc.feasible
    O, K = feasible.shape
    r = rank(c, feasible, jc.policy)
    n = min(PLAN_CHOICES, len(r.offering))
    rows = feasible.any(axis=1)
    first_k = np.where(rows, np.argmax(feasible, axis=1), K)
    now_kg = np.where(rows, c.expected_kg[np.arange(O), np.minimum(first_k, K - 1)], np.inf)
    greenest, seen = [], set()  # each (region, GPU)'s greenest "now", for the GREENEST greenest
    for o in np.argsort(now_kg, kind="stable").tolist():
        key = (jc.offerings[o].region_id, jc.offerings[o].gpu)
        if not np.isfinite(now_kg[o]) or len(greenest) == GREENEST:
            break
        if key not in seen:
            seen.add(key)
            greenest.append(o)
    greenest = np.array(greenest, dtype=np.int64)
    plan = np.ravel_multi_index((r.offering[:n], r.start[:n]), (O, K))
    nows = np.ravel_multi_index((greenest, first_k[greenest]), (O, K))
    robust = jc.policy.deferral == "robust" and c.kg_co2e_p90 is not None
    return JobRule((O, K), int(plan[0]) if n else -1, np.unique(np.concatenate([plan, nows])).astype(np.int64),
                   first_k, now_kg, greenest, c.kg_co2e_p90 if robust else None, jc.policy.tie_fraction)


def repair(batch: BatchColumns, choice: np.ndarray, rules: list) -> tuple[np.ndarray, dict]:
    """``choice`` (a column per job, -1 = left out) with the jobs' rules applied (module
    docstring); ``rules[j]`` is job j's ``JobRule`` or None. Returns the new choice and
    ``{"moved", "objective_change" (of the moves), "placed_after"}``."""
    p = batch.problem
    solved = choice
    choice = choice.copy()
    load = usage(p, choice).ravel()  # flat; hold() takes the (P, S) view of it
    bounds = np.searchsorted(p.job, np.arange(p.n_jobs + 1))  # each job's columns are listed together
    layout: dict = {}  # rule -> its _Layout among its jobs' columns
    todo = np.flatnonzero((choice >= 0) & np.array([r is not None for r in rules], dtype=bool)).tolist()
    for _ in range(MAX_PASSES):  # a job at plan's first choice stays there: later passes skip it
        went = [(j, *_move(batch, choice, load, j, rules[j], bounds, layout)) for j in todo]
        if not any(m for _, m, _ in went):
            break
        todo = [j for j, _, first in went if not first]
    moved = int(np.count_nonzero(choice != solved))
    change = float(p.cost[choice[choice >= 0]].sum() - p.cost[solved[solved >= 0]].sum())
    placed_after = 0
    left = np.flatnonzero(choice < 0)
    if len(left):  # the room moves freed, and the columns the solver did not see
        cand = []
        for j in left:
            cols = np.arange(bounds[j], bounds[j + 1])
            if rules[j] is not None:
                cols = cols[_accepted(batch, rules[j], cols, fits_many(p, load, cols))]
            cand.append(cols)
        chosen, still = fill(p, choice[choice >= 0], left, np.concatenate(cand))
        choice = np.full(p.n_jobs, -1)
        choice[p.job[chosen]] = chosen
        placed_after = len(left) - len(still)
    return choice, {"moved": moved, "objective_change": change, "placed_after": placed_after}


def _move(batch: BatchColumns, choice: np.ndarray, load: np.ndarray, j: int, rule: JobRule, bounds: np.ndarray,
          layout: dict) -> tuple[bool, bool]:
    """Apply job ``j``'s rule to its start (module docstring, step 2): (moved, now at plan's
    first choice)."""
    p = batch.problem
    c = int(choice[j])
    lo, hi = bounds[j], bounds[j + 1]
    lay = _layout(batch, rule, lo, hi, layout)
    if c - lo == lay.at_first:
        return False, True
    grid = load.reshape(p.capacity.size, p.n_slots)  # a view: hold() writes through to load
    hold(p, grid, c, -1.0)
    # the rule's bar needs only the room of the "now" columns: the full scan waits for a refused start
    room = load[lay.span].max(axis=1) + lay.demand <= lay.cap
    first_fits = lay.at_first >= 0 and room[0]
    o, k = int(batch.offering[c]), batch.start[c]
    bar = _bar(rule, lay.now_offering[room[lay.now_from:]])[o]
    new = c
    if k == rule.first_k[o] or rule.p90 is None or rule.p90[o, k] < bar:  # accepted
        # plan's tie rule may prefer a start up to (1 + tie)^2 dearer (within a row, then across rows)
        if first_fits and p.cost[lo + lay.at_first] <= p.cost[c] * (1 + rule.tie) ** 2 + 1e-12:
            new = lo + lay.at_first
    elif first_fits:
        new = lo + lay.at_first
    else:  # refused: its best accepted start with room (the "now" that set the bar is one)
        cols = np.arange(lo, hi)
        fits = fits_many(p, load, cols)
        ok = fits & _accepted(batch, rule, cols, fits)
        if ok.any():
            new = _best(p, cols[ok], rule.tie)
    hold(p, grid, new, +1.0)
    choice[j] = new
    return new != c, new - lo == lay.at_first


@dataclass(frozen=True, eq=False)
class _Layout:
    """Where one rule's columns of interest sit among a job's columns (the same for every job
    sharing the rule: one candidate build, one set of columns)."""

    n: int  # the job's columns
    at_first: int  # position of plan's first choice, -1: none
    span: np.ndarray  # (m, h) flat (resource, hour) cells of plan's first (if any), then each "now" column
    demand: np.ndarray  # (m,) their GPUs
    cap: np.ndarray  # (m,) their capacity (+ tolerance)
    now_from: int  # row of the first "now" column in span
    now_offering: np.ndarray  # (m - now_from,) the offering of each "now" column


def _layout(batch: BatchColumns, rule: JobRule, lo: int, hi: int, seen: dict) -> _Layout:
    """The ``_Layout`` of one job's columns ``lo..hi-1``: found once per rule, checked for every
    other job sharing it."""
    got = seen.get(id(rule))
    if got is not None and got.n == hi - lo and (got.at_first < 0 or batch.offering[lo + got.at_first] * rule.shape[1]
                                                 + batch.start[lo + got.at_first] == rule.plan_first):
        return got
    p = batch.problem
    o, k = batch.offering[lo:hi], batch.start[lo:hi]
    at = np.flatnonzero(o * rule.shape[1] + k == rule.plan_first)
    at_first = int(at[0]) if len(at) else -1
    now = np.flatnonzero(k == rule.first_k[o])
    cols = lo + np.concatenate([at[:1], now])
    got = seen[id(rule)] = _Layout(hi - lo, at_first, cells(p, cols), p.demand[cols], p.capacity[p.resource[cols]] + 1e-9,
                                   len(at[:1]), o[now])
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
