"""A realistic training queue through `carbonsched plan --batch`, end to end, at 500 / 2k / 10k jobs.

Run: python benchmarks/batch_queue.py [--sizes 500 2000 10000] [--capacity 48 16] [--seed 0]
                                      [--write-only DIR] [--strict]

Jobs (seeded): 35 % 8xH100 (pinned to H100), 35 % 8xA100 (A100 or A100-80GB), 30 % 1xL4 (any GPU
with >= 24 GB, the planner's default), runtime 2..8 h in whole hours, start window (max_delay)
6..24 h, released over the first 6 hours after now (earliest_start), on the embedded catalog and
intensity profiles, objective carbon. Capacity: the same number of GPUs per hour in every
(region, GPU type) per 500 jobs, scaled with the batch -- 48 = contended, 16 = tight (not every job fits: place-what-fits queues
the rest; with --strict the run fails instead, as it did before).

Each row is one process (`carbonsched plan --batch FILE --json --time-limit S`), timed from outside; the stage
times come from the plan's own ``timings`` (candidates: building every job's candidates;
solve: reductions, column generation, rounding/MILP; greedy). Columns: jobs placed, gap against
the LP bound ("-" when the number placed is not proven maximal), kgCO2e of the plan vs greedy
(submission order, same candidates; "N fit" when greedy placed fewer jobs) vs each job's run-now
baseline, jobs the deferral-rule repair moved after the solve (``solver.deferral_rules``; the
gap is the solver's, before them), peak resident memory of the process.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

NOW = "2026-11-27T10:00Z"
MIX = (("H100", 8, '["H100"]', 0.35), ("A100", 8, '["A100", "A100-80GB"]', 0.35), ("L4", 1, None, 0.30))


def batch_toml(n_jobs: int, capacity: float, seed: int) -> str:
    rng = np.random.default_rng(seed)
    kinds = rng.choice(len(MIX), size=n_jobs, p=[m[3] for m in MIX])
    out = [f"[capacity]\ndefault = {capacity:g}\n"]
    for i, k in enumerate(kinds):
        gpu, count, types, _ = MIX[k]
        hours = int(rng.integers(2, 9))
        delay = int(rng.integers(6, 25))
        release = int(rng.integers(0, 6))
        out.append(f'[[job]]\nname = "job-{i:05d}"\ngpu = "{gpu}"\ngpus = {count}\nhours = {hours}\n'
                   f'[job.window]\nearliest_start = "2026-11-27T{10 + release:02d}:00:00Z"\nmax_delay = "{delay}h"\n'
                   + (f"[job.constraints]\ngpu_types = {types}\n" if types else ""))
    return "\n".join(out)


def run(path: Path, strict: bool, time_limit: float) -> dict:
    rss = path.with_suffix(".rss")
    cmd = ["/usr/bin/time", "-f", "%M", "-o", str(rss),
           sys.executable, "-m", "carbonsched", "plan", "--batch", str(path), "--json", "--now", NOW,
           "--time-limit", str(time_limit)]
    if strict:
        cmd.append("--strict")
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        return {"wall": wall, "error": proc.stderr.strip().splitlines()[-1][:160] if proc.stderr.strip() else "?"}
    doc = json.loads(proc.stdout)
    return {"wall": wall, "doc": doc, "rss_mib": int(rss.read_text().split()[-1]) / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[500, 2000, 10000])
    ap.add_argument("--capacity", type=float, nargs="+", default=[48, 16])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--strict", action="store_true", help="all-or-nothing (fails when not every job fits)")
    ap.add_argument("--time-limit", type=float, default=30.0, help="plan --batch --time-limit (default 30 s)")
    ap.add_argument("--write-only", metavar="DIR", help="write the batch files and stop")
    a = ap.parse_args()
    tmp = Path(a.write_only or tempfile.mkdtemp(prefix="carbonsched-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    print(f"{'jobs':>6} {'cap':>4} {'process s':>9} {'cands s':>7} {'solve s':>7} {'placed':>11} {'gap %':>6} "
          f"{'kg plan':>10} {'vs greedy':>9} {'vs run-now':>10} {'moved':>6} {'MiB':>6}")
    for n in a.sizes:
        for cap in a.capacity:
            path = tmp / f"queue_{n}_{cap:g}.toml"
            path.write_text(batch_toml(n, cap * n / 500, a.seed))
            if a.write_only:
                continue
            r = run(path, a.strict, a.time_limit)
            if "error" in r:
                print(f"{n:>6} {cap:>4g} {r['wall']:>9.2f}  failed: {r['error']}")
                continue
            d = r["doc"]
            t = d["solver"].get("timings", {})
            placed = d["totals"]["jobs"]
            gap = "-" if d["solver"]["gap"] is None else f"{100 * d['solver']['gap']:.3f}"  # "-": count not proven max
            kg, g = d["totals"]["kg_co2e"], d["greedy"]
            base = d["baseline"]
            vs_g = f"{100 * (kg - g['kg_co2e']) / g['kg_co2e']:+.1f} %" if g["jobs"] == placed else f"{g['jobs']} fit"
            vs_b = f"{-100 * base['kg_saved_by_batch'] / base['kg_co2e']:+.1f} %" if base["kg_co2e"] else "-"
            moved = (d["solver"].get("deferral_rules") or {}).get("moved", 0)
            print(f"{n:>6} {cap:>4g} {r['wall']:>9.2f} {t.get('candidates_s', float('nan')):>7.2f} "
                  f"{t.get('solve_s', d['solver']['seconds']):>7.2f} {placed:>5}/{n:<5} {gap:>6} "
                  f"{kg:>10.0f} {vs_g:>9} {vs_b:>10} {moved:>6} {r['rss_mib']:>6.0f}")
    if a.write_only:
        print(f"batch files in {tmp}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
