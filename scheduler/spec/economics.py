"""Spot and data economics: the assumptions behind spot restarts and dataset transfers.

Two job tables feed ``carbonsched.planning.estimate`` (the maths is documented there):

``[spot]`` (used only when ``constraints.spot = true``)::

    preemption_rate_per_hour = 0.05     # expected preemptions per hour of a spot run (default)
    preemption_rates = { "aws" = 0.08, "gcp:europe-*" = 0.03 }   # per provider / region id / glob
    checkpoint_interval = "1h"          # work between checkpoints; a preemption loses half on average
    restart_overhead = "15m"            # re-acquire an instance and load the checkpoint, per preemption

``[data]`` (a dataset that lives in one region)::

    size_gb = 500                       # GB moved to the training region (once, before the run)
    home_region = "aws:us-east-1"       # where it lives; placements there move nothing
    egress_usd_per_gb = 0.09            # optional override of the table below (all destinations)
    transfer_kwh_per_gb = 0.0053        # optional override of the network energy factor

Defaults and their sources (re-checked 2026-11-29; override them when you know better):

* ``DEFAULT_PREEMPTION_RATE_PER_HOUR = 0.05`` (one preemption per 20 running hours) is an
  **assumption**, not a measurement. Neither provider publishes hourly rates. AWS's Spot Instance
  Advisor (https://aws.amazon.com/ec2/spot/instance-advisor/, data behind it at
  https://spot-bid-advisor.s3.amazonaws.com/spot-advisor-data.json) gives, per instance type and
  region, the share of Spot capacity reclaimed over the trailing month in buckets <5 %, 5-10 %,
  10-15 %, 15-20 % and >20 %; GPU families often sit in the top bucket. Google documents that
  Spot VMs may be preempted at any time with 30 s notice
  (https://cloud.google.com/compute/docs/instances/spot) and reports a per-interval preemption
  rate (preempted / stopped Spot VMs) in the Compute API's capacity history, not a rate per hour.
  At 0.05/h an 8-hour run is interrupted at least once with probability 1 - e^-0.4 = 33 %, i.e.
  the advisor's top bucket for runs of that length: pessimistic for most capacity, about right
  for scarce GPUs. Put your own observed rates in ``preemption_rates``.
* ``DEFAULT_CHECKPOINT_INTERVAL_H = 1.0`` and ``DEFAULT_RESTART_OVERHEAD_H = 0.25``: assumptions
  typical of hourly checkpointing and a ~15 min re-acquire + checkpoint load.
* Egress list prices, first paid tier, unchanged at the re-check: AWS "EC2 On-Demand pricing >
  Data Transfer" (https://aws.amazon.com/ec2/pricing/on-demand/): internet egress $0.09/GB up to
  10 TB a month after the first 100 GB free (aggregated across services and ignored here), to
  another AWS region $0.02/GB from US/EU regions; Google Cloud "Network pricing"
  (https://cloud.google.com/vpc/network-pricing, https://cloud.google.com/network-tiers/pricing):
  Premium Tier internet egress $0.12/GB for the first TiB (Standard Tier $0.085/GB), between
  regions on one continent $0.02/GB. Google is moving Premium Tier to prices by source and
  destination; $0.12 is its first-tier rate for most pairs. The **home** provider charges (egress
  is billed by the source); moving to another provider is internet egress; ingress is free on both.
  Override with ``egress_usd_per_gb``.
* ``DEFAULT_TRANSFER_KWH_PER_GB = 0.0053``: Aslan, Mayers, Koomey & France (2018), "Electricity
  Intensity of Internet Data Transmission", J. Industrial Ecology 22(4):785-798, give 0.06 kWh/GB
  for 2015, halving about every two years; extrapolated with their own trend to 2022:
  0.06 x 2^-3.5 = 0.0053 kWh/GB. Network energy is spread over a path we do not know, so it is
  charged at the mean of the home and destination regions' yearly grid intensities.
"""
from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field

from carbonsched.errors import JobSpecError

DEFAULT_PREEMPTION_RATE_PER_HOUR = 0.05
DEFAULT_CHECKPOINT_INTERVAL_H = 1.0
DEFAULT_RESTART_OVERHEAD_H = 0.25
DEFAULT_TRANSFER_KWH_PER_GB = 0.0053
# per home provider: (internet egress, inter-region same provider) in USD/GB
EGRESS_USD_PER_GB = {"aws": (0.09, 0.02), "gcp": (0.12, 0.02)}
# lost work per preemption must stay well below the time between preemptions, else a run never ends
MAX_LOSS_FRACTION = 0.9


def _nonneg(value, where: str, upper: float = 1e9) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise JobSpecError(f"{where} must be a finite number >= 0, got {value!r}")
    if value > upper:
        raise JobSpecError(f"{where} = {value:g} is beyond any real value (at most {upper:g}); check the unit")
    return float(value)


@dataclass(frozen=True)
class SpotModel:
    """Preemption assumptions for spot placements (see the module docstring)."""

    preemption_rate_per_hour: float = DEFAULT_PREEMPTION_RATE_PER_HOUR
    preemption_rates: dict[str, float] = field(default_factory=dict)  # provider | region id | glob -> rate
    checkpoint_interval_hours: float = DEFAULT_CHECKPOINT_INTERVAL_H
    restart_overhead_hours: float = DEFAULT_RESTART_OVERHEAD_H

    def __post_init__(self):
        _nonneg(self.preemption_rate_per_hour, "spot.preemption_rate_per_hour")
        _nonneg(self.checkpoint_interval_hours, "spot.checkpoint_interval")
        _nonneg(self.restart_overhead_hours, "spot.restart_overhead")
        for key, rate in self.preemption_rates.items():
            _nonneg(rate, f"spot.preemption_rates.{key}")
        worst = max([self.preemption_rate_per_hour, *self.preemption_rates.values()])
        if worst * self.loss_per_preemption_hours >= MAX_LOSS_FRACTION:
            raise JobSpecError(
                f"spot: at {worst:g} preemptions/h each losing {self.loss_per_preemption_hours:g} h "
                "(half the checkpoint interval + the restart overhead) a run would (almost) never finish; "
                "checkpoint more often (spot.checkpoint_interval) or disable spot")

    @property
    def loss_per_preemption_hours(self) -> float:
        """Expected hours lost per preemption: half a checkpoint interval of work + the restart."""
        return self.checkpoint_interval_hours / 2 + self.restart_overhead_hours

    def rate_for(self, region_id: str) -> float:
        """Preemption rate for a region: exact id, then the longest matching glob, then the
        provider, then the default."""
        rates = self.preemption_rates
        if region_id in rates:
            return rates[region_id]
        globs = [k for k in rates if ":" in k and fnmatch.fnmatchcase(region_id, k)]
        if globs:
            return rates[max(globs, key=len)]
        provider = region_id.split(":", 1)[0]
        return rates.get(provider, self.preemption_rate_per_hour)

    def to_dict(self) -> dict:
        return {"preemption_rate_per_hour": self.preemption_rate_per_hour,
                "preemption_rates": dict(self.preemption_rates),
                "checkpoint_interval_hours": self.checkpoint_interval_hours,
                "restart_overhead_hours": self.restart_overhead_hours}


@dataclass(frozen=True)
class DataSpec:
    """A dataset of ``size_gb`` living in ``home_region`` (canonical id)."""

    size_gb: float
    home_region: str
    egress_usd_per_gb: float | None = None  # None: the provider table
    transfer_kwh_per_gb: float = DEFAULT_TRANSFER_KWH_PER_GB

    def __post_init__(self):
        _nonneg(self.size_gb, "data.size_gb", upper=1e7)  # 10 PB
        _nonneg(self.transfer_kwh_per_gb, "data.transfer_kwh_per_gb", upper=10.0)
        if self.egress_usd_per_gb is not None:
            _nonneg(self.egress_usd_per_gb, "data.egress_usd_per_gb", upper=100.0)
        if not isinstance(self.home_region, str) or not self.home_region.strip():
            raise JobSpecError(f"data.home_region must be a region id like 'aws:us-east-1', got {self.home_region!r}")

    def usd_per_gb_to(self, region_id: str) -> float:
        """Egress price per GB from the home region to ``region_id`` (0 at home)."""
        if region_id == self.home_region:
            return 0.0
        if self.egress_usd_per_gb is not None:
            return self.egress_usd_per_gb
        home_provider = self.home_region.split(":", 1)[0]
        internet, inter_region = EGRESS_USD_PER_GB.get(home_provider, EGRESS_USD_PER_GB["aws"])
        return inter_region if region_id.split(":", 1)[0] == home_provider else internet

    def to_dict(self) -> dict:
        return {"size_gb": self.size_gb, "home_region": self.home_region,
                "egress_usd_per_gb": self.egress_usd_per_gb, "transfer_kwh_per_gb": self.transfer_kwh_per_gb}
