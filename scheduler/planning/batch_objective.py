"""A batch's objective: which one it optimises, and each job's score per candidate.

``batch_objective``: ``--objective`` when given; else the jobs' own when they all ask for the
same one a batch can optimise (carbon, cost, time, or weighted with equal weights), so a one-job
batch is ``plan``; else carbon. ``ignored_keys`` names, in warnings, what a job file asks that a
batch does not do (another objective, ``[interruptible]`` segments).

``job_scores``: per job, the (O, K) array the solver minimises, ``sum_t w_t x_t / m_t`` over the
terms carbon (kgCO2e), cost (USD) and time (finish hours after now); ``m_t`` = 1, or for a
weighted batch the mean of term t over the batch's feasible candidates (scale-free). A cost or
time batch adds ``TIES`` at ``TIE_BREAK`` of its term's scale, in ``plan``'s order
(``policies.ranking``): equally cheap placements go to the earlier start, then the greener;
equally fast ones to the greener. Without it the LP took any vertex among exact ties: a time job
went to a region emitting 20x what ``plan`` chose for the same finish.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from carbonsched.errors import UserInputError
from carbonsched.policies import Policy
from carbonsched.policies.ranking import robust_starts
from carbonsched.spec.job import JobSpec

if TYPE_CHECKING:
    from carbonsched.planning.candidates import JobCandidates

TIE_BREAK = 1e-6  # of a cost or time batch's term: how much its tie-breaking terms weigh (_tie_weights)
# what decides between placements equally cheap / equally fast, in plan's order (policies.ranking):
# cost -> the earlier start, then the greener; time -> the greener
TIES = {"cost": (("start", 1.0), ("carbon", 1e-3)), "time": (("carbon", 1.0),)}


def batch_objective(objective, jobs: list[JobSpec]) -> tuple[str, dict[str, float]]:
    """(name, weights) the batch optimises: ``objective`` (None, a name, a ``Policy`` or a weights
    mapping), else the jobs' own (module docstring)."""
    return _named(_jobs_objective(jobs) if objective is None else objective)


def _jobs_objective(jobs: list[JobSpec]):
    """The batch's objective when none is given: the jobs' own when they all ask for the same one
    it can optimise (so a one-job batch is ``plan``), else carbon."""
    first = jobs[0].policy
    if first.objective in ("carbon", "cost", "time") and all(j.policy.objective == first.objective for j in jobs):
        return first.objective
    if first.objective == "weighted" and all(j.policy.objective == "weighted" and j.policy.weights == first.weights
                                             for j in jobs):
        return first
    return None


def ignored_keys(jobs: list[JobSpec], names: list[str], objective: str) -> list[str]:
    """Warnings for what a job file asks that a batch does not do: its own objective (a batch
    optimises one for all its jobs), splitting an ``[interruptible]`` job into segments."""
    out = []
    asked: dict[str, list[str]] = {}
    for n, j in zip(names, jobs):
        if j.policy.objective not in (objective, "carbon"):  # carbon: the default, maybe never asked for
            asked.setdefault(j.policy.objective, []).append(n)
    for obj, who in asked.items():
        out.append(f"{_some(who)} {'asks' if len(who) == 1 else 'ask'} for objective {obj} in [policy]; a batch "
                   f"optimises one objective for all its jobs, here {objective} (--objective sets it)")
    split = [n for n, j in zip(names, jobs) if j.interruptible is not None]
    if split:
        out.append(f"{_some(split)} {'is' if len(split) == 1 else 'are'} [interruptible]: a batch plans each job as "
                   "one uninterrupted run; plan such a job on its own to split it into green segments")
    return out


def _some(names: list[str], show: int = 3) -> str:
    """'job a', 'jobs a, b, c' or 'jobs a, b, c and 7 more'."""
    head = ", ".join(repr(n) for n in names[:show])
    more = f" and {len(names) - show} more" if len(names) > show else ""
    return f"job {head}" if len(names) == 1 else f"jobs {head}{more}"


def _named(objective) -> tuple[str, dict[str, float]]:
    """(name, weights) of an objective given as None, a name, a ``Policy`` or a weights mapping."""
    if objective is None:
        return "carbon", {"carbon": 1.0}
    if isinstance(objective, Policy):
        if objective.objective in ("carbon", "cost", "time"):
            return objective.objective, {objective.objective: 1.0}
        if objective.objective == "weighted":
            return "weighted", {k: float(v) for k, v in objective.weights.items() if v}
        raise UserInputError(f"batch planning supports the carbon, cost, time and weighted objectives, not {objective.objective!r}")
    if isinstance(objective, str):
        if objective not in ("carbon", "cost", "time"):
            raise UserInputError(f"batch objective must be carbon, cost, time or a weights mapping, got {objective!r}")
        return objective, {objective: 1.0}
    weights = {k: float(v) for k, v in dict(objective).items() if v}
    Policy("weighted", weights={"carbon": 0.0, "cost": 0.0, "time": 0.0, **weights})  # validates
    return "weighted", weights


def _terms(jc) -> dict[str, np.ndarray]:
    c = jc.cands
    return {"carbon": c.kg_co2e, "cost": np.broadcast_to(c.cost_usd[:, None], c.shape), "time": c.end_h,
            "start": np.broadcast_to(c.start_h, c.shape)}


def job_scores(jcs: list[JobCandidates], weights: dict[str, float], scale_free: bool) -> list:
    """Per job, the (O, K) objective ``sum_t w_t x_t / m_t`` (``m_t`` = 1 unless ``scale_free``:
    then the mean of term t over every feasible candidate of the batch). Jobs sharing one build
    of their candidates share one array. A cost or time batch adds ``TIES`` (module docstring),
    so the top-k keeps the right ones of tied candidates too; 1e-6 of the objective is no
    difference the solver's 0.5 % gap would see (the reported objective value includes it). In a
    weighted batch a job with robust deferral may wait only for the starts ``plan`` would
    (``policies.ranking.robust_starts`` against its own offering's "now"): the others score inf,
    and ``build_problem`` makes no column of them."""
    scale = {}
    for t in weights:
        vals = [_terms(jc)[t][jc.feasible] for jc in jcs] if scale_free else []
        scale[t] = max(float(np.mean(np.concatenate(vals))), 1e-12) if scale_free else 1.0
    ties = _tie_weights(jcs, weights)
    if scale_free:  # a one-term weighted batch: its term is divided by its scale, so are the ties
        ties = {name: w / scale[t] for name, w in ties.items() for t in weights}
    done: dict[int, np.ndarray] = {}
    out = []
    for jc in jcs:
        if id(jc.cands) not in done:
            terms = _terms(jc)
            score = sum(w * terms[t] / scale[t] for t, w in weights.items()) + sum(w * terms[t] for t, w in ties.items())
            if scale_free and jc.policy.deferral == "robust":  # a weighted batch
                score = np.where(robust_starts(jc.cands, jc.feasible, jc.policy.tie_fraction, across=False), score, np.inf)
            done[id(jc.cands)] = score
        out.append(done[id(jc.cands)])
    return out


def _tie_weights(jcs: list[JobCandidates], weights: dict[str, float]) -> dict[str, float]:
    """The weights of ``TIES`` for a cost or time batch ({} otherwise): each tie term at its
    relative weight x ``TIE_BREAK`` x the objective term's scale / its own (means of absolute
    values over the batch's feasible candidates; a term that is 0 everywhere breaks nothing)."""
    if len(weights) != 1 or next(iter(weights)) not in TIES:
        return {}
    (t,) = weights
    builds = list({id(jc.cands): jc for jc in jcs}.values())

    def mean(term: str) -> float:
        return float(np.mean(np.abs(np.concatenate([_terms(jc)[term][jc.feasible] for jc in builds]))))

    scale = mean(t)
    return {name: TIE_BREAK * rel * scale / m for name, rel in TIES[t] if (m := mean(name)) > 1e-12}
