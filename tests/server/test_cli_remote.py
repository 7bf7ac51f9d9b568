"""The CLI through a server (CARBONSCHED_SERVER + CARBONSCHED_TOKEN): submit, list, status, logs,
cancel, report and `plan --server` print what the local commands print, from a real uvicorn
server whose store is the real PostgreSQL server."""
from __future__ import annotations

import json
import sys

import httpx

from carbonsched.run.store import Store
from carbonsched.run.tokens import create_token
from carbonsched.server.app import ServerConfig
from carbonsched.settings import Settings

from conftest import EXAMPLE_JOB, NOW, NOW_ISO, REPO, poll_status
from server_fixture import ApiServer, free_port

PY = sys.executable


def test_the_cli_goes_through_the_server(cli, tmp_path, postgres):
    url = postgres.url()
    store = Store(url)
    token, _ = create_token(store, team="ml", scope="submit", name="cli", now=NOW)
    other, _ = create_token(store, team="other", scope="submit", name="cli", now=NOW)
    settings = Settings(home=tmp_path / "server-home", database_url=url, intensity_source="profile",
                        cache_dir=tmp_path / "cache")
    job = tmp_path / "job.toml"
    job.write_text(EXAMPLE_JOB.read_text().replace("torchrun --nproc-per-node 8 train.py --config configs/7b.yaml",
                                                    f"{PY} -c print(42)")
                   + "\n")
    with ApiServer(ServerConfig(store_target=url, settings=settings)) as srv:
        env = {"CARBONSCHED_SERVER": srv.url, "CARBONSCHED_TOKEN": token, "CARBONSCHED_HOME": str(tmp_path / "nowhere")}
        r = cli("plan", job, "--server", "--json", "--now", NOW_ISO, extra_env=env)
        local = cli("plan", job, "--json", "--now", NOW_ISO, "--intensity-source", "profile")
        assert r.returncode == 0 and json.loads(r.stdout) == json.loads(local.stdout), r.stderr
        r = cli("plan", job, "--server", "--now", NOW_ISO, extra_env=env)
        assert r.returncode == 0 and "plan from http://127.0.0.1" in r.stdout and "aws:" in r.stdout
        r = cli("plan", job, "--server", "--intensity-source", "file", extra_env=env)  # the flag travels
        assert r.returncode == 2 and "history files" in r.stderr, r.stderr
        # a batch: the server plans it (POST /v1/plan/batch) and the CLI prints what a local plan prints;
        # the flags that set every job's policy and the default capacity travel with it
        batch = REPO / "examples" / "batch.toml"
        flags = ("--deferral", "expected", "--capacity", "8", "--now", NOW_ISO)
        r = cli("plan", "--batch", batch, "--server", "--json", *flags, "--intensity-source", "profile", extra_env=env)
        local = cli("plan", "--batch", batch, "--json", *flags, "--intensity-source", "profile")
        assert r.returncode == 0 and local.returncode == 0, r.stderr + local.stderr
        remote_doc, local_doc = json.loads(r.stdout), json.loads(local.stdout)
        for d in (remote_doc, local_doc):
            d["solver"].pop("seconds"), d["solver"].pop("timings")
        assert remote_doc == local_doc
        served = httpx.get(f"{srv.url}/metrics").text  # the server, not a local fallback, made it
        assert 'carbonsched_plan_seconds_count{kind="batch"} 1.0' in served, served
        r = cli("plan", "--batch", batch, "--server", "--now", NOW_ISO, extra_env=env)
        assert r.returncode == 0 and "Batch plan: 4 of 4 jobs placed" in r.stdout
        r = cli("plan", "--batch", batch, "--server", "--intensity-source", "file", extra_env=env)  # it travels
        assert r.returncode == 2 and "history files" in r.stderr, r.stderr
        r = cli("plan", "--batch", batch, "--server", "--now", NOW_ISO, extra_env={"CARBONSCHED_HOME": str(tmp_path / "h")})
        assert r.returncode == 2 and "CARBONSCHED_SERVER" in r.stderr  # never a local plan in its place
        r = cli("submit", job, "--launcher", "local", "--yes", "--max-delay", "0", extra_env=env)
        assert r.returncode == 0 and ": running" in r.stdout, r.stdout + r.stderr
        job_id = r.stdout.split()[1].rstrip(":")
        doc = poll_status(cli, job_id, env)
        assert doc["state"] == "succeeded" and doc["team"] == "ml"
        r = cli("status", job_id, extra_env=env)
        assert f"job {job_id} (llama-7b-finetune): succeeded" in r.stdout
        assert cli("logs", job_id, extra_env=env).stdout.strip().endswith("42")
        r = cli("list", extra_env=env)
        assert job_id in r.stdout and "succeeded" in r.stdout
        # nothing was written under the local home: the server's store has it all
        assert not (tmp_path / "nowhere").exists()
        # the measured report: record a run into the team's store (--replace: the agent already
        # measured this job, and a second record is refused without it), then read it through the server
        local_env = {"CARBONSCHED_DATABASE_URL": url, "CARBONSCHED_HOME": str(tmp_path / "h2")}
        r = cli("track", "--job", job_id, "--region", "aws:eu-north-1", "--", PY, "-c", "pass", extra_env=local_env)
        assert r.returncode == 2 and "--replace" in r.stderr  # and the command did not run
        r = cli("track", "--job", job_id, "--replace", "--region", "aws:eu-north-1", "--", PY, "-c", "pass",
                extra_env=local_env)
        assert r.returncode == 0, r.stderr
        remote_report = cli("report", job_id, "--format", "json", extra_env=env)
        local_report = cli("report", job_id, "--format", "json", "--intensity-source", "profile", extra_env=local_env)
        assert remote_report.returncode == 0, remote_report.stderr
        assert json.loads(remote_report.stdout) == json.loads(local_report.stdout)
        # another team's token: the job does not exist for it
        r = cli("status", job_id, extra_env={**env, "CARBONSCHED_TOKEN": other})
        assert r.returncode == 2 and f"no job {job_id!r}" in r.stderr
        r = cli("cancel", job_id, extra_env={**env, "CARBONSCHED_TOKEN": "cst_000000000000_" + "x" * 43})
        assert r.returncode == 2 and "refused the request (401)" in r.stderr and "x" * 43 not in r.stderr
        r = cli("list", extra_env={**env, "CARBONSCHED_TOKEN": ""})
        assert r.returncode == 2 and "CARBONSCHED_TOKEN is not" in r.stderr
    r = cli("list", extra_env={**env, "CARBONSCHED_SERVER": f"http://127.0.0.1:{free_port()}"})
    assert r.returncode == 1 and "cannot reach carbonsched server" in r.stderr
