"""Batch assignment: many jobs, one placement each, under shared hourly GPU capacity.

Data (all arrays, index ``c`` over candidates of all jobs, ``j`` over jobs, ``p`` over
resources = (region, GPU type) pairs, ``h`` over hour slots)::

    job[c]        the job candidate c belongs to (every job has >= 1 candidate)
    cost[c]       objective coefficient (kgCO2e, USD, ... lower is better)
    resource[c]   p;  demand[c] = GPUs it holds;  it holds them during the hour slots
                  first_hour[c] .. first_hour[c] + n_hours[c] - 1 (a partly used hour counts whole)
    capacity[p]   GPUs of type p available in each hour (np.inf = unlimited)

Integer programme (x[c] = 1 iff job[c] runs as candidate c)::

    min  sum_c cost[c] x[c]
    s.t. sum_{c: job[c]=j} x[c] = 1                                   for every job j
         sum_{c: resource[c]=p, h in hours(c)} demand[c] x[c] <= capacity[p]   for binding (p, h)
         x[c] in {0, 1}

Reductions before solving (each keeps an optimal solution of the original problem):

1. A candidate with ``demand > capacity`` can never run: dropped.
2. Row (p, h) *can bind* only if ``sum_j max_{c in j, c uses (p,h)} demand[c] > capacity[p]``
   (each job picks one candidate, so this is the most the row can ever carry). Other rows are
   left out of the model.
3. Dominance: a candidate of job j that uses no binding row is *free*. If ``f_j`` is the cost of
   j's cheapest free candidate, every candidate of j costing ``>= f_j`` (other than that one) is
   dropped: in any feasible assignment j can switch to it without breaking a row (its rows cannot
   overflow) and without raising the cost. A job whose cheapest candidate is free is fixed there
   and leaves the model. 2 and 3 are repeated until nothing changes (dropping candidates makes
   more rows non-binding).

Solve: the LP relaxation (``scipy.optimize.linprog``, HiGHS) first; when its optimum is integral
(often, for assignment-like structure) it is optimal for the integer programme and used as is.
Otherwise ``scipy.optimize.milp`` (HiGHS branch and cut) runs with a time limit and relative gap;
the reported gap is HiGHS's ``(primal - dual bound) / |primal|`` and ``gap_vs_lp`` the same against
the LP bound (never smaller). ``greedy`` is the comparison rule "jobs in submission order, each takes
its cheapest candidate that still fits", and ``min_unplaced`` explains infeasibility with the slack
model ``sum x = 1 - u_j``, minimising ``sum_j u_j``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

INTEGRAL_TOL = 1e-6


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

    @cached_property
    def n_slots(self) -> int:
        return int((self.first_hour + self.n_hours).max()) if len(self.job) else 0

    def row_keys(self, cands: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(candidate, row key ``resource * n_slots + hour``) for every hour each candidate holds."""
        n = self.n_hours[cands]
        c = np.repeat(cands, n)
        within = np.arange(len(c)) - np.repeat(np.cumsum(n) - n, n)
        return c, self.resource[c] * self.n_slots + self.first_hour[c] + within


@dataclass(frozen=True, eq=False)
class BatchSolution:
    choice: np.ndarray  # (n_jobs,) chosen candidate per job (-1: unplaced, only from greedy)
    objective: float
    status: str  # "trivial", "lp_integral", "greedy", "lp_round", "lp_dive", "lp_fix", "optimal" or "time_limit" (best found)
    gap: float  # relative optimality gap reported by the solver (0 when proven optimal)
    gap_vs_lp: float  # (objective - LP bound) / |objective|
    lp_integral: bool
    seconds: float
    stats: dict


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


def _model(p: BatchProblem, cols: np.ndarray, row_id: np.ndarray, jobs: np.ndarray, n_rows: int):
    """Sparse (A_eq, A_ub) over candidate columns ``cols``; ``row_id`` maps a flat (p, h) key to a
    binding row number or -1; ``jobs`` lists the jobs of the equality rows (sorted)."""
    A_eq = sparse.csr_array((np.ones(len(cols)), (np.searchsorted(jobs, p.job[cols]), np.arange(len(cols)))),
                            shape=(len(jobs), len(cols)))
    kc, kr = p.row_keys(cols)
    col_of = np.repeat(np.arange(len(cols)), p.n_hours[cols])
    r = row_id[kr]
    on = r >= 0
    A_ub = sparse.csr_array((p.demand[kc[on]], (r[on], col_of[on])), shape=(n_rows, len(cols)))
    return A_eq, A_ub


def _lp(cost, A_eq, A_ub, b_ub):
    return linprog(cost, A_ub=A_ub if A_ub.shape[0] else None, b_ub=b_ub if A_ub.shape[0] else None,
                   A_eq=A_eq, b_eq=np.ones(A_eq.shape[0]), bounds=(0, None), method="highs-ds",
                   options={"presolve": False})  # presolve costs more than it saves on these LPs


def _milp(cost, A_eq, A_ub, b_ub, time_limit_s, gap):
    A = sparse.vstack([A_eq, A_ub]).tocsr()
    lb = np.concatenate([np.ones(A_eq.shape[0]), np.full(A_ub.shape[0], -np.inf)])
    ub = np.concatenate([np.ones(A_eq.shape[0]), b_ub])
    return milp(cost, constraints=LinearConstraint(A, lb, ub), integrality=np.ones(len(cost)), bounds=Bounds(0, 1),
                options={"time_limit": max(time_limit_s, 0.1), "mip_rel_gap": gap})


def _column_generation(p: BatchProblem, cand: np.ndarray, in_set: np.ndarray, open_jobs: np.ndarray,
                       row_id: np.ndarray, rows: np.ndarray, b_full: np.ndarray, big_m: float,
                       colgen_tol: float, add_per_job: int):
    """The restricted LP over the columns in ``in_set`` (updated in place), grown with the
    candidates whose reduced cost is negative until none is left or the Lagrangian bound is
    within ``colgen_tol`` (see ``solve``). Returns (the last LP result, its columns, the
    Lagrangian bound, iterations)."""
    P, S = p.capacity.size, p.n_slots
    iterations = 0
    while True:
        iterations += 1
        cols = np.flatnonzero(in_set)
        A_eq, A_ub = _model(p, cols, row_id, open_jobs, len(rows))
        art = sparse.eye_array(len(open_jobs), format="csr")
        A_eq_a = sparse.hstack([A_eq, art]).tocsr()
        A_ub_a = sparse.hstack([A_ub, sparse.csr_array((len(rows), len(open_jobs)))]).tocsr()
        lp = _lp(np.concatenate([p.cost[cols], np.full(len(open_jobs), big_m)]), A_eq_a, A_ub_a, b_full)
        if lp.status != 0:
            raise RuntimeError(f"LP relaxation failed: {lp.message}")
        u = np.zeros(p.n_jobs)
        u[open_jobs] = lp.eqlin.marginals
        y = np.zeros(P * S)
        if len(rows):
            y[rows] = lp.ineqlin.marginals
        rc = p.cost[cand] - u[p.job[cand]] - p.demand[cand] * _span_sum(_prefix(y.reshape(P, S)), p, cand)
        neg = (rc < -1e-9 * (1.0 + np.abs(p.cost[cand]))) & ~in_set[cand]
        # Lagrangian bound: every job's convexity row gives z* >= z_RMP + sum_j min(0, min_c rc)
        lowest = np.zeros(p.n_jobs)
        np.minimum.at(lowest, p.job[cand], rc)
        lagrange = float(lp.fun) + float(lowest.sum())
        if not neg.any() or (lp.x[len(cols):].max(initial=0) <= 1e-7
                             and float(lp.fun) - lagrange <= colgen_tol * abs(float(lp.fun))):
            return lp, cols, lagrange, iterations
        pick = prune_top_k(p.job[cand[neg]], rc[neg], add_per_job)
        in_set[cand[neg][pick]] = True


def solve(p: BatchProblem, *, time_limit_s: float = 30.0, mip_rel_gap: float = 1e-3,
          init_per_job: int = 4, add_per_job: int = 10, colgen_tol: float | None = None) -> BatchSolution | None:
    """Optimal (within ``mip_rel_gap`` of the LP bound, else the best found in ``time_limit_s``)
    assignment, or None when the capacity rows make the batch infeasible.

    LP by column generation: start from each job's ``init_per_job`` cheapest candidates and its
    free one, plus an artificial "unplaced" column of cost M per job (so every restricted LP is
    feasible); price all candidates with the duals (reduced cost ``cost - u_j + demand * sum of
    |capacity duals| over its hours``, O(N) with prefix sums) and add up to ``add_per_job``
    negative ones per job until none is left: the restricted optimum is then the LP optimum over
    every candidate. The greedy assignment seeds the columns (a feasible restricted LP from the
    start), and generation stops early once the Lagrangian bound ``z_RMP + sum_j min(0, min_c rc)``
    is within ``colgen_tol`` (default ``mip_rel_gap / 10``) of ``z_RMP``; that bound is then the
    reported LP bound (still a valid lower bound). Integral -> done. Fractional -> fix the jobs the LP placed integrally and
    solve the MILP for the others with the capacity left (LP-and-fix); when that is not within
    ``mip_rel_gap`` of the LP bound (or is infeasible), the MILP over all generated columns.
    """
    t = time.perf_counter()
    colgen_tol = mip_rel_gap / 10 if colgen_tol is None else colgen_tol
    if len(np.unique(p.job)) != p.n_jobs:
        raise ValueError("every job needs at least one candidate")
    alive, binding, fixed = reduce(p)
    choice = fixed.copy()
    S, P = p.n_slots, p.capacity.size
    rows = np.flatnonzero(binding.ravel())
    row_id = np.full(P * S, -1)
    row_id[rows] = np.arange(len(rows))
    b_full = p.capacity[rows // S]
    open_jobs = np.flatnonzero(fixed < 0)
    stats = {"candidates": int(len(p.job)), "jobs": p.n_jobs, "fixed_jobs": int(p.n_jobs - len(open_jobs)),
             "alive": int(np.count_nonzero(alive)), "capacity_rows": int(len(rows))}
    if len(np.unique(p.job[alive])) < len(open_jobs):
        return None  # some job has no candidate that fits at all
    const = float(p.cost[fixed[fixed >= 0]].sum())
    if not len(open_jobs):
        stats.update(variables=0, lp_bound=const)
        return BatchSolution(choice, const, "trivial", 0.0, 0.0, True, time.perf_counter() - t, stats)

    cand = np.flatnonzero(alive)
    by_job = prune_top_k(p.job[cand], p.cost[cand], init_per_job)
    in_set = np.zeros(len(p.job), dtype=bool)
    in_set[cand[by_job]] = True
    seed = greedy(p, open_jobs, alive)[open_jobs]  # a feasible start makes the first duals useful
    in_set[seed[seed >= 0]] = True
    stats["greedy_placed"] = int(np.count_nonzero(seed >= 0))
    big_m = 10.0 * (float(np.abs(p.cost[alive]).max()) + 1.0) * max(len(open_jobs), 1)
    lp, cols, lagrange, iterations = _column_generation(p, cand, in_set, open_jobs, row_id, rows, b_full, big_m,
                                                        colgen_tol, add_per_job)
    x, art_x = lp.x[:len(cols)], lp.x[len(cols):]
    stats.update(variables=int(len(cols)), colgen_iterations=iterations)
    if art_x.max(initial=0) > 1e-7:  # big-M LP still needs an artificial: confirm on the full model
        A_eq, A_ub = _model(p, cand, row_id, open_jobs, len(rows))
        if _lp(p.cost[cand], A_eq, A_ub, b_full).status == 2:
            return None
        raise RuntimeError("column generation stalled with an artificial column in the basis; raise big_m")
    lp_bound = lagrange + const  # == the LP optimum when no column prices out
    stats["lp_bound"] = lp_bound
    integral = bool(np.all(np.minimum(x, np.abs(1 - x)) <= INTEGRAL_TOL))
    if integral:
        chosen, status, mip_gap = cols[x > 0.5], "lp_integral", 0.0
    else:
        chosen, status, mip_gap = _round(p, cand, cols, x, open_jobs, row_id, rows, b_full, const, lp_bound,
                                         t + time_limit_s, mip_rel_gap, stats, seed)
        if chosen is None:
            return None
    choice[p.job[chosen]] = chosen
    obj = float(p.cost[choice].sum())
    gap_vs_lp = max((obj - lp_bound) / abs(obj), 0.0) if obj else 0.0
    return BatchSolution(choice, obj, status, mip_gap, gap_vs_lp, integral, time.perf_counter() - t, stats)


def _repair(p: BatchProblem, cand: np.ndarray, fixed_cols: np.ndarray, jobs: np.ndarray, pref: np.ndarray) -> np.ndarray | None:
    """Place ``jobs`` one by one (fewest alternatives first) into the capacity ``fixed_cols``
    leave, each taking its first fitting candidate by (-LP value ``pref``, cost). None if one cannot."""
    used = usage(p, np.asarray(fixed_cols))
    sub = cand[np.isin(p.job[cand], jobs)]
    order = np.lexsort((p.cost[sub], -pref[sub], p.job[sub]))
    sub = sub[order]
    bounds = np.searchsorted(p.job[sub], jobs)
    ends = np.append(bounds[1:], len(sub))
    out = []
    for j in np.argsort(ends - bounds, kind="stable"):
        for c in sub[bounds[j]:ends[j]]:
            r, h0, h1, d = p.resource[c], p.first_hour[c], p.first_hour[c] + p.n_hours[c], p.demand[c]
            if used[r, h0:h1].max() + d <= p.capacity[r] + 1e-9:
                used[r, h0:h1] += d
                out.append(c)
                break
        else:
            return None
    return np.concatenate([fixed_cols, np.array(out, dtype=np.int64)])


def _load(p: BatchProblem, cols: np.ndarray, row_id: np.ndarray, n_rows: int) -> np.ndarray:
    """GPUs the candidates ``cols`` put on each binding row."""
    kc, kr = p.row_keys(np.asarray(cols, dtype=np.int64))
    r = row_id[kr]
    return np.bincount(r[r >= 0], weights=p.demand[kc[r >= 0]], minlength=n_rows)


def _dive(p, cand, fixed_cols, jobs, row_id, rows, b_full, share: float = 0.25):
    """LP diving: fix the jobs the LP places integrally and the ``share`` of the fractional ones
    with the largest LP value, re-solve the LP of the rest with the capacity left; repeat.
    None when a re-solve turns infeasible."""
    chosen = [np.asarray(fixed_cols, dtype=np.int64)]
    left = b_full - _load(p, chosen[0], row_id, len(rows))
    remaining = np.asarray(jobs)
    while len(remaining):
        sub = cand[np.isin(p.job[cand], remaining)]
        A_eq, A_ub = _model(p, sub, row_id, remaining, len(rows))
        lp = _lp(p.cost[sub], A_eq, A_ub, left)
        if lp.status != 0:
            return None
        x = lp.x
        fix = sub[x > 1 - INTEGRAL_TOL]
        frac = np.setdiff1d(remaining, p.job[fix])
        if len(frac):
            m = np.isin(p.job[sub], frac)
            order = np.lexsort((-x[m], p.job[sub][m]))  # per fractional job, its largest x first
            js = p.job[sub][m][order]
            head = np.ones(len(js), dtype=bool)
            head[1:] = js[1:] != js[:-1]
            tops, vals = sub[m][order][head], x[m][order][head]
            left = left - _load(p, fix, row_id, len(rows))
            extra = []
            for c in tops[np.argsort(-vals, kind="stable")[:max(1, int(share * len(tops)))]]:
                need = _load(p, [c], row_id, len(rows))
                if np.all(need <= left + 1e-9):  # rounding x up must not overflow a row
                    extra.append(c)
                    left = left - need
            if not extra and not len(fix):
                return None
            fix = np.concatenate([fix, np.array(extra, dtype=np.int64)])
        else:
            left = left - _load(p, fix, row_id, len(rows))
        chosen.append(fix)
        remaining = np.setdiff1d(remaining, p.job[fix])
    return np.concatenate(chosen)


def _round(p, cand, cols, x, open_jobs, row_id, rows, b_full, const, lp_bound, deadline, gap, stats, seed=None):
    """Integer assignment from a fractional LP optimum: (chosen candidates, status, solver gap).

    0. the greedy seed, when it placed every job;
    1. repair: keep the jobs the LP placed integrally, place the others by LP value (cheap);
    1b. LP diving (``_dive``);
    2. LP-and-fix: MILP over the fractional jobs only, with the capacity the others leave;
    3. MILP over every generated column (and the fractional jobs' candidates).
    Stops at the first stage within ``gap`` of the LP bound; otherwise returns the best found.
    """
    whole = x > 1 - INTEGRAL_TOL
    frac_jobs = np.setdiff1d(open_jobs, p.job[cols[whole]])
    stats["fractional_jobs"] = int(len(frac_jobs))
    pref = np.zeros(len(p.job))
    pref[cols] = x
    best, best_status, best_gap = None, "", float("nan")

    def consider(trial, status, solver_gap):
        nonlocal best, best_status, best_gap
        if trial is not None and (best is None or p.cost[trial].sum() < p.cost[best].sum() - 1e-12):
            best, best_status, best_gap = trial, status, solver_gap
        return best is not None and p.cost[best].sum() + const - lp_bound <= gap * abs(lp_bound)

    if seed is not None and np.all(seed >= 0):
        consider(seed, "greedy", float("nan"))
    if consider(_repair(p, cand, cols[whole], frac_jobs, pref), "lp_round", float("nan")):
        return best, best_status, best_gap
    if consider(_dive(p, cand, cols[whole], frac_jobs, row_id, rows, b_full), "lp_dive", float("nan")):
        return best, best_status, best_gap
    sub = cand[np.isin(p.job[cand], frac_jobs)]
    left = b_full - _load(p, cols[whole], row_id, len(rows))
    A_eq, A_ub = _model(p, sub, row_id, frac_jobs, len(rows))
    res = _milp(p.cost[sub], A_eq, A_ub, left, (deadline - time.perf_counter()) / 3, gap / 2)
    trial = np.concatenate([cols[whole], sub[res.x > 0.5]]) if res.x is not None else None
    if consider(trial, "lp_fix", float(res.mip_gap or 0.0) if res.x is not None else float("nan")):
        return best, best_status, best_gap
    full_cols = np.union1d(cols, sub)
    A_eq, A_ub = _model(p, full_cols, row_id, open_jobs, len(rows))
    res = _milp(p.cost[full_cols], A_eq, A_ub, b_full, deadline - time.perf_counter(), gap)
    if res.x is None and res.status == 2:
        return None, "infeasible", float("nan")
    if res.x is not None:
        consider(full_cols[res.x > 0.5], "optimal" if res.status == 0 else "time_limit",
                 float(res.mip_gap) if res.mip_gap is not None else float("nan"))
    if best is None:
        raise RuntimeError(f"no integer assignment found within the time limit: {res.message}")
    if best_status != "optimal":
        best_status = "time_limit" if res.status == 1 else best_status
    return best, best_status, best_gap


def usage(p: BatchProblem, choice: np.ndarray) -> np.ndarray:
    """(P, n_slots) GPUs in use per resource and hour under ``choice`` (-1 entries ignored)."""
    chosen = choice[choice >= 0]
    c, r = p.row_keys(chosen)
    flat = np.bincount(r, weights=p.demand[c], minlength=p.capacity.size * p.n_slots).astype(float)
    return flat.reshape(p.capacity.size, p.n_slots)


def greedy(p: BatchProblem, order: np.ndarray | None = None, alive: np.ndarray | None = None) -> np.ndarray:
    """Jobs in ``order`` (default: submission order 0..J-1) each take their cheapest candidate
    (among ``alive``, default all) that fits the capacity left; -1 where none fits."""
    used = np.zeros((p.capacity.size, p.n_slots))
    by_job = prune_top_k(p.job, p.cost, None)
    if alive is not None:
        by_job = by_job[alive[by_job]]
    bounds = np.searchsorted(p.job[by_job], np.arange(p.n_jobs + 1))
    choice = np.full(p.n_jobs, -1)
    for j in (range(p.n_jobs) if order is None else order):
        for c in by_job[bounds[j]:bounds[j + 1]]:
            r, h0, h1, d = p.resource[c], p.first_hour[c], p.first_hour[c] + p.n_hours[c], p.demand[c]
            if used[r, h0:h1].max() + d <= p.capacity[r] + 1e-9:
                used[r, h0:h1] += d
                choice[j] = c
                break
    return choice


def min_unplaced(p: BatchProblem, *, time_limit_s: float = 30.0) -> np.ndarray:
    """Jobs left out by an assignment placing as many jobs as possible (slack model)."""
    alive = p.demand <= p.capacity[p.resource] + 1e-9
    cands = np.flatnonzero(alive)
    P, S = p.capacity.size, p.n_slots
    rows = np.flatnonzero((max_load(p, alive) > p.capacity[:, None] + 1e-9).ravel())
    row_id = np.full(P * S, -1)
    row_id[rows] = np.arange(len(rows))
    J, n = p.n_jobs, len(cands)
    A_eq, A_ub = _model(p, cands, row_id, np.arange(J), len(rows))
    A = sparse.vstack([sparse.hstack([A_eq, sparse.eye_array(J)]),
                       sparse.hstack([A_ub, sparse.csr_array((len(rows), J))])]).tocsr()
    lb = np.concatenate([np.ones(J), np.full(len(rows), -np.inf)])
    ub = np.concatenate([np.ones(J), p.capacity[rows // S]])
    res = milp(np.concatenate([np.zeros(n), np.ones(J)]), constraints=LinearConstraint(A, lb, ub),
               integrality=np.ones(n + J), bounds=Bounds(0, 1), options={"time_limit": time_limit_s})
    if res.x is None:
        return np.arange(J)
    return np.flatnonzero(res.x[n:] > 0.5)
