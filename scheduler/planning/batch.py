"""Batch planning: place many jobs at once under shared GPU capacity.

``plan_batch(jobs, now=..., capacity=...)`` builds each job's candidates exactly as ``plan``
does (``candidates.job_candidates``: offerings passing its constraints x start hours, estimates,
feasibility mask incl. deadline; one ``PlanInputs`` shares the catalog, constraint masks and
forecasts between the jobs), keeps each job's ``top_k`` feasible candidates by the objective, and
assigns at most one candidate per job with ``carbonsched.policies.assignment.solve`` (LP/MILP,
HiGHS) so that, for every (region, GPU type, UTC hour), the GPUs in use stay within capacity.

When capacity is short the plan places what fits: the largest priority-weighted set of jobs
(``priority`` in the job file, default 1), then the lowest objective among those; each job left
out is listed (``unplaced``) with the full capacity cells its candidates needed and the earliest
start, given the placed jobs, at which one of its offerings would find room if its window were
widened. ``strict=True`` keeps the all-or-nothing behaviour: InfeasibleError naming the jobs.

Capacity (GPUs of one type available in one region, per hour; hours are UTC hour slots from the
hour containing ``now``; a run holds its GPUs in every slot it touches, partial hours included):

* ``capacity=None``: unlimited (each job simply gets its best candidate);
* a number: the same for every (region, GPU type);
* ``{(region_id, gpu): gpus}`` or nested ``{region_id: {gpu: gpus}}`` -- the shape a cloud
  adapter's quotas take (e.g. ``{"aws:eu-north-1": {"H100": 16}}``); pairs not listed get
  ``default_capacity`` (None = unlimited). On-demand and spot share one pool per pair.

Objective (lower is better, summed over jobs; ``batch_objective``: which one, the scores, ties):
``"carbon"`` (kgCO2e, default; the forecast's p90 for jobs whose policy has ``risk = "p90"``; the
solver ranks starts by it, then each job's own deferral rule -- robust, min_gain_pct -- is applied
as a repair, ``batch_rules``), ``"cost"`` (USD), ``"time"`` (finish hours after now), or weights
``{"carbon": 1, "cost": 0.5}`` / a weighted ``Policy`` (scale-free). ``objective=None``: the
jobs' own when they all ask for the same one, else carbon.

Comparisons: ``greedy`` = jobs in submission order, each taking its best remaining candidate
(same candidate sets) given the capacity used so far, with the same repair; ``baseline`` = each job's planner
baseline, "default region, start now", which ignores capacity. The plan is never worse than greedy
on (placed priority weight, objective): should greedy's repaired assignment beat the plan's
(through repair columns outside a small ``top_k``), it becomes the plan, with a warning.
"""
from __future__ import annotations

import copy
import math
import time
from collections import Counter
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Callable

import numpy as np

from carbonsched.errors import ConfigError, InfeasibleError, UserInputError
from carbonsched.models import SCHEMA_VERSION, Placement, placement_to_dict
from carbonsched.policies.assignment import BatchProblem, BatchSolution, better, greedy, placed_key, solve
from carbonsched.settings import Settings, resolve_settings
from carbonsched.spec.job import JobSpec
from carbonsched.units import iso_utc, utc_instant
from carbonsched.planning.assemble import price_warnings, with_saving
from carbonsched.planning.batch_objective import batch_objective, ignored_keys, job_scores
from carbonsched.planning.batch_rules import applies, job_rule, repair
from carbonsched.planning.candidates import JobCandidates, job_candidates
from carbonsched.planning.infeasible import infeasible_error
from carbonsched.planning.inputs import PlanInputs
from carbonsched.planning.unplaced import Unplaced, why_unplaced


# Each job keeps its best candidates by the objective. Pruning harder (50) cut a 500-job contended
# queue's solve time little but left jobs without room that a wider set places, and raised kgCO2e
# 3.5 % (benchmarks/batch_queue.py): contention needs the second-best hours and regions too.
DEFAULT_TOP_K = 200


@dataclass(frozen=True, eq=False)
class BatchPlan:
    now: datetime
    names: tuple[str, ...]
    placements: tuple[Placement | None, ...]  # one per job, in submission order; None: left out
    baselines: tuple[Placement | None, ...]
    greedy: tuple[Placement | None, ...]  # None: greedy found no slot for the job
    objective: str
    solver: dict
    warnings: tuple[str, ...] = ()
    unplaced: tuple[Unplaced, ...] = ()
    # the organisation policy the jobs were planned under (PolicyFile.provenance, with "changes" per
    # job name); None: no policy, and no "policy_file" key in the document
    policy_file: dict | None = None

    @staticmethod
    def _totals(ps) -> dict:
        ps = [p for p in ps if p is not None]
        return {"jobs": len(ps), "kg_co2e": sum(p.kg_co2e for p in ps), "cost_usd": sum(p.cost_usd for p in ps),
                "energy_kwh": sum(p.energy_kwh for p in ps), "gpu_hours": sum(p.gpu_count * p.runtime_hours for p in ps)}

    def totals(self) -> dict:
        return self._totals(self.placements)

    def to_dict(self) -> dict:
        totals = self.totals()
        totals["unplaced"] = [u.name for u in self.unplaced]
        greedy_tot = self._totals(self.greedy)
        greedy_tot["unplaced"] = [n for n, g in zip(self.names, self.greedy) if g is None]
        both = [(p, g) for p, g in zip(self.placements, self.greedy) if g is not None and p is not None]
        greedy_tot["kg_saved_by_batch"] = sum(g.kg_co2e for _, g in both) - sum(p.kg_co2e for p, _ in both)
        base_tot = self._totals(self.baselines)
        base_tot["jobs_without_baseline"] = [n for n, b in zip(self.names, self.baselines) if b is None]
        with_base = [(p, b) for p, b in zip(self.placements, self.baselines) if b is not None and p is not None]
        base_tot["kg_saved_by_batch"] = sum(b.kg_co2e for _, b in with_base) - sum(p.kg_co2e for p, _ in with_base)
        policy = {"policy_file": dict(self.policy_file)} if self.policy_file is not None else {}
        done: dict[int, dict] = {}  # many jobs share a Placement: convert each once, copy the rest

        def as_dict(p):
            if p is None:
                return None
            if id(p) not in done:
                done[id(p)] = placement_to_dict(p)
                return done[id(p)]
            return {k: list(v) if isinstance(v, list) else v for k, v in done[id(p)].items()}

        return {
            "schema_version": SCHEMA_VERSION,
            "now": iso_utc(self.now),
            "objective": self.objective,
            **policy,
            "jobs": [{"name": n, "placement": as_dict(p), "baseline": as_dict(b), "greedy": as_dict(g)}
                     for n, p, b, g in zip(self.names, self.placements, self.baselines, self.greedy)],
            "totals": totals, "greedy": greedy_tot, "baseline": base_tot,
            "unplaced": [u.to_dict() for u in self.unplaced],
            "solver": dict(self.solver), "warnings": list(self.warnings),
        }


def capacity_lookup(capacity, default_capacity: float | None = None):
    """A function (region_id, gpu) -> GPUs per hour (math.inf = unlimited) from the accepted shapes."""
    def check(v, where):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
            raise UserInputError(f"capacity {where} must be a number of GPUs >= 0, got {v!r}")
        return float(v)

    default = math.inf if default_capacity is None else check(default_capacity, "default")
    if capacity is None:
        return lambda region_id, gpu: default
    if isinstance(capacity, (int, float)) and not isinstance(capacity, bool):
        value = check(capacity, "(uniform)")
        return lambda region_id, gpu: value
    table = {}
    for key, value in dict(capacity).items():
        if isinstance(key, tuple) and len(key) == 2:
            table[(key[0].lower(), key[1])] = check(value, f"for {key}")
        elif isinstance(key, str) and isinstance(value, dict):
            for gpu, v in value.items():
                table[(key.lower(), gpu)] = check(v, f"for ({key}, {gpu})")
        else:
            raise UserInputError(f"capacity keys are (region_id, gpu) pairs or region ids mapping GPU -> count, got {key!r}")
    return lambda region_id, gpu: table.get((region_id, gpu), default)


def _short_reason(exc: InfeasibleError, eliminated: dict[str, int]) -> str:
    """'deadline, max_total_usd; to fix: ...' from a planner InfeasibleError and the counts of the
    constraints that decided it."""
    names = [k for k, v in sorted(eliminated.items(), key=lambda kv: -kv[1]) if v][:3]
    msg = str(exc)
    fix = msg.split("; to fix: ", 1)[1].split(" (alone", 1)[0] if "; to fix: " in msg else ""
    return "rejected by " + ", ".join(names or ["its constraints"]) + (f"; to fix: {fix}" if fix else "")


def plan_batch(jobs: list[JobSpec], *, now: datetime, capacity=None, default_capacity: float | None = None,
               settings: Settings | None = None, top_k: int | None = DEFAULT_TOP_K, objective=None,
               offerings_source=None, forecast_source=None, time_limit_s: float = 30.0,
               mip_rel_gap: float = 5e-3, progress: Callable[[int, int], None] | None = None,
               strict: bool = False) -> BatchPlan:
    """Jointly place ``jobs`` under capacity (see the module docstring). InfeasibleError when a job
    has no feasible placement even on its own, when no job fits the capacity at all, and, with
    ``strict``, when not all jobs fit together. ``progress(done, total)`` is called as each job's candidates are built."""
    if not jobs:
        raise UserInputError("plan_batch needs at least one job")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise UserInputError(f"top_k must be a whole number >= 1 (or None for all), got {top_k!r}")
    started = time.perf_counter()
    now = utc_instant(now)
    settings = settings or resolve_settings()
    inputs = PlanInputs.for_settings(settings, offerings_source, forecast_source)  # as plan(): cache and quotas
    cap_of = capacity_lookup(capacity, default_capacity)  # a bad capacity fails before the candidates' work
    name, weights = batch_objective(objective, jobs)
    names = _unique_names(jobs)
    said = ignored_keys(jobs, names, name)
    jcs = _all_candidates(jobs, names, progress, now=now, settings=settings, inputs=inputs)
    scores = job_scores(jcs, weights, scale_free=name == "weighted")
    rules = _job_rules(jcs, name)
    timings = {"candidates_s": time.perf_counter() - started}

    t = time.perf_counter()
    warnings = list(said)
    batch = build_problem(jcs, scores, cap_of, top_k, rules)
    solver_problem = batch.solver_problem()
    g = greedy(solver_problem)  # the comparison, and the solver's first assignment
    sol = solve(solver_problem, time_limit_s=time_limit_s, mip_rel_gap=mip_rel_gap, seed=g)
    sol = replace(sol, choice=batch.among_all(sol.choice))
    g = batch.among_all(g)
    repaired = None
    if any(r is not None for r in rules):
        choice, repaired = repair(batch, sol.choice, rules)
        g, _ = repair(batch, g, rules)  # greedy gets the same repair: "vs greedy" compares like with like
        left = float(batch.problem.weights[choice < 0].sum())  # the repair may place more, never fewer
        proven = sol.stats["unplaced_weight"] <= sol.stats["unplaced_bound"] + 1e-9
        # the solver's bound covers its columns only: placing more through the repair's is no proof, all placed is
        proven = left == 0 or (proven and not repaired["placed_after"])
        sol = replace(sol, choice=choice, stats={**sol.stats, "unplaced_weight": left, "proven": proven})
    if better(batch.problem, g, sol.choice):
        sol = _greedy_instead(batch, sol, g, top_k, warnings)
    timings["solve_s"] = time.perf_counter() - t
    if len(sol.unplaced) and (strict or len(sol.unplaced) == len(jobs)):  # all or nothing; or nothing fits at all
        raise _capacity_error(batch, sol, names, top_k, strict)
    if sol.status == "time_limit":
        gap = "" if math.isnan(sol.gap_vs_lp) else f" within {100 * sol.gap_vs_lp:.2f} % of the best possible,"
        warnings.append(f"the solver stopped at its time limit:{gap} not proven optimal")

    t = time.perf_counter()
    made: dict = {}  # Placements are immutable: jobs sharing a candidate build share them

    def baseline(jc):
        key = id(jc.cands)
        return made[key] if key in made else made.setdefault(key, jc.baseline())

    def placement(jc, c, b):
        if c < 0:
            return None
        key = (id(jc.cands), int(batch.offering[c]), int(batch.start[c]))
        return made[key] if key in made else made.setdefault(key, batch.placement(jc, c, b))

    baselines = [baseline(jc) for jc in jcs]
    chosen = [placement(jc, c, b) for jc, c, b in zip(jcs, sol.choice, baselines)]
    greedy_ps = [placement(jc, c, b) for jc, c, b in zip(jcs, g, baselines)]
    unplaced = tuple(why_unplaced(batch, sol, jcs, names, cap_of)) if len(sol.unplaced) else ()
    if unplaced:
        warnings.append(f"capacity: {len(unplaced)} of {len(jobs)} jobs do not fit and are left out (see unplaced; "
                        "raise capacity, widen their windows, or give the important ones a higher priority)")
    if (g < 0).any():
        warnings.append(f"greedy (submission order) could not place {int((g < 0).sum())} job(s) within capacity")
    seen = set(warnings)
    for jc in jcs:
        for w in jc.warnings:
            if w not in seen:
                seen.add(w)
                warnings.append(w)
    for w in price_warnings(jcs[0].flagged_prices, [p for p in chosen if p is not None]):  # one catalog for the batch
        warnings.append(w)
    timings["assemble_s"] = time.perf_counter() - t
    st = sol.stats
    solver = {"status": sol.status, "gap": None if math.isnan(sol.gap_vs_lp) else sol.gap_vs_lp,
              "mip_gap": None if math.isnan(sol.gap) else sol.gap, "seconds": sol.seconds,
              "lp_integral": sol.lp_integral, "objective_value": sol.objective, "lp_bound": st.get("lp_bound"),
              "top_k": top_k, "placed": int(np.count_nonzero(sol.choice >= 0)),
              "placement_proven_maximal": st.get("proven", st["unplaced_weight"] <= st["unplaced_bound"] + 1e-9),
              **{k: v for k, v in st.items() if k not in ("lp_bound", "proven")}, "timings": timings}
    if repaired is not None:
        solver["deferral_rules"] = repaired
    return BatchPlan(now=now, names=tuple(names), placements=tuple(chosen), baselines=tuple(baselines),
                     greedy=tuple(greedy_ps), objective=name if name != "weighted" else f"weighted {weights}",
                     solver=solver, warnings=tuple(warnings), unplaced=unplaced)


def _greedy_instead(batch: BatchColumns, sol: BatchSolution, g: np.ndarray, top_k, warnings: list) -> BatchSolution:
    """Greedy's assignment as the plan, when it places more priority weight than the solver's (or
    as much, at a lower objective). Greedy is one of the assignments ``solve`` compares, so this
    happens only through the deferral-rule repair: its columns (plan's choices, each offering's
    first start) are outside the solver's top-k, and greedy's repair may find room in them that the
    plan's does not."""
    left, objective = placed_key(batch.problem, g)
    cut = f" (--top-k {top_k} left them out of the solver; a larger top-k lets it see them)" if top_k else ""
    warnings.append("greedy in submission order placed more than the solver's plan through candidates the solver did "
                    f"not see{cut}: the plan is greedy's" if left < placed_key(batch.problem, sol.choice)[0] else
                    "greedy in submission order did better than the solver's plan after the deferral rules' repair: "
                    "the plan is greedy's")
    stats = {**sol.stats, "unplaced_weight": left, "proven": left == 0, "greedy_adopted": True}
    return replace(sol, choice=g.copy(), status="greedy", objective=objective, gap_vs_lp=float("nan"), stats=stats)


def _unique_names(jobs: list[JobSpec]) -> list[str]:
    """Job names, numbered ``name#2``... where several jobs share one."""
    counts = Counter(j.name for j in jobs)
    seen: Counter = Counter()
    names = []
    for j in jobs:
        seen[j.name] += 1
        names.append(j.name if counts[j.name] == 1 else f"{j.name}#{seen[j.name]}")
    return names


def _spec_key(job: JobSpec, seen: dict | None = None) -> str:
    """What a job's candidates depend on: every field but its name and priority (repr: exact for
    the numbers and instants a job holds; two equal specs whose repr differs are only built twice).
    ``seen`` memoises by the fields' identities: jobs parsed from equal batch entries share their
    field objects (while the jobs live, equal ids are the same objects), and repr is most of the
    time of 10k keys."""
    values = [getattr(job, name) for name in _KEY_FIELDS]
    if seen is None:
        return repr(values)
    ids = tuple(map(id, values))
    if ids not in seen:
        seen[ids] = repr(values)
    return seen[ids]


_KEY_FIELDS = tuple(f.name for f in fields(JobSpec) if f.name not in ("name", "priority"))


def _with_job(jc: JobCandidates, **job_fields) -> JobCandidates:
    """``jc`` for a job equal to ``jc.job`` but for ``job_fields`` (name, priority): shallow
    copies, as ``dataclasses.replace`` would make without re-running the checks of two specs that
    were checked already (4x faster; 10k jobs)."""
    job = copy.copy(jc.job)
    for k, v in job_fields.items():
        object.__setattr__(job, k, v)
    out = copy.copy(jc)
    object.__setattr__(out, "job", job)
    return out


def _all_candidates(jobs: list[JobSpec], names: list[str], progress=None, **kw) -> list[JobCandidates]:
    """Each job's candidates, as ``plan`` builds them; InfeasibleError naming every job that has
    no feasible placement even on its own. Jobs that differ only in name and priority (a queue of
    one shape submitted many times) share one build: their JobCandidates differ only in ``job``."""
    jcs, failed = [], []
    built: dict[str, JobCandidates | tuple] = {}
    keys: dict[tuple, str] = {}
    for i, (n, job) in enumerate(zip(names, jobs)):
        if progress is not None:
            progress(i, len(jobs))
        key = _spec_key(job, keys)
        if key not in built:
            try:
                built[key] = job_candidates(job, **kw)
            except InfeasibleError as exc:  # no offering passes the job's per-offering constraints
                built[key] = (exc, exc.eliminated)
            except UserInputError as exc:  # an unknown GPU or region, a deadline already past: which job?
                if isinstance(exc, ConfigError):  # the settings, not the job
                    raise
                raise type(exc)(f"job {i + 1} ({n}): {exc}") from None
        jc = built[key]
        if isinstance(jc, tuple):
            failed.append((n, *jc))
            continue
        if jc.job.name != job.name or jc.job.priority != job.priority:
            jc = _with_job(jc, name=job.name, priority=job.priority)
        if jc.feasible.any():
            jcs.append(jc)
        else:
            failed.append((n, infeasible_error(jc), jc.numeric_elim))
    if progress is not None:
        progress(len(jobs), len(jobs))
    if failed:
        raise InfeasibleError(f"batch infeasible: {len(failed)} of {len(jobs)} jobs have no feasible placement on their "
                              "own: " + "; ".join(f"{n!r} {_short_reason(e, el)}" for n, e, el in failed),
                              {n: sum(el.values()) for n, _, el in failed})
    return jcs


@dataclass(frozen=True, eq=False)
class BatchColumns:
    """The batch's columns and, per column, the job's candidate it stands for. The solver sees
    those of ``for_solver`` (None: all); the others serve only the deferral rules' repair."""

    problem: BatchProblem
    offering: np.ndarray  # row of the job's JobCandidates
    start: np.ndarray  # index into the job's window.starts
    resources: list[tuple[str, str]]  # (region_id, gpu) per resource index
    pruned: bool  # some job kept fewer than all its feasible candidates (bounds hold over the kept ones)
    for_solver: np.ndarray | None = None  # indices of the solver's columns among all, ascending

    def solver_problem(self) -> BatchProblem:
        """The problem of the solver's columns (``among_all`` maps its choices back)."""
        if self.for_solver is None:
            return self.problem
        p, idx = self.problem, self.for_solver
        return replace(p, job=p.job[idx], cost=p.cost[idx], resource=p.resource[idx], first_hour=p.first_hour[idx],
                       n_hours=p.n_hours[idx], demand=p.demand[idx])

    def among_all(self, choice: np.ndarray) -> np.ndarray:
        """A choice of the solver's columns (-1 = none) as columns among all."""
        if self.for_solver is None:
            return choice
        return np.where(choice >= 0, self.for_solver[np.maximum(choice, 0)], -1)

    def placement(self, jc: JobCandidates, column: int, baseline: Placement | None) -> Placement:
        p = jc.placement(int(self.offering[column]), int(self.start[column]))
        return with_saving(p, baseline) if baseline is not None else p


def _job_rules(jcs: list[JobCandidates], objective: str) -> list:
    """Per job, ``batch_rules.job_rule`` where plan's rule applies to it in this batch
    (``batch_rules.applies``), else None (jobs sharing a candidate build share one)."""
    done: dict[int, tuple] = {}
    out = []
    for jc in jcs:
        if not applies(jc, objective):
            out.append(None)
            continue
        if id(jc.cands) not in done:
            done[id(jc.cands)] = job_rule(jc)
        out.append(done[id(jc.cands)])
    return out


def build_problem(jcs: list[JobCandidates], scores: list, cap_of, k: int | None, rules: list | None = None) -> BatchColumns:
    """The adapter from candidates to the solver's arrays: each job's ``k`` best feasible candidates
    by score (all when ``k`` is None) become columns holding ``gpu_count`` GPUs of one (region, GPU
    type) resource over the UTC hour slots ``[floor(start), ceil(end))``; job weights are the jobs'
    priorities. A job with a rule (``rules``) gets the columns its repair needs after them, outside
    the solver's (``BatchColumns.for_solver``)."""
    if not jcs:
        raise ValueError("build_problem needs at least one job")
    resources: dict[tuple[str, str], int] = {}
    pruned = False
    shared: dict[tuple[int, int], int] = {}  # jobs sharing candidates and scores share their columns
    parts: list[dict] = []  # per distinct (candidates, scores): its columns (all but ``job``)
    first_job: list[int] = []  # the first job of each
    shape = np.empty(len(jcs), dtype=np.int64)
    rules = rules or [None] * len(jcs)
    for j, (jc, score, rule) in enumerate(zip(jcs, scores, rules)):
        key = (id(jc.cands), id(score))
        if key not in shared:
            part, short = _columns(jc, score, k, resources, rule)
            pruned |= short
            shared[key] = len(parts)
            parts.append(part)
            first_job.append(j)
        shape[j] = shared[key]
    # every job's columns are its part's: one gather per field (concatenating 10k small arrays
    # per field took 6x as long, profiled at 10k jobs)
    size = np.array([len(part["o"]) for part in parts])
    n_solver = np.array([int(np.count_nonzero(part["solver"])) for part in parts])  # the solver's come first
    per_job = size[shape]
    at = _runs((np.cumsum(size) - size)[shape], per_job)
    cat = {name: np.concatenate([part[name] for part in parts])[at] for name in parts[0] if name != "solver"}
    caps = np.array([cap_of(r, g) for r, g in resources], dtype=float)
    prob = BatchProblem(job=np.repeat(np.arange(len(jcs)), per_job), cost=cat["cost"], resource=cat["res"],
                        first_hour=cat["first"], n_hours=cat["hours"], demand=cat["demand"], capacity=caps,
                        n_jobs=len(jcs), weight=np.array([jc.job.priority for jc in jcs], dtype=float),
                        same_as=np.array(first_job)[shape])
    solver = None if np.array_equal(n_solver, size) else _runs(np.cumsum(per_job) - per_job, n_solver[shape])
    return BatchColumns(prob, cat["o"], cat["k"], list(resources), pruned, solver)


def _smallest(vals: np.ndarray, k: int) -> np.ndarray:
    """``np.argsort(vals, kind="stable")[:k]`` (ties: the earlier index first) in O(n + k log k):
    the values below the k-th smallest, then the earliest of those equal to it."""
    if k >= len(vals):
        return np.argsort(vals, kind="stable")
    if k <= 0:
        return np.zeros(0, dtype=np.intp)
    kth = np.partition(vals, k - 1)[k - 1]
    if not np.isfinite(kth):  # NaN or inf among the k smallest: leave the order to argsort
        return np.argsort(vals, kind="stable")[:k]
    below = np.flatnonzero(vals < kth)
    pick = np.concatenate([below, np.flatnonzero(vals == kth)[:k - len(below)]])
    return pick[np.argsort(vals[pick], kind="stable")]


def _runs(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``concatenate([arange(a, a + n) for a, n in zip(starts, lengths)])``, without the loop."""
    return np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(int(lengths.sum()))


def _columns(jc: JobCandidates, score, k: int | None, resources: dict, rule=None) -> tuple[dict, bool]:
    """One job's columns (all but ``job``): its ``k`` best feasible candidates (the solver's:
    ``solver``), then those its deferral rule needs that they left out (``rule.extra``, and the
    first start of every offering among them: for the repair only, so that a rule does not make
    the LP larger); and whether pruning to ``k`` dropped any."""
    usable = jc.feasible.ravel() & (np.isfinite(np.asarray(score)).ravel() if np.ndim(score) else True)
    flat = np.flatnonzero(usable)  # an inf score: a start the job's rule refuses (job_scores)
    vals = np.asarray(score).ravel()[flat]
    keep = flat[_smallest(vals, k)] if k is not None else flat  # ties: the earlier first
    n_solver = len(keep)
    if rule is not None and k is not None:
        K = jc.feasible.shape[1]
        offs = np.unique(keep // K)
        offs = offs[rule.first_k[offs] < K]
        must = np.unique(np.concatenate([rule.extra, offs * K + rule.first_k[offs]]))
        kept = np.zeros(jc.feasible.size, dtype=bool)
        kept[keep] = True
        keep = np.concatenate([keep, must[~kept[must]]])  # (np.isin: 5x slower on these sizes)
    o, kk = np.unravel_index(keep, jc.feasible.shape)
    start = jc.offset_h + jc.cands.start_h[kk]
    end = start + jc.cands.runtime_h[o]
    first = np.floor(start + 1e-9).astype(np.int64)
    uniq, inv = np.unique(o, return_inverse=True)
    res = np.array([resources.setdefault((jc.offerings[i].region_id, jc.offerings[i].gpu), len(resources))
                    for i in uniq], dtype=np.int64)
    return {"hours": np.maximum(np.ceil(end - 1e-9).astype(np.int64) - first, 1), "first": first, "res": res[inv],
            "demand": np.array([jc.offerings[i].gpu_count for i in uniq], dtype=float)[inv],
            "cost": np.asarray(score).ravel()[keep] if np.ndim(score) else np.zeros(len(o)), "o": o, "k": kk,
            "solver": np.arange(len(keep)) < n_solver}, \
        n_solver < len(flat)


def _capacity_error(batch: BatchColumns, sol: BatchSolution, names: list[str], top_k: int | None,
                    strict: bool) -> InfeasibleError:
    """Which jobs cannot be placed together, and on which (region, GPU) capacity they compete.
    "At most" only when the solver proved it, and only over the candidates it was given."""
    prob, out = batch.problem, sol.unplaced
    scope = f" among each job's top {top_k} candidates (--top-k 0 searches all)" if batch.pruned else ""
    placed = f"{prob.n_jobs - len(out)} of {prob.n_jobs} jobs"
    head = (f"at most {placed} fit together{scope}"
            if sol.stats.get("proven", sol.stats["unplaced_weight"] <= sol.stats["unplaced_bound"] + 1e-9)
            else f"only {placed} could be placed together{scope} (not proven the most possible)")
    left = [names[j] for j in out]
    tally = Counter(int(r) for r in prob.resource[np.isin(prob.job, out)])
    where = ", ".join(f"{batch.resources[r][0]} {batch.resources[r][1]} ({prob.capacity[r]:g} GPUs/h)"
                      for r, _ in tally.most_common(3))
    return InfeasibleError(
        f"batch infeasible: capacity: {head}; "
        f"cannot place {', '.join(map(repr, left))} (their candidates need {where}); raise those capacities, "
        "or widen these jobs' windows or regions" + (" (or plan without --strict to place what fits)" if strict else ""),
        {"capacity": len(out)})
