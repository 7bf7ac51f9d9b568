"""`carbonsched server --workers 2` as a real process: the worker processes build their app from the
environment (store, settings, limits) and answer on one port."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx

from carbonsched.run.store import Store
from carbonsched.run.tokens import create_token

from conftest import EXAMPLE_JOB, NOW, NOW_ISO
from server_fixture import free_port


def test_two_worker_processes_serve_one_port_with_the_limits_given(tmp_path):
    home = tmp_path / "home"
    token, _ = create_token(Store(home / "jobs.sqlite"), team="ml", scope="plan", name="w", now=NOW)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBONSCHED_")}
    env.update(CARBONSCHED_HOME=str(home), XDG_CONFIG_HOME=str(tmp_path / "cfg"), CARBONSCHED_INTENSITY_SOURCE="profile")
    script = str(Path(sys.executable).with_name("carbonsched"))
    proc = subprocess.Popen([script, "server", "--port", str(port), "--workers", "2", "--max-body-kib", "4"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline, pids = time.monotonic() + 60, set()
        while time.monotonic() < deadline and len(pids) < 2:
            try:
                pids.add(httpx.get(url + "/healthz", headers={"Connection": "close"}).json()["pid"])
            except httpx.HTTPError:
                time.sleep(0.2)
        assert pids and proc.pid not in pids  # answered by worker processes, not the parent
        h = {"Authorization": f"Bearer {token}"}
        job = tomllib.loads(EXAMPLE_JOB.read_text())
        r = httpx.post(url + "/v1/plan", json={"job": job, "now": NOW_ISO}, headers=h, timeout=60)
        assert r.status_code == 200 and r.json()["placements"], r.text
        r = httpx.post(url + "/v1/plan", json={"job": {**job, "name": "x" * 5000}}, headers=h, timeout=60)
        assert r.status_code == 413  # --max-body-kib reached the workers
        assert httpx.get(url + "/v1/jobs", timeout=10).status_code == 401
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert any(d["route"] == "/v1/plan" and d["status"] == 200 for d in lines)  # the JSON request log, per worker
    assert token.split("_", 2)[2] not in out  # the secret (it may itself contain "_")
