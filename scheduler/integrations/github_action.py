"""The script behind the repository's GitHub Action (``action.yml``): plan a job under a policy in
a workflow step, hand the placement to later steps, and fail the step on a policy violation.

Run as ``python -m carbonsched.integrations.github_action``; ``action.yml`` maps the action's
inputs to these environment variables (a composite action passes nothing on its own):

    INPUT_JOB               job file (TOML), relative to the working directory       (required)
    INPUT_POLICY            policy file; empty: the settings' policy (CARBONSCHED_POLICY), if any
    INPUT_INTENSITY_SOURCE  auto (default), profile, electricitymaps, watttime, ukci
    INPUT_NOW               ISO 8601 UTC "now" for a reproducible plan; empty: the clock
    INPUT_TOP               placements in the summary table (default 5)
    ELECTRICITYMAPS_TOKEN, WATTTIME_USERNAME, WATTTIME_PASSWORD   the sources' own credentials

Outputs, appended to ``$GITHUB_OUTPUT`` (``name=value`` lines; a multi-line value as
``name<<DELIMITER`` ... ``DELIMITER`` with a delimiter the value does not contain): ``region``,
``instance_type``, ``gpu``, ``gpu_count``, ``market``, ``start`` (ISO 8601 UTC), ``kg_co2e``,
``baseline_kg_co2e``, ``saving_pct`` (vs the baseline, empty when there is none), ``cost_usd``,
``plan_json`` (the ``carbonsched plan --json`` document). The plan table goes to
``$GITHUB_STEP_SUMMARY`` (markdown). Without those variables (a local run) both go to stdout.

Exit status as the CLI's: 0 planned; 2 a policy violation or bad input, 1 a data or source error,
each with an ``::error::`` workflow command that GitHub shows on the step.
"""
from __future__ import annotations

import json
import os
import sys
import uuid
from datetime import datetime, timezone
from typing import Mapping, TextIO

from carbonsched.errors import CarbonschedError, PolicyViolationError, UserInputError
from carbonsched.integrations.placement import placement_summary, plan_markdown, read_job, read_policy
from carbonsched.models import Plan
from carbonsched.planning.policy_check import enforce_policy
from carbonsched.settings import resolve_settings
from carbonsched.units import parse_utc

OUTPUTS = ("region", "instance_type", "gpu", "gpu_count", "market", "start", "kg_co2e", "baseline_kg_co2e",
           "saving_pct", "cost_usd", "plan_json")


def escape_data(text: str) -> str:
    """A workflow command's message: ``%``, CR and LF escaped (GitHub's ``escapeData``)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def output_lines(name: str, value) -> str:
    """One ``$GITHUB_OUTPUT`` entry: ``name=value``, or the heredoc form for a multi-line value."""
    value = "" if value is None else str(value)
    if "\n" not in value and "\r" not in value:
        return f"{name}={value}\n"
    delimiter = f"ghadelimiter_{uuid.uuid4().hex}"
    return f"{name}<<{delimiter}\n{value}\n{delimiter}\n"


def plan_from_inputs(env: Mapping[str, str]) -> Plan:
    """The plan the inputs ask for (module docstring); CarbonschedError when it cannot be made."""
    job_path = (env.get("INPUT_JOB") or "").strip()
    if not job_path:
        raise UserInputError("the `job` input is required: the path of a job file (TOML), e.g. examples/job.toml")
    top_text = (env.get("INPUT_TOP") or "5").strip()
    try:
        top = int(top_text)
    except ValueError:
        raise UserInputError(f"the `top` input must be a whole number, got {top_text!r}") from None
    if top < 1:
        raise UserInputError(f"the `top` input must be at least 1, got {top}")
    source = (env.get("INPUT_INTENSITY_SOURCE") or "").strip() or None
    settings = resolve_settings({"intensity_source": source})
    policy = read_policy(policy_file=(env.get("INPUT_POLICY") or "").strip() or None, settings=settings)
    now_text = (env.get("INPUT_NOW") or "").strip()
    now = parse_utc(now_text, "the `now` input") if now_text else datetime.now(timezone.utc)
    return enforce_policy(read_job(job_path), policy, now=now, settings=settings, top=top)


def outputs_of(plan: Plan) -> dict:
    s = placement_summary(plan)
    return {"region": s["region_id"], "instance_type": s["instance_type"], "gpu": s["gpu"], "gpu_count": s["gpu_count"],
            "market": s["market"], "start": s["start"], "kg_co2e": s["kg_co2e"],
            "baseline_kg_co2e": s["baseline_kg_co2e"], "saving_pct": s["saving_vs_baseline_pct"],
            "cost_usd": s["cost_usd"], "plan_json": json.dumps(plan.to_dict(), indent=2)}


def summary_markdown(plan: Plan) -> str:
    best = plan.best
    lines = [plan_markdown(plan, top=len(plan.placements)),
             f"intensity: {best.intensity_source} ({best.intensity_signal}); "
             f"{plan.n_feasible} feasible of {plan.n_candidates} candidates"]
    lines += [f"- warning: {w}" for w in plan.warnings]
    return "\n".join(lines) + "\n"


def _append(path: str | None, text: str, fallback: TextIO) -> None:
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text)
    else:
        fallback.write(text)


def main(env: Mapping[str, str] | None = None, stdout: TextIO = sys.stdout) -> int:
    env = os.environ if env is None else env
    try:
        plan = plan_from_inputs(env)
    except PolicyViolationError as exc:
        print(f"::error title=carbonsched policy violation::{escape_data(str(exc))}", file=stdout)
        _append(env.get("GITHUB_STEP_SUMMARY"), f"### carbonsched: refused by the policy\n\n{exc}\n", stdout)
        return exc.exit_code
    except CarbonschedError as exc:
        print(f"::error title=carbonsched::{escape_data(str(exc))}", file=stdout)
        return exc.exit_code
    outputs = outputs_of(plan)
    _append(env.get("GITHUB_OUTPUT"), "".join(output_lines(k, outputs[k]) for k in OUTPUTS), stdout)
    _append(env.get("GITHUB_STEP_SUMMARY"), summary_markdown(plan), stdout)
    saving = "" if outputs["saving_pct"] is None else f", {outputs['saving_pct']} % below the baseline"
    print(f"carbonsched: {plan.job.name} -> {outputs['region']} {outputs['instance_type']} from {outputs['start']}: "
          f"{outputs['kg_co2e']} kgCO2e{saving}", file=stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
