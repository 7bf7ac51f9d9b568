"""The result of planning: ranked placements, the baseline, and the JSON contract.

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

Spot and data economics (``carbonsched.estimate``), per placement: ``spot_restart_overhead_hours``
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

from dataclasses import dataclass, field
from datetime import datetime

from .jobspec import JobSpec
from .models import Forecast, Placement
from .units import iso_utc

from carbonsched.policies import Policy

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

    @property
    def best(self) -> Placement:
        return self.placements[0]

    def to_dict(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "now": iso_utc(self.now),
            "job": self.job.to_dict(),
            "policy": {"objective": self.policy.objective, "weights": dict(self.policy.weights),
                       "order": list(self.policy.order), "tolerance_pct": self.policy.tolerance_pct,
                       "risk": self.policy.risk},
            "baseline": placement_to_dict(self.baseline) if self.baseline else None,
            "placements": [placement_to_dict(p) for p in self.placements],
            "warnings": list(self.warnings),
            "data_sources": list(self.data_sources),
            "stats": {"candidates": self.n_candidates, "feasible": self.n_feasible,
                      "rejected_by_offering_constraint": dict(self.eliminated),
                      "after_offering_constraints": self.n_after_offering_filters,
                      "rejected_among_those": dict(self.eliminated_after_filters)},
        }

    def to_dataframe(self):
        """The ranked placements as a pandas DataFrame (one row each, contract columns)."""
        import pandas as pd

        rows = [placement_to_dict(p) for p in self.placements]
        df = pd.DataFrame(rows, columns=list(PLACEMENT_FIELDS))
        for col in ("start", "end"):
            df[col] = pd.to_datetime(df[col], utc=True)
        return df
