"""Constraints as boolean masks over candidates.

A candidate ``(o, k)`` is feasible iff every constraint holds:

* window:   ``start_h[k] <= latest_start_h``                       (max delay)
* deadline: ``start_h[k] + runtime_h[o] <= deadline_h``            (must finish by)
* max_usd_per_hour:  ``usd_per_hour[o] <= limit``
* max_total_usd:     ``cost_usd[o] <= limit``
* carbon_budget_kg:  ``kg_co2e[o, k] <= limit``
* min_gpu_memory_gb: ``gpu_memory_gb[o] >= limit``
* plus categorical per-offering masks computed by the planner (provider, region patterns,
  GPU types and counts, spot), passed in as ``offering_masks``.

``feasibility`` also counts, per constraint, how many candidates it rejects on its own, and
``relaxation_gains`` how many would become feasible if only that constraint were dropped, so an
infeasible plan can say what eliminated the candidates and which single change would help.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from carbonsched.policies.candidates import Candidates

# absolute slack on time comparisons: a run that ends within ~4 s of the deadline meets it
TIME_EPS_H = 1e-3


@dataclass(frozen=True)
class Limits:
    latest_start_h: float | None = None
    deadline_h: float | None = None
    max_usd_per_hour: float | None = None
    max_total_usd: float | None = None
    carbon_budget_kg: float | None = None
    min_gpu_memory_gb: float | None = None


def constraint_masks(c: Candidates, limits: Limits, offering_masks: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """{constraint: mask of the candidates it allows}, for the constraints that are set.

    Masks keep their natural shape, broadcastable to (O, K): (O, 1) for per-offering
    constraints, (1, K) for per-start ones, (O, K) otherwise.
    """
    masks: dict[str, np.ndarray] = {}
    for name, m in (offering_masks or {}).items():
        masks[name] = np.asarray(m, dtype=bool)[:, None]
    if limits.latest_start_h is not None:
        masks["max_delay"] = (c.start_h <= limits.latest_start_h + TIME_EPS_H)[None, :]
    if limits.deadline_h is not None:  # start + runtime <= deadline, without an (O, K) float temporary
        masks["deadline"] = c.start_h[None, :] <= (limits.deadline_h + TIME_EPS_H - c.runtime_h)[:, None]
    if limits.max_usd_per_hour is not None:
        masks["max_usd_per_hour"] = (c.usd_per_hour <= limits.max_usd_per_hour)[:, None]
    if limits.max_total_usd is not None:
        masks["max_total_usd"] = (c.cost_usd <= limits.max_total_usd)[:, None]
    if limits.carbon_budget_kg is not None:
        masks["carbon_budget_kg"] = c.kg_co2e <= limits.carbon_budget_kg
    if limits.min_gpu_memory_gb is not None:
        masks["min_gpu_memory_gb"] = (c.gpu_memory_gb >= limits.min_gpu_memory_gb)[:, None]
    return masks


def _rejected(m: np.ndarray, total: int) -> int:
    """Candidates a broadcastable mask rejects, out of ``total``."""
    return int(total - np.count_nonzero(m) * (total // m.size))


def feasibility(
    c: Candidates, limits: Limits, offering_masks: dict[str, np.ndarray] | None = None
) -> tuple[np.ndarray, dict[str, int]]:
    """(feasible mask (O, K), {constraint: candidates it rejects on its own})."""
    feasible = np.ones(c.shape, dtype=bool)
    total = feasible.size
    eliminated = {}
    for name, m in constraint_masks(c, limits, offering_masks).items():
        feasible &= m
        eliminated[name] = _rejected(m, total)
    return feasible, eliminated


def relaxation_gains(c: Candidates, limits: Limits, offering_masks: dict[str, np.ndarray] | None = None) -> dict[str, int]:
    """{constraint: feasible candidates if only that constraint were dropped} (0 = dropping it alone does not help)."""
    masks = constraint_masks(c, limits, offering_masks)
    gains = {}
    for name in masks:
        others = np.ones(c.shape, dtype=bool)
        for other, m in masks.items():
            if other != name:
                others &= m
        gains[name] = int(np.count_nonzero(others))
    return gains
