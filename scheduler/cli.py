"""The ``carbonsched`` command line: parse, call the library, format. No logic lives here.

Exit codes: 0 success; 1 internal or data error; 2 bad input (job file, flags, constraints,
infeasible plan); 130 interrupted.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from datetime import datetime, timezone

from .errors import CarbonschedError, UserInputError
from .jobspec import PROVIDERS

from carbonsched.policies.objectives import OBJECTIVES
from carbonsched.providers.grid import CHOICES as SOURCE_CHOICES


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2), like every other carbonsched error."""

    def error(self, message: str):
        self.exit(2, f"carbonsched: error: {message} (see `{self.prog} --help`)\n")

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
    p.add_argument("--batch", metavar="JOBS.toml|DIR",
                   help="plan many jobs jointly under shared capacity (see carbonsched.batchfile for the format)")
    p.add_argument("--capacity", type=float, metavar="GPUS",
                   help="with --batch: GPUs per hour per (region, GPU type) where the batch file sets none")
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
    c.add_argument("--provider", action="append", choices=PROVIDERS, help="allowed provider (repeatable)")
    c.add_argument("--region", action="append", metavar="PATTERN", help="allowed region glob, e.g. 'aws:eu-*' (repeatable)")
    c.add_argument("--exclude-region", action="append", metavar="PATTERN", help="excluded region glob (repeatable)")
    c.add_argument("--min-gpu-memory-gb", type=float, metavar="GB")
    c.add_argument("--max-usd-per-hour", type=float, metavar="USD")
    c.add_argument("--max-total-usd", type=float, metavar="USD")
    c.add_argument("--carbon-budget-kg", type=float, metavar="KG")
    c.add_argument("--spot", action="store_true", default=None, help="also consider spot capacity")
    o = p.add_argument_group("policy and model")
    o.add_argument("--objective", choices=OBJECTIVES)
    o.add_argument("--order", metavar="T,T,...", type=lambda t: [x.strip() for x in t.split(",") if x.strip()],
                   help="for lexicographic: term order, e.g. carbon,cost")
    o.add_argument("--tolerance-pct", type=float, metavar="PCT", help="for lexicographic: differences below this tie")
    o.add_argument("--weights", type=_weights, metavar="T=W,...", help="for weighted: carbon=1,cost=0.5,time=0")
    o.add_argument("--risk", choices=["mean", "p90"], help="rank carbon by the mean forecast or its p90 (risk-averse)")
    o.add_argument("--intensity-source", choices=SOURCE_CHOICES,
                   help="where intensities come from (default: settings, 'auto': a live source when its credentials are set)")
    o.add_argument("--intensity-file", action="append", metavar="[ZONE=]PATH",
                   help="your own hourly history (CSV/Parquet; repeatable): replayed where it covers the window, "
                        "forecast from beyond it")
    o.add_argument("--intensity-file-signal", choices=["lca", "direct"], default="lca",
                   help="what the history files hold: lifecycle (lca, default) or direct intensity")
    o.add_argument("--utilisation-factor", type=float, metavar="U", help="GPU power / TDP while training (default 0.84)")
    o.add_argument("--baseline-region", metavar="REGION", help="the 'default region, now' to compare with (default aws:us-east-1)")
    out = p.add_argument_group("output")
    out.add_argument("--now", metavar="ISO8601", help="plan as of this instant (default: the clock); makes plans reproducible")
    out.add_argument("--top", type=int, metavar="N",
                     help="placements to show (default 10, or the whole front for pareto; 0 = all)")
    out.add_argument("--json", action="store_true", help="machine-readable output (schema_version 1)")
    out.add_argument("--plot", metavar="FILE.png", help="also draw the top regions' forecasts with the chosen windows "
                                                        "(needs carbonsched[plot])")


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
    put("policy.order", a.order)
    put("policy.tolerance_pct", a.tolerance_pct)
    put("power.utilisation_factor", a.utilisation_factor)
    put("baseline.region", a.baseline_region)
    return raw


def intensity_options(a: argparse.Namespace, source_name: str | None):
    """(settings, forecast source or None) from --intensity-source/--source and --intensity-file:
    one place for every command that plans or forecasts."""
    from .settings import resolve_settings

    settings = resolve_settings({"intensity_source": source_name})
    if not getattr(a, "intensity_file", None):
        return settings, None
    from carbonsched.providers.grid import build_forecast_source

    return settings, build_forecast_source(settings, name=source_name, files=a.intensity_file,
                                           file_signal=a.intensity_file_signal)


def _now(a: argparse.Namespace) -> datetime:
    from .units import parse_utc

    return parse_utc(a.now, "--now") if a.now else datetime.now(timezone.utc)


def cmd_plan(a: argparse.Namespace) -> int:
    from .jobspec import job_from_dict, merge, read_job_file
    from .planner import plan

    if a.top is not None and a.top < 0:
        raise UserInputError("--top must be >= 0 (0 shows all)")
    if getattr(a, "batch", None):
        return _plan_batch(a)
    raw = read_job_file(a.job) if a.job else {}
    job = job_from_dict(merge(raw, _overrides(a)))
    top = a.top if a.top is not None else (0 if job.policy.objective == "pareto" else 10)
    settings, source = intensity_options(a, a.intensity_source)
    result = plan(job, now=_now(a), top=top or None, settings=settings, forecast_source=source)
    if a.plot:
        from .plots import plot_plan

        plot_plan(result, a.plot)
    if a.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        from .render import render_plan

        print(render_plan(result))
        if a.plot:
            print(f"plot written to {a.plot}")
    return 0


def _plan_batch(a: argparse.Namespace) -> int:
    from .batch import plan_batch
    from .batchfile import read_batch

    if a.job:
        raise UserInputError("give either a job file or --batch, not both")
    jobs, capacity, default = read_batch(a.batch)
    if a.capacity is not None:
        default = a.capacity
    settings, source = intensity_options(a, a.intensity_source)
    result = plan_batch(jobs, now=_now(a), capacity=capacity or None, default_capacity=default,
                        settings=settings, forecast_source=source, objective=a.objective)
    doc = result.to_dict()
    if a.json:
        print(json.dumps(doc, indent=2))
        return 0
    from .render import render_batch

    print(render_batch(doc))
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


def cmd_forecast(a: argparse.Namespace) -> int:
    if a.target == "backtest":
        return _backtest(a)
    from .forecasting import forecast_intensity, forecast_to_dict

    settings, source = intensity_options(a, a.source)
    f = forecast_intensity(a.target, now=_now(a), hours=a.hours, settings=settings, forecast_source=source)
    if a.plot:
        from .plots import plot_forecast

        plot_forecast(f, a.plot)
    if a.json:
        print(json.dumps(forecast_to_dict(f), indent=2))
    else:
        from .render import render_forecast

        print(render_forecast(f))
        if a.plot:
            print(f"plot written to {a.plot}")
    return 0


def _backtest(a: argparse.Namespace) -> int:
    from carbonsched.providers.grid.backtest import backtest, read_history_csv

    if not a.history:
        raise UserInputError("forecast backtest needs --history FILE (an hourly history CSV) and usually --zone Z")
    if not 1 <= a.horizon <= 168:
        raise UserInputError(f"--horizon must be between 1 and 168 hours, got {a.horizon}")
    values, start, info = read_history_csv(a.history, zone=a.zone, signal=a.signal)
    try:
        result = backtest(values, start, horizon_h=a.horizon, zone=info.get("zone") or a.zone or "")
    except ValueError as exc:
        raise UserInputError(f"cannot backtest {a.history}: {exc}") from None
    doc = result.to_dict()
    if a.json:
        print(json.dumps(doc, indent=2))
        return 0
    from .render import table

    rows = [[name, _fmt(m.get("mae")), _fmt(m.get("mape")), _fmt(m.get("spearman"), 2)] for name, m in doc["models"].items()]
    print(f"Backtest of {doc['zone'] or a.history}: {len(result.origins)} rolling origins, horizon {a.horizon} h, "
          f"signal {info.get('signal')}")
    print(table(["model", "MAE g/kWh", "MAPE %", "Spearman"], rows, right={1, 2, 3}))
    return 0


def _fmt(x, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


# Commands that live in their own modules: each has ``register(subparsers, common_parent)``,
# adding its parser(s) with ``parents=[common_parent]`` and ``set_defaults(func=...)``.
COMMAND_MODULES: list[str] = ["carbonsched.jobs_cli", "carbonsched.track_cli", "carbonsched.catalog_cli",
                               "carbonsched.policy_cli"]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="carbonsched",
        description="Carbon-aware placement for ML training: rank where (cloud, region, GPU) and when to run "
                    "by forecast carbon, cost and hardware efficiency.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="start with: carbonsched plan --gpu A100 --gpus 8 --hours 12 --max-delay 24h",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("plan", parents=[common], help="dry-run ranking of placements for a job",
                       description="Rank placements (offering x start time) for a training job and compare "
                                   "with the baseline 'default region, start now'.",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG_PLAN)
    _add_plan_args(p)
    p.set_defaults(func=cmd_plan)
    f = sub.add_parser(
        "forecast", parents=[common], help="carbon-intensity forecast of a region or grid zone; or backtest the forecaster",
        description="Hourly grid carbon intensity for a cloud region (aws:eu-west-1) or an Electricity Maps zone "
                    "(DE), from the configured source with fallbacks. `carbonsched forecast backtest --history FILE "
                    "--zone Z` scores the forecaster against naive baselines on your history.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  carbonsched forecast aws:eu-west-1 --hours 48\n"
               "  carbonsched forecast DE --json\n  carbonsched forecast gcp:europe-west4 --plot ci.png\n"
               "  carbonsched forecast backtest --history ES_2022_hourly.csv --signal lca --horizon 24")
    f.add_argument("target", metavar="REGION_OR_ZONE", help="region id, grid zone, or 'backtest'")
    f.add_argument("--hours", type=int, default=48, help="hours from now (default 48, max 336)")
    f.add_argument("--source", choices=SOURCE_CHOICES,
                   help="intensity source (default: settings, 'auto')")
    f.add_argument("--intensity-file", action="append", metavar="[ZONE=]PATH", help="hourly history file (repeatable)")
    f.add_argument("--intensity-file-signal", choices=["lca", "direct"], default="lca")
    f.add_argument("--now", metavar="ISO8601", help="forecast from this instant (default: the clock)")
    f.add_argument("--plot", metavar="FILE.png", help="also draw the forecast (needs carbonsched[plot])")
    f.add_argument("--json", action="store_true")
    b = f.add_argument_group("backtest")
    b.add_argument("--history", metavar="FILE", help="hourly history CSV (simple, 123-zone wide, or Electricity Maps export)")
    b.add_argument("--zone", help="zone column of a wide history file")
    b.add_argument("--horizon", type=int, default=24, help="forecast horizon in hours (default 24)")
    b.add_argument("--signal", choices=["lca", "direct"], default="lca", help="which column of an Electricity Maps export")
    f.set_defaults(func=cmd_forecast)
    r = sub.add_parser("regions", parents=[common], help="where a GPU type is offered, with grid intensity and price",
                       description="List regions offering a GPU type, greenest (yearly mean intensity) first.")
    r.add_argument("--gpu", help="GPU type, e.g. H100 (default: any)")
    r.add_argument("--provider", choices=PROVIDERS)
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_regions)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub, common)
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
    except BrokenPipeError:  # e.g. `carbonsched plan ... | head`
        return 0
    except OSError as exc:  # a path the user gave cannot be read or written
        if args.debug:
            raise
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"carbonsched: error: cannot use{where}: {exc.strerror or exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
