"""Core value types. Frozen dataclasses; units are in the field names.

Canonical region ids look like ``aws:us-east-1`` or ``gcp:europe-west4``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np


@dataclass(frozen=True)
class Region:
    """A cloud region and the electricity grid it draws from."""

    region_id: str
    provider: str
    region: str
    location: str
    country: str
    latitude: float
    longitude: float
    grid_zone: str
    profile_zone: str  # zone of the embedded hourly profiles, "" when none
    zone_basis: str
    pue: float
    pue_source: str
    yearly_intensity_g_per_kwh: float
    yearly_intensity_basis: str
    provider_published_g_per_kwh: float | None = None


@dataclass(frozen=True)
class Gpu:
    """A GPU model: power, dense throughput, memory and manufacturing footprint."""

    name: str
    aliases: tuple[str, ...]
    vendor: str
    architecture: str
    tdp_w: float
    dense_bf16_tflops: float | None
    dense_fp16_tflops: float | None
    fp32_tflops: float | None
    memory_gb: float
    embodied_kg_co2e: float
    embodied_basis: str = ""
    spec_source: str = ""

    @property
    def training_tflops(self) -> float:
        """Throughput used to scale runtimes: dense bf16, else dense fp16, else fp32."""
        for value in (self.dense_bf16_tflops, self.dense_fp16_tflops, self.fp32_tflops):
            if value is not None and value > 0:
                return value
        return 0.0


@dataclass(frozen=True)
class Offering:
    """Something a job can be launched on: an instance type in a region (and zones), at a price.

    ``market`` is ``on-demand`` or ``spot``; ``zone`` is the zone the price refers to when it
    differs between zones (spot), else None with every offering zone listed in ``zones``.
    """

    provider: str
    region: str
    instance_type: str
    gpu: str
    gpu_count: int
    vcpus: float
    memory_gib: float
    gpu_memory_gib: float
    price_usd_per_hour: float
    market: str = "on-demand"
    zone: str | None = None
    zones: tuple[str, ...] = ()
    price_basis: str = ""
    source: str = "embedded"
    # How many instances of this type (in this market) the account's quota lets it start in the
    # region, from a live catalog refresh; None = unknown (embedded data, or the quota was unreadable).
    max_instances: int | None = None
    quota_name: str = ""  # the quota behind max_instances, e.g. "aws L-417A185B" or "gcp NVIDIA_A100_GPUS"

    @property
    def region_id(self) -> str:
        return f"{self.provider}:{self.region}"


@dataclass(frozen=True, eq=False)
class Forecast:
    """Hourly grid carbon intensity for one region, starting at ``start`` (a UTC hour boundary).

    ``intensity_g_per_kwh[i]`` holds for ``[start + i h, start + (i+1) h)``. ``p10``/``p90`` give
    the spread where known. Provenance: ``source`` (e.g. ``embedded-profile``), ``kind``
    (forecast/history/profile/yearly), ``signal`` (average-lca, average-direct or marginal).
    """

    region_id: str
    zone: str
    start: datetime
    intensity_g_per_kwh: np.ndarray
    p10_g_per_kwh: np.ndarray | None
    p90_g_per_kwh: np.ndarray | None
    source: str
    kind: str
    signal: str
    fetched_at: datetime | None = None
    note: str = ""
    segments: tuple[dict, ...] = ()  # stitched parts: {"source", "kind", "signal", "from", "to"} (ISO UTC)
    warnings: tuple[str, ...] = ()  # fallbacks taken while producing it

    @property
    def hours(self) -> int:
        return int(self.intensity_g_per_kwh.shape[0])

    def provenance(self) -> dict:
        from .units import iso_utc

        return {
            "region_id": self.region_id,
            "zone": self.zone,
            "source": self.source,
            "kind": self.kind,
            "signal": self.signal,
            "fetched_at": iso_utc(self.fetched_at) if self.fetched_at else None,
            "note": self.note,
            "segments": list(self.segments),
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class Placement:
    """One ranked candidate: an offering started at ``start``, with its estimates."""

    provider: str
    region: str
    zone: str | None
    instance_type: str
    gpu: str
    gpu_count: int
    market: str
    start: datetime
    end: datetime
    runtime_hours: float
    energy_kwh: float
    mean_intensity_g_per_kwh: float
    kg_co2e_operational: float
    kg_co2e_embodied: float
    kg_co2e: float
    cost_usd: float
    price_usd_per_hour: float
    intensity_source: str
    intensity_signal: str
    pue: float
    rank: int | None = None
    saving_vs_baseline_pct: float | None = None
    score: float | None = None
    zones: tuple[str, ...] = field(default=())
    kg_co2e_p90: float | None = None  # kg_co2e with the forecast's p90 intensity (risk view)
    # spot and data economics (carbonsched.estimate): parts of runtime_hours, cost_usd and kg_co2e
    spot_restart_overhead_hours: float = 0.0
    data_transfer_usd: float = 0.0
    data_transfer_kwh: float = 0.0  # network energy, not included in energy_kwh
    kg_co2e_transfer: float = 0.0
    # interruptible jobs: the schedule (carbonsched.interruptible.InterruptibleSchedule), else None
    interruptible: object | None = None

    @property
    def region_id(self) -> str:
        return f"{self.provider}:{self.region}"
