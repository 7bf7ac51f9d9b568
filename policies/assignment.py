"""Batch assignment: many jobs, at most one placement each, under shared hourly GPU capacity.

Data (all arrays, index ``c`` over candidates of all jobs, ``j`` over jobs, ``p`` over
resources = (region, GPU type) pairs, ``h`` over hour slots)::

    job[c]        the job candidate c belongs to (every job has >= 1 candidate)
    cost[c]       objective coefficient (kgCO2e, USD, ... lower is better)
    resource[c]   p;  demand[c] = GPUs it holds;  it holds them during the hour slots
                  first_hour[c] .. first_hour[c] + n_hours[c] - 1 (a partly used hour counts whole)
    capacity[p]   GPUs of type p available in each hour (np.inf = unlimited)
    weight[j]     the job's priority, a whole number >= 1 (default 1)

Integer programme, "place what fits" (x[c] = 1 iff job[c] runs as candidate c; u[j] = 1 iff job j
is left unplaced)::

    min  sum_c cost[c] x[c]  +  M sum_j weight[j] u[j]
    s.t. sum_{c: job[c]=j} x[c] + u[j] = 1                                 for every job j
         sum_{c: resource[c]=p, h in hours(c)} demand[c] x[c] <= capacity[p]   for binding (p, h)
         x, u in {0, 1}

With ``M > sum_j (max_c cost - min_c cost)`` and whole weights, one more unit of placed weight
outweighs any change of cost: the optimum places the largest priority-weighted set of jobs and,
among those, the cheapest. All-or-nothing planning is the same solve, failing when any u is 1.

Reductions before solving (each keeps an optimal solution of the original problem):

1. A candidate with ``demand > capacity`` can never run: dropped.
2. Row (p, h) *can bind* only if ``sum_j max_{c in j, c uses (p,h)} demand[c] > capacity[p]``
   (each job picks at most one candidate, so this is the most the row can carry). Other rows are
   left out of the model.
3. Dominance: a candidate of job j that uses no binding row is *free*. If ``f_j`` is the cost of
   j's cheapest free candidate, every candidate of j costing ``>= f_j`` (other than that one) is
   dropped: j can always switch to it without breaking a row. A job whose cheapest candidate is
   free is fixed there and leaves the model. 2 and 3 repeat until little changes.
4. Decomposition: jobs that share no binding row (directly or through other jobs) are independent
   problems (connected components of the job-row graph, ``scipy.sparse.csgraph``), solved one
   after the other; their bounds and costs add up.

Each component (``_Master``: HiGHS through highspy, kept between rounds so every re-solve starts
from the previous basis):

* LP by column generation: each job's ``init_per_job`` cheapest candidates plus greedy's choice
  and the slack u[j]; candidates whose reduced cost ``cost - pi_j + demand * sum of |capacity
  duals| over its hours`` (O(N) with prefix sums) is negative are added, ``add_per_job`` per job,
  primal simplex from the last basis, until none is left or the Lagrangian bound
  ``z_RMP + sum_j min(0, min_c rc)`` (valid at every round) is within ``colgen_tol``, or the
  component has used LP_SHARE of its time (then the Lagrangian bound is what is reported, no
  unplaced-weight bound is claimed, and the status is ``time_limit``).
* Unplaced weight: when the LP leaves ``U > 0`` weight unplaced, every integer solution leaves at
  least ``ceil(U)`` (whole weights), so the row ``sum_j weight[j] u[j] >= ceil(U)`` is added and
  generation resumes. The bound then reads ``M ceil(U) + B``: no assignment places more weight, and
  one that places that much costs at least B.
* Integer: the LP when integral; else the best of greedy's assignment, LP diving (fix the jobs'
  largest LP values that still fit, a quarter of the fractional jobs at a time, dual simplex from
  the last basis) and, while none is within ``mip_rel_gap`` of the cost bound, HiGHS's MILP over
  the generated columns with the jobs the LP placed whole held there ("LP-and-fix"), then over all
  of them, each started from the best assignment so far, each for at most as long as the
  component took before the first (>= MILP_MIN_S) and within the time limit (status
  ``time_limit`` when the last one stops early). The dive stops at DIVE_SHARE of the time and
  hands what it fixed to the fill and ejection passes.

Time: ``time_limit_s`` bounds the whole solve (components share what is left in turn), not only
the MILP; a large, tight batch returns its best assignment at the limit with the gap it proved.

Reported: ``unplaced_weight`` against ``unplaced_bound`` (equal: the placement count is proven
maximal) and ``gap_vs_lp = (cost - B) / |cost|`` (NaN when it is not proven maximal).
``greedy`` is the comparison rule "jobs in submission order, each takes its cheapest candidate
that still fits". Greedy over the reduced candidates seeds every component and is one of the
assignments ``solve`` compares, so ``solve`` does not do worse on (placed weight, cost); a
hypothesis test checks it against ``greedy`` over all candidates.
"""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components

INTEGRAL_TOL = 1e-6
MILP_MIN_S = 1.0
LP_SHARE, DIVE_SHARE = 0.6, 0.8  # of a component's time: the LP stops by the first, the dive by the second
RELOCATE_JOBS = 20  # unplaced jobs the ejection pass tries (Python loops: keep it a finishing touch)
RELOCATE_CANDIDATES = 50  # of each, its cheapest candidates
STATUS_ORDER = ("trivial", "lp_integral", "greedy", "lp_dive", "lp_fix", "optimal", "time_limit")  # best to worst


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

    @cached_property
    def n_slots(self) -> int:
        return int((self.first_hour + self.n_hours).max()) if len(self.job) else 0

    @cached_property
    def weights(self) -> np.ndarray:
        return np.ones(self.n_jobs) if self.weight is None else np.asarray(self.weight, dtype=float)

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


def prune_top_k(job: np.ndarray, cost: np.ndarray, k: int | None) -> np.ndarray:
    """Indices of each job's ``k`` cheapest candidates (ties by index), in (job, cost) order."""
    order = np.lexsort((np.arange(len(job)), cost, job))
    if k is None:
        return order
    j = job[order]
    first = np.searchsorted(j, j, side="left")  # position of the job's first candidate in order
    return order[(np.arange(len(order)) - first) < k]


def _prefix(a: np.ndarray) -> np.ndarray:
    """(P, S+1) prefix sums along hours of a (P, S) array."""
    return np.concatenate([np.zeros((a.shape[0], 1)), np.cumsum(a, axis=1)], axis=1)


def _span_sum(cum: np.ndarray, p: BatchProblem, cands: np.ndarray) -> np.ndarray:
    """Sum of a (P, S) array over each candidate's hours, via its prefix sums ``cum``."""
    r, h = p.resource[cands], p.first_hour[cands]
    return cum[r, h + p.n_hours[cands]] - cum[r, h]


def max_load(p: BatchProblem, alive: np.ndarray, order: np.ndarray | None = None) -> np.ndarray:
    """(P, S) upper bound on the GPUs any assignment can put on each row (reduction 2).

    Per (job, resource) group: the union of its candidates' hour intervals, weighted by the
    group's largest demand (>= the per-(job, row) maximum). Sorting plus a running maximum
    merges intervals without expanding hours: O(N log N + P S). ``order`` (all candidates sorted
    by group, then first hour) may be passed to skip the sort.
    """
    P, S = p.capacity.size, p.n_slots
    if order is None:
        order = np.lexsort((p.first_hour, p.job.astype(np.int64) * P + p.resource))
    c = order[alive[order]]
    if not len(c):
        return np.zeros((P, S))
    group = p.job[c].astype(np.int64) * P + p.resource[c]
    head = np.ones(len(c), dtype=bool)
    head[1:] = group[1:] != group[:-1]
    gid = np.cumsum(head) - 1
    starts = np.flatnonzero(head)
    gmax = np.maximum.reduceat(p.demand[c], starts)
    s, e = p.first_hour[c].astype(np.int64), (p.first_hour[c] + p.n_hours[c]).astype(np.int64)
    off = gid * (S + 1)
    reach = np.maximum.accumulate(e + off) - off  # furthest end so far within the group
    new = head.copy()
    new[1:] |= s[1:] > reach[:-1]  # a gap: a new merged interval begins
    first_of = np.flatnonzero(new)
    last_of = np.append(first_of[1:] - 1, len(c) - 1)
    w = gmax[gid[first_of]]
    res = p.resource[c[first_of]].astype(np.int64) * (S + 1)
    diff = np.bincount(res + s[first_of], weights=w, minlength=P * (S + 1)) \
        - np.bincount(res + reach[last_of], weights=w, minlength=P * (S + 1))
    return np.cumsum(diff.reshape(P, S + 1), axis=1)[:, :S]


def reduce(p: BatchProblem, max_rounds: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reductions 1-3: (alive candidate mask, (P, S) binding-row mask, fixed candidate per job or -1)."""
    alive = p.demand <= p.capacity[p.resource] + 1e-9
    fixed = np.full(p.n_jobs, -1)
    N, idx = len(p.job), np.arange(len(p.job))
    by_group = np.lexsort((p.first_hour, p.job.astype(np.int64) * p.capacity.size + p.resource))
    by_cost = np.lexsort((idx, p.cost, p.job))  # per job, cheapest first
    seg = np.searchsorted(p.job[by_cost], np.arange(p.n_jobs))
    for _ in range(max_rounds):
        binding = max_load(p, alive, by_group) > p.capacity[:, None] + 1e-9
        touches = _span_sum(_prefix(binding.astype(float)), p, idx) > 0
        free = (alive & ~touches)[by_cost]
        pos = np.where(free, np.arange(N), N)  # first free position in each job's segment
        first = np.minimum.reduceat(np.append(pos, N), np.append(seg, N))[:-1] if N else pos
        has = first < N
        best_free = np.full(p.n_jobs, -1)
        best_free[has] = by_cost[first[has]]
        f = np.full(p.n_jobs, np.inf)
        f[has] = p.cost[best_free[has]]
        keep = alive & ((p.cost < f[p.job]) | (idx == best_free[p.job])) & (fixed[p.job] < 0)
        n_keep = np.bincount(p.job[keep], minlength=p.n_jobs)
        newly = (n_keep == 1) & (best_free >= 0) & (fixed < 0)  # only the free candidate is left
        fixed[newly] = best_free[newly]
        keep &= fixed[p.job] < 0
        if np.count_nonzero(alive & ~keep) <= 0.01 * np.count_nonzero(alive):
            alive = keep  # little left to gain from another round (each round is valid on its own)
            break
        alive = keep
    binding = max_load(p, alive, by_group) > p.capacity[:, None] + 1e-9
    return alive, binding, fixed


def _components(p: BatchProblem, cand: np.ndarray, row_id: np.ndarray, n_rows: int,
                jobs: np.ndarray) -> list[np.ndarray]:
    """``jobs`` grouped into independent problems: connected through the binding rows their
    candidates ``cand`` use (reduction 4)."""
    kc, kr = p.row_keys(cand)
    r = row_id[kr]
    on = r >= 0
    J = p.n_jobs
    graph = sparse.coo_array((np.ones(int(on.sum())), (p.job[kc[on]], J + r[on])), shape=(J + n_rows, J + n_rows))
    _, label = connected_components(graph, directed=False)
    lab = label[jobs]
    order = np.argsort(lab, kind="stable")
    cuts = np.flatnonzero(np.diff(lab[order])) + 1
    return np.split(jobs[order], cuts)


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
    """One component's restricted master problem in HiGHS: rows = its jobs' convexity rows, then
    its binding capacity rows; columns = the slacks u[j], then the candidates added so far."""

    def __init__(self, p: BatchProblem, jobs: np.ndarray, rows: np.ndarray, row_id: np.ndarray, big_m: float):
        import highspy

        self.p, self.jobs, self.big_m = p, jobs, big_m
        self.inf = highspy.kHighsInf
        self.job_row = np.full(p.n_jobs, -1)
        self.job_row[jobs] = np.arange(len(jobs))
        self.local = np.full(len(row_id), -1)  # flat (p, h) key -> this master's row
        self.local[rows] = len(jobs) + np.arange(len(rows))
        self.rows = rows
        self.w = p.weights[jobs]
        self.h = h = _highs()
        h.setOptionValue("simplex_strategy", 4)  # primal: new columns keep the last basis primal feasible
        nj, cap = len(jobs), p.capacity[rows // p.n_slots]
        empty_i, empty_v = np.zeros(0, dtype=np.int32), np.zeros(0)
        h.addRows(nj + len(rows), np.concatenate([np.ones(nj), np.full(len(rows), -self.inf)]),
                  np.concatenate([np.ones(nj), cap]), 0, empty_i, empty_i, empty_v)
        ar = np.arange(nj, dtype=np.int32)
        h.addCols(nj, big_m * self.w, np.zeros(nj), np.ones(nj), nj, ar, ar, np.ones(nj))
        self.cols = np.zeros(0, dtype=np.int64)
        self.in_model = np.zeros(len(p.job), dtype=bool)
        self.model_col = np.full(len(p.job), -1)  # candidate -> its column in HiGHS

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
        a = sparse.csc_array((v, (ri, ci)), shape=(len(self.jobs) + len(self.rows), len(cands)))
        self.h.addCols(len(cands), p.cost[cands], np.zeros(len(cands)), np.full(len(cands), self.inf), a.nnz,
                       a.indptr[:-1].astype(np.int32), a.indices.astype(np.int32), a.data)
        self.model_col[cands] = len(self.jobs) + len(self.cols) + np.arange(len(cands))
        self.cols = np.concatenate([self.cols, cands])
        self.in_model[cands] = True

    def add_cut(self, unplaced_at_least: float) -> None:
        """sum_j weight[j] u[j] >= unplaced_at_least (a row over the slack columns)."""
        nj = len(self.jobs)
        self.h.addRow(unplaced_at_least, self.inf, nj, np.arange(nj, dtype=np.int32), self.w)

    def run(self) -> bool:
        import highspy

        self.h.run()
        return self.h.getModelStatus() == highspy.HighsModelStatus.kOptimal

    def values(self) -> tuple[np.ndarray, np.ndarray]:
        """(x of ``cols``, u of ``jobs``)."""
        x = np.asarray(self.h.getSolution().col_value)
        nj = len(self.jobs)
        return x[nj:], x[:nj]

    def objective(self) -> float:
        return float(self.h.getInfo().objective_function_value)

    def duals(self) -> tuple[np.ndarray, np.ndarray]:
        """(pi per job (n_jobs,), capacity duals per flat (p, h) key)."""
        d = np.asarray(self.h.getSolution().row_dual)
        nj = len(self.jobs)
        pi = np.zeros(self.p.n_jobs)
        pi[self.jobs] = d[:nj]
        y = np.zeros(len(self.local))
        y[self.rows] = d[nj:nj + len(self.rows)]
        return pi, y

    def set_bounds(self, model_cols: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> None:
        self.h.changeColsBounds(len(model_cols), model_cols.astype(np.int32), lower, upper)


def _generate(m: _Master, cand: np.ndarray, colgen_tol: float, add_per_job: int,
              deadline: float = math.inf) -> tuple[float, int, bool]:
    """Column generation on ``m`` over the candidates ``cand`` (see the module docstring):
    (Lagrangian lower bound on the LP, rounds, converged). Past ``deadline`` it stops with the
    bound it has (valid, maybe weak) and ``converged`` False."""
    p = m.p
    P, S = p.capacity.size, p.n_slots
    rounds = 0
    while True:
        rounds += 1
        if not m.run():
            raise RuntimeError(f"HiGHS could not solve the batch LP: {m.h.getModelStatus()}")
        pi, y = m.duals()
        rc = p.cost[cand] - pi[p.job[cand]] - p.demand[cand] * _span_sum(_prefix(y.reshape(P, S)), p, cand)
        neg = (rc < -1e-9 * (1.0 + np.abs(p.cost[cand]))) & ~m.in_model[cand]
        lowest = np.zeros(p.n_jobs)
        np.minimum.at(lowest, p.job[cand], rc)
        z = m.objective()
        lagrange = z + float(lowest.sum())
        _, u = m.values()
        cost_part = abs(z - m.big_m * float(m.w @ u))
        if not neg.any():
            return z, rounds, True
        if z - lagrange <= colgen_tol * max(cost_part, 1e-12):
            return lagrange, rounds, True
        if time.perf_counter() > deadline:
            return lagrange, rounds, False
        pick = prune_top_k(p.job[cand[neg]], rc[neg], add_per_job)
        m.add(cand[neg][pick])


def _dive(m: _Master, share: float = 0.25, deadline: float = math.inf) -> tuple[np.ndarray, np.ndarray] | None:
    """LP diving from the master's LP optimum: per round, a ``share`` of the fractional jobs (largest
    LP value first) is fixed to its largest-valued candidate that still fits the capacity, or to
    its slack when the slack carries more; then the dual simplex re-solves from the last basis.
    Returns (chosen candidates, unplaced jobs) or None; the master's bounds are restored either way.
    Past ``deadline`` it returns what is whole so far, the fractional jobs unplaced (for ``_fill``)."""
    p, nj = m.p, len(m.jobs)
    changed = []
    m.h.setOptionValue("simplex_strategy", 1)
    try:
        while True:
            x, u = m.values()
            jx = p.job[m.cols]
            whole = x > 1 - INTEGRAL_TOL
            frac_x = (x > INTEGRAL_TOL) & ~whole
            frac_u = (u > INTEGRAL_TOL) & (u < 1 - INTEGRAL_TOL)
            frac_jobs = np.union1d(jx[frac_x], m.jobs[frac_u])
            if not len(frac_jobs) or time.perf_counter() > deadline:
                return m.cols[whole], np.setdiff1d(m.jobs, p.job[m.cols[whole]])
            load = usage(p, m.cols[whole])
            uv = np.zeros(p.n_jobs)
            uv[m.jobs] = u
            order = np.lexsort((-x[frac_x], jx[frac_x]))  # per job, its largest x first
            fc, fj = m.cols[frac_x][order], jx[frac_x][order]
            starts = np.searchsorted(fj, frac_jobs)
            ends = np.searchsorted(fj, frac_jobs, side="right")
            top = np.array([max(x[m.model_col[fc[a]] - nj] if a < b else 0.0, uv[j])
                            for j, a, b in zip(frac_jobs, starts, ends)])
            fix, deferred = [], []
            for i in np.argsort(-top, kind="stable")[:max(1, int(share * len(frac_jobs)))]:
                j, a, b = frac_jobs[i], starts[i], ends[i]
                if a < b and x[m.model_col[fc[a]] - nj] < uv[j]:
                    fix.append(int(m.job_row[j]))  # the slack carries more: leave j unplaced
                    continue
                for c in fc[a:b]:
                    if _fits(p, load, c):
                        _hold(p, load, c)
                        fix.append(int(m.model_col[c]))
                        break
                else:
                    deferred.append(int(m.job_row[j]))
            if not fix:
                fix = deferred[:1]  # nothing of the largest fits: its job stays unplaced
            idx = np.array(fix, dtype=np.int64)
            changed.append(idx)
            m.set_bounds(idx, np.ones(len(idx)), np.where(idx < nj, 1.0, m.inf))
            if not m.run():
                return None
    finally:
        m.h.setOptionValue("simplex_strategy", 4)
        if changed:
            idx = np.unique(np.concatenate(changed))
            m.set_bounds(idx, np.zeros(len(idx)), np.where(idx < nj, 1.0, m.inf))


def _fill(p: BatchProblem, chosen: np.ndarray, unplaced: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Place what still fits: greedy over the unplaced jobs (highest weight first), each taking its
    cheapest candidate among ``cand`` that fits the capacity ``chosen`` leaves."""
    if not len(unplaced):
        return chosen, unplaced
    mine = np.zeros(len(p.job), dtype=bool)
    mine[cand[np.isin(p.job[cand], unplaced)]] = True
    order = unplaced[np.argsort(-p.weights[unplaced], kind="stable")]
    got = greedy(p, order, mine, used=usage(p, chosen))[order]
    return np.concatenate([chosen, got[got >= 0]]), np.sort(order[got < 0])


def _relocate(p: BatchProblem, chosen: np.ndarray, unplaced: np.ndarray, cand: np.ndarray,
              max_jobs: int = RELOCATE_JOBS) -> tuple[np.ndarray, np.ndarray]:
    """One-step ejection: an unplaced job takes candidate c (cheapest first) when a single placed
    job blocking c can move to another of its candidates that still fits. Each success places one
    more job (at most ``max_jobs`` tries, highest weight first)."""
    if not len(unplaced):
        return chosen, unplaced
    load = usage(p, chosen)
    srt = cand[np.lexsort((p.cost[cand], p.job[cand]))]
    lo, hi = np.searchsorted(p.job[srt], np.arange(p.n_jobs)), np.searchsorted(p.job[srt], np.arange(p.n_jobs), side="right")
    placed = {int(p.job[c]): int(c) for c in chosen}
    on_res: dict[int, set[int]] = {}
    for c in chosen:
        on_res.setdefault(int(p.resource[c]), set()).add(int(c))

    def fits(c):
        return _fits(p, load, c)

    def move(c, sign):
        _hold(p, load, c, sign)
        r = int(p.resource[c])
        (on_res.setdefault(r, set()).add if sign > 0 else on_res[r].discard)(c)

    left = []
    for i, j in enumerate(unplaced[np.argsort(-p.weights[unplaced], kind="stable")]):
        done = False
        for c in (srt[lo[j]:min(hi[j], lo[j] + RELOCATE_CANDIDATES)] if i < max_jobs else ()):
            r, h0, h1 = int(p.resource[c]), int(p.first_hour[c]), int(p.first_hour[c] + p.n_hours[c])
            for k in [k for k in on_res.get(r, ()) if p.first_hour[k] < h1 and p.first_hour[k] + p.n_hours[k] > h0]:
                move(k, -1)
                if fits(c):
                    move(c, +1)
                    alt = next((a for a in srt[lo[p.job[k]]:hi[p.job[k]]] if a != k and fits(a)), None)
                    if alt is not None:
                        move(int(alt), +1)
                        placed[int(p.job[k])], placed[int(j)] = int(alt), int(c)
                        done = True
                        break
                    move(c, -1)
                move(k, +1)
            if done:
                break
        if not done:
            left.append(j)
    return np.array(sorted(placed.values()), dtype=np.int64), np.sort(np.array(left, dtype=np.int64))


def _milp(m: _Master, start: tuple[np.ndarray, np.ndarray] | None, time_limit_s: float, abs_gap: float,
          fix: np.ndarray | None = None):
    """HiGHS's MILP over the master's columns from the assignment ``start`` (with the candidates
    ``fix`` held at 1, if given: "LP-and-fix"): (chosen, unplaced, mip gap, proven optimal) or None
    when it found nothing. The bounds of ``fix`` are restored afterwards."""
    import highspy

    h, nj = m.h, len(m.jobs)
    n = nj + len(m.cols)
    h.changeColsIntegrality(n, np.arange(n, dtype=np.int32), np.full(n, highspy.HighsVarType.kInteger))
    if fix is not None and len(fix):
        m.set_bounds(m.model_col[fix], np.ones(len(fix)), np.full(len(fix), m.inf))
    try:
        return _run_milp(m, start, time_limit_s, abs_gap)
    finally:
        if fix is not None and len(fix):
            m.set_bounds(m.model_col[fix], np.zeros(len(fix)), np.full(len(fix), m.inf))


def _run_milp(m: _Master, start, time_limit_s: float, abs_gap: float):
    import highspy

    h, nj = m.h, len(m.jobs)
    n = nj + len(m.cols)
    h.setOptionValue("time_limit", max(time_limit_s, 0.05))
    h.setOptionValue("mip_rel_gap", 0.0)
    h.setOptionValue("mip_abs_gap", max(abs_gap, 1e-9))
    if start is not None:
        sol = highspy.HighsSolution()
        x = np.zeros(n)
        x[nj + np.flatnonzero(np.isin(m.cols, start[0]))] = 1.0
        x[m.job_row[start[1]]] = 1.0
        sol.col_value = list(x)
        sol.value_valid = True
        h.setSolution(sol)
    h.run()
    info = h.getInfo()
    if info.primal_solution_status != 2:  # kSolutionStatusFeasible
        return None
    x = np.asarray(h.getSolution().col_value)
    proven = h.getModelStatus() == highspy.HighsModelStatus.kOptimal
    return m.cols[x[nj:] > 0.5], m.jobs[x[:nj] > 0.5], float(info.mip_gap), proven


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


def _solve_component(p: BatchProblem, jobs: np.ndarray, cand: np.ndarray, rows: np.ndarray, row_id: np.ndarray,
                     seed: np.ndarray, deadline: float, gap: float, init_per_job: int, add_per_job: int,
                     colgen_tol: float) -> _Result:
    """One independent component: LP by column generation, then an integer assignment."""
    started = time.perf_counter()
    spread = np.zeros(p.n_jobs)
    np.maximum.at(spread, p.job[cand], p.cost[cand])
    low = np.full(p.n_jobs, np.inf)
    np.minimum.at(low, p.job[cand], p.cost[cand])
    big_m = 2.0 * float(np.sum((spread - np.minimum(low, 0.0))[jobs])) + 1.0
    m = _Master(p, jobs, rows, row_id, big_m)
    m.add(np.concatenate([cand[prune_top_k(p.job[cand], p.cost[cand], init_per_job)], seed[seed >= 0]]))
    lp_deadline = started + LP_SHARE * (deadline - started)
    bound, rounds, converged = _generate(m, cand, colgen_tol, add_per_job, lp_deadline)
    _, u = m.values()
    lp_unplaced = float(m.w @ u)
    unplaced_bound = 0.0
    if converged and lp_unplaced > INTEGRAL_TOL:  # only the full LP's unplaced weight bounds every assignment
        unplaced_bound = float(math.ceil(lp_unplaced - INTEGRAL_TOL))
        m.add_cut(unplaced_bound)
        bound, more, converged = _generate(m, cand, colgen_tol, add_per_job, lp_deadline)
        rounds += more
    cost_bound = bound - big_m * unplaced_bound
    stats = {"variables": int(len(m.cols)), "colgen_iterations": rounds, "lp_stopped_early": int(not converged)}
    x, u = m.values()
    if converged and np.all(np.minimum(x, 1 - x) <= INTEGRAL_TOL) and np.all(np.minimum(u, 1 - u) <= INTEGRAL_TOL):
        return _Result(m.cols[x > 0.5], jobs[u > 0.5], "lp_integral", cost_bound, unplaced_bound,
                       lp_integral=True, stats=stats)
    stats["fractional_jobs"] = int(len(np.union1d(p.job[m.cols[(x > INTEGRAL_TOL) & (x < 1 - INTEGRAL_TOL)]],
                                                  jobs[(u > INTEGRAL_TOL) & (u < 1 - INTEGRAL_TOL)])))
    best: list = []

    def consider(chosen, unplaced, status, mip_gap=float("nan")) -> bool:
        obj = (float(p.weights[unplaced].sum()), float(p.cost[chosen].sum()))
        if not best or obj < best[0]:
            best[:] = [obj, chosen, unplaced, status, mip_gap]
        w, c = best[0]
        return w <= unplaced_bound + 1e-9 and c - cost_bound <= gap * max(abs(c), 1e-12)

    done = consider(*_relocate(p, seed[seed >= 0], jobs[seed < 0], cand, max_jobs=RELOCATE_JOBS), "greedy")
    if not done:
        dove = _dive(m, deadline=started + DIVE_SHARE * (deadline - started))
        if dove is not None:
            done = consider(*_relocate(p, *_fill(p, dove[0], dove[1], cand), cand, max_jobs=RELOCATE_JOBS), "lp_dive")
    # LP-and-fix: the MILP over the jobs the LP left fractional, the others held where the LP put
    # them; then the MILP over everything generated. Each may take as long as everything before
    # the first (at least MILP_MIN_S), within the deadline.
    abs_gap = gap * max(abs(cost_bound), 1e-9)
    budget = max(MILP_MIN_S, time.perf_counter() - started)
    whole = m.cols[x > 1 - INTEGRAL_TOL]  # what the LP placed whole
    if not done:
        m.add(best[1])  # the fill pass may have used candidates the LP never generated: the MILP starts there
    if not done and time.perf_counter() < deadline:
        res = _milp(m, (best[1], best[2]), min(budget, deadline - time.perf_counter()), abs_gap,
                    fix=whole)
        if res is not None:
            done = consider(res[0], res[1], "lp_fix", res[2])
    if not done and time.perf_counter() < deadline:
        res = _milp(m, (best[1], best[2]), min(budget, deadline - time.perf_counter()), abs_gap)
        if res is not None:
            consider(res[0], res[1], "optimal" if res[3] else "time_limit", res[2])
            if not res[3]:
                best[3] = "time_limit"
            if res[3] and m.in_model[cand].all():  # every candidate in the MILP: its proof is global
                unplaced_bound = float(p.weights[res[1]].sum())
                cost_bound = float(m.h.getInfo().mip_dual_bound) - big_m * unplaced_bound
    _, chosen, unplaced, status, mip_gap = best
    if not converged:
        status = "time_limit"  # the LP itself was cut short: the bound is Lagrangian, maybe weak
    return _Result(chosen, unplaced, status, cost_bound, unplaced_bound, mip_gap, False, stats)


def solve(p: BatchProblem, *, time_limit_s: float = 30.0, mip_rel_gap: float = 1e-3,
          init_per_job: int = 4, add_per_job: int = 3, colgen_tol: float | None = None) -> BatchSolution:
    """The assignment placing the most priority-weighted jobs and, among those, the cheapest
    (within ``mip_rel_gap`` of the cost bound, else the best found in ``time_limit_s``); see the
    module docstring. Jobs left out have ``choice == -1``."""
    t = time.perf_counter()
    deadline = t + time_limit_s
    colgen_tol = mip_rel_gap / 10 if colgen_tol is None else colgen_tol
    if len(np.unique(p.job)) != p.n_jobs:
        raise ValueError("every job needs at least one candidate")
    w = p.weights
    if len(w) != p.n_jobs or np.any(w < 1) or np.any(w != np.round(w)):
        raise ValueError("job weights must be whole numbers >= 1")
    alive, binding, fixed = reduce(p)
    choice = fixed.copy()
    S, P = p.n_slots, p.capacity.size
    rows = np.flatnonzero(binding.ravel())
    row_id = np.full(P * S, -1)
    row_id[rows] = np.arange(len(rows))
    open_jobs = np.flatnonzero(fixed < 0)
    has_cand = np.bincount(p.job[alive], minlength=p.n_jobs) > 0
    hopeless = open_jobs[~has_cand[open_jobs]]  # no candidate fits even an empty capacity
    open_jobs = open_jobs[has_cand[open_jobs]]
    stats = {"candidates": int(len(p.job)), "jobs": p.n_jobs, "fixed_jobs": int(np.count_nonzero(fixed >= 0)),
             "alive": int(np.count_nonzero(alive)), "capacity_rows": int(len(rows)), "components": 0,
             "variables": 0, "colgen_iterations": 0, "fractional_jobs": 0, "lp_stopped_early": 0}
    cost_bound = float(p.cost[fixed[fixed >= 0]].sum())
    unplaced_bound = float(w[hopeless].sum())
    statuses, mip_gaps, integral = ["trivial"], [], True
    if len(open_jobs):
        cand = np.flatnonzero(alive & (fixed[p.job] < 0))
        seed_all = greedy(p, open_jobs, alive)
        stats["greedy_placed"] = int(np.count_nonzero(seed_all[open_jobs] >= 0))
        comps = _components(p, cand, row_id, len(rows), open_jobs)
        stats["components"] = len(comps)
        comp_of = np.full(p.n_jobs, -1)
        for i, jobs in enumerate(comps):
            comp_of[jobs] = i
        cand_by = np.argsort(comp_of[p.job[cand]], kind="stable")
        bounds = np.searchsorted(comp_of[p.job[cand]][cand_by], np.arange(len(comps) + 1))
        kc, kr = p.row_keys(cand)
        row_comp = np.full(len(rows), -1)
        on = row_id[kr] >= 0
        row_comp[row_id[kr][on]] = comp_of[p.job[kc[on]]]
        for i, jobs in enumerate(comps):
            now = time.perf_counter()
            share = now + (deadline - now) / (len(comps) - i)  # this component's part of the time left
            res = _solve_component(p, jobs, cand[cand_by[bounds[i]:bounds[i + 1]]], rows[row_comp == i], row_id,
                                   seed_all[jobs], share, mip_rel_gap, init_per_job, add_per_job, colgen_tol)
            choice[p.job[res.chosen]] = res.chosen
            cost_bound += res.cost_bound
            unplaced_bound += res.unplaced_bound
            statuses.append(res.status)
            integral &= res.lp_integral
            if not math.isnan(res.mip_gap):
                mip_gaps.append(res.mip_gap)
            for k, v in res.stats.items():
                stats[k] += v
    objective = float(p.cost[choice[choice >= 0]].sum())
    unplaced_weight = float(w[choice < 0].sum())
    proven_max = unplaced_weight <= unplaced_bound + 1e-9
    gap_vs_lp = (max((objective - cost_bound) / abs(objective), 0.0) if objective else 0.0) if proven_max else float("nan")
    stats.update(lp_bound=cost_bound, unplaced_weight=unplaced_weight, unplaced_bound=unplaced_bound)
    status = max(statuses, key=STATUS_ORDER.index)
    return BatchSolution(choice, objective, status, max(mip_gaps) if mip_gaps else float("nan"), gap_vs_lp,
                         integral, time.perf_counter() - t, stats)


def _fits(p: BatchProblem, load: np.ndarray, c) -> bool:
    """Does candidate ``c`` fit the capacity that ``load`` ((P, S) GPUs in use) leaves?"""
    r, h0 = p.resource[c], p.first_hour[c]
    return load[r, h0:h0 + p.n_hours[c]].max() + p.demand[c] <= p.capacity[r] + 1e-9


def _hold(p: BatchProblem, load: np.ndarray, c, sign: float = 1.0) -> None:
    """Add (``sign`` -1: remove) candidate ``c``'s GPUs to ``load`` over its hours."""
    r, h0 = p.resource[c], p.first_hour[c]
    load[r, h0:h0 + p.n_hours[c]] += sign * p.demand[c]


def usage(p: BatchProblem, choice: np.ndarray) -> np.ndarray:
    """(P, n_slots) GPUs in use per resource and hour under ``choice`` (-1 entries ignored)."""
    chosen = choice[choice >= 0]
    c, r = p.row_keys(chosen)
    flat = np.bincount(r, weights=p.demand[c], minlength=p.capacity.size * p.n_slots).astype(float)
    return flat.reshape(p.capacity.size, p.n_slots)


def greedy(p: BatchProblem, order: np.ndarray | None = None, alive: np.ndarray | None = None,
           used: np.ndarray | None = None) -> np.ndarray:
    """Jobs in ``order`` (default: submission order 0..J-1) each take their cheapest candidate
    (among ``alive``, default all) that fits the capacity left (after ``used``, default none);
    -1 where none fits."""
    used = np.zeros((p.capacity.size, p.n_slots)) if used is None else used.copy()
    pool = np.arange(len(p.job)) if alive is None else np.flatnonzero(alive)
    pool = pool[np.lexsort((pool, p.cost[pool], p.job[pool]))]
    bounds = np.searchsorted(p.job[pool], np.arange(p.n_jobs + 1))
    choice = np.full(p.n_jobs, -1)
    for j in (range(p.n_jobs) if order is None else order):
        for c in pool[bounds[j]:bounds[j + 1]]:
            if _fits(p, used, c):
                _hold(p, used, c)
                choice[j] = c
                break
    return choice
