"""`carbonsched catalog` through the installed console script, with the SDKs pointed at local servers
(moto + fakes for AWS through AWS_ENDPOINT_URL_*, the Compute fake through CARBONSCHED_GCP_API_ENDPOINT)."""
from __future__ import annotations

import json
import os

import pytest
from test_cloud_aws import EC2Proxy, JsonApiFake, PriceTable, aws_env, gpu_vcpus, moto_url  # noqa: F401 (fixtures)
from test_cloud_gcp import DATA, PROJECT, ComputeFake, gcp_rows

from conftest import NOW_ISO

pytest.importorskip("google.cloud.compute_v1")

REGIONS = ["us-east-1", "eu-west-1", "us-central1", "europe-west4"]


@pytest.fixture
def clouds(moto_url, gpu_vcpus):  # noqa: F811
    prices = PriceTable(gpu_vcpus)
    with EC2Proxy(moto_url, prices) as ec2, JsonApiFake(prices) as api, \
            ComputeFake(gcp_rows({"us-central1", "europe-west4"})) as compute:
        env = {**aws_env(ec2, api), "CARBONSCHED_GCP_API_ENDPOINT": compute.url, "CARBONSCHED_GCP_ANONYMOUS": "1",
               "CARBONSCHED_GCP_PROJECT": PROJECT}
        yield env, ec2, api, compute


def _plan(cli, env, *extra):
    r = cli("plan", "--gpu", "A100", "--gpus", "8", "--hours", "12", "--now", NOW_ISO, "--json", *extra, extra_env=env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_refresh_then_show_plan_and_regions_use_the_cache(cli, clouds, tmp_path):
    env, ec2, api, compute = clouds
    r = cli("catalog", "refresh", "--regions", *REGIONS, "--json", "--progress", extra_env=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    aws, gcp = doc["providers"]["aws"], doc["providers"]["gcp"]
    assert aws["status"] == gcp["status"] == "refreshed" and aws["regions"] == gcp["regions"] == 2
    assert {"A10G", "A100", "H100"} <= set(aws["gpu_types"]) and {"A100", "L4"} <= set(gcp["gpu_types"])
    assert aws["zero_quota_offerings"] > 0 and not aws["missing_permissions"]
    assert "aws: 2/2 regions" in r.stderr
    cache = tmp_path / "share" / "carbonsched" / "catalog" / "offerings.json"
    assert doc["cache"] == str(cache) and cache.exists()

    show = cli("catalog", "show", "--json", extra_env=env)
    assert show.returncode == 0, show.stderr
    s = json.loads(show.stdout)
    assert s["providers"]["aws"]["fresh"] and s["providers"]["gcp"]["offerings"] == gcp["offerings"]
    assert "aws: user cache" in s["plans_use"]["source"]
    text = cli("catalog", "show", extra_env=env).stdout
    assert "provider" in text and "aws" in text and "plans use: aws: user cache" in text

    plan = _plan(cli, env, "--provider", "aws", "--top", "0")
    src = plan["data_sources"][0]
    assert src["providers"]["aws"]["source"] == src["providers"]["gcp"]["source"] == "user cache"
    assert any(w.startswith("offerings: aws from the catalog cache") for w in plan["warnings"])
    # us-east-1's P quota is 0 vCPUs: p4d there is excluded and said; eu-west-1's allows one p4d
    assert plan["stats"]["rejected_by_offering_constraint"].get("quota", 0) > 0
    assert any(w.startswith("quota:") and "L-417A185B" in w for w in plan["warnings"])
    placed = {(p["region"], p["instance_type"]) for p in plan["placements"]}
    assert ("eu-west-1", "p4d.24xlarge") in placed and ("us-east-1", "p4d.24xlarge") not in placed
    # regions the refresh did not cover keep their embedded offerings (a partial refresh hides nothing)
    assert "eu-north-1" in {p["region"] for p in plan["placements"]}

    regions = json.loads(cli("regions", "--gpu", "L4", "--provider", "gcp", "--json", extra_env=env).stdout)["regions"]
    assert {"us-central1", "europe-west4"} <= {r["region"] for r in regions}
    assert "gcp: user cache" in regions[0]["offerings_source"]
    # `catalog check` over a cache (fresh sections beside the embedded snapshot): it crashed on the
    # per-provider dates (TypeError: unhashable type: 'slice')
    check = cli("catalog", "check", "--json", extra_env=env)
    assert check.returncode in (0, 1) and "Traceback" not in check.stderr, check.stderr
    doc = json.loads(check.stdout)
    assert set(doc["catalog"]["as_of"]) >= {"aws", "gcp"} and not [a for a in doc["anomalies"] if a["kind"] == "stale"]

    # a stale cache is not used: embedded snapshot, with a warning naming the age and the fix
    stale = _plan(cli, {**env, "CARBONSCHED_CATALOG_MAX_AGE_DAYS": "0"}, "--provider", "aws")
    assert stale["data_sources"][0]["providers"]["aws"]["source"] == "embedded snapshot"
    assert any("catalog cache is" in w and "catalog refresh --provider aws" in w for w in stale["warnings"])
    assert "quota" not in stale["stats"]["rejected_by_offering_constraint"]


def test_refresh_without_credentials_exits_1_and_plans_still_work(cli, tmp_path):
    if any(os.environ.get(k) for k in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "GOOGLE_CLOUD_PROJECT")):
        pytest.skip("this shell has cloud credentials in its environment")
    env = {"AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
           "AWS_EC2_METADATA_DISABLED": "true", "GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "none.json"),
           "NO_GCE_CHECK": "True"}
    r = cli("catalog", "refresh", extra_env=env)
    assert r.returncode == 1
    assert "AWS_ACCESS_KEY_ID" in r.stdout and "gcloud auth application-default login" in r.stdout
    assert "nothing could be refreshed" in r.stderr and "embedded snapshot" in r.stderr
    plan = _plan(cli, env)
    assert plan["data_sources"][0]["source"].startswith("embedded snapshot")
    show = cli("catalog", "show", extra_env=env)
    assert show.returncode == 0 and "no catalog cache" in show.stdout


def test_missing_permissions_are_named(cli, clouds):
    env, ec2, api, compute = clouds
    api.deny.add("GetProducts")
    r = cli("catalog", "refresh", "--regions", "us-east-1", "us-central1", extra_env=env)
    assert r.returncode == 0, r.stderr  # partial: prices from the snapshot, said
    assert "missing permission: pricing:GetProducts" in r.stdout
    ec2.deny.add("DescribeInstanceTypes")
    compute.deny[f"GET /compute/v1/projects/{PROJECT}/aggregated/acceleratorTypes"] = {
        "error": {"code": 403, "message": "Required 'compute.acceleratorTypes.list' permission for 'projects/x'",
                  "errors": [{"reason": "forbidden"}]}}
    r = cli("catalog", "refresh", "--regions", "us-east-1", "us-central1", "--json", extra_env=env)
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    assert doc["providers"]["aws"]["permission"] == "ec2:DescribeInstanceTypes"
    assert doc["providers"]["gcp"]["permission"] == "compute.acceleratorTypes.list"
    # the earlier (partial) refresh is still what plans use
    s = json.loads(cli("catalog", "show", "--json", extra_env=env).stdout)
    assert s["providers"]["aws"]["missing_permissions"] == ["pricing:GetProducts"]


def test_bad_flags_exit_2(cli):
    assert cli("catalog", "refresh", "--provider", "azure").returncode == 2
    assert cli("catalog", "refresh", "--concurrency", "0").returncode == 2
    assert cli("catalog").returncode == 2


def test_a_corrupt_cache_never_blocks_a_plan_and_refresh_replaces_it(cli, tmp_path):
    cache = tmp_path / "share" / "carbonsched" / "catalog" / "offerings.json"
    cache.parent.mkdir(parents=True)
    cache.write_text("garbage")
    plan = _plan(cli, {})
    assert any("not valid JSON" in w and "embedded snapshot" in w for w in plan["warnings"])
    from carbonsched.providers.cloud.cache import RefreshResult, read_cache, store_results
    from datetime import datetime, timezone

    store_results(cache, [RefreshResult(provider="aws", fetched_at=datetime.now(timezone.utc), source="test", prices="x")])
    assert set(read_cache(cache)["providers"]) == {"aws"}


def test_gcp_refresh_prices_from_the_billing_catalog(cli, tmp_path):
    skus = json.loads((DATA / "gcp_billing_skus.json").read_text())["skus"]
    with ComputeFake(gcp_rows({"us-central1", "europe-west4"}), skus=skus) as compute:
        env = {"CARBONSCHED_GCP_API_ENDPOINT": compute.url, "CARBONSCHED_GCP_ANONYMOUS": "1", "CARBONSCHED_GCP_PROJECT": PROJECT}
        r = cli("catalog", "refresh", "--provider", "gcp", "--regions", "us-central1", "europe-west4", extra_env=env)
        assert r.returncode == 0, r.stderr
    assert "Cloud Billing Catalog API" in r.stdout and "took a price from the embedded snapshot" in r.stdout
    plan = _plan(cli, env, "--provider", "gcp", "--region", "gcp:us-central1", "--top", "0")
    by = {(p["instance_type"], p["market"]): p for p in plan["placements"]}
    # 96 vCPU x 0.031611 + 680 GiB x 0.004237 + 8 x 2.933908 (the billing SKUs), not the snapshot's 29.38708
    assert by[("a2-highgpu-8g", "on-demand")]["price_usd_per_hour"] == pytest.approx(29.387080, abs=1e-6)
    assert by[("a2-ultragpu-8g", "on-demand")]["price_usd_per_hour"] == pytest.approx(
        96 * 0.031611 + 1360 * 0.004237 + 8 * 3.9265, abs=1e-6)
