"""The planner: job + now -> ranked placements with estimates and a baseline.

Steps: list offerings (providers.cloud) -> keep those the job may use (categorical
constraints, counted) -> candidate starts in the window -> intensity series per region
(providers.grid) -> vectorised estimates (carbonsched.estimate) -> feasibility and ranking
(carbonsched.policies) -> Plan, with "default region, start now" as the baseline.

Candidate starts: the window's first instant (``max(now, earliest_start)``), then every UTC
hour boundary up to the latest start (``earliest + max_delay``, else the deadline; with neither,
only the first instant).
"""
from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import numpy as np

from carbonsched.policies import Candidates, Limits, Policy, feasibility, rank, relaxation_gains
from .errors import DataError, InfeasibleError, JobSpecError, UnknownNameError, UserInputError
from .estimate import OfferingArrays, estimate, runtime_hours, spot_expected_runtime
from .jobspec import JobSpec, resolve_job
from .models import Forecast, Gpu, Offering, Placement, Region
from .result import Plan
from .refdata import read_gpus, read_regions, resolve_region
from .settings import Settings, resolve_settings
from .units import hours_between, iso_utc

MAX_WINDOW_HOURS = 24 * 90
MAX_RUNTIME_HOURS = 8760.0

CONSTRAINT_HINTS = {
    "gpu_type": "accept more GPU types (constraints.gpu_types / --accept-gpu)",
    "gpu_count": "allow other GPU counts per instance (constraints.gpu_counts)",
    "provider": "allow more providers (constraints.providers)",
    "region": "widen constraints.regions",
    "exclude_regions": "exclude fewer regions (constraints.exclude_regions)",
    "min_gpu_memory_gb": "lower constraints.min_gpu_memory_gb",
    "max_delay": "allow a longer delay (window.max_delay)",
    "deadline": "move window.deadline later",
    "max_usd_per_hour": "raise constraints.max_usd_per_hour",
    "max_total_usd": "raise constraints.max_total_usd",
    "carbon_budget_kg": "raise constraints.carbon_budget_kg",
    "quota": "request a GPU quota increase (AWS Service Quotas / GCP IAM & Admin > Quotas) or allow other regions or GPU types",
    "max_runtime": "accept faster GPUs or more GPUs per instance (runs over a year are not planned)",
}


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


# GPUs whose instances have ARM (Graviton) hosts: x86 software does not run there unchanged
ARM_HOST_GPUS = frozenset({"T4G"})


def accepted_gpu_types(job: JobSpec, gpus: dict[str, Gpu]) -> set[str]:
    """The job's GPU types: as listed, else every GPU with at least the reference GPU's memory
    (and, unless the reference is one, none on ARM hosts)."""
    if job.gpu_types:
        return set(job.gpu_types)
    ref = gpus[job.gpu]
    return {name for name, g in gpus.items() if g.memory_gb >= ref.memory_gb
            and (name not in ARM_HOST_GPUS or job.gpu in ARM_HOST_GPUS)}


def _categorical_masks(offerings: list[Offering], job: JobSpec, gpus: dict[str, Gpu]) -> dict[str, np.ndarray]:
    types = accepted_gpu_types(job, gpus)
    counts = set(job.gpu_counts or (job.gpus,))
    ids = [o.region_id for o in offerings]
    masks = {
        "gpu_type": np.array([o.gpu in types for o in offerings]),
        "gpu_count": np.array([o.gpu_count in counts for o in offerings]),
    }
    if job.providers:
        masks["provider"] = np.array([o.provider in job.providers for o in offerings])
    if job.regions:
        masks["region"] = np.array([any(fnmatch.fnmatchcase(i, p) for p in job.regions) for i in ids])
    if job.exclude_regions:
        masks["exclude_regions"] = np.array([not any(fnmatch.fnmatchcase(i, p) for p in job.exclude_regions) for i in ids])
    if any(o.max_instances is not None for o in offerings):  # quotas known (refreshed catalog): one instance needed
        masks["quota"] = np.array([o.max_instances is None or o.max_instances >= 1 for o in offerings])
    return masks


def _speeds(job: JobSpec, gpus: dict[str, Gpu]) -> dict[str, float]:
    """Throughput per GPU type in one unit: measured where the job gives it, else datasheet-scaled."""
    ref = gpus[job.gpu]
    measured = job.throughput or {}
    ref_speed = measured.get(ref.name, ref.training_tflops)
    return {name: measured.get(name, ref_speed * g.training_tflops / ref.training_tflops) for name, g in gpus.items()}


def _offering_arrays(offerings: list[Offering], regions: dict[str, Region], gpus: dict[str, Gpu],
                     speeds: dict[str, float], region_rows: dict[str, int], job: JobSpec | None = None) -> OfferingArrays:
    """Per-offering arrays; with ``job``, also its spot preemption rates and dataset transfer."""
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
    return OfferingArrays(**econ,
        gpu_count=arr(lambda o: o.gpu_count),
        speed=arr(lambda o: speeds[o.gpu]),
        tdp_w=arr(lambda o: gpus[o.gpu].tdp_w),
        vcpus=arr(lambda o: o.vcpus),
        memory_gib=arr(lambda o: o.memory_gib),
        pue=arr(lambda o: regions[o.region_id].pue),
        embodied_kg_per_gpu=arr(lambda o: gpus[o.gpu].embodied_kg_co2e),
        usd_per_hour=arr(lambda o: o.price_usd_per_hour),
        region_index=arr(lambda o: region_rows[o.region_id], dtype=np.int64),
    )


def _forecasts(source, regions: list[Region], start: datetime, hours: int) -> dict[str, Forecast]:
    """One forecast per region; regions are fetched concurrently when a live source is involved
    (network-bound), sequentially otherwise (embedded data: threads would only add overhead)."""
    if getattr(source, "live", None) is None or len(regions) < 2:
        return {r.region_id: source.forecast(r, start, hours) for r in regions}
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(8, len(regions))) as pool:
        results = list(pool.map(lambda r: source.forecast(r, start, hours), regions))
    return {r.region_id: f for r, f in zip(regions, results)}


def _p90(f: Forecast) -> np.ndarray:
    """The forecast's upper decile (its mean where it has no spread)."""
    return f.intensity_g_per_kwh if f.p90_g_per_kwh is None else np.fmax(f.p90_g_per_kwh, f.intensity_g_per_kwh)


def _intensity_cum(series_list: list[np.ndarray]) -> np.ndarray:
    """(R, H+1) prefix sums of the hourly series (H = common length)."""
    series = np.stack(series_list)
    if not np.all(np.isfinite(series)):
        raise DataError("an intensity forecast has missing hours; this is a bug in the source that produced it")
    return np.concatenate([np.zeros((series.shape[0], 1)), np.cumsum(series, axis=1)], axis=1)


def _filtered_prefix(eliminated: dict[str, int], total: int) -> str:
    parts = [f"{name} rejects {count:,}" for name, count in sorted(eliminated.items(), key=lambda kv: -kv[1]) if count]
    return f"of {total:,} candidates, " + "; ".join(parts) + "; of the rest, " if parts else ""


def _infeasible_message(eliminated: dict[str, int], total: int, facts: dict[str, str], gains: dict[str, int],
                        prefix: str = "") -> str:
    """One line: what each constraint rejects (with the relevant fact) and which single change helps."""
    parts = []
    for name, count in sorted(eliminated.items(), key=lambda kv: -kv[1]):
        if count:
            fact = f" ({facts[name]})" if facts.get(name) else ""
            parts.append(f"{name} rejects {count:,}{fact}")
    helpful = {k: v for k, v in gains.items() if v > 0}
    if helpful:
        best = max(helpful, key=helpful.get)
        hint = f"; to fix: {CONSTRAINT_HINTS.get(best, 'relax ' + best)} (alone that allows {helpful[best]:,} candidates)"
    else:
        rejecting = [k for k in gains if eliminated.get(k)]
        hint = "; no single change suffices: " + "; ".join(CONSTRAINT_HINTS.get(k, "relax " + k) for k in rejecting)
    return (f"no placement satisfies the constraints: {prefix}{total:,} candidates (offering x start): "
            + "; ".join(parts) + hint)


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
    est: object  # carbonsched.estimate.Estimates
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

    def baseline(self) -> Placement | None:
        """"Default region, start now" (None when the default region has no matching offering)."""
        if self.base_offering is None:
            return None
        b = _placement(self.base_offering, self.est, len(self.offerings), 0, self.now,
                       self.forecasts[self.base_offering.region_id], self.baseline_region)
        return _with_saving(b, b)

    def placement(self, o: int, k: int, **kw) -> Placement:
        """The Placement of candidate ``(o, k)`` (k indexes ``window.starts``)."""
        off = self.offerings[o]
        return _placement(off, self.est, o, k + 1, self.window.starts[k], self.forecasts[off.region_id],
                          self.regions[off.region_id], **kw)


def job_candidates(job: JobSpec, *, now: datetime, policy: Policy | None = None, settings: Settings | None = None,
                   offerings_source=None, forecast_source=None, horizon_until: datetime | None = None) -> JobCandidates:
    """Everything ``plan`` computes before ranking: offerings passing the job's per-offering
    constraints, candidate starts, forecasts, vectorised estimates and the feasibility mask.

    Raises InfeasibleError when no offering passes the per-offering constraints; an empty
    ``feasible`` mask is left to the caller (``infeasible_error`` explains it).
    ``horizon_until`` extends the forecasts to at least that instant (interruptible plans).
    """
    from carbonsched.providers.cloud import choose_offering_source
    from carbonsched.providers.cloud.cache import quota_warnings
    from carbonsched.providers.grid import build_forecast_source

    if now.tzinfo is None:
        raise JobSpecError("now must be timezone-aware (UTC); e.g. datetime.now(timezone.utc)")
    job = resolve_job(job)
    if policy is not None:
        job = job.with_policy(policy)
    policy = job.policy
    settings = settings or resolve_settings()
    offerings_source = offerings_source or choose_offering_source(settings)
    forecast_source = forecast_source or build_forecast_source(settings)
    regions, gpus = read_regions(), read_gpus()
    window, warnings = candidate_window(job, now)
    K = len(window.starts)

    all_offerings = offerings_source.list_offerings()
    warnings.extend(getattr(offerings_source, "warnings", ()))  # e.g. which catalog (cache or snapshot), its age
    usable = [o for o in all_offerings if o.region_id in regions and o.gpu in gpus and (job.spot or o.market != "spot")]
    skipped = sum(1 for o in all_offerings if o.region_id not in regions or o.gpu not in gpus)
    if skipped:
        warnings.append(f"{skipped} offerings skipped: their region or GPU is not in the embedded reference data")
    n_total = len(usable) * K
    warnings.extend(quota_warnings(usable))
    speeds = _speeds(job, gpus)
    offerings, eliminated = _allowed_offerings(usable, job, gpus, K, speeds)
    n_remaining = len(offerings) * K

    try:
        baseline_region = resolve_region(job.baseline_region or settings.default_region, regions)
    except UnknownNameError as exc:
        raise UnknownNameError(f"baseline region: {exc} (it comes from --baseline-region, the job's [baseline], "
                               "CARBONSCHED_DEFAULT_REGION or default_region in the config file)") from None
    base_offering = _baseline_offering(job, usable, baseline_region, gpus)
    if base_offering is None:
        warnings.append(f"baseline: {baseline_region.region_id} offers no {job.gpus}x{job.gpu} (nor another accepted "
                        "GPU) on demand; savings are not computed; choose another default region with --baseline-region")

    # one hourly intensity series per region, from the hour containing `now`, long enough for
    # the latest start plus the slowest candidate (and the baseline, which starts now)
    t0 = now.replace(minute=0, second=0, microsecond=0)
    offset = hours_between(t0, now)
    start_h = np.array([hours_between(now, s) for s in window.starts])
    everything = offerings + ([base_offering] if base_offering else [])
    region_ids = sorted({o.region_id for o in everything})
    region_rows = {r: i for i, r in enumerate(region_ids)}
    arrays = _offering_arrays(everything, regions, gpus, speeds, region_rows, job)
    runtimes = runtime_hours(job.hours, job.gpus, speeds[job.gpu], arrays.gpu_count, arrays.speed,
                             job.power.gpu_scaling_efficiency)
    if arrays.preemption_per_h is not None:
        runtimes = spot_expected_runtime(runtimes, arrays.preemption_per_h, job.spot_model.loss_per_preemption_hours)
    horizon = int(math.ceil(offset + start_h[-1] + runtimes.max())) + 1
    if horizon_until is not None:
        horizon = max(horizon, int(math.ceil(hours_between(t0, horizon_until))) + 1)
    forecasts = _forecasts(forecast_source, [regions[r] for r in region_ids], t0, horizon)
    cum = _intensity_cum([forecasts[r].intensity_g_per_kwh for r in region_ids])
    cum_p90 = _intensity_cum([_p90(forecasts[r]) for r in region_ids])

    est = estimate(arrays, hours_ref=job.hours, n_ref=job.gpus, ref_speed=speeds[job.gpu], power=job.power,
                   start_h=np.concatenate([[offset], start_h + offset]), intensity_cum=cum, intensity_cum_p90=cum_p90,
                   loss_per_preemption_h=job.spot_model.loss_per_preemption_hours)
    # column 0 is "start now" (the baseline's start); columns 1.. are the candidate starts
    O = len(offerings)
    carbon = est.kg_co2e_p90 if policy.risk == "p90" else est.kg_co2e
    cands = Candidates(kg_co2e=carbon[:O, 1:], cost_usd=est.cost_usd[:O], start_h=start_h,
                       runtime_h=est.runtime_h[:O], usd_per_hour=arrays.usd_per_hour[:O],
                       gpu_memory_gb=np.array([gpus[o.gpu].memory_gb for o in offerings]))
    limits = Limits(
        latest_start_h=hours_between(now, window.latest_start),
        deadline_h=hours_between(now, window.deadline) if window.deadline else None,
        max_usd_per_hour=job.max_usd_per_hour, max_total_usd=job.max_total_usd,
        carbon_budget_kg=job.carbon_budget_kg, min_gpu_memory_gb=job.min_gpu_memory_gb,
    )
    feasible, numeric_elim = feasibility(cands, limits)
    return JobCandidates(
        job=job, policy=policy, now=now, window=window, offerings=offerings, base_offering=base_offering,
        baseline_region=baseline_region, regions=regions, gpus=gpus, est=est, cands=cands, limits=limits,
        feasible=feasible, numeric_elim=numeric_elim, eliminated=eliminated, n_total=n_total,
        n_remaining=n_remaining, forecasts=forecasts, warnings=warnings, t0=t0, offset_h=offset,
        offerings_source=offerings_source,
    )


def infeasible_error(jc: JobCandidates) -> InfeasibleError:
    """The InfeasibleError explaining an empty ``jc.feasible`` (what rejects what, which change helps)."""
    cands, window = jc.cands, jc.window
    facts = {
        "deadline": f"fastest run takes {cands.runtime_h.min():.1f} h; the window leaves "
                    f"{hours_between(window.earliest, window.deadline):.1f} h" if window.deadline else "",
        "max_usd_per_hour": f"cheapest is ${cands.usd_per_hour.min():.2f}/h",
        "max_total_usd": f"cheapest run costs ${cands.cost_usd.min():.2f}",
        "carbon_budget_kg": f"lowest achievable is {cands.kg_co2e.min():.1f} kg",
        "min_gpu_memory_gb": f"largest GPU memory offered is {cands.gpu_memory_gb.max():.0f} GB",
    }
    return InfeasibleError(_infeasible_message(jc.numeric_elim, jc.n_remaining, facts, relaxation_gains(cands, jc.limits),
                                               prefix=_filtered_prefix(jc.eliminated, jc.n_total)),
                           {**jc.eliminated, **jc.numeric_elim})


def plan(job: JobSpec, *, now: datetime, policy: Policy | None = None, settings: Settings | None = None,
         offerings_source=None, forecast_source=None, top: int | None = 10) -> Plan:
    """Rank placements for ``job`` as of ``now`` (aware datetime; plans are reproducible given it).

    ``policy`` overrides the job's own; ``top`` limits the placements returned (None = all
    offerings' best starts, or the whole Pareto front). ``offerings_source`` and
    ``forecast_source`` default to the embedded data (see ``providers``).

    A job with ``[interruptible]`` is planned by ``carbonsched.interruptible.interruptible_plan``
    (lowest-carbon segmented schedules; each placement carries its ``interruptible`` schedule).
    """
    if job.interruptible is not None:
        from .interruptible import interruptible_plan

        return interruptible_plan(job, now=now, policy=policy, settings=settings, offerings_source=offerings_source,
                                  forecast_source=forecast_source, top=top)
    if now.tzinfo is None:
        raise JobSpecError("now must be timezone-aware (UTC); e.g. datetime.now(timezone.utc)")
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
        raise UserInputError(f"top must be a whole number >= 1 (or None for all), got {top!r}")
    jc = job_candidates(job, now=now, policy=policy, settings=settings, offerings_source=offerings_source,
                        forecast_source=forecast_source)
    if not jc.feasible.any():
        raise infeasible_error(jc)
    job, policy, window, est, cands, feasible = jc.job, jc.policy, jc.window, jc.est, jc.cands, jc.feasible
    offerings, base_offering, baseline_region, regions = jc.offerings, jc.base_offering, jc.baseline_region, jc.regions
    forecasts, warnings, gpus, O = jc.forecasts, list(jc.warnings), jc.gpus, len(jc.offerings)
    offerings_source, eliminated = jc.offerings_source, jc.eliminated
    n_total, n_remaining, numeric_elim = jc.n_total, jc.n_remaining, jc.numeric_elim

    ranking = rank(cands, feasible, policy)
    n_show = len(ranking.offering) if top is None else min(top, len(ranking.offering))
    placements = [
        _placement(offerings[oi], est, int(oi), int(ki) + 1, window.starts[ki], forecasts[offerings[oi].region_id],
                   regions[offerings[oi].region_id], rank_no=j + 1, score=float(ranking.score[j]))
        for j, (oi, ki) in enumerate(zip(ranking.offering[:n_show], ranking.start[:n_show]))
    ]
    baseline = None
    if base_offering is not None:
        baseline = _placement(base_offering, est, O, 0, now, forecasts[base_offering.region_id], baseline_region)
        placements = [_with_saving(p, baseline) for p in placements]
        baseline = _with_saving(baseline, baseline)

    shown_regions = {p.region_id for p in placements} | ({baseline.region_id} if baseline else set())
    warnings.extend(_intensity_warnings(forecasts, shown_regions))
    warnings.extend(_speed_warnings(job, placements, gpus))
    if n_show < len(ranking.offering):
        what = "Pareto-optimal candidates" if policy.objective == "pareto" else "ranked offerings"
        warnings.append(f"showing {n_show} of {len(ranking.offering)} {what} (--top 0 shows all)")
    return Plan(
        now=now, job=job, policy=policy, placements=tuple(placements), baseline=baseline,
        warnings=tuple(warnings), data_sources=tuple(_data_sources(offerings_source, forecasts, shown_regions)),
        forecasts={r: forecasts[r] for r in shown_regions}, n_candidates=n_total,
        n_feasible=int(np.count_nonzero(feasible)), eliminated=eliminated,
        n_after_offering_filters=n_remaining, eliminated_after_filters=numeric_elim,
    )


def _allowed_offerings(usable: list[Offering], job: JobSpec, gpus: dict[str, Gpu], K: int,
                       speeds: dict[str, float]) -> tuple[list[Offering], dict[str, int]]:
    """The offerings passing the per-offering constraints, and what each constraint rejected
    (in candidates, i.e. offerings x K starts). InfeasibleError when none is left.

    Besides the job's constraints, offerings whose estimated runtime exceeds MAX_RUNTIME_HOURS
    are dropped (``max_runtime``): a GPU hundreds of times slower than the reference is no
    placement, and its run would outgrow any forecast."""
    masks = _categorical_masks(usable, job, gpus)
    runtime = runtime_hours(job.hours, job.gpus, speeds[job.gpu], np.array([o.gpu_count for o in usable], dtype=float),
                            np.array([speeds[o.gpu] for o in usable]), job.power.gpu_scaling_efficiency)
    masks["max_runtime"] = runtime <= MAX_RUNTIME_HOURS
    eliminated = {name: int(np.count_nonzero(~m)) * K for name, m in masks.items()}
    keep = np.logical_and.reduce(list(masks.values()))
    if keep.any():
        return [o for o, k in zip(usable, keep) if k], eliminated

    def allowed_without(name: str) -> np.ndarray:
        others = [m for n, m in masks.items() if n != name]
        return np.logical_and.reduce(others) if others else np.ones(len(usable), dtype=bool)

    gains = {name: int(np.count_nonzero(allowed_without(name))) * K for name in masks}
    counts = sorted({o.gpu_count for o in usable if o.gpu in accepted_gpu_types(job, gpus)})
    facts = {"gpu_count": "offered counts: " + ", ".join(map(str, counts))}
    raise InfeasibleError(_infeasible_message(eliminated, len(usable) * K, facts, gains), eliminated)


def _intensity_warnings(forecasts: dict[str, Forecast], shown: set[str]) -> list[str]:
    """What the user must know about the intensities behind the shown placements."""
    out = []
    for r in sorted(shown):
        out.extend(forecasts[r].warnings)
    flat = sorted(r for r in shown if "yearly" in forecasts[r].kind)
    if flat:
        out.append("no hourly intensity data for " + ", ".join(f"{r} ({forecasts[r].zone})" for r in flat)
                   + ": a flat yearly mean is used, so timing cannot help there")
    signals = {forecasts[r].signal for r in shown}
    if len(signals) > 1:
        by = "; ".join(f"{sig}: {', '.join(sorted(r for r in shown if forecasts[r].signal == sig))}" for sig in sorted(signals))
        out.append(f"intensity signals differ across regions ({by}); lifecycle, direct and marginal figures "
                   "are not comparable, so treat the ranking across them with care")
    if any(seg["source"] == "embedded-profile" for r in shown for seg in (forecasts[r].segments or [{"source": forecasts[r].source}])):
        out.append("offline: intensities are typical-day profiles (Electricity Maps 2022 hourly, lifecycle), "
                   "not a forecast for these days" if all(forecasts[r].source == "embedded-profile" for r in shown)
                   else "some hours use the embedded typical-day profiles (2022), not a live forecast")
    return out


def _speed_warnings(job: JobSpec, placements: list[Placement], gpus: dict[str, Gpu]) -> list[str]:
    """Say when runtimes on other GPU types are extrapolated from datasheets."""
    others = sorted({p.gpu for p in placements if p.gpu != job.gpu and p.gpu not in (job.throughput or {})})
    if not others:
        return []
    ref = gpus[job.gpu]
    ratios = ", ".join(f"{g} {gpus[g].training_tflops / ref.training_tflops:.2f}x" for g in others)
    return [f"runtimes on other GPUs are scaled from {job.gpu} by datasheet dense throughput ({ratios}); real "
            "training speedups are usually smaller: give measured [throughput] or restrict constraints.gpu_types"]


def _with_saving(p: Placement, baseline: Placement) -> Placement:
    pct = (baseline.kg_co2e - p.kg_co2e) / baseline.kg_co2e * 100.0 if baseline.kg_co2e > 0 else None
    return replace(p, saving_vs_baseline_pct=pct)


def _placement(o: Offering, est, i: int, k: int, start: datetime, forecast: Forecast, region: Region,
               rank_no: int | None = None, score: float | None = None) -> Placement:
    """The Placement of estimate row ``i``, column ``k``, starting at ``start``."""
    runtime = float(est.runtime_h[i])
    kg_op, kg_emb = float(est.kg_operational[i, k]), float(est.kg_embodied[i])
    kg_p90 = float(est.kg_co2e_p90[i, k]) if est.kg_co2e_p90 is not None else None
    econ = {"spot_restart_overhead_hours": float(est.spot_restart_overhead_h[i]),
            "data_transfer_usd": float(est.transfer_usd[i]), "data_transfer_kwh": float(est.transfer_kwh[i]),
            "kg_co2e_transfer": float(est.kg_transfer[i])} if est.kg_transfer is not None else {}
    return Placement(
        provider=o.provider, region=o.region, zone=o.zone, zones=o.zones, instance_type=o.instance_type,
        gpu=o.gpu, gpu_count=o.gpu_count, market=o.market, start=start, end=start + timedelta(hours=runtime),
        runtime_hours=runtime, energy_kwh=float(est.energy_kwh[i]),
        mean_intensity_g_per_kwh=float(est.mean_intensity[i, k]), kg_co2e_operational=kg_op,
        kg_co2e_embodied=kg_emb, kg_co2e=kg_op + kg_emb + econ.get("kg_co2e_transfer", 0.0),
        cost_usd=float(est.cost_usd[i]),
        price_usd_per_hour=o.price_usd_per_hour, intensity_source=forecast.source,
        intensity_signal=forecast.signal, pue=region.pue, rank=rank_no, score=score, kg_co2e_p90=kg_p90, **econ,
    )


def _baseline_offering(job: JobSpec, usable: list[Offering], region: Region, gpus: dict[str, Gpu]) -> Offering | None:
    """"Default region, start now": the cheapest on-demand offering there of the job's GPU type and
    count, else of any accepted type with that count (None when there is none)."""
    here = [o for o in usable if o.region_id == region.region_id and o.market == "on-demand" and o.gpu_count == job.gpus]
    types = accepted_gpu_types(job, gpus)
    pick = [o for o in here if o.gpu == job.gpu] or [o for o in here if o.gpu in types]
    return min(pick, key=lambda x: (x.price_usd_per_hour, x.instance_type)) if pick else None


def _data_sources(offerings_source, forecasts: dict[str, Forecast], shown: set[str]) -> list[dict]:
    from carbonsched import data

    prov: dict[str, list[dict]] = {}
    for row in data.read_rows("provenance.csv"):
        prov.setdefault(row["file"], []).append(row)
    out = [dict(offerings_source.describe())]
    for r in sorted(shown):
        entry = {"name": "intensity", **forecasts[r].provenance()}
        if any(s["source"].startswith("embedded") for s in entry["segments"]) or forecasts[r].source.startswith("embedded"):
            entry["attribution"] = "Electricity Maps (ODbL) for the embedded profiles"
        out.append(entry)
    for name in ("regions.csv", "gpus.csv"):
        rows = prov.get(name, [])
        if rows:
            out.append({"name": name.removesuffix(".csv"), "as_of": max(r["retrieved"] for r in rows),
                        "sources": [{"source": r["source"], "licence": r["licence"], "attribution": r["attribution"]}
                                    for r in rows]})
    return out
