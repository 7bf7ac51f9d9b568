"""Interruptible plans: a job that can pause runs in the greenest slots before its deadline.

``best_schedules(job, now=..., k=3, overhead_h=0.25)`` (``carbonsched.plan_interruptible``) reuses
the planner's candidates (``candidates.job_candidates``: offerings passing the job's constraints, their runtime, energy,
embodied share and price, and the regions' hourly forecasts) and, per offering, solves
``policies.interruptible.best_schedule`` on a slot grid:

* slots of ``slot_minutes`` from the window's first instant (``max(now, earliest_start)``) up to
  the deadline (without one: the latest start + the offering's runtime); the first segment must
  start by the latest start (``max_delay``);
* ``R = ceil(runtime / slot)`` progress slots, the last one paid for the part the work uses (the
  job ends and the instance goes there); each resume adds ``ceil(overhead_h / slot)`` slots at
  full power without progress and ``overhead_kwh`` (facility energy, e.g. checkpoint I/O) at the
  intensity of the slot it starts in;
* ``plan`` picks the slot (``auto_slot_minutes``): an hour, or the longest of 30, 20, 15, 10 and 5
  minutes that holds the restore overhead in whole slots, so a 10-minute restore costs 10 minutes
  (in hour slots it cost a whole hour, and pausing looked 4-9 % worse than it is on a 12-48 h job),
  unless the DP would pass ``MAX_DP_CELLS`` (then hours, and a warning says the overhead was
  rounded up);
* slot carbon = energy per slot x the slot's mean forecast intensity + embodied per slot; cost
  = price x occupied hours.

Offerings are tried in order of a lower bound (their R greenest slots, the part-used one the
dearest of them, no overhead) and the search
stops once the bound cannot beat the ``top``-th schedule found, so the result is exact.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import numpy as np

from carbonsched.errors import UserInputError
from carbonsched.models import Plan
from carbonsched.policies.interruptible import best_schedule
from carbonsched.spec.job import JobSpec
from carbonsched.units import hours_between, iso_utc
from carbonsched.planning.assemble import assemble_plan, intensity_warnings, price_warnings, shown_regions, with_saving
from carbonsched.planning.candidates import job_candidates
from carbonsched.planning.infeasible import infeasible_error
from carbonsched.planning.single import check_top

MAX_DP_CELLS = 20_000_000  # slots x segments x progress slots: about 320 MB of float64 tables


@dataclass(frozen=True)
class InterruptibleSchedule:
    provider: str
    region_id: str
    instance_type: str
    gpu: str
    gpu_count: int
    market: str
    segments: tuple[tuple[datetime, datetime, float], ...]  # (start, end, overhead hours at its start)
    kg_co2e: float
    energy_kwh: float
    cost_usd: float
    occupied_hours: float
    uninterrupted_kg_co2e: float  # the planner's best single run of this offering in the window
    offering_index: int = -1  # row of the planner's JobCandidates (internal; not in to_dict)

    @property
    def resumes(self) -> int:
        return len(self.segments) - 1

    def to_dict(self) -> dict:
        saving = (self.uninterrupted_kg_co2e - self.kg_co2e) / self.uninterrupted_kg_co2e * 100 if self.uninterrupted_kg_co2e else None
        return {"provider": self.provider, "region_id": self.region_id, "instance_type": self.instance_type,
                "gpu": self.gpu, "gpu_count": self.gpu_count, "market": self.market,
                "segments": [{"start": iso_utc(a), "end": iso_utc(b), "overhead_hours": o} for a, b, o in self.segments],
                "resumes": self.resumes, "kg_co2e": self.kg_co2e, "energy_kwh": self.energy_kwh,
                "cost_usd": self.cost_usd, "occupied_hours": self.occupied_hours,
                "uninterrupted_kg_co2e": self.uninterrupted_kg_co2e, "saving_vs_uninterrupted_pct": saving}


def slot_means(hourly: np.ndarray, first_h: float, slot_h: float, n: int) -> np.ndarray:
    """Mean of a piecewise-constant hourly series (hour 0 = its first value) over ``n`` slots of
    ``slot_h`` hours starting ``first_h`` hours into it (partial hours weighted by overlap)."""
    cum = np.concatenate([[0.0], np.cumsum(hourly)])
    edges = first_h + slot_h * np.arange(n + 1)
    if edges[-1] > len(hourly) + 1e-9:
        raise ValueError(f"the series covers {len(hourly)} h but the slots reach {edges[-1]:.2f} h")
    c = np.interp(edges, np.arange(len(cum)), cum)
    return np.diff(c) / slot_h


def best_schedules(job: JobSpec, *, now: datetime, k: int, overhead_h: float = 0.0, overhead_kwh: float = 0.0,
                       slot_minutes: int = 60, top: int = 5, settings=None, offerings_source=None,
                       forecast_source=None, jc=None) -> list[InterruptibleSchedule]:
    """The ``top`` lowest-carbon interruptible schedules (at most one per offering), best first.

    A job's dataset transfer (``[data]``) is a per-offering constant added to ``kg_co2e`` and
    ``cost_usd``; ``jc`` reuses candidates already computed with ``horizon_until=job.deadline``."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise UserInputError(f"k (segments) must be a whole number >= 1, got {k!r}")
    if not (overhead_h >= 0 and overhead_kwh >= 0 and math.isfinite(overhead_h) and math.isfinite(overhead_kwh)):
        raise UserInputError("overhead_h and overhead_kwh must be finite and >= 0")
    if isinstance(slot_minutes, bool) or not isinstance(slot_minutes, int) or not 1 <= slot_minutes <= 240:
        raise UserInputError(f"slot_minutes must be a whole number in 1..240, got {slot_minutes!r}")
    if jc is None:
        jc = job_candidates(job, now=now, settings=settings, offerings_source=offerings_source,
                            forecast_source=forecast_source, horizon_until=job.deadline)
    if not jc.feasible.any():
        raise infeasible_error(jc)
    slot_h = slot_minutes / 60.0
    w, est = jc.window, jc.est
    first_h = jc.offset_h + hours_between(now, w.earliest)  # window start, hours after t0
    o_slots = int(math.ceil(overhead_h / slot_h - 1e-9))

    # slots start at the window's first instant, and (when that is off the UTC slot grid, e.g. now =
    # 10:30) also on the grid, as the planner's starts do: the better schedule of the two is kept
    into = hours_between(w.earliest.replace(minute=0, second=0, microsecond=0), w.earliest) % slot_h
    shifts = (0.0,) if into < 1e-9 or slot_h - into < 1e-9 else (0.0, slot_h - into)
    rows = np.flatnonzero(jc.feasible.any(axis=1))
    plans = []
    for i, shift in ((i, s) for i in rows for s in shifts):
        off = jc.offerings[i]
        runtime = float(est.runtime_h[i])
        end = w.deadline if w.deadline is not None else w.latest_start + timedelta(hours=runtime)
        T = int(math.floor((hours_between(w.earliest, end) - shift) / slot_h + 1e-9))
        R = int(math.ceil(runtime / slot_h - 1e-9))
        first = int(math.floor((hours_between(w.earliest, w.latest_start) - shift) / slot_h + 1e-9))
        if R > T or first < 0:
            continue
        f = min(max(runtime / slot_h - (R - 1), 1e-9), 1.0)  # the part of the last progress slot the work uses
        if T * (k + 1) * (R + 1) > MAX_DP_CELLS:
            raise UserInputError(f"{T} slots x {k} segments x {R} slots of work is too large to plan exactly; "
                                 "use longer slots (slot_minutes) or fewer segments")
        intensity = slot_means(jc.forecasts[off.region_id].intensity_g_per_kwh, first_h + shift, slot_h, T)
        kwh_slot = float(est.energy_kwh[i]) / runtime * slot_h
        emb_slot = float(est.kg_embodied[i]) / runtime * slot_h
        best_single = float(np.min(np.where(jc.feasible[i], est.kg_co2e[i, 1:], np.inf)))
        low = np.sort(intensity)[:R]  # a lower bound: the R greenest slots, the part-used one the dearest of them
        plans.append((kwh_slot * (low[:-1].sum() + f * low[-1]) / 1000 + emb_slot * (R - 1 + f)
                      + _transfer(est, "kg_transfer", i), i, shift, first, T, R, f, intensity, kwh_slot, emb_slot,
                      best_single))
    plans.sort(key=lambda x: x[0])
    found: list[InterruptibleSchedule] = []
    for bound, i, shift, first, T, R, f, intensity, kwh_slot, emb_slot, best_single in plans:
        if len(found) >= top and bound >= found[-1].kg_co2e:
            break  # no later offering can beat the top-th schedule
        s = best_schedule(kwh_slot * intensity / 1000 + emb_slot, R, k, o_slots,
                          resume_kg=overhead_kwh * intensity / 1000, latest_first=first, last_fraction=f)
        if s is None:
            continue
        off = jc.offerings[i]
        used = len(s.slots) - (1.0 - f)  # slots held; the job ends, and the instance goes, f into the last
        occupied = used * slot_h
        kwh = kwh_slot * used + overhead_kwh * s.resumes
        cost = off.price_usd_per_hour * occupied + _transfer(est, "transfer_usd", i)
        kg = s.kg + _transfer(est, "kg_transfer", i)
        if (job.max_total_usd is not None and cost > job.max_total_usd) or \
                (job.carbon_budget_kg is not None and kg > job.carbon_budget_kg):
            continue
        last = len(s.segments) - 1
        origin = w.earliest + timedelta(hours=shift)
        segs = tuple((origin + timedelta(hours=a * slot_h),
                      origin + timedelta(hours=(b - (1.0 - f if n == last else 0.0)) * slot_h), ov * slot_h)
                     for n, (a, b, ov) in enumerate(s.segments))
        twin = next((x for x in found if x.offering_index == int(i)), None)  # the offering on the other grid
        if twin is not None:
            if twin.kg_co2e <= kg:
                continue
            found.remove(twin)
        found.append(InterruptibleSchedule(
            provider=off.provider, region_id=off.region_id, instance_type=off.instance_type, gpu=off.gpu,
            gpu_count=off.gpu_count, market=off.market, segments=segs, kg_co2e=kg, energy_kwh=kwh,
            cost_usd=cost, occupied_hours=occupied, uninterrupted_kg_co2e=best_single, offering_index=int(i)))
        found.sort(key=lambda x: x.kg_co2e)
        found = found[:top]
    return found


def _transfer(est, name: str, i: int) -> float:
    arr = getattr(est, name, None)
    return 0.0 if arr is None else float(arr[i])


SLOT_MINUTES = (60, 30, 20, 15, 10, 5)  # the slot lengths auto_slot_minutes tries, longest first


def auto_slot_minutes(overhead_h: float, window_h: float, runtime_h: float, k: int) -> tuple[int, str | None]:
    """(slot minutes, a warning or None): the longest of ``SLOT_MINUTES`` that holds the restore
    overhead in whole slots (rounded up to 5 minutes); where the DP of a ``runtime_h`` job over a
    ``window_h`` window would pass ``MAX_DP_CELLS`` with it, the next longer one that stays within,
    with a warning that the overhead was rounded up."""
    minutes = math.ceil(overhead_h * 60 - 1e-9)
    fit = next((m for m in SLOT_MINUTES if minutes % m == 0), SLOT_MINUTES[-1])
    for m in sorted((m for m in SLOT_MINUTES if m >= fit)):
        if m == 60 or window_h * 60 / m * (k + 1) * (runtime_h * 60 / m + 2) <= MAX_DP_CELLS:
            if minutes % m == 0:
                return m, None
            why = "" if m == fit else ": finer slots would make this job too large to plan exactly"
            return m, (f"interruptible: the {minutes}-minute restore overhead is planned in {m}-minute slots, "
                       f"{math.ceil(minutes / m) * m} minutes per resume{why}")
    return 60, None  # not reached: 60 always returns


def plan(job: JobSpec, *, now: datetime, policy=None, settings=None, offerings_source=None,
         forecast_source=None, top: int | None = 10, slot_minutes: int | None = None) -> Plan:
    """A ``Plan`` for a job with ``[interruptible]``: its ``top`` lowest-carbon schedules as ranked
    Placements (the ``"interruptible"`` entry of ``carbonsched.planning.PLANNERS``).

    Each placement's ``start``/``end`` span its segments, ``runtime_hours`` = occupied hours,
    ``interruptible`` = the InterruptibleSchedule; the split keeps the plan's identities:
    ``kg_co2e_embodied`` = the offering's embodied share per hour x occupied hours,
    ``kg_co2e_transfer`` = the dataset transfer, ``kg_co2e_operational`` = the rest, and
    ``mean_intensity_g_per_kwh = 1000 * kg_co2e_operational / energy_kwh``. Placements are ranked by
    kg_co2e (the interruptible objective); the baseline is the usual uninterrupted "default
    region, now".
    """
    spec = job.interruptible
    if spec is None:
        raise UserInputError("an interruptible plan needs a job with [interruptible] (max_segments = k)")
    check_top(top)
    jc = job_candidates(job, now=now, policy=policy, settings=settings, offerings_source=offerings_source,
                        forecast_source=forecast_source, horizon_until=job.deadline)
    slot_note = None
    if slot_minutes is None and jc.feasible.any():
        longest = float(jc.est.runtime_h[np.flatnonzero(jc.feasible.any(axis=1))].max())  # the largest DP
        end = jc.window.deadline or (jc.window.latest_start + timedelta(hours=longest))
        slot_minutes, slot_note = auto_slot_minutes(spec.overhead_hours, hours_between(jc.window.earliest, end),
                                                    longest, spec.max_segments)
    schedules = best_schedules(jc.job, now=now, k=spec.max_segments, overhead_h=spec.overhead_hours,
                               overhead_kwh=spec.overhead_kwh, slot_minutes=slot_minutes or 60,
                               top=top if top is not None else len(jc.offerings), jc=jc)
    if not schedules:
        raise infeasible_error(jc) if not jc.feasible.any() else UserInputError(
            "no interruptible schedule fits before the deadline within the budget; allow more segments, "
            "a later deadline, or raise constraints.max_total_usd / carbon_budget_kg")
    est, warnings = jc.est, list(jc.warnings) + ([slot_note] if slot_note else [])
    placements = []
    for rank_no, sch in enumerate(schedules, start=1):
        i = sch.offering_index
        off = jc.offerings[i]
        base = jc.placement(i, 0)
        kg_emb = float(est.kg_embodied[i]) / float(est.runtime_h[i]) * sch.occupied_hours
        kg_t = _transfer(est, "kg_transfer", i)
        kg_op = sch.kg_co2e - kg_emb - kg_t
        placements.append(replace(
            base, start=sch.segments[0][0], end=sch.segments[-1][1], runtime_hours=sch.occupied_hours,
            energy_kwh=sch.energy_kwh, mean_intensity_g_per_kwh=kg_op * 1000 / sch.energy_kwh if sch.energy_kwh else 0.0,
            kg_co2e_operational=kg_op, kg_co2e_embodied=kg_emb, kg_co2e=sch.kg_co2e, cost_usd=sch.cost_usd,
            rank=rank_no, score=sch.kg_co2e, kg_co2e_p90=None, interruptible=sch, zone=off.zone))
    baseline = jc.baseline()
    if baseline is not None:
        placements = [with_saving(p, baseline) for p in placements]
    if jc.policy.objective != "carbon":
        warnings.append(f"interruptible jobs are ranked by carbon; the {jc.policy.objective!r} objective is not used")
    warnings.extend(intensity_warnings(jc.forecasts, shown_regions(placements, baseline)))
    warnings.extend(price_warnings(jc.flagged_prices, placements))
    return assemble_plan(jc, placements, baseline, warnings)
