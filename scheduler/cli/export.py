"""``carbonsched export skypilot JOB.toml``: the job, planned, as a SkyPilot task YAML whose
``resources.ordered`` is the plan's ranking (``carbonsched.providers.cloud.skypilot.export_skypilot``)."""
from __future__ import annotations

import argparse
import sys

from carbonsched.errors import UserInputError
from carbonsched.cli._common import intensity_options, job_file_dir, now_from, policy_option, write_output
from carbonsched.providers.grid import CHOICES as SOURCE_CHOICES
from carbonsched.spec.job import PROVIDERS

EPILOG = """\
examples:
  carbonsched export skypilot job.toml > task.yaml && sky launch -c my-run task.yaml
  carbonsched export skypilot job.toml --top 3 --spot > task.yaml && sky jobs launch task.yaml

The ordered entries are the plan's best placements, one per (region, instance, market), best
first; a comment block above them gives each one's rank, kgCO2e and cost. The task is checked
by SkyPilot itself (sky.Task) when SkyPilot is installed (pip install 'carbonsched[skypilot]').
"""


def cmd_export(a: argparse.Namespace) -> int:
    from carbonsched.planning import plan
    from carbonsched.providers.cloud.skypilot import export_skypilot
    from carbonsched.spec.job import job_from_dict, merge, read_job_file

    if a.top < 1:
        raise UserInputError("--top must be at least 1 (the number of ordered entries)")
    raw: dict = {}
    if a.spot:
        raw.setdefault("constraints", {})["spot"] = True
    if a.provider:
        raw.setdefault("constraints", {})["providers"] = a.provider
    if a.region:
        raw.setdefault("constraints", {})["regions"] = a.region
    job = job_from_dict(merge(read_job_file(a.job), raw), base=job_file_dir(a.job))
    if job.interruptible is not None:  # a SkyPilot task runs start to end: plan (and state the carbon of) that
        from dataclasses import replace

        job = replace(job, interruptible=None)
        print("carbonsched: note: the exported task runs start to end, so it is planned as one uninterrupted run; "
              "the job's [interruptible] segments need `carbonsched submit` (its agent stops and resumes the run)",
              file=sys.stderr)
    settings, source = intensity_options(a, a.intensity_source)
    pf = policy_option(a, settings)
    top = max(50, 10 * a.top)  # placements differing only by zone or start collapse into one entry
    if pf is None:
        result = plan(job, now=now_from(a), top=top, settings=settings, forecast_source=source)
    else:
        from carbonsched.planning.policy_check import enforce_policy

        result = enforce_policy(job, pf, now=now_from(a), top=top, settings=settings, forecast_source=source)
    from contextlib import redirect_stdout

    with redirect_stdout(sys.stderr):  # SkyPilot prints progress (catalog updates) to stdout: keep the YAML clean
        out = export_skypilot(job.to_dict(), result.to_dict(), top=a.top)
    text = out.text
    if not out.checked:
        print("carbonsched: note: SkyPilot is not installed here, so it has not checked this task "
              "(pip install 'carbonsched[skypilot]')", file=sys.stderr)
    return write_output(text, a.output)


def register(sub, common) -> None:
    p = sub.add_parser("export", parents=[common], help="a job as another tool's task file (SkyPilot YAML)",
                       description="Plan the job and write it as a SkyPilot task whose ordered resources are the "
                                   "plan's ranking, for people who run `sky launch` themselves.",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    p.add_argument("format", choices=["skypilot"], help="the task format (skypilot)")
    p.add_argument("job", help="job file (TOML)")
    p.add_argument("--top", type=int, default=5, metavar="N", help="ordered entries, best first (default 5)")
    p.add_argument("--now", metavar="ISO8601", help="plan as of this instant (default: the clock)")
    p.add_argument("--spot", action="store_true", default=None, help="also consider spot capacity")
    p.add_argument("--provider", action="append", choices=PROVIDERS, help="allowed provider (repeatable)")
    p.add_argument("--region", action="append", metavar="PATTERN", help="allowed region glob, e.g. 'aws:us-*' (repeatable)")
    p.add_argument("--policy", metavar="POLICY.toml", help="enforce this organisation policy file (default: the "
                                                           "`policy` setting or CARBONSCHED_POLICY)")
    p.add_argument("--intensity-source", choices=SOURCE_CHOICES, help="where intensities come from (default: settings)")
    p.add_argument("--output", "-o", metavar="FILE", help="write the YAML here instead of stdout")
    p.set_defaults(func=cmd_export)
