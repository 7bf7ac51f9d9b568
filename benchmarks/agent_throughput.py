"""Agent throughput: N scheduled jobs come due at once and are launched through the local launcher
with a dry command (`true`). Prints jobs/s for store insertion and for the agent pass, the store's
size, and checks that every job was launched exactly once.

Run: python benchmarks/agent_throughput.py [--jobs 1000]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from carbonsched.providers.cloud.local import LocalLauncher
from carbonsched.run.store import Store
from carbonsched.run.agent import agent_pass

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=1000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        store = Store(home / "jobs.sqlite")
        placement = {"rank": 1, "region_id": "aws:eu-north-1", "instance_type": "p5.48xlarge", "market": "on-demand"}
        plan = {"schema_version": 1, "placements": [placement]}
        t = time.perf_counter()
        for i in range(args.jobs):
            store.add_job(name=f"j{i}", spec={"command": "true"}, plan=plan, start_at=NOW + timedelta(seconds=i % 60),
                          launcher="local", now=NOW)
        t_insert = time.perf_counter() - t
        launcher = LocalLauncher(home)
        t = time.perf_counter()
        launched = 0
        while True:  # the agent takes due jobs in batches of 100 per pass
            out = agent_pass(store, lambda name: launcher, NOW + timedelta(minutes=5))
            launched += sum(o.state == "running" for o in out)
            if not out:
                break
        t_launch = time.perf_counter() - t
        attempts = store.db.execute("SELECT job_id, COUNT(*) FROM attempts GROUP BY job_id").fetchall()
        dup = sum(1 for _, n in attempts if n != 1)
        runs = sum(1 for _ in (home / "runs").iterdir())
        size = sum(f.stat().st_size for f in home.iterdir() if f.name.startswith("jobs.sqlite"))
        print(f"{'jobs':>8} {'insert jobs/s':>14} {'launch jobs/s':>14} {'launched':>9} {'run dirs':>9} "
              f"{'duplicates':>10} {'store KiB':>10}")
        print(f"{args.jobs:>8} {args.jobs / t_insert:>14.0f} {launched / t_launch:>14.1f} {launched:>9} {runs:>9} "
              f"{dup:>10} {size / 1024:>10.0f}")
        print("(launch rate includes starting one Python runner process per job; cores: "
              f"{os.cpu_count()})")
        return 0 if launched == args.jobs and runs == args.jobs and dup == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
