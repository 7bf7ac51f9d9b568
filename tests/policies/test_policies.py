"""carbonsched.policies: rank / feasibility / Policy on hand-made cases, against brute force, and
properties (constraints hold, monotonicity)."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from carbonsched.errors import UserInputError
from carbonsched.policies import Candidates, Limits, Policy, feasibility, rank
from carbonsched.policies.constraints import TIME_EPS_H

TERMS = ("carbon", "cost", "time")


def make(kg, cost, start, runtime, usd=None, mem=None) -> Candidates:
    kg = np.array(kg, dtype=float)
    O = kg.shape[0]
    return Candidates(
        kg_co2e=kg, cost_usd=np.array(cost, dtype=float), start_h=np.array(start, dtype=float),
        runtime_h=np.array(runtime, dtype=float),
        usd_per_hour=np.array(usd if usd is not None else [1.0] * O, dtype=float),
        gpu_memory_gb=np.array(mem if mem is not None else [80.0] * O, dtype=float),
    )


def ranked(r) -> list[tuple[int, int]]:
    return [(int(o), int(k)) for o, k in zip(r.offering, r.start)]


def all_feasible(c):
    return np.ones(c.shape, dtype=bool)


# Hand-made instance: 3 offerings x 4 starts. Points (carbon, cost, end = start + runtime):
#   o0 cost 30, runtime 2: (5,30,2) (3,30,3) (4,30,4) (3,30,5)
#   o1 cost 20, runtime 4: (6,20,4) (6,20,5) (2,20,6) (7,20,7)
#   o2 cost 20, runtime 1: (4,20,1) (4,20,2) (4,20,3) (4,20,4)
HAND = make(kg=[[5, 3, 4, 3], [6, 6, 2, 7], [4, 4, 4, 4]], cost=[30, 20, 20], start=[0, 1, 2, 3], runtime=[2, 4, 1])


def test_carbon_objective_hand():
    # best starts: o0 k1 (3; the tie with k3 goes to the earlier start), o1 k2 (2), o2 k0 (all 4 -> earliest)
    r = rank(HAND, all_feasible(HAND), Policy("carbon"))
    assert ranked(r) == [(1, 2), (0, 1), (2, 0)]
    np.testing.assert_allclose(r.score, [2, 3, 4])
    assert r.n_feasible == 12


def test_cost_objective_hand_starts_now_and_ties_go_to_carbon():
    # cost does not change with the start, so every offering starts at its first feasible start;
    # o1 = o2 = 20 < o0 = 30; o1 vs o2: same start, same cost -> carbon at k0: o2 4 < o1 6
    r = rank(HAND, all_feasible(HAND), Policy("cost"))
    assert ranked(r) == [(2, 0), (1, 0), (0, 0)]
    np.testing.assert_allclose(r.score, [20, 20, 30])


def test_min_gain_makes_small_gains_ties_that_go_to_the_earliest_start():
    # per offering, the earliest start within min_gain of its greenest: o0 [5,3,4,3] -> k1 (5 is
    # not within 50 % of 3), o1 [6,6,2,7] -> k2, o2 [4,4,4,4] -> k0
    r = rank(HAND, all_feasible(HAND), Policy("carbon", min_gain_pct=50))
    assert ranked(r) == [(1, 2), (0, 1), (2, 0)]
    np.testing.assert_allclose(r.score, [2, 3, 4])
    # at 60 % o1's 2 kg and o0's 3 kg tie (buckets of 1.2 kg from 2): o0 starts an hour earlier and leads
    r = rank(HAND, all_feasible(HAND), Policy("carbon", min_gain_pct=60))
    assert ranked(r) == [(0, 1), (1, 2), (2, 0)]
    # float noise is never a reason to wait: 1 + 1e-12 ties with 1
    c = make(kg=[[1.0 + 1e-12, 1.0]], cost=[10], start=[0, 13], runtime=[2])
    assert ranked(rank(c, all_feasible(c), Policy("carbon"))) == [(0, 0)]
    with pytest.raises(UserInputError):
        Policy("carbon", min_gain_pct=100)


def test_time_objective_hand():
    # earliest finish: all start at k0; ends o2 1, o0 2, o1 4
    r = rank(HAND, all_feasible(HAND), Policy("time"))
    assert ranked(r) == [(2, 0), (0, 0), (1, 0)]
    np.testing.assert_allclose(r.score, [1, 2, 4])
    # with o2's first two starts infeasible, o2 ends at 2 + 1 = 3 and o0 (ends 2) leads
    feas = all_feasible(HAND)
    feas[2, :2] = False
    r = rank(HAND, feas, Policy("time"))
    assert ranked(r) == [(0, 0), (2, 2), (1, 0)]
    np.testing.assert_allclose(r.score, [2, 3, 4])


def test_time_ties_go_to_carbon():
    # both finish at 3; o1 is greener at that start
    c = make(kg=[[5, 1], [4, 9]], cost=[1, 1], start=[0, 1], runtime=[3, 3])
    assert ranked(rank(c, all_feasible(c), Policy("time"))) == [(1, 0), (0, 0)]


def test_weighted_objective_hand():
    # carbon range over feasible 2..7 (5), cost 20..30 (10)
    # o0: (3-2)/5 + (30-20)/10 = 1.2 at k1; o1: 0 + 0 = 0 at k2; o2: (4-2)/5 + 0 = 0.4 at k0
    r = rank(HAND, all_feasible(HAND), Policy("weighted", weights={"carbon": 1, "cost": 1, "time": 0}))
    assert ranked(r) == [(1, 2), (2, 0), (0, 1)]
    np.testing.assert_allclose(r.score, [0.0, 0.4, 1.2])
    # carbon + time: time (end) range 1..7 (6)
    # o0: k0 3/5+1/6=.767, k1 1/5+2/6=.533, k2 2/5+3/6=.9, k3 1/5+4/6=.867 -> k1 (8/15)
    # o1: k0 .8+.5, k1 .8+4/6, k2 0+5/6, k3 1+1 -> k2 (5/6); o2: k0 2/5+0 = 0.4
    r = rank(HAND, all_feasible(HAND), Policy("weighted", weights={"carbon": 1, "time": 1}))
    assert ranked(r) == [(2, 0), (0, 1), (1, 2)]
    np.testing.assert_allclose(r.score, [0.4, 8 / 15, 5 / 6])


def test_weighted_zero_range_term_contributes_nothing():
    # cost identical everywhere: only carbon matters; o0 has the lowest carbon
    c = make(kg=[[1, 2], [3, 4]], cost=[10, 10], start=[0, 1], runtime=[1, 1])
    r = rank(c, all_feasible(c), Policy("weighted", weights={"carbon": 1, "cost": 5}))
    assert ranked(r) == [(0, 0), (1, 0)]
    # carbon range 1..4: o0 k0 (1-1)/3 = 0; o1 k0 (3-1)/3 = 2/3; cost adds 5 * 0
    np.testing.assert_allclose(r.score, [0.0, 2 / 3])


# Lexicographic instance: carbon lo = 100 over feasible, so 1 % tolerance = buckets 1 kg wide.
#   o0 cost 50: carbon [100.6, 100.0, 130] -> buckets [0, 0, 30]
#   o1 cost 40: carbon [100.9, 130, 130]   -> buckets [0, 30, 30]
LEX = make(kg=[[100.6, 100.0, 130], [100.9, 130, 130]], cost=[50, 40], start=[0, 1, 2], runtime=[5, 5])


def test_lexicographic_tolerance_makes_near_equal_carbon_a_tie():
    # tol 1 %: o0's k0 and k1 share bucket 0, cost is equal, so the earlier finish (k0) wins;
    # between offerings, carbon buckets tie (0 = 0) and cost decides: o1 (40) before o0 (50)
    r = rank(LEX, all_feasible(LEX), Policy("lexicographic", order=("carbon", "cost", "time"), tolerance_pct=1.0))
    assert ranked(r) == [(1, 0), (0, 0)]
    np.testing.assert_allclose(r.score, [100.9, 100.6])  # score = first term's value


def test_lexicographic_zero_tolerance_is_exact():
    r = rank(LEX, all_feasible(LEX), Policy("lexicographic", order=("carbon", "cost", "time"), tolerance_pct=0.0))
    assert ranked(r) == [(0, 1), (1, 0)]
    np.testing.assert_allclose(r.score, [100.0, 100.9])


def test_lexicographic_cost_first():
    # cost lo = 40, 1 % -> width 0.4: o1 bucket 0, o0 bucket (50-40)/0.4 = 25; o1 then picks its
    # lowest carbon bucket (k0)
    r = rank(LEX, all_feasible(LEX), Policy("lexicographic", order=("cost", "carbon", "time"), tolerance_pct=1.0))
    assert ranked(r) == [(1, 0), (0, 0)]
    np.testing.assert_allclose(r.score, [40, 50])


def test_pareto_hand():
    # non-dominated: o1k2 (2,20,6) lowest carbon; o0k1 (3,30,3) nothing with carbon <= 3 ends by 3;
    # o2k0 (4,20,1) earliest finish. All other points are dominated (e.g. o0k0 (5,30,2) by o2k0,
    # o0k3 (3,30,5) by o0k1). Listed by carbon.
    r = rank(HAND, all_feasible(HAND), Policy("pareto"))
    assert ranked(r) == [(1, 2), (0, 1), (2, 0)]
    np.testing.assert_allclose(r.score, [2, 3, 4])


def test_pareto_keeps_exact_duplicates_across_offerings():
    # Two offerings with identical numbers (e.g. the same instance in two regions of one grid zone
    # with equal PUE and price). Neither is beaten "at least as good on all, strictly better on
    # one" (objectives.py docstring), so both belong to the Pareto set.
    c = make(kg=[[2, 1], [2, 1]], cost=[10, 10], start=[0, 1], runtime=[1, 1])
    # points: (2,10,1) and (1,10,2) in each row; both rows' k0 and k1 are non-dominated
    r = rank(c, all_feasible(c), Policy("pareto"))
    assert set(ranked(r)) == {(0, 0), (0, 1), (1, 0), (1, 1)}


def test_infeasible_candidates_and_offerings_are_skipped():
    feas = all_feasible(HAND)
    feas[1, :] = False  # o1 entirely infeasible
    feas[0, 1] = False  # o0's greenest start is out; next: k3 (3)
    r = rank(HAND, feas, Policy("carbon"))
    assert ranked(r) == [(0, 3), (2, 0)]
    assert r.n_feasible == 7
    r = rank(HAND, np.zeros(HAND.shape, dtype=bool), Policy("carbon"))
    assert ranked(r) == [] and r.n_feasible == 0


# ---------------------------------------------------------------- brute force (hypothesis)
#
# Independent, deliberately simple definitions from policies/objectives.py:
#   term values per candidate; single-term objectives compare (objective, then the other terms in
#   the order carbon, cost, time); weighted = sum w_t (x - min_t)/(max_t - min_t) over feasible;
#   lexicographic = bucket floor((x - min_t)/(tol |min_t|)) for all but the last term, last exact;
#   pareto = feasible candidates that no feasible candidate dominates.

@st.composite
def instances(draw, max_o=6, max_k=6):
    O = draw(st.integers(1, max_o))
    K = draw(st.integers(1, max_k))
    steps = draw(st.lists(st.sampled_from([0.5, 1.0, 2.0]), min_size=K, max_size=K))
    start = list(itertools.accumulate(steps, initial=draw(st.sampled_from([0.0, 0.25]))))[:K]
    kg = draw(st.lists(st.lists(st.integers(1, 8).map(float), min_size=K, max_size=K), min_size=O, max_size=O))
    cost = draw(st.lists(st.sampled_from([10.0, 20.0, 25.0, 30.0]), min_size=O, max_size=O))
    runtime = draw(st.lists(st.sampled_from([1.0, 2.0, 3.0, 4.5]), min_size=O, max_size=O))
    usd = draw(st.lists(st.sampled_from([1.0, 5.0, 10.0]), min_size=O, max_size=O))
    mem = draw(st.lists(st.sampled_from([24.0, 40.0, 80.0]), min_size=O, max_size=O))
    feas = draw(st.lists(st.lists(st.booleans(), min_size=K, max_size=K), min_size=O, max_size=O))
    return make(kg, cost, start, runtime, usd, mem), np.array(feas, dtype=bool)


def terms_of(c, o, k) -> dict[str, float]:
    return {"carbon": float(c.kg_co2e[o, k]), "cost": float(c.cost_usd[o]),
            "time": float(c.start_h[k]) + float(c.runtime_h[o]), "start": float(c.start_h[k])}


def feasible_pairs(feas):
    O, K = feas.shape
    return [(o, k) for o in range(O) for k in range(K) if feas[o, k]]


SINGLE_ORDER = {"carbon": ("carbon", "start", "cost", "time"), "cost": ("cost", "start", "carbon", "time"),
                "time": ("time", "carbon", "cost")}


def check_per_offering_ranking(c, feas, r, key):
    """Exactly one entry per offering with a feasible start; each entry's start is that row's
    brute-force minimum of (key, start index) (ties -> earliest); entries ordered by key."""
    rows = sorted({o for o, _ in feasible_pairs(feas)})
    got = ranked(r)
    assert sorted(o for o, _ in got) == rows
    for o, k in got:
        best_k = min((k2 for k2 in range(c.shape[1]) if feas[o, k2]), key=lambda k2: (key(o, k2), k2))
        assert k == best_k
    keys = [key(o, k) for o, k in got]
    assert keys == sorted(keys)
    return got


@settings(max_examples=300, deadline=None)
@given(inst=instances(), objective=st.sampled_from(["carbon", "cost", "time"]))
def test_single_term_objectives_match_brute_force(inst, objective):
    c, feas = inst
    r = rank(c, feas, Policy(objective))
    pairs = feasible_pairs(feas)
    assert r.n_feasible == len(pairs)
    if not pairs:
        assert ranked(r) == []
        return

    def key(o, k):
        t = terms_of(c, o, k)
        return tuple(t[name] for name in SINGLE_ORDER[objective])

    got = check_per_offering_ranking(c, feas, r, key)
    assert key(*got[0]) == min(key(o, k) for o, k in pairs)
    np.testing.assert_array_equal(r.score, [terms_of(c, o, k)[objective] for o, k in got])


@settings(max_examples=300, deadline=None)
@given(inst=instances(), w=st.tuples(*[st.sampled_from([0.0, 0.5, 1.0, 2.0])] * 3))
def test_weighted_objective_matches_brute_force(inst, w):
    c, feas = inst
    assume(any(w))
    weights = dict(zip(TERMS, w))
    pairs = feasible_pairs(feas)
    r = rank(c, feas, Policy("weighted", weights=weights))
    if not pairs:
        assert ranked(r) == []
        return
    lo = {t: min(terms_of(c, o, k)[t] for o, k in pairs) for t in TERMS}
    hi = {t: max(terms_of(c, o, k)[t] for o, k in pairs) for t in TERMS}

    def score(o, k):
        x = terms_of(c, o, k)
        return sum(weights[t] * (x[t] - lo[t]) / (hi[t] - lo[t]) for t in TERMS if hi[t] > lo[t])

    got = ranked(r)
    assert sorted(o for o, _ in got) == sorted({o for o, _ in pairs})
    best = min(score(o, k) for o, k in pairs)
    assert score(*got[0]) == pytest.approx(best, abs=1e-9)
    for j, (o, k) in enumerate(got):
        assert feas[o, k]
        assert r.score[j] == pytest.approx(score(o, k), abs=1e-9)
        row_best = min(score(o, k2) for k2 in range(c.shape[1]) if feas[o, k2])
        assert score(o, k) == pytest.approx(row_best, abs=1e-9)
    assert all(a <= b + 1e-9 for a, b in zip(r.score, r.score[1:]))


@settings(max_examples=300, deadline=None)
@given(inst=instances(), order=st.permutations(TERMS), tol=st.sampled_from([0.0, 1.0, 5.0, 20.0, 50.0]))
def test_lexicographic_objective_matches_brute_force(inst, order, tol):
    # Full permutations only: with a shorter ``order`` the docstring does not say whether "the last
    # term" is the last of ``order`` or of order + remaining terms.
    c, feas = inst
    order = tuple(order)
    pairs = feasible_pairs(feas)
    r = rank(c, feas, Policy("lexicographic", order=order, tolerance_pct=tol))
    if not pairs:
        assert ranked(r) == []
        return
    lo = {t: min(terms_of(c, o, k)[t] for o, k in pairs) for t in TERMS}

    def key(o, k):
        x = terms_of(c, o, k)
        out = []
        for t in order[:-1]:
            out.append(math.floor((x[t] - lo[t]) / (tol / 100.0 * abs(lo[t]))) if tol > 0 else x[t])
        return tuple(out) + (x[order[-1]],)

    got = check_per_offering_ranking(c, feas, r, key)
    assert key(*got[0]) == min(key(o, k) for o, k in pairs)


def dominates(p, q):
    return all(a <= b for a, b in zip(p, q)) and any(a < b for a, b in zip(p, q))


@settings(max_examples=300, deadline=None)
@given(inst=instances())
def test_pareto_matches_brute_force(inst):
    # Compared as sets of (o, k). Exact duplicates (two offerings with the same (carbon, cost,
    # time), frequent here because values come from small sets) do not dominate each other under
    # the docstring's strict definition, so every copy belongs to the set and must be listed.
    c, feas = inst
    pairs = feasible_pairs(feas)
    pt = {(o, k): (terms_of(c, o, k)["carbon"], terms_of(c, o, k)["cost"], terms_of(c, o, k)["time"]) for o, k in pairs}
    front = {ok for ok in pairs if not any(dominates(pt[other], pt[ok]) for other in pairs)}
    r = rank(c, feas, Policy("pareto"))
    got = ranked(r)
    assert len(set(got)) == len(got)
    assert set(got) == front
    carbons = [pt[ok][0] for ok in got]
    assert carbons == sorted(carbons)  # listed by carbon
    np.testing.assert_array_equal(r.score, carbons)


# ---------------------------------------------------------------- constraints

@st.composite
def limits(draw):
    def maybe(values):
        return draw(st.one_of(st.none(), st.sampled_from(values)))

    return Limits(
        latest_start_h=maybe([0.0, 1.0, 2.5, 5.0]), deadline_h=maybe([2.0, 3.0, 4.5, 8.0]),
        max_usd_per_hour=maybe([1.0, 5.0, 7.5]), max_total_usd=maybe([10.0, 20.0, 27.0]),
        carbon_budget_kg=maybe([2.0, 4.0, 7.0]), min_gpu_memory_gb=maybe([24.0, 40.0, 60.0]),
    )


def rejects_alone(c, lim: Limits, o: int, k: int) -> dict[str, bool]:
    """Independent per-candidate check of each numeric constraint (constraints.py docstring)."""
    end = float(c.start_h[k]) + float(c.runtime_h[o])
    checks = {
        "max_delay": (lim.latest_start_h, lambda v: c.start_h[k] <= v + TIME_EPS_H),
        "deadline": (lim.deadline_h, lambda v: end <= v + TIME_EPS_H),
        "max_usd_per_hour": (lim.max_usd_per_hour, lambda v: c.usd_per_hour[o] <= v),
        "max_total_usd": (lim.max_total_usd, lambda v: c.cost_usd[o] <= v),
        "carbon_budget_kg": (lim.carbon_budget_kg, lambda v: c.kg_co2e[o, k] <= v),
        "min_gpu_memory_gb": (lim.min_gpu_memory_gb, lambda v: c.gpu_memory_gb[o] >= v),
    }
    return {name: not ok(v) for name, (v, ok) in checks.items() if v is not None}


@settings(max_examples=300, deadline=None)
@given(inst=instances(), lim=limits(), region_ok=st.lists(st.booleans(), min_size=6, max_size=6),
       objective=st.sampled_from(["carbon", "cost", "time", "weighted", "lexicographic", "pareto"]))
def test_feasibility_counts_and_ranked_candidates_respect_constraints(inst, lim, region_ok, objective):
    c, _ = inst
    O, K = c.shape
    region_mask = np.array(region_ok[:O])
    feas, eliminated = feasibility(c, lim, {"region": region_mask})
    expected_names = {"region"} | {n for n, v in [
        ("max_delay", lim.latest_start_h), ("deadline", lim.deadline_h), ("max_usd_per_hour", lim.max_usd_per_hour),
        ("max_total_usd", lim.max_total_usd), ("carbon_budget_kg", lim.carbon_budget_kg),
        ("min_gpu_memory_gb", lim.min_gpu_memory_gb)] if v is not None}
    assert set(eliminated) == expected_names  # Limits fields left None are not constraints at all
    counts = dict.fromkeys(expected_names, 0)
    for o in range(O):
        for k in range(K):
            rej = rejects_alone(c, lim, o, k)
            rej["region"] = not region_mask[o]
            for name, r in rej.items():
                counts[name] += r
            assert feas[o, k] == (not any(rej.values()))
    assert eliminated == counts

    weights = {"carbon": 1.0, "cost": 0.5, "time": 0.25}
    r = rank(c, feas, Policy(objective, weights=weights))
    for o, k in ranked(r):
        assert region_mask[o] and not any(rejects_alone(c, lim, o, k).values())


def test_feasibility_deadline_uses_end_time():
    # starts 0, 1, 2; runtimes 1.5 and 3; deadline 3.5 -> ends o0 [1.5, 2.5, 3.5] all meet it,
    # o1 [3, 4, 5] -> k1, k2 miss it (a start-based check would reject nothing)
    c = make(kg=[[1, 1, 1], [1, 1, 1]], cost=[1, 1], start=[0, 1, 2], runtime=[1.5, 3])
    feas, elim = feasibility(c, Limits(deadline_h=3.5))
    np.testing.assert_array_equal(feas, [[True, True, True], [True, False, False]])
    assert elim == {"deadline": 2}
    # documented slack TIME_EPS_H (1e-3 h): ending 0.0005 h late still counts as on time, 0.01 h does not
    feas, _ = feasibility(c, Limits(deadline_h=3.4995))
    assert feas[0, 2]
    feas, elim = feasibility(c, Limits(deadline_h=3.49))
    assert not feas[0, 2] and elim == {"deadline": 3}


def test_feasibility_counts_each_constraint_alone_hand():
    # o0: $2/h, $20, 80 GB; o1: $6/h, $12, 40 GB. starts 0, 2, 4; runtime 2 each.
    c = make(kg=[[1, 5, 9], [3, 3, 3]], cost=[20, 12], start=[0, 2, 4], runtime=[2, 2], usd=[2, 6], mem=[80, 40])
    feas, elim = feasibility(c, Limits(latest_start_h=2, max_usd_per_hour=5, carbon_budget_kg=4, min_gpu_memory_gb=None))
    # max_delay rejects k2 for both offerings (2); max_usd_per_hour rejects o1 (3 candidates);
    # carbon_budget rejects o0k1 (5) and o0k2 (9) (2). Only o0k0 survives all three.
    assert elim == {"max_delay": 2, "max_usd_per_hour": 3, "carbon_budget_kg": 2}
    np.testing.assert_array_equal(feas, [[True, False, False], [False, False, False]])
    feas, elim = feasibility(c, Limits())
    assert elim == {} and feas.all()


# ---------------------------------------------------------------- monotonicity (carbon objective)

def position(r, o):
    offerings = [int(x) for x in r.offering]
    return offerings.index(o)


def best_key(c, feas, o):
    """(carbon, cost, time) of o's best start under the carbon objective."""
    return min((float(c.kg_co2e[o, k]), float(c.cost_usd[o]), float(c.start_h[k] + c.runtime_h[o]))
               for k in range(c.shape[1]) if feas[o, k])


@settings(max_examples=300, deadline=None)
@given(inst=instances(max_o=5), data=st.data())
def test_greener_twin_never_ranks_below(inst, data):
    # A = copy of offering B with kg_co2e <= B's at every start, strictly less at least once.
    # A ranks above B, except when their best starts tie exactly on (carbon, cost, time): then
    # no term tells them apart and either order is acceptable.
    c, feas = inst
    O, K = c.shape
    b = data.draw(st.integers(0, O - 1))
    assume(feas[b].any())
    cuts = np.array(data.draw(st.lists(st.sampled_from([0.0, 0.0, 0.5, 1.0, 3.0]), min_size=K, max_size=K)))
    assume(cuts.any())
    a_row = np.maximum(c.kg_co2e[b] - cuts, 0.1)
    assume((a_row < c.kg_co2e[b]).any())
    a_first = data.draw(st.booleans())  # put A before or after B in the arrays

    def insert(arr, row):
        return np.insert(arr, b if a_first else b + 1, row, axis=0)

    c2 = Candidates(kg_co2e=insert(c.kg_co2e, a_row), cost_usd=insert(c.cost_usd, c.cost_usd[b]),
                    start_h=c.start_h, runtime_h=insert(c.runtime_h, c.runtime_h[b]),
                    usd_per_hour=insert(c.usd_per_hour, c.usd_per_hour[b]),
                    gpu_memory_gb=insert(c.gpu_memory_gb, c.gpu_memory_gb[b]))
    feas2 = insert(feas, feas[b])
    ia, ib = (b, b + 1) if a_first else (b + 1, b)
    r = rank(c2, feas2, Policy("carbon"))
    if best_key(c2, feas2, ia) != best_key(c2, feas2, ib):
        assert position(r, ia) < position(r, ib)


@settings(max_examples=300, deadline=None)
@given(inst=instances(), data=st.data())
def test_lowering_a_candidates_carbon_never_worsens_its_offerings_rank(inst, data):
    c, feas = inst
    pairs = feasible_pairs(feas)
    assume(pairs)
    o, k = data.draw(st.sampled_from(pairs))
    delta = data.draw(st.sampled_from([0.25, 1.0, 3.0, 7.5]))
    before = position(rank(c, feas, Policy("carbon")), o)
    kg = c.kg_co2e.copy()
    kg[o, k] = max(kg[o, k] - delta, 0.0)
    c2 = Candidates(kg, c.cost_usd, c.start_h, c.runtime_h, c.usd_per_hour, c.gpu_memory_gb)
    after = position(rank(c2, feas, Policy("carbon")), o)
    assert after <= before


# ---------------------------------------------------------------- Policy validation

@pytest.mark.parametrize("kwargs", [
    {"objective": "greenest"},
    {"objective": "Carbon"},
    {"objective": "weighted", "weights": {"carbon": -1.0, "cost": 1.0}},
    {"objective": "carbon", "weights": {"carbon": float("nan")}},
    {"objective": "weighted", "weights": {"carbon": float("inf")}},
    {"objective": "weighted", "weights": {"carbon": True}},
    {"objective": "weighted", "weights": {"carbon": "1"}},
    {"objective": "weighted", "weights": {"carbon": 0.0, "cost": 0.0, "time": 0.0}},
    {"objective": "weighted", "weights": {}},
    {"objective": "weighted", "weights": {"carbon": 1.0, "water": 1.0}},
    {"objective": "lexicographic", "order": ("carbon", "speed")},
    {"objective": "lexicographic", "order": ("carbon", "carbon")},
    {"objective": "lexicographic", "order": ()},
    {"objective": "lexicographic", "order": "carbon"},
    {"objective": "lexicographic", "tolerance_pct": -1.0},
    {"objective": "lexicographic", "tolerance_pct": float("nan")},
])
def test_policy_rejects_bad_input(kwargs):
    with pytest.raises(UserInputError):
        Policy(**kwargs)


@pytest.mark.parametrize("kwargs", [
    {"objective": "carbon", "weights": {"carbon": 0.0}},  # weights only matter for "weighted"
    {"objective": "weighted", "weights": {"cost": 2}},
    {"objective": "lexicographic", "order": ("time",), "tolerance_pct": 0},
    {"objective": "pareto"},
])
def test_policy_accepts_valid_input(kwargs):
    p = Policy(**kwargs)
    assert p.objective == kwargs["objective"]


def _two_offerings_three_starts(kg, p90):
    import numpy as np

    from carbonsched.policies.candidates import Candidates

    return Candidates(kg_co2e=kg, cost_usd=np.array([5.0, 6.0]), start_h=np.array([0.0, 1.0, 2.0]),
                      runtime_h=np.array([4.0, 4.0]), usd_per_hour=np.array([1.0, 1.5]),
                      gpu_memory_gb=np.array([80.0, 80.0]), kg_co2e_p90=p90)


def test_robust_deferral_waits_only_for_gains_beyond_the_forecast_error():
    """Offering 0: waiting saves 30 % on the mean, but the later window's p90 is above "now": no
    wait. Offering 1: the later window's p90 is below "now": it waits. "expected" waits for both."""
    import numpy as np

    from carbonsched.policies.objectives import Policy
    from carbonsched.policies.ranking import rank, robust_starts

    kg = np.array([[10.0, 9.5, 7.0], [10.0, 9.0, 6.0]])
    p90 = np.array([[12.0, 11.0, 10.5], [12.0, 11.0, 8.0]])
    c = _two_offerings_three_starts(kg, p90)
    feasible = np.ones(kg.shape, dtype=bool)
    assert robust_starts(c, feasible).tolist() == [[True, False, False], [True, False, True]]
    robust = rank(c, feasible, Policy(deferral="robust"))
    assert dict(zip(robust.offering.tolist(), robust.start.tolist())) == {0: 0, 1: 2}
    expected = rank(c, feasible, Policy(deferral="expected"))
    assert dict(zip(expected.offering.tolist(), expected.start.tolist())) == {0: 2, 1: 2}
    late = feasible.copy()
    late[:, 0] = False  # "now" is the first feasible start, whatever its index
    assert robust_starts(c, late).tolist() == [[False, True, False], [False, True, True]]
    with pytest.raises(Exception, match="deferral"):
        Policy(deferral="optimistic")


def test_robust_deferral_does_not_wait_elsewhere_for_a_gain_within_the_error():
    """Offering 1 (another region) could wait for 6.0 kg, and its p90 (8.0) beats its own "now"
    (10.0) -- but offering 0 emits 7.0 now, and 8.0 does not beat that: robust starts offering 0
    now; "expected" moves and waits for the mean."""
    import numpy as np

    from carbonsched.policies.objectives import Policy
    from carbonsched.policies.ranking import rank, robust_starts

    kg = np.array([[7.0, 7.2, 7.1], [10.0, 9.0, 6.0]])
    p90 = np.array([[8.5, 9.0, 9.0], [12.0, 11.0, 8.0]])
    c = _two_offerings_three_starts(kg, p90)
    feasible = np.ones(kg.shape, dtype=bool)
    assert robust_starts(c, feasible).tolist() == [[True, False, False], [True, False, False]]
    robust = rank(c, feasible, Policy(deferral="robust"))
    assert (robust.offering[0], robust.start[0]) == (0, 0)
    expected = rank(c, feasible, Policy(deferral="expected"))
    assert (expected.offering[0], expected.start[0]) == (1, 2)
    p90[1, 2] = 6.5  # now the wait beats every "now" even at its upper decile: robust waits there
    assert robust_starts(c, feasible)[1, 2]
    again = rank(c, feasible, Policy(deferral="robust"))
    assert (again.offering[0], again.start[0]) == (1, 2)


def test_plan_says_when_robust_deferral_did_not_move_for_a_gain_within_the_error():
    from datetime import datetime, timedelta, timezone
    from types import SimpleNamespace

    import numpy as np

    from carbonsched.policies.objectives import Policy
    from carbonsched.policies.ranking import rank
    from carbonsched.planning.single import tie_warnings

    kg = np.array([[7.0, 7.2, 7.1], [10.0, 9.0, 6.0]])
    p90 = np.array([[8.5, 9.0, 9.0], [12.0, 11.0, 8.0]])
    c = _two_offerings_three_starts(kg, p90)
    t0 = datetime(2026, 11, 27, 10, tzinfo=timezone.utc)
    jc = SimpleNamespace(cands=c, feasible=np.ones(kg.shape, dtype=bool), policy=Policy(deferral="robust"),
                         offerings=[SimpleNamespace(region_id="aws:eu-north-1", instance_type="p5.48xlarge"),
                                    SimpleNamespace(region_id="gcp:europe-west4", instance_type="a3-highgpu-8g")],
                         window=SimpleNamespace(starts=[t0 + timedelta(hours=h) for h in range(3)]), now=t0)
    (line,) = tie_warnings(jc, rank(c, jc.feasible, jc.policy))
    assert "gcp:europe-west4 a3-highgpu-8g at 2026-11-27T12:00:00Z" in line and "14.3 % less" in line
    assert "upper decile (8 kg) does not beat the 7 kg expected from starting now there" in line
    assert "did not move there and wait" in line
    jc.policy = Policy(deferral="expected")  # moved and waited: nothing to explain
    assert tie_warnings(jc, rank(c, jc.feasible, jc.policy)) == []
    # the greener wait passed the rule and lost only to min_gain_pct: no word about the forecast's error
    jc.cands = _two_offerings_three_starts(kg, np.array([[8.5, 9.0, 9.0], [12.0, 11.0, 6.5]]))
    jc.policy = Policy(min_gain_pct=20)
    assert not any("upper decile" in w for w in tie_warnings(jc, rank(jc.cands, jc.feasible, jc.policy)))


def test_robust_deferral_ties_within_min_gain_do_not_block_a_wait_and_p90_ranking_compares_with_the_mean():
    """A now 100, later 80 (p90 98.5); B now 97. With min_gain_pct 5, B's "now" is a tie with
    A's, not a better start: A's wait is robust against A's own 100 and is taken. With risk p90 the
    bar is still the *expected* kg of starting now, not its p90."""
    import numpy as np

    from carbonsched.policies.candidates import Candidates
    from carbonsched.policies.objectives import Policy
    from carbonsched.policies.ranking import rank, robust_bar, robust_starts

    c = Candidates(kg_co2e=np.array([[100.0, 80.0], [97.0, 130.0]]), cost_usd=np.array([5.0, 6.0]),
                   start_h=np.array([0.0, 1.0]), runtime_h=np.array([4.0, 4.0]), usd_per_hour=np.array([1.0, 1.5]),
                   gpu_memory_gb=np.array([80.0, 80.0]), kg_co2e_p90=np.array([[100.0, 98.5], [97.0, 140.0]]))
    feasible = np.ones((2, 2), dtype=bool)
    assert not robust_starts(c, feasible)[0, 1]  # no tie: B's 97 now beats A's wait at its p90
    assert robust_starts(c, feasible, 0.05)[0, 1]
    r = rank(c, feasible, Policy(min_gain_pct=5))
    assert (r.offering[0], r.start[0]) == (0, 1)
    # ranking by p90: kg_co2e holds the p90, the bar the mean (here A now 90 expected, 100 at p90)
    p = Candidates(kg_co2e=np.array([[100.0, 95.0]]), cost_usd=np.array([5.0]), start_h=np.array([0.0, 1.0]),
                   runtime_h=np.array([4.0]), usd_per_hour=np.array([1.0]), gpu_memory_gb=np.array([80.0]),
                   kg_co2e_p90=np.array([[100.0, 95.0]]), kg_co2e_mean=np.array([[90.0, 70.0]]))
    assert robust_bar(p, np.ones((1, 2), dtype=bool))[0, 0] == 90.0
    assert not robust_starts(p, np.ones((1, 2), dtype=bool))[0, 1]  # 95 at p90 does not beat 90 expected
