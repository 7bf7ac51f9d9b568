"""Job-level heuristics of the batch assignment (see ``assignment``'s docstring): greedy in
submission order (the comparison rule, and the seed of every component), the fill pass that
places what still fits, and one-step ejection (``relocate``).

They work on single jobs of the original problem (not on job classes): an assignment here is the
list of chosen candidates and the list of unplaced jobs.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from carbonsched.policies.assignment import BatchProblem

RELOCATE_JOBS = 20  # unplaced jobs the ejection pass tries (Python loops: keep it a finishing touch)
RELOCATE_CANDIDATES = 50  # of each, its cheapest candidates


def fits_at(p: BatchProblem, load: np.ndarray, c) -> bool:
    """Does candidate ``c`` fit the capacity that ``load`` ((P, S) GPUs in use) leaves?"""
    r, h0 = p.resource[c], p.first_hour[c]
    return load[r, h0:h0 + p.n_hours[c]].max() + p.demand[c] <= p.capacity[r] + 1e-9


def cells(p: BatchProblem, cols: np.ndarray) -> np.ndarray:
    """(len(cols), longest run) flat (resource * n_slots + hour) cells each candidate holds;
    shorter runs repeat their last hour."""
    n = p.n_hours[cols]
    return (p.resource[cols].astype(np.int64) * p.n_slots + p.first_hour[cols])[:, None] \
        + np.minimum(np.arange(int(n.max(initial=1))), n[:, None] - 1)


def fits_many(p: BatchProblem, load: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``fits_at`` for many candidates at once; ``load`` flat ((P * S,), ``load.ravel()``)."""
    if not len(cols):
        return np.zeros(0, dtype=bool)
    return load[cells(p, cols)].max(axis=1) + p.demand[cols] <= p.capacity[p.resource[cols]] + 1e-9


def hold(p: BatchProblem, load: np.ndarray, c, sign: float = 1.0) -> None:
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
    -1 where none fits. Each job's candidates are checked at once (the cheapest first, alone)."""
    P, S = p.capacity.size, p.n_slots
    load = np.zeros(P * S) if used is None else np.array(used, dtype=float).ravel()  # a copy
    pool = np.arange(len(p.job)) if alive is None else np.flatnonzero(alive)
    j, c = p.job[pool], p.cost[pool]
    if not ((j[1:] > j[:-1]) | ((j[1:] == j[:-1]) & (c[1:] >= c[:-1]))).all():  # batches list them so: skip the sort
        pool = pool[np.lexsort((pool, c, j))]
    bounds = np.searchsorted(p.job[pool], np.arange(p.n_jobs + 1))
    n = p.n_hours[pool]
    base = p.resource[pool].astype(np.int64) * S + p.first_hour[pool]
    room = p.capacity[p.resource[pool]] + 1e-9 - p.demand[pool]  # fits iff the busiest hour has <= room in use
    hours = np.arange(int(n.max()) if len(n) else 1)
    choice = np.full(p.n_jobs, -1)
    for j in (range(p.n_jobs) if order is None else order):
        a, b = bounds[j], bounds[j + 1]
        if a == b:
            continue
        s, e = base[a], base[a] + n[a]
        if load[s:e].max() <= room[a]:
            k = a
        else:
            span = base[a:b, None] + np.minimum(hours, n[a:b, None] - 1)  # short runs repeat their last hour
            ok = load[span].max(axis=1) <= room[a:b]
            k = a + int(ok.argmax())
            if not ok[k - a]:
                continue
            s, e = base[k], base[k] + n[k]
        load[s:e] += p.demand[pool[k]]
        choice[j] = pool[k]
    return choice


def round_up(p: BatchProblem, x: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """Whole units per candidate from LP values ``x`` (units of ``p``'s jobs, ``p.counts`` each):
    every value rounded down, then the fractional ones, largest fractional part first, rounded up
    where one more unit fits the capacity the units so far leave and its job has a unit to spare."""
    whole = np.floor(x + tol)
    frac = np.flatnonzero(x - whole > tol)
    if not len(frac):
        return whole
    S = p.n_slots
    on = np.flatnonzero(whole)
    c, r = p.row_keys(on)
    load = np.bincount(r, weights=p.demand[c] * whole[c], minlength=p.capacity.size * S).astype(float)  # int when empty
    left = p.counts - np.bincount(p.job[on], weights=whole[on], minlength=p.n_jobs)
    frac = frac[np.argsort(whole[frac] - x[frac], kind="stable")]
    room = p.capacity[p.resource[frac]] + tol - p.demand[frac]  # fits iff its busiest hour has <= room in use
    base = p.resource[frac].astype(np.int64) * S + p.first_hour[frac]
    for c, a, b, fits_below in zip(frac.tolist(), base.tolist(), (base + p.n_hours[frac]).tolist(), room.tolist()):
        j = p.job[c]
        if left[j] >= 1 and load[a:b].max() <= fits_below:
            load[a:b] += p.demand[c]
            whole[c] += 1
            left[j] -= 1
    return whole


def fill(p: BatchProblem, chosen: np.ndarray, unplaced: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Place what still fits: greedy over the unplaced jobs (highest weight first), each taking its
    cheapest candidate among ``cand`` that fits the capacity ``chosen`` leaves."""
    if not len(unplaced):
        return chosen, unplaced
    mine = np.zeros(len(p.job), dtype=bool)
    mine[cand[np.isin(p.job[cand], unplaced)]] = True
    order = unplaced[np.argsort(-p.weights[unplaced], kind="stable")]
    got = greedy(p, order, mine, used=usage(p, chosen))[order]
    return np.concatenate([chosen, got[got >= 0]]), np.sort(order[got < 0])


def relocate(p: BatchProblem, chosen: np.ndarray, unplaced: np.ndarray, cand: np.ndarray,
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
        return fits_at(p, load, c)

    def move(c, sign):
        hold(p, load, c, sign)
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
