"""Speed of the planner: the ranking core in-process, scaling with candidates, and the CLI process.

Run: python benchmarks/plan_speed.py [--repeat 200] [--process-runs 10]

Prints four tables:
1. ranking core for one job over ~100 regions x 10 GPU types x 168 hourly starts (168,000
   candidates): p50/p99 of feasibility + rank (the policy engine), and of estimate + feasibility
   + rank (the whole vectorised core), over real embedded intensity profiles;
2. how the core's time grows with the number of candidates (10^3 .. 10^6);
3. wall time of the whole `carbonsched plan examples/job.toml` process (interpreter start, imports,
   data loading, planning, printing);
4. the grid forecaster (``forecast_series``) on 2 (its minimum), 4 and 8 weeks of hourly history (the embedded
   DE profile with noise), 24 and 168 h ahead, p50/p99 per call (the planner forecasts each region once).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from carbonsched.models import PowerModel
from carbonsched.planning.estimate import OfferingArrays, estimate
from carbonsched.policies import Candidates, Limits, Policy, feasibility, rank
from carbonsched.providers.grid.forecaster import forecast_series
from carbonsched.providers.grid.profile import profile_series, profile_zones, read_zone_profile
from carbonsched.refdata import read_gpus

REPO = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)


def build_inputs(n_regions: int, n_gpu_types: int, n_starts: int, seed: int = 0):
    """Offerings = regions x GPU types (8 GPUs each), real zone profiles, random prices."""
    rng = np.random.default_rng(seed)
    zones = sorted(profile_zones())
    gpus = list(read_gpus().values())
    O = n_regions * n_gpu_types
    g = np.array([gpus[i % len(gpus)] for i in range(n_gpu_types)] * n_regions)
    slowest = 12.0 * 312.0 / min(x.training_tflops for x in g)  # 12 h on A100 x8, on the slowest GPU
    horizon = n_starts + int(np.ceil(slowest)) + 2
    region_zones = [zones[i % len(zones)] for i in range(n_regions)]
    series = np.stack([profile_series(read_zone_profile(z), NOW, horizon)["mean"] for z in region_zones])
    cum = np.concatenate([np.zeros((n_regions, 1)), np.cumsum(series, axis=1)], axis=1)
    arrays = OfferingArrays(
        gpu_count=np.full(O, 8.0),
        speed=np.array([x.training_tflops for x in g]),
        tdp_w=np.array([x.tdp_w for x in g]),
        vcpus=np.full(O, 96.0), memory_gib=np.full(O, 1152.0),
        pue=rng.uniform(1.08, 1.4, O),
        embodied_kg_per_gpu=np.array([x.embodied_kg_co2e for x in g]),
        usd_per_hour=rng.uniform(5, 100, O),
        region_index=np.repeat(np.arange(n_regions), n_gpu_types),
    )
    start_h = np.arange(n_starts, dtype=float)
    return arrays, cum, start_h


def core(arrays, cum, start_h, policy, limits, with_estimate=True, est=None):
    if with_estimate:
        est = estimate(arrays, hours_ref=12.0, n_ref=8, ref_speed=312.0, power=PowerModel(), start_h=start_h,
                       intensity_cum=cum)
    cands = Candidates(kg_co2e=est.kg_co2e, cost_usd=est.cost_usd, start_h=start_h, runtime_h=est.runtime_h,
                       usd_per_hour=arrays.usd_per_hour, gpu_memory_gb=np.full(len(est.runtime_h), 80.0))
    feasible, _ = feasibility(cands, limits)
    return rank(cands, feasible, policy), est


def timed(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return times[len(times) // 2], times[min(len(times) - 1, int(len(times) * 0.99))]


def table(headers, rows):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    print("  ".join(str(h).rjust(w) for h, w in zip(headers, widths)))
    for r in rows:
        print("  ".join(str(c).rjust(w) for c, w in zip(r, widths)))
    print()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--process-runs", type=int, default=10)
    args = ap.parse_args()
    limits = Limits(latest_start_h=167, deadline_h=200, max_usd_per_hour=90)
    policies = [Policy("carbon"), Policy("cost"), Policy("weighted", weights={"carbon": 1, "cost": 1, "time": 0.2}),
                Policy("lexicographic", order=("carbon", "cost"))]

    print("1. ranking core: 100 regions x 10 GPU types x 168 starts = 168,000 candidates")
    arrays, cum, start_h = build_inputs(100, 10, 168)
    _, est = core(arrays, cum, start_h, policies[0], limits)
    rows = []
    for pol in policies:
        p50, p99 = timed(lambda: core(arrays, cum, start_h, pol, limits, with_estimate=False, est=est), args.repeat)
        q50, q99 = timed(lambda: core(arrays, cum, start_h, pol, limits), max(20, args.repeat // 4))
        rows.append([pol.objective, f"{p50:.2f}", f"{p99:.2f}", f"{q50:.2f}", f"{q99:.2f}"])
    table(["objective", "rank p50 ms", "rank p99 ms", "estimate+rank p50 ms", "p99 ms"], rows)

    print("2. scaling with candidates (carbon objective, 168 starts unless fewer candidates)")
    rows = []
    for n in (10**3, 10**4, 10**5, 10**6):
        K = min(168, n)
        offerings = max(1, n // K)
        regions = max(1, offerings // 10)
        types = max(1, offerings // regions)
        a, c, s = build_inputs(regions, types, K)
        repeat = 50 if n <= 10**5 else 5
        _, e = core(a, c, s, policies[0], Limits())
        r50, _ = timed(lambda: core(a, c, s, policies[0], Limits(), with_estimate=False, est=e), repeat)
        t50, _ = timed(lambda: core(a, c, s, policies[0], Limits()), repeat)
        rows.append([f"{regions * types * K:,}", f"{r50:.2f}", f"{t50:.2f}", f"{t50 * 1e6 / (regions * types * K):.0f}"])
    table(["candidates", "rank p50 ms", "estimate+rank p50 ms", "ns/candidate"], rows)

    print(f"3. whole process: carbonsched plan examples/job.toml ({args.process_runs} runs)")
    exe = Path(sys.executable).with_name("carbonsched")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "carbonsched"]
    walls = []
    for _ in range(args.process_runs):
        t = time.perf_counter()
        subprocess.run(cmd + ["plan", str(REPO / "examples" / "job.toml"), "--now", "2026-11-27T10:30Z"],
                       check=True, capture_output=True)
        walls.append(time.perf_counter() - t)
    table(["p50 s", "min s", "max s"], [[f"{statistics.median(walls):.3f}", f"{min(walls):.3f}", f"{max(walls):.3f}"]])

    print("4. forecast_series: hourly history (the embedded DE profile with noise) to an hourly forecast")
    history = profile_series(read_zone_profile("DE"), NOW - timedelta(weeks=8), 8 * 168)["mean"]
    history = history + np.random.default_rng(0).normal(0, 10, len(history))  # profiles repeat; real traces do not
    rows = []
    for weeks in (2, 4, 8):
        for horizon in (24, 168):
            h = history[-weeks * 168:]
            p50, p99 = timed(lambda: forecast_series(h, NOW - timedelta(weeks=weeks), horizon), max(10, args.repeat // 10))
            rows.append([weeks, horizon, f"{p50:.1f}", f"{p99:.1f}"])
    table(["history weeks", "horizon h", "p50 ms", "p99 ms"], rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
