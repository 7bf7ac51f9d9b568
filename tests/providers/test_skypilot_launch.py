"""``--launcher skypilot`` through its one seam at the SDK boundary (``SkyApi``), with the stateful
``FakeSky`` in its place: real ``sky.Task``s (built by SkyPilot from the real plan) go in; clusters
by name, managed job ids, ordered failover, preemption and recovery, status, logs, cancel, a crash
between the launch and the store write, and SkyPilot missing altogether."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone

import pytest

from conftest import NOW, REPO

import test_skypilot_task

sky_home = test_skypilot_task.sky_home  # the seeded SkyPilot HOME, for every test here
pytestmark = pytest.mark.usefixtures("sky_home")

from carbonsched.errors import CapacityError, LaunchError  # noqa: E402
from carbonsched.providers.cloud.skypilot import SkyPilotLauncher, resource_name  # noqa: E402
from carbonsched.providers.cloud.skypilot_fake import FakeSky  # noqa: E402
from carbonsched.record import SCHEMA, SCHEMA_VERSION, encode_marked  # noqa: E402
from carbonsched.run.store import Store  # noqa: E402
from carbonsched.run.submit import cancel, refresh_status, submit  # noqa: E402
from carbonsched.settings import Settings  # noqa: E402
from carbonsched.spec.job import job_from_dict  # noqa: E402

JOB = {"name": "bert", "command": "python train.py --epochs 3", "gpu": "H100", "gpus": 8, "hours": 2,
       "constraints": {"gpu_types": ["H100"], "providers": ["aws"]}}
SPOT = {**JOB, "constraints": {**JOB["constraints"], "spot": True}, "policy": {"objective": "cost"}}  # spot on top


def _submit(tmp_path, raw: dict, api: FakeSky, **kw):
    settings = Settings(home=tmp_path)
    store = Store.for_settings(settings)
    launcher = SkyPilotLauncher(api=api, **kw)
    stored, outcome = submit(job_from_dict(raw), now=NOW, settings=settings, store=store, launcher="skypilot",
                             launcher_factory=lambda name: launcher)
    return store, store.get(stored.id), outcome, launcher


def _record() -> dict:
    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "energy_kwh": 1.5, "duration_s": 7200.0}


def test_on_demand_fails_over_down_the_ranking_and_reports_where_it_ran(tmp_path):
    api = FakeSky()
    settings = Settings(home=tmp_path)
    from carbonsched.planning import plan as make_plan

    plan = make_plan(job_from_dict(JOB), now=NOW, settings=settings, top=10).to_dict()
    on_demand = [p for p in plan["placements"] if p["market"] == "on-demand"]
    api.block(f"aws/{on_demand[0]['region']}")  # SkyPilot finds no capacity in the best region
    store, job, outcome, launcher = _submit(tmp_path, JOB, api)
    assert outcome.state == "running" and job.state == "running"
    name = resource_name(job.id, 0)
    assert job.resource_id == f"skypilot:cluster:{name}"
    cluster = api.state["clusters"][name]
    assert cluster["tried"][0] == f"aws/{on_demand[0]['region']}/{on_demand[0]['instance_type']}"
    second = next(p for p in on_demand if p["region"] != on_demand[0]["region"])
    assert (cluster["region"], cluster["instance_type"]) == (second["region"], second["instance_type"])
    assert cluster["task"]["envs"]["CARBONSCHED_JOB_ID"] == job.id and cluster["idle_minutes"] == 10
    # one attempt, one cluster: SkyPilot's failover walked the ranking, not carbonsched's attempts
    assert [a.outcome for a in store.attempts(job.id)] == ["launched"] and len(api.state["clusters"]) == 1
    assert launcher.actual_placement(job.resource_id) == {
        "launcher": "skypilot", "where": "cloud", "provider": "aws", "region": second["region"],
        "region_id": f"aws:{second['region']}", "zone": None, "instance_type": second["instance_type"],
        "market": "on-demand"}
    assert launcher.status(job.resource_id) == ("running", None)
    # the store says where SkyPilot landed, and that it was not the plan's first choice
    assert (job.region_id, job.instance_type) == (f"aws:{second['region']}", second["instance_type"])
    moved = [e for e in store.events(job.id) if e["kind"] == "ran-elsewhere"]
    assert moved and moved[0]["planned"]["region_id"] == on_demand[0]["region_id"]
    api.finish(name, 0, logs="epoch 3 done\n" + encode_marked(_record()))
    job = refresh_status(store, job, lambda n: launcher, NOW)
    assert (job.state, job.exit_code) == ("succeeded", 0)
    assert store.load_measurement(job.id)["energy_kwh"] == 1.5
    assert store.load_measurement(job.id)["ran_on"]["region_id"] == f"aws:{second['region']}"
    assert "epoch 3 done" in launcher.logs(job.resource_id)


def test_a_failed_run_reports_its_exit_code_and_cancel_tears_the_cluster_down(tmp_path):
    api = FakeSky()
    store, job, _, launcher = _submit(tmp_path, JOB, api)
    api.finish(resource_name(job.id, 0), 3, logs="Traceback ...")
    assert launcher.status(job.resource_id) == ("failed", 3)
    store2, job2, _, launcher2 = _submit(tmp_path / "b", JOB, api)
    cancel(store2, job2.id, lambda n: launcher2, NOW)
    assert store2.get(job2.id).state == "cancelled" and resource_name(job2.id, 0) not in api.state["clusters"]
    assert launcher2.status(job2.resource_id) == ("failed", None)  # gone


def test_spot_goes_to_a_managed_job_that_recovers_from_preemption(tmp_path):
    api = FakeSky()
    store, job, outcome, launcher = _submit(tmp_path, SPOT, api)
    placement = job.plan["placements"][0]
    assert placement["market"] == "spot"
    kind, job_id = job.resource_id.split(":")[1:3]
    assert kind == "managed" and api.state["calls"] == [["jobs_launch", resource_name(job.id, 0)]]
    first = launcher.actual_placement(job.resource_id)
    assert first["market"] == "spot" and first["region"] == placement["region"]
    api.preempt(int(job_id))  # the spot capacity goes; SkyPilot recovers on the next ordered entry
    after = launcher.actual_placement(job.resource_id)
    assert after["region_id"] != first["region_id"] and after["market"] == "spot"
    assert launcher.status(job.resource_id) == ("running", None)
    assert api.managed_jobs(job_ids=[int(job_id)])[0]["recovery_count"] == 1
    assert launcher.find(job, 0, "t") == job.resource_id  # found again by name
    cancel(store, job.id, lambda n: launcher, NOW)
    assert api.managed_jobs(job_ids=[int(job_id)])[0]["status"] == "CANCELLED"
    assert launcher.status(job.resource_id) == ("failed", None)


def test_no_capacity_in_any_entry_is_a_capacity_error_and_submit_moves_on(tmp_path):
    api = FakeSky()
    api.block("aws")
    store, job, outcome, launcher = _submit(tmp_path, JOB, api)
    assert job.state == "failed" and "no capacity" in outcome.message
    assert {a.outcome for a in store.attempts(job.id)} == {"capacity"} and api.state["clusters"] == {}
    with pytest.raises(CapacityError):
        launcher.launch(job, job.plan["placements"][0], 0, "t")


def test_secrets_reach_skypilot_from_the_environment_and_nowhere_else(tmp_path, monkeypatch):
    state = tmp_path / "sky.json"
    api = FakeSky(state)
    raw = {**JOB, "secrets": ["HF_TOKEN"]}
    monkeypatch.setenv("HF_TOKEN", "hf_do_not_store_me")
    store, job, _, launcher = _submit(tmp_path, raw, api)
    assert job.state == "running"
    assert api.state["clusters"][resource_name(job.id, 0)]["task"]["secret_names"] == ["HF_TOKEN"]
    assert "hf_do_not_store_me" not in state.read_text()
    assert "hf_do_not_store_me" not in (tmp_path / "jobs.sqlite").read_bytes().decode("latin-1")
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(LaunchError, match="HF_TOKEN"):
        launcher.launch(job, job.plan["placements"][0], 1, "t")


CRASH = textwrap.dedent("""
    import sys
    from datetime import datetime, timezone
    from carbonsched.providers.cloud.skypilot import SkyPilotLauncher
    from carbonsched.providers.cloud.skypilot_fake import FakeSky
    from carbonsched.run.store import Store
    from carbonsched.run.submit import submit
    from carbonsched.settings import Settings
    from carbonsched.spec.job import job_from_dict
    from pathlib import Path
    settings = Settings(home=Path(sys.argv[1]), lease_seconds=1)
    launcher = SkyPilotLauncher(api=FakeSky(sys.argv[2]))
    submit(job_from_dict({raw!r}), now=datetime(2026, 11, 27, 10, 30, tzinfo=timezone.utc), settings=settings,
           store=Store.for_settings(settings), launcher="skypilot", launcher_factory=lambda name: launcher)
""")


@pytest.mark.parametrize("raw", [JOB, SPOT], ids=["cluster", "managed"])
def test_crash_after_the_launch_then_an_agent_pass_finds_it(tmp_path, raw):
    """SIGKILL right after SkyPilot accepted the launch, before the store heard; the agent's pass
    finds the cluster (or managed job) by name: one of it, job running."""
    from carbonsched.run.agent import agent_pass

    home = os.environ["HOME"]  # the seeded one (sky_home)
    state = tmp_path / "sky.json"
    FakeSky(state)
    r = subprocess.run([sys.executable, "-c", CRASH.format(raw=raw), str(tmp_path), str(state)], capture_output=True,
                       text=True, timeout=120, cwd=REPO,
                       env={"PATH": "/usr/bin:/bin", "HOME": str(home), "CARBONSCHED_FAULT": "after-launch"})
    assert r.returncode == -signal.SIGKILL, r.stderr
    store = Store.for_settings(Settings(home=tmp_path))
    (job,) = store.jobs()
    api = FakeSky(state)
    launched = [c for c in api.state["calls"] if c[0] in ("launch", "jobs_launch")]
    assert job.state == "launching" and job.resource_id is None and len(launched) == 1
    assert launched[0][0] == ("jobs_launch" if raw is SPOT else "launch")
    time.sleep(1.1)  # the dead submit's 1 s lease runs out
    launcher = SkyPilotLauncher(api=api)
    later = max(NOW, datetime.now(timezone.utc)) + timedelta(seconds=5)  # past the lease its heartbeat renewed
    agent_pass(store, lambda name: launcher, later, stale_after_s=0)
    job = store.get(job.id)
    assert job.state == "running" and [a.outcome for a in store.attempts(job.id)] == ["reconciled"]
    assert [c for c in api.state["calls"] if c[0] in ("launch", "jobs_launch")] == launched  # nothing launched again
    assert len(api.state["clusters"]) + len(api.state["managed"]) == 1
    assert launcher.status(job.resource_id) == ("running", None)
    agent_pass(store, lambda name: launcher, later, stale_after_s=0)
    assert len(api.state["clusters"]) + len(api.state["managed"]) == 1


def test_without_skypilot_submit_says_what_to_install_and_stores_nothing(cli, tmp_path):
    block = tmp_path / "block"
    block.mkdir()
    (block / "sitecustomize.py").write_text("import sys\nsys.modules['sky'] = None  # as if not installed\n")
    jobfile = tmp_path / "job.toml"
    jobfile.write_text('name = "bert"\ncommand = "python train.py"\ngpu = "H100"\ngpus = 8\nhours = 2\n'
                       '[constraints]\nproviders = ["aws"]\n')
    home = tmp_path / "home"
    r = cli("submit", jobfile, "--launcher", "skypilot", "--yes",
            extra_env={"PYTHONPATH": str(block), "CARBONSCHED_HOME": str(home)})
    assert r.returncode == 2, r.stderr
    assert "pip install 'carbonsched[skypilot]'" in r.stderr and "nothing was stored" in r.stderr
    assert not (home / "jobs.sqlite").exists() or Store(home / "jobs.sqlite").jobs() == []


def test_the_fake_keeps_skypilots_cluster_semantics(tmp_path):
    """Launching onto a live cluster's name reuses it (one more job), as `sky launch -c` does, which
    is why the launcher looks a name up before it launches."""
    api = FakeSky()
    store, job, _, launcher = _submit(tmp_path, JOB, api)
    task = launcher.task(job, 0)
    assert api.launch(task, resource_name(job.id, 0), idle_minutes=10) == 2
    assert len(api.state["clusters"]) == 1
    assert json.loads(json.dumps(api.state))  # plain data: what a state file holds
