"""Job store, local launcher, submit/agent: real SQLite files and a real PostgreSQL server, real
subprocesses, a real kill -9."""
from __future__ import annotations

import json
import signal
import sqlite3
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from carbonsched.errors import CapacityError
from carbonsched.spec.job import job_from_dict
from carbonsched.providers.cloud.launcher import launch_token
from carbonsched.providers.cloud.local import LocalLauncher
from carbonsched.run.store import Store, StoreError, UnknownJobError
from carbonsched.run.agent import agent_pass
from carbonsched.run.submit import cancel, launch_job, refresh_status, submit

from conftest import poll_status

NOW = datetime(2026, 11, 27, 10, 30, tzinfo=timezone.utc)
PY = sys.executable


def job(command: str, **extra):
    return job_from_dict({"name": "t", "command": command, "gpu": "A100", "gpus": 8, "hours": 2, **extra})


def wait_done(store, job_id, launcher, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        j = refresh_status(store, store.get(job_id), lambda name: launcher, datetime.now(timezone.utc))
        if j.state in ("succeeded", "failed"):
            return j
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def test_store_schema_claim_and_events(env, tmp_path):
    settings, store, _ = env
    assert store.journal_mode == ("wal" if store.path else None)
    j = store.add_job(name="a", spec={}, plan={"placements": []}, start_at=NOW, launcher="local", now=NOW)
    assert store.get(j.id[:6]).id == j.id  # prefix lookup
    with pytest.raises(UnknownJobError):
        store.get("zzzz")
    assert [x.id for x in store.due(NOW)] == [j.id] and store.due(NOW - timedelta(minutes=1)) == []
    other = store.reopen()  # a second agent on the same store
    results = []
    barrier = threading.Barrier(2)

    def claim(s, who):
        barrier.wait()
        results.append(s.claim(j.id, who, NOW))

    threads = [threading.Thread(target=claim, args=(s, w)) for s, w in ((store, "a"), (other, "b"))]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(results) == [False, True]  # exactly one claim wins
    assert [e["kind"] for e in store.events(j.id)] == ["scheduled", "claimed"]
    other.close()


def test_store_refuses_newer_corrupt_and_locked_files(tmp_path):
    newer = tmp_path / "newer.sqlite"
    Store(newer).close()
    con = sqlite3.connect(newer)
    con.execute("PRAGMA user_version = 99")
    con.close()
    with pytest.raises(StoreError, match="schema version 99, newer"):
        Store(newer)
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="move it aside"):
        Store(corrupt)
    assert corrupt.read_bytes() == b"this is not a database" * 100  # untouched
    locked = Store(tmp_path / "locked.sqlite", timeout_s=0.2)
    holder = sqlite3.connect(tmp_path / "locked.sqlite", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    with pytest.raises(StoreError, match="locked"):
        locked.add_job(name="x", spec={}, plan={}, start_at=NOW, launcher="local", now=NOW)
    holder.execute("ROLLBACK")
    locked.add_job(name="x", spec={}, plan={}, start_at=NOW, launcher="local", now=NOW)


def test_local_launch_success_failure_missing_command_and_timeout(env, tmp_path):
    settings, store, launcher = env
    marker = tmp_path / "ran.txt"
    ok = job(f"{PY} -c \"open('{marker}', 'a').write('x\\\\n')\"")
    stored, outcome = submit(ok, now=NOW, settings=settings, store=store, launcher="local",
                             launcher_factory=lambda name: launcher)
    assert outcome.state == "running"
    best = stored.plan["placements"][0]["region_id"]
    assert len(stored.plan["forecasts"][best]["values"]) >= 1  # the forecasts behind the decision are kept
    done = wait_done(store, stored.id, launcher)
    assert done.state == "succeeded" and done.exit_code == 0 and marker.read_text() == "x\n"
    bad, out = submit(job(f"{PY} -c 'raise SystemExit(3)'"), now=NOW, settings=settings, store=store,
                      launcher="local", launcher_factory=lambda name: launcher)
    assert wait_done(store, bad.id, launcher).exit_code == 3
    missing, _ = submit(job("no-such-binary-xyz --flag"), now=NOW, settings=settings, store=store, launcher="local",
                        launcher_factory=lambda name: launcher)
    done = wait_done(store, missing.id, launcher)
    assert done.state == "failed" and done.exit_code == 127
    assert "command not found: no-such-binary-xyz" in launcher.logs(done.resource_id)
    slow = LocalLauncher(settings.home, timeout_s=0.5)
    s, _ = submit(job(f"{PY} -c 'import time; time.sleep(30)'"), now=NOW, settings=settings, store=store,
                  launcher="local", launcher_factory=lambda name: slow)
    done = wait_done(store, s.id, slow)
    exit_doc = json.loads((Path(done.resource_id[len("local:"):]) / "exit.json").read_text())
    assert done.state == "failed" and exit_doc["timed_out"] is True


def test_cancel_forwards_sigterm_to_the_command(env, tmp_path):
    settings, store, launcher = env
    got = tmp_path / "got-term.txt"
    code = (f"import signal, sys, time\n"
            f"def h(s, f):\n    open('{got}', 'w').write(str(s)); sys.exit(0)\n"
            f"signal.signal(signal.SIGTERM, h)\nopen('{got}.ready', 'w').write('1')\ntime.sleep(60)\n")
    script = tmp_path / "wait.py"
    script.write_text(code)
    stored, _ = submit(job(f"{PY} {script}"), now=NOW, settings=settings, store=store, launcher="local",
                       launcher_factory=lambda name: launcher)
    deadline = time.monotonic() + 20
    while not Path(f"{got}.ready").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cancel(store, stored.id, lambda name: launcher, NOW).state == "cancelled"
    deadline = time.monotonic() + 20
    while not got.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert got.read_text() == str(int(signal.SIGTERM))


def test_deferred_job_waits_for_its_start_then_the_agent_launches_it(env, tmp_path):
    settings, store, launcher = env
    marker = tmp_path / "ran.txt"
    j = job(f"{PY} -c \"open('{marker}', 'a').write('x')\"", window={"earliest_start": "2026-11-28T06:00:00Z"})
    stored, outcome = submit(j, now=NOW, settings=settings, store=store, launcher="local",
                             launcher_factory=lambda name: launcher)
    assert outcome is None and stored.state == "scheduled" and stored.start_at >= datetime(2026, 11, 28, 6, tzinfo=timezone.utc)
    assert agent_pass(store, lambda name: launcher, NOW + timedelta(hours=1)) == []  # not due yet
    out = agent_pass(store, lambda name: launcher, stored.start_at)
    assert [o.state for o in out] == ["running"]
    assert agent_pass(store, lambda name: launcher, stored.start_at) == []  # never twice
    assert wait_done(store, stored.id, launcher).state == "succeeded" and marker.read_text() == "x"


class NoCapacityIn:
    """The cloud, as far as this test is concerned: no capacity in some regions, else run locally."""

    def __init__(self, inner, regions):
        self.inner, self.regions, self.name = inner, set(regions), "local"
        self.calls = []

    def launch(self, job, placement, attempt, token):
        self.calls.append(placement["region_id"])
        if placement["region_id"] in self.regions:
            raise CapacityError(f"We currently do not have sufficient capacity in {placement['region_id']}",
                                code="InsufficientInstanceCapacity")
        return self.inner.launch(job, placement, attempt, token)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_failover_goes_down_the_ranking_and_records_every_attempt(env, tmp_path):
    settings, store, launcher = env
    j = job(f"{PY} -c 'print(1)'")
    from carbonsched.planning import plan as make_plan

    plan = make_plan(j, now=NOW, settings=settings, top=10)
    first, second = plan.placements[0].region_id, plan.placements[1].region_id
    cloud = NoCapacityIn(launcher, {first})
    stored, outcome = submit(j, now=NOW, settings=settings, store=store, launcher="local", plan=plan,
                             launcher_factory=lambda name: cloud)
    assert outcome.state == "running" and outcome.placement["region_id"] == second
    attempts = store.attempts(stored.id)
    assert [(a.attempt, a.outcome, a.error_code) for a in attempts] == [(0, "capacity", "InsufficientInstanceCapacity"),
                                                                       (1, "launched", None)]
    assert attempts[1].region_id == second
    # the local launcher ran it on this machine: the job says so, not the plan's region
    assert store.get(stored.id).region_id is None and store.get(stored.id).instance_type == "this machine"
    moved = [e for e in store.events(stored.id) if e["kind"] == "ran-elsewhere"]
    assert moved and moved[0]["planned"]["region_id"] == second and moved[0]["ran_on"]["where"] == "this machine"
    everywhere = NoCapacityIn(launcher, {p.region_id for p in plan.placements})
    s2, out2 = submit(j, now=NOW, settings=settings, store=store, launcher="local", plan=plan,
                      launcher_factory=lambda name: everywhere, max_attempts=3)
    assert out2.state == "failed" and "no capacity in the 3 best" in out2.message
    assert len(store.attempts(s2.id)) == 3 and store.get(s2.id).state == "failed"


def test_kill_9_between_launch_and_store_write_is_reconciled(cli, tmp_path):
    home = tmp_path / "home"
    counter = tmp_path / "runs.txt"
    jobfile = tmp_path / "job.toml"
    jobfile.write_text(f'name = "crash"\ncommand = "{PY} -c \\"open(\'{counter}\', \'a\').write(\'run\\\\\\\\n\')\\""\n'
                       'gpu = "A100"\ngpus = 8\nhours = 1\n')
    env = {"CARBONSCHED_HOME": str(home)}
    r = cli("submit", jobfile, "--launcher", "local", "--yes",
            extra_env={**env, "CARBONSCHED_FAULT": "after-launch", "CARBONSCHED_LEASE_SECONDS": "4"})
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr)
    store = Store(home / "jobs.sqlite")
    (stuck,) = store.jobs()
    assert stuck.state == "launching" and [a.outcome for a in store.attempts(stuck.id)] == ["pending"]
    r = cli("agent", "--once", "--stale-after", "0", extra_env=env)
    assert r.returncode == 0 and store.get(stuck.id).state == "launching"  # the dead submit's lease still holds
    time.sleep(5.1)  # ... for its 4 s (rounded up to the second)
    r = cli("agent", "--once", "--stale-after", "0", extra_env=env)
    assert r.returncode == 0, r.stderr
    job_now = store.get(stuck.id)
    assert job_now.state in ("running", "succeeded")
    assert [a.outcome for a in store.attempts(stuck.id)] == ["reconciled"]
    deadline = time.monotonic() + 20
    while not counter.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    assert counter.read_text() == "run\n"  # exactly one run
    assert len(list((home / "runs" / stuck.id).iterdir())) == 1


def test_cli_submit_dry_run_confirmation_status_and_list(cli, tmp_path):
    env = {"CARBONSCHED_HOME": str(tmp_path / "home")}
    jobfile = tmp_path / "job.toml"
    jobfile.write_text(f'name = "demo"\ncommand = "{PY} -c \\"print(42)\\""\ngpu = "A100"\ngpus = 8\nhours = 1\n')
    dry = cli("submit", jobfile, "--dry-run", "--now", "2026-11-27T10:30Z", extra_env=env)
    plan = cli("plan", jobfile, "--now", "2026-11-27T10:30Z", extra_env=env)
    assert dry.returncode == 0 and dry.stdout == plan.stdout
    r = cli("submit", jobfile, "--launcher", "local", extra_env=env)  # no terminal, no --yes
    assert r.returncode == 2 and "--yes" in r.stderr
    r = cli("submit", jobfile, "--launcher", "local", "--yes", "--json", extra_env=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["state"] == "running" and doc["attempts"][0]["outcome"] == "launched"
    job_id = doc["id"]
    st = poll_status(cli, job_id, env, timeout=20)
    assert st["state"] == "succeeded" and st["exit_code"] == 0
    assert [e["kind"] for e in st["events"]][:3] == ["scheduled", "claimed", "attempt"]
    assert cli("logs", job_id, extra_env=env).stdout == "42\n"
    listing = cli("list", extra_env=env)
    assert job_id in listing.stdout and "succeeded" in listing.stdout
    r = cli("status", "nope", extra_env=env)
    assert r.returncode == 2 and "no job 'nope'" in r.stderr
    nocmd = tmp_path / "nocmd.toml"
    nocmd.write_text('gpu = "A100"\ngpus = 8\nhours = 1\n')
    r = cli("submit", nocmd, "--yes", extra_env=env)
    assert r.returncode == 2 and "command" in r.stderr


class Counting:
    """A cloud stand-in that counts launches, can fail unclearly after starting, and can run a hook."""

    def __init__(self, name, inner, unclear=False, during=None):
        self.name, self.inner, self.unclear, self.during = name, inner, unclear, during
        self.launches = 0

    def launch(self, job, placement, attempt, token):
        from carbonsched.errors import LaunchError

        self.launches += 1
        rid = self.inner.launch(job, placement, attempt, token)
        if self.during:
            self.during()
        if self.unclear:
            raise LaunchError("read timeout after RunInstances was sent", retryable=True)
        return rid

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_resume_after_the_attempt_was_recorded_launches_nothing_more(env):
    settings, store, launcher = env
    cloud = Counting("local", launcher)
    stored = store.add_job(name="x", spec={"command": f"{PY} -c pass"}, now=NOW, start_at=NOW, launcher="local",
                           plan={"placements": [{"rank": 1, "region_id": "aws:a"}, {"rank": 2, "region_id": "aws:b"}]})
    assert store.claim(stored.id, "w1", NOW)
    token = launch_token(stored.id, 0)
    store.begin_attempt(stored.id, attempt=0, rank=1, launcher="local", placement={"region_id": "aws:a"}, token=token, now=NOW)
    rid = launcher.launch(store.get(stored.id), {}, 0, token)
    store.finish_attempt(stored.id, 0, outcome="launched", now=NOW, resource_id=rid)  # ... and then the crash
    out = agent_pass(store, lambda name: cloud, NOW + timedelta(hours=1), stale_after_s=0)
    assert [o.state for o in out] == ["running"] and cloud.launches == 0
    assert store.get(stored.id).resource_id == rid and len(store.attempts(stored.id)) == 1


def test_unclear_launch_failure_is_reconciled_not_failed(env):
    settings, store, launcher = env
    cloud = Counting("local", launcher, unclear=True)
    stored, outcome = submit(job(f"{PY} -c pass"), now=NOW, settings=settings, store=store, launcher="local",
                             launcher_factory=lambda name: cloud)
    assert outcome.state == "running" and cloud.launches == 1
    assert [a.outcome for a in store.attempts(stored.id)] == ["reconciled"]


def test_cancel_while_launching_terminates_what_the_launch_started(env, tmp_path):
    settings, store, launcher = env
    holder = {}
    script = tmp_path / "long.py"
    script.write_text("import time\ntime.sleep(60)\n")
    cloud = Counting("local", launcher, during=lambda: cancel(store, holder["id"], lambda n: launcher, NOW))
    stored = store.add_job(name="x", spec={"command": f"{PY} {script}"}, now=NOW, start_at=NOW, launcher="local",
                           plan={"placements": [{"rank": 1, "region_id": "aws:a"}]})
    holder["id"] = stored.id
    out = launch_job(store, stored.id, lambda name: cloud, now=NOW)
    assert store.get(stored.id).state == "cancelled" and "terminated" in out.message
    assert any(e["kind"] == "terminated" for e in store.events(stored.id))
    pid = int((Path(out.resource_id[len("local:"):]) / "pid").read_text().split()[0])
    deadline = time.monotonic() + 20
    def alive(pid):  # the runner is our child here: once it exits it is a zombie until reaped
        try:
            return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            return False

    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid), "the run started during the launch is still alive"


def test_auto_launcher_fails_over_across_providers(env):
    settings, store, launcher = env
    aws = NoCapacityIn(launcher, {"aws:a"})
    aws.name = "aws"
    gcp = Counting("gcp", launcher)
    stored = store.add_job(name="x", spec={"command": f"{PY} -c pass"}, now=NOW, start_at=NOW, launcher="auto",
                           plan={"placements": [{"rank": 1, "provider": "aws", "region_id": "aws:a"},
                                                {"rank": 2, "provider": "gcp", "region_id": "gcp:b"}]})
    out = launch_job(store, stored.id, {"aws": aws, "gcp": gcp}.__getitem__, now=NOW)
    assert out.state == "running" and out.placement["region_id"] == "gcp:b" and gcp.launches == 1
    assert [(a.launcher, a.outcome) for a in store.attempts(stored.id)] == [("aws", "capacity"), ("gcp", "launched")]


def test_cli_bad_inputs_for_the_job_commands(cli, tmp_path):
    env = {"CARBONSCHED_HOME": str(tmp_path / "home")}
    afile = tmp_path / "a-file"
    afile.write_text("x")
    for args, extra in ((["status"], {"CARBONSCHED_HOME": str(afile / "sub")}), (["agent", "--interval", "nan"], env),
                        (["agent", "--once", "--stale-after", "-5"], env), (["status", "%"], env)):
        r = cli(*args, extra_env=extra)
        assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
    jobfile = tmp_path / "job.toml"
    jobfile.write_text(f'command = "{PY} -c pass"\ngpu = "A100"\ngpus = 8\nhours = 1\n')
    r = cli("submit", jobfile, "--yes", "--max-attempts", "0", extra_env=env)
    assert r.returncode == 2 and "--max-attempts" in r.stderr
    r = cli("plan", jobfile, "--plot", "/proc/nope/x.png")
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_job_env_reaches_the_local_command_and_secret_names_are_refused(env, tmp_path):
    from carbonsched.errors import JobSpecError

    settings, store, launcher = env
    out = tmp_path / "env.txt"
    j = job(f"{PY} -c \"import os; open('{out}', 'w').write(os.environ['HF_HOME'])\"", env={"HF_HOME": "/data/hf"})
    stored, _ = submit(j, now=NOW, settings=settings, store=store, launcher="local", launcher_factory=lambda n: launcher)
    assert wait_done(store, stored.id, launcher).state == "succeeded" and out.read_text() == "/data/hf"
    with pytest.raises(JobSpecError, match="looks like a secret"):
        job("true", env={"WANDB_API_KEY": "abc"})
    with pytest.raises(JobSpecError, match="not a valid environment variable name"):
        job("true", env={"1BAD": "x"})
