"""Team scale: agents on PostgreSQL vs SQLite, the API's plan latency, and listing a large store.

Three tables, on a real PostgreSQL server started from the binaries (tests/pgserver.py, durable:
fsync on) and a SQLite file:

1. launch throughput: N due jobs (`true` through the local launcher, each measured by the tracker), 1 and 3 `carbonsched agent`
   processes; jobs launched per second until every job has left `scheduled`, and duplicates
   (jobs with more than one launched attempt; must be 0).
2. plan latency: `carbonsched.plan` in-process (sequential, and 8 threads at once) vs POST
   /v1/plan to a `carbonsched server` process at 1, 8 and 32 concurrent clients: p50, p99,
   requests/s. The goal compares p99 through the API at 8 clients with p99 in-process at 8
   threads (the same contention for 2 cores, so what remains is the API's own cost), with the
   server on 1 and 2 worker processes (`--workers`).
3. listing: `carbonsched list` and `list --json` as processes, and GET /v1/jobs (one page of 100),
   with 100k jobs in the store.

Run: python benchmarks/team_scale.py [--jobs 300] [--list-jobs 100000] [--requests 64] [--only latency]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from pgserver import PostgresServer, free_port  # noqa: E402

from carbonsched.run.store import Store  # noqa: E402
from carbonsched.run.tokens import create_token  # noqa: E402

CLI = str(Path(sys.executable).with_name("carbonsched"))
NOW = datetime(2026, 11, 27, 10, 30, tzinfo=timezone.utc)
JOB = tomllib.loads((REPO / "examples" / "job.toml").read_text())
PLACEMENT = {"rank": 1, "region_id": "aws:eu-north-1", "instance_type": "p5.48xlarge", "market": "on-demand"}


def _env(target, home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBONSCHED_")}
    env.update(CARBONSCHED_HOME=str(home), XDG_CONFIG_HOME=str(home / "cfg"), CARBONSCHED_INTENSITY_SOURCE="profile")
    if isinstance(target, str):
        env["CARBONSCHED_DATABASE_URL"] = target
    return env


def launch_throughput(target, home: Path, jobs: int, agents: int) -> dict:
    store = Store(target)
    start = datetime.now(timezone.utc) - timedelta(minutes=1)
    for i in range(jobs):
        store.add_job(name=f"j{i}", spec={"command": "true"}, plan={"placements": [PLACEMENT]}, start_at=start,
                      launcher="local", now=start)
    env = _env(target, home)
    t0 = time.perf_counter()
    procs = [subprocess.Popen([CLI, "agent", "--interval", "0.2"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for _ in range(agents)]
    try:
        while store.count_by_state().get("scheduled", 0) or store.count_by_state().get("launching", 0):
            time.sleep(0.05)
        elapsed = time.perf_counter() - t0
    finally:
        for p in procs:
            p.kill()
            p.wait()
    dup = store._read("SELECT job_id FROM attempts WHERE outcome IN ('launched', 'reconciled') GROUP BY job_id "
                      "HAVING COUNT(*) > 1")
    return {"jobs_per_s": jobs / elapsed, "seconds": elapsed, "duplicates": len(dup)}


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def in_process_latency(n: int, threads: int) -> dict:
    from carbonsched.planning import plan
    from carbonsched.settings import Settings
    from carbonsched.spec.job import job_from_dict

    settings = Settings(intensity_source="profile")
    job = job_from_dict(JOB)
    plan(job, now=NOW, settings=settings)  # warm the caches, as a running server is
    times: list[float] = []
    lock = threading.Lock()

    def worker(k):
        for _ in range(k):
            t = time.perf_counter()
            plan(job, now=NOW, settings=settings)
            with lock:
                times.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker, args=(n // threads,)) for _ in range(threads)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    return {"p50": _pct(times, 0.5), "p99": _pct(times, 0.99), "rps": len(times) / (time.perf_counter() - t0)}


def api_latency(url: str, token: str, n: int, clients: int) -> dict:
    import httpx

    body = {"job": JOB, "now": NOW.isoformat()}
    times: list[float] = []
    errors = []
    lock = threading.Lock()

    def worker(k):
        with httpx.Client(timeout=120, headers={"Authorization": f"Bearer {token}"}) as c:
            for _ in range(k):
                t = time.perf_counter()
                r = c.post(url + "/v1/plan", json=body)
                with lock:
                    times.append(time.perf_counter() - t)
                    if r.status_code != 200:
                        errors.append(r.status_code)

    with httpx.Client(headers={"Authorization": f"Bearer {token}"}) as c:
        c.post(url + "/v1/plan", json=body, timeout=120)  # warm
    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker, args=(max(1, n // clients),)) for _ in range(clients)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    return {"p50": _pct(times, 0.5), "p99": _pct(times, 0.99), "rps": len(times) / (time.perf_counter() - t0),
            "errors": len(errors)}


def start_server(target, home: Path, port: int, workers: int = 1) -> subprocess.Popen:
    import httpx

    p = subprocess.Popen([CLI, "server", "--port", str(port), "--rate-limit", "0", "--log-level", "warning",
                          "--workers", str(workers)],
                         env=_env(target, home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return p
        except httpx.HTTPError:
            time.sleep(0.1)
    p.kill()
    raise RuntimeError("the server did not start")


def fill(target, n: int) -> None:
    """n finished jobs with one attempt and three events each, in bulk (as a year of a team's use)."""
    store = Store(target)
    plan = json.dumps({"placements": [{**PLACEMENT, "kg_co2e": 12.5, "cost_usd": 400.0, "gpu": "H100", "gpu_count": 8}],
                       "baseline": {**PLACEMENT, "kg_co2e": 30.0}})
    base = datetime(2025, 11, 1, tzinfo=timezone.utc)
    batch = 5000
    for start in range(0, n, batch):
        with store.backend.tx():
            for i in range(start, min(n, start + batch)):
                at = (base + timedelta(minutes=5 * i)).strftime("%Y-%m-%dT%H:%M:%SZ")
                jid = f"bulk{i:07d}"
                store.backend.execute(
                    "INSERT INTO jobs (id, name, state, created_at, updated_at, start_at, launcher, spec_json, plan_json,"
                    " team, region_id, instance_type, resource_id, exit_code) VALUES (?, ?, 'succeeded', ?, ?, ?, 'local',"
                    " ?, ?, 'ml', 'aws:eu-north-1', 'p5.48xlarge', ?, 0)",
                    (jid, f"job {i}", at, at, at, '{"command": "python train.py"}', plan, f"local:/runs/{jid}/attempt-0"))
                store.backend.execute(
                    "INSERT INTO attempts (job_id, attempt, rank, launcher, region_id, token, started_at, outcome, "
                    "resource_id) VALUES (?, 0, 1, 'local', 'aws:eu-north-1', ?, ?, 'launched', ?)",
                    (jid, f"tok-{jid}", at, f"local:/runs/{jid}/attempt-0"))
                for kind in ("scheduled", "claimed", "running"):
                    store.backend.execute("INSERT INTO events (job_id, at, kind, detail_json) VALUES (?, ?, ?, '{}')",
                                          (jid, at, kind))
    store.close()


def timed(argv, env) -> float:
    t = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.decode()[-500:])
    return time.perf_counter() - t


def launch_table(pg, tmp: Path, jobs: int) -> None:
    print(f"## launch throughput ({jobs} due jobs, local launcher, `true`; {os.cpu_count()} cores)")
    print(f"{'store':<12} {'agents':>6} {'jobs/s':>8} {'seconds':>8} {'duplicates':>10}")
    for name in ("sqlite", "postgresql"):
        for agents in (1, 3):
            home = tmp / f"{name}-{agents}"
            target = pg.url() if name == "postgresql" else home / "jobs.sqlite"
            r = launch_throughput(target, home, jobs, agents)
            print(f"{name:<12} {agents:>6} {r['jobs_per_s']:>8.1f} {r['seconds']:>8.1f} {r['duplicates']:>10}")


def latency_table(pg, tmp: Path, requests: int) -> None:
    print(f"\n## plan latency (examples/job.toml, {requests} plans per row)")
    print(f"{'where':<34} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>7}")
    inproc = {k: in_process_latency(requests, k) for k in (1, 8)}
    for k, r in inproc.items():
        print(f"{f'in-process, {k} thread(s)':<34} {1000 * r['p50']:>8.0f} {1000 * r['p99']:>8.0f} {r['rps']:>7.1f}")
    url = pg.url()
    token, _ = create_token(Store(url), team="ml", scope="plan", name="bench", now=NOW)
    port = free_port()
    api = {}
    for workers in (1, 2):
        server = start_server(url, tmp / "server", port, workers)
        try:
            for clients in (1, 8, 32):
                r = api[workers, clients] = api_latency(f"http://127.0.0.1:{port}", token, max(requests, clients), clients)
                print(f"{f'API, {workers} worker(s), {clients} client(s)':<34} {1000 * r['p50']:>8.0f} "
                      f"{1000 * r['p99']:>8.0f} {r['rps']:>7.1f}" + (f"  ({r['errors']} errors)" if r["errors"] else ""))
        finally:
            server.kill()
            server.wait()
    for workers in (1, 2):
        ratio = api[workers, 8]["p99"] / inproc[8]["p99"]
        print(f"p99 API ({workers} worker(s), 8 clients) / p99 in-process (8 threads): {ratio:.2f}x (goal <= 1.5x)")


def list_table(pg, tmp: Path, n: int) -> None:
    import httpx

    print(f"\n## listing with {n} jobs in the store")
    print(f"{'store':<12} {'list s':>8} {'list --json s':>14} {'GET /v1/jobs (100) ms':>22}")
    port = free_port()
    for name in ("sqlite", "postgresql"):
        home = tmp / f"list-{name}"
        target = pg.url() if name == "postgresql" else home / "jobs.sqlite"
        fill(target, n)
        env = _env(target, home)
        t_list = timed([CLI, "list"], env)
        t_json = timed([CLI, "list", "--json"], env)
        token, _ = create_token(Store(target), team="ml", scope="read", name="bench", now=NOW)
        server = start_server(target, home, port)
        try:
            with httpx.Client(headers={"Authorization": f"Bearer {token}"}) as c:
                page = []
                for _ in range(10):
                    t = time.perf_counter()
                    c.get(f"http://127.0.0.1:{port}/v1/jobs?limit=100")
                    page.append(time.perf_counter() - t)
        finally:
            server.kill()
            server.wait()
        print(f"{name:<12} {t_list:>8.2f} {t_json:>14.2f} {1000 * statistics.median(page):>22.1f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=300, help="due jobs per launch-throughput run")
    ap.add_argument("--list-jobs", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=64, help="plans per latency row")
    ap.add_argument("--only", action="append", choices=["launch", "latency", "list"], help="run only these tables")
    args = ap.parse_args()
    only = set(args.only or ("launch", "latency", "list"))
    with PostgresServer(durable=True) as pg, tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        if "launch" in only:
            launch_table(pg, Path(tmp), args.jobs)
        if "latency" in only:
            latency_table(pg, Path(tmp), args.requests)
        if "list" in only:
            list_table(pg, Path(tmp), args.list_jobs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
