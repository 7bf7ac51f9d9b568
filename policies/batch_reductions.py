"""Reductions of a batch assignment problem before it is solved (see ``assignment``'s docstring):
identical jobs into classes (0), impossible candidates (1), rows that cannot bind (2), dominated
candidates (3) and the independent components (4). Each keeps an optimal solution of the original.

0. Job classes: jobs with the same weight and the same candidates (resource, hours, GPUs, cost:
   as a multiset) are interchangeable. ``job_classes`` turns them into one row with an integer
   demand (``BatchProblem.count``): ``sum_c x[c] + u = count``, ``x, u`` whole numbers >= 0. The
   LP relaxation is the same (any fractional job solution averages over a class into a class
   solution and back), so bounds proved on classes hold for the jobs; an integer class solution is
   a job assignment (``to_jobs``: the class's members in submission order take its units,
   earliest start first).

Only numpy: importing scipy.sparse (~0.35 s) would be most of a small batch's start-up.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from carbonsched.policies.assignment import BatchProblem


def prune_top_k(job: np.ndarray, cost: np.ndarray, k: int | None) -> np.ndarray:
    """Indices of each job's ``k`` cheapest candidates (ties by index), in (job, cost) order."""
    order = np.lexsort((np.arange(len(job)), cost, job))
    if k is None:
        return order
    j = job[order]
    first = np.searchsorted(j, j, side="left")  # position of the job's first candidate in order
    return order[(np.arange(len(order)) - first) < k]


def prune_spread(job: np.ndarray, group: np.ndarray, cost: np.ndarray, k: int) -> np.ndarray:
    """Indices of each job's ``k`` cheapest candidates taking at most one per ``group`` (the
    cheapest of each; ties by index), in (job, cost) order."""
    best = np.sort(prune_top_k(job.astype(np.int64) * (int(group.max(initial=0)) + 1) + group, cost, 1))
    return best[prune_top_k(job[best], cost[best], k)]  # ties, as in prune_top_k: the earlier index first


def prefix(a: np.ndarray) -> np.ndarray:
    """(P, S+1) prefix sums along hours of a (P, S) array."""
    return np.concatenate([np.zeros((a.shape[0], 1)), np.cumsum(a, axis=1)], axis=1)


def span_sum(cum: np.ndarray, p: BatchProblem, cands: np.ndarray) -> np.ndarray:
    """Sum of a (P, S) array over each candidate's hours, via its prefix sums ``cum``."""
    r, h = p.resource[cands], p.first_hour[cands]
    return cum[r, h + p.n_hours[cands]] - cum[r, h]


def max_load(p: BatchProblem, alive: np.ndarray, order: np.ndarray | None = None) -> np.ndarray:
    """(P, S) upper bound on the GPUs any assignment can put on each row (reduction 2).

    Per (job, resource) group: the union of its candidates' hour intervals, weighted by the
    group's largest demand (>= the per-(job, row) maximum) times the job's count. Sorting plus a
    running maximum merges intervals without expanding hours: O(N log N + P S). ``order`` (all
    candidates sorted by group, then first hour) may be passed to skip the sort.
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
    gmax = np.maximum.reduceat(p.demand[c], starts) * p.counts[p.job[c[starts]]]
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
        touches = span_sum(prefix(binding.astype(float)), p, idx) > 0
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


def _labels(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Connected-component label (its smallest node) of each of ``n`` nodes joined by the edges
    ``(a, b)``: hooking and pointer jumping, O(E log n)."""
    parent = np.arange(n)
    while True:
        pa, pb = parent[a], parent[b]
        differ = pa != pb
        if not differ.any():
            return parent
        lo, hi = np.minimum(pa[differ], pb[differ]), np.maximum(pa[differ], pb[differ])
        np.minimum.at(parent, hi, lo)
        while True:
            up = parent[parent]
            if (up == parent).all():
                break
            parent = up


def components(p: BatchProblem, cand: np.ndarray, row_id: np.ndarray, n_rows: int,
               jobs: np.ndarray) -> list[np.ndarray]:
    """``jobs`` grouped into independent problems: connected through the binding rows their
    candidates ``cand`` use (reduction 4)."""
    kc, kr = p.row_keys(cand)
    r = row_id[kr]
    on = r >= 0
    label = _labels(p.job[kc[on]], p.n_jobs + r[on], p.n_jobs + n_rows)
    lab = label[jobs]
    order = np.argsort(lab, kind="stable")
    cuts = np.flatnonzero(np.diff(lab[order])) + 1
    return np.split(jobs[order], cuts)


@dataclass(frozen=True, eq=False)
class JobClasses:
    """Identical jobs of ``p`` as one row each of ``q`` (reduction 0). ``q``'s candidates are
    those of each class's first job (``q`` candidate i is ``p`` candidate ``rep_cand[i]``)."""

    q: BatchProblem
    of_job: np.ndarray  # (n_jobs,) class of each job
    to_q: np.ndarray  # (N,) the equivalent q candidate of every p candidate
    seg_start: np.ndarray  # (n_jobs,) where each job's candidates start in ``order``
    order: np.ndarray  # p's candidates by (job, resource, hours, GPUs, cost)
    pos: np.ndarray  # (Nq,) position of each q candidate within its job's segment of ``order``
    members: np.ndarray  # jobs by (class, submission order)
    member_start: np.ndarray  # (n_classes + 1,) each class's slice of ``members``

    def to_q_counts(self, chosen: np.ndarray) -> np.ndarray:
        """Units per q candidate of a job assignment (``chosen``: p candidates)."""
        return np.bincount(self.to_q[chosen], minlength=len(self.q.job)).astype(float)

    def members_of(self, classes: np.ndarray) -> np.ndarray:
        """The jobs of ``classes``, sorted."""
        if not len(classes):
            return np.zeros(0, dtype=np.int64)
        a, b = self.member_start[classes], self.member_start[classes + 1]
        n = b - a
        return np.sort(self.members[np.repeat(a, n) + np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)])

    def to_jobs(self, x: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(chosen p candidates, unplaced jobs) of whole units ``x`` per q candidate (zero outside
        ``classes``): a class's members in submission order take its units, earliest start first
        (first come, first run); members past the units are unplaced."""
        q = self.q
        xi = np.rint(x).astype(np.int64)
        qc = np.flatnonzero(xi > 0)
        qc = qc[np.lexsort((qc, q.cost[qc], q.first_hour[qc], q.job[qc]))]
        units = np.repeat(qc, xi[qc])
        cls = q.job[units]
        first_unit = np.searchsorted(cls, cls)  # each class's first unit
        member = self.members[self.member_start[cls] + np.arange(len(units)) - first_unit]
        chosen = self.order[self.seg_start[member] + self.pos[units]]
        return np.sort(chosen), np.setdiff1d(self.members_of(classes), member)


_MIX = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93,
                 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53], dtype=np.uint64)


def _mix(h: np.ndarray) -> np.ndarray:
    """A 64-bit finaliser (splitmix64's): nearby inputs, far apart outputs."""
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def _fingerprint(cols: list[np.ndarray]) -> np.ndarray:
    """A 64-bit hash of each candidate's row (its fields as uint64 columns)."""
    h = np.zeros(len(cols[0]), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k, col in enumerate(cols):
            h = _mix(h ^ (col * _MIX[k]))
    return h


def job_classes(p: BatchProblem) -> JobClasses:
    """Reduction 0: identical jobs of ``p`` (weight and candidate multiset) as one class each.

    Each job's candidates are ordered by a hash of their row and the jobs grouped by the sum of
    those hashes (numpy throughout); every job is then compared whole, row by row, with its
    group's first job, and a group that a collision (or a tie in the order) formed is split
    exactly (canonical row bytes as dict keys). ``p.same_as`` (jobs listed together, a job
    naming one with the same candidate arrays in the same order) replaces the hashing; the
    row-by-row comparison still decides."""
    n_jobs, w = p.n_jobs, p.weights
    fields = [np.asarray(p.resource, dtype=np.int64), np.asarray(p.first_hour, dtype=np.int64),
              np.asarray(p.n_hours, dtype=np.int64), np.asarray(p.demand, dtype=float), np.asarray(p.cost, dtype=float)]
    cols = [f.view(np.uint64) for f in fields]
    if p.same_as is not None and np.all(p.job[1:] >= p.job[:-1]):  # the caller's word, checked below
        order = np.arange(len(p.job))
        seg_start = np.searchsorted(p.job, np.arange(n_jobs))
        f = np.asarray(p.same_as).astype(np.uint64)
    else:
        h = _fingerprint(cols)
        bits = max(1, int(n_jobs).bit_length())  # one uint64 key: the job, then the hash's top bits
        order = np.argsort((p.job.astype(np.uint64) << np.uint64(64 - bits)) | (h >> np.uint64(bits)), kind="stable")
        seg_start = np.searchsorted(p.job[order], np.arange(n_jobs))
        with np.errstate(over="ignore"):
            f = np.add.reduceat(_mix(h[order]), seg_start)
    lens = np.diff(np.append(seg_start, len(order)))
    key = np.empty(n_jobs, dtype=[("n", "i8"), ("w", "f8"), ("f", "u8")])
    key["n"], key["w"], key["f"] = lens, w, f
    _, first, group = np.unique(key, return_index=True, return_inverse=True)
    group = group.ravel()
    within = np.arange(len(order)) - np.repeat(seg_start, lens)
    other = order[np.repeat(seg_start[first[group]], lens) + within]  # the aligned row of the group's first job
    differs = np.zeros(len(order), dtype=bool)
    for col in cols:
        differs |= col[order] != col[other]
    if differs.any():  # a collision: exact keys for the jobs of the groups it touched
        bad = np.unique(p.job[order[differs]])
        seen: dict = {}
        for j in np.flatnonzero(np.isin(group, group[bad])):
            a, b = seg_start[j], seg_start[j] + lens[j]
            order[a:b] = seg = order[a:b][np.lexsort([c[order[a:b]] for c in cols][::-1])]  # canonical order
            rows = np.stack([c[seg] for c in cols], axis=1)
            group[j] = seen.setdefault((float(w[j]), rows.tobytes()), len(first) + len(seen))
    # classes numbered by their first job, in submission order
    _, cls = np.unique(group, return_inverse=True)
    cls = cls.ravel()
    n_cls = int(cls.max()) + 1 if n_jobs else 0
    rep = np.full(n_cls, n_jobs)
    np.minimum.at(rep, cls, np.arange(n_jobs))  # each class's first job
    rank = np.empty(n_cls, dtype=np.int64)
    rank[np.argsort(rep)] = np.arange(n_cls)
    of_job, rep = rank[cls], np.sort(rep)
    members = np.lexsort((np.arange(n_jobs), of_job))
    member_start = np.searchsorted(of_job[members], np.arange(n_cls + 1))
    # q's candidates: the representatives' segments of `order`, class by class
    q_lens = lens[rep]
    q_start = np.concatenate([[0], np.cumsum(q_lens)])
    q_job = np.repeat(np.arange(n_cls), q_lens)
    pos = np.arange(q_start[-1]) - np.repeat(q_start[:-1], q_lens)
    rep_cand = order[np.repeat(seg_start[rep], q_lens) + pos]
    by_index = np.lexsort((rep_cand, q_job))  # within a class, p's order (no aggregation: q is p)
    rep_cand, pos = rep_cand[by_index], pos[by_index]
    at_pos = np.empty(len(pos), dtype=np.int64)
    at_pos[q_start[q_job] + pos] = np.arange(len(pos))
    to_q = np.empty(len(p.job), dtype=np.int64)
    to_q[order] = at_pos[q_start[of_job[p.job[order]]] + within]
    q = replace(p, job=q_job, cost=p.cost[rep_cand], resource=p.resource[rep_cand],
                first_hour=p.first_hour[rep_cand], n_hours=p.n_hours[rep_cand], demand=p.demand[rep_cand],
                n_jobs=n_cls, weight=w[rep], count=np.diff(member_start).astype(float), same_as=None)
    return JobClasses(q, of_job, to_q, seg_start, order, pos, members, member_start)
