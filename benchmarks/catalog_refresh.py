"""Benchmark ``catalog refresh`` against local servers, and ``plan`` with the refreshed cache.

    python benchmarks/catalog_refresh.py [--latency-ms 0,50] [--repeat 2]

AWS: moto's server (every region it enables, 30+) behind the tests' EC2 proxy,
with the tests' Pricing / Service Quotas fake; GCP: the tests' Compute fake serving every zone of
the embedded GCP rows (30 regions). ``--latency-ms`` adds a delay to every answer, standing in for
the round trip to a remote region (moto answers from this machine, CPU-bound, so with no latency
threads mostly compete for one interpreter). Times are wall-clock seconds, best of ``--repeat``.

Then ``plan`` (8x A100, 12 h, 24 h window) through the Python API: embedded snapshot vs the
refreshed cache (which also filters on quotas), mean of 5 runs after a warm-up.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def _best(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency-ms", default="0,50", help="comma-separated per-request delays to try (default 0,50)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=8)
    a = ap.parse_args()

    import boto3
    from moto.server import ThreadedMotoServer
    from test_cloud_aws import EC2Proxy, JsonApiFake, PriceTable, aws_env
    from test_cloud_gcp import PROJECT, ComputeFake, gcp_rows

    from carbonsched.spec.job import job_from_dict
    from carbonsched.planning import plan
    from carbonsched.providers.cloud import aws, gcp
    from carbonsched.providers.cloud.cache import cache_path, store_results
    from carbonsched.refdata import read_regions
    from carbonsched.settings import Settings

    known = {p: {r.region for r in read_regions().values() if r.provider == p} for p in ("aws", "gcp")}
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    moto_url = f"http://{host}:{port}"
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_url,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    items = ec2.describe_instance_types(Filters=[{"Name": "instance-type", "Values": aws.TYPE_PATTERNS}])["InstanceTypes"]
    prices = PriceTable({t["InstanceType"]: t["VCpuInfo"]["DefaultVCpus"] for t in items if "GpuInfo" in t})
    rows = []
    with EC2Proxy(moto_url, prices) as proxy, JsonApiFake(prices) as api, ComputeFake(gcp_rows(known["gcp"])) as compute:
        os.environ.update(aws_env(proxy, api))
        gclients, project = gcp.gcp_clients({"CARBONSCHED_GCP_API_ENDPOINT": compute.url,
                                             "CARBONSCHED_GCP_ANONYMOUS": "1", "CARBONSCHED_GCP_PROJECT": PROJECT})
        aws_regions = aws.get_regions(aws.AwsClients())  # every enabled moto region (more than carbonsched has grid data for)
        aws.refresh(aws_regions, clients=aws.AwsClients(), concurrency=a.concurrency)  # warm moto's per-region backends
        results = {}
        for ms in [float(x) for x in a.latency_ms.split(",")]:
            proxy.latency_s = api.latency_s = compute.latency_s = ms / 1000.0
            for conc in (1, a.concurrency):
                t_aws, res_aws = _best(lambda: aws.refresh(aws_regions, clients=aws.AwsClients(), concurrency=conc), a.repeat)
                t_gcp, res_gcp = _best(lambda: gcp.refresh(None, clients=gclients, project=project, concurrency=conc,
                                                           known_regions=known["gcp"]), a.repeat)
                results[(ms, conc)] = (t_aws, t_gcp, res_aws, res_gcp)
                rows.append([f"{ms:g}", "serial" if conc == 1 else f"{conc} threads", f"{len(res_aws.regions)}",
                             f"{len(res_aws.rows)}", f"{t_aws:.2f}", f"{len(res_gcp.regions)}", f"{len(res_gcp.rows)}", f"{t_gcp:.2f}"])
        home = Path(tempfile.mkdtemp(prefix="carbonsched-bench-"))
        last = results[max(results)]
        store_results(cache_path(Settings(home=home)), [last[2], last[3]])
    moto.stop()

    from carbonsched.cli.render import table

    print(f"catalog refresh against local servers (wall s, best of {a.repeat}); AWS: all enabled moto regions; "
          "GCP: the regions of the embedded GCP rows")
    print(table(["latency ms", "mode", "aws regions", "aws rows", "aws s", "gcp regions", "gcp rows", "gcp s"], rows,
                right={0, 2, 3, 4, 5, 6, 7}))
    for ms in sorted({k[0] for k in results}):
        s, c = results[(ms, 1)], results[(ms, a.concurrency)]
        print(f"  latency {ms:g} ms: concurrent speed-up aws {s[0] / c[0]:.1f}x, gcp {s[1] / c[1]:.1f}x")

    job = job_from_dict({"gpu": "A100", "gpus": 8, "hours": 12, "window": {"max_delay": "24h"}})
    now = datetime(2026, 11, 27, 10, 30, tzinfo=timezone.utc)
    timing = []
    for label, settings in (("embedded snapshot", Settings(home=None)), ("refreshed cache", Settings(home=home))):
        plan(job, now=now, settings=settings)  # warm-up (data files, imports)
        t = time.perf_counter()
        for _ in range(5):
            p = plan(job, now=now, settings=settings)
        dt = (time.perf_counter() - t) / 5
        src = p.data_sources[0]["source"]
        timing.append([label, f"{dt * 1000:.0f}", str(p.n_candidates), str(p.eliminated.get("quota", 0)), src[:60]])
    import subprocess

    exe = Path(sys.executable).with_name("carbonsched")
    for row, env_home in zip(timing, (tempfile.mkdtemp(prefix="carbonsched-empty-"), str(home))):
        env = {k: v for k, v in os.environ.items() if not k.startswith("CARBONSCHED_")}
        env["CARBONSCHED_HOME"] = env_home
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            subprocess.run([str(exe), "plan", "--gpu", "A100", "--gpus", "8", "--hours", "12", "--max-delay", "24h",
                            "--now", "2026-11-27T10:30:00Z", "--json"], env=env, capture_output=True, check=True)
            best = min(best, time.perf_counter() - t)
        row.insert(2, f"{best * 1000:.0f}")
    print("\nplan latency (8x A100, 12 h, 24 h window): API mean of 5 warm calls; CLI process, best of 3")
    print(table(["offerings", "API ms", "CLI ms", "candidates", "quota-rejected", "data_sources[0].source"], timing,
                right={1, 2, 3, 4}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
