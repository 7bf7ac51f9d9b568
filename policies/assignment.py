"""Batch assignment: many jobs, at most one placement each, under shared hourly GPU capacity.

Data (all arrays, index ``c`` over candidates of all jobs, ``j`` over jobs, ``p`` over
resources = (region, GPU type) pairs, ``h`` over hour slots)::

    job[c]        the job candidate c belongs to (every job has >= 1 candidate)
    cost[c]       objective coefficient (kgCO2e, USD, ... lower is better)
    resource[c]   p;  demand[c] = GPUs it holds;  it holds them during the hour slots
                  first_hour[c] .. first_hour[c] + n_hours[c] - 1 (a partly used hour counts whole)
    capacity[p]   GPUs of type p available in each hour (np.inf = unlimited)
    weight[j]     the job's priority, a whole number >= 1 (default 1)
    count[j]      how many identical jobs row j stands for (default 1; see reduction 0)

Integer programme, "place what fits" (x[c] = number of j's units running as candidate c; u[j] =
units of j left unplaced; with count 1 both are 0/1)::

    min  sum_c cost[c] x[c]  +  M sum_j weight[j] u[j]
    s.t. sum_{c: job[c]=j} x[c] + u[j] = count[j]                           for every job j
         sum_{c: resource[c]=p, h in hours(c)} demand[c] x[c] <= capacity[p]   for binding (p, h)
         x, u whole numbers >= 0

With ``M > sum_j count[j] (max_c cost - min_c cost)`` and whole weights, one more unit of placed
weight outweighs any change of cost: the optimum places the largest priority-weighted set of jobs
and, among those, the cheapest. All-or-nothing planning is the same solve, failing when any u > 0.

Reductions before solving (``batch_reductions``; each keeps an optimal solution of the original):

0. Job classes: jobs with the same weight and the same candidates (resource, hours, GPUs, cost)
   become one row with ``count`` = their number. The LP relaxation is unchanged, so every bound
   proved on the classes holds for the jobs; a queue of many jobs of few shapes shrinks to its
   shapes (the seeded 10k-job benchmark: 2.4k classes).
1. A candidate with ``demand > capacity`` can never run: dropped.
2. Row (p, h) *can bind* only if ``sum_j count[j] max_{c in j, c uses (p,h)} demand[c] >
   capacity[p]``. Other rows are left out of the model.
3. Dominance: a candidate of job j that uses no binding row is *free*. If ``f_j`` is the cost of
   j's cheapest free candidate, every candidate of j costing ``>= f_j`` (other than that one) is
   dropped: j can always switch to it without breaking a row. A job whose cheapest candidate is
   free is fixed there and leaves the model. 2 and 3 repeat until little changes.
4. Decomposition: jobs that share no binding row (directly or through other jobs) are independent
   problems (connected components of the job-row graph), solved one after the other; their bounds
   and costs add up.

Each component (``_Master``: HiGHS through highspy, kept between rounds so every re-solve starts
from the previous basis):

* LP by column generation: each class's ``init_per_job`` cheapest candidates plus those greedy
  used and the slack u[j]; candidates whose reduced cost ``cost - pi_j + demand * sum of
  |capacity duals| over its hours`` (O(N) with prefix sums) is negative are added, ``add_per_job``
  per class and at most one per (class, resource): a class's next-best columns are mostly the
  neighbouring start hours of its best, which the master rarely needs both of, while another
  region gives it room where capacity is short (on seeded tight queues: less column
  generation time at equal placements, 5-35 %; ``benchmarks/batch_queue.py``),
  primal simplex from the last basis, until none is left or the Lagrangian bound
  ``z_RMP + sum_j count[j] min(0, min_c rc)`` (valid at every round) is within ``colgen_tol``, or
  the component has used LP_SHARE of its time (then the Lagrangian bound is what is reported, no
  unplaced-weight bound is claimed, and the status is ``time_limit``).
* Unplaced weight: when the LP leaves weight unplaced, that amount bounds nothing: M outweighs
  any change of cost per whole unit, not per fraction, and the LP may leave a sixth of a job out
  to save cost although every job fits. So the least unplaced weight ``U`` is found on its own:
  the LP ``min sum_j weight[j] u[j]`` (costs set to 0) by column generation from the same basis,
  with its Lagrangian bound (``_least_unplaced``; one more re-solve on each seeded benchmark queue).
  Every integer solution leaves at least ``ceil(U)`` (whole weights), so the row
  ``sum_j weight[j] u[j] >= ceil(U)`` is added and generation resumes. The bound then reads
  ``M ceil(U) + B``: no assignment places more weight, and one that places that much costs at
  least B.
* Integer: the LP when integral; else the first of these within ``mip_rel_gap`` of the cost
  bound (and placing the proven-maximal weight), or the best of them: greedy's assignment
  (submission order, single jobs); the LP rounded (``round_up``: down, then the fractional
  columns up, largest fraction first, where a unit fits), the units left over placed where they
  still fit (``fill``); LP diving (``_dive``: columns rounded up where a unit fits, a round
  that costs placed weight undone, dual simplex from the last basis), each round rounded and
  filled the same way; one-step
  ejection on the best of these while it places less than the proven maximum
  (``batch_heuristics``); HiGHS's MILP over the generated columns with each held at
  least at the units the LP and the best assignment agree on ("LP-and-fix"), then over all of
  them, each started from the best assignment so far, each for at most as long as the component
  took before the first (>= MILP_MIN_S) and within the time limit (status ``time_limit`` when
  the last one stops early). The MILPs run only while the best assignment places less than the
  proven maximum or costs more than ``MILP_ABOVE * mip_rel_gap`` above the bound: just past the
  target, they took 2-7 s to gain tenths of a percent. A class's units go to its jobs in
  submission order, earliest start first.

Time: ``time_limit_s`` bounds the whole solve (components, smallest first, share what is left
in proportion to their candidates), not only the MILP; a large, tight batch returns its best assignment at the limit with the gap it proved.

Reported: ``unplaced_weight`` against ``unplaced_bound`` (equal: the placement count is proven
maximal) and ``gap_vs_lp = (cost - B) / |cost|`` (NaN when it is not proven maximal).
``greedy`` is the comparison rule "jobs in submission order, each takes its cheapest candidate
that still fits". Greedy over the reduced candidates (or the caller's ``seed``: ``plan_batch``
passes its comparison, greedy over all candidates, and saves a second run) seeds every component
and is one of the assignments ``solve`` compares, so ``solve`` does not do worse on (placed
weight, cost); a hypothesis test checks it against ``greedy`` over all candidates. (A caller's
seed that uses a candidate the reductions dropped cannot seed a component; it is compared with
the result at the end instead.)
"""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from carbonsched.policies.batch_heuristics import fill, greedy, relocate, round_up, usage
from carbonsched.policies.batch_reductions import (JobClasses, components, job_classes, prefix, prune_spread,
                                                   prune_top_k, reduce, span_sum)

__all__ = ["BatchProblem", "BatchSolution", "better", "greedy", "placed_key", "prune_top_k", "solve", "usage"]

INTEGRAL_TOL = 1e-6
MILP_MIN_S = 1.0
MILP_ABOVE = 2.0  # the MILPs run only for an assignment this many times mip_rel_gap above the bound (or placing less)
LP_SHARE, DIVE_SHARE = 0.6, 0.8  # of a component's time: the LP stops by the first, the dive by the second
STATUS_ORDER = ("trivial", "lp_integral", "greedy", "lp_dive", "lp_round", "lp_fix", "optimal", "time_limit")  # best to worst


@dataclass(frozen=True, eq=False)
class BatchProblem:
    job: np.ndarray  # (N,) int, 0..n_jobs-1
    cost: np.ndarray  # (N,) float
    resource: np.ndarray  # (N,) int, 0..P-1
    first_hour: np.ndarray  # (N,) int >= 0
    n_hours: np.ndarray  # (N,) int >= 1
    demand: np.ndarray  # (N,) float, GPUs
    capacity: np.ndarray  # (P,) float, GPUs per hour (inf = unlimited)
    n_jobs: int
    weight: np.ndarray | None = None  # (n_jobs,) whole numbers >= 1; None = all 1
    count: np.ndarray | None = None  # (n_jobs,) identical jobs each row stands for; None = all 1
    # (n_jobs,) optional hint: a job whose candidates are the same arrays in the same order (jobs'
    # candidates listed together, in job order); saves reduction 0 its hashing, never trusted blindly
    same_as: np.ndarray | None = None

    @cached_property
    def n_slots(self) -> int:
        return int((self.first_hour + self.n_hours).max()) if len(self.job) else 0

    @cached_property
    def weights(self) -> np.ndarray:
        return np.ones(self.n_jobs) if self.weight is None else np.asarray(self.weight, dtype=float)

    @cached_property
    def counts(self) -> np.ndarray:
        return np.ones(self.n_jobs) if self.count is None else np.asarray(self.count, dtype=float)

    def row_keys(self, cands: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(candidate, row key ``resource * n_slots + hour``) for every hour each candidate holds."""
        n = self.n_hours[cands]
        c = np.repeat(cands, n)
        within = np.arange(len(c)) - np.repeat(np.cumsum(n) - n, n)
        return c, self.resource[c] * self.n_slots + self.first_hour[c] + within


@dataclass(frozen=True, eq=False)
class BatchSolution:
    choice: np.ndarray  # (n_jobs,) chosen candidate per job, -1 = unplaced
    objective: float  # cost of the placed candidates
    status: str  # one of STATUS_ORDER: how the worst component was solved
    gap: float  # HiGHS's MILP gap where the MILP ran (NaN otherwise)
    gap_vs_lp: float  # (objective - cost bound) / |objective|; NaN when the placement is not proven maximal
    lp_integral: bool
    seconds: float
    stats: dict = field(default_factory=dict)

    @property
    def unplaced(self) -> np.ndarray:
        return np.flatnonzero(self.choice < 0)


_BANNER_SHOWN = False


def _highs():
    """A silent HiGHS instance. HiGHS prints a banner to stdout on its first construction in a
    process; stdout may be carrying ``--json`` output, so that one construction writes to /dev/null."""
    global _BANNER_SHOWN
    import highspy

    if _BANNER_SHOWN:
        h = highspy.Highs()
    else:
        sys.stdout.flush()
        try:
            saved, null = os.dup(1), os.open(os.devnull, os.O_WRONLY)
        except OSError:  # no stdout to protect
            saved = null = None
        try:
            if null is not None:
                os.dup2(null, 1)
            h = highspy.Highs()
        finally:
            if null is not None:
                os.dup2(saved, 1)
                os.close(saved)
                os.close(null)
        _BANNER_SHOWN = True
    h.setOptionValue("output_flag", False)
    return h


class _Master:
    """One component's restricted master problem in HiGHS: rows = its classes' convexity rows,
    then its binding capacity rows; columns = the slacks u[j], then the candidates added so far."""

    def __init__(self, q: BatchProblem, jobs: np.ndarray, rows: np.ndarray, row_id: np.ndarray, big_m: float,
                 deadline: float = math.inf):
        import highspy

        self.p, self.jobs, self.big_m, self.deadline = q, jobs, big_m, deadline
        self.inf = highspy.kHighsInf
        self.job_row = np.full(q.n_jobs, -1)
        self.job_row[jobs] = np.arange(len(jobs))
        self.local = np.full(len(row_id), -1)  # flat (p, h) key -> this master's row
        self.local[rows] = len(jobs) + np.arange(len(rows))
        self.rows = rows
        self.w, self.n = q.weights[jobs], q.counts[jobs]
        self.h = h = _highs()
        h.setOptionValue("simplex_strategy", 4)  # primal: new columns keep the last basis primal feasible
        nj, cap = len(jobs), q.capacity[rows // q.n_slots]
        empty_i, empty_v = np.zeros(0, dtype=np.int32), np.zeros(0)
        h.addRows(nj + len(rows), np.concatenate([self.n, np.full(len(rows), -self.inf)]),
                  np.concatenate([self.n, cap]), 0, empty_i, empty_i, empty_v)
        ar = np.arange(nj, dtype=np.int32)
        h.addCols(nj, big_m * self.w, np.zeros(nj), self.n, nj, ar, ar, np.ones(nj))
        self.cols = np.zeros(0, dtype=np.int64)
        self.in_model = np.zeros(len(q.job), dtype=bool)
        self.model_col = np.full(len(q.job), -1)  # candidate -> its column in HiGHS
        self.solved = False
        self.cut = 0.0  # the unplaced-weight cut's right-hand side, once added

    def add(self, cands: np.ndarray) -> None:
        cands = np.unique(cands[~self.in_model[cands]])
        if not len(cands):
            return
        p = self.p
        kc, kr = p.row_keys(cands)
        r = self.local[kr]
        on = r >= 0
        pos = np.repeat(np.arange(len(cands)), p.n_hours[cands])[on]
        ri = np.concatenate([self.job_row[p.job[cands]], r[on]])
        ci = np.concatenate([np.arange(len(cands)), pos])
        v = np.concatenate([np.ones(len(cands)), p.demand[kc[on]]])
        by = np.lexsort((ri, ci))  # column-major, rows ascending within a column
        start = np.searchsorted(ci[by], np.arange(len(cands))).astype(np.int32)
        self.h.addCols(len(cands), p.cost[cands], np.zeros(len(cands)), np.full(len(cands), self.inf), len(by),
                       start, ri[by].astype(np.int32), v[by])
        self.model_col[cands] = len(self.jobs) + len(self.cols) + np.arange(len(cands))
        self.cols = np.concatenate([self.cols, cands])
        self.in_model[cands] = True

    def add_cut(self, unplaced_at_least: float) -> None:
        """sum_j weight[j] u[j] >= unplaced_at_least (a row over the slack columns)."""
        nj = len(self.jobs)
        self.h.addRow(unplaced_at_least, self.inf, nj, np.arange(nj, dtype=np.int32), self.w)
        self.cut = unplaced_at_least

    def run(self) -> bool:
        """Re-solve; False unless optimal (``timed_out`` tells the deadline from a failure)."""
        import highspy

        # HiGHS's time_limit is on the instance's run time summed over every run() so far
        self.h.setOptionValue("time_limit", self.h.getRunTime() + max(self.deadline - time.perf_counter(), 0.01))
        first = not self.solved
        if first:  # from scratch, the interior point method (then crossover to a basis) is ~2x the simplex's speed
            self.h.setOptionValue("solver", "ipm")
        try:
            self.h.run()
        finally:
            if first:
                self.h.setOptionValue("solver", "choose")  # later runs: the simplex from that basis (MILPs: the MIP solver)
        self.solved = True
        return self.h.getModelStatus() == highspy.HighsModelStatus.kOptimal

    def timed_out(self) -> bool:
        import highspy

        return self.h.getModelStatus() == highspy.HighsModelStatus.kTimeLimit

    def values(self) -> tuple[np.ndarray, np.ndarray]:
        """(x of ``cols``, u of ``jobs``)."""
        x = np.asarray(self.h.getSolution().col_value)
        nj = len(self.jobs)
        return x[nj:], x[:nj]

    def objective(self) -> float:
        return float(self.h.getInfo().objective_function_value)

    def duals(self) -> tuple[np.ndarray, np.ndarray]:
        """(pi per class (n_jobs,), capacity duals per flat (p, h) key)."""
        d = np.asarray(self.h.getSolution().row_dual)
        nj = len(self.jobs)
        pi = np.zeros(self.p.n_jobs)
        pi[self.jobs] = d[:nj]
        y = np.zeros(len(self.local))
        y[self.rows] = d[nj:nj + len(self.rows)]
        return pi, y

    def set_bounds(self, model_cols: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> None:
        self.h.changeColsBounds(len(model_cols), model_cols.astype(np.int32), lower, upper)

    def set_costs(self, placed_only: bool) -> None:
        """The objective: ``placed_only`` -- the unplaced weight alone (slacks cost their weight, every
        candidate 0); else the model's (candidates their cost, slacks ``big_m`` x weight)."""
        nj, nc = len(self.jobs), len(self.cols)
        cost = np.concatenate([self.w, np.zeros(nc)]) if placed_only else \
            np.concatenate([self.big_m * self.w, self.p.cost[self.cols]])
        self.h.changeColsCost(nj + nc, np.arange(nj + nc, dtype=np.int32), cost)


def _price(m: _Master, cand: np.ndarray, cost: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Re-solve the master, then price ``cand`` (their objective coefficients ``cost``): (reduced
    costs ``cost - pi_j + demand * sum of |capacity duals|`` over the hours, which of them price out
    and are not in the model, the master's value z, the Lagrangian bound ``z + sum_j count[j]
    min(0, min_c rc)``). _OutOfTime past the deadline; RuntimeError when HiGHS fails."""
    if not m.run():
        if m.timed_out():
            raise _OutOfTime
        raise RuntimeError(f"HiGHS could not solve the batch LP: {m.h.getModelStatus()}")
    p = m.p
    pi, y = m.duals()
    job = p.job[cand]
    rc = cost - pi[job] - p.demand[cand] * span_sum(prefix(y.reshape(p.capacity.size, p.n_slots)), p, cand)
    neg = (rc < -1e-9 * (1.0 + np.abs(cost))) & ~m.in_model[cand]
    lowest = np.zeros(p.n_jobs)
    np.minimum.at(lowest, job, rc)
    z = m.objective()
    return rc, neg, z, z + float(lowest @ p.counts)


def _generate(m: _Master, cand: np.ndarray, colgen_tol: float, add_per_job: int,
              deadline: float = math.inf) -> tuple[float, int, bool]:
    """Column generation on ``m`` over the candidates ``cand`` (see the module docstring):
    (Lagrangian lower bound on the LP, rounds, converged). Past ``deadline`` it stops with the
    bound it has (valid, maybe weak) and ``converged`` False."""
    p = m.p
    rounds = 0
    job, cost = p.job[cand], p.cost[cand]
    while True:
        rounds += 1
        rc, neg, z, lagrange = _price(m, cand, cost)
        _, u = m.values()
        cost_part = abs(z - m.big_m * float(m.w @ u))
        if not neg.any():
            return z, rounds, True
        if z - lagrange <= colgen_tol * max(cost_part, 1e-12):
            return lagrange, rounds, True
        if time.perf_counter() > deadline:
            return lagrange, rounds, False
        pick = prune_spread(job[neg], p.resource[cand[neg]], rc[neg], add_per_job)
        m.add(cand[neg][pick])


def _least_unplaced(m: _Master, cand: np.ndarray, add_per_job: int, deadline: float = math.inf) -> tuple[float, int]:
    """A lower bound on the unplaced weight of every assignment: the LP ``min sum_j weight[j] u[j]``
    (costs left out) by column generation on ``m`` over ``cand``, from the master's basis, its
    Lagrangian bound ``z + sum_j count[j] min(0, min_c rc)`` (valid at every round; ``rc = -pi_j +
    demand * sum of |capacity duals|``). Generation stops once the bound's ceiling cannot rise
    (it reaches the ceiling of z), at ``deadline``, or when no column prices out. The master's
    objective is restored; columns added here stay. (rounds)

    The weighted LP's own unplaced weight is no such bound: ``big_m`` makes whole units of placed
    weight outweigh any change of cost, not fractions of one, and the LP may leave a sixth of a
    job out to save cost; its ceiling then "proved" a job unplaced that fits (found by fuzzing:
    three jobs, greedy placed all three)."""
    p = m.p
    job, free = p.job[cand], np.zeros(len(cand))
    rounds = 0
    m.set_costs(placed_only=True)
    try:
        while True:
            rounds += 1
            rc, neg, z, bound = _price(m, cand, free)
            if not neg.any():
                return z, rounds
            if math.ceil(bound - INTEGRAL_TOL) >= math.ceil(z - INTEGRAL_TOL) or time.perf_counter() > deadline:
                return bound, rounds
            n_before = len(m.cols)
            m.add(cand[neg][prune_spread(job[neg], p.resource[cand[neg]], rc[neg], add_per_job)])
            new = np.arange(len(m.jobs) + n_before, len(m.jobs) + len(m.cols), dtype=np.int32)
            m.h.changeColsCost(len(new), new, np.zeros(len(new)))
    finally:
        m.set_costs(placed_only=False)


def _dive(m: _Master, share: float = 0.5, deadline: float = math.inf, enough=None) -> np.ndarray | None:
    """LP diving from the master's LP optimum: per round, up to a ``share`` of the fractional
    columns (largest fractional part first) is rounded up (lower bound) where one more unit still
    fits the capacity the whole units leave, its class has a unit to spare and the lower bounds
    still leave the unplaced weight the cut asks for; when none can be,
    the one closest to whole is rounded down (upper bound). The dual simplex re-solves from the
    last basis. A round that raises the unplaced weight is undone and the next rounds fix a
    quarter as many columns (doubling again after each round that keeps it); a single column
    that raises it is not tried again. Returns units per candidate of the
    master's problem: the last LP's, rounded down where still fractional (at the deadline, or
    when every fractional column has been tried); None when a re-solve fails. The master's
    bounds are restored."""
    q, nj = m.p, len(m.jobs)
    P, S = q.capacity.size, q.n_slots
    n = len(m.cols)
    x, u = m.values()
    lower, upper = np.zeros(n), np.full(n, m.inf)
    tried = np.zeros(n, dtype=bool)  # columns whose rounding alone raised the unplaced weight
    target = float(m.w @ u) + 1e-6
    limit = math.inf
    rounds = 0

    def whole_units(whole):
        units = np.zeros(len(q.job))
        units[m.cols] = whole
        return units

    m.h.setOptionValue("simplex_strategy", 1)
    try:
        while True:
            x, _ = m.values()
            whole = np.floor(x + INTEGRAL_TOL)
            frac = np.flatnonzero((x - whole > INTEGRAL_TOL) & ~tried)
            if not len(frac) or time.perf_counter() > deadline:
                break
            if enough is not None and rounds and enough(whole_units(x)):
                break
            rounds += 1
            kc, kr = q.row_keys(m.cols)
            load = np.bincount(kr, weights=q.demand[kc] * np.repeat(whole, q.n_hours[m.cols]), minlength=P * S)
            room = m.n - np.bincount(m.job_row[q.job[m.cols]], weights=whole, minlength=nj)  # spare units per class
            held = np.bincount(m.job_row[q.job[m.cols]], weights=lower, minlength=nj)  # units the bounds place
            spare = float(m.w @ (m.n - held)) - m.cut - 1e-9  # the unplaced-weight cut must stay reachable
            up = []
            limit = max(1, min(limit, int(share * len(frac))))
            for i in frac[np.argsort(-(x - whole)[frac], kind="stable")]:
                c = m.cols[i]
                a = q.resource[c] * S + q.first_hour[c]
                b, k = a + q.n_hours[c], m.job_row[q.job[c]]
                more = m.w[k] * (whole[i] + 1 - lower[i])
                if room[k] >= 1 and spare >= more and load[a:b].max() + q.demand[c] <= q.capacity[q.resource[c]] + 1e-9:
                    load[a:b] += q.demand[c]
                    room[k] -= 1
                    spare -= more
                    up.append(i)
                    if len(up) >= limit:
                        break
            idx = np.array(up, dtype=np.int64) if up else frac[[np.argmin((x - whole)[frac])]]
            before = lower[idx].copy(), upper[idx].copy()
            if up:
                lower[idx] = whole[idx] + 1
            else:  # nothing fits one more unit: the column closest to whole goes down
                upper[idx] = whole[idx]
            m.set_bounds(nj + idx, lower[idx], upper[idx])
            if not m.run():
                return None
            _, u = m.values()
            if float(m.w @ u) > target:  # it costs placed weight: undo
                lower[idx], upper[idx] = before
                m.set_bounds(nj + idx, lower[idx], upper[idx])
                if not m.run():
                    return None
                if len(idx) == 1:
                    tried[idx] = True
                limit = len(idx) // 4  # back off: fewer columns at a time
            else:
                limit = 2 * len(idx)
        x, _ = m.values()
        units = np.zeros(len(q.job))
        units[m.cols] = np.floor(x + INTEGRAL_TOL)
        return units
    finally:
        m.h.setOptionValue("simplex_strategy", 4)
        m.set_bounds(nj + np.arange(n), np.zeros(n), np.full(n, m.inf))


def _milp(m: _Master, start: np.ndarray, time_limit_s: float, abs_gap: float, floor: np.ndarray | None = None):
    """HiGHS's MILP over the master's columns from ``start`` (units per candidate of the master's
    problem), with each column's lower bound raised to ``floor`` (units per candidate) if given:
    "LP-and-fix". Returns (units per candidate, mip gap, proven optimal) or None when it found
    nothing. The bounds are restored afterwards."""
    import highspy

    h, nj = m.h, len(m.jobs)
    n = nj + len(m.cols)
    h.changeColsIntegrality(n, np.arange(n, dtype=np.int32), np.full(n, highspy.HighsVarType.kInteger))
    held = np.flatnonzero(floor[m.cols] >= 1) if floor is not None else np.zeros(0, dtype=np.int64)
    if len(held):
        m.set_bounds(nj + held, floor[m.cols[held]], np.full(len(held), m.inf))
    try:
        h.setOptionValue("time_limit", h.getRunTime() + max(time_limit_s, 0.05))  # run time summed over runs
        h.setOptionValue("mip_rel_gap", 0.0)
        h.setOptionValue("mip_abs_gap", max(abs_gap, 1e-9))
        sol = highspy.HighsSolution()
        x = np.zeros(n)
        x[nj:] = start[m.cols]
        placed = np.zeros(m.p.n_jobs)
        np.add.at(placed, m.p.job[m.cols], start[m.cols])
        x[:nj] = m.n - placed[m.jobs]
        sol.col_value = list(x)
        sol.value_valid = True
        h.setSolution(sol)
        h.run()
        info = h.getInfo()
        if info.primal_solution_status != 2:  # kSolutionStatusFeasible
            return None
        x = np.asarray(h.getSolution().col_value)
        units = np.zeros(len(m.p.job))
        units[m.cols] = np.rint(x[nj:])
        return units, float(info.mip_gap), h.getModelStatus() == highspy.HighsModelStatus.kOptimal
    finally:
        if len(held):
            m.set_bounds(nj + held, np.zeros(len(held)), np.full(len(held), m.inf))


class _OutOfTime(Exception):
    """An LP solve reached the deadline: no LP solution to round, no bound from it."""


@dataclass
class _Result:
    chosen: np.ndarray
    unplaced: np.ndarray
    status: str
    cost_bound: float
    unplaced_bound: float
    mip_gap: float = float("nan")
    lp_integral: bool = False
    stats: dict = field(default_factory=dict)


def _solve_component(p: BatchProblem, cl: JobClasses, classes: np.ndarray, cand: np.ndarray, cand_p: np.ndarray,
                     rows: np.ndarray, row_id: np.ndarray, seed: np.ndarray, deadline: float, gap: float,
                     init_per_job: int, add_per_job: int, colgen_tol: float) -> _Result:
    """One independent component: the classes ``classes`` (their candidates ``cand`` in the class
    problem, ``cand_p`` in ``p``), LP by column generation, then an integer assignment."""
    started = time.perf_counter()
    q = cl.q
    jobs = cl.members_of(classes)
    spread = np.zeros(q.n_jobs)
    np.maximum.at(spread, q.job[cand], q.cost[cand])
    low = np.full(q.n_jobs, np.inf)
    np.minimum.at(low, q.job[cand], q.cost[cand])
    big_m = 2.0 * float(np.sum(((spread - np.minimum(low, 0.0)) * q.counts)[classes])) + 1.0
    m = _Master(q, classes, rows, row_id, big_m, deadline)
    seed_chosen = seed[jobs][seed[jobs] >= 0]
    m.add(np.concatenate([cand[prune_top_k(q.job[cand], q.cost[cand], init_per_job)], cl.to_q[seed_chosen]]))
    lp_deadline = started + LP_SHARE * (deadline - started)
    try:
        bound, rounds, converged = _generate(m, cand, colgen_tol, add_per_job, lp_deadline)
        _, u = m.values()
        lp_unplaced = float(m.w @ u)
        unplaced_bound = 0.0
        if converged and lp_unplaced > INTEGRAL_TOL:  # some weight may not fit: how much at least?
            least, more = _least_unplaced(m, cand, add_per_job, lp_deadline)
            rounds += more
            unplaced_bound = float(max(math.ceil(least - INTEGRAL_TOL), 0))
            if unplaced_bound > 0:
                m.add_cut(unplaced_bound)
            bound, more, converged = _generate(m, cand, colgen_tol, add_per_job, lp_deadline)
            rounds += more
    except _OutOfTime:  # one LP solve outlasted the time left: greedy's assignment, no claim but the trivial bound
        return _Result(seed_chosen, jobs[seed[jobs] < 0], "time_limit",
                       float((np.minimum(low, 0.0) * q.counts)[classes].sum()), 0.0,
                       stats={"variables": int(len(m.cols)), "colgen_iterations": 0, "lp_stopped_early": 1})
    cost_bound = bound - big_m * unplaced_bound
    stats = {"variables": int(len(m.cols)), "colgen_iterations": rounds, "lp_stopped_early": int(not converged)}
    x, u = m.values()
    units = np.zeros(len(q.job))
    units[m.cols] = x
    frac_x, frac_u = np.abs(x - np.rint(x)) > INTEGRAL_TOL, np.abs(u - np.rint(u)) > INTEGRAL_TOL
    if converged and not frac_x.any() and not frac_u.any():
        return _Result(*cl.to_jobs(units, classes), "lp_integral", cost_bound, unplaced_bound, lp_integral=True,
                       stats=stats)
    stats["fractional_jobs"] = int(len(np.union1d(q.job[m.cols[frac_x]], classes[frac_u])))
    best: list = []

    def consider(chosen, unplaced, status, mip_gap=float("nan")) -> bool:
        obj = (float(p.weights[unplaced].sum()), float(p.cost[chosen].sum()))
        fits = (usage(p, chosen) <= p.capacity[:, None] + 1e-9).all()  # a guard: never keep one that does not
        if fits and (not best or obj < best[0]):
            best[:] = [obj, chosen, unplaced, status, mip_gap]
        return within(1.0)

    def within(factor: float) -> bool:  # the best so far: the proven-maximal weight, within factor x gap of the bound
        w, c = best[0]
        return w <= unplaced_bound + 1e-9 and c - cost_bound <= factor * gap * max(abs(c), 1e-12)

    done = consider(seed_chosen, jobs[seed[jobs] < 0], "greedy")
    if not done:  # the LP rounded, the units left over placed where they still fit
        done = consider(*fill(p, *cl.to_jobs(round_up(q, units), classes), cand_p), "lp_round")
    if not done:  # LP diving
        def rounded(x) -> bool:  # the dive so far, rounded and filled: good enough?
            return consider(*fill(p, *cl.to_jobs(round_up(q, x), classes), cand_p), "lp_dive")

        dove = _dive(m, deadline=started + DIVE_SHARE * (deadline - started), enough=rounded)
        if dove is not None:
            done = rounded(dove)
    if not done and best[0][0] > unplaced_bound + 1e-9:  # one-step ejection, while more could be placed
        done = consider(*relocate(p, best[1], best[2], cand_p), best[3])
    # LP-and-fix: the MILP with every column held at least at the whole units the LP and the best
    # assignment agree on, then the MILP over everything generated. Each may take as long as
    # everything before the first (at least MILP_MIN_S), within the deadline.
    abs_gap = gap * max(abs(cost_bound), 1e-9)
    budget = max(MILP_MIN_S, time.perf_counter() - started)
    done = done or within(MILP_ABOVE)
    for floor in (np.floor(units + INTEGRAL_TOL), None):
        if done:
            break
        if time.perf_counter() >= deadline:  # short of the target, with a MILP left to try: say so
            best[3] = "time_limit"
            break
        start = cl.to_q_counts(best[1])
        if floor is not None:
            floor = np.minimum(floor, start)  # held where the LP and the best assignment agree: the start stays feasible
        m.add(np.flatnonzero(start))  # the fill pass may have used candidates the LP never generated
        res = _milp(m, start, min(budget, deadline - time.perf_counter()), abs_gap, floor)
        if res is None:
            continue
        chosen, unplaced = cl.to_jobs(res[0], classes)
        if floor is not None:
            done = consider(chosen, unplaced, "lp_fix", res[1])
            continue
        consider(chosen, unplaced, "optimal" if res[2] else "time_limit", res[1])
        if not res[2]:
            best[3] = "time_limit"
        if res[2] and m.in_model[cand].all():  # every candidate in the MILP: its proof is global
            unplaced_bound = float(p.weights[unplaced].sum())
            cost_bound = float(m.h.getInfo().mip_dual_bound) - big_m * unplaced_bound
    _, chosen, unplaced, status, mip_gap = best
    if not converged:
        status = "time_limit"  # the LP itself was cut short: the bound is Lagrangian, maybe weak
    return _Result(chosen, unplaced, status, cost_bound, unplaced_bound, mip_gap, False, stats)


def placed_key(p: BatchProblem, choice: np.ndarray) -> tuple[float, float]:
    """(unplaced priority weight, cost) of an assignment (a candidate per job, -1 = none): smaller
    is better, in that order -- the objective ``solve`` minimises."""
    return float(p.weights[choice < 0].sum()), float(p.cost[choice[choice >= 0]].sum())


def better(p: BatchProblem, a: np.ndarray, b: np.ndarray, rel: float = 1e-9) -> bool:
    """Whether assignment ``a`` beats ``b`` on ``placed_key``: less unplaced weight (whole numbers:
    exact), or as much and a cost lower by more than rounding (equal costs summed in another
    order differ in the last bits: 26.7 against 26.700000000000003)."""
    (wa, ca), (wb, cb) = placed_key(p, a), placed_key(p, b)
    return wa < wb or (wa == wb and ca < cb - rel * max(1.0, abs(cb)))


def solve(p: BatchProblem, *, time_limit_s: float = 30.0, mip_rel_gap: float = 5e-3,
          init_per_job: int = 4, add_per_job: int = 3, colgen_tol: float | None = None,
          seed: np.ndarray | None = None) -> BatchSolution:
    """The assignment placing the most priority-weighted jobs and, among those, the cheapest
    (within ``mip_rel_gap`` of the cost bound; where that would take the MILPs, within
    ``MILP_ABOVE * mip_rel_gap``; else the best found in ``time_limit_s``); see the module
    docstring. Jobs left out have ``choice == -1``. ``seed``: an assignment of ``p`` (a candidate
    per job, -1 = none) that fits the capacity, in place of greedy's over the reduced candidates
    (a caller that runs ``greedy(p)`` for its own comparison passes it; one that uses a candidate
    the reductions dropped is set aside for that greedy)."""
    t = time.perf_counter()
    deadline = t + time_limit_s
    colgen_tol = mip_rel_gap / 10 if colgen_tol is None else colgen_tol
    if len(np.unique(p.job)) != p.n_jobs:
        raise ValueError("every job needs at least one candidate")
    w = p.weights
    if len(w) != p.n_jobs or np.any(w < 1) or np.any(w != np.round(w)):
        raise ValueError("job weights must be whole numbers >= 1")
    if p.count is not None:
        raise ValueError("solve takes single jobs (count None); it forms the classes itself")
    if seed is not None:
        seed = np.asarray(seed)
        on = np.flatnonzero(seed >= 0) if seed.shape == (p.n_jobs,) and np.issubdtype(seed.dtype, np.integer) else None
        if on is None or np.any(seed < -1) or np.any(seed >= len(p.job)) or np.any(p.job[seed[on]] != on) \
                or not (usage(p, seed) <= p.capacity[:, None] + 1e-9).all():
            raise ValueError("seed must give each job one of its own candidates (or -1) within capacity")
    cl = job_classes(p)
    q = cl.q
    alive, binding, fixed = reduce(q)
    S, P = q.n_slots, q.capacity.size
    rows = np.flatnonzero(binding.ravel())
    row_id = np.full(P * S, -1)
    row_id[rows] = np.arange(len(rows))
    fixed_cls = np.flatnonzero(fixed >= 0)
    units = np.zeros(len(q.job))
    units[fixed[fixed_cls]] = q.counts[fixed_cls]
    choice = np.full(p.n_jobs, -1)
    chosen, _ = cl.to_jobs(units, fixed_cls)
    choice[p.job[chosen]] = chosen
    open_cls = np.flatnonzero(fixed < 0)
    has_cand = np.bincount(q.job[alive], minlength=q.n_jobs) > 0
    hopeless = open_cls[~has_cand[open_cls]]  # no candidate fits even an empty capacity
    open_cls = open_cls[has_cand[open_cls]]
    stats = {"candidates": int(len(p.job)), "jobs": p.n_jobs, "job_classes": q.n_jobs,
             "fixed_jobs": int(q.counts[fixed_cls].sum()), "alive": int(np.count_nonzero(alive)),
             "capacity_rows": int(len(rows)), "components": 0, "variables": 0, "colgen_iterations": 0,
             "fractional_jobs": 0, "lp_stopped_early": 0}
    cost_bound = float(q.cost[fixed[fixed_cls]] @ q.counts[fixed_cls])
    unplaced_bound = float((q.weights * q.counts)[hopeless].sum())
    statuses, mip_gaps, integral = ["trivial"], [], True
    if len(open_cls):
        cand = np.flatnonzero(alive & (fixed[q.job] < 0))
        alive_p = (alive & (fixed[q.job] < 0))[cl.to_q]
        members = cl.members_of(open_cls)
        seed_all = seed
        if seed is None or not alive_p[seed[members][seed[members] >= 0]].all():
            # a candidate the reductions dropped (one tying a job's free candidate) must not enter a
            # master: it may use a row the master leaves out. Greedy over the kept ones instead.
            seed_all = greedy(p, members, alive_p)
        stats["greedy_placed"] = int(np.count_nonzero(seed_all[members] >= 0))
        comps = components(q, cand, row_id, len(rows), open_cls)
        stats["components"] = len(comps)
        comp_of = np.full(q.n_jobs, -1)
        for i, classes in enumerate(comps):
            comp_of[classes] = i
        cand_by = np.argsort(comp_of[q.job[cand]], kind="stable")
        bounds = np.searchsorted(comp_of[q.job[cand]][cand_by], np.arange(len(comps) + 1))
        cand_p = np.flatnonzero(alive_p)
        comp_p = comp_of[cl.of_job[p.job[cand_p]]]
        by_p = np.argsort(comp_p, kind="stable")
        bounds_p = np.searchsorted(comp_p[by_p], np.arange(len(comps) + 1))
        kc, kr = q.row_keys(cand)
        row_comp = np.full(len(rows), -1)
        on = row_id[kr] >= 0
        row_comp[row_id[kr][on]] = comp_of[q.job[kc[on]]]
        size = np.diff(bounds).astype(float) + 1.0  # candidates: the work a component is
        left = float(size.sum())
        for i in np.argsort(size, kind="stable"):  # smallest first: what they leave goes to the big ones
            classes = comps[i]
            now = time.perf_counter()
            share = now + (deadline - now) * size[i] / left  # this component's part of the time left
            left -= size[i]
            res = _solve_component(p, cl, classes, cand[cand_by[bounds[i]:bounds[i + 1]]],
                                   cand_p[by_p[bounds_p[i]:bounds_p[i + 1]]], rows[row_comp == i], row_id,
                                   seed_all, share, mip_rel_gap, init_per_job, add_per_job, colgen_tol)
            choice[p.job[res.chosen]] = res.chosen
            cost_bound += res.cost_bound
            unplaced_bound += res.unplaced_bound
            statuses.append(res.status)
            integral &= res.lp_integral
            if not math.isnan(res.mip_gap):
                mip_gaps.append(res.mip_gap)
            for k, v in res.stats.items():
                stats[k] += v
    status = max(statuses, key=STATUS_ORDER.index)
    if seed is not None and better(p, seed, choice):
        # the caller's assignment, set aside for a candidate the reductions dropped, is better: it stays
        choice, status = seed.copy(), "time_limit" if status == "time_limit" else "greedy"
    objective = float(p.cost[choice[choice >= 0]].sum())
    unplaced_weight = float(w[choice < 0].sum())
    proven_max = unplaced_weight <= unplaced_bound + 1e-9
    gap_vs_lp = (max((objective - cost_bound) / abs(objective), 0.0) if objective else 0.0) if proven_max else float("nan")
    stats.update(lp_bound=cost_bound, unplaced_weight=unplaced_weight, unplaced_bound=unplaced_bound)
    return BatchSolution(choice, objective, status, max(mip_gaps) if mip_gaps else float("nan"), gap_vs_lp,
                         integral, time.perf_counter() - t, stats)
