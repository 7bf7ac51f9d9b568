"""Typed views of the embedded reference data: regions and GPU models, with name resolution.

``_parse_*`` functions are pure (rows -> values); ``read_*`` read the embedded files (cached).
Name lookups are forgiving about case and punctuation and suggest close names on failure.
"""
from __future__ import annotations

import math
import re
from functools import lru_cache

from carbonsched import data
from carbonsched.errors import DataError, UnknownNameError, did_you_mean
from carbonsched.models import Gpu, Region


def _float(row: dict, key: str, *, required: bool = True) -> float | None:
    raw = (row.get(key) or "").strip()
    if not raw:
        if required:
            raise DataError(f"embedded data: column {key!r} is empty in row {row}; rebuild the data (tools/build_data.py)")
        return None
    try:
        value = float(raw)
    except ValueError:
        raise DataError(f"embedded data: column {key!r} holds {raw!r}, not a number") from None
    if not math.isfinite(value):
        raise DataError(f"embedded data: column {key!r} is not finite in row {row}")
    return value


def _parse_regions(rows: list[dict]) -> dict[str, Region]:
    regions = {}
    for row in rows:
        region = Region(
            region_id=row["region_id"],
            provider=row["provider"],
            region=row["region"],
            location=row["location"],
            country=row["country"],
            latitude=_float(row, "latitude"),
            longitude=_float(row, "longitude"),
            grid_zone=row["grid_zone"],
            profile_zone=row.get("profile_zone", "") or "",
            zone_basis=row.get("zone_basis", ""),
            pue=_float(row, "pue"),
            pue_source=row.get("pue_source", ""),
            yearly_intensity_g_per_kwh=_float(row, "yearly_intensity_g_per_kwh"),
            yearly_intensity_basis=row.get("yearly_intensity_basis", ""),
            provider_published_g_per_kwh=_float(row, "provider_published_g_per_kwh", required=False),
            provider_published_basis=row.get("provider_published_basis", "") or "",
            provider_published_year=int(row["provider_published_year"]) if row.get("provider_published_year") else None,
            provider_cfe_pct=_float(row, "provider_cfe_pct", required=False),
        )
        regions[region.region_id] = region
    return regions


def _parse_gpus(rows: list[dict]) -> dict[str, Gpu]:
    gpus = {}
    for row in rows:
        gpu = Gpu(
            name=row["gpu"],
            aliases=tuple(a.strip() for a in (row.get("aliases") or "").split(";") if a.strip()),
            vendor=row.get("vendor", ""),
            architecture=row.get("architecture", ""),
            tdp_w=_float(row, "tdp_w"),
            dense_bf16_tflops=_float(row, "dense_bf16_tflops", required=False),
            dense_fp16_tflops=_float(row, "dense_fp16_tflops", required=False),
            fp32_tflops=_float(row, "fp32_tflops", required=False),
            memory_gb=_float(row, "memory_gb"),
            embodied_kg_co2e=_float(row, "embodied_kg_co2e"),
            embodied_basis=row.get("embodied_basis", ""),
            spec_source=row.get("spec_source", ""),
        )
        if gpu.training_tflops <= 0:
            raise DataError(f"embedded data: GPU {gpu.name} has no throughput figure; rebuild the data")
        gpus[gpu.name] = gpu
    return gpus


@lru_cache(maxsize=1)
def read_regions() -> dict[str, Region]:
    return _parse_regions(data.read_rows("regions.csv"))


@lru_cache(maxsize=1)
def read_gpus() -> dict[str, Gpu]:
    return _parse_gpus(data.read_rows("gpus.csv"))


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def resolve_gpu(name: str, gpus: dict[str, Gpu] | None = None) -> Gpu:
    """The GPU named ``name`` (canonical name or alias, any case/punctuation)."""
    gpus = read_gpus() if gpus is None else gpus
    if name in gpus:
        return gpus[name]
    key = _norm(name)
    for gpu in gpus.values():
        if key == _norm(gpu.name) or any(key == _norm(a) for a in gpu.aliases):
            return gpu
    raise UnknownNameError(
        f"unknown GPU {name!r}{did_you_mean(name, sorted(gpus))} (known: {', '.join(sorted(gpus))})"
    )


def resolve_region(name: str, regions: dict[str, Region] | None = None) -> Region:
    """The region named ``provider:region`` (or a bare region name when it is unambiguous)."""
    regions = read_regions() if regions is None else regions
    text = name.strip().lower()
    if text in regions:
        return regions[text]
    if ":" not in text:
        matches = [r for r in regions.values() if r.region == text]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            ids = ", ".join(r.region_id for r in matches)
            raise UnknownNameError(f"region {name!r} is ambiguous; write one of {ids}")
    raise UnknownNameError(f"unknown region {name!r}{did_you_mean(text, sorted(regions))}; list them with `carbonsched regions`")
