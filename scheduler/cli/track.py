"""CLI commands ``track``, ``estimate`` and ``report`` (registered through ``cli.main.COMMAND_MODULES``).

Thin: parse, call ``carbonsched.measure`` (``track``, ``mlco2``, ``ledger``, ``report``), format.
While a command is tracked, stdout belongs to it: the tracker's summary goes to stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from carbonsched.errors import CarbonschedError, UserInputError

EPILOG_TRACK = """\
examples:
  carbonsched track --region gcp:us-central1 -- python train.py --epochs 3
  carbonsched track --job llama-ft --plan plan.json -- torchrun --nproc-per-node 8 train.py
  carbonsched track --out run.json --gpu A100 --gpus 8 -- ./train.sh   (no NVML: modelled GPU energy)

Jobs launched by `carbonsched submit`/`agent` run under this tracker already (the record comes
back into the job store; `carbonsched status JOB` shows it). With --job JOB and no NVML, the GPU
energy is modelled for the GPUs the job was placed on (say otherwise with --gpu/--gpus). A job
keeps one measurement: tracking a job that has one is refused before the run, unless --replace.

The command's exit status is returned (128+N if killed by signal N; 127 if not found);
SIGINT/SIGTERM/SIGHUP/SIGUSR1/SIGUSR2 are passed on to it. GPU energy: NVML energy counters
(pip install 'carbonsched[gpu]'), else sampled NVML power, else the power model; CPU: RAPL when
readable, else the model. The record says which.
"""


def _power(a):
    from carbonsched.models import PowerModel

    return PowerModel(utilisation_factor=a.utilisation_factor) if a.utilisation_factor is not None else PowerModel()


def cmd_track(a: argparse.Namespace) -> int:
    from carbonsched.settings import resolve_settings
    from carbonsched.measure.energy import CPU_CHAIN, GPU_CHAIN
    from carbonsched.measure.track import check_args, check_destination, run_tracked, save_record

    cmd = list(a.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if a.gpus is not None and a.gpus < 1:
        raise UserInputError(f"--gpus must be at least 1, got {a.gpus}")
    if a.region:
        from carbonsched.refdata import resolve_region

        resolve_region(a.region)  # fail before the run, not after it
    plan_doc = _read_plan(a.plan) if a.plan else None
    if a.mlflow:
        from carbonsched.integrations.mlflow import import_mlflow

        import_mlflow()  # not installed: say so before the run
    settings = resolve_settings()
    check_args(cmd, a.interval)  # run_tracked checks them too; here before anything is opened
    # where the record goes, checked before the run; a job id prefix resolved once, used everywhere
    job_id, store = check_destination(settings, job_id=a.job, out=a.out, replace=a.replace)
    if job_id != a.job and not a.quiet:
        print(f"carbonsched: --job {a.job} is job {job_id}", file=sys.stderr)
    gpu, gpus, note = a.gpu, a.gpus or 0, None
    if job_id and gpu is None and a.gpus is None:
        gpu, gpus, note = _job_gpus(job_id, store)
    gpu_chain = GPU_CHAIN if a.gpu_method == "auto" else (a.gpu_method,)
    cpu_chain = CPU_CHAIN if a.cpu_method == "auto" else (a.cpu_method,)
    m = run_tracked(cmd, gpu_chain=gpu_chain, cpu_chain=cpu_chain, power=_power(a), gpu=gpu, gpus=gpus,
                    interval_s=a.interval, job_id=job_id or os.environ.get("CARBONSCHED_JOB_ID") or None,
                    region_id=a.region, plan_file=str(Path(a.plan).resolve()) if a.plan else None)
    record = m.to_dict()
    if note and m.gpu["method"] == "model":
        record["warnings"].append(note)
    if a.mark:  # the launchers' boot scripts: the record reaches the agent through the console
        from carbonsched.record import encode_marked

        print(encode_marked(record), file=sys.stderr, flush=True)
    try:
        written, notes = save_record(record, settings, job_id=job_id, out=a.out, store=store, replace=a.replace)
    except (CarbonschedError, OSError) as exc:  # the run happened: its record and exit status still count
        print(f"carbonsched: error: the record could not be kept ({exc}); here it is (JSON): save it to a "
              "file for `carbonsched report --measurement FILE`", file=sys.stderr)
        print(json.dumps(record, indent=2), file=sys.stderr)
        written, notes = [], []
    for n in notes:
        print(f"carbonsched: warning: {n}", file=sys.stderr)
    if not a.quiet:
        print(f"carbonsched: exit {m.exit_code} after {m.wall_seconds:.1f} s; IT energy {m.it_energy_kwh:.6f} kWh "
              f"(GPU {m.gpu['method']} {m.gpu['energy_kwh']:.6f}, CPU {m.cpu['method']} {m.cpu['energy_kwh']:.6f}, "
              f"memory model {m.memory['energy_kwh']:.6f})", file=sys.stderr)
        for w in m.warnings:
            print(f"carbonsched: note: {w}", file=sys.stderr)
        if written:
            print("carbonsched: record written to " + ", ".join(map(str, written)), file=sys.stderr)
    if a.mlflow:
        _log_to_mlflow(record, plan_doc, settings, quiet=a.quiet)
    return m.exit_code


def _log_to_mlflow(record: dict, plan: dict | None, settings, *, quiet: bool) -> None:
    """``track --mlflow``: the run into the active MLflow run ($MLFLOW_RUN_ID) or a new one in
    $MLFLOW_TRACKING_URI. The run has happened and its record is kept: a logging failure is a
    warning, and the exit status stays the command's."""
    from mlflow.exceptions import MlflowException  # installed: checked before the run

    from carbonsched.integrations.mlflow import log_run

    try:
        run_id = log_run(record, plan=plan, settings=settings)
    except (MlflowException, CarbonschedError, OSError) as exc:  # OSError: also requests' errors (a server away)
        print(f"carbonsched: warning: the run was not logged to MLflow ({exc.__class__.__name__}: {exc})",
              file=sys.stderr)
        return
    if not quiet:
        print(f"carbonsched: logged to MLflow run {run_id}", file=sys.stderr)


def _job_gpus(job_id: str, store) -> tuple[str | None, int, str | None]:
    """The GPUs a stored job was placed on, for the modelled fallback of ``track --job`` (no NVML
    reading): where it launched (its last attempt's placement), else its plan's best."""
    from carbonsched.run.store import UnknownJobError

    if store is None:
        return None, 0, None  # no usable store
    try:
        job = store.get(job_id)
        attempts = store.attempts(job_id)
    except (UnknownJobError, CarbonschedError):
        return None, 0, None  # a label used only with `track --job`, or no usable store
    placements = job.plan.get("placements") or [{}]
    placement = placements[min(attempts[-1].attempt, len(placements) - 1)] if attempts else placements[0]
    gpu, count = placement.get("gpu"), int(placement.get("gpu_count") or 0)
    if not gpu or not count:
        return None, 0, None
    return gpu, count, (f"GPU: no GPU reading; modelled as job {job_id}'s placement ({count}x {gpu}, "
                        f"{placement.get('region_id')}); give --gpu/--gpus to say otherwise")


def _read_plan(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except FileNotFoundError:
        raise UserInputError(f"plan file {path} does not exist; write one with `carbonsched plan ... --json > {path}`") from None
    except json.JSONDecodeError as exc:
        raise UserInputError(f"plan file {path} is not JSON ({exc})") from None
    if not isinstance(doc, dict) or "placements" not in doc:
        raise UserInputError(f"{path} is not a plan (carbonsched plan --json output)")
    return doc


def cmd_estimate(a: argparse.Namespace) -> int:
    from carbonsched.cli.render import render_comparison
    from carbonsched.measure.mlco2 import compare, read_calculator_data

    data = read_calculator_data(a.calculator_data) if a.calculator_data else None
    c = compare(a.gpu, a.gpus, a.hours, a.region, power=_power(a), vcpus=a.vcpus, memory_gib=a.memory_gib,
                calculator_data=data, calculator_gpu=a.calculator_gpu)
    print(json.dumps(c.to_dict(), indent=2) if a.json else render_comparison(c))
    return 0


def cmd_report(a: argparse.Namespace) -> int:
    from carbonsched.providers.grid import build_forecast_source

    from carbonsched.kubernetes import all_regions
    from carbonsched.measure.ledger import build_ledger
    from carbonsched.measure.report import disclosure, render
    from carbonsched.settings import resolve_settings
    from carbonsched.measure.track import load_job_record, open_store, read_record

    if bool(a.job) == bool(a.measurement):
        raise UserInputError("give a job id or --measurement FILE (one of them)")
    if a.job and not a.measurement:
        from carbonsched.server.client import remote_from_env

        remote = remote_from_env()
        if remote is not None:  # the server's store has the job and its measurement
            if a.plot or a.plan or a.region or a.gpu or a.baseline_region:
                raise UserInputError("with CARBONSCHED_SERVER set the report comes from the server as it is; "
                                     "--plot/--plan/--region/--gpu/--baseline-region need the local store")
            return _write_report(render(remote.report(a.job), a.format), a)
    settings = resolve_settings({"intensity_source": a.intensity_source})
    store = open_store(settings) if a.job else None
    record = read_record(a.measurement) if a.measurement else load_job_record(a.job, settings, store)
    plan = _read_plan(a.plan) if a.plan else (_read_plan(record["plan_file"]) if record.get("plan_file") else None)
    region = a.region
    if store is not None and (plan is None or region is None):
        from carbonsched.run.store import UnknownJobError

        try:  # a submitted job: the store knows its plan and where it ran
            job = store.get(a.job)
            plan = plan or job.plan
            region = region or job.region_id
        except UnknownJobError:
            pass  # a label used only with `track --job`
    source = build_forecast_source(settings)
    ledger = build_ledger(record, source=source, region=region, plan=plan,
                          baseline_region=a.baseline_region or settings.default_region, gpu=a.gpu, power=_power(a),
                          regions=all_regions(settings))
    text = render(disclosure(ledger, record), a.format)
    if a.plot:
        from carbonsched.cli.plots import plot_report

        plot_report(ledger, a.plot)
    _write_report(text, a)
    if a.plot and a.format != "json":
        print(f"plot written to {a.plot}", file=sys.stderr)
    return 0


def _write_report(text: str, a: argparse.Namespace) -> int:
    from carbonsched.cli._common import write_output  # not at the top: `track`'s own entry skips _common

    return write_output(text, a.output)


def _duration(text: str) -> float:
    """--hours as plan reads it: a number of hours, or 90m, 2d."""
    from carbonsched.errors import JobSpecError
    from carbonsched.units import parse_duration_hours

    try:
        return parse_duration_hours(text, "--hours")
    except JobSpecError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub, common) -> None:
    register_track(sub, common)
    register_estimate_report(sub, common)


def register_track(sub, common) -> None:
    t = sub.add_parser("track", parents=[common], help="run a command and measure its energy and emissions",
                       description="Run CMD, measure GPU/CPU energy while it runs, write a measurement record (JSON).",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG_TRACK,
                       usage="carbonsched track [options] -- CMD [ARG ...]")
    t.add_argument("--job", metavar="JOB", help="job id, or a unique prefix of one (or any other label): the record "
                                                "goes into the job store under it")
    t.add_argument("--replace", action="store_true", help="replace the measurement the job already has (without it, "
                                                          "a job's measurement is never replaced)")
    t.add_argument("--out", metavar="FILE", help="also write the record (JSON) here; without --job or --out it goes to "
                                                 "$CARBONSCHED_HOME/measurements/")
    t.add_argument("--region", metavar="REGION", help="where it runs, e.g. gcp:us-central1 (for the report)")
    t.add_argument("--plan", metavar="PLAN.json", help="the plan it follows (carbonsched plan --json), for forecast vs actual")
    t.add_argument("--gpu", help="GPU type, for the modelled fallback when NVML is unavailable")
    t.add_argument("--gpus", type=int, help="GPU count, for the modelled fallback")
    t.add_argument("--gpu-method", choices=["auto", "nvml", "nvml-energy", "nvml-power", "model"], default="auto")
    t.add_argument("--cpu-method", choices=["auto", "rapl", "model"], default="auto")
    t.add_argument("--interval", type=float, default=1.0, metavar="S", help="sampling period in seconds (default 1)")
    t.add_argument("--utilisation-factor", type=float, metavar="U", help="for modelled GPU energy (default 0.84)")
    t.add_argument("--mlflow", action="store_true", help="also log the run to MLflow: the active run ($MLFLOW_RUN_ID), "
                                                         "else a new one at $MLFLOW_TRACKING_URI (pip install "
                                                         "'carbonsched[mlflow]')")
    t.add_argument("--quiet", action="store_true", help="no summary on stderr")
    t.add_argument("--mark", action="store_true", help="also print the record as one marked line on stderr "
                                                       "(`carbonsched-measurement: ...`; cloud launchers read it "
                                                       "from the console)")
    t.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD", help="the command to run")
    t.set_defaults(func=cmd_track)


def register_estimate_report(sub, common) -> None:
    e = sub.add_parser("estimate", parents=[common], help="emissions estimate beside the ML CO2 Impact calculator's",
                       description="TDP x hours x intensity (the ML CO2 Impact calculator) beside carbonsched's model "
                                   "(utilisation factor, host power, PUE, embodied), each term shown.",
                       epilog="example: carbonsched estimate --gpu V100 --gpus 1 --hours 100 --region gcp:us-central1")
    e.add_argument("--gpu", required=True)
    e.add_argument("--gpus", type=int, default=1)
    e.add_argument("--hours", type=_duration, required=True, help="wall-clock hours on --gpus GPUs, e.g. 100 or 90m")
    e.add_argument("--region", required=True, metavar="REGION")
    e.add_argument("--utilisation-factor", type=float, metavar="U")
    e.add_argument("--vcpus", type=float, help="host vCPUs (default: the catalog's instance)")
    e.add_argument("--memory-gib", type=float, help="host memory (default: the catalog's instance)")
    e.add_argument("--calculator-data", metavar="DIR", help="folder with the calculator's gpus.csv and impact.csv")
    e.add_argument("--calculator-gpu", metavar="NAME", help="the calculator's hardware name, when ours does not match one")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_estimate)

    from carbonsched.providers.grid import CHOICES

    r = sub.add_parser("report", parents=[common], help="disclosure text of a tracked run (Markdown, LaTeX, JSON)",
                       description="Forecast vs actual and a disclosure paragraph for a tracked run.",
                       epilog="example: carbonsched report --measurement run.json --region gcp:us-central1 --format latex")
    r.add_argument("job", nargs="?", metavar="JOB", help="job id (its record in the store or measurement folder)")
    r.add_argument("--measurement", metavar="FILE", help="a measurement record from carbonsched track")
    r.add_argument("--format", choices=["md", "latex", "json"], default="md")
    r.add_argument("--plan", metavar="PLAN.json", help="the plan (default: the one named in the record)")
    r.add_argument("--region", metavar="REGION", help="where it ran (default: the record's)")
    r.add_argument("--baseline-region", metavar="REGION", help="counterfactual region (default: settings' default region)")
    r.add_argument("--gpu", help="GPU type when NVML's device name is not recognised")
    r.add_argument("--utilisation-factor", type=float, metavar="U", help="for the energy-estimate comparison")
    r.add_argument("--intensity-source", choices=CHOICES)
    r.add_argument("--plot", metavar="FILE.png", help="forecast vs actual plot")
    r.add_argument("--output", "-o", metavar="FILE", help="write the text here instead of stdout")
    r.set_defaults(func=cmd_report)


if __name__ == "__main__":  # `python -m carbonsched.cli.track ...`: what the local launcher runs every job under
    from carbonsched.cli.main import main

    sys.exit(main(["track", *sys.argv[1:]], modules=["carbonsched.cli.track:register_track"]))
