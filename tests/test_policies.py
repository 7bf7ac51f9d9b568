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


def test_cost_objective_hand_ties_go_to_carbon():
    # cost: o1 = o2 = 20 < o0 = 30; o1 vs o2 tie -> carbon at their greenest start: 2 < 4
    r = rank(HAND, all_feasible(HAND), Policy("cost"))
    assert ranked(r) == [(1, 2), (2, 0), (0, 1)]
    np.testing.assert_allclose(r.score, [20, 20, 30])


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
