"""Example Prefect 3 flow: plan under the policy, wait for the green window, run the job there.

    pip install 'carbonsched[prefect]'
    python examples/pipelines/prefect_flow.py                       # waits in this process
    python examples/pipelines/prefect_flow.py --now 2026-11-27T10:30:00Z --skip-waits --launcher local

The plan, the window and the job are published as markdown artifacts (``carbonsched-plan``,
``carbonsched-window``, ``carbonsched-job``). For waits of hours, give ``deployment`` the name of a
deployment of the training flow: ``wait_for_green_window`` then schedules it at the green start
(``run_deployment(scheduled_time=...)``) and this flow ends instead of waiting (see
docs/pipelines.md, "Prefect").
"""
from __future__ import annotations

import argparse
from pathlib import Path

from prefect import flow

from carbonsched.integrations.prefect import plan_placement, submit_job, wait_for_green_window

HERE = Path(__file__).resolve().parent
JOB = str(HERE / "train_job.toml")
POLICY = str(HERE.parent / "policy.toml")


@flow(name="carbonsched-green-training", log_prints=True)
def green_training(job: str = JOB, policy_file: str | None = POLICY, launcher: str = "auto",
                   now: str | None = None, skip_waits: bool = False) -> dict:
    placement = plan_placement(job, policy_file=policy_file, now=now, max_wait_hours=24)
    print(f"green window: {placement['region_id']} from {placement['start']} "
          f"({placement['kg_co2e']} kgCO2e, {placement['saving_vs_baseline_pct']} % below the baseline)")
    window = wait_for_green_window(placement, job, policy_file=policy_file, now=now, skip_waits=skip_waits,
                                   max_wait_hours=24)
    result = submit_job(job, launcher=launcher, policy_file=policy_file, pin_to=window, now=now,
                        skip_waits=skip_waits, poll_interval_s=1.0)
    print(f"job {result['job_id']}: {result['state']}")
    return {"placement": window, "job": result}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--launcher", default="auto")
    ap.add_argument("--now", help="fixed clock, ISO 8601 UTC (like carbonsched plan --now)")
    ap.add_argument("--skip-waits", action="store_true", help="waits take no time (the clock jumps)")
    a = ap.parse_args()
    green_training(launcher=a.launcher, now=a.now, skip_waits=a.skip_waits)
