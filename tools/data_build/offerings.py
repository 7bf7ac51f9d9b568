"""Build data/offerings.csv: NVIDIA GPU VM offerings per (provider, region, zone, instance type).

Source: the GPU rows of SkyPilot's public VM catalog (schema v7) in ``catalog/``.

AWS rows are used as they are: one catalog row is one offering with its on-demand and spot
price. Rows without an on-demand price are dropped (a recommendation needs a price).

GCP prices a GPU VM in two parts and the catalog keeps them apart:
  * a *host* row (``InstanceType`` a2-/a3-/g2-..., no accelerator): vCPU + RAM only;
  * a *GPU* row (no ``InstanceType``, ``AcceleratorName`` x ``AcceleratorCount``): the GPUs.
A VM's price is host + GPU in the same zone (spot: host spot + GPU spot). The GPU type and
count of each accelerator-optimised machine type is fixed by its name (``_gcp_family``);
g2-standard-N carries 1, 2, 4 or 8 L4 per GCP's G2 machine table. Only zones holding both
halves give an offering; the rest are counted and reported.

GCP's N1-attachable GPUs (T4, V100, P100, P4) have no host rows in the catalog. We emit
them on an ``n1-standard-(8 x gpus)`` host (8 vCPU / 30 GB per GPU, the p3/g4dn-like
ratio, within GCP's per-GPU vCPU limits for all four types). The host price comes from
``_N1_STANDARD_16`` (below), per region, with ``price_basis = "catalog gpu + n1 host
estimate"``: the host price is from another snapshot than the GPU price.
"""
from __future__ import annotations

import ast
import csv
import re
from collections import Counter
from pathlib import Path

FIELDS = ["provider", "region", "zone", "instance_type", "gpu", "gpu_count", "vcpus",
          "memory_gib", "gpu_memory_gib", "price_usd_per_hour", "spot_price_usd_per_hour",
          "price_basis"]

# Catalog accelerator name -> canonical gpus.csv name (anything absent is not an NVIDIA GPU).
CANONICAL = {
    "T4": "T4", "T4g": "T4G", "L4": "L4", "A10G": "A10G", "L40S": "L40S", "V100": "V100",
    "V100-32GB": "V100-32GB", "A100": "A100", "A100-80GB": "A100-80GB", "H100": "H100",
    "H100-MEGA": "H100", "H200": "H200", "B200": "B200", "P100": "P100", "P4": "P4",
}
# Per-GPU memory (GB) used only when a GCP GPU row lacks GpuInfo; mirrors gpus.csv.
_FALLBACK_MEMORY_GB = {"A100": 40, "A100-80GB": 80, "H100": 80, "H100-MEGA": 80, "H200": 141,
                       "B200": 180, "L4": 24, "T4": 16, "V100": 16, "P100": 16, "P4": 8}

_G2_L4_COUNT = {4: 1, 8: 1, 12: 1, 16: 1, 32: 1, 24: 2, 48: 4, 96: 8}
N1_GPUS = ("T4", "V100", "P100", "P4")
N1_VCPUS_PER_GPU = 8
N1_GIB_PER_VCPU = 3.75

# n1-standard-16 (16 vCPU, 60 GB) USD/hour, (on-demand, spot) per region, from
# Cyclenerd/google-cloud-pricing-cost-calculator pricing.yml (Apache-2.0, generated from
# the Cloud Billing Catalog API, file header 2025-03-06, commit 0166a59e). N1 predefined
# prices are linear in vCPU (us-central1: 16 x (0.031611 vCPU + 3.75 x 0.004237 GB) = 0.759996,
# matching GCP's published N1 rates), so n1-standard-N = N/16 of these.
_N1_STANDARD_16 = {
    "africa-south1": (0.9940748, 0.20928), "asia-east1": (0.879992, 0.16894),
    "asia-east2": (1.063376, 0.19872), "asia-northeast1": (0.975028, 0.2422),
    "asia-northeast2": (0.975028, 0.30562), "asia-northeast3": (0.975028, 0.17868),
    "asia-south1": (0.9128, 0.17232), "asia-south2": (0.9128, 0.29678),
    "asia-southeast1": (0.937544, 0.18462), "asia-southeast2": (1.02192296, 0.20688),
    "australia-southeast1": (1.078356, 0.33966), "australia-southeast2": (1.078356, 0.34398),
    "europe-central2": (0.97916, 0.14668), "europe-north1": (0.836736, 0.20772),
    "europe-southwest1": (0.89679528, 0.1888), "europe-west1": (0.836028, 0.22954),
    "europe-west10": (1.17039384, 0.2464), "europe-west12": (0.98039484, 0.2064),
    "europe-west2": (0.97916, 0.20372), "europe-west3": (0.97916, 0.19266),
    "europe-west4": (0.836672, 0.21528), "europe-west6": (1.063376, 0.25894),
    "europe-west8": (0.88159536, 0.1856), "europe-west9": (0.88159536, 0.1856),
    "me-central1": (0.92339522, 0.1944), "me-central2": (1.2159936, 0.256),
    "me-west1": (0.8359956, 0.16152), "northamerica-northeast1": (0.836672, 0.21816),
    "northamerica-northeast2": (0.836672, 0.26156), "southamerica-east1": (1.20638, 0.13748),
    "southamerica-west1": (1.08679428, 0.2288), "us-central1": (0.759996, 0.20804),
    "us-east1": (0.759996, 0.20804), "us-east4": (0.85594, 0.17222),
    "us-east5": (0.759996, 0.16), "us-south1": (0.89679528, 0.1888),
    "us-west1": (0.759996, 0.20804), "us-west2": (0.91286, 0.24476),
    "us-west3": (0.91286, 0.26444), "us-west4": (0.85594, 0.17924),
}

AWS_COMMIT = "001367d22a0033fac286a8c71aeac7109e431bcb"
GCP_COMMIT = "017e2502fb63c7a28757acd94002b2d6099d3e3d"


def _price(text: str) -> float | None:
    text = (text or "").strip()
    return float(text) if text else None


def _fmt_price(value: float | None) -> str:
    return "" if value is None else repr(round(value, 5))


def _gpu_memory_gib(gpu_info: str, accel: str) -> float:
    """Per-GPU memory in GiB from the catalog's quoted GpuInfo dict (MiB), else the fallback."""
    if gpu_info:
        info = ast.literal_eval(gpu_info)
        return round(info["Gpus"][0]["MemoryInfo"]["SizeInMiB"] / 1024.0, 2)
    return float(_FALLBACK_MEMORY_GB[accel])


def _gcp_family(instance_type: str) -> tuple[str, int] | None:
    """(catalog accelerator name, count) attached to a GCP accelerator-optimised machine type."""
    m = re.fullmatch(r"g2-standard-(\d+)", instance_type)
    if m:
        return "L4", _G2_L4_COUNT[int(m.group(1))]
    m = re.fullmatch(r"(a2-highgpu|a2-megagpu|a2-ultragpu|a3-highgpu|a3-edgegpu|a3-megagpu|a3-ultragpu|a4-highgpu)"
                     r"-(\d+)g(?:-nolssd)?", instance_type)
    if not m:
        return None
    accel = {"a2-highgpu": "A100", "a2-megagpu": "A100", "a2-ultragpu": "A100-80GB",
             "a3-highgpu": "H100", "a3-edgegpu": "H100", "a3-megagpu": "H100-MEGA",
             "a3-ultragpu": "H200", "a4-highgpu": "B200"}[m.group(1)]
    return accel, int(m.group(2))


def _read(path: Path) -> list[dict]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _aws(shared: Path, stats: Counter) -> list[dict]:
    rows = []
    for r in _read(shared / "catalog" / "aws_gpu_vms.csv"):
        gpu = CANONICAL.get(r["AcceleratorName"])
        if gpu is None:
            stats["aws_not_nvidia"] += 1
            continue
        price = _price(r["Price"])
        if price is None:
            stats["aws_no_price"] += 1
            continue
        rows.append({
            "provider": "aws", "region": r["Region"], "zone": r["AvailabilityZone"],
            "instance_type": r["InstanceType"], "gpu": gpu,
            "gpu_count": int(float(r["AcceleratorCount"])), "vcpus": int(float(r["vCPUs"])),
            "memory_gib": float(r["MemoryGiB"]),
            "gpu_memory_gib": _gpu_memory_gib(r["GpuInfo"], r["AcceleratorName"]),
            "price": price, "spot": _price(r["SpotPrice"]), "price_basis": "catalog",
        })
    return _merge_aws_duplicates(rows, stats)


def _merge_aws_duplicates(rows: list[dict], stats: Counter) -> list[dict]:
    """Collapse repeated (region, zone, instance type) rows.

    The catalog lists some p4de.24xlarge zones twice with the same on-demand price, once
    with a spot price and once without (the GpuInfo name differs: A100 vs A100-80GB). We
    keep one row and the spot price that is known; differing on-demand prices would be
    ambiguous, so they stop the build.
    """
    merged: dict[tuple, dict] = {}
    for r in rows:
        key = (r["region"], r["zone"], r["instance_type"])
        kept = merged.get(key)
        if kept is None:
            merged[key] = r
            continue
        if kept["price"] != r["price"]:
            raise SystemExit(f"offerings: conflicting on-demand prices for aws {key}")
        stats["aws_duplicate_rows_merged"] += 1
        spots = {s for s in (kept["spot"], r["spot"]) if s is not None}
        if len(spots) > 1:
            raise SystemExit(f"offerings: conflicting spot prices for aws {key}")
        kept["spot"] = spots.pop() if spots else None
    return list(merged.values())


def _gcp(shared: Path, stats: Counter) -> list[dict]:
    hosts, gpus = [], {}
    for r in _read(shared / "catalog" / "gcp_gpu_vms.csv"):
        if r["InstanceType"]:
            hosts.append(r)
        elif r["AcceleratorName"] in CANONICAL:
            key = (r["AvailabilityZone"], r["AcceleratorName"], int(float(r["AcceleratorCount"])))
            gpus[key] = r
        else:
            stats["gcp_not_nvidia"] += 1  # TPU rows
    rows, used = [], set()
    for h in hosts:
        family = _gcp_family(h["InstanceType"])
        if family is None:
            stats[f"gcp_unknown_host:{h['InstanceType']}"] += 1
            continue
        accel, count = family
        g = gpus.get((h["AvailabilityZone"], accel, count))
        if g is None:
            stats[f"gcp_host_without_gpu_row:{h['InstanceType']}"] += 1
            continue
        used.add((h["AvailabilityZone"], accel, count))
        host_spot, gpu_spot = _price(h["SpotPrice"]), _price(g["SpotPrice"])
        rows.append({
            "provider": "gcp", "region": h["Region"], "zone": h["AvailabilityZone"],
            "instance_type": h["InstanceType"], "gpu": CANONICAL[accel], "gpu_count": count,
            "vcpus": int(float(h["vCPUs"])), "memory_gib": float(h["MemoryGiB"]),
            "gpu_memory_gib": _gpu_memory_gib(g["GpuInfo"], accel),
            "price": _price(h["Price"]) + _price(g["Price"]),
            "spot": None if host_spot is None or gpu_spot is None else host_spot + gpu_spot,
            "price_basis": "catalog host+gpu",
        })
    for (zone, accel, count), g in gpus.items():
        if accel in N1_GPUS:
            rows.append(_n1_offering(g, accel, count, stats))
        elif (zone, accel, count) not in used:
            stats[f"gcp_gpu_row_without_host:{accel}x{count}"] += 1
    return rows


def _n1_offering(g: dict, accel: str, count: int, stats: Counter) -> dict:
    """An n1-standard host + N attached GPUs; host price from _N1_STANDARD_16 (see docstring)."""
    vcpus = N1_VCPUS_PER_GPU * count
    region = g["Region"]
    if region not in _N1_STANDARD_16:
        stats[f"gcp_n1_region_priced_as_us-central1:{region}"] += 1
    od16, spot16 = _N1_STANDARD_16.get(region, _N1_STANDARD_16["us-central1"])
    gpu_spot = _price(g["SpotPrice"])
    stats[f"gcp_n1:{accel}"] += 1
    return {
        "provider": "gcp", "region": region, "zone": g["AvailabilityZone"],
        "instance_type": f"n1-standard-{vcpus}+{count}x{accel}", "gpu": CANONICAL[accel],
        "gpu_count": count, "vcpus": vcpus, "memory_gib": vcpus * N1_GIB_PER_VCPU,
        "gpu_memory_gib": _gpu_memory_gib(g["GpuInfo"], accel),
        "price": _price(g["Price"]) + od16 * vcpus / 16.0,
        "spot": None if gpu_spot is None else gpu_spot + spot16 * vcpus / 16.0,
        "price_basis": "catalog gpu + n1 host estimate",
    }


def build(shared: Path, out: Path) -> list[dict]:
    """Write out/offerings.csv and return its provenance rows."""
    stats: Counter = Counter()
    rows = _aws(shared, stats) + _gcp(shared, stats)
    rows.sort(key=lambda r: (r["provider"], r["region"], r["zone"], r["instance_type"]))
    keys = Counter((r["provider"], r["region"], r["zone"], r["instance_type"]) for r in rows)
    dupes = [k for k, n in keys.items() if n > 1]
    if dupes:
        raise SystemExit(f"offerings: duplicated (provider, region, zone, instance_type): {dupes[:5]}")
    stats["spot_above_on_demand"] = sum(1 for r in rows if r["spot"] is not None and r["spot"] > r["price"])
    stats["no_spot_price"] = sum(1 for r in rows if r["spot"] is None)

    out.mkdir(parents=True, exist_ok=True)
    with (out / "offerings.csv").open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(FIELDS)
        for r in rows:
            w.writerow([r["provider"], r["region"], r["zone"], r["instance_type"], r["gpu"],
                        r["gpu_count"], r["vcpus"], f"{r['memory_gib']:g}", f"{r['gpu_memory_gib']:g}",
                        _fmt_price(r["price"]), _fmt_price(r["spot"]), r["price_basis"]])
    for k, v in sorted(stats.items()):
        print(f"  offerings: {k} = {v}")
    by = Counter((r["provider"], r["gpu"]) for r in rows)
    print("  offerings rows per provider/gpu: " + ", ".join(f"{p}:{g}={n}" for (p, g), n in sorted(by.items())))

    unpaired = sum(v for k, v in stats.items() if k.startswith(("gcp_host_without", "gcp_gpu_row_without")))
    retrieved = "2026-11-27"
    return [
        {"file": "offerings.csv",
         "source": f"skypilot-org/skypilot-catalog catalogs/v7/aws/vms.csv @ {AWS_COMMIT[:12]} and catalogs/v7/gcp/vms.csv @ {GCP_COMMIT[:12]} (GPU rows)",
         "retrieved": retrieved, "licence": "Apache-2.0", "attribution": "SkyPilot catalog (skypilot-org/skypilot-catalog)",
         "notes": (f"{len(rows)} NVIDIA offerings; list prices USD/h, spot is a snapshot; AWS rows without on-demand price dropped: {stats['aws_no_price']}, duplicate rows merged: {stats['aws_duplicate_rows_merged']}; "
                   f"GCP price = host row + GPU row in the same zone, unpaired rows dropped: {unpaired}; H100-MEGA -> H100; "
                   f"spot above on-demand kept: {stats['spot_above_on_demand']}")},
        {"file": "offerings.csv",
         "source": "Cyclenerd/google-cloud-pricing-cost-calculator pricing.yml @ 0166a59e (n1-standard-16 hour and hour_spot per region; built from the Cloud Billing Catalog API)",
         "retrieved": retrieved, "licence": "Apache-2.0", "attribution": "Nils Knieling, google-cloud-pricing-cost-calculator",
         "notes": ("host part of GCP N1-attached GPU offerings (T4, V100, P100, P4): n1-standard-(8 x GPUs), price = N/16 x n1-standard-16 of the region; "
                   "snapshot 2025-03 differs in date from the catalog's GPU price (price_basis 'catalog gpu + n1 host estimate'); us-central1 value 0.759996 = GCP published N1 rates")},
    ]
