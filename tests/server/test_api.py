"""`carbonsched server`'s API on a real uvicorn server on loopback, spoken to with httpx: auth
matrix, team isolation, bad bodies (nothing written), limits, the CLI's JSON contracts, metrics.
The store is a real SQLite file or the real PostgreSQL server (tests/pgserver.py); launches go
through the real local launcher."""
from __future__ import annotations

import json
import sys
import time
import tomllib
from datetime import datetime, timezone

import httpx
import pytest

from carbonsched.run.store import Store
from carbonsched.run.tokens import create_token, revoke_token
from carbonsched.server.app import ServerConfig
from carbonsched.settings import Settings
from carbonsched.spec.schemas import get_schema

from conftest import EXAMPLE_JOB, NOW_ISO
from server_fixture import ApiServer

JOB = tomllib.loads(EXAMPLE_JOB.read_text())
NOW = datetime(2026, 11, 27, 10, 30, tzinfo=timezone.utc)
PY = sys.executable


def tokens(store, team="ml"):
    return {scope: create_token(store, team=team, scope=scope, name=scope, now=NOW)[0]
            for scope in ("read", "plan", "submit", "admin")}


def auth(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def api(tmp_path, store_target):
    """(server, store, tokens of team ml, tokens of team other), on SQLite and on PostgreSQL."""
    url = store_target if isinstance(store_target, str) else None
    settings = Settings(home=tmp_path / "home", database_url=url, intensity_source="profile",
                        cache_dir=tmp_path / "cache")
    store = Store(store_target)
    mine, theirs = tokens(store, "ml"), tokens(store, "other")
    with ApiServer(ServerConfig(store_target=store_target, settings=settings, rate_per_s=0)) as srv:
        yield srv, store, mine, theirs
    store.close()


def local_job(command=f"{PY} -c \"print('hello from the job')\""):
    return {**JOB, "command": command, "window": {"max_delay": 0}}  # best start: now


def wait_state(client, url, token, job_id, states=("succeeded", "failed"), timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = client.get(f"{url}/v1/jobs/{job_id}", headers=auth(token)).json()
        if doc["state"] in states:
            return doc
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} stayed {doc['state']}")


def test_auth_matrix_and_team_isolation(api):
    srv, store, mine, theirs = api
    c = httpx.Client(timeout=30)
    body = {"job": JOB, "now": NOW_ISO}
    r = c.post(f"{srv.url}/v1/plan", json=body)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer" and "bearer token" in r.json()["error"]["message"]
    r = c.post(f"{srv.url}/v1/plan", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 401  # authentication comes before the body is parsed
    for bad in ("cst_000000000000_" + "x" * 43, "garbage", mine["plan"][:-2] + "zz"):
        assert c.post(f"{srv.url}/v1/plan", json=body, headers=auth(bad)).status_code == 401
    expected = {  # route -> the weakest scope that may use it
        ("POST", "/v1/plan", "plan"), ("GET", "/v1/jobs", "read"), ("GET", "/v1/regions?gpu=H100", "read"),
        ("GET", "/v1/ledger", "read"), ("GET", "/v1/tokens", "admin"), ("POST", "/v1/jobs", "submit"),
    }
    scopes = ("read", "plan", "submit", "admin")
    for method, path, needed in expected:
        for scope in scopes:
            payload = {"job": {**JOB, "command": f"{PY} -c pass"}, "now": NOW_ISO, "launcher": "local"} \
                if path == "/v1/jobs" else body if method == "POST" else None
            r = c.request(method, srv.url + path, json=payload, headers=auth(mine[scope]))
            allowed = scopes.index(scope) >= scopes.index(needed)
            assert (r.status_code < 300) == allowed, (method, path, scope, r.status_code, r.text)
            if not allowed:
                assert r.status_code == 403 and f"needs {needed!r}" in r.json()["error"]["message"]
    # the two submits above (submit and admin tokens) belong to team ml
    listed = c.get(f"{srv.url}/v1/jobs", headers=auth(mine["read"])).json()["jobs"]
    assert len(listed) == 2 and {j["team"] for j in listed} == {"ml"}
    assert c.get(f"{srv.url}/v1/jobs", headers=auth(theirs["admin"])).json()["jobs"] == []
    job_id = listed[0]["id"]
    for method, path in (("GET", f"/v1/jobs/{job_id}"), ("POST", f"/v1/jobs/{job_id}/cancel"),
                         ("GET", f"/v1/jobs/{job_id}/logs"), ("GET", f"/v1/reports/{job_id}"),
                         ("GET", f"/v1/jobs/{job_id[:4]}")):
        r = c.request(method, srv.url + path, headers=auth(theirs["admin"]))
        asked = path.split("/")[3]
        unknown = c.request(method, srv.url + path.replace(asked, "f" * len(asked)), headers=auth(theirs["admin"]))
        assert r.status_code == unknown.status_code == 404, (method, path, r.text)  # not 403: ids do not leak
        assert r.text == unknown.text.replace("f" * len(asked), asked)  # answered exactly as an unknown id
    assert store.get(job_id).state != "cancelled"
    # admin lists its own team's tokens, revokes one of them, cannot touch another team's
    toks = c.get(f"{srv.url}/v1/tokens", headers=auth(mine["admin"])).json()["tokens"]
    assert {t["team"] for t in toks} == {"ml"} and "secret_sha256" not in json.dumps(toks)
    other_id = theirs["read"].split("_")[1]
    assert c.delete(f"{srv.url}/v1/tokens/{other_id}", headers=auth(mine["admin"])).status_code == 404
    read_id = mine["read"].split("_")[1]
    assert c.delete(f"{srv.url}/v1/tokens/{read_id}", headers=auth(mine["admin"])).json()["revoked_at"]
    assert c.get(f"{srv.url}/v1/jobs", headers=auth(mine["read"])).status_code == 401


def test_bad_bodies_are_refused_with_a_message_and_nothing_is_written(api):
    srv, store, mine, _ = api
    c = httpx.Client(timeout=30)
    h = {**auth(mine["submit"]), "content-type": "application/json"}
    cases = [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 422, "must be a JSON object"),
        (json.dumps({"job": JOB, "lanucher": "local"}).encode(), 422, "did you mean launcher?"),
        (json.dumps({"job": JOB, "max_attempts": "3"}).encode(), 422, "max_attempts has the wrong type"),
        (json.dumps({"job": JOB, "max_attempts": True}).encode(), 422, "must be a number"),
        (json.dumps({"job": {**JOB, "gpus": "eight"}}).encode(), 422, "gpus"),
        (json.dumps({"job": {**JOB, "gpuu": "H100"}}).encode(), 422, "gpu"),
        (b'{"job": {"name": "x", "command": "true", "gpu": "A100", "gpus": 8, "hours": NaN}}', 422, "hours"),
        (json.dumps({"job": {**JOB, "window": {"deadline": "2026-11-27T11:00Z"}}, "now": NOW_ISO}).encode(), 422,
         "deadline"),
        (json.dumps({"job": {**JOB, "gpu": "Z9000"}}).encode(), 422, "Z9000"),
        (json.dumps({"job": {**JOB, "constraints": {"regions": ["aws:mars-1"]}}}).encode(), 422, "mars-1"),
        (json.dumps({"job": JOB, "now": "yesterday"}).encode(), 422, "now"),
        (json.dumps({"launcher": "local"}).encode(), 422, "missing key(s): job"),
        (json.dumps({"job": JOB, "launcher": "moon"}).encode(), 422, "unknown launcher"),
    ]
    for raw, status, message in cases:
        r = c.post(f"{srv.url}/v1/jobs", content=raw, headers=h)
        assert r.status_code == status and message in r.json()["error"]["message"], (raw[:80], r.status_code, r.text)
    big = json.dumps({"job": {**JOB, "name": "x" * (2 << 20)}}).encode()
    r = c.post(f"{srv.url}/v1/jobs", content=big, headers=h)
    assert r.status_code == 413 and "body over" in r.json()["error"]["message"]

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(40):
            yield b" " * 65536

    r = c.post(f"{srv.url}/v1/jobs", content=chunks(), headers=h)
    assert r.status_code == 413
    assert store.jobs() == []


def test_plan_and_submit_answer_the_cli_json_contracts(api, cli, tmp_path):
    srv, store, mine, _ = api
    c = httpx.Client(timeout=60)
    r = c.post(f"{srv.url}/v1/plan", json={"job": JOB, "now": NOW_ISO}, headers=auth(mine["plan"]))
    assert r.status_code == 200, r.text
    local = cli("plan", EXAMPLE_JOB, "--json", "--now", NOW_ISO, "--intensity-source", "profile")
    assert r.json() == json.loads(local.stdout)  # the same document, byte for byte in content
    batch = {"job": [{**JOB, "name": "a"}, {**JOB, "name": "b", "gpu": "H100"}], "capacity": {"default": 8},
             "now": NOW_ISO}
    r = c.post(f"{srv.url}/v1/plan/batch", json=batch, headers=auth(mine["plan"]))
    assert r.status_code == 200 and len(r.json()["jobs"]) == 2, r.text
    # submit with the local launcher: starts now, runs, logs and the measured report come back
    r = c.post(f"{srv.url}/v1/jobs", json={"job": local_job(), "launcher": "local"}, headers=auth(mine["submit"]))
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["state"] == "running" and doc["team"] == "ml" and doc["attempts"][0]["outcome"] == "launched"
    done = wait_state(c, srv.url, mine["read"], doc["id"])
    assert done["state"] == "succeeded" and done["exit_code"] == 0
    assert "hello from the job" in c.get(f"{srv.url}/v1/jobs/{doc['id']}/logs", headers=auth(mine["read"])).text
    assert set(done) == set(json.loads(cli_status(cli, store, tmp_path, doc["id"])))
    r = c.get(f"{srv.url}/v1/reports/{doc['id']}", headers=auth(mine["read"]))
    # every launched run is measured: the report exists and says where the job really ran
    assert r.status_code == 200 and r.json()["ran_on"] == "this machine" and r.json()["hardware"]["gpu_count"] == 0
    assert done["measured"]["ran_on"] == "this machine"
    # cancel a deferred job
    later = {**local_job(), "window": {"earliest_start": "2026-11-28T10:00Z", "deadline": "2026-11-29T10:00Z"}}
    r = c.post(f"{srv.url}/v1/jobs", json={"job": later, "launcher": "local", "now": NOW_ISO},
               headers=auth(mine["submit"]))
    assert r.status_code == 201 and r.json()["state"] == "scheduled", r.text
    r = c.post(f"{srv.url}/v1/jobs/{r.json()['id']}/cancel", headers=auth(mine["submit"]))
    assert r.json()["state"] == "cancelled"
    page = c.get(f"{srv.url}/v1/jobs?limit=1", headers=auth(mine["read"])).json()
    nxt = c.get(f"{srv.url}/v1/jobs?limit=1&cursor={page['next_cursor']}", headers=auth(mine["read"])).json()
    assert [j["id"] for j in page["jobs"] + nxt["jobs"]] == [j.id for j in store.jobs()]
    assert c.get(f"{srv.url}/v1/jobs?state=bogus", headers=auth(mine["read"])).status_code == 422
    ledger = c.get(f"{srv.url}/v1/ledger", headers=auth(mine["read"])).json()
    assert ledger["totals"]["jobs"] == 2 and ledger["totals"]["planned_kg_co2e"] > 0


def cli_status(cli, store, tmp_path, job_id) -> str:
    env = {"CARBONSCHED_DATABASE_URL": store.location} if store.path is None else {"CARBONSCHED_HOME": str(store.path.parent)}
    r = cli("status", job_id, "--json", extra_env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_metrics_health_openapi_and_rate_limit(tmp_path):
    store_path = tmp_path / "jobs.sqlite"
    store = Store(store_path)
    mine = tokens(store)
    settings = Settings(home=tmp_path, intensity_source="profile", cache_dir=tmp_path / "cache")
    with ApiServer(ServerConfig(store_target=store_path, settings=settings, rate_per_s=0.5, burst=3)) as srv:
        c = httpx.Client(timeout=30)
        assert c.get(f"{srv.url}/healthz").json()["status"] == "ok"
        assert c.get(f"{srv.url}/readyz").json() == {"status": "ready"}
        codes = [c.get(f"{srv.url}/v1/jobs", headers=auth(mine["read"])).status_code for _ in range(5)]
        assert codes[:3] == [200, 200, 200] and codes[3] == 429
        r = c.get(f"{srv.url}/v1/jobs", headers=auth(mine["read"]))
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert c.get(f"{srv.url}/v1/jobs", headers=auth(mine["plan"])).status_code == 200  # per token
        text = c.get(f"{srv.url}/metrics").text
        assert 'carbonsched_http_requests_total{method="GET",route="/v1/jobs",status="429"} 3.0' in text
        assert 'carbonsched_jobs{state="scheduled"} 0.0' in text
        spec = c.get(f"{srv.url}/openapi.json").json()
        assert {"/v1/plan", "/v1/plan/batch", "/v1/jobs", "/v1/jobs/{job_id}", "/v1/ledger"} <= set(spec["paths"])
        job_schema = spec["paths"]["/v1/plan"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        want = get_schema("job")
        want.pop("$schema")
        assert job_schema["properties"]["job"] == want  # one schema source
        answer = spec["paths"]["/v1/plan"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert answer["properties"].keys() == get_schema("plan")["properties"].keys()
    dead = "postgresql://nobody@127.0.0.1:1/none"
    with ApiServer(ServerConfig(store_target=dead, settings=settings)) as srv:
        r = httpx.get(f"{srv.url}/readyz", timeout=30)
        assert r.status_code == 503 and "cannot use the PostgreSQL job store" in r.json()["reason"]
        r = httpx.get(f"{srv.url}/v1/jobs", headers=auth(mine["read"]), timeout=30)
        assert r.status_code == 503


def test_a_revoked_token_stops_working_at_once(tmp_path):
    store = Store(tmp_path / "jobs.sqlite")
    text, token = create_token(store, team="ml", scope="read", name="ci", now=NOW)
    settings = Settings(home=tmp_path, intensity_source="profile", cache_dir=tmp_path / "cache")
    with ApiServer(ServerConfig(store_target=tmp_path / "jobs.sqlite", settings=settings)) as srv:
        assert httpx.get(f"{srv.url}/v1/jobs", headers=auth(text)).status_code == 200
        revoke_token(store, token.id, NOW)
        assert httpx.get(f"{srv.url}/v1/jobs", headers=auth(text)).status_code == 401
    assert "secret" not in json.dumps(token.to_dict()) and text.split("_", 2)[2] not in str(store._read("SELECT * FROM tokens")[0]["secret_sha256"])
