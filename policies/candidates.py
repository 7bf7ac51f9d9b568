"""The array bundle every policy works on.

Index ``o`` runs over offerings (instance type x region x market), ``k`` over candidate start
hours. A candidate is a pair ``(o, k)``. Arrays that do not depend on the start are stored per
offering and broadcast where needed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Candidates:
    kg_co2e: np.ndarray  # (O, K) total = operational + embodied
    cost_usd: np.ndarray  # (O,)   price x runtime
    start_h: np.ndarray  # (K,)   hours after "now"
    runtime_h: np.ndarray  # (O,)
    usd_per_hour: np.ndarray  # (O,)
    gpu_memory_gb: np.ndarray  # (O,)
    kg_co2e_p90: np.ndarray | None = None  # (O, K) with the forecast's upper decile: robust deferral
    kg_co2e_mean: np.ndarray | None = None  # (O, K) the expected kg when ``kg_co2e`` is the p90 (risk "p90")

    @property
    def expected_kg(self) -> np.ndarray:
        """(O, K) the expected (mean-forecast) kgCO2e, whatever the risk setting ranks by."""
        return self.kg_co2e if self.kg_co2e_mean is None else self.kg_co2e_mean

    @property
    def shape(self) -> tuple[int, int]:
        return self.kg_co2e.shape

    @property
    def end_h(self) -> np.ndarray:
        """(O, K) finish time in hours after now: ``start_h[k] + runtime_h[o]``."""
        return self.start_h[None, :] + self.runtime_h[:, None]

    def term(self, name: str) -> np.ndarray:
        """The (O, K) array of an objective term: carbon (kg), cost (USD) or time (end, h)."""
        if name == "carbon":
            return self.kg_co2e
        if name == "cost":
            return np.broadcast_to(self.cost_usd[:, None], self.shape)
        if name == "time":
            return self.end_h
        raise KeyError(name)
