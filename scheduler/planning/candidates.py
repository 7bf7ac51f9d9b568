"""One job's candidates: offerings x start instants, with forecasts, estimates and feasibility.

Steps (``job_candidates``): list offerings (providers.cloud) -> keep those the job may use
(categorical constraints, counted) -> candidate starts in the window -> the baseline offering
("default region, start now") -> intensity series per region (providers.grid) -> vectorised
estimates (``planning.estimate``) -> feasibility (``policies``). The planners rank what this returns.

Candidate starts: the window's first instant (``max(now, earliest_start)``), then every UTC
hour boundary up to the latest start (``earliest + max_delay``, else the deadline; with neither,
only the first instant).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from carbonsched.errors import DataError, InfeasibleError, JobSpecError, UnknownNameError
from carbonsched.models import Forecast, Gpu, Offering, Placement, Region
from carbonsched.policies import Candidates, Limits, Policy, feasibility
from carbonsched.refdata import resolve_region
from carbonsched.settings import Settings, resolve_settings
from carbonsched.spec.job import JobSpec, resolve_job
from carbonsched.units import hours_between, iso_utc, utc_instant
from carbonsched.planning.assemble import placement_at, with_saving
from carbonsched.planning.estimate import OfferingArrays, estimate, runtime_hours, spot_expected_runtime
from carbonsched.planning.infeasible import infeasible_message
from carbonsched.planning.inputs import PlanInputs, OfferingTable, accepted_gpu_types

MAX_WINDOW_HOURS = 24 * 90


MAX_RUNTIME_HOURS = 8760.0


@dataclass(frozen=True)
class Window:
    earliest: datetime
    latest_start: datetime
    deadline: datetime | None
    starts: tuple[datetime, ...]


def candidate_window(job: JobSpec, now: datetime) -> tuple[Window, list[str]]:
    """The candidate start instants for ``job`` at ``now`` (see module docstring).

    The latest start is fixed by the job (``earliest_start + max_delay``, or the deadline), so an
    ``earliest_start`` in the past narrows the window rather than shifting it.
    """
    warnings = []
    asked = job.earliest_start or now
    if job.deadline is not None and job.deadline <= now:
        raise JobSpecError(f"deadline {iso_utc(job.deadline)} is not after now ({iso_utc(now)}); set a later deadline")
    if hours_between(now, asked) > MAX_WINDOW_HOURS:
        raise JobSpecError(f"earliest_start {iso_utc(asked)} is more than {MAX_WINDOW_HOURS // 24} days ahead; "
                           "plan closer to the start (forecasts that far out are climatology anyway)")
    if job.max_delay_hours is not None:
        if job.max_delay_hours > MAX_WINDOW_HOURS:
            raise JobSpecError(f"max_delay {job.max_delay_hours:g} h is over the {MAX_WINDOW_HOURS} h (90 days) supported")
        latest = asked + timedelta(hours=job.max_delay_hours)
        if job.deadline is not None:
            latest = min(latest, job.deadline)
    elif job.deadline is not None:
        latest = job.deadline
    else:
        latest = max(asked, now)
        warnings.append("start times: now only; allow waiting for a greener hour with window.max_delay (--max-delay 24h) or a deadline")
    earliest = max(asked, now)
    if asked < now:
        if latest < now:
            raise JobSpecError(f"the start window closed at {iso_utc(latest)} (earliest_start {iso_utc(asked)} + max_delay); "
                               "move earliest_start or lengthen max_delay")
        warnings.append(f"earliest_start {iso_utc(asked)} is in the past; planning from now until {iso_utc(latest)}")
    if hours_between(earliest, latest) > MAX_WINDOW_HOURS:
        raise JobSpecError(f"the start window spans {hours_between(earliest, latest):.0f} h; at most {MAX_WINDOW_HOURS} h (90 days) is supported: shorten max_delay or the deadline")
    first_boundary = earliest.replace(minute=0, second=0, microsecond=0)
    if first_boundary < earliest:
        first_boundary += timedelta(hours=1)
    n_more = int(math.floor(hours_between(first_boundary, latest) + 1e-9)) + 1 if first_boundary <= latest else 0
    starts = [earliest] + [first_boundary + timedelta(hours=i) for i in range(n_more) if first_boundary + timedelta(hours=i) > earliest]
    return Window(earliest, latest, job.deadline, tuple(starts)), warnings


def _speeds(job: JobSpec, gpus: dict[str, Gpu]) -> dict[str, float]:
    """Throughput per GPU type in one unit: measured where the job gives it, else datasheet-scaled."""
    ref = gpus[job.gpu]
    measured = job.throughput or {}
    ref_speed = measured.get(ref.name, ref.training_tflops)
    return {name: measured.get(name, ref_speed * g.training_tflops / ref.training_tflops) for name, g in gpus.items()}


def _offering_arrays(t: OfferingTable, idx: np.ndarray, speeds: dict[str, float], region_rows: np.ndarray,
                     regions: dict[str, Region], job: JobSpec | None = None) -> OfferingArrays:
    """Per-offering arrays of the table rows ``idx``; with ``job``, also its spot preemption rates
    and dataset transfer."""
    offerings = [t.offerings[i] for i in idx]

    def arr(f, dtype=float):
        return np.array([f(o) for o in offerings], dtype=dtype)

    econ = {}
    if job is not None and job.spot:
        econ["preemption_per_h"] = arr(lambda o: job.spot_model.rate_for(o.region_id) if o.market == "spot" else 0.0)
    if job is not None and job.data is not None:
        d = job.data
        home = regions.get(d.home_region)
        moved = arr(lambda o: o.region_id != d.home_region)
        econ["transfer_usd"] = d.size_gb * arr(lambda o: d.usd_per_gb_to(o.region_id))
        econ["transfer_kwh"] = d.size_gb * d.transfer_kwh_per_gb * moved
        econ["transfer_g_per_kwh"] = arr(lambda o: (regions[o.region_id].yearly_intensity_g_per_kwh
                                                    + (home.yearly_intensity_g_per_kwh if home else
                                                       regions[o.region_id].yearly_intensity_g_per_kwh)) / 2)
    return OfferingArrays(**econ, gpu_count=t.gpu_count[idx], speed=t.by_gpu(speeds)[idx], tdp_w=t.tdp_w[idx],
                          vcpus=t.vcpus[idx], memory_gib=t.memory_gib[idx], pue=t.pue[idx],
                          embodied_kg_per_gpu=t.embodied_kg_per_gpu[idx], usd_per_hour=t.price_usd_per_hour[idx],
                          region_index=region_rows)


def _p90(f: Forecast) -> np.ndarray:
    """The forecast's upper decile (its mean where it has no spread)."""
    return f.intensity_g_per_kwh if f.p90_g_per_kwh is None else np.fmax(f.p90_g_per_kwh, f.intensity_g_per_kwh)


def _intensity_cum(series_list: list[np.ndarray]) -> np.ndarray:
    """(R, H+1) prefix sums of the hourly series (H = common length)."""
    series = np.stack(series_list)
    if not np.all(np.isfinite(series)):
        raise DataError("an intensity forecast has missing hours; this is a bug in the source that produced it")
    return np.concatenate([np.zeros((series.shape[0], 1)), np.cumsum(series, axis=1)], axis=1)


@dataclass(frozen=True, eq=False)
class JobCandidates:
    """One job's candidate arrays before ranking (what ``plan`` and the batch planner share).

    Rows of ``est`` are ``offerings`` then, when there is one, ``base_offering`` (row ``O``);
    column 0 of ``est`` is "start now" (the baseline's start), columns ``1..K`` are
    ``window.starts``. ``cands`` and ``feasible`` cover the ``O x K`` candidates only.
    """

    job: JobSpec
    policy: Policy
    now: datetime
    window: Window
    offerings: list[Offering]
    base_offering: Offering | None
    baseline_region: Region
    regions: dict[str, Region]
    gpus: dict[str, Gpu]
    est: object  # carbonsched.planning.estimate.Estimates
    cands: Candidates
    limits: Limits
    feasible: np.ndarray  # (O, K)
    numeric_elim: dict[str, int]
    eliminated: dict[str, int]
    n_total: int
    n_remaining: int
    forecasts: dict[str, Forecast]
    warnings: list[str]
    t0: datetime  # the hour containing `now`: hour 0 of every forecast
    offset_h: float  # hours from t0 to now
    offerings_source: object
    flagged_prices: dict = field(default_factory=dict)  # offering_key -> why its price is in doubt

    def baseline(self) -> Placement | None:
        """"Default region, start now" (None when the default region has no matching offering)."""
        if self.base_offering is None:
            return None
        b = placement_at(self.base_offering, self.est, len(self.offerings), 0, self.now,
                       self.forecasts[self.base_offering.region_id], self.baseline_region)
        return with_saving(b, b)

    def placement(self, o: int, k: int, **kw) -> Placement:
        """The Placement of candidate ``(o, k)`` (k indexes ``window.starts``)."""
        off = self.offerings[o]
        return placement_at(off, self.est, o, k + 1, self.window.starts[k], self.forecasts[off.region_id],
                          self.regions[off.region_id], **kw)


def job_candidates(job: JobSpec, *, now: datetime, policy: Policy | None = None, settings: Settings | None = None,
                   offerings_source=None, forecast_source=None, horizon_until: datetime | None = None,
                   inputs: PlanInputs | None = None) -> JobCandidates:
    """Everything ``plan`` computes before ranking: offerings passing the job's per-offering
    constraints, candidate starts, forecasts, vectorised estimates and the feasibility mask.

    Raises InfeasibleError when no offering passes the per-offering constraints; an empty
    ``feasible`` mask is left to the caller (``infeasible_error`` explains it).
    ``horizon_until`` extends the forecasts to at least that instant (interruptible plans).
    ``inputs`` shares the catalog, masks and forecasts between the jobs of one batch (it must
    have been made for the same sources and settings).
    """
    now = utc_instant(now)
    job = resolve_job(job)
    if policy is not None:
        job = job.with_policy(policy)
    settings = settings or resolve_settings()
    if inputs is None:
        inputs = PlanInputs.for_settings(settings, offerings_source, forecast_source)
    regions, gpus = inputs.regions, inputs.gpus
    window, warnings = candidate_window(job, now)
    K = len(window.starts)

    table, said = inputs.usable(job.spot)
    warnings.extend(said)
    speeds = _speeds(job, gpus)
    idx, eliminated = _allowed_offerings(table, inputs.categorical(job), job, gpus, K, speeds)
    offerings = [table.offerings[i] for i in idx]
    baseline_region = _baseline_region(job, settings, regions)
    base_offering, base_row = inputs.baseline(job, baseline_region)
    if base_offering is None:
        warnings.append(f"baseline: {baseline_region.region_id} offers no {job.gpus}x{job.gpu} (nor another accepted "
                        "GPU) on demand; savings are not computed; choose another default region with --baseline-region")

    # hour 0 of every forecast is the hour containing `now`; estimate column 0 is "start now"
    # (the baseline's start), columns 1.. are the candidate starts
    t0 = now.replace(minute=0, second=0, microsecond=0)
    offset = hours_between(t0, now)
    start_h = np.array([hours_between(now, s) for s in window.starts])
    rows = idx if base_offering is None else np.append(idx, base_row)
    region_ids, region_rows = np.unique(table.region_id[rows].astype(str), return_inverse=True)
    arrays = _offering_arrays(table, rows, speeds, region_rows.astype(np.int64), regions, job)
    horizon = _horizon_hours(job, arrays, speeds, offset + start_h[-1], t0, horizon_until)
    forecasts = inputs.forecasts([regions[r] for r in region_ids], t0, horizon)
    cum, cum_p90 = inputs.intensity_cum(tuple(region_ids.tolist()), t0, horizon, lambda: (
        _intensity_cum([forecasts[r].intensity_g_per_kwh for r in region_ids]),
        _intensity_cum([_p90(forecasts[r]) for r in region_ids])))
    est = estimate(arrays, hours_ref=job.hours, n_ref=job.gpus, ref_speed=speeds[job.gpu], power=job.power,
                   start_h=np.concatenate([[offset], start_h + offset]), intensity_cum=cum, intensity_cum_p90=cum_p90,
                   loss_per_preemption_h=job.spot_model.loss_per_preemption_hours, nodes=job.payload.num_nodes)
    cands = _candidates(job, est, len(idx), arrays, table.gpu_memory_gb[idx], start_h)
    limits = _limits(job, window, now)
    feasible, numeric_elim = feasibility(cands, limits)
    return JobCandidates(
        job=job, policy=job.policy, now=now, window=window, offerings=offerings, base_offering=base_offering,
        baseline_region=baseline_region, regions=regions, gpus=gpus, est=est, cands=cands, limits=limits,
        feasible=feasible, numeric_elim=numeric_elim, eliminated=eliminated, n_total=len(table.offerings) * K,
        n_remaining=len(offerings) * K, forecasts=forecasts, warnings=warnings, t0=t0, offset_h=offset,
        offerings_source=inputs.offerings_source, flagged_prices=inputs.flagged,
    )


def _baseline_region(job: JobSpec, settings: Settings, regions: dict[str, Region]) -> Region:
    try:
        return resolve_region(job.baseline_region or settings.default_region, regions)
    except UnknownNameError as exc:
        raise UnknownNameError(f"baseline region: {exc} (it comes from --baseline-region, the job's [baseline], "
                               "CARBONSCHED_DEFAULT_REGION or default_region in the config file)") from None


def _horizon_hours(job: JobSpec, arrays: OfferingArrays, speeds: dict[str, float], last_start_h: float,
                   t0: datetime, horizon_until: datetime | None) -> int:
    """Forecast hours from ``t0`` that cover the latest start plus the slowest candidate's run
    (spot restarts included), and at least ``horizon_until``."""
    runtimes = runtime_hours(job.hours, job.gpus, speeds[job.gpu], arrays.gpu_count, arrays.speed,
                             job.power.gpu_scaling_efficiency)
    if arrays.preemption_per_h is not None:
        runtimes = spot_expected_runtime(runtimes, arrays.preemption_per_h, job.spot_model.loss_per_preemption_hours)
    horizon = int(math.ceil(last_start_h + runtimes.max())) + 1
    if horizon_until is not None:
        horizon = max(horizon, int(math.ceil(hours_between(t0, horizon_until))) + 1)
    return horizon


def _candidates(job: JobSpec, est, O: int, arrays: OfferingArrays, gpu_memory_gb: np.ndarray,
                start_h: np.ndarray) -> Candidates:
    """The policy's view of the ``O x K`` candidates (the baseline row and column dropped)."""
    by_p90 = job.policy.risk == "p90" and est.kg_co2e_p90 is not None
    carbon = est.kg_co2e_p90 if by_p90 else est.kg_co2e
    p90 = est.kg_co2e_p90[:O, 1:] if est.kg_co2e_p90 is not None else None
    return Candidates(kg_co2e=carbon[:O, 1:], cost_usd=est.cost_usd[:O], start_h=start_h,
                      runtime_h=est.runtime_h[:O], usd_per_hour=arrays.usd_per_hour[:O], gpu_memory_gb=gpu_memory_gb,
                      kg_co2e_p90=p90, kg_co2e_mean=est.kg_co2e[:O, 1:] if by_p90 else None)


def _limits(job: JobSpec, window: Window, now: datetime) -> Limits:
    return Limits(
        latest_start_h=hours_between(now, window.latest_start),
        deadline_h=hours_between(now, window.deadline) if window.deadline else None,
        max_usd_per_hour=job.max_usd_per_hour, max_total_usd=job.max_total_usd,
        carbon_budget_kg=job.carbon_budget_kg, min_gpu_memory_gb=job.min_gpu_memory_gb,
    )


def _allowed_offerings(t: OfferingTable, categorical: dict[str, np.ndarray], job: JobSpec, gpus: dict[str, Gpu],
                       K: int, speeds: dict[str, float]) -> tuple[np.ndarray, dict[str, int]]:
    """The table rows passing the per-offering constraints, and what each constraint rejected
    (in candidates, i.e. offerings x K starts). InfeasibleError when none is left.

    Besides the job's constraints, offerings whose estimated runtime exceeds MAX_RUNTIME_HOURS
    are dropped (``max_runtime``): a GPU hundreds of times slower than the reference is no
    placement, and its run would outgrow any forecast."""
    masks = dict(categorical)
    runtime = runtime_hours(job.hours, job.gpus, speeds[job.gpu], t.gpu_count, t.by_gpu(speeds),
                            job.power.gpu_scaling_efficiency)
    masks["max_runtime"] = runtime <= MAX_RUNTIME_HOURS
    eliminated = {name: int(np.count_nonzero(~m)) * K for name, m in masks.items()}
    keep = np.logical_and.reduce(list(masks.values()))
    if keep.any():
        return np.flatnonzero(keep), eliminated

    def allowed_without(name: str) -> np.ndarray:
        others = [m for n, m in masks.items() if n != name]
        return np.logical_and.reduce(others) if others else np.ones(len(t.offerings), dtype=bool)

    gains = {name: int(np.count_nonzero(allowed_without(name))) * K for name in masks}
    types = accepted_gpu_types(job, gpus)
    counts = sorted({o.gpu_count for o in t.offerings if o.gpu in types})
    facts = {"gpu_count": "offered counts: " + ", ".join(map(str, counts))}
    raise InfeasibleError(infeasible_message(eliminated, len(t.offerings) * K, facts, gains), eliminated)
