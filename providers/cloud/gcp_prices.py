"""Live Compute Engine prices from the Cloud Billing Catalog API (google-cloud-billing, REST).

Source: ``GET https://cloudbilling.googleapis.com/v1/services/6F81-5844-456A/skus?currencyCode=USD``
(the Compute Engine service's SKUs, paged with ``pageToken``/``nextPageToken``). Each SKU has a
``description``, a ``category`` (``resourceFamily``, ``resourceGroup``, ``usageType``), the
``serviceRegions`` it applies to and a ``pricingInfo[].pricingExpression`` whose ``tieredRates``
carry ``unitPrice`` (``units`` + ``nanos``/1e9 of ``currencyCode``) per ``usageUnit``.

Google bills a GPU VM by parts, so for one region and market (usageType ``OnDemand`` -> on-demand,
``Preemptible`` -> spot; commitments are skipped)::

    price(machine) = vCPUs x core(family) + GiB x ram(family) + GPUs x gpu(accelerator)

where the family comes from the machine series (SERIES_FAMILY: ``a3-megagpu`` bills as "A3Plus",
``a3-highgpu`` as "A3", ``n1-standard`` as "N1 Predefined", ...) and is matched in descriptions
such as ``A3 Instance Core running in Americas`` or ``Spot Preemptible G2 Instance Ram running in
Belgium``; GPUs in ``Nvidia H100 80GB GPU running in ...`` / ``... attached to Spot Preemptible VMs
running in ...`` (GPU_SKU_NAMES). A GPU sold as ``Nvidia B200 (1 gpu slice)`` is bundled: the slice
covers the VM's share of cores and memory, so such a machine costs GPUs x slice. Local SSD that
some shapes carry is billed separately and is not included (as in the embedded snapshot).

Telling families apart is what the embedded snapshot could not do: it priced ``a3-megagpu`` hosts
with the ``A3`` SKUs and its GPUs with the Mega SKU, which is one source of the H100 anomalies
``catalog check`` reports. A machine whose parts are not all found gets no live price (the caller
falls back to the snapshot and says so). When two SKUs give one part different prices, the higher
is kept (never understate a cost) and counted in ``SkuPrices.conflicts``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable

COMPUTE_SERVICE = "services/6F81-5844-456A"
SOURCE = "Cloud Billing Catalog API (services/6F81-5844-456A/skus)"
MARKETS = {"OnDemand": "on-demand", "Preemptible": "spot"}

# machine series (name up to the second dash) -> billing family as written in SKU descriptions
SERIES_FAMILY = {
    "n1-standard": "N1 PREDEFINED", "a2-highgpu": "A2", "a2-megagpu": "A2", "a2-ultragpu": "A2",
    "a3-highgpu": "A3", "a3-edgegpu": "A3", "a3-megagpu": "A3PLUS", "a3-ultragpu": "A3ULTRA",
    "a4-highgpu": "A4", "g2-standard": "G2", "g4-standard": "G4",
}
FAMILY_ALIASES = {"A3MEGA": "A3PLUS", "A3 PLUS": "A3PLUS", "A3 MEGA": "A3PLUS", "A3 ULTRA": "A3ULTRA"}
# GPU name as written after "Nvidia " -> accelerator type (gcp.ACCELERATORS' keys)
GPU_SKU_NAMES = {
    "TESLA T4": "nvidia-tesla-t4", "TESLA V100": "nvidia-tesla-v100", "TESLA P100": "nvidia-tesla-p100",
    "TESLA P4": "nvidia-tesla-p4", "TESLA A100": "nvidia-tesla-a100", "A100 80GB": "nvidia-a100-80gb",
    "L4": "nvidia-l4", "H100 80GB": "nvidia-h100-80gb", "H100 80GB MEGA": "nvidia-h100-mega-80gb",
    "H100 MEGA 80GB": "nvidia-h100-mega-80gb", "H100 80GB PLUS": "nvidia-h100-mega-80gb",
    "H200 141GB": "nvidia-h200-141gb", "H200": "nvidia-h200-141gb", "B200": "nvidia-b200",
}
UNITS = {"core": {"h"}, "ram": {"GiBy.h"}, "gpu": {"h"}, "slice": {"h"}}
# descriptions of SKUs that are not the list price of a plain VM
SKIP_WORDS = ("commit", "reserved", "reservation", "sole tenancy", "custom", "premium", "dws", "calendar",
              "flex", "extended", "licens")

_PREFIX = r"^(?:spot )?(?:preemptible )?"
_PART = re.compile(_PREFIX + r"(?P<name>[a-z0-9][a-z0-9 ]*?) (?:amd )?instance (?P<kind>core|ram) running in ", re.I)
_GPU = re.compile(_PREFIX + r"nvidia (?P<name>[^()]+?) gpu(?: attached to (?:spot )?preemptible vms)? running in ", re.I)
_SLICE = re.compile(r"nvidia (?P<name>[^()]+?) \(1 gpu slice\)", re.I)

Key = tuple[str, str, str, str]  # (region, market, kind, name)


@dataclass
class SkuPrices:
    """USD per unit-hour by (region, market, kind, name): kind core|ram (name = family), gpu|slice
    (name = accelerator type). ``skipped`` counts SKUs left out by reason."""

    prices: dict[Key, float] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    conflicts: int = 0
    read: int = 0

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1


def _family(name: str) -> str:
    n = " ".join(name.upper().split())
    return FAMILY_ALIASES.get(n, n)


def _classify(description: str) -> tuple[str, str] | None:
    """(kind, name) of a SKU description, or None when it is not a part we price."""
    if m := _SLICE.search(description):
        acc = GPU_SKU_NAMES.get(" ".join(m["name"].upper().split()))
        return ("slice", acc) if acc else None
    if m := _GPU.match(description):
        acc = GPU_SKU_NAMES.get(" ".join(m["name"].upper().split()))
        return ("gpu", acc) if acc else None
    if m := _PART.match(description):
        return m["kind"].lower(), _family(m["name"])
    return None


def _unit_price_usd(sku: dict) -> tuple[float, str] | None:
    """(price of one usage unit in USD at the first tier, usage unit) of the SKU's current pricing."""
    infos = sku.get("pricingInfo") or []
    if not infos:
        return None
    expr = max(infos, key=lambda i: i.get("effectiveTime") or "").get("pricingExpression") or {}
    tiers = sorted(expr.get("tieredRates") or [], key=lambda t: float(t.get("startUsageAmount") or 0))
    if not tiers:
        return None
    price = tiers[0].get("unitPrice") or {}
    if (price.get("currencyCode") or "USD") != "USD":
        return None
    return int(price.get("units") or 0) + int(price.get("nanos") or 0) / 1e9, expr.get("usageUnit", "")


def parse_skus(skus: Iterable[dict], regions: set[str] | None = None) -> SkuPrices:
    """The parts' prices in ``regions`` (all when None) from Billing Catalog SKUs (REST JSON)."""
    out = SkuPrices()
    for sku in skus:
        out.read += 1
        cat = sku.get("category") or {}
        desc = sku.get("description") or ""
        market = MARKETS.get(cat.get("usageType", ""))
        if cat.get("resourceFamily") != "Compute" or market is None:
            out.skip("not a compute on-demand/spot SKU")
            continue
        if any(w in desc.lower() for w in SKIP_WORDS):
            out.skip("commitment, reservation, custom or sole-tenant")
            continue
        part = _classify(desc)
        if part is None:
            out.skip("not a GPU-VM part we model")
            continue
        unit = _unit_price_usd(sku)
        if unit is None or unit[1] not in UNITS[part[0]]:
            out.skip("no USD price per hour")
            continue
        where = sku.get("serviceRegions") or (sku.get("geoTaxonomy") or {}).get("regions") or []
        for region in where:
            if regions is not None and region not in regions:
                continue
            key = (region, market, *part)
            old = out.prices.get(key)
            if old is not None and abs(old - unit[0]) > 1e-12:
                out.conflicts += 1
            out.prices[key] = max(unit[0], old or 0.0)
    return out


def series_family(machine: str) -> str | None:
    """The billing family of a machine type (``a3-megagpu-8g`` -> ``A3PLUS``), None if unmodelled."""
    return SERIES_FAMILY.get("-".join(machine.split("+")[0].split("-")[:2]))


def price_machine(prices: SkuPrices, region: str, machine: str, vcpus: float, memory_gib: float,
                  accelerator: str, gpus: int, market: str) -> float | None:
    """USD/h of one VM from its parts, or None when a part has no SKU in ``region`` for ``market``."""
    p = prices.prices
    bundled = p.get((region, market, "slice", accelerator))
    if bundled is not None:
        return round(gpus * bundled, 6)
    family = series_family(machine)
    parts = [p.get((region, market, "core", family)), p.get((region, market, "ram", family)),
             p.get((region, market, "gpu", accelerator)) if gpus else 0.0]
    if family is None or any(x is None for x in parts):
        return None
    return round(vcpus * parts[0] + memory_gib * parts[1] + gpus * parts[2], 6)


def get_skus(client, page_size: int = 5000) -> list[dict]:
    """Every Compute Engine SKU (all pages) as REST JSON dicts, through a ``CloudCatalogClient``."""
    pager = client.list_skus(request={"parent": COMPUTE_SERVICE, "currency_code": "USD", "page_size": page_size})
    return [type(s).to_dict(s, use_integers_for_enums=False, preserving_proto_field_name=False) for s in pager]
