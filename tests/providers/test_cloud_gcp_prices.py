"""GCP live prices: the real google-cloud-billing REST client against a local Billing Catalog v1 server.

The SKUs (tests/data/cloud/gcp_billing_skus.json) follow the documented ``services.skus.list``
shape; the local server pages them 20 at a time with nextPageToken. Expected prices are worked out
by hand below from the SKU unit prices, not by calling the code under test.
"""
from __future__ import annotations

import json

import pytest
from hypothesis import given, strategies as st

pytest.importorskip("google.cloud.compute_v1")
pytest.importorskip("google.cloud.billing_v1")

from carbonsched.providers.cloud import gcp, gcp_prices  # noqa: E402
from test_cloud_gcp import DATA, NOW, SKUS_ROUTE, ComputeFake, gcp_clients_for, gcp_rows  # noqa: E402

SKUS = json.loads((DATA / "gcp_billing_skus.json").read_text())["skus"]
REGIONS = ["us-central1", "europe-west4"]


@pytest.fixture
def fake():
    with ComputeFake(gcp_rows(set(REGIONS)), skus=SKUS) as f:
        yield f


def _refresh(fake):
    clients, project = gcp_clients_for(fake.url)
    res = gcp.refresh(REGIONS, clients=clients, project=project, now=NOW)
    rows = {(r["region"], r["instance_type"]): r for r in res.rows}
    return res, rows


def test_prices_come_from_the_billing_catalog_by_part(fake):
    res, rows = _refresh(fake)
    a2 = rows[("us-central1", "a2-highgpu-1g")]
    # 12 vCPU x 0.031611 + 85 GiB x 0.004237 + 1 x A100 2.933908: Google's published a2-highgpu-1g price
    assert float(a2["price_usd_per_hour"]) == pytest.approx(3.673385, abs=1e-6)
    assert float(a2["spot_price_usd_per_hour"]) == pytest.approx(12 * 0.0123 + 85 * 0.001743 + 1.1472, abs=1e-6)
    assert a2["price_basis"] == "gcp billing catalog"
    t4 = rows[("us-central1", "n1-standard-8+1xT4")]  # N1 Predefined host + attached T4
    assert float(t4["price_usd_per_hour"]) == pytest.approx(8 * 0.031611 + 30 * 0.004237 + 0.35, abs=1e-6)
    g2 = rows[("europe-west4", "g2-standard-4")]  # a second region's own SKUs
    assert float(g2["price_usd_per_hour"]) == pytest.approx(4 * 0.027487 + 16 * 0.00322 + 0.616044, abs=1e-6)


def test_a3_families_are_priced_apart(fake):
    """The snapshot priced a3-megagpu hosts with the A3 SKUs; live prices use A3Plus for them."""
    _, rows = _refresh(fake)
    high = float(rows[("us-central1", "a3-highgpu-8g")]["price_usd_per_hour"])
    mega = float(rows[("us-central1", "a3-megagpu-8g")]["price_usd_per_hour"])
    assert high == pytest.approx(208 * 0.021 + 1872 * 0.0027192 + 8 * 9.8488, abs=1e-5)
    # the Mega GPU has two descriptions at 10.2 and 10.1: the higher is kept
    assert mega == pytest.approx(208 * 0.0236 + 1872 * 0.00305 + 8 * 10.2, abs=1e-5)


def test_bundled_slices_and_missing_parts(fake):
    res, rows = _refresh(fake)
    a4 = rows[("europe-west4", "a4-highgpu-8g")]  # B200 "(1 gpu slice)": no snapshot price, live only
    assert (float(a4["price_usd_per_hour"]), float(a4["spot_price_usd_per_hour"])) == pytest.approx((88.48, 35.36))
    h200 = rows[("us-central1", "a3-ultragpu-8g")]  # no A3Ultra or H200 SKU: the snapshot's price, said
    assert h200["price_basis"] == "embedded snapshot price" and h200["price_usd_per_hour"] == "86.75992"
    a2_eu = rows[("europe-west4", "a2-highgpu-1g")]  # A2 SKUs exist for the Americas only
    assert a2_eu["price_basis"] == "embedded snapshot price"
    assert any("took a price from the embedded snapshot" in n and "a3-ultragpu" in n for n in res.notes)
    assert any(f"{len(SKUS)} SKUs read" in n and "1 conflicting" in n for n in res.notes)
    assert res.prices == gcp_prices.SOURCE


def test_all_pages_are_read_in_usd(fake):
    _refresh(fake)
    hits = fake.server.hits(SKUS_ROUTE)
    assert [h.query.get("pageToken") for h in hits] == [None, "20", "40"]
    assert {h.query["currencyCode"] for h in hits} == {"USD"}


def test_billing_api_disabled_falls_back_to_the_snapshot(fake):
    fake.deny[SKUS_ROUTE] = {"error": {"code": 403, "status": "PERMISSION_DENIED", "message":
                                       "Cloud Billing API has not been used in project 123 before or it is disabled.",
                                       "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED",
                                                    "domain": "googleapis.com", "metadata": {"service": "cloudbilling.googleapis.com"}}]}}
    res, rows = _refresh(fake)
    assert rows and all(r["price_basis"] == "embedded snapshot price" for r in rows.values())
    assert rows[("us-central1", "a3-megagpu-8g")]["price_usd_per_hour"] == "92.21427"
    assert res.prices.startswith("embedded snapshot")
    assert any("enable cloudbilling.googleapis.com" in n and "has not been used" in n for n in res.notes)


def test_without_the_billing_package_the_snapshot_is_said(fake):
    clients, project = gcp_clients_for(fake.url)
    res = gcp.refresh(REGIONS, clients={**clients, "billing": None}, project=project, now=NOW)
    assert any("google-cloud-billing is not installed" in n for n in res.notes)
    assert not fake.server.hits(SKUS_ROUTE)


# -- the parser, pure ------------------------------------------------------------------------------

def _sku(description: str, usage: str = "OnDemand", price: float = 1.0, unit: str = "h", regions=("r1",),
         family: str = "Compute") -> dict:
    units = int(price)
    return {"description": description, "category": {"resourceFamily": family, "usageType": usage},
            "serviceRegions": list(regions),
            "pricingInfo": [{"pricingExpression": {"usageUnit": unit, "tieredRates": [
                {"startUsageAmount": 0, "unitPrice": {"currencyCode": "USD", "units": str(units),
                                                      "nanos": round((price - units) * 1e9)}}]}}]}


@pytest.mark.parametrize("description,expected", [
    ("N1 Predefined Instance Core running in Americas", ("core", "N1 PREDEFINED")),
    ("Spot Preemptible A3 Instance Ram running in Belgium", ("ram", "A3")),
    ("A3Plus Instance Core running in Americas", ("core", "A3PLUS")),
    ("A3 Mega Instance Core running in Americas", ("core", "A3PLUS")),
    ("Nvidia Tesla T4 GPU attached to Spot Preemptible VMs running in Americas", ("gpu", "nvidia-tesla-t4")),
    ("Nvidia H100 80GB Plus GPU running in Americas", ("gpu", "nvidia-h100-mega-80gb")),
    ("Nvidia H100 Mega 80GB GPU running in Tokyo", ("gpu", "nvidia-h100-mega-80gb")),
    ("A4 Nvidia B200 (1 gpu slice) running in Americas", ("slice", "nvidia-b200")),
    ("Nvidia RTX PRO 6000 GPU running in Americas", None),
    ("Network Internet Egress from Americas to Americas", None),
])
def test_descriptions_are_classified(description, expected):
    assert gcp_prices._classify(description) == expected


def test_commitments_units_and_currencies_are_skipped():
    got = gcp_prices.parse_skus([
        _sku("A2 Instance Core running in Americas", usage="Commit1Yr"),
        _sku("A2 Instance Ram running in Americas", unit="GiBy.mo"),
        _sku("Nvidia L4 GPU running in Americas DWS"),
        _sku("A2 Instance Core running in Americas", family="Network"),
        _sku("A2 Instance Core running in Americas", price=0.5, regions=("r1", "r2")),
    ], regions={"r1"})
    assert got.prices == {("r1", "on-demand", "core", "A2"): 0.5}
    assert got.read == 5 and sum(got.skipped.values()) == 4


@given(cpu=st.floats(0.001, 1), ram=st.floats(0.0001, 0.1), gpu=st.floats(0.01, 20),
       vcpus=st.integers(1, 256), mem=st.integers(1, 4096), n=st.integers(1, 16))
def test_a_machine_costs_the_sum_of_its_parts(cpu, ram, gpu, vcpus, mem, n):
    prices = gcp_prices.parse_skus([_sku("G2 Instance Core running in X", price=cpu),
                                    _sku("G2 Instance Ram running in X", price=ram, unit="GiBy.h"),
                                    _sku("Nvidia L4 GPU running in X", price=gpu)])
    got = gcp_prices.price_machine(prices, "r1", "g2-standard-8", vcpus, mem, "nvidia-l4", n, "on-demand")
    # nanos carry 9 decimals: each unit price is exact to 5e-10
    assert got == pytest.approx(vcpus * cpu + mem * ram + n * gpu, abs=1e-6 + 5e-10 * (vcpus + mem + n))
    assert gcp_prices.price_machine(prices, "r1", "g2-standard-8", vcpus, mem, "nvidia-l4", n, "spot") is None
    assert gcp_prices.price_machine(prices, "r2", "g2-standard-8", vcpus, mem, "nvidia-l4", n, "on-demand") is None
