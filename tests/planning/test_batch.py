"""Batch placement: the MILP/LP policy against brute force, and plan_batch end to end."""
from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from carbonsched.planning.batch import capacity_lookup, plan_batch
from carbonsched.errors import InfeasibleError, JobSpecError, UserInputError
from carbonsched.spec.job import job_from_dict
from hypothesis import given, settings as hsettings, strategies as st

from carbonsched.policies.assignment import BatchProblem, greedy, prune_top_k, solve, usage
from carbonsched.policies.batch_reductions import job_classes, prune_spread
from carbonsched.settings import Settings

NOW = datetime(2026, 11, 27, 10, 30, tzinfo=timezone.utc)
SETTINGS = Settings()


def random_problem(rng, n_jobs, per_job, n_res=2, slots=6, weights=False, copies=1):
    """``n_jobs`` random jobs; with ``copies`` > 1 each is repeated 1..copies times (identical
    candidates and weight, in shuffled submission order): the solver's job classes."""
    job = np.repeat(np.arange(n_jobs), per_job)
    n = len(job)
    p = BatchProblem(job=job, cost=rng.integers(1, 20, n).astype(float), resource=rng.integers(0, n_res, n),
                     first_hour=rng.integers(0, slots - 1, n), n_hours=rng.integers(1, 3, n),
                     demand=rng.choice([1.0, 2.0, 4.0], n), capacity=rng.choice([2.0, 4.0, 8.0], n_res), n_jobs=n_jobs,
                     weight=rng.integers(1, 4, n_jobs).astype(float) if weights else None)
    if copies == 1:
        return p
    of = np.repeat(np.arange(n_jobs), rng.integers(1, copies + 1, n_jobs))  # original job of each copy
    new_id = rng.permutation(len(of))
    take = np.concatenate([np.flatnonzero(job == j) for j in of])
    return BatchProblem(job=np.repeat(new_id, per_job), cost=p.cost[take], resource=p.resource[take],
                        first_hour=p.first_hour[take], n_hours=p.n_hours[take], demand=p.demand[take],
                        capacity=p.capacity, n_jobs=len(of), weight=None if p.weight is None else p.weight[of][np.argsort(new_id)])


def brute_force(p):
    """(least unplaced weight, least cost at that weight, most jobs placeable) over every
    assignment (each job: one of its candidates or none)."""
    by_job = [list(np.flatnonzero(p.job == j)) + [-1] for j in range(p.n_jobs)]
    best, most = None, 0
    for combo in itertools.product(*by_job):
        ch = np.array(combo)
        if (usage(p, ch) <= p.capacity[:, None] + 1e-9).all():
            most = max(most, int((ch >= 0).sum()))
            key = (float(p.weights[ch < 0].sum()), float(p.cost[ch[ch >= 0]].sum()))
            if best is None or key < best:
                best = key
    return best[0], best[1], most


@pytest.mark.parametrize("seed", range(6))
def test_solver_matches_brute_force_and_respects_capacity(seed):
    rng = np.random.default_rng(seed)
    for _ in range(40):
        p = random_problem(rng, int(rng.integers(1, 6)), int(rng.integers(1, 4)), weights=seed % 2 == 1)
        unplaced_w, cost, most = brute_force(p)
        sol = solve(p, mip_rel_gap=0.0)
        assert (usage(p, sol.choice) <= p.capacity[:, None] + 1e-9).all()
        assert (p.job[sol.choice[sol.choice >= 0]] == np.flatnonzero(sol.choice >= 0)).all()
        # the most priority-weighted jobs, then the cheapest; the bound never claims more than is true
        assert float(p.weights[sol.unplaced].sum()) == unplaced_w >= sol.stats["unplaced_bound"]
        assert sol.objective == pytest.approx(cost)
        assert sol.gap_vs_lp >= 0 and sol.stats["lp_bound"] <= cost + 1e-9
        if seed % 2 == 0:
            assert len(sol.unplaced) == p.n_jobs - most
        g = greedy(p)
        assert (usage(p, g) <= p.capacity[:, None] + 1e-9).all()
        if (g >= 0).all():
            assert p.cost[g].sum() >= cost - 1e-9


@pytest.mark.parametrize("seed", range(4))
def test_identical_jobs_solved_as_classes_match_brute_force(seed):
    """Repeated jobs become one class with an integer demand; the optimum over the jobs is kept."""
    rng = np.random.default_rng(100 + seed)
    for _ in range(25):
        p = random_problem(rng, int(rng.integers(1, 4)), int(rng.integers(1, 4)), weights=seed % 2 == 1, copies=3)
        if p.n_jobs > 7:
            continue
        unplaced_w, cost, _ = brute_force(p)
        sol = solve(p, mip_rel_gap=0.0)
        assert sol.stats["job_classes"] <= p.n_jobs
        assert (usage(p, sol.choice) <= p.capacity[:, None] + 1e-9).all()
        assert (p.job[sol.choice[sol.choice >= 0]] == np.flatnonzero(sol.choice >= 0)).all()
        assert float(p.weights[sol.unplaced].sum()) == unplaced_w >= sol.stats["unplaced_bound"]
        assert sol.objective == pytest.approx(cost)
        assert sol.stats["lp_bound"] <= cost + 1e-9


def test_job_classes_group_identical_jobs_and_hand_units_out_first_come_first_run():
    # jobs 0, 2, 3 are the same (candidates listed in another order for job 3); job 1 differs in
    # weight only, job 4 in one cost
    c = dict(cost=[5.0, 7.0], resource=[0, 0], first_hour=[0, 3], n_hours=[2, 2], demand=[1.0, 1.0])
    rows = [(0, False), (1, False), (2, False), (3, True), (4, False)]
    cols = {k: [] for k in ("job", "cost", "resource", "first_hour", "n_hours", "demand")}
    for j, flip in rows:
        for i in ((1, 0) if flip else (0, 1)):
            cols["job"].append(j)
            for k in c:
                cols[k].append(c[k][i] + (1.0 if (j == 4 and k == "cost" and i == 1) else 0.0))
    p = BatchProblem(**{k: np.array(v) for k, v in cols.items()}, capacity=np.array([2.0]), n_jobs=5,
                     weight=np.array([1.0, 2.0, 1.0, 1.0, 1.0]))
    cl = job_classes(p)
    assert cl.q.n_jobs == 3 and list(cl.q.counts) == [3.0, 1.0, 1.0]
    assert cl.of_job[0] == cl.of_job[2] == cl.of_job[3] != cl.of_job[1] != cl.of_job[4]
    k = cl.of_job[0]
    late, early = [i for i in np.flatnonzero(cl.q.job == k) if cl.q.first_hour[i] == 3], \
        [i for i in np.flatnonzero(cl.q.job == k) if cl.q.first_hour[i] == 0]
    units = np.zeros(len(cl.q.job))
    units[late], units[early] = 1, 1  # two of the three jobs placed: the first two submitted, earliest first
    chosen, unplaced = cl.to_jobs(units, np.array([k]))
    assert list(unplaced) == [3]
    by_job = {int(p.job[c]): int(c) for c in chosen}
    assert sorted(by_job) == [0, 2] and p.first_hour[by_job[0]] == 0 and p.first_hour[by_job[2]] == 3
    assert np.array_equal(cl.to_q_counts(chosen), units)
    assert np.array_equal(cl.members_of(np.array([k])), [0, 2, 3])


@hsettings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_jobs=st.integers(1, 30), per_job=st.integers(1, 6),
       n_res=st.integers(1, 3), slots=st.integers(2, 10), weights=st.booleans(), copies=st.sampled_from([1, 1, 4]))
def test_place_what_fits_never_worse_than_greedy(seed, n_jobs, per_job, n_res, slots, weights, copies):
    """Against greedy on the same input: never less placed weight, and at equal placed weight never
    more cost (the lexicographic objective greedy's assignment is one candidate of)."""
    p = random_problem(np.random.default_rng(seed), n_jobs, per_job, n_res, slots, weights, copies)
    g = greedy(p)
    for sol in (solve(p), solve(p, seed=g)):  # greedy over the reduced candidates, or the caller's (plan_batch's)
        assert (usage(p, sol.choice) <= p.capacity[:, None] + 1e-9).all()
        ours, theirs = float(p.weights[sol.choice < 0].sum()), float(p.weights[g < 0].sum())
        assert ours <= theirs
        if ours == theirs:
            assert sol.objective <= p.cost[g[g >= 0]].sum() + 1e-9
        assert sol.stats["unplaced_bound"] <= ours + 1e-9


@hsettings(max_examples=200, deadline=None)
@given(vals=st.lists(st.sampled_from([0.0, 1.0, 1.5, 2.0, -3.0, np.inf, np.nan]) | st.floats(-5, 5), max_size=40),
       k=st.integers(1, 45))
def test_smallest_k_is_the_stable_argsorts_first_k(vals, k):
    from carbonsched.planning.batch import _smallest

    v = np.array(vals, dtype=float)
    assert list(_smallest(v, k)) == list(np.argsort(v, kind="stable")[:k])
    assert len(_smallest(v, 0)) == 0


def test_a_seed_using_a_candidate_the_reductions_dropped_keeps_the_result_within_capacity():
    # (found by review) greedy over all candidates puts job 1 on candidate 2 (cost 1, on resource
    # 2), which ties its free candidate 3 and is dropped by dominance; seeded with it, the master
    # got a column on a resource it has no row for, and job 2 took candidate 4 there too.
    job, resource = np.array([0, 1, 1, 1, 2, 2]), np.array([0, 0, 2, 1, 2, 3])
    p = BatchProblem(job=job, cost=np.array([0.0, 0.5, 1.0, 1.0, 0.0, 10.0]), resource=resource,
                     first_hour=np.zeros(6, dtype=int), n_hours=np.ones(6, dtype=int), demand=np.ones(6),
                     capacity=np.ones(4), n_jobs=3)
    g = greedy(p)
    assert list(g) == [0, 2, 5]
    for seed in (None, g):
        sol = solve(p, seed=seed, mip_rel_gap=0.0)
        assert (usage(p, sol.choice) <= p.capacity[:, None] + 1e-9).all()
        assert list(sol.choice) == [0, 3, 4]  # job 1 on its free candidate, job 2 alone on resource 2


def test_a_seed_that_is_no_assignment_within_capacity_is_refused():
    p = random_problem(np.random.default_rng(0), 6, 3)
    g = greedy(p)
    other = g.copy()
    other[0] = int(np.flatnonzero(p.job == 1)[0])  # job 0 given job 1's candidate
    over = np.array([int(np.flatnonzero(p.job == j)[0]) for j in range(p.n_jobs)])
    over_cap = not (usage(p, over) <= p.capacity[:, None] + 1e-9).all()
    minus = g.copy()
    minus[0] = -5
    for bad in [g[:-1], other, np.full(p.n_jobs, len(p.job)), minus, g.astype(float)] + ([over] if over_cap else []):
        with pytest.raises(ValueError, match="seed must give each job"):
            solve(p, seed=bad)
    assert over_cap  # the case exists in this problem: the first candidate of every job overloads


@hsettings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_jobs=st.integers(1, 20), per_job=st.integers(1, 5), copies=st.sampled_from([1, 3]))
def test_round_up_keeps_the_whole_units_and_capacity(seed, n_jobs, per_job, copies):
    """Rounding a fractional LP point: never below its floor, never more units than a class has,
    never over capacity when the floor fits, and a whole point is left as it is."""
    from carbonsched.policies.batch_heuristics import round_up

    rng = np.random.default_rng(seed)
    q = job_classes(random_problem(rng, n_jobs, per_job, copies=copies)).q
    x = np.zeros(len(q.job))
    for j in range(q.n_jobs):  # a random split of some of each class's units over its candidates
        mine = np.flatnonzero(q.job == j)
        x[mine] = rng.dirichlet(np.ones(len(mine))) * q.counts[j] * rng.uniform(0.3, 1.0)
    floor = np.floor(x + 1e-6)
    whole = round_up(q, x)
    assert (whole >= floor).all() and (whole <= np.ceil(x - 1e-6)).all() and (whole == np.rint(whole)).all()
    assert (np.bincount(q.job, weights=whole, minlength=q.n_jobs) <= q.counts + 1e-9).all()
    def load(units):  # (P, S) GPUs in use
        return usage(q, np.repeat(np.arange(len(q.job)), units.astype(int)))

    # what it adds to the floor fits the capacity the floor leaves (the floor itself may not fit)
    assert (load(whole) <= np.maximum(q.capacity[:, None], load(floor)) + 1e-9).all()
    assert ((load(whole) <= q.capacity[:, None] + 1e-9) | (load(whole) == load(floor))).all()
    assert np.array_equal(round_up(q, whole), whole)
    # and it stops only when no fractional column could take one more unit
    left = q.counts - np.bincount(q.job, weights=whole, minlength=q.n_jobs)
    used = load(whole)
    for c in np.flatnonzero(x > whole + 1e-6):
        h = slice(q.first_hour[c], q.first_hour[c] + q.n_hours[c])
        assert left[q.job[c]] < 1 or used[q.resource[c], h].max() + q.demand[c] > q.capacity[q.resource[c]] + 1e-9


def test_greedy_in_submission_order_versus_optimum():
    # two jobs, one slot of capacity 1 on resource 0; job 0 has an alternative, job 1 has not
    p = BatchProblem(job=np.array([0, 0, 1, 1]), cost=np.array([1.0, 2.0, 1.0, 10.0]), resource=np.array([0, 1, 0, 1]),
                     first_hour=np.zeros(4, dtype=int), n_hours=np.ones(4, dtype=int), demand=np.ones(4),
                     capacity=np.array([1.0, 1.0]), n_jobs=2)
    assert list(greedy(p)) == [0, 3]  # job 0 grabs resource 0, job 1 pays 10
    sol = solve(p)
    assert list(sol.choice) == [1, 2] and sol.objective == 3.0 and sol.gap_vs_lp == pytest.approx(0.0)


def test_unlimited_capacity_is_each_jobs_best_and_prune_keeps_cheapest():
    rng = np.random.default_rng(7)
    p = random_problem(rng, 5, 4)
    p = BatchProblem(p.job, p.cost, p.resource, p.first_hour, p.n_hours, p.demand, np.full(2, np.inf), p.n_jobs)
    sol = solve(p)
    assert sol.status == "trivial" and sol.stats["fixed_jobs"] == 5
    assert sol.objective == pytest.approx(sum(p.cost[p.job == j].min() for j in range(5)))
    keep = prune_top_k(p.job, p.cost, 2)
    assert all(sorted(p.cost[keep][p.job[keep] == j]) == sorted(p.cost[p.job == j])[:2] for j in range(5))


@hsettings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 60), k=st.integers(1, 4))
def test_prune_spread_takes_each_jobs_k_cheapest_of_the_cheapest_per_group(seed, n, k):
    rng = np.random.default_rng(seed)
    job, group = np.sort(rng.integers(0, 5, n)), rng.integers(0, 4, n)
    cost = rng.integers(0, 6, n).astype(float)  # ties: the earlier index first
    got = prune_spread(job, group, cost, k)
    want = []
    for j in np.unique(job):
        best = {}
        for i in np.flatnonzero(job == j):
            g = int(group[i])
            if g not in best or cost[i] < cost[best[g]]:
                best[g] = i
        want += sorted(best.values(), key=lambda i: (cost[i], i))[:k]
    assert list(got) == want


def test_milps_run_only_past_twice_the_target_gap(monkeypatch):
    # seed 0: the heuristics end 3.0 % above the bound with every job placed that can be; with a 2 %
    # target that is within MILP_ABOVE (2x): no MILP. With MILP_ABOVE 1 the MILPs run.
    import carbonsched.policies.assignment as A

    calls = []
    real = A._milp
    monkeypatch.setattr(A, "_milp", lambda *a, **k: calls.append(1) or real(*a, **k))
    p = random_problem(np.random.default_rng(0), 25, 5, n_res=2, slots=8)
    sol = solve(p, mip_rel_gap=0.02)
    assert sol.stats["unplaced_weight"] == sol.stats["unplaced_bound"]
    assert 0.02 < sol.gap_vs_lp <= A.MILP_ABOVE * 0.02 and not calls
    monkeypatch.setattr(A, "MILP_ABOVE", 1.0)
    assert solve(p, mip_rel_gap=0.02).gap_vs_lp <= sol.gap_vs_lp and calls
    # over many problems: never more than MILP_ABOVE x the target without the MILPs tried
    monkeypatch.setattr(A, "MILP_ABOVE", 2.0)
    for seed in range(1, 40):
        calls.clear()
        sol = solve(random_problem(np.random.default_rng(seed), 25, 5, n_res=2, slots=8), mip_rel_gap=0.02)
        if not calls and not np.isnan(sol.gap_vs_lp):
            assert sol.gap_vs_lp <= 2 * 0.02 + 1e-9


def test_a_fraction_the_weighted_lp_leaves_out_proves_nothing():
    """Three jobs that all fit: j0 holds the resource hours 0-5, so j1 (priority 2) must wait until
    hour 6 (cost 7 instead of 1); j2 (priority 2) runs on the other resource. The LP with the
    unplaced weight at big_m leaves a fraction of j0 out to save cost; rounding that fraction up
    used to "prove" one job unplaced, so plan --batch left j0 out (found by fuzzing, --objective time)."""
    p = BatchProblem(job=np.array([0, 1, 1, 1, 1, 1, 1, 1, 2, 2]), cost=np.array([5.5, 1, 2, 3, 4, 5, 6, 7, 0.5, 0.5]),
                     resource=np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 0]), first_hour=np.array([0, 0, 1, 2, 3, 4, 5, 6, 0, 0]),
                     n_hours=np.array([6, 1, 1, 1, 1, 1, 1, 1, 1, 1]), demand=np.full(10, 8.0), capacity=np.array([8.0, 8.0]),
                     n_jobs=3, weight=np.array([1.0, 2.0, 2.0]))
    for sol in (solve(p), solve(p, seed=greedy(p))):
        assert (sol.choice >= 0).all() and sol.stats["unplaced_bound"] == 0
        assert list(sol.choice) == [0, 7, 8] and sol.objective == 13.0


def test_plan_batch_never_places_less_than_greedy_after_the_repair():
    """--top-k 3 hides candidates from the solver that the deferral rules' repair adds back; greedy's
    repair found room in them for 28 priority-weight where the plan's found 23 (found by fuzzing).
    The plan is then greedy's, and says why."""
    from carbonsched.spec.batch_file import batch_from_dict

    cap = {"default": 16, "aws:ca-central-1": {"H100": 8, "A100": 8, "L4": 1},
           "aws:us-east-1": {"H100": 8, "A100": 4, "L4": 2}, "aws:us-west-2": {"H100": 0, "A100": 8, "L4": 1}}

    def job(name, gpu, hours, priority, regions, window=None, **extra):
        return {"name": name, "gpu": gpu, "gpus": 1 if gpu == "L4" else 8, "hours": hours, "priority": priority,
                "window": window or {}, "constraints": {"regions": regions, "gpu_types": [gpu]}, **extra}

    east_ca = ["aws:us-east-1", "aws:ca-central-1"]
    raw = {"capacity": cap, "job": [
        job("j0", "H100", 0.5, 1, east_ca, {"max_delay": "0h"}),
        job("j1", "L4", 0.5, 2, east_ca, {"max_delay": "6h"}),
        job("j2", "H100", 3, 2, ["aws:us-east-1"], {"earliest_start": "2026-11-27T12:30:00Z"}),
        job("j3", "A100", 0.5, 1, ["aws:us-east-1"], {"max_delay": "3h", "earliest_start": "2026-11-27T11:00:00Z"}),
        job("j4", "A100", 1, 1, ["aws:eu-west-1", "aws:us-west-2"], {"max_delay": "1h", "earliest_start": "2026-11-27T11:00:00Z"}),
        job("j5", "L4", 5.5, 5, ["aws:eu-north-1"], {"max_delay": "1h"}, policy={"deferral": "expected"}),
        job("j6", "L4", 5.5, 5, ["aws:ca-central-1"], {"earliest_start": "2026-11-27T11:30:00Z"}),
        job("j7", "L4", 1, 5, east_ca, {"max_delay": "1h", "earliest_start": "2026-11-27T11:30:00Z"}),
        job("j8", "A100", 1, 2, ["gcp:europe-west4", "aws:eu-west-1"]),
        job("j9", "A100", 1, 5, ["aws:eu-west-1"], {"max_delay": "1h"})]}
    jobs, capacity, default = batch_from_dict(raw)
    now = datetime(2026, 11, 27, 10, tzinfo=timezone.utc)
    bp = plan_batch(jobs, now=now, settings=SETTINGS, capacity=capacity, default_capacity=default, top_k=3)
    weight = {j.name: j.priority for j in jobs}

    def placed(ps):
        return sum(weight[n] for n, x in zip(bp.names, ps) if x is not None)

    assert placed(bp.placements) >= placed(bp.greedy) == 28
    assert bp.solver["greedy_adopted"] and bp.solver["status"] == "greedy"
    assert any("--top-k 3" in w for w in bp.warnings)
    assert bp.solver["placement_proven_maximal"] is False and bp.solver["gap"] is None
    full = plan_batch(jobs, now=now, settings=SETTINGS, capacity=capacity, default_capacity=default)
    assert placed(full.placements) >= 28 and "greedy_adopted" not in full.solver  # the default top-k sees them


def test_a_search_the_time_limit_stops_short_of_the_target_says_so(monkeypatch):
    """The heuristics end above the target and the time is up before the MILPs: status time_limit
    (plan --batch then warns), not the heuristic's name (it said lp_fix at --time-limit 2)."""
    import time as _time

    import carbonsched.policies.assignment as A

    p = random_problem(np.random.default_rng(0), 25, 5, n_res=2, slots=8)  # ends 3 % above the bound
    assert solve(p, mip_rel_gap=0.001).status != "time_limit"
    monkeypatch.setattr(A, "_dive", lambda *a, **k: _time.sleep(1.0))  # a dive that uses up the time
    sol = solve(p, mip_rel_gap=0.001, time_limit_s=0.8)
    assert sol.status == "time_limit" and (usage(p, sol.choice) <= p.capacity[:, None] + 1e-9).all()


def test_capacity_lookup_shapes():
    assert capacity_lookup(None)("aws:us-east-1", "H100") == float("inf")
    assert capacity_lookup(16)("x", "y") == 16
    nested = capacity_lookup({"aws:eu-north-1": {"H100": 8}}, default_capacity=0)
    assert nested("aws:eu-north-1", "H100") == 8 and nested("aws:eu-north-1", "A100") == 0
    assert capacity_lookup({("AWS:eu-north-1", "H100"): 4})("aws:eu-north-1", "H100") == 4
    with pytest.raises(UserInputError):
        capacity_lookup({"aws:eu-north-1": {"H100": -1}})


def h100_job(name, regions, hours=6, **window):
    return job_from_dict({"name": name, "gpu": "H100", "gpus": 8, "hours": hours, "window": window,
                          "constraints": {"gpu_types": ["H100"], "gpu_counts": [8], "regions": regions}})


def gpus_in_use(placements):
    use = defaultdict(float)
    t0 = NOW.replace(minute=0)
    for p in placements:
        first = int((p.start - t0).total_seconds() // 3600)
        last = int(np.ceil((p.end - t0).total_seconds() / 3600 - 1e-9))
        for h in range(first, last):
            use[(p.region_id, p.gpu, h)] += p.gpu_count
    return use


def test_plan_batch_forces_jobs_apart_and_beats_greedy():
    jobs = [
        h100_job("flexible", ["aws:eu-north-1", "aws:ca-central-1"]),
        h100_job("stuck", ["aws:eu-north-1", "aws:us-east-1"]),
        h100_job("later", ["aws:eu-north-1", "aws:ca-central-1", "gcp:*"], max_delay="12h",
                 deadline=(NOW + timedelta(hours=20)).isoformat()),
    ]
    free = plan_batch(jobs, now=NOW, settings=SETTINGS)
    assert {p.region_id for p in free.placements[:2]} == {"aws:eu-north-1"}  # unconstrained: all to the greenest
    bp = plan_batch(jobs, now=NOW, settings=SETTINGS, capacity={"aws:eu-north-1": {"H100": 8}})
    flexible, stuck, later = bp.placements
    assert stuck.region_id == "aws:eu-north-1" and flexible.region_id == "aws:ca-central-1"
    assert bp.greedy[0].region_id == "aws:eu-north-1" and bp.greedy[1].region_id == "aws:us-east-1"
    d = bp.to_dict()
    assert d["totals"]["kg_co2e"] < d["greedy"]["kg_co2e"] - 1.0  # greedy sends "stuck" to a coal-heavy grid
    assert d["greedy"]["kg_saved_by_batch"] > 1.0 and d["baseline"]["kg_saved_by_batch"] > 0
    assert all(u <= 8 for (r, g, h), u in gpus_in_use(bp.placements).items() if r == "aws:eu-north-1")
    assert later.end <= NOW + timedelta(hours=20, seconds=4)  # deadline met
    assert d["schema_version"] == 1 and [j["name"] for j in d["jobs"]] == ["flexible", "stuck", "later"]
    assert set(d["jobs"][0]["placement"]) >= {"region_id", "start", "end", "kg_co2e", "cost_usd", "saving_vs_baseline_pct"}
    assert d["solver"]["status"] in ("trivial", "lp_integral", "greedy", "lp_round", "lp_fix", "optimal")
    assert isinstance(d["solver"]["lp_integral"], bool) and d["solver"]["gap"] <= 1e-3


def test_plan_batch_many_jobs_capacity_and_deadlines():
    deadline = NOW + timedelta(hours=30)
    jobs = [h100_job(f"j{i}", ["aws:eu-*", "aws:ca-*", "gcp:europe-*"], hours=4 + i,
                     deadline=deadline.isoformat()) for i in range(5)]
    bp = plan_batch(jobs, now=NOW, settings=SETTINGS, capacity=8, top_k=30)
    assert all(u <= 8 for u in gpus_in_use(bp.placements).values())
    assert all(p.end <= deadline + timedelta(seconds=4) for p in bp.placements)
    assert bp.totals()["kg_co2e"] <= bp.to_dict()["greedy"]["kg_co2e"] + 1e-9


def test_plan_batch_explains_infeasible_jobs_and_capacity():
    late = h100_job("too-late", ["aws:*"], hours=12, deadline=(NOW + timedelta(hours=3)).isoformat())
    ok = h100_job("fine", ["aws:*"])
    with pytest.raises(InfeasibleError, match=r"1 of 2 jobs .*'too-late' rejected by deadline"):
        plan_batch([ok, late], now=NOW, settings=SETTINGS)
    now_only = [h100_job(f"n{i}", ["aws:eu-north-1"]) for i in range(3)]
    with pytest.raises(InfeasibleError) as info:
        plan_batch(now_only, now=NOW, settings=SETTINGS, capacity=8, strict=True)
    msg = str(info.value)
    assert "capacity" in msg and "at most 1 of 3 jobs fit" in msg and "aws:eu-north-1 H100 (8 GPUs/h)" in msg
    assert "\n" not in msg and "top" not in msg  # every candidate was searched
    # pruned to each job's best start: the claim is scoped to what was searched
    waiting = [h100_job(f"w{i}", ["aws:eu-north-1"], max_delay="2h") for i in range(3)]
    with pytest.raises(InfeasibleError, match=r"at most 1 of 3 jobs fit together among each job's top 1 candidates"):
        plan_batch(waiting, now=NOW, settings=SETTINGS, capacity=8, strict=True, top_k=1)


def test_plan_batch_places_what_fits_by_priority_and_says_why():
    jobs = [h100_job(f"n{i}", ["aws:eu-north-1"]) for i in range(3)]
    jobs[2] = job_from_dict({"name": "urgent", "gpu": "H100", "gpus": 8, "hours": 6, "priority": 7,
                             "constraints": {"gpu_types": ["H100"], "gpu_counts": [8], "regions": ["aws:eu-north-1"]}})
    bp = plan_batch(jobs, now=NOW, settings=SETTINGS, capacity=8)
    assert [p is not None for p in bp.placements] == [False, False, True]  # the high priority one runs
    d = bp.to_dict()
    assert d["totals"]["jobs"] == 1 and d["totals"]["unplaced"] == ["n0", "n1"]
    assert d["solver"]["placement_proven_maximal"] and d["solver"]["placed"] == 1
    u = d["unplaced"][0]
    assert u["name"] == "n0" and u["priority"] == 1
    assert u["full_cells"][0]["region_id"] == "aws:eu-north-1" and u["full_cells"][0]["in_use"] == 8
    # the placed 6-hour run starts at 10:30 and ends at 16:30: it holds the hour slots 10:00-17:00
    assert u["earliest_start_with_room"] == "2026-11-27T17:00:00Z" and u["earliest_region_id"] == "aws:eu-north-1"
    assert any("2 of 3 jobs do not fit" in w for w in d["warnings"])
    assert d["greedy"]["unplaced"] == ["n1", "urgent"]  # submission order ignores priority


def test_job_classes_exact_even_when_fingerprints_collide(monkeypatch):
    """The fingerprint only groups; every job is compared whole with its class's first job."""
    from carbonsched.policies import batch_reductions

    rng = np.random.default_rng(5)
    p = random_problem(rng, 6, 3, copies=3)
    honest = batch_reductions.job_classes(p).of_job
    monkeypatch.setattr(batch_reductions, "_fingerprint", lambda cols: np.zeros(len(cols[0]), dtype=np.uint64))  # all collide
    assert np.array_equal(batch_reductions.job_classes(p).of_job, honest)
    assert len(np.unique(honest)) == 6


def test_batch_file_entries_equal_but_for_the_name_parse_to_equal_specs():
    from carbonsched.spec.batch_file import batch_from_dict

    def entry(name, hours=4):
        return {"name": name, "gpu": "A100", "gpus": 8, "hours": hours, "window": {"max_delay": "12h"},
                "constraints": {"gpu_types": ["A100", "A100-80GB"]}}

    raw = {"capacity": {"default": 16}, "job": [entry("a"), entry("b"), entry("c", hours=5), entry("d")]}
    jobs, _, default = batch_from_dict(raw)
    assert [j.name for j in jobs] == ["a", "b", "c", "d"] and default == 16
    assert jobs == [job_from_dict(e) for e in raw["job"]]
    bad = {**entry("y"), "gpus": "eight"}  # a failed entry is not remembered: each one is checked
    with pytest.raises(JobSpecError, match=r"job 3 \(y\)"):
        batch_from_dict({"job": [entry("a"), entry("b"), bad, {**bad, "name": "z"}]})


def test_batch_input_errors_name_the_job_and_refuse_ambiguity(tmp_path):
    """Errors in a 500-job file must say which job; a capacity given twice (two spellings of one
    region or GPU) or a capacity.toml without its [capacity] table is refused, not silently
    resolved (last one wins / unlimited)."""
    from carbonsched.errors import UnknownNameError
    from carbonsched.spec.batch_file import batch_from_dict, read_batch

    def entry(name, **kw):
        return {"name": name, "gpu": "A100", "gpus": 8, "hours": 2, **kw}

    with pytest.raises(UnknownNameError, match=r"job 3 \(c\): unknown GPU 'Z9000'"):
        batch_from_dict({"job": [entry("a"), entry("b"), entry("c", gpu="Z9000")]})
    with pytest.raises(UnknownNameError, match=r"job 2 \(b\): unknown region 'aws:nowhere'"):
        batch_from_dict({"job": [entry("a"), entry("b", baseline={"region": "aws:nowhere"})]})
    with pytest.raises(JobSpecError, match="job 2 .*name must be a non-empty string"):  # a repeat of job 1 but the name
        batch_from_dict({"job": [entry("a"), entry("")]})
    jobs, _, _ = batch_from_dict({"job": [entry("a"), entry(" b ")]})
    assert [j.name for j in jobs] == ["a", "b"]  # stripped as any other name
    for cap, words in (({"aws:eu-north-1": {"H100": 8}, "AWS:EU-NORTH-1": {"H100": 64}}, "'aws:eu-north-1' and 'AWS:EU-NORTH-1'"),
                       ({"aws:eu-north-1": {"H100": 8, "h100": 64}}, "'H100' and 'h100' are both H100")):
        with pytest.raises(JobSpecError, match=words):
            batch_from_dict({"capacity": cap, "job": [entry("a")]})
    jobs = [entry("a"), entry("b", window={"deadline": "2026-11-01T00:00:00Z"})]
    with pytest.raises(UserInputError, match=r"job 2 \(b\): deadline 2026-11-01T00:00:00Z is not after now"):
        plan_batch(batch_from_dict({"job": jobs})[0], now=NOW, settings=SETTINGS)
    (tmp_path / "a.toml").write_text('name = "a"\ngpu = "A100"\ngpus = 8\nhours = 2\n')
    for text in ("default = 0\n", "[capacty]\ndefault = 0\n"):
        (tmp_path / "capacity.toml").write_text(text)
        with pytest.raises(JobSpecError, match=r"expected one \[capacity\] table"):
            read_batch(tmp_path)
    (tmp_path / "capacity.toml").write_text("[capacity]\ndefault = 0\n")
    assert read_batch(tmp_path)[2] == 0


def test_a_folder_of_job_files_is_a_batch_named_by_its_files(tmp_path):
    """Directory mode: each *.toml but capacity.toml is a job; one without a name takes its file's
    (they used to become job#1, job#2, which no one can map back to a file); two files giving one
    name are refused as in a batch file. read_batch_raw (what --server sends) reads the same batch."""
    from carbonsched.spec.batch_file import batch_from_dict, read_batch, read_batch_raw

    for name, hours in (("prep", 2), ("train", 3)):
        (tmp_path / f"{name}.toml").write_text(f'gpu = "A100"\ngpus = 8\nhours = {hours}\n')
    (tmp_path / "capacity.toml").write_text('[capacity]\ndefault = 8\n"aws:eu-north-1" = { H100 = 16 }\n')
    jobs, capacity, default = read_batch(tmp_path)
    assert [(j.name, j.hours) for j in jobs] == [("prep", 2), ("train", 3)]
    assert capacity == {"aws:eu-north-1": {"H100": 16}} and default == 8
    assert batch_from_dict(read_batch_raw(tmp_path), "raw") == (jobs, capacity, default)
    (tmp_path / "eval.toml").write_text('name = "train"\ngpu = "A100"\ngpus = 8\nhours = 1\n')
    with pytest.raises(JobSpecError, match="job names must be unique within a batch; repeated: train"):
        read_batch(tmp_path)


def test_job_classes_take_the_same_as_hint_but_check_it():
    from dataclasses import replace

    rng = np.random.default_rng(9)
    p = random_problem(rng, 5, 3, copies=3)
    by_job = np.argsort(p.job, kind="stable")  # the hint needs each job's candidates together, in job order
    p = replace(p, **{f: getattr(p, f)[by_job] for f in ("job", "cost", "resource", "first_hour", "n_hours", "demand")})
    honest = job_classes(p).of_job
    first = {}
    same = np.array([first.setdefault(tuple(map(tuple, np.stack([getattr(p, f)[p.job == j] for f in
                                                                     ("cost", "resource", "first_hour", "n_hours", "demand")]))), j)
                     for j in range(p.n_jobs)])
    assert np.array_equal(job_classes(replace(p, same_as=same)).of_job, honest)
    assert np.array_equal(job_classes(replace(p, same_as=np.zeros(p.n_jobs, dtype=int))).of_job, honest)  # a false hint
    sol = solve(replace(p, same_as=np.zeros(p.n_jobs, dtype=int)), mip_rel_gap=0.0)
    assert sol.objective == pytest.approx(solve(p, mip_rel_gap=0.0).objective)


def test_an_lp_solve_cut_off_by_the_deadline_leaves_greedy_and_claims_nothing(monkeypatch):
    from carbonsched.policies import assignment

    rng = np.random.default_rng(3)
    p = next(q for q in (random_problem(rng, 12, 4) for _ in range(50)) if solve(q).stats["components"])
    monkeypatch.setattr(assignment._Master, "run", lambda self: False)  # as HiGHS does at its time limit
    monkeypatch.setattr(assignment._Master, "timed_out", lambda self: True)
    sol, g = solve(p), greedy(p)
    assert sol.status == "time_limit" and sol.stats["unplaced_bound"] == 0.0
    assert (usage(p, sol.choice) <= p.capacity[:, None] + 1e-9).all()
    assert float(p.weights[sol.choice < 0].sum()) <= float(p.weights[g < 0].sum())
    assert sol.stats["lp_bound"] <= sol.objective + 1e-9


def test_equal_costs_summed_in_another_order_are_no_reason_to_take_the_seed():
    """Placements of equal real cost sum to floats one ulp apart (26.7 against 26.700000000000003);
    solve took the caller's seed (status "greedy") and plan_batch greedy's plan on that noise."""
    from carbonsched.policies.assignment import better, placed_key

    rng = np.random.default_rng(0)
    for _ in range(150):
        n = 4
        vals = np.round(rng.random(n) * 10, 1)  # decimal costs: exact ties in reals, not in floats
        p = BatchProblem(job=np.repeat(np.arange(n), n), cost=np.tile(vals, n), resource=np.zeros(n * n, int),
                         first_hour=np.tile(np.arange(n), n), n_hours=np.ones(n * n, int), demand=np.ones(n * n),
                         capacity=np.array([1.0]), n_jobs=n)
        g = greedy(p)
        sol = solve(p, seed=g)
        assert sol.status != "greedy" or better(p, g, solve(p).choice)
        assert not better(p, g, sol.choice) and placed_key(p, sol.choice)[1] == pytest.approx(placed_key(p, g)[1])


def test_a_one_term_weighted_batch_ranks_as_its_term_does():
    """Weighted terms are scaled by their mean; the cost/time tie-breakers are not, so in a weighted
    batch they weighed ~mean x 1e-6 and made --weights cost=1 take a dearer placement than cost."""
    from types import SimpleNamespace as NS

    from carbonsched.planning.batch_objective import batch_objective, job_scores

    cands = NS(kg_co2e=np.full((2, 2), 10.0), cost_usd=np.array([5000.0, 4990.0]),
               end_h=np.array([[100.0, 120.0], [100.0, 120.0]]), start_h=np.array([0.0, 20.0]), shape=(2, 2))
    jc = NS(cands=cands, feasible=np.array([[True, False], [False, True]]),
            policy=NS(deferral="expected", tie_fraction=0.0, objective="cost"))
    for objective in ("cost", {"cost": 1}):
        name, weights = batch_objective(objective, [jc])
        score = job_scores([jc], weights, scale_free=name == "weighted")[0]
        assert score[1, 1] < score[0, 0], objective  # $4990 later beats $5000 now in both


def test_an_unplaced_job_is_not_told_of_room_where_capacity_is_zero():
    """`earliest_start_with_room` read a resource outside the (pruned) columns as free, naming
    aws:ap-northeast-1 at once where the default capacity is 0 (found by the regression hunt)."""
    from pathlib import Path

    from carbonsched.spec.batch_file import read_batch

    jobs, capacity, _ = read_batch(Path(__file__).resolve().parents[2] / "examples" / "batch.toml")
    bp = plan_batch(jobs, now=datetime(2026, 11, 27, 10, tzinfo=timezone.utc), settings=SETTINGS,
                    capacity=capacity, default_capacity=0)
    lookup = capacity_lookup(capacity, 0)
    assert bp.unplaced
    for u in bp.unplaced:
        gpus = next(j for j in jobs if j.name == u.name).gpus
        assert u.earliest_region_id is None or any(lookup(u.earliest_region_id, g) >= gpus for g in ("H100", "A100", "L4",
                                                                                                       "L40S", "A100-80GB"))
