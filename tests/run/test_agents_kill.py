"""Three `carbonsched agent` processes share one real PostgreSQL store; 1,000 due jobs go through
the real local launcher while the agents are SIGKILLed at random moments (and, deterministically,
once between the launch and the store write) and restarted. Every job must run exactly once and
none may be lost. Each job's command appends its id to one file (O_APPEND: whole lines), so a
second run or a missing run shows there, independently of what the store says."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

from carbonsched.run.store import Store

JOBS = 1000
AGENTS = 3
LEASE_S = 2.0


def start_agent(env: dict, log: Path, fault: str | None = None) -> subprocess.Popen:
    script = Path(sys.executable).with_name("carbonsched")
    extra = {"CARBONSCHED_FAULT": fault} if fault else {}
    return subprocess.Popen([str(script), "agent", "--interval", "0.3", "--stale-after", str(LEASE_S)],
                            env={**env, **extra}, stdout=open(log, "ab"), stderr=subprocess.STDOUT)


def test_killed_agents_run_every_job_exactly_once(tmp_path, postgres):
    url = postgres.url()
    home = tmp_path / "home"
    ran = tmp_path / "ran.log"
    store = Store(url)
    now = datetime.now(timezone.utc) - timedelta(minutes=1)
    placement = {"rank": 1, "region_id": "aws:eu-north-1", "instance_type": "p5.48xlarge", "market": "on-demand"}
    ids = [f"job{i:04d}" for i in range(JOBS)]
    for i, job_id in enumerate(ids):
        store.add_job(name=job_id, spec={"command": f"sh -c 'echo {job_id} >> {ran}'"}, plan={"placements": [placement]},
                      start_at=now + timedelta(milliseconds=i), launcher="local", now=now, job_id=job_id)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBONSCHED_")}
    env.update(CARBONSCHED_DATABASE_URL=url, CARBONSCHED_HOME=str(home), XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    rng = random.Random(20261129)
    # agent 0's first life dies between a launch and its store write: a reclaim must reconcile that
    agents = [start_agent(env, tmp_path / f"agent{i}.log", "after-launch" if i == 0 else None) for i in range(AGENTS)]
    kills, deadline = 0, time.monotonic() + 240
    try:
        agents[0].wait(timeout=60)  # its fault first, whatever the machine's speed; then the random kills
        agents[0] = start_agent(env, tmp_path / "agent0.log")
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(0.2, 1.5))
            for i, p in enumerate(agents):  # a dead agent (the fault, or a kill) comes back
                if p.poll() is not None:
                    agents[i] = start_agent(env, tmp_path / f"agent{i}.log")
            left = store._read("SELECT COUNT(*) AS n FROM jobs WHERE state IN ('scheduled', 'launching')")[0]["n"]
            if left == 0:
                break
            if kills < 12:
                victim = rng.randrange(AGENTS)
                agents[victim].send_signal(signal.SIGKILL)
                agents[victim].wait()
                kills += 1
        # no more kills: let the agents finish the launches and record how the runs ended
        while time.monotonic() < deadline:
            states = Counter(j.state for j in store.jobs())
            if states.get("succeeded", 0) == JOBS or set(states) - {"running", "succeeded", "launching", "scheduled"}:
                break
            time.sleep(0.5)
    finally:
        for p in agents:
            p.kill()
            p.wait()
    states = Counter(j.state for j in store.jobs())
    runs = Counter(ran.read_text().split())
    stories = {j: [e["kind"] for e in store.events(j)] for j in ids if runs[j] != 1}
    assert kills >= 5, "the agents finished before they could be killed: raise JOBS"
    assert states == {"succeeded": JOBS}, (states, stories)
    assert [j for j in ids if runs[j] != 1] == [], stories  # none twice, none lost
    assert set(runs) == set(ids)
    launched = store._read("SELECT job_id, COUNT(*) AS n FROM attempts WHERE outcome IN ('launched', 'reconciled') "
                           "GROUP BY job_id HAVING COUNT(*) > 1")
    assert launched == []
    reclaimed = store._read("SELECT COUNT(*) AS n FROM events WHERE kind = 'reclaimed'")[0]["n"]
    reconciled = store._read("SELECT COUNT(*) AS n FROM attempts WHERE outcome = 'reconciled'")[0]["n"]
    print(f"kills {kills}, reclaimed {reclaimed}, reconciled {reconciled}, states {dict(states)}")
    assert reclaimed >= 1 and reconciled >= 1  # the fault's launch was found, not started again
    assert len(store._read("SELECT DISTINCT claimed_by FROM jobs")) >= AGENTS  # the agents shared the queue
