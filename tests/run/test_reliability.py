"""Reliability of the run side (issue 11): leases between agents, cancel after a crashed launch,
a fixed launcher's provider, poison jobs, phantom runs, image injection. Real SQLite stores and a
real PostgreSQL server (the store tests run on both), real local runner processes; the one seam is a wrapper that makes the local launcher's call slow, as a
slow cloud API would be."""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from carbonsched.errors import JobSpecError, LaunchError, UserInputError
from carbonsched.planning import plan as make_plan
from carbonsched.providers.cloud.launcher import job_argv, launch_token
from carbonsched.providers.cloud.local import STARTUP_GRACE_S, LocalLauncher, job_process_env
from carbonsched.run.agent import agent_pass
from carbonsched.run.store import Store
from carbonsched.run.submit import cancel, restrict_to_launcher, submit
from carbonsched.settings import Settings
from carbonsched.spec.job import job_from_dict

PY = sys.executable
UTC = timezone.utc


def clock():
    return datetime.now(UTC)


def job(command: str, **extra):
    return job_from_dict({"name": "t", "command": command, "gpu": "A100", "gpus": 8, "hours": 2, **extra})


class Slow:
    """The real local launcher behind a launch call that takes ``delay_s`` (a slow cloud API)."""

    def __init__(self, inner: LocalLauncher, delay_s: float):
        self.inner, self.delay_s, self.launches = inner, delay_s, 0
        self.name = inner.name

    def launch(self, job, placement, attempt, token):
        self.launches += 1
        time.sleep(self.delay_s)
        return self.inner.launch(job, placement, attempt, token)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def add(store, command, start=None, placements=2):
    now = clock()
    return store.add_job(name="j", spec={"command": command}, now=now, start_at=start or now, launcher="local",
                         plan={"placements": [{"rank": i + 1, "region_id": f"aws:r{i}"} for i in range(placements)]})


def wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_a_slow_launch_is_not_reclaimed_by_an_impatient_agent(tmp_path, store_target):
    """Agent A takes 4.5 s to launch under a 2 s lease it renews; agent B, told that 0.5 s makes a
    launch stale, runs after A's first lease would have run out: before leases B reclaimed the job
    and launched it a second time."""
    store_a, store_b = Store(store_target), Store(store_target)
    slow = Slow(LocalLauncher(tmp_path), delay_s=4.5)
    stored = add(store_a, f"{PY} -c pass")
    results = {}
    a = threading.Thread(target=lambda: results.setdefault(
        "a", agent_pass(store_a, lambda n: slow, clock(), worker="A", stale_after_s=2.0, clock=clock)))
    a.start()
    time.sleep(3.3)
    results["b"] = agent_pass(store_b, lambda n: slow, clock(), worker="B", stale_after_s=0.5, clock=clock)
    a.join()
    story = store_a.events(stored.id)
    assert [o.state for o in results["a"]] == ["running"], story
    assert results["b"] == [] and slow.launches == 1, story
    assert len(list((tmp_path / "runs" / stored.id).iterdir())) == 1
    assert "reclaimed" not in [e["kind"] for e in store_a.events(stored.id)]


def test_an_expired_lease_is_resumed_with_the_same_token(store_target, tmp_path):
    store = Store(store_target)
    launcher = LocalLauncher(tmp_path)
    stored = add(store, f"{PY} -c pass")
    t0 = clock() - timedelta(minutes=5)
    assert store.claim(stored.id, "dead-agent", t0, lease_s=60)  # ... and then it died
    assert not store.reclaim(stored.id, "B", t0 + timedelta(seconds=30), "dead-agent", lease_s=60)  # still held
    out = agent_pass(store, lambda n: launcher, clock(), worker="B", stale_after_s=60, clock=clock)
    assert [o.state for o in out] == ["running"]
    kinds = [e["kind"] for e in store.events(stored.id)]
    assert kinds.count("reclaimed") == 1 and store.get(stored.id).claimed_by == "B"


def test_cancel_after_a_crashed_launch_terminates_what_it_started(store_target, tmp_path):
    store = Store(store_target)
    launcher = LocalLauncher(tmp_path)
    child_pid = tmp_path / "child.pid"
    stored = add(store, f"{PY} -c 'import os, time; open(\"{child_pid}\", \"w\").write(str(os.getpid())); time.sleep(60)'")
    assert store.claim(stored.id, "w", clock())
    token = launch_token(stored.id, 0)
    store.begin_attempt(stored.id, attempt=0, rank=1, launcher="local", placement={"region_id": "aws:r0"},
                        token=token, now=clock())
    rid = launcher.launch(store.get(stored.id), {}, 0, token)  # the agent dies here, before the store write
    assert wait_for(lambda: child_pid.exists() and child_pid.read_text())  # the job runs
    job_now = cancel(store, stored.id, lambda n: launcher, clock())
    assert job_now.state == "cancelled"
    exit_file = launcher._path(rid) / "exit.json"
    assert wait_for(exit_file.exists), "the orphaned run was not terminated"
    assert json.loads(exit_file.read_text())["signal"] == 15
    assert wait_for(lambda: not os.path.exists(f"/proc/{child_pid.read_text()}") or
                    open(f"/proc/{child_pid.read_text()}/stat").read().split()[2] == "Z")
    assert any(e["kind"] == "terminated" and e["resources"] == [rid] for e in store.events(stored.id))


def _gone(pid_file) -> bool:
    pid = pid_file.read_text()
    return not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def test_cancel_kills_a_run_that_ignores_sigterm_after_its_grace(store_target, tmp_path):
    """The job contract gives a run its grace to save a checkpoint after SIGTERM; one that ignores
    it is killed with its process group (it used to run on forever, the job saying "cancelled")."""
    store = Store(store_target)
    launcher = LocalLauncher(tmp_path, kill_after_s=1.0)
    child_pid = tmp_path / "child.pid"
    stored = add(store, f"{PY} -c 'import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                        f"open(\"{child_pid}\", \"w\").write(str(os.getpid())); time.sleep(120)'")
    (out,) = agent_pass(store, lambda n: launcher, clock(), clock=clock)
    assert out.state == "running" and wait_for(lambda: child_pid.exists() and child_pid.read_text())
    assert cancel(store, stored.id, lambda n: launcher, clock()).state == "cancelled"
    assert wait_for(lambda: _gone(child_pid), timeout=15), "a run that ignores SIGTERM survived its cancel"
    doc = json.loads((launcher._path(out.resource_id) / "exit.json").read_text())
    assert doc["signal"] == 9 and doc["killed"] == "it did not stop when asked"
    # a segment's stop() says such a run did not end on its own terms (its exit.json is the runner's)
    again = add(store, f"{PY} -c 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)'")
    (out,) = [o for o in agent_pass(store, lambda n: launcher, clock(), clock=clock) if o.job_id == again.id]
    assert wait_for(lambda: (launcher._path(out.resource_id) / "log.txt").exists()) and out.state == "running"
    time.sleep(0.5)  # the command is up and ignoring SIGTERM
    assert launcher.stop(out.resource_id, grace_s=10) is False


def test_a_run_whose_runner_was_killed_stays_running_and_can_be_cancelled(store_target, tmp_path):
    """kill -9 of the runner leaves the command running in its process group: the job is running
    (not "failed" while it runs on, beyond the reach of cancel), and cancel stops the group."""
    import signal

    store = Store(store_target)
    launcher = LocalLauncher(tmp_path)
    child_pid = tmp_path / "child.pid"
    stored = add(store, f"{PY} -c 'import os, time; open(\"{child_pid}\", \"w\").write(str(os.getpid())); "
                        "time.sleep(120)'")
    (out,) = agent_pass(store, lambda n: launcher, clock(), clock=clock)
    assert wait_for(lambda: child_pid.exists() and child_pid.read_text())
    runner = int((launcher._path(out.resource_id) / "pid").read_text().split()[0])
    os.kill(runner, signal.SIGKILL)
    assert wait_for(lambda: not os.path.exists(f"/proc/{runner}") or open(f"/proc/{runner}/stat").read().split()[2] == "Z")
    assert launcher.status(out.resource_id) == ("running", None)  # its command runs on
    agent_pass(store, lambda n: launcher, clock(), clock=clock)
    assert store.get(stored.id).state == "running" and not _gone(child_pid)
    assert cancel(store, stored.id, lambda n: launcher, clock()).state == "cancelled"
    assert wait_for(lambda: _gone(child_pid), timeout=15)


def test_a_pass_reports_the_runs_that_ended_in_it(store_target, tmp_path):
    """`agent --once` printed nothing for a job whose run failed in the pass, and exited 0."""
    store = Store(store_target)
    launcher = LocalLauncher(tmp_path)
    failing = add(store, f"{PY} -c 'raise SystemExit(3)'")
    (out,) = agent_pass(store, lambda n: launcher, clock(), clock=clock)
    assert out.state == "running" and wait_for(lambda: launcher.status(out.resource_id)[0] != "running")
    (done,) = agent_pass(store, lambda n: launcher, clock(), clock=clock)
    assert (done.job_id, done.state, done.message) == (failing.id, "failed", "exit code 3")
    assert agent_pass(store, lambda n: launcher, clock(), clock=clock) == []  # said once


def test_a_cancelled_run_brings_its_record_home_and_counts_as_ran(store_target, tmp_path):
    """The tracker writes a cancelled run's record when SIGTERM ends its command, but the job was
    final, so nobody collected it: its energy was missing from the store and the ledger did not
    even count it as ran."""
    from carbonsched.measure.totals import team_ledger
    from carbonsched.providers.grid import build_forecast_source

    store = Store(store_target)
    launcher = LocalLauncher(tmp_path)
    started = tmp_path / "started"
    stored = add(store, f"{PY} -c 'import time; open(\"{started}\", \"w\").close(); time.sleep(120)'")
    (out,) = agent_pass(store, lambda n: launcher, clock(), clock=clock)
    assert wait_for(started.exists)
    cancel(store, stored.id, lambda n: launcher, clock())
    assert wait_for(lambda: launcher.status(out.resource_id)[0] != "running" and launcher.measurement(out.resource_id))
    agent_pass(store, lambda n: launcher, clock(), clock=clock)
    record = store.load_measurement(stored.id)
    assert record["exit_code"] == 128 + 15 and record["wall_seconds"] > 0
    agent_pass(store, lambda n: launcher, clock(), clock=clock)  # collected once
    assert [e["kind"] for e in store.events(stored.id)].count("measured") == 1
    doc = team_ledger(store, source=build_forecast_source(Settings(home=tmp_path, intensity_source="profile")),
                      baseline_region="aws:us-east-1")
    assert doc["totals"]["jobs_ran"] == 1 and doc["totals"]["jobs_measured"] == 1


def test_a_run_folder_that_cannot_be_made_is_a_launch_error(store_target, tmp_path):
    (tmp_path / "runs").write_text("not a folder")
    with pytest.raises(LaunchError, match="cannot prepare the run folder"):
        LocalLauncher(tmp_path).launch(add(Store(store_target), f"{PY} -c pass"), {}, 0, "t")


def test_a_fixed_cloud_launcher_only_gets_its_own_placements(store_target, tmp_path):
    settings = Settings(home=tmp_path)
    store = Store(store_target)
    j = job(f"{PY} -c pass")
    now = datetime(2026, 11, 27, 10, 30, tzinfo=UTC)
    everywhere = make_plan(j, now=now, settings=settings)
    assert {p.provider for p in everywhere.placements} == {"aws", "gcp"}  # GCP would be chosen unrestricted
    with pytest.raises(UserInputError, match="cannot start placements on gcp"):
        submit(j, now=now, settings=settings, store=store, launcher="aws", plan=everywhere, launch=False)
    assert store.jobs() == []  # nothing stored
    stored, _ = submit(j, now=now, settings=settings, store=store, launcher="aws", launch=False)
    assert {p["provider"] for p in stored.plan["placements"]} == {"aws"}
    with pytest.raises(UserInputError, match="allows only gcp"):
        restrict_to_launcher(job(f"{PY} -c pass", constraints={"providers": ["gcp"]}), "aws")


def test_a_poison_job_fails_alone_and_the_agent_goes_on(store_target, tmp_path):
    store = Store(store_target)
    launcher = LocalLauncher(tmp_path)
    poison = add(store, f"{PY} -c pass\x00oops", placements=1)  # stored before validation existed
    good = add(store, f"{PY} -c pass", placements=1)
    out = {o.job_id: o for o in agent_pass(store, lambda n: launcher, clock(), clock=clock)}
    assert out[good.id].state == "running"
    assert out[poison.id].state == "failed" and store.get(poison.id).state == "failed"
    assert "NUL" in out[poison.id].message or "null byte" in out[poison.id].message
    with pytest.raises(JobSpecError, match="NUL byte"):
        job(f"{PY} -c pass\x00oops")
    with pytest.raises(JobSpecError, match="cannot be split"):
        job(f"{PY} -c 'unterminated")


def test_a_launch_that_died_before_its_process_started_is_not_a_run(tmp_path):
    launcher = LocalLauncher(tmp_path)
    stored_job = type("J", (), {"id": "phantom", "spec": {"command": f"{PY} -c pass"}})()
    token = launch_token("phantom", 0)
    d = tmp_path / "runs" / "phantom" / "attempt-0"
    d.mkdir(parents=True)
    (d / "token").write_text(token)  # the crash fell here
    assert launcher.find(stored_job, 0, token) is None  # no process: the agent launches it again
    assert launcher.status(f"local:{d}") == ("running", None)  # a runner may still be starting ...
    old = time.time() - STARTUP_GRACE_S - 5
    os.utime(d / "token", (old, old))
    assert launcher.status(f"local:{d}") == ("failed", None)  # ... but not for ever: a stored "running" job ends
    (d / "pid").write_text("1")
    assert launcher.find(stored_job, 0, token) == f"local:{d}"  # a started run is found


def test_a_recycled_pid_is_not_the_run(tmp_path):
    launcher = LocalLauncher(tmp_path)
    d = tmp_path / "runs" / "x" / "attempt-0"
    d.mkdir(parents=True)
    (d / "token").write_text("t")
    (d / "pid").write_text(f"{os.getpid()} 1")  # a live pid, but not started at tick 1
    assert launcher.status(f"local:{d}") == ("failed", None)
    launcher.cancel(f"local:{d}")  # and cancel does not signal the stranger (this test process)


def test_image_cannot_smuggle_docker_options():
    for bad in ("--privileged", "--volume=/:/host", "--entrypoint=/bin/sh", "ubuntu --privileged", "Ubuntu:latest"):
        with pytest.raises(JobSpecError, match="not an image reference"):
            job("python train.py", image=bad)
    stored = type("J", (), {"id": "x", "spec": {"command": "python train.py", "image": "--privileged"}})()
    with pytest.raises(LaunchError, match="not an image reference"):
        job_argv(stored)  # a job stored before validation is refused at launch too
    ok = type("J", (), {"id": "x", "spec": {"command": "python t.py", "image": "nvcr.io/nvidia/pytorch:24.10-py3"}})()
    assert job_argv(ok) == ["docker", "run", "--rm", "--gpus", "all", "-e", "CARBONSCHED_JOB_ID", "--",
                            "nvcr.io/nvidia/pytorch:24.10-py3", "python", "t.py"]  # the id passes into the container


def test_local_jobs_get_an_allow_listed_environment():
    j = type("J", (), {"id": "x", "spec": {"command": "env", "env": {"HF_HOME": "/data/hf"}}})()
    env = job_process_env(j, {"PATH": "/usr/bin", "LC_ALL": "C", "AWS_SECRET_ACCESS_KEY": "abc123secret",
                              "ELECTRICITYMAPS_TOKEN": "tok-123456", "HF_HOME": "/home/me/hf"})
    assert env == {"PATH": "/usr/bin", "LC_ALL": "C", "HF_HOME": "/data/hf", "CARBONSCHED_JOB_ID": "x"}
    assert job_process_env(j, {}, segment=2) == {"HF_HOME": "/data/hf", "CARBONSCHED_JOB_ID": "x",
                                                 "CARBONSCHED_SEGMENT": "2", "CARBONSCHED_RESUME": "1"}


def test_store_runs_and_logs_are_private(tmp_path):
    home = tmp_path / "home"
    store = Store(home / "jobs.sqlite")
    launcher = LocalLauncher(home)
    stored = add(store, f"{PY} -c print(1)", placements=1)
    agent_pass(store, lambda n: launcher, clock(), clock=clock)
    assert (home / "jobs.sqlite").stat().st_mode & 0o777 == 0o600
    run = home / "runs" / stored.id / "attempt-0"
    assert all(d.stat().st_mode & 0o777 == 0o700 for d in (run, run.parent, run.parent.parent))  # runs/ too
    assert wait_for(lambda: (run / "exit.json").exists())
    assert (run / "log.txt").stat().st_mode & 0o777 == 0o600


def test_error_texts_are_redacted_before_they_are_stored(store_target, tmp_path, monkeypatch):
    monkeypatch.setenv("WATTTIME_USERNAME", "alice")
    monkeypatch.setenv("WATTTIME_PASSWORD", "s3cret-pass")
    store = Store(store_target)
    stored = add(store, "true", placements=1)
    echoed = "server said: Authorization: Basic YWxpY2U6czNjcmV0LXBhc3M= (user alice, pass s3cret-pass)"
    store.add_event(stored.id, clock(), "agent-error", {"message": echoed})
    text = json.dumps(store.events(stored.id))
    assert "s3cret-pass" not in text and "YWxpY2U6czNjcmV0LXBhc3M=" not in text and "***" in text


def test_a_launch_without_credentials_fails_the_job_and_the_agent_says_so(cli, tmp_path):
    """Issue 13's reproduction: submit --launcher aws without credentials left the job in
    `launching`, and every `agent --once` retried it and exited 0. The real boto3 client, no
    credentials anywhere (nothing reaches the network: the instance-metadata lookup is off)."""
    from conftest import EXAMPLE_JOB

    home = tmp_path / "home"
    env = {"CARBONSCHED_HOME": str(home), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
           "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_EC2_METADATA_DISABLED": "true",
           "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "", "AWS_DEFAULT_REGION": "us-east-1"}
    # submit checks the launcher's credentials first: refused, nothing stored
    r = cli("submit", EXAMPLE_JOB, "--launcher", "aws", "--yes", "--now", "2026-01-05T10:00Z", extra_env=env)
    assert r.returncode == 2 and "no AWS credentials found" in r.stderr and "nothing was stored" in r.stderr, r.stderr
    assert not (home / "jobs.sqlite").exists() or Store(home / "jobs.sqlite").jobs() == []
    # credentials that were there at submit and are gone (expired, rotated) when the agent launches;
    # planned as of a past instant (waiting for the mean forecast), so its start is already due for the agent
    r = cli("submit", EXAMPLE_JOB, "--launcher", "aws", "--yes", "--now", "2026-01-05T10:00Z", "--deferral", "expected",
            extra_env={**env, "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "expired"})
    assert r.returncode == 0, r.stderr
    (stored,) = Store(home / "jobs.sqlite").jobs()
    r = cli("agent", "--once", extra_env=env)
    assert r.returncode == 1 and "no credentials" in r.stdout and "1 failed or erred" in r.stdout, r.stdout + r.stderr
    store = Store(home / "jobs.sqlite")
    done = store.get(stored.id)
    assert done.state == "failed" and [a.outcome for a in store.attempts(done.id)] == ["error"]
    r = cli("agent", "--once", extra_env=env)  # nothing left to retry
    assert r.returncode == 0 and "0 job(s) launched" in r.stdout and "no credentials" not in r.stdout


def test_a_runner_whose_launcher_died_before_recording_it_runs_nothing(tmp_path):
    """The window between Popen and the pid write: an agent killed there leaves a token without a
    pid, so the next agent launches the attempt again. The first runner must then not run the
    command: it waits for its own pid in the pid file and exits without it (or when another
    process's pid is there). Then a relaunch runs the command once."""
    import subprocess as sp

    from carbonsched.providers.cloud.launcher import launch_token
    from carbonsched.providers.cloud.local import LocalLauncher

    d = tmp_path / "runs" / "j1" / "attempt-0"
    d.mkdir(parents=True)
    marker = tmp_path / "ran.txt"
    cmd = [sys.executable, "-m", "carbonsched.runner", "--dir", str(d), "--token", "t", "--startup-wait", "1",
           "--", "sh", "-c", f"echo x >> {marker}"]
    orphan = sp.run(cmd, capture_output=True, text=True, timeout=30)  # nobody writes its pid
    assert orphan.returncode == 0 and not marker.exists() and not (d / "exit.json").exists()
    (d / "pid").write_text("999999 1")  # a newer launch owns the attempt
    t0 = time.monotonic()
    assert sp.run(cmd, timeout=30).returncode == 0 and not marker.exists() and time.monotonic() - t0 < 1.0
    (d / "pid").unlink()
    launcher = LocalLauncher(tmp_path)
    job = type("J", (), {"id": "j1", "spec": {"command": f"sh -c 'echo x >> {marker}'"}})()
    assert launcher.find(job, 0, launch_token("j1", 0)) is None  # "not started": launch it again
    rid = launcher.launch(job, {}, 0, launch_token("j1", 0))
    deadline = time.monotonic() + 30
    while launcher.status(rid)[0] == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert launcher.status(rid) == ("succeeded", 0) and marker.read_text() == "x\n"


def test_the_agent_log_says_a_local_run_is_here_not_in_the_planned_region(store_target, tmp_path):
    from carbonsched.run.agent import run_agent

    store = Store(store_target)
    add(store, f"{PY} -c pass")
    lines: list[str] = []
    run_agent(store, lambda n: LocalLauncher(tmp_path), clock, once=True, log=lines.append)
    assert any(": running on this machine (planned in aws:r0" in line for line in lines), lines
