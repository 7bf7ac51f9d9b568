"""Airflow 3: the example DAG runs under ``dag.test()`` (Airflow's own runner: tasks in process, the
triggers run in line as the triggerer would run them), with a fixed clock that skips waits, so a deferral to a
window hours ahead resolves in about a second. Real Airflow, real carbonsched plans and a real
local launch; nothing mocked. Runs in its own virtual environment (.ci/run): the main one has no
Airflow, and there the module skips.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pytest

if importlib.util.find_spec("airflow") is None:
    pytest.skip("Airflow is not installed here (.ci/run tests it in .venv-airflow)", allow_module_level=True)

from conftest import NOW, NOW_ISO, REPO  # noqa: E402

# Airflow reads its home and dags folder when first imported: a throwaway home, the test's own dags
# folder (the example DAG is linked into it, so Airflow's bundle sync parses it like a user's DAG)
_HOME = Path(tempfile.mkdtemp(prefix="airflow-home-"))
_DAGS = _HOME / "dags"
_DAGS.mkdir()
(_DAGS / "airflow_dag.py").symlink_to(REPO / "examples" / "pipelines" / "airflow_dag.py")
os.environ.update({"AIRFLOW_HOME": str(_HOME), "AIRFLOW__CORE__DAGS_FOLDER": str(_DAGS),
                   "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__UNIT_TEST_MODE": "True"})
airflow = pytest.importorskip("airflow")

from airflow.models.xcom import XComModel  # noqa: E402
from airflow.sdk.exceptions import TaskDeferred  # noqa: E402
from airflow.utils.session import create_session  # noqa: E402
from airflow.utils.state import DagRunState  # noqa: E402

from carbonsched.integrations.airflow import (GreenWindowTrigger, JobStateTrigger,  # noqa: E402
                                              WaitForGreenWindowOperator)
from carbonsched.integrations.placement import placement_summary, plan_under_policy, read_job  # noqa: E402
from carbonsched.settings import resolve_settings  # noqa: E402
from carbonsched.spec.policy_file import load_policy  # noqa: E402

JOB = REPO / "examples" / "pipelines" / "train_job.toml"
POLICY = REPO / "examples" / "policy.toml"


@pytest.fixture(scope="module", autouse=True)
def airflow_db():
    from airflow.utils import db

    db.resetdb()
    yield


@pytest.fixture(autouse=True)
def _isolated(carbonsched_env):  # tests/conftest.py: no CARBONSCHED_* from outside, offline profile data
    return carbonsched_env


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(f"dag_{path.stem}_{time.monotonic_ns()}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _xcom(dag_run, task_id: str):
    with create_session() as session:
        row = session.scalars(XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id, task_ids=task_id,
                                                 key="return_value")).one()
        return XComModel.deserialize_value(row)


def expected_placement(policy=POLICY) -> dict:
    """What carbonsched itself plans at NOW under the policy (the window pinned as the operator does)."""
    settings = resolve_settings()
    plan = plan_under_policy(read_job(JOB), load_policy(policy), now=NOW, settings=settings, top=5,
                             max_wait=timedelta(hours=24))
    return placement_summary(plan)


def test_the_wait_operator_defers_to_its_trigger_without_running_anything():
    """The first run plans and raises Airflow's TaskDeferred: the worker slot is given back, the
    trigger (serialisable, so the triggerer can rebuild it) wakes an hour before the start to re-plan."""
    op = WaitForGreenWindowOperator(task_id="w", job=str(JOB), policy_file=str(POLICY), now=NOW_ISO,
                                    max_wait=timedelta(hours=24))
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context={})
    trigger, want = deferred.value.trigger, expected_placement()
    assert isinstance(trigger, GreenWindowTrigger) and deferred.value.method_name == "resume"
    assert want["start"] > NOW_ISO  # the example's green window is hours ahead, not now
    start = NOW.fromisoformat(want["start"].replace("Z", "+00:00"))
    assert trigger.moment == (start - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ") and trigger.phase == "replan"
    classpath, kwargs = trigger.serialize()
    assert classpath == "carbonsched.integrations.airflow.GreenWindowTrigger"
    assert json.loads(json.dumps(kwargs)) == kwargs  # plain JSON: the triggerer rebuilds it from this
    assert trigger.carry["placement"] == want  # the event brings it back to the resumed task


def test_example_dag_defers_replans_and_pushes_the_placement(caplog):
    module = _load(REPO / "examples" / "pipelines" / "airflow_dag.py")
    caplog.set_level(logging.INFO, logger="airflow.sdk.definitions.dag")
    t0 = time.monotonic()
    dr = module.dag.test(run_conf={"now": NOW_ISO, "skip_waits": True, "launcher": "local"})
    elapsed = time.monotonic() - t0
    assert dr.state == DagRunState.SUCCESS
    got, want = _xcom(dr, "wait_for_green_window"), expected_placement()
    # the placement: where, what, when, kgCO2e and the saving, as carbonsched plans it under the policy
    for key in ("region_id", "instance_type", "start", "kg_co2e", "saving_vs_baseline_pct", "gpu", "market"):
        assert got[key] == want[key], key
    assert got["region_id"].startswith(("aws:eu-", "gcp:europe-"))  # the policy's residency
    assert got["saving_vs_baseline_pct"] > 0 and got["policy"] == "green-eu"
    assert got["deferred"] is True and got["replanned"] is True and got["moved_from"] is None
    # Airflow ran the triggers in line: the wait deferred twice (re-plan, then the start), the submit once
    inline = [r for r in caplog.records if "running trigger in line" in r.getMessage()]
    assert len(inline) >= 3
    assert elapsed < 120  # hours of waiting skipped by the injected clock
    job = _xcom(dr, "train")
    assert job["state"] == "succeeded" and job["exit_code"] == 0 and job["final"] is True
    from carbonsched.run.store import Store

    store = Store.for_settings(resolve_settings())
    stored = store.get(job["job_id"])
    # submitted pinned to the wait task's placement, started at the window (the fixed clock moved there)
    assert stored.plan["placements"][0]["region_id"] == got["region_id"]
    assert stored.start_at >= NOW.fromisoformat(got["start"].replace("Z", "+00:00"))
    store.close()


POLICY_DAG = '''
from datetime import datetime, timedelta
from airflow.sdk import DAG
from carbonsched.integrations.airflow import WaitForGreenWindowOperator

with DAG(dag_id="carbonsched_policy_sources", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
    WaitForGreenWindowOperator(task_id="from_variable", job={JOB!r}, policy_variable="carbonsched_policy",
                               now={NOW!r}, skip_waits=True, max_wait=timedelta(hours=24))
    WaitForGreenWindowOperator(task_id="from_connection", job={JOB!r}, policy_conn_id="carbonsched",
                               now={NOW!r}, skip_waits=True, max_wait=timedelta(hours=24))
'''


def test_policies_from_an_airflow_variable_and_connection(tmp_path):
    """The organisation's policy kept in Airflow: a Variable holding the policy TOML, a connection
    whose extra holds the table (read through Airflow's local-file secrets backend)."""
    us_only = {"version": 1, "name": "us-only", "residency": ["aws:us-*"]}
    variables = tmp_path / "variables.json"
    variables.write_text(json.dumps({"carbonsched_policy": 'version = 1\nname = "gcp-eu"\nresidency = ["gcp:europe-*"]\n'}))
    connections = tmp_path / "connections.json"
    connections.write_text(json.dumps({"carbonsched": {"conn_type": "generic", "extra": json.dumps({"policy": us_only})}}))
    dag_file = _DAGS / "policy_sources.py"
    dag_file.write_text(POLICY_DAG.format(JOB=str(JOB), NOW=NOW_ISO))
    try:
        dr = _load(dag_file).dag.test(variable_file_path=str(variables), conn_file_path=str(connections))
    finally:
        dag_file.unlink()
    assert dr.state == DagRunState.SUCCESS
    from_variable, from_connection = _xcom(dr, "from_variable"), _xcom(dr, "from_connection")
    assert from_variable["region_id"].startswith("gcp:europe-") and from_variable["policy"] == "gcp-eu"
    assert from_connection["region_id"].startswith("aws:us-") and from_connection["policy"] == "us-only"


def test_job_state_trigger_serialises_and_polls_to_the_end(tmp_path):
    """The submit trigger alone, on a real job: it polls the store (launcher status in a thread)
    until the local run ends, and its payload is the job."""
    import asyncio
    import sys

    from carbonsched.integrations.placement import launchers_for, submit_under_policy
    from carbonsched.run.store import Store

    settings = resolve_settings()
    store = Store.for_settings(settings)
    job = read_job({"name": "t", "command": f"{sys.executable} -c 'print(1)'", "gpu": "A100", "gpus": 1, "hours": 1})
    stored, outcome = submit_under_policy(job, None, launcher="local", now=NOW, settings=settings, store=store,
                                          launcher_factory=launchers_for(settings))
    assert outcome.state == "running"
    trigger = JobStateTrigger(stored.id, {"home": str(settings.home)}, None, poll_interval_s=0.05)
    classpath, kwargs = trigger.serialize()
    rebuilt = JobStateTrigger(**json.loads(json.dumps(kwargs)))

    async def first_event():
        async for event in rebuilt.run():
            return event.payload

    payload = asyncio.run(asyncio.wait_for(first_event(), 60))
    assert payload["job_id"] == stored.id and payload["state"] == "succeeded" and payload["exit_code"] == 0
    store.close()


def test_the_guide_shows_this_example():
    """docs/pipelines.md's example is an excerpt of the example file these tests run."""
    doc = (REPO / "docs" / "pipelines.md").read_text(encoding="utf-8")
    section = doc.split("## Airflow\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert block.strip() and block in (REPO / "examples" / "pipelines" / "airflow_dag.py").read_text(encoding="utf-8")
