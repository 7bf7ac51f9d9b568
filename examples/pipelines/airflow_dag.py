"""Example Airflow 3 DAG: wait for the green window without holding a worker slot, then run the job.

Install ``carbonsched[airflow]`` where the scheduler, the workers and the triggerer run (the wait is
a deferral: the triggerer sleeps, no worker does), put this file in the dags folder and trigger it::

    airflow dags trigger carbonsched_green_training
    airflow dags test carbonsched_green_training -c '{"now": "2026-11-27T10:30:00Z", "skip_waits": true}'

``now`` fixes the clock (like ``carbonsched plan --now``) and ``skip_waits`` makes the waits take no
time (the clock jumps to the window): the second command runs the whole pipeline at once. ``launcher`` picks where the
job runs (auto: the placement's cloud; local: this machine). The policy comes from
``examples/policy.toml``; pass ``policy_variable="carbonsched_policy"`` or
``policy_conn_id="carbonsched"`` instead to read it from an Airflow Variable or connection.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG, Param

from carbonsched.integrations.airflow import CarbonschedSubmitOperator, WaitForGreenWindowOperator

HERE = Path(__file__).resolve().parent
JOB = str(HERE / "train_job.toml")
POLICY = str(HERE.parent / "policy.toml")

with DAG(
    dag_id="carbonsched_green_training",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"now": Param(None, type=["null", "string"]), "skip_waits": Param(False, type="boolean"),
            "launcher": Param("auto", type="string")},
    tags=["carbonsched"],
) as dag:
    wait = WaitForGreenWindowOperator(
        task_id="wait_for_green_window", job=JOB, policy_file=POLICY, max_wait=timedelta(hours=24),
        now="{{ params.now or '' }}", skip_waits="{{ params.skip_waits }}")
    train = CarbonschedSubmitOperator(
        task_id="train", job=JOB, policy_file=POLICY, launcher="{{ params.launcher }}", pin_to="wait_for_green_window",
        now="{{ params.now or '' }}", skip_waits="{{ params.skip_waits }}", poll_interval_s=1.0)
    wait >> train
