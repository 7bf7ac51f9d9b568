"""The job payload (run, setup, workdir, envs, secrets, file_mounts, num_nodes, checkpoint_dir):
parsing, what each launcher honours, and real runs through the local launcher and a boot script."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest

from carbonsched.errors import JobSpecError, UserInputError
from carbonsched.planning import plan as make_plan
from carbonsched.providers.cloud.launcher import shell_lines
from carbonsched.providers.cloud.local import LocalLauncher
from carbonsched.run.agent import agent_pass
from carbonsched.run.store import Store
from carbonsched.run.submit import submit
from carbonsched.settings import Settings
from carbonsched.spec.job import job_from_dict, job_from_echo, load_job

PY = sys.executable
NOW = datetime(2026, 11, 27, 10, 30, tzinfo=timezone.utc)
BASE = {"gpu": "L40S", "gpus": 1, "hours": 1, "constraints": {"providers": ["aws"]}}


def test_job_file_payload_resolves_paths_against_the_file_and_round_trips(tmp_path):
    (tmp_path / "code").mkdir()
    f = tmp_path / "job.toml"
    f.write_text('name = "p"\nrun = "python train.py && echo done"\nsetup = "pip install -r req.txt"\n'
                 'workdir = "code"\nenvs = { WANDB_PROJECT = "x" }\nsecrets = ["HF_TOKEN"]\nnum_nodes = 2\n'
                 'checkpoint_dir = "/ckpt"\ngpu = "A100"\ngpus = 8\nhours = 2\n'
                 '[file_mounts]\n"/data" = "s3://bucket/data"\n"/cfg" = "./configs"\n')
    j = load_job(f)
    d = j.to_dict()
    assert d["workdir"] == str(tmp_path / "code") and d["file_mounts"] == {"/data": "s3://bucket/data",
                                                                         "/cfg": str(tmp_path / "configs")}
    assert d["env"] == {"WANDB_PROJECT": "x"} and d["secrets"] == ["HF_TOKEN"] and d["num_nodes"] == 2
    assert d["run"] == "python train.py && echo done" and d["checkpoint_dir"] == "/ckpt"
    assert job_from_echo(json.loads(json.dumps(d))).to_dict() == d
    assert "workdir" not in job_from_dict(BASE).to_dict()  # payload keys appear only when given
    # robust deferral is the default and every echo says so; an echo stored before that (no
    # deferral key) meant the old default, and a re-plan keeps it
    assert d["policy"]["deferral"] == "robust"
    old = json.loads(json.dumps(d))
    del old["policy"]["deferral"]
    assert job_from_echo(old).policy.deferral == "expected"


@pytest.mark.parametrize("bad, words", [
    ({"run": "a", "command": "b"}, "not both"),
    ({"env": {"A": "1"}, "envs": {"B": "2"}}, "not both"),
    ({"num_nodes": 65}, "from 1 to 64"),
    ({"secrets": ["HF-TOKEN"]}, "environment variable names"),
    ({"checkpoint_dir": "ckpt"}, "absolute path"),
    ({"file_mounts": {"data": "s3://b"}}, "absolute remote path"),
    ({"file_mounts": {"/data": 3}}, "path or URI"),
    ({"workdri": "."}, "did you mean"),
])
def test_bad_payload_keys_are_errors_that_say_what_to_do(bad, words):
    with pytest.raises(JobSpecError, match=words):
        job_from_dict({**BASE, **bad})


def test_num_nodes_scales_energy_cost_and_carbon_not_the_runtime():
    one = make_plan(job_from_dict(BASE), now=NOW).best
    two = make_plan(job_from_dict({**BASE, "num_nodes": 2}), now=NOW).best
    assert (two.region_id, two.instance_type, two.start) == (one.region_id, one.instance_type, one.start)
    assert two.runtime_hours == pytest.approx(one.runtime_hours)
    for field in ("energy_kwh", "cost_usd", "kg_co2e", "kg_co2e_embodied"):
        assert getattr(two, field) == pytest.approx(2 * getattr(one, field)), field


@pytest.fixture
def local(tmp_path):
    settings = Settings(home=tmp_path / "home")
    store = Store.for_settings(settings)
    yield settings, store, LocalLauncher(settings.home)
    store.close()


def _wait(store, job_id, launcher, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        agent_pass(store, lambda n: launcher, datetime.now(timezone.utc))
        job = store.get(job_id)
        if job.state in ("succeeded", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(store.events(job_id))


def test_local_run_gets_setup_workdir_env_secrets_and_checkpoint_dir(local, tmp_path, monkeypatch):
    settings, store, launcher = local
    work, out = tmp_path / "work", tmp_path / "seen.json"
    work.mkdir()
    monkeypatch.setenv("HF_TOKEN", "hf_s3cr3t_value")
    script = ("import json, os; json.dump({'cwd': os.getcwd(), 'setup': open('setup.txt').read(), "
              "'token': os.environ.get('HF_TOKEN'), 'proj': os.environ.get('WANDB_PROJECT'), "
              f"'ckpt': os.environ.get('CARBONSCHED_CHECKPOINT_DIR')}}, open({str(out)!r}, 'w'))")
    j = job_from_dict({**BASE, "run": f"{PY} -c \"{script}\"", "setup": "echo prepared > setup.txt",
                       "workdir": str(work), "envs": {"WANDB_PROJECT": "p1"}, "secrets": ["HF_TOKEN"],
                       "checkpoint_dir": str(tmp_path / "ckpt")})
    stored, outcome = submit(j, now=NOW, settings=settings, store=store, launcher="local",
                             launcher_factory=lambda n: launcher)
    assert outcome.state == "running"
    assert _wait(store, stored.id, launcher).state == "succeeded"
    seen = json.loads(out.read_text())
    assert seen == {"cwd": str(work), "setup": "prepared\n", "token": "hf_s3cr3t_value", "proj": "p1",
                    "ckpt": str(tmp_path / "ckpt")}
    store.close()
    for path in (settings.home / "jobs.sqlite", settings.home / "jobs.sqlite-wal"):
        if path.exists():
            assert b"hf_s3cr3t_value" not in path.read_bytes()  # the secret's value was never stored


def test_a_failing_setup_fails_the_job_and_the_run_never_starts(local, tmp_path):
    settings, store, launcher = local
    marker = tmp_path / "ran"
    j = job_from_dict({**BASE, "setup": "echo broken; exit 7", "command": f"touch {marker}"})
    stored, _ = submit(j, now=NOW, settings=settings, store=store, launcher="local", launcher_factory=lambda n: launcher)
    done = _wait(store, stored.id, launcher)
    assert done.state == "failed" and done.exit_code == 7 and not marker.exists()


@pytest.mark.parametrize("extra, launcher, words", [
    ({"workdir": "/no/such/folder"}, "local", "workdir /no/such/folder is not a folder"),
    ({"file_mounts": {"/data": "s3://b/d"}}, "local", "local launcher cannot honour this job's file mounts"),
    ({"num_nodes": 2}, "local", "more than one node; submit it with --launcher skypilot"),
    ({"secrets": ["HF_TOKEN"]}, "aws", "aws launcher cannot honour this job's secrets"),
    ({"secrets": ["CARBONSCHED_TEST_UNSET_SECRET"]}, "local", "CARBONSCHED_TEST_UNSET_SECRET are not set"),
    ({"file_mounts": {"/cfg": "/no/such/cfg"}}, "auto", "cannot honour"),
])
def test_payload_a_launcher_cannot_honour_is_refused_before_anything_is_stored(local, extra, launcher, words):
    settings, store, ll = local
    j = job_from_dict({**BASE, "command": "true", **extra})
    with pytest.raises(UserInputError, match=words):
        submit(j, now=NOW, settings=settings, store=store, launcher=launcher, launcher_factory=lambda n: ll)
    assert store.jobs() == []


def test_boot_script_runs_setup_then_the_run_script(tmp_path):
    """EC2/GCE boot lines with setup and a `run` script, executed by bash (no tracker on PATH)."""
    job = type("J", (), {"id": "j2", "spec": {"setup": f"echo set > {tmp_path}/s.txt", "run": "cat s.txt; exit 3",
                                               "checkpoint_dir": "/ckpt"}})()
    script = "\n".join([f"cd {tmp_path}", *shell_lines(job, record_path=str(tmp_path / "m.json")), 'echo "exit: $?"'])
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30,
                       env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert "set" in r.stdout and "exit: 3" in r.stdout, r.stdout + r.stderr
    assert "export CARBONSCHED_CHECKPOINT_DIR=/ckpt" in script
    failing = type("J", (), {"id": "j3", "spec": {"setup": "exit 5", "command": f"touch {tmp_path}/never"}})()
    r = subprocess.run(["bash", "-c", "\n".join([*shell_lines(failing, record_path=str(tmp_path / "n.json")),
                                                 'echo "exit: $?"'])],
                       capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert "exit: 5" in r.stdout and not (tmp_path / "never").exists()
    assert os.environ.get("CARBONSCHED_TEST_UNSET_SECRET") is None
