"""The embedded offerings snapshot (``data/offerings.csv``, reduced from SkyPilot's catalog).

Zones of one instance type in one region usually share the on-demand price; they are merged
into one offering listing every zone (``zone=None``). Where zone prices differ (spot prices on
AWS do) the offering takes the cheapest zone and names it.
"""
from __future__ import annotations

import math
from functools import lru_cache

from carbonsched import data
from carbonsched.errors import DataError
from carbonsched.models import Offering


def _row_name(row: dict) -> str:
    """The row as a reader finds it: provider, region, zone and instance type (not the whole dict)."""
    return "row " + " ".join(str(row.get(k) or "-") for k in ("provider", "region", "zone", "instance_type"))


def _num(raw: str, what: str, row: dict) -> float | None:
    if not raw:
        return None
    try:
        value = float(raw)  # float() ignores surrounding whitespace
    except (TypeError, ValueError):
        if isinstance(raw, str) and not raw.strip():
            return None
        raise DataError(f"offerings data: {what} {raw!r} is not a number in {_row_name(row)}") from None
    if not 0 <= value < math.inf:  # also rejects NaN
        raise DataError(f"offerings data: {what} {raw!r} is not a finite non-negative number in {_row_name(row)}")
    return value


def _gpu_count(raw: str, row: dict) -> int:
    """A whole number of GPUs >= 1 (an offering with no GPU is no place to train; 0 divided the planner)."""
    value = _num(raw, "gpu_count", row)
    if value is None or value < 1 or value != int(value):
        raise DataError(f"offerings data: gpu_count {raw!r} is not a whole number of GPUs >= 1 in {_row_name(row)}")
    return int(value)


def _cheapest(prices: dict[str, float]) -> tuple[float, str | None]:
    """(price, zone) for the cheapest zone, zone None when every zone has the same price."""
    if len(prices) == 1:
        ((zone, price),) = prices.items()
        return price, None
    price, zone = min((p, z) for z, p in prices.items())
    return price, (None if len(set(prices.values())) == 1 else zone)


def parse_offerings(rows: list[dict], source: str = "embedded") -> list[Offering]:
    """Group per-zone rows into on-demand and spot offerings per (provider, region, instance)."""
    groups: dict[tuple, dict] = {}
    for row in rows:
        key = (row["provider"], row["region"], row["instance_type"])
        g = groups.get(key)
        if g is None:
            g = groups[key] = {"row": row, "od": {}, "spot": {}}
        od = _num(row["price_usd_per_hour"], "price_usd_per_hour", row)
        if od is None:
            continue
        zone = row.get("zone") or ""
        g["od"][zone] = od
        spot = _num(row.get("spot_price_usd_per_hour"), "spot_price_usd_per_hour", row)
        if spot is not None and spot > 0:
            g["spot"][zone] = spot
    offerings = []
    for (provider, region, instance), g in groups.items():
        if not g["od"]:
            continue
        row = g["row"]
        common = dict(
            provider=provider,
            region=region,
            instance_type=instance,
            gpu=row["gpu"],
            gpu_count=_gpu_count(row["gpu_count"], row),
            vcpus=_num(row.get("vcpus"), "vcpus", row) or 0.0,
            memory_gib=_num(row.get("memory_gib"), "memory_gib", row) or 0.0,
            gpu_memory_gib=_num(row.get("gpu_memory_gib"), "gpu_memory_gib", row) or 0.0,
            price_basis=row.get("price_basis", ""),
            source=source,
        )
        for market, prices in (("on-demand", g["od"]), ("spot", g["spot"])):
            if prices:
                price, zone = _cheapest(prices)
                offerings.append(Offering(price_usd_per_hour=price, market=market, zone=zone,
                                          zones=tuple(sorted(z for z in prices if z)), **common))
    return offerings


@lru_cache(maxsize=1)
def read_offerings() -> tuple[Offering, ...]:
    return tuple(parse_offerings(data.read_rows("offerings.csv")))


def _offerings_as_of() -> str:
    for row in data.read_rows("provenance.csv"):
        if row["file"] == "offerings.csv":
            return row["retrieved"]
    return "unknown"


class EmbeddedCatalog:
    """Offerings from the snapshot shipped with carbonsched (no credentials, no network)."""

    name = "embedded"

    def list_offerings(self) -> list[Offering]:
        return list(read_offerings())

    def describe(self) -> dict:
        return {
            "name": "offerings",
            "source": "embedded snapshot of SkyPilot's public VM catalog (list prices)",
            "as_of": _offerings_as_of(),
            "note": "prices may have changed; spot prices are a snapshot, not live",
        }
