"""Why a batch left a job out, and when it could run: the diagnostics of place-what-fits.

For each job the assignment left out (``why_unplaced``):

* ``full_cells``: the (region, GPU type, UTC hour) cells its candidates needed where the placed
  jobs leave less than the job's GPUs free, most needed first (at most three);
* ``earliest_start_with_room``: scanning forward from the job's first candidate start, up to two
  weeks, the first hour from which one of its feasible offerings has its GPUs free for the whole
  run given the placed jobs (a resource the batch did not model holds no placed job: it has room
  where its capacity fits the job's GPUs, none where it is 0), and that region. It
  answers "what if the window were widened"; a start inside the window means the job lost to the
  placed ones only through top-k pruning or the objective.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np

from carbonsched.policies.assignment import BatchSolution, usage
from carbonsched.units import iso_utc

if TYPE_CHECKING:
    from carbonsched.planning.batch import BatchColumns
    from carbonsched.planning.candidates import JobCandidates


@dataclass(frozen=True)
class Unplaced:
    """A job the batch left out: the full capacity cells its candidates needed and where it could
    start with room if its window were widened (given the placed jobs; None if nowhere in the
    horizon searched)."""

    name: str
    priority: int
    full_cells: tuple[dict, ...]  # {"region_id", "gpu", "hour", "in_use", "capacity"}
    earliest_start_with_room: datetime | None
    earliest_region_id: str | None

    def to_dict(self) -> dict:
        return {"name": self.name, "priority": self.priority, "full_cells": [dict(c) for c in self.full_cells],
                "earliest_start_with_room": iso_utc(self.earliest_start_with_room) if self.earliest_start_with_room else None,
                "earliest_region_id": self.earliest_region_id}


def _cells(batch: BatchColumns, used: np.ndarray, j: int, t0: datetime, limit: int = 3) -> tuple[dict, ...]:
    """The full (region, GPU, hour) cells job ``j``'s candidates needed, most needed first."""
    p = batch.problem
    mine = np.flatnonzero(p.job == j)
    kc, kr = p.row_keys(mine)
    full = used.ravel()[kr] + p.demand[kc] > np.repeat(p.capacity[p.resource[mine]], p.n_hours[mine]) + 1e-9
    keys, counts = np.unique(kr[full], return_counts=True)
    out = []
    for key in keys[np.argsort(-counts, kind="stable")][:limit]:
        r, h = divmod(int(key), p.n_slots)
        region_id, gpu = batch.resources[r]
        out.append({"region_id": region_id, "gpu": gpu, "hour": iso_utc(t0 + timedelta(hours=h)),
                    "in_use": float(used[r, h]), "capacity": float(p.capacity[r])})
    return tuple(out)


def _room(batch: BatchColumns, index: dict[tuple[str, str], int], used: np.ndarray, jc: JobCandidates,
          first_hour: int, cap_of=None, search_hours: int = 24 * 14) -> tuple[float, str] | None:
    """(earliest hour from t0, region id) at which one of the job's feasible offerings finds room
    for its whole run, given ``used``; a resource the batch did not model (not in ``index``) holds
    nothing placed: room from the first hour if its capacity (``cap_of``) fits the job's GPUs."""
    p = batch.problem
    best = None
    for o in np.unique(np.nonzero(jc.feasible)[0]):
        off = jc.offerings[o]
        need = int(math.ceil(float(jc.cands.runtime_h[o]) - 1e-9)) + 1
        r = index.get((off.region_id, off.gpu))
        if r is None:
            if cap_of is not None and not off.gpu_count <= cap_of(off.region_id, off.gpu) + 1e-9:
                continue  # e.g. capacity 0 there: never room
            h = first_hour
        else:
            row = np.concatenate([used[r], np.zeros(search_hours + need)])
            ok = row + off.gpu_count <= p.capacity[r] + 1e-9
            run = np.convolve(ok.astype(int), np.ones(need, dtype=int), "valid") == need  # room for `need` hours
            hits = np.flatnonzero(run[first_hour:first_hour + search_hours])
            if not len(hits):
                continue
            h = first_hour + int(hits[0])
        if best is None or h < best[0]:
            best = (h, off.region_id)
    return best


def why_unplaced(batch: BatchColumns, sol: BatchSolution, jcs: list[JobCandidates], names: list[str],
                 cap_of=None) -> list[Unplaced]:
    """An ``Unplaced`` for every job ``sol`` leaves out (``cap_of``: the batch's capacity lookup)."""
    used = usage(batch.problem, sol.choice)
    index = {key: r for r, key in enumerate(batch.resources)}
    out = []
    for j in sol.unplaced:
        jc = jcs[j]
        first = int(math.floor(jc.offset_h + float(jc.cands.start_h[0]) + 1e-9))
        room = _room(batch, index, used, jc, first, cap_of)
        start = None if room is None else max(jc.t0 + timedelta(hours=room[0]), jc.window.starts[0])
        out.append(Unplaced(names[j], jc.job.priority, _cells(batch, used, j, jc.t0), start,
                            None if room is None else room[1]))
    return out
