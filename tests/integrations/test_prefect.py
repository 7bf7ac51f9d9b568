"""Prefect 3: the example flow against Prefect's ephemeral local API (``prefect_test_harness``: a
real server on a throwaway SQLite database), with a fixed clock that skips waits; the artifacts are
read back from the API. The scheduled-deployment route creates a real scheduled flow run. Runs in
its own virtual environment (.ci/run); without Prefect the module skips.
"""
from __future__ import annotations

import importlib.util
import sys
from datetime import timedelta

import pytest

prefect = pytest.importorskip("prefect")

from prefect import flow  # noqa: E402
from prefect.artifacts import Artifact  # noqa: E402
from prefect.client.orchestration import get_client  # noqa: E402
from prefect.testing.utilities import prefect_test_harness  # noqa: E402

from conftest import NOW, NOW_ISO, REPO  # noqa: E402
from carbonsched.integrations.placement import placement_summary, plan_under_policy, read_job  # noqa: E402
from carbonsched.integrations.prefect import plan_placement, submit_job, wait_for_green_window  # noqa: E402
from carbonsched.settings import resolve_settings  # noqa: E402
from carbonsched.spec.policy_file import load_policy  # noqa: E402
from carbonsched.units import parse_utc  # noqa: E402

JOB = REPO / "examples" / "pipelines" / "train_job.toml"
POLICY = REPO / "examples" / "policy.toml"


@pytest.fixture(scope="module", autouse=True)
def prefect_api():
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(autouse=True)
def _isolated(carbonsched_env):  # tests/conftest.py: no CARBONSCHED_* from outside, offline profile data
    return carbonsched_env


def _example():
    spec = importlib.util.spec_from_file_location("prefect_flow_example", REPO / "examples" / "pipelines" / "prefect_flow.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def expected_placement() -> dict:
    plan = plan_under_policy(read_job(JOB), load_policy(POLICY), now=NOW, settings=resolve_settings(), top=5,
                             max_wait=timedelta(hours=24))
    return placement_summary(plan)


def test_example_flow_plans_waits_runs_and_publishes_artifacts():
    state = _example().green_training(launcher="local", now=NOW_ISO, skip_waits=True, return_state=True)
    assert state.is_completed(), state.message
    result, want = state.result(), expected_placement()
    window, job = result["placement"], result["job"]
    for key in ("region_id", "instance_type", "start", "kg_co2e", "saving_vs_baseline_pct"):
        assert window[key] == want[key], key
    assert want["start"] > NOW_ISO and window["replanned"] is True and window["moved_from"] is None
    assert window["opened_at"] >= window["start"]  # the wait ended at the window (the clock skipped to it)
    assert job["state"] == "succeeded" and job["exit_code"] == 0
    # the artifacts, read back from the API
    plan_md = Artifact.get("carbonsched-plan")
    assert plan_md.type == "markdown" and want["region_id"] in plan_md.data and "| baseline |" in plan_md.data
    assert "under policy `green-eu`" in plan_md.data
    assert want["start"] in Artifact.get("carbonsched-window").data
    job_md = Artifact.get("carbonsched-job").data
    assert job["job_id"] in job_md and "succeeded" in job_md
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
        assert run.state.is_completed()
        keys = {a.key for a in client.read_artifacts() if a.flow_run_id == run.id}
        assert {"carbonsched-plan", "carbonsched-window", "carbonsched-job"} <= keys


@flow(name="carbonsched-train-step")
def train_step(region_id: str = "", start: str = "") -> str:
    return f"training in {region_id} from {start}"


def test_the_scheduled_deployment_route_waits_without_a_process():
    """``deployment=``: the training deployment is scheduled at the green start; the flow that
    planned it ends at once and the run waits in Prefect's scheduler (state Scheduled)."""
    deployment_id = train_step.to_deployment(name="green").apply()

    @flow
    def plan_and_schedule():
        placement = plan_placement(str(JOB), policy_file=str(POLICY), now=NOW_ISO, max_wait_hours=24)
        return wait_for_green_window(placement, deployment="carbonsched-train-step/green",
                                     parameters={"region_id": placement["region_id"], "start": placement["start"]})

    out, want = plan_and_schedule(), expected_placement()
    assert out["region_id"] == want["region_id"] and out["scheduled_time"] == want["start"]
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(out["scheduled_flow_run_id"])
    assert run.deployment_id == deployment_id and run.state.is_scheduled()
    assert run.state.state_details.scheduled_time == parse_utc(want["start"])
    assert run.parameters == {"region_id": want["region_id"], "start": want["start"]}


def test_a_failed_job_fails_the_task(tmp_path):
    @flow
    def failing():
        return submit_job({"name": "bad", "command": f"{sys.executable} -c 'raise SystemExit(3)'", "gpu": "A100",
                           "gpus": 1, "hours": 1}, launcher="local", now=NOW_ISO, poll_interval_s=0.05)

    state = failing(return_state=True)
    assert state.is_failed() and "exit code 3" in state.message + str(state.result(raise_on_failure=False))


def test_the_guide_shows_this_example():
    """docs/pipelines.md's example is an excerpt of the example file these tests run."""
    doc = (REPO / "docs" / "pipelines.md").read_text(encoding="utf-8")
    section = doc.split("## Prefect\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert block.strip() and block in (REPO / "examples" / "pipelines" / "prefect_flow.py").read_text(encoding="utf-8")
