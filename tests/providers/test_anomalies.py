"""Catalog price anomalies (issue 17): pure checks over offerings, property-tested, and what they
find in the shipped snapshot; plans warn about flagged prices and can rank without them."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, datetime, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from carbonsched.models import Offering
from carbonsched.planning import plan
from carbonsched.providers.cloud.anomalies import check_offerings, offering_key
from carbonsched.providers.cloud.catalog import read_offerings
from carbonsched.settings import Settings
from carbonsched.spec.job import job_from_dict

NOW = datetime(2026, 11, 27, 10, 30, tzinfo=timezone.utc)


def offering(region, instance="g.8x", price=10.0, market="on-demand", gpu="H100", count=8, vcpus=96.0, provider="aws"):
    return Offering(provider=provider, region=region, instance_type=instance, gpu=gpu, gpu_count=count, vcpus=vcpus,
                    memory_gib=512, gpu_memory_gib=80, price_usd_per_hour=price, market=market)


@st.composite
def consistent_catalogs(draw):
    """Each instance type has one on-demand price in every region and a cheaper spot price."""
    regions = [f"r{i}" for i in range(draw(st.integers(2, 6)))]
    out = []
    for k in range(draw(st.integers(1, 4))):
        price = draw(st.floats(0.5, 200))
        discount = draw(st.floats(0.1, 0.95))
        vcpus = draw(st.sampled_from([8.0, 48.0, 96.0, 192.0]))
        for r in regions:
            out.append(offering(r, f"type{k}", price, gpu=f"G{k}", vcpus=vcpus))
            out.append(offering(r, f"type{k}", price * discount, market="spot", gpu=f"G{k}", vcpus=vcpus))
    return out


@settings(max_examples=200, deadline=None)
@given(consistent_catalogs())
def test_a_consistent_catalog_has_no_anomalies(catalog):
    assert check_offerings(catalog).anomalies == ()


@settings(max_examples=200, deadline=None)
@given(consistent_catalogs(), st.floats(0.01, 100), st.data())
def test_anomalies_do_not_depend_on_the_currency_unit(catalog, scale, data):
    """Scaling every price by one factor (another currency) flags the same offerings."""
    i = data.draw(st.integers(0, len(catalog) - 1))
    catalog[i] = replace(catalog[i], price_usd_per_hour=catalog[i].price_usd_per_hour * data.draw(st.floats(0.05, 20)))
    before = set(check_offerings(catalog).flagged)
    scaled = [replace(o, price_usd_per_hour=o.price_usd_per_hour * scale) for o in catalog]
    assert set(check_offerings(scaled).flagged) == before


@settings(max_examples=200, deadline=None)
@given(consistent_catalogs(), st.floats(2.05, 50), st.data())
def test_one_region_priced_far_off_its_instance_median_is_flagged(catalog, factor, data):
    on_demand = [i for i, o in enumerate(catalog) if o.market == "on-demand"]
    i = data.draw(st.sampled_from(on_demand))
    regions = {o.region for o in catalog if o.instance_type == catalog[i].instance_type}
    if len(regions) < 3:  # with two regions the median sits between them
        return
    catalog[i] = replace(catalog[i], price_usd_per_hour=catalog[i].price_usd_per_hour * factor)
    assert offering_key(catalog[i]) in check_offerings(catalog).flagged


def test_spot_at_or_above_on_demand_and_staleness():
    catalog = [offering("r1", price=10), offering("r1", price=10, market="spot")]
    result = check_offerings(catalog, as_of="2026-10-01", today=date(2026, 11, 27), max_age_days=7)
    kinds = sorted(a.kind for a in result.anomalies)
    assert kinds == ["spot_above_on_demand", "stale"]
    assert ("aws", "r1", "g.8x", "spot") in result.flagged
    assert check_offerings(catalog[:1], as_of="2026-11-25", today=date(2026, 11, 27), max_age_days=7).anomalies == ()


def test_same_size_variants_far_apart_are_flagged_but_different_hosts_are_not():
    catalog = [offering(r, "a3-high", 45.0) for r in ("r1", "r2", "r3")] + \
              [offering(r, "a3-mega", 46.0) for r in ("r2", "r3")] + [offering("r1", "a3-mega", 95.0)]
    flagged = check_offerings(catalog).flagged
    assert ("aws", "r1", "a3-mega", "on-demand") in flagged and ("aws", "r1", "a3-high", "on-demand") not in flagged
    hosts = [offering("r1", "small", 1.0, count=1, vcpus=4), offering("r1", "big", 6.0, count=1, vcpus=64)]
    assert check_offerings(hosts).anomalies == ()  # a 64-vCPU host costs more than a 4-vCPU one


def test_the_snapshot_anomalies_the_issue_names_are_found():
    result = check_offerings(list(read_offerings()))
    assert ("gcp", "asia-northeast1", "a3-highgpu-8g", "spot") in result.flagged  # spot $88.72 > on-demand $45.75
    us_central = {k[2] for k in result.flagged if k[:2] == ("gcp", "us-central1")}
    assert us_central & {"a3-highgpu-8g", "a3-megagpu-8g"}  # $43.07 vs $92.21 for the same 8xH100 host
    eu_west = {k[2] for k in result.flagged if k[:2] == ("gcp", "europe-west1")}
    assert eu_west & {"a3-highgpu-8g", "a3-megagpu-8g"}  # $96.71 vs $45.81


def test_plans_warn_about_flagged_prices_and_can_rank_without_them(tmp_path):
    job = job_from_dict({"gpu": "H100", "gpus": 8, "hours": 6, "window": {"max_delay": "12h"},
                         "constraints": {"gpu_types": ["H100"], "providers": ["gcp"]}})
    shown = plan(job, now=NOW, settings=Settings(home=tmp_path), top=10)
    flagged = check_offerings(list(read_offerings())).flagged
    doubtful = [p for p in shown.placements if (p.provider, p.region, p.instance_type, p.market) in flagged]
    assert doubtful and any("is in doubt" in w for w in shown.warnings)
    clean = plan(job, now=NOW, settings=Settings(home=tmp_path, exclude_flagged_prices=True), top=10)
    assert not [p for p in clean.placements if (p.provider, p.region, p.instance_type, p.market) in flagged]
    assert any("left out: their catalog price is in doubt" in w for w in clean.warnings)


def test_cli_check(cli):
    r = cli("catalog", "check", "--json")
    assert r.returncode == 1, r.stderr  # the snapshot has anomalies
    doc = json.loads(r.stdout)
    assert doc["schema_version"] == 1 and doc["counts"]["variant_spread"] > 0 and doc["flagged_offerings"] > 0
    r = cli("catalog", "check")
    assert r.returncode == 1 and "anomalies" in r.stdout and "a3-megagpu-8g" in r.stdout
    assert cli("catalog", "check", "--max-age-days", "-1").returncode == 2
