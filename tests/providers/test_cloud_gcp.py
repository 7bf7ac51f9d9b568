"""GCP adapter: the real google-cloud-compute REST clients against a local Compute API server.

``ComputeFake`` speaks the documented Compute REST JSON: regions.list / regions.get (with quotas),
acceleratorTypes and machineTypes aggregatedList split over two pages with nextPageToken (and a
zone with the NO_RESULTS_ON_PAGE warning), and error bodies. Its zones, machine types and
accelerators are derived from embedded offerings rows, so the adapter's output can be compared
with the embedded catalog's.
"""
from __future__ import annotations

import csv
import json
import os
import time
from datetime import datetime, timezone

import pytest
from grid_server import GridServer, ServedFake

pytest.importorskip("google.cloud.compute_v1")

from carbonsched.errors import CloudAuthError  # noqa: E402
from carbonsched.providers.cloud import gcp  # noqa: E402
from carbonsched.providers.cloud.catalog import parse_offerings  # noqa: E402
from conftest import REPO

DATA = REPO / "tests" / "data" / "cloud"
SKUS_ROUTE = "GET /v1/services/6F81-5844-456A/skus"
SKU_PAGE = 20
PROJECT = "carbonsched-test"
NOW = datetime(2026, 11, 27, 10, 30, tzinfo=timezone.utc)
GPU_ACCEL = {"A100": "nvidia-tesla-a100", "A100-80GB": "nvidia-a100-80gb", "L4": "nvidia-l4", "T4": "nvidia-tesla-t4",
             "V100": "nvidia-tesla-v100", "P100": "nvidia-tesla-p100", "P4": "nvidia-tesla-p4", "H200": "nvidia-h200-141gb"}
# free GPUs per region: on-demand A100 8 of 16, L4 none; preemptible L4 16; europe-west4 lists no GPU metrics
QUOTAS = {"us-central1": [{"metric": "CPUS", "limit": 2400, "usage": 12}, {"metric": "NVIDIA_A100_GPUS", "limit": 16, "usage": 8},
                          {"metric": "NVIDIA_L4_GPUS", "limit": 0, "usage": 0}, {"metric": "PREEMPTIBLE_NVIDIA_L4_GPUS", "limit": 16, "usage": 0},
                          {"metric": "NVIDIA_T4_GPUS", "limit": 4, "usage": 0}, {"metric": "NVIDIA_H100_GPUS", "limit": 8, "usage": 0}]}


def gcp_rows(regions) -> list[dict]:
    with (REPO / "data" / "offerings.csv").open(newline="") as fh:
        return [r for r in csv.DictReader(fh) if r["provider"] == "gcp" and r["region"] in regions]


def _machine_name(itype: str) -> str:
    return itype.split("+")[0]


class ComputeFake(ServedFake):
    """A local Compute Engine REST API for the given embedded rows' zones (context manager)."""

    def __init__(self, rows: list[dict], extra_regions=("us-east1",), skus: list[dict] | None = None):
        self.rows = rows
        self.skus = skus  # Cloud Billing Catalog SKUs; None: the billing API answers 404 (Google's error shape)
        self.deny: dict[str, dict] = {}  # route -> error body
        self.latency_s = 0.0  # added to every answer (benchmarks)
        zones: dict[str, dict] = {}
        for r in rows:
            z = zones.setdefault(r["zone"], {"machines": {}, "accels": {}})
            name = _machine_name(r["instance_type"])
            acc = ("nvidia-h100-mega-80gb" if name.startswith("a3-megagpu") else  # as the Compute API names it
                   GPU_ACCEL.get(r["gpu"]) or next(k for k, v in gcp.ACCELERATORS.items() if v[0] == r["gpu"]))
            count = int(r["gpu_count"])
            m = {"kind": "compute#machineType", "name": name, "guestCpus": int(r["vcpus"]),
                 "memoryMb": int(float(r["memory_gib"]) * 1024), "zone": r["zone"], "isSharedCpu": False}
            if "+" not in r["instance_type"]:
                m["accelerators"] = [{"guestAcceleratorType": acc, "guestAcceleratorCount": count}]
            zones[r["zone"]]["machines"][name] = m
            z["accels"][acc] = max(z["accels"].get(acc, 0), count)
        self.zones = zones
        self.regions = sorted({r["region"] for r in rows} | set(extra_regions))
        # a GPU we do not model and a machine type the snapshot has no price for
        first = sorted(zones)[0]
        zones[first]["accels"]["nvidia-rtx-pro-6000"] = 8
        zones[first]["machines"]["a4-highgpu-8g"] = {"name": "a4-highgpu-8g", "guestCpus": 224, "memoryMb": 3968 * 1024,
                                                     "accelerators": [{"guestAcceleratorType": "nvidia-b200",
                                                                       "guestAcceleratorCount": 8}]}
        base = f"GET /compute/v1/projects/{PROJECT}"
        routes = {f"{base}/regions": self.region_list, f"{base}/aggregated/acceleratorTypes": self.accelerators,
                  f"{base}/aggregated/machineTypes": self.machines}
        for region in self.regions:
            routes[f"{base}/regions/{region}"] = self.region_get
        routes[SKUS_ROUTE] = self.sku_list
        self.server = GridServer(routes)

    def _denied(self, rec):
        time.sleep(self.latency_s)
        key = f"{rec.method} {rec.path}"
        return (403, {}, self.deny[key]) if key in self.deny else None

    def region_list(self, rec):
        if (err := self._denied(rec)) is not None:
            return err
        items = [{"kind": "compute#region", "name": r, "status": "UP",
                  "zones": [f"https://www.googleapis.com/compute/v1/projects/{PROJECT}/zones/{z}" for z in self.zones if z.startswith(r + "-")]}
                 for r in self.regions]
        return 200, {}, {"kind": "compute#regionList", "items": items}

    def region_get(self, rec):
        if (err := self._denied(rec)) is not None:
            return err
        name = rec.path.rsplit("/", 1)[-1]
        return 200, {}, {"kind": "compute#region", "name": name, "status": "UP", "quotas": QUOTAS.get(name, [])}

    def _two_pages(self, rec, field: str, items: dict[str, list]):
        if (err := self._denied(rec)) is not None:
            return err
        scopes = sorted(items)
        half = len(scopes) // 2
        second = rec.query.get("pageToken") == "page-2"
        chosen = scopes[half:] if second else scopes[:half]
        body = {"kind": "compute#aggregatedList",
                "items": {f"zones/{z}": ({field: items[z]} if items[z] else
                                         {"warning": {"code": "NO_RESULTS_ON_PAGE", "message": "no results"}}) for z in chosen}}
        if not second:
            body["nextPageToken"] = "page-2"
            body["items"]["zones/antarctica-south1-a"] = {"warning": {"code": "NO_RESULTS_ON_PAGE", "message": "There are no results for scope"}}
        return 200, {}, body

    def accelerators(self, rec):
        return self._two_pages(rec, "acceleratorTypes", {z: [{"kind": "compute#acceleratorType", "name": a, "description": a,
                                                              "maximumCardsPerInstance": n} for a, n in sorted(d["accels"].items())]
                                                         for z, d in self.zones.items()})

    def sku_list(self, rec):
        """services.skus.list: SKU_PAGE per page whatever pageSize asks (the API may return fewer)."""
        if (err := self._denied(rec)) is not None:
            return err
        if self.skus is None:
            return 404, {}, {"error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND"}}
        start = int(rec.query.get("pageToken") or 0)
        body = {"skus": self.skus[start:start + SKU_PAGE], "nextPageToken": ""}
        if start + SKU_PAGE < len(self.skus):
            body["nextPageToken"] = str(start + SKU_PAGE)
        return 200, {}, body

    def machines(self, rec):
        return self._two_pages(rec, "machineTypes", {z: list(d["machines"].values()) for z, d in self.zones.items()})


def gcp_clients_for(url: str) -> tuple[dict, str]:
    return gcp.gcp_clients({"CARBONSCHED_GCP_API_ENDPOINT": url, "CARBONSCHED_GCP_ANONYMOUS": "1",
                            "CARBONSCHED_GCP_PROJECT": PROJECT})


@pytest.fixture
def compute_fake():
    with ComputeFake(gcp_rows({"us-central1", "europe-west4"})) as fake:
        yield fake


def _norm(offs):
    return sorted((o.provider, o.region, o.instance_type, o.market, o.gpu, o.gpu_count, o.vcpus, o.memory_gib,
                   o.gpu_memory_gib, round(o.price_usd_per_hour, 6), o.zone, o.zones) for o in offs)


def test_adapter_produces_the_embedded_offerings_for_equivalent_data(compute_fake):
    clients, project = gcp_clients_for(compute_fake.url)
    res = gcp.refresh(["us-central1", "europe-west4"], clients=clients, project=project, page_size=3, now=NOW)
    got = res.offerings()
    assert _norm(got) == _norm(parse_offerings(compute_fake.rows))
    assert {o.gpu for o in got} >= {"A100", "A100-80GB", "L4", "T4", "V100"}
    # two pages of each aggregated list; the filter narrows machine types server-side
    assert [r.query.get("pageToken") for r in compute_fake.server.hits(f"GET /compute/v1/projects/{PROJECT}/aggregated/machineTypes")] == [None, "page-2"]
    assert compute_fake.server.hits(f"GET /compute/v1/projects/{PROJECT}/aggregated/machineTypes")[0].query["filter"] == gcp.MACHINE_FILTER
    assert any("embedded snapshot" in n for n in res.notes)


def test_quotas_become_max_instances(compute_fake):
    clients, project = gcp_clients_for(compute_fake.url)
    res = gcp.refresh(["us-central1", "europe-west4"], clients=clients, project=project, now=NOW)
    by = {(o.region, o.instance_type, o.market): o for o in res.offerings()}
    assert by[("us-central1", "a2-highgpu-1g", "on-demand")].max_instances == 8
    assert by[("us-central1", "a2-highgpu-8g", "on-demand")].max_instances == 1
    assert by[("us-central1", "a2-highgpu-1g", "spot")].max_instances == 8  # no preemptible quota: the regular one
    g2 = by[("us-central1", "g2-standard-4", "on-demand")]
    assert g2.max_instances == 0 and g2.quota_name.startswith("gcp NVIDIA_L4_GPUS")
    assert by[("us-central1", "g2-standard-96", "spot")].max_instances == 2  # 16 preemptible L4 / 8
    assert by[("us-central1", "n1-standard-32+4xT4", "on-demand")].max_instances == 1
    assert by[("europe-west4", "a2-highgpu-1g", "on-demand")].max_instances is None  # metric not listed: unknown


def test_unpriced_and_unmodelled_are_skipped_and_said(compute_fake):
    clients, project = gcp_clients_for(compute_fake.url)
    res = gcp.refresh(["us-central1", "europe-west4"], clients=clients, project=project, now=NOW)
    assert "a4-highgpu-8g" not in {r["instance_type"] for r in res.rows}  # B200: no snapshot price here
    assert any("a4-highgpu-8g" in n and "no price" in n for n in res.notes)
    assert not {r["gpu"] for r in res.rows} - {"A100", "A100-80GB", "L4", "T4", "V100", "P100", "P4", "H100", "H200"}


def test_permission_denied_names_the_permission(compute_fake):
    body = json.loads((DATA / "gcp_error_403.json").read_text())
    compute_fake.deny[f"GET /compute/v1/projects/{PROJECT}/aggregated/acceleratorTypes"] = body
    clients, project = gcp_clients_for(compute_fake.url)
    with pytest.raises(CloudAuthError) as err:
        gcp.refresh(["us-central1"], clients=clients, project=project, now=NOW)
    assert err.value.permission == "compute.acceleratorTypes.list" and "roles/compute.viewer" in str(err.value)


def test_quota_permission_missing_keeps_offerings(compute_fake):
    compute_fake.deny[f"GET /compute/v1/projects/{PROJECT}/regions/us-central1"] = {
        "error": {"code": 403, "message": "Required 'compute.regions.get' permission", "errors": [{"reason": "forbidden"}]}}
    clients, project = gcp_clients_for(compute_fake.url)
    res = gcp.refresh(["us-central1"], clients=clients, project=project, now=NOW)
    assert res.rows and res.missing_permissions == ["compute.regions.get"]
    assert all(r["on_demand_max_instances"] == "" for r in res.rows)


def test_unknown_regions_are_noted(compute_fake):
    clients, project = gcp_clients_for(compute_fake.url)
    res = gcp.refresh(["us-central1", "mars-central1"], clients=clients, project=project, now=NOW)
    assert res.regions == ["us-central1"] and any("mars-central1" in n for n in res.notes)
    res = gcp.refresh(None, clients=clients, project=project, now=NOW, known_regions={"europe-west4", "us-east1"})
    assert res.regions == ["europe-west4", "us-east1"]


def test_missing_credentials_and_project_are_clear(monkeypatch, tmp_path):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(CloudAuthError, match="GOOGLE_APPLICATION_CREDENTIALS|gcloud auth"):
        gcp.gcp_clients({"GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "missing.json")})
    with pytest.raises(CloudAuthError, match="GOOGLE_CLOUD_PROJECT"):
        gcp.gcp_clients({"CARBONSCHED_GCP_ANONYMOUS": "1"})


# live test (real project): opt in with CARBONSCHED_LIVE_TESTS=1; select with -k live
@pytest.mark.skipif(os.environ.get("CARBONSCHED_LIVE_TESTS") != "1" or not os.environ.get("GOOGLE_CLOUD_PROJECT"),
                    reason="live GCP test: set CARBONSCHED_LIVE_TESTS=1, GOOGLE_CLOUD_PROJECT and application-default credentials")
def test_live_gcp_one_region():
    res = gcp.refresh(["us-central1"])
    assert res.rows and "L4" in {r["gpu"] for r in res.rows}
