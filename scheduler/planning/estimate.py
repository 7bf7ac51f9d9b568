"""The estimation model: runtime, energy, emissions and cost of every (offering, start) candidate.

For offering ``o`` (n GPUs of type g, in region r) and start ``s``:

* runtime (h)::

      runtime = hours_ref * (n_ref * S(g_ref) * E(n_ref)) / (n * S(g) * E(n)),   E(n) = eff ** log2(n)

  ``S`` = measured throughput when the job gives one, else the datasheet's dense bf16 (fp16 for
  GPUs without bf16) TFLOPS; ``eff`` = ``gpu_scaling_efficiency`` (throughput kept per doubling).
* power (W)::

      P = n * u * TDP(g) + vcpus * host_w_per_vcpu + memory_gib * host_w_per_gib

  ``u`` = ``utilisation_factor`` (default 0.84: a transformer training loop on one H100 SXM drew
  588 W of its 700 W TDP; a bf16 matmul loop 1.00; an input-starved loop 0.45). Host: 3.4 W per
  vCPU (a 270 W, 40-core / 80-thread Xeon Platinum 8380 at TDP) and 0.3725 W per GiB of RAM
  (Green Algorithms' memory power).
* energy (kWh) = P * runtime * PUE(r) / 1000, spread evenly over ``[s, s + runtime)``.
* operational kgCO2e = energy * I_mean / 1000, where ``I_mean`` is the time-average of the
  region's hourly intensity forecast over exactly ``[s, s + runtime)`` (piecewise-constant hours,
  integrated with prefix sums, so partial hours count by their fraction).
* embodied kgCO2e = n * embodied_kg(g) * runtime / life_hours, ``life_hours`` = 13,149 h
  (Green Algorithms' active lifespan of a cloud server: 3 years at 50 % utilisation).
* cost (USD) = price_usd_per_hour(o) * runtime (+ data transfer, below).

Spot restarts (``carbonsched.spec.economics``; only spot offerings, on-demand has ``lambda = 0``):
preemptions arrive as a Poisson process of rate ``lambda`` per running hour (per provider/region);
each loses ``L = checkpoint_interval / 2 + restart_overhead`` hours on average (the work since the
last checkpoint, uniformly distributed, plus re-acquiring and loading). The expected wall time ``T``
solves ``T = T0 + lambda * T * L``::

      T = T0 / (1 - lambda * L),    spot_restart_overhead_h = T - T0     (lambda * L < 0.9 enforced)

``runtime`` above is then ``T``: energy, embodied share and price x hours all scale with it (the
instance is powered and billed while it redoes lost work), and the operational window is
``[s, s + T)``.

Data transfer (a job with ``[data]``; 0 in the home region)::

      transfer_usd   = size_gb * egress_usd_per_gb(home -> r)
      transfer_kwh   = size_gb * kwh_per_gb                               (0 at home)
      kg_transfer    = transfer_kwh * (I_year(home) + I_year(r)) / 2 / 1000

so ``kg_co2e = kg_operational + kg_embodied + kg_transfer`` and
``cost_usd = price_usd_per_hour * runtime + transfer_usd``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from carbonsched.errors import JobSpecError
from carbonsched.models import PowerModel
from carbonsched.units import g_to_kg, watts_hours_to_kwh

@dataclass(frozen=True, eq=False)
class OfferingArrays:
    """Per-offering inputs, one entry per offering (index o)."""

    gpu_count: np.ndarray
    speed: np.ndarray  # throughput per GPU, same unit as ref_speed
    tdp_w: np.ndarray
    vcpus: np.ndarray
    memory_gib: np.ndarray
    pue: np.ndarray
    embodied_kg_per_gpu: np.ndarray
    usd_per_hour: np.ndarray
    region_index: np.ndarray  # row of the intensity matrix
    preemption_per_h: np.ndarray | None = None  # spot preemption rate (0 for on-demand); None = none
    transfer_usd: np.ndarray | None = None  # dataset egress to this offering's region
    transfer_kwh: np.ndarray | None = None
    transfer_g_per_kwh: np.ndarray | None = None  # intensity charged for the transfer energy


@dataclass(frozen=True, eq=False)
class Estimates:
    runtime_h: np.ndarray  # (O,)
    power_w: np.ndarray  # (O,) IT power (before PUE)
    energy_kwh: np.ndarray  # (O,)
    cost_usd: np.ndarray  # (O,)
    kg_embodied: np.ndarray  # (O,)
    mean_intensity: np.ndarray  # (O, K) g/kWh
    kg_operational: np.ndarray  # (O, K)
    kg_co2e: np.ndarray  # (O, K) operational + embodied + transfer
    kg_co2e_p90: np.ndarray | None = None  # (O, K) the same with the forecast's p90 intensity
    spot_restart_overhead_h: np.ndarray | None = None  # (O,) part of runtime_h spent on restarts
    transfer_usd: np.ndarray | None = None  # (O,) part of cost_usd
    transfer_kwh: np.ndarray | None = None  # (O,) not in energy_kwh (network, not the instance)
    kg_transfer: np.ndarray | None = None  # (O,) part of kg_co2e


def runtime_hours(hours_ref: float, n_ref: int, ref_speed: float, n: np.ndarray, speed: np.ndarray, eff: float) -> np.ndarray:
    """Runtime on n GPUs of speed ``speed`` given ``hours_ref`` on ``n_ref`` GPUs of ``ref_speed``."""
    n = np.asarray(n, dtype=float)
    rel_eff = eff ** np.log2(n / n_ref)  # E(n) / E(n_ref)
    return hours_ref * (n_ref * ref_speed) / (n * np.asarray(speed, dtype=float) * rel_eff)


def spot_expected_runtime(runtime_h: np.ndarray, preemption_per_h: np.ndarray, loss_per_preemption_h: float) -> np.ndarray:
    """Expected wall hours ``T0 / (1 - lambda * L)`` with restarts (see the module docstring)."""
    x = np.asarray(preemption_per_h, dtype=float) * loss_per_preemption_h
    if np.any(x >= 1.0):
        raise JobSpecError("spot: a preemption rate x lost hours per preemption >= 1 never finishes; checkpoint more often")
    return np.asarray(runtime_h, dtype=float) / (1.0 - x)


def window_mean(cum: np.ndarray, region_index: np.ndarray, start_h: np.ndarray, runtime_h: np.ndarray) -> np.ndarray:
    """(O, K) mean of piecewise-constant hourly series over ``[start, start + runtime)``.

    ``cum[r, i]`` = sum of the first ``i`` hourly values of region r (shape (R, H+1)); times are
    hours from the series start. ``C(x) = cum[floor x] + (x - floor x) * v[floor x]``. ``C(start)``
    depends on the region only, so it is computed per (region, start) and gathered by row.
    """
    H = cum.shape[1] - 1
    if start_h.min() < 0 or float(start_h.max() + runtime_h.max()) > H + 1e-9:
        raise ValueError(f"intensity series covers {H} h but a run reaches {float(start_h.max() + runtime_h.max()):.1f} h")

    def integral(rows, x):
        i = np.minimum(np.floor(x).astype(np.int64), H - 1)
        lo, hi = (cum[:, i], cum[:, i + 1]) if rows is None else (cum[rows, i], cum[rows, i + 1])
        return lo + (x - i) * (hi - lo)

    at_start = integral(None, start_h)[region_index]  # (R, K) -> (O, K)
    at_end = integral(region_index[:, None], start_h[None, :] + runtime_h[:, None])
    return (at_end - at_start) / runtime_h[:, None]


def estimate(o: OfferingArrays, *, hours_ref: float, n_ref: int, ref_speed: float, power: PowerModel,
             start_h: np.ndarray, intensity_cum: np.ndarray, intensity_cum_p90: np.ndarray | None = None,
             loss_per_preemption_h: float = 0.0, nodes: int = 1) -> Estimates:
    """Vectorised estimates for all offerings x starts (see the module docstring for the model).

    With ``intensity_cum_p90`` (prefix sums of the forecast's p90 series) it also gives the
    risk-averse ``kg_co2e_p90``. ``o.preemption_per_h`` and ``loss_per_preemption_h`` add spot
    restarts; ``o.transfer_*`` add the dataset transfer. ``nodes`` instances run side by side (a
    multi-node job, ``num_nodes``): power, cost and embodied emissions scale with them, the
    runtime does not (the job's hours were measured on that many nodes).
    """
    base = runtime_hours(hours_ref, n_ref, ref_speed, o.gpu_count, o.speed, power.gpu_scaling_efficiency)
    runtime = base if o.preemption_per_h is None else spot_expected_runtime(base, o.preemption_per_h, loss_per_preemption_h)
    zeros = np.zeros_like(runtime)
    t_usd = zeros if o.transfer_usd is None else np.asarray(o.transfer_usd, dtype=float)
    t_kwh = zeros if o.transfer_kwh is None else np.asarray(o.transfer_kwh, dtype=float)
    kg_t = zeros if o.transfer_g_per_kwh is None else g_to_kg(t_kwh * o.transfer_g_per_kwh)
    power_w = nodes * (o.gpu_count * power.utilisation_factor * o.tdp_w
                       + o.vcpus * power.host_w_per_vcpu + o.memory_gib * power.host_w_per_gib)
    energy = watts_hours_to_kwh(power_w * o.pue, runtime)
    mean_i = window_mean(intensity_cum, o.region_index, start_h, runtime)
    kg_op = g_to_kg(energy[:, None] * mean_i)
    kg_emb = nodes * o.gpu_count * o.embodied_kg_per_gpu * runtime / power.embodied_life_hours
    kg_p90 = None
    if intensity_cum_p90 is not None:
        kg_p90 = g_to_kg(energy[:, None] * window_mean(intensity_cum_p90, o.region_index, start_h, runtime)) \
            + (kg_emb + kg_t)[:, None]
    return Estimates(runtime_h=runtime, power_w=power_w, energy_kwh=energy, cost_usd=nodes * o.usd_per_hour * runtime + t_usd,
                     kg_embodied=kg_emb, mean_intensity=mean_i, kg_operational=kg_op,
                     kg_co2e=kg_op + (kg_emb + kg_t)[:, None], kg_co2e_p90=kg_p90,
                     spot_restart_overhead_h=runtime - base, transfer_usd=t_usd, transfer_kwh=t_kwh, kg_transfer=kg_t)
