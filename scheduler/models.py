"""Core value types shared by every stage. Frozen dataclasses; units are in the field names.

Canonical region ids look like ``aws:us-east-1`` or ``gcp:europe-west4``. ``Region``, ``Gpu``,
``Offering`` and ``Forecast`` are the planner's inputs, ``PowerModel`` the estimation model's
parameters, ``Placement`` and ``Plan`` its output (the JSON contract below).

The result of planning: ranked placements, the baseline, and the JSON contract.

JSON contract (``Plan.to_dict()``; ``schema_version`` 1): top-level ``schema_version``, ``now``,
``job``, ``policy``, ``baseline``, ``placements`` (ranked, best first), ``warnings``,
``data_sources``, ``stats``. Each placement and the baseline carry ``provider``, ``region``,
``region_id``, ``zone`` (or null), ``zones``, ``instance_type``, ``gpu``, ``gpu_count``, ``market``,
``start``/``end`` (ISO 8601 UTC), ``runtime_hours``, ``energy_kwh``,
``mean_intensity_g_per_kwh``, ``kg_co2e_operational``, ``kg_co2e_embodied``, ``kg_co2e``,
``cost_usd``, ``price_usd_per_hour``, ``pue``, ``intensity_source``, ``intensity_signal``,
``saving_vs_baseline_pct`` and ``rank`` (null for the baseline). Energy is spread evenly over the
run, so ``kg_co2e_operational = energy_kwh * mean_intensity_g_per_kwh / 1000`` and
``kg_co2e = kg_co2e_operational + kg_co2e_embodied + kg_co2e_transfer``.

Spot and data economics (``carbonsched.planning.estimate``), per placement: ``spot_restart_overhead_hours``
(expected hours redone or spent restarting after preemptions, included in ``runtime_hours``; 0
on demand), ``data_transfer_usd`` (dataset egress, included in ``cost_usd``, so
``cost_usd = price_usd_per_hour * runtime_hours + data_transfer_usd`` for uninterrupted
placements), ``data_transfer_kwh`` (network energy, not in ``energy_kwh``) and
``kg_co2e_transfer`` (its emissions, in ``kg_co2e``); all 0 without ``[data]`` or in the home region.

``interruptible`` is null, or for a job with ``[interruptible]`` the schedule:
``{"segments": [{"start", "end", "overhead_hours"}...], "resumes", "kg_co2e", "energy_kwh",
"cost_usd", "occupied_hours", "uninterrupted_kg_co2e", "saving_vs_uninterrupted_pct", ...}``;
then ``start``/``end`` are the first segment's start and the last one's end and ``runtime_hours``
the occupied hours (progress + resume overhead).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from carbonsched.errors import JobSpecError
from carbonsched.units import iso_utc

if TYPE_CHECKING:  # annotations only: the value types sit below the layers that define these
    import numpy as np  # (and numpy: the tracker, which imports this module, starts without it)

    from carbonsched.policies import Policy
    from carbonsched.spec.job import JobSpec


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
    provider_published_g_per_kwh: float | None = None  # the provider's own location-based figure
    provider_published_basis: str = ""
    provider_published_year: int | None = None
    provider_cfe_pct: float | None = None  # Google's carbon-free energy %: market-based, never in kgCO2e

    def provider_facts(self) -> dict | None:
        """What the provider publishes for this region, labelled (None when it publishes nothing)."""
        if self.provider_published_g_per_kwh is None and self.provider_cfe_pct is None:
            return None
        return {"published_g_per_kwh": self.provider_published_g_per_kwh, "basis": self.provider_published_basis,
                "year": self.provider_published_year, "cfe_pct": self.provider_cfe_pct,
                "note": "the provider's location-based yearly figure, beside our hourly intensity; CFE % is "
                        "market-based (hourly-matched clean energy purchases) and is not used in kgCO2e"}


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
    # spot and data economics (carbonsched.planning.estimate): parts of runtime_hours, cost_usd and kg_co2e
    spot_restart_overhead_hours: float = 0.0
    data_transfer_usd: float = 0.0
    data_transfer_kwh: float = 0.0  # network energy, not included in energy_kwh
    kg_co2e_transfer: float = 0.0
    # interruptible jobs: the schedule (carbonsched.planning.interruptible.InterruptibleSchedule), else None
    interruptible: object | None = None

    @property
    def region_id(self) -> str:
        return f"{self.provider}:{self.region}"


EMBODIED_LIFE_HOURS = 13149.0  # a cloud GPU server's active life (Green Algorithms: 3 years at 50 %)


@dataclass(frozen=True)
class PowerModel:
    """Parameters of the power model (``carbonsched.planning.estimate`` gives the formulas)."""

    utilisation_factor: float = 0.84
    host_w_per_vcpu: float = 3.4
    host_w_per_gib: float = 0.3725
    gpu_scaling_efficiency: float = 0.9
    embodied_life_hours: float = EMBODIED_LIFE_HOURS

    def __post_init__(self):
        checks = {
            "utilisation_factor": (0.0, 1.5, False),
            "host_w_per_vcpu": (0.0, 100.0, True),
            "host_w_per_gib": (0.0, 10.0, True),
            "gpu_scaling_efficiency": (0.0, 1.0, False),
            "embodied_life_hours": (0.0, 1e7, False),
        }
        for name, (lo, hi, zero_ok) in checks.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or v > hi or v < lo or (v == lo and not zero_ok):
                raise JobSpecError(f"power.{name} must be a number in {'[' if zero_ok else '('}{lo}, {hi}], got {v!r}")

    def to_dict(self) -> dict:
        return asdict(self)


SCHEMA_VERSION = 1

PLACEMENT_FIELDS = (
    "rank", "provider", "region", "region_id", "zone", "zones", "instance_type", "gpu", "gpu_count", "market",
    "start", "end", "runtime_hours", "energy_kwh", "mean_intensity_g_per_kwh", "kg_co2e_operational",
    "kg_co2e_embodied", "kg_co2e", "kg_co2e_p90", "cost_usd", "price_usd_per_hour", "pue", "intensity_source",
    "intensity_signal", "saving_vs_baseline_pct", "spot_restart_overhead_hours", "data_transfer_usd",
    "data_transfer_kwh", "kg_co2e_transfer", "interruptible",
)


def placement_to_dict(p: Placement) -> dict:
    out = {}
    for name in PLACEMENT_FIELDS:
        value = getattr(p, name)
        if isinstance(value, datetime):
            value = iso_utc(value)
        elif isinstance(value, tuple):
            value = list(value)
        elif value is not None and hasattr(value, "to_dict"):
            value = value.to_dict()
        out[name] = value
    return out


@dataclass(frozen=True, eq=False)
class Plan:
    now: datetime
    job: JobSpec
    policy: Policy
    placements: tuple[Placement, ...]
    baseline: Placement | None
    warnings: tuple[str, ...] = ()
    data_sources: tuple[dict, ...] = ()
    forecasts: dict[str, Forecast] = field(default_factory=dict)
    n_candidates: int = 0
    n_feasible: int = 0
    eliminated: dict[str, int] = field(default_factory=dict)  # per-offering constraints, out of n_candidates
    n_after_offering_filters: int = 0
    eliminated_after_filters: dict[str, int] = field(default_factory=dict)  # the rest, out of n_after_offering_filters
    # the organisation policy the job was planned under (PolicyFile.provenance: name, version, path,
    # sha256, changes); None: no policy, and then the document has no "policy_file" key
    policy_file: dict | None = None

    @property
    def best(self) -> Placement:
        return self.placements[0]

    def to_dict(self) -> dict:
        doc = {
            "schema_version": SCHEMA_VERSION,
            "now": iso_utc(self.now),
            "job": self.job.to_dict(),
            "policy": {"objective": self.policy.objective, "weights": dict(self.policy.weights),
                       "order": list(self.policy.order), "tolerance_pct": self.policy.tolerance_pct,
                       "risk": self.policy.risk,
                       "deferral": self.policy.deferral},
            "baseline": placement_to_dict(self.baseline) if self.baseline else None,
            "placements": [placement_to_dict(p) for p in self.placements],
            "warnings": list(self.warnings),
            "data_sources": list(self.data_sources),
            "stats": {"candidates": self.n_candidates, "feasible": self.n_feasible,
                      "rejected_by_offering_constraint": dict(self.eliminated),
                      "after_offering_constraints": self.n_after_offering_filters,
                      "rejected_among_those": dict(self.eliminated_after_filters)},
        }
        if self.policy_file is not None:  # after "policy" (the objective it ranked by)
            head = {k: doc[k] for k in ("schema_version", "now", "job", "policy")}
            doc = {**head, "policy_file": dict(self.policy_file), **doc}
        return doc

    def to_dataframe(self):
        """The ranked placements as a pandas DataFrame (one row each, contract columns)."""
        import pandas as pd

        rows = [placement_to_dict(p) for p in self.placements]
        df = pd.DataFrame(rows, columns=list(PLACEMENT_FIELDS))
        for col in ("start", "end"):
            df[col] = pd.to_datetime(df[col], utc=True)
        return df
