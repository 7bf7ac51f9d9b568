"""``carbonsched plan``: rank placements for one job, or many jobs under shared capacity (--batch)."""
from __future__ import annotations

import argparse

from carbonsched.errors import UserInputError
from carbonsched.cli._common import (Progress, add_plan_args, emit, intensity_options, job_file_dir, no_local_policy, now_from,
                                     overrides, policy_option)

EPILOG_PLAN = """\
examples:
  carbonsched plan examples/job.toml
  carbonsched plan --gpu A100 --gpus 8 --hours 12 --max-delay 24h
  carbonsched plan job.toml --objective cost --top 5 --json
  carbonsched plan job.toml --region 'gcp:europe-*' --region 'aws:eu-*' --deadline 2026-12-01T00:00Z
  carbonsched plan job.toml --policy examples/policy.toml

Flags override the job file's keys; an organisation policy (--policy, or the `policy` setting)
then overrides both where it is stricter, and a job it leaves no placement is refused (exit 2). Times are UTC (ISO 8601). Without --max-delay or a
deadline only "start now" is considered. Job file keys: see `python -m pydoc carbonsched.spec.job`.
"""


def cmd_plan(a: argparse.Namespace) -> int:
    from carbonsched.spec.job import job_from_dict, merge, read_job_file
    from carbonsched.planning import plan

    if a.top is not None and a.top < 0:
        raise UserInputError("--top must be >= 0 (0 shows all)")
    if getattr(a, "batch", None):
        return plan_batch(a)
    if a.strict or a.capacity is not None:
        raise UserInputError("--strict and --capacity plan a queue: use them with --batch JOBS.toml")
    raw = merge(read_job_file(a.job) if a.job else {}, overrides(a))
    implied_objective(a, raw)
    job = job_from_dict(raw, base=job_file_dir(a.job))
    unused_policy_flags(a, job.policy.objective)
    if getattr(a, "server", False):  # `submit --dry-run` comes here without the flag
        no_local_policy(a)
        return _plan_remote(a, raw, _top(a, job, None))
    settings, source = intensity_options(a, a.intensity_source)
    pf = policy_option(a, settings)
    top = _top(a, job, pf)
    if pf is None:
        result = plan(job, now=now_from(a), top=top or None, settings=settings, forecast_source=source)
    else:
        from carbonsched.planning.policy_check import enforce_policy

        result = enforce_policy(job, pf, now=now_from(a), top=top or None, settings=settings, forecast_source=source)
    from carbonsched.cli.render import render_plan

    return emit(a, result, to_dict=lambda p: p.to_dict(), render=render_plan, plot=_plot)


def implied_objective(a: argparse.Namespace, raw: dict) -> None:
    """--weights alone means the weighted objective, --order alone the lexicographic one (as
    ``plan --batch --weights`` reads it), when neither the flags nor the job file name one."""
    policy = raw.setdefault("policy", {})
    if "objective" not in policy:
        if getattr(a, "weights", None) is not None:
            policy["objective"] = "weighted"
        elif getattr(a, "order", None) is not None:
            policy["objective"] = "lexicographic"


def unused_policy_flags(a: argparse.Namespace, objective: str) -> None:
    """--weights, --order and --tolerance-pct shape the weighted and lexicographic objectives: with
    another, refuse them rather than plan as if they were not there."""
    for flag, value, used_by in (("--weights", getattr(a, "weights", None), "weighted"),
                                 ("--order", getattr(a, "order", None), "lexicographic"),
                                 ("--tolerance-pct", getattr(a, "tolerance_pct", None), "lexicographic")):
        if value is not None and objective != used_by:
            raise UserInputError(f"{flag} applies to the {used_by} objective, not {objective}: add --objective "
                                 f"{used_by}, or drop {flag}")


def _top(a: argparse.Namespace, job, pf) -> int:
    """--top, else 10, or 0 (all) for a Pareto front, whether the job or the policy asks for one."""
    objective = (pf.get("objective") if pf is not None else None) or job.policy.objective
    return a.top if a.top is not None else (0 if objective == "pareto" else 10)


def _plan_remote(a: argparse.Namespace, raw: dict, top: int) -> int:
    """``plan --server``: the server plans (its intensity source and catalog), the CLI prints."""
    import json

    from carbonsched.cli._common import jsonable
    from carbonsched.server.client import remote_from_env

    if a.plot or getattr(a, "intensity_file", None):
        raise UserInputError("--plot and --intensity-file need a local plan; drop --server")
    remote = remote_from_env()
    if remote is None:
        raise UserInputError("--server plans on the server named by CARBONSCHED_SERVER (with CARBONSCHED_TOKEN); "
                             "set them, or drop --server to plan here")
    doc = remote.plan(jsonable(raw), now=a.now, top=top, intensity_source=getattr(a, "intensity_source", None))
    if a.json:
        print(json.dumps(doc, indent=2))
        return 0
    from carbonsched.cli.render import table

    base = doc.get("baseline") or {}
    print(f"plan from {remote.base} for {doc['job']['name']!r} as of {doc['now']}"
          + (f"; baseline {base['region_id']} now: {base['kg_co2e']:.3g} kgCO2e" if base else ""))
    print(table(["#", "region", "instance", "market", "start (UTC)", "kgCO2e", "cost $", "saving %"],
                [[str(p["rank"]), p["region_id"], p["instance_type"], p["market"], p["start"][:16].replace("T", " "),
                  f"{p['kg_co2e']:.3g}", f"{p['cost_usd']:.0f}",
                  "-" if p.get("saving_vs_baseline_pct") is None else f"{p['saving_vs_baseline_pct']:.0f}"]
                 for p in doc["placements"]]))
    for w in doc.get("warnings") or []:
        print(f"warning: {w}")
    return 0


def _plot(result, path: str) -> None:
    from carbonsched.cli.plots import plot_plan

    plot_plan(result, path)


def plan_batch(a: argparse.Namespace) -> int:
    from carbonsched.planning.batch import plan_batch
    from carbonsched.spec.batch_file import read_batch

    if a.job:
        raise UserInputError("give either a job file or --batch, not both")
    if a.top_k < 0:
        raise UserInputError(f"--top-k must be >= 0 (0 keeps every candidate), got {a.top_k}")
    if not a.time_limit > 0:
        raise UserInputError(f"--time-limit must be a number of seconds > 0, got {a.time_limit}")
    if a.capacity is not None and not 0 <= a.capacity < float("inf"):
        raise UserInputError(f"--capacity must be a number of GPUs >= 0 per (region, GPU type) and hour, "
                             f"got {a.capacity:g}")
    if a.top is not None or a.plot:
        raise UserInputError("--top and --plot show one job's ranking; a batch plan gives each job one placement "
                             "(drop them with --batch, or plan one job file)")
    objective = a.objective
    if a.weights is not None:  # the batch objective: weighted by these
        if a.objective not in (None, "weighted"):
            raise UserInputError(f"--weights weigh the terms of --objective weighted, not {a.objective}; drop one")
        objective = a.weights
    elif a.objective == "weighted":
        raise UserInputError("--objective weighted needs --weights, e.g. --weights carbon=1,cost=0.5")
    jobs, capacity, default = read_batch(a.batch)  # checked here, also before a server sees it
    jobs = _batch_overrides(a, jobs)
    if getattr(a, "server", False):
        return _plan_batch_remote(a)
    if a.capacity is not None:
        default = a.capacity
    settings, source = intensity_options(a, a.intensity_source)
    pf = policy_option(a, settings)
    progress = Progress("building candidates (jobs)", quiet=a.json)
    kw = dict(now=now_from(a), capacity=capacity or None, default_capacity=default, settings=settings,
              forecast_source=source, objective=objective, progress=progress, strict=a.strict,
              top_k=a.top_k or None, time_limit_s=a.time_limit)
    try:
        if pf is None:
            result = plan_batch(jobs, **kw)
        else:
            from carbonsched.planning.policy_batch import enforce_policy_batch

            result = enforce_policy_batch(jobs, pf, **kw)
    finally:
        progress.close()
    from carbonsched.cli.render import render_batch

    return emit(a, result.to_dict(), to_dict=lambda doc: doc, render=render_batch)


def _plan_batch_remote(a: argparse.Namespace) -> int:
    """``plan --batch --server``: the server plans the batch (``POST /v1/plan/batch``: its catalog,
    intensity source and policy), the CLI prints it as it prints a local one."""
    from carbonsched.cli._common import jsonable
    from carbonsched.cli.render import render_batch
    from carbonsched.server.client import remote_from_env
    from carbonsched.spec.batch_file import read_batch_raw
    from carbonsched.spec.job import merge

    no_local_policy(a)
    if getattr(a, "intensity_file", None) or a.weights is not None:
        raise UserInputError("--intensity-file and --weights need a local plan (the server takes --objective "
                             "carbon, cost or time); drop --server")
    remote = remote_from_env()
    if remote is None:
        raise UserInputError("--server plans on the server named by CARBONSCHED_SERVER (with CARBONSCHED_TOKEN); "
                             "set them, or drop --server to plan here")
    raw = read_batch_raw(a.batch)
    given = {k: v for k, v in (overrides(a).get("policy") or {}).items() if k in BATCH_POLICY_KEYS}
    if given:  # --risk, --deferral, --min-gain: every job's policy, as a local plan sets them
        raw["job"] = [merge(entry, {"policy": given}) for entry in raw["job"]]
    if a.capacity is not None:
        raw["capacity"] = {**(raw.get("capacity") or {}), "default": a.capacity}
    doc = remote.plan_batch(jsonable(raw), now=a.now, objective=a.objective, strict=a.strict, top_k=a.top_k,
                            time_limit_s=a.time_limit, intensity_source=a.intensity_source)
    return emit(a, doc, to_dict=lambda d: d, render=render_batch)


BATCH_POLICY_KEYS = ("risk", "deferral", "min_gain_pct")  # --risk, --deferral, --min-gain


def _batch_overrides(a: argparse.Namespace, jobs: list) -> list:
    """--risk, --deferral and --min-gain set every job's policy in a batch; --objective and
    --weights are the batch's objective (``plan_batch``); the other job flags describe one job:
    refused."""
    from dataclasses import replace

    raw = overrides(a)
    policy = raw.pop("policy", {})
    policy.pop("objective", None)
    policy.pop("weights", None)
    per_job = sorted([f"{k}.{kk}" for k, v in raw.items() if isinstance(v, dict) for kk in v]
                     + [k for k, v in raw.items() if not isinstance(v, dict)]
                     + [f"policy.{k}" for k in policy if k not in BATCH_POLICY_KEYS])
    if per_job:
        raise UserInputError(f"--batch plans the jobs of the batch file; the flags for {', '.join(per_job)} set one "
                             "job's keys: write them in the [[job]] tables (--risk, --deferral and --min-gain apply "
                             "to every job)")
    given = {k: v for k, v in policy.items() if k in BATCH_POLICY_KEYS}
    if not given:
        return jobs
    made: dict = {}  # jobs parsed from equal entries share their policy object: keep sharing it
    out = []
    for job in jobs:
        if id(job.policy) not in made:  # (the jobs hold their policies: ids stay unique)
            made[id(job.policy)] = replace(job.policy, **given)
        out.append(replace(job, policy=made[id(job.policy)]))
    return out


def register(sub, common) -> None:
    p = sub.add_parser("plan", parents=[common], help="dry-run ranking of placements for a job",
                       description="Rank placements (offering x start time) for a training job and compare "
                                   "with the baseline 'default region, start now'.",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG_PLAN)
    add_plan_args(p)
    p.add_argument("--server", action="store_true",
                   help="plan on the carbonsched server named by CARBONSCHED_SERVER (default: plan here)")
    p.set_defaults(func=cmd_plan)
