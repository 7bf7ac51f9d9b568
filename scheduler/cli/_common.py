"""What the command modules share: the parser class, the job flags of plan/submit, "now", and
the intensity options. Private to cli/ (nothing outside cli/ imports cli/)."""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from carbonsched.policies.objectives import OBJECTIVES
from carbonsched.providers.grid import CHOICES as SOURCE_CHOICES
from carbonsched.spec.job import PROVIDERS


def parse_weights(text: str) -> dict[str, float]:
    out = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"weights look like carbon=1,cost=0.5 (got {text!r})")
        if key.strip() in out:  # which one was meant?
            raise argparse.ArgumentTypeError(f"weight {key.strip()!r} is given twice in {text!r}; give it once")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"weight {key.strip()!r} is not a number: {value!r}") from None
    return out


def add_plan_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("job", nargs="?", help="job file (TOML); or describe the job with --gpu/--gpus/--hours")
    p.add_argument("--batch", metavar="JOBS.toml|DIR",
                   help="plan many jobs jointly under shared capacity (see carbonsched.spec.batch_file for the format)")
    p.add_argument("--capacity", type=float, metavar="GPUS",
                   help="with --batch: GPUs per hour in each (region, GPU type) the batch file does not list "
                        "(replaces its [capacity] default)")
    p.add_argument("--top-k", type=int, default=200, metavar="K",
                   help="with --batch: candidates (offering x start) kept per job, best first (default 200; "
                        "0 = all): more finds room under contention, fewer solves faster")
    p.add_argument("--time-limit", type=float, default=30.0, metavar="S",
                   help="with --batch: seconds the solver (LP and integer search) may take before it returns its best, "
                        "with the gap it proved (default 30)")
    p.add_argument("--strict", action="store_true",
                   help="with --batch: fail (exit 2, like any infeasible plan) unless every job fits, instead of placing what fits and "
                        "listing the rest (highest priority placed first)")
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
    o.add_argument("--policy", metavar="POLICY.toml",
                   help="enforce this organisation policy file (default: the `policy` setting or CARBONSCHED_POLICY): "
                        "the job is planned as the policy leaves it, --json records the file (policy_file), and a "
                        "job or plan that breaks it is refused (exit 2) naming the rule; see "
                        "`python -m pydoc carbonsched.spec.policy_file`")
    o.add_argument("--objective", choices=OBJECTIVES)
    o.add_argument("--order", metavar="T,T,...", type=lambda t: [x.strip() for x in t.split(",") if x.strip()],
                   help="for lexicographic: term order, e.g. carbon,cost")
    o.add_argument("--tolerance-pct", type=float, metavar="PCT", help="for lexicographic: differences below this tie")
    o.add_argument("--weights", type=parse_weights, metavar="T=W,...", help="for weighted: carbon=1,cost=0.5,time=0")
    o.add_argument("--risk", choices=["mean", "p90"], help="rank carbon by the mean forecast or its p90 (risk-averse)")
    o.add_argument("--deferral", choices=["expected", "robust"],
                   help="robust (default): wait only when the later window's p90 beats starting now, here and "
                        "in the greenest region now (a gain the forecast's own error could erase is no reason to "
                        "wait); expected: wait for any gain in the mean forecast (more saving on average, but "
                        "3-34 %% of waits end worse than starting now; `carbonsched backtest decisions` measures both)")
    o.add_argument("--min-gain", type=float, metavar="PCT", dest="min_gain_pct",
                   help="carbon/cost/time objectives: wait for a later start or move region only when that saves "
                        "more than PCT %% (smaller gains tie, and ties go to the earliest start; default 0)")
    o.add_argument("--intensity-source", choices=SOURCE_CHOICES,
                   help="where intensities come from (default: settings, 'auto': a live source when its credentials are set)")
    o.add_argument("--intensity-file", action="append", metavar="[ZONE=]PATH",
                   help="your own hourly history (CSV/Parquet; repeatable): replayed where it covers the window, "
                        "forecast from beyond it")
    o.add_argument("--intensity-file-signal", choices=["lca", "direct"], default="lca",
                   help="what the history files hold: lifecycle (lca, default) or direct intensity")
    o.add_argument("--exclude-flagged-prices", action="store_true", default=None,
                   help="rank without offerings whose catalog price is in doubt (see `carbonsched catalog check`)")
    o.add_argument("--utilisation-factor", type=float, metavar="U", help="GPU power / TDP while training (default 0.84)")
    o.add_argument("--baseline-region", metavar="REGION", help="the 'default region, now' to compare with (default aws:us-east-1)")
    out = p.add_argument_group("output")
    out.add_argument("--now", metavar="ISO8601", help="plan as of this instant (default: the clock); makes plans reproducible")
    out.add_argument("--top", type=int, metavar="N",
                     help="placements to show (default 10, or the whole front for pareto; 0 = all)")
    out.add_argument("--json", action="store_true", help="machine-readable output (schema_version 1)")
    out.add_argument("--plot", metavar="FILE.png", help="also draw the top regions' forecasts with the chosen windows "
                                                        "(needs carbonsched[plot])")


def overrides(a: argparse.Namespace) -> dict:
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
    put("policy.deferral", getattr(a, "deferral", None))
    put("policy.order", a.order)
    put("policy.tolerance_pct", a.tolerance_pct)
    put("policy.min_gain_pct", a.min_gain_pct)
    put("power.utilisation_factor", a.utilisation_factor)
    put("baseline.region", a.baseline_region)
    return raw


def intensity_options(a: argparse.Namespace, source_name: str | None):
    """(settings, forecast source or None) from --intensity-source/--source and --intensity-file:
    one place for every command that plans or forecasts."""
    from carbonsched.settings import resolve_settings

    settings = resolve_settings({"intensity_source": source_name,
                                 "exclude_flagged_prices": getattr(a, "exclude_flagged_prices", None)})
    if not getattr(a, "intensity_file", None):
        return settings, None
    from carbonsched.providers.grid import build_forecast_source

    return settings, build_forecast_source(settings, name=source_name, files=a.intensity_file,
                                           file_signal=a.intensity_file_signal)


def write_output(text: str, path: str | None) -> int:
    """``text`` to the file ``path`` (``--output``/``-o``), else to stdout; 0 for the exit status."""
    if path:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return 0


def job_file_dir(path: str | None) -> Path | None:
    """The job file's folder: its relative workdir and file-mount paths start there."""
    return Path(path).resolve().parent if path else None


def policy_option(a: argparse.Namespace, settings):
    """The policy to enforce (a ``PolicyFile``) or None: ``--policy FILE``, else the settings'
    (``policy`` in the config file, or ``CARBONSCHED_POLICY``). There is no flag to turn an
    organisation's policy off; a missing or invalid file is an error naming it."""
    from carbonsched.errors import PolicyFileError
    from carbonsched.spec.policy_file import load_policy

    if getattr(a, "policy", None):
        return load_policy(a.policy)
    if getattr(settings, "policy", None) is None:
        return None
    try:
        return load_policy(settings.policy)
    except PolicyFileError as exc:
        where = f"`policy` in {settings.config_path} or " if settings.config_path else ""
        raise PolicyFileError(f"{exc} (the organisation policy set by {where}CARBONSCHED_POLICY)") from None


def no_local_policy(a: argparse.Namespace) -> None:
    """With a server the server enforces its own policy: a local --policy would be silently unused."""
    from carbonsched.errors import UserInputError

    if getattr(a, "policy", None):
        raise UserInputError("--policy applies to plans made here; the server enforces its own policy (its "
                             "`policy` setting): drop --policy, or unset CARBONSCHED_SERVER / drop --server")


def now_from(a: argparse.Namespace) -> datetime:
    from carbonsched.units import parse_utc

    return parse_utc(a.now, "--now") if a.now else datetime.now(timezone.utc)


def fmt(x, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


class Progress:
    """``progress(done, total)`` callbacks drawn as one line on stderr, only for work that has run
    over ``after_s`` seconds, only on a terminal, never with ``--json`` (machines read stdout;
    a log file should not fill with carriage returns)."""

    def __init__(self, label: str, *, quiet: bool = False, after_s: float = 2.0, stream=None,
                 clock=time.monotonic):
        self.label, self.stream, self.clock, self.after_s = label, stream or sys.stderr, clock, after_s
        self.enabled = not quiet and getattr(self.stream, "isatty", lambda: False)()
        self.t0 = clock()
        self.drawn = False

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or self.clock() - self.t0 < self.after_s:
            return
        self.stream.write(f"\r{self.label}: {done}/{total}")
        self.drawn = True
        if done >= total:
            self.stream.write("\n")
            self.drawn = False
        self.stream.flush()

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


def emit(a: argparse.Namespace, value, *, to_dict, render, plot=None) -> int:
    """Write a command's result: the ``--plot`` PNG first (a plotting error leaves stdout empty),
    then ``--json`` (``to_dict(value)``) or the text (``render(value)``)."""
    wants_plot = plot is not None and getattr(a, "plot", None)
    if wants_plot:
        plot(value, a.plot)
    if a.json:
        print(dumps_indented(to_dict(value)))
    else:
        print(render(value))
        if wants_plot:
            print(f"plot written to {a.plot}")
    return 0


class _NotPlain(Exception):
    pass


def _float_text(o: float) -> str:
    if o != o:
        return "NaN"
    if o == float("inf") or o == float("-inf"):
        return "Infinity" if o > 0 else "-Infinity"
    return float.__repr__(o)


def _scalar_text(o) -> str:
    t = type(o)
    if t is str:
        return json.encoder.encode_basestring_ascii(o)
    if o is None:
        return "null"
    if t is bool:
        return "true" if o else "false"
    if t is int:
        return int.__repr__(o)
    if t is float:
        return _float_text(o)
    raise _NotPlain


_SCALARS = (str, int, float, bool, type(None))


def dumps_indented(value) -> str:
    """Exactly ``json.dumps(value, indent=2)``, faster where a document repeats itself: the
    standard library writes indented JSON with its pure-Python encoder, and a 10k-job batch plan
    is 35 MB of placements, most of them equal to another job's. A dict of plain values (and
    lists of them) is written once per content and depth; anything that is not plain JSON goes
    to ``json.dumps`` itself (its errors included)."""
    memo: dict = {}
    out: list[str] = []
    put = out.append

    def flat_key(d: dict, depth: int):
        key = [depth]
        for k, v in d.items():
            t = type(v)
            if type(k) is not str:
                return None
            if t is list:
                if not all(type(x) in _SCALARS for x in v):
                    return None
                v = tuple((type(x), x.hex() if type(x) is float else x) for x in v)
            elif t not in _SCALARS:
                return None
            elif t is float:
                v = v.hex()  # 0.0 and -0.0 differ, 1 and 1.0 and True too (the type is in the key)
            key.append((k, t, v))
        return tuple(key)

    def seq(items, depth: int, open_: str, close: str) -> str:
        if not items:
            return open_ + close
        sep = "\n" + "  " * (depth + 1)
        return open_ + sep + ("," + sep).join(items) + "\n" + "  " * depth + close

    def flat(d: dict, depth: int) -> str:
        parts = []
        for k, v in d.items():
            text = seq([_scalar_text(x) for x in v], depth + 1, "[", "]") if type(v) is list else _scalar_text(v)
            parts.append(json.encoder.encode_basestring_ascii(k) + ": " + text)
        return seq(parts, depth, "{", "}")

    def enc(o, depth: int) -> None:
        if type(o) in _SCALARS:
            put(_scalar_text(o))
        elif isinstance(o, dict):
            key = flat_key(o, depth) if o else None
            if key is not None:
                text = memo.get(key)
                if text is None:
                    text = memo[key] = flat(o, depth)
                put(text)
                return
            if not o:
                put("{}")
                return
            sep = "\n" + "  " * (depth + 1)
            put("{")
            for i, (k, v) in enumerate(o.items()):
                if type(k) is not str:
                    raise _NotPlain
                put((sep if i == 0 else "," + sep) + json.encoder.encode_basestring_ascii(k) + ": ")
                enc(v, depth + 1)
            put("\n" + "  " * depth + "}")
        elif type(o) in (list, tuple):
            if not o:
                put("[]")
                return
            sep = "\n" + "  " * (depth + 1)
            put("[")
            for i, v in enumerate(o):
                put(sep if i == 0 else "," + sep)
                enc(v, depth + 1)
            put("\n" + "  " * depth + "]")
        else:
            raise _NotPlain

    try:
        enc(value, 0)
    except (_NotPlain, RecursionError):
        return json.dumps(value, indent=2)
    return "".join(out)


def jsonable(value):
    """A job file's content as JSON (TOML datetimes as ISO 8601 text, which job files accept too)."""
    from carbonsched.units import iso_utc

    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return iso_utc(value if value.tzinfo else value.replace(tzinfo=timezone.utc))
    return value


def open_store(database: str | None = None, *, create: bool = False, settings=None):
    """The job store ``database`` (a SQLite path or postgresql:// URL) names, else the configured
    one. Without ``create`` a SQLite file that does not exist is an error, not a new empty store."""
    from carbonsched.errors import UserInputError
    from carbonsched.run.backends import is_database_url
    from carbonsched.run.store import Store

    if settings is None:
        from carbonsched.settings import resolve_settings

        settings = resolve_settings()
    target = database or Store.target_for(settings)
    if not create and not is_database_url(str(target)) and not Path(str(target)).exists():
        raise UserInputError(f"no job store at {target}; check CARBONSCHED_HOME / CARBONSCHED_DATABASE_URL (or "
                             "--database where a command has it); a store is created by the first submit, "
                             "`db migrate` or `db import`")
    return Store(target)
