"""Interruptible jobs: the lowest-carbon slots before the deadline, in at most k segments.

Time is cut into ``T`` equal slots (an hour, or finer) between the window's start and the
deadline. A job needs ``R`` slots of progress. It runs in at most ``k`` segments (maximal runs of
consecutive slots). Every segment after the first is a resume: its first ``o`` slots restore the
checkpoint (the job draws power, makes no progress) and it costs ``resume_kg[t]`` extra when it
starts in slot t (e.g. checkpoint write/read energy x the intensity then). Running slot t costs
``slot_kg[t]`` (energy per slot x intensity in slot t, plus embodied per slot). The first segment
may start no later than ``latest_first`` (the job's max delay). Work is rarely a whole number of
slots: the last progress slot is used for a fraction ``f`` in (0, 1] of it (the job ends there and
the instance is released), so it costs ``f * slot_kg[t]``; charging it whole overstated a 1.26 h
run planned in hour slots by 58 %.

    minimise   sum_{occupied t} slot_kg[t] (the last progress slot x f) + sum_{resumes at t} resume_kg[t]
    subject to progress slots = R, segments <= k, all slots < T.

Algorithm (exact): dynamic programming over (slot t, segments used s, progress d) with two
layers, ``run[t, s, d]`` (slot t-1 was a progress slot) and ``idle[t, s, d]`` (it was not):

    idle[t+1, s, d]       <- min(idle[t, s, d], run[t, s, d])                    (slot t idle)
    run[t+1, s, d+1]      <- run[t, s, d] + slot_kg[t]                           (keep running)
    run[t+1, 1, 1]        <- idle[t, 0, 0] + slot_kg[t]        if t <= latest_first  (first start)
    run[t+o+1, s+1, d+1]  <- idle[t, s, d] + resume_kg[t] + sum slot_kg[t..t+o], s >= 1  (resume)

with ``f * slot_kg`` for the progress slot of every step into ``d + 1 = R``
from ``idle[0, 0, 0] = 0``; the answer is ``min_{t, s} run[t, s, R]`` (after the last progress slot
nothing more is paid). A pause needs at least one idle slot, so segments never touch. Work:
O(T k R) with the (s, d) plane vectorised per slot; the schedule is recovered by walking the
recurrences back. Ties go to fewer segments, then the earlier finish.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Schedule:
    kg: float
    segments: tuple[tuple[int, int, int], ...]  # (first slot, end slot exclusive, overhead slots at its start)

    @property
    def slots(self) -> tuple[int, ...]:
        return tuple(t for a, b, _ in self.segments for t in range(a, b))

    @property
    def resumes(self) -> int:
        return max(len(self.segments) - 1, 0)


def schedule_cost(slot_kg, resume_kg, segments, last_fraction: float = 1.0) -> float:
    """Cost of given segments (for checks and brute force); the last slot counts ``last_fraction``."""
    slot_kg, resume_kg = np.asarray(slot_kg, float), np.asarray(resume_kg, float)
    total = 0.0
    for i, (a, b, _) in enumerate(segments):
        total += float(slot_kg[a:b].sum()) + (float(resume_kg[a]) if i else 0.0)
    return total - (1.0 - last_fraction) * float(slot_kg[segments[-1][1] - 1]) if segments else total


def best_schedule(slot_kg, R: int, k: int, overhead_slots: int = 0, resume_kg=None,
                  latest_first: int | None = None, last_fraction: float = 1.0) -> Schedule | None:
    """The cheapest schedule (see module docstring), or None when R progress slots cannot fit;
    ``last_fraction``: the part of the last progress slot the work uses."""
    c = np.asarray(slot_kg, dtype=float)
    T, o = len(c), int(overhead_slots)
    if R < 1 or k < 1 or o < 0:
        raise ValueError("need R >= 1, k >= 1 and overhead_slots >= 0")
    if not 0.0 < last_fraction <= 1.0:
        raise ValueError(f"last_fraction must be in (0, 1], got {last_fraction!r}")
    rk = np.zeros(T) if resume_kg is None else np.asarray(resume_kg, dtype=float)
    latest_first = T - 1 if latest_first is None else min(int(latest_first), T - 1)
    if R > T or latest_first < 0:
        return None
    cl = last_fraction * c  # the last progress slot
    cs = np.concatenate([[0.0], np.cumsum(c)])
    resume_block = np.full(T, np.inf)  # resume at t: overhead slots t..t+o-1, first progress slot t+o
    resume_last = np.full(T, np.inf)  # ... when that progress slot is the last one
    ok = np.flatnonzero(np.arange(T) + o < T)
    resume_block[ok] = rk[ok] + cs[ok + o + 1] - cs[ok]
    resume_last[ok] = rk[ok] + (cs[ok + o] - cs[ok]) + cl[ok + o]
    run = np.full((T + 1, k + 1, R + 1), np.inf)
    idle = np.full((T + 1, k + 1, R + 1), np.inf)
    idle[0, 0, 0] = 0.0
    for t in range(T):
        np.minimum(idle[t + 1], np.minimum(idle[t], run[t]), out=idle[t + 1])
        np.minimum(run[t + 1, :, 1:R], run[t, :, :R - 1] + c[t], out=run[t + 1, :, 1:R])
        np.minimum(run[t + 1, :, R], run[t, :, R - 1] + cl[t], out=run[t + 1, :, R])
        if t <= latest_first:
            run[t + 1, 1, 1] = min(run[t + 1, 1, 1], idle[t, 0, 0] + (cl[t] if R == 1 else c[t]))
        if k >= 2 and t + o < T:
            dst = run[t + o + 1, 2:, 1:R]
            np.minimum(dst, idle[t, 1:k, :R - 1] + resume_block[t], out=dst)
            dst = run[t + o + 1, 2:, R]
            np.minimum(dst, idle[t, 1:k, R - 1] + resume_last[t], out=dst)
    finals = run[:, :, R]  # (T+1, k+1)
    best = finals.min()
    if not np.isfinite(best):
        return None
    tol = 1e-12 * max(1.0, abs(best))
    s_idx, t_idx = np.nonzero((finals <= best + tol).T)  # ordered by s, then t
    s, t = int(s_idx[0]), int(t_idx[0])
    return Schedule(kg=float(finals[t, s]), segments=_walk_back(run, idle, (c, cl), (resume_block, resume_last), o,
                                                               t, s, R, latest_first))


def _walk_back(run, idle, costs, resumes, o, t, s, d, latest_first):
    """Recover the segments ending in state run[t, s, d]: at each step find the recurrence that
    produced the value (the same float expressions as the forward pass, so == is exact); ``costs``
    and ``resumes`` are (any progress slot, the last one)."""
    segments, end, running, R = [], t, True, d
    while t > 0:
        if running:
            v, a = run[t, s, d], t - o - 1
            c, resume_block = (costs[1], resumes[1]) if d == R else (costs[0], resumes[0])
            if run[t - 1, s, d - 1] + c[t - 1] == v:  # kept running
                t, d = t - 1, d - 1
            elif s >= 2 and a >= 0 and idle[a, s - 1, d - 1] + resume_block[a] == v:  # resumed at a
                segments.append((a, end, o))
                t, s, d, running = a, s - 1, d - 1, False
            elif s == 1 and d == 1 and t - 1 <= latest_first and idle[t - 1, 0, 0] + c[t - 1] == v:
                segments.append((t - 1, end, 0))
                return tuple(reversed(segments))
            else:
                raise AssertionError("schedule walk-back failed")
        elif idle[t - 1, s, d] == idle[t, s, d]:
            t -= 1
        else:  # run[t-1, s, d]: a segment ended at slot t-1 (exclusive)
            t, end, running = t - 1, t - 1, True
    raise AssertionError("schedule walk-back reached slot 0 without a first segment")
