"""The ``carbonsched`` command line: parse, call the library, format. No logic lives here.

Exit codes: 0 success; 1 internal or data error; 2 bad input (job file, flags, constraints,
infeasible plan); 130 interrupted.
"""
from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone

from .errors import CarbonschedError, UserInputError

EPILOG_PLAN = """\
examples:
  carbonsched plan examples/job.toml
  carbonsched plan --gpu A100 --gpus 8 --hours 12 --max-delay 24h
  carbonsched plan job.toml --objective cost --top 5 --json
  carbonsched plan job.toml --region 'gcp:europe-*' --region 'aws:eu-*' --deadline 2026-12-01T00:00Z

Flags override the job file's keys. Times are UTC (ISO 8601). Without --max-delay or a
deadline only "start now" is considered. Job file keys: see `python -m pydoc carbonsched.jobspec`.
"""


def _weights(text: str) -> dict[str, float]:
    out = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"weights look like carbon=1,cost=0.5 (got {text!r})")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"weight {key.strip()!r} is not a number: {value!r}") from None
    return out


def _add_plan_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("job", nargs="?", help="job file (TOML); or describe the job with --gpu/--gpus/--hours")
    g = p.add_argument_group("job (override the file)")
    g.add_argument("--gpu", help="reference GPU the runtime is for, e.g. A100, H100, L4")
    g.add_argument("--gpus", type=int, help="GPUs per instance, e.g. 8")
    g.add_argument("--hours", help="runtime on the reference GPUs, e.g. 12 or 90m")
    g.add_argument("--name", help="job label")
    w = p.add_argument_group("window (UTC)")
    w.add_argument("--earliest-start", metavar="ISO8601")
    w.add_argument("--deadline", metavar="ISO8601", help="the job must finish by then")
    w.add_argument("--max-delay", metavar="DURATION", help="latest start after the earliest, e.g. 24h, 2d")
    c = p.add_argument_group("constraints")
    c.add_argument("--accept-gpu", action="append", metavar="GPU", help="acceptable GPU type (repeatable)")
    c.add_argument("--gpu-count", action="append", type=int, metavar="N", help="acceptable GPUs per instance (repeatable)")
    c.add_argument("--provider", action="append", metavar="P", help="aws or gcp (repeatable)")
    c.add_argument("--region", action="append", metavar="PATTERN", help="allowed region glob, e.g. 'aws:eu-*' (repeatable)")
    c.add_argument("--exclude-region", action="append", metavar="PATTERN", help="excluded region glob (repeatable)")
    c.add_argument("--min-gpu-memory-gb", type=float, metavar="GB")
    c.add_argument("--max-usd-per-hour", type=float, metavar="USD")
    c.add_argument("--max-total-usd", type=float, metavar="USD")
    c.add_argument("--carbon-budget-kg", type=float, metavar="KG")
    c.add_argument("--spot", action="store_true", default=None, help="also consider spot capacity")
    o = p.add_argument_group("policy and model")
    o.add_argument("--objective", choices=["carbon", "cost", "time", "weighted", "lexicographic", "pareto"])
    o.add_argument("--weights", type=_weights, metavar="T=W,...", help="for weighted: carbon=1,cost=0.5,time=0")
    o.add_argument("--risk", choices=["mean", "p90"], help="rank carbon by the mean forecast or its p90 (risk-averse)")
    o.add_argument("--intensity-source", metavar="S",
                   help="auto (default), profile, electricitymaps, watttime, uk-carbon-intensity")
    o.add_argument("--utilisation-factor", type=float, metavar="U", help="GPU power / TDP while training (default 0.84)")
    o.add_argument("--baseline-region", metavar="REGION", help="the 'default region, now' to compare with (default aws:us-east-1)")
    out = p.add_argument_group("output")
    out.add_argument("--now", metavar="ISO8601", help="plan as of this instant (default: the clock); makes plans reproducible")
    out.add_argument("--top", type=int, default=10, metavar="N", help="placements to show (default 10; 0 = all)")
    out.add_argument("--json", action="store_true", help="machine-readable output (schema_version 1)")


def _overrides(a: argparse.Namespace) -> dict:
    """Flags -> a raw job table in the file's shape (only flags that were given)."""
    raw: dict = {}

    def put(path: str, value):
        if value is None:
            return
        *parents, leaf = path.split(".")
        table = raw
        for part in parents:
            table = table.setdefault(part, {})
        table[leaf] = value

    put("gpu", a.gpu)
    put("gpus", a.gpus)
    if a.hours is not None:
        try:
            put("hours", float(a.hours))
        except ValueError:
            put("hours", a.hours)
    put("name", a.name)
    put("window.earliest_start", a.earliest_start)
    put("window.deadline", a.deadline)
    put("window.max_delay", a.max_delay)
    put("constraints.gpu_types", a.accept_gpu)
    put("constraints.gpu_counts", a.gpu_count)
    put("constraints.providers", a.provider)
    put("constraints.regions", a.region)
    put("constraints.exclude_regions", a.exclude_region)
    put("constraints.min_gpu_memory_gb", a.min_gpu_memory_gb)
    put("constraints.max_usd_per_hour", a.max_usd_per_hour)
    put("constraints.max_total_usd", a.max_total_usd)
    put("constraints.carbon_budget_kg", a.carbon_budget_kg)
    put("constraints.spot", a.spot)
    put("policy.objective", a.objective)
    put("policy.weights", a.weights)
    put("policy.risk", a.risk)
    put("power.utilisation_factor", a.utilisation_factor)
    put("baseline.region", a.baseline_region)
    return raw


def _now(a: argparse.Namespace) -> datetime:
    from .units import parse_utc

    return parse_utc(a.now, "--now") if a.now else datetime.now(timezone.utc)


def cmd_plan(a: argparse.Namespace) -> int:
    from .jobspec import job_from_dict, merge, read_job_file
    from .planner import plan

    if a.top < 0:
        raise UserInputError("--top must be >= 0 (0 shows all)")
    raw = read_job_file(a.job) if a.job else {}
    job = job_from_dict(merge(raw, _overrides(a)))
    from .settings import resolve_settings

    settings = resolve_settings({"intensity_source": a.intensity_source})
    result = plan(job, now=_now(a), top=a.top or None, settings=settings)
    if a.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        from .render import render_plan

        print(render_plan(result))
    return 0


def cmd_regions(a: argparse.Namespace) -> int:
    from .regions import list_regions

    rows = list_regions(gpu=a.gpu, provider=a.provider)
    if a.json:
        print(json.dumps({"schema_version": 1, "gpu": a.gpu, "provider": a.provider, "regions": rows}, indent=2))
    elif not rows:
        print(f"no region offers {a.gpu or 'GPUs'}" + (f" on {a.provider}" if a.provider else ""))
    else:
        from .render import render_regions

        print(render_regions(rows))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="carbonsched",
        description="Carbon-aware placement for ML training: rank where (cloud, region, GPU) and when to run "
                    "by forecast carbon, cost and hardware efficiency.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="start with: carbonsched plan --gpu A100 --gpus 8 --hours 12 --max-delay 24h",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("plan", help="dry-run ranking of placements for a job",
                       description="Rank placements (offering x start time) for a training job and compare "
                                   "with the baseline 'default region, start now'.",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG_PLAN)
    _add_plan_args(p)
    p.set_defaults(func=cmd_plan)
    r = sub.add_parser("regions", help="where a GPU type is offered, with grid intensity and price",
                       description="List regions offering a GPU type, greenest (yearly mean intensity) first.")
    r.add_argument("--gpu", help="GPU type, e.g. H100 (default: any)")
    r.add_argument("--provider", choices=["aws", "gcp"])
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_regions)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except CarbonschedError as exc:
        if args.debug:
            raise
        print(f"carbonsched: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("carbonsched: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
