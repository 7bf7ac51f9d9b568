"""What every pipeline integration shares: reading a job and a policy from what a pipeline passes,
planning under the policy, the placement as a small JSON-friendly summary, a markdown table of the
plan, and a clock a test can start at a fixed "now" and run fast.

No pipeline framework is imported here (Airflow, Prefect and KFP live in their own modules, each
an optional extra); ``carbonsched plan`` never imports this package.

The clock: pipelines resume in another process (Airflow's triggerer, a later worker), so the clock
is data, not a callable, and ``to_dict``/``from_dict`` carry it across a deferral.
``Clock.starting()`` is the wall clock; ``Clock.starting(now="2026-11-27T10:30Z")`` reads that
time when made and runs on from it (the CLI's ``--now``); with ``skip_waits=True`` a wait takes no
time: the clock jumps to the moment waited for (``advanced_to``), as ``wait_for_window``'s tests
inject ``sleep``. So a test's deferral to a window hours ahead resolves at once, and the steps
after it see the time of the window.
"""
from __future__ import annotations

import time
import tomllib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from carbonsched.errors import PolicyFileError, UserInputError
from carbonsched.models import Placement, Plan
from carbonsched.planning.policy_check import enforce_policy
from carbonsched.providers.cloud import get_launcher
from carbonsched.run.store import FINAL, Job, Store
from carbonsched.run.submit import check_launchable, launch_job, refresh_status, restrict_to_launcher, submit
from carbonsched.run.wait import pin_window, wait_for_window
from carbonsched.settings import resolve_settings
from carbonsched.spec.job import JobSpec, job_from_dict, load_job
from carbonsched.spec.policy_file import PolicyFile, load_policy, policy_from_dict
from carbonsched.units import iso_utc, parse_utc


@dataclass(frozen=True)
class Clock:
    """UTC "now" = ``start`` + wall time since ``anchor``; ``start`` None: the wall clock. With
    ``skip_waits`` a wait does not sleep: the clock jumps to the moment waited for (``advanced_to``)."""

    start: datetime | None = None
    anchor: float = 0.0  # time.time() when the clock read ``start``
    skip_waits: bool = False

    @classmethod
    def starting(cls, now: datetime | str | None = None, skip_waits: bool = False) -> "Clock":
        if now is None and not skip_waits:
            return cls()
        start = parse_utc(now, "now") if now is not None else datetime.now(timezone.utc)
        return cls(start=start, anchor=time.time(), skip_waits=bool(skip_waits))

    def now(self) -> datetime:
        if self.start is None:
            return datetime.now(timezone.utc)
        return self.start + timedelta(seconds=time.time() - self.anchor)

    def real_seconds_until(self, moment: datetime) -> float:
        """Wall-clock seconds to sleep until this clock reads ``moment``: 0 when it already has, or
        when waits are skipped."""
        return 0.0 if self.skip_waits else max(0.0, (moment - self.now()).total_seconds())

    def advanced_to(self, moment: datetime) -> "Clock":
        """After waiting for ``moment``: a skipping clock jumps there (never back); others are as they were."""
        if not self.skip_waits or moment <= self.now():
            return self
        return Clock(start=moment, anchor=time.time(), skip_waits=True)

    def to_dict(self) -> dict:
        return {"start": iso_utc(self.start) if self.start else None, "anchor": self.anchor,
                "skip_waits": self.skip_waits}

    @classmethod
    def from_dict(cls, d: dict | None) -> "Clock":
        if not d or d.get("start") is None:
            return cls()
        return cls(start=parse_utc(d["start"], "clock start"), anchor=float(d["anchor"]),
                   skip_waits=bool(d.get("skip_waits")))


def read_job(job) -> JobSpec:
    """A ``JobSpec``, a job table (dict, as in a job file), or the path of a job TOML file."""
    if isinstance(job, JobSpec):
        return job
    if isinstance(job, dict):
        return job_from_dict(job)
    if isinstance(job, (str, Path)):
        return load_job(job)
    raise UserInputError(f"job must be a job file path, a job table (dict) or a JobSpec, got {type(job).__name__}")


def read_policy(policy=None, policy_file: str | Path | None = None, settings=None) -> PolicyFile | None:
    """The policy to enforce: ``policy`` (a ``PolicyFile``, a policy table, or policy TOML text), else
    ``policy_file`` (a path), else the settings' organisation policy (``policy`` in the config file or
    ``CARBONSCHED_POLICY``, as ``carbonsched plan`` does); None when there is none."""
    if policy is not None and policy_file is not None:
        raise UserInputError("give the policy once: as a file path or as its contents, not both")
    if isinstance(policy, PolicyFile):
        return policy
    if isinstance(policy, str):
        try:
            policy = tomllib.loads(policy)
        except tomllib.TOMLDecodeError as exc:
            raise PolicyFileError(f"policy text is not valid TOML: {exc}") from None
    if isinstance(policy, dict):
        return policy_from_dict(policy)
    if policy is not None:
        raise UserInputError(f"policy must be a policy table, TOML text or PolicyFile, got {type(policy).__name__}")
    if policy_file:
        return load_policy(policy_file)
    if settings is not None and getattr(settings, "policy", None) is not None:
        return load_policy(settings.policy)
    return None


def settings_for(overrides: dict | None = None):
    """Settings resolved as the CLI resolves them (config file < ``CARBONSCHED_*`` < ``overrides``)."""
    return resolve_settings(overrides or None)


def plan_under_policy(job: JobSpec, pf: PolicyFile | None, *, now: datetime, settings=None, top: int = 5,
                      max_wait: timedelta | None = None, first_now: datetime | None = None) -> Plan:
    """The plan a pipeline step acts on: the job's window pinned at ``first_now`` (the first plan's
    "now"; default ``now``) and capped by ``max_wait`` (``run.wait.pin_window``), so a re-plan never
    drifts the window later, then planned under ``pf`` (``enforce_policy``: PolicyViolationError
    when the policy leaves nothing)."""
    pinned = pin_window(job, first_now or now, max_wait)
    return enforce_policy(pinned, pf, now=now, settings=settings, top=top)


def placement_summary(plan: Plan, placement: Placement | None = None) -> dict:
    """The placement (default: the plan's best) as the JSON-friendly dict pipelines pass on (XCom,
    Prefect results, KFP outputs): where, what, when, kgCO2e and the saving against the baseline."""
    p = placement or plan.best
    base = plan.baseline
    return {"job": plan.job.name, "region_id": p.region_id, "provider": p.provider, "instance_type": p.instance_type,
            "gpu": p.gpu, "gpu_count": p.gpu_count, "market": p.market, "start": iso_utc(p.start),
            "end": iso_utc(p.end), "kg_co2e": round(p.kg_co2e, 4), "cost_usd": round(p.cost_usd, 2),
            "baseline_region_id": base.region_id if base else None,
            "baseline_kg_co2e": round(base.kg_co2e, 4) if base else None,
            "saving_vs_baseline_pct": None if p.saving_vs_baseline_pct is None else round(p.saving_vs_baseline_pct, 1),
            "planned_at": iso_utc(plan.now), "policy": (plan.policy_file or {}).get("name")}


def same_placement(a: dict, b: dict) -> bool:
    return all(a.get(k) == b.get(k) for k in ("region_id", "instance_type", "market", "start"))


def plan_markdown(plan: Plan, top: int = 5) -> str:
    """The plan's best ``top`` placements and the baseline as a markdown table (Prefect artifacts,
    KFP markdown outputs, CI summaries)."""
    rows = ["| rank | region | instance | GPUs | market | start (UTC) | kgCO2e | USD | saving vs baseline |",
            "|---:|---|---|---|---|---|---:|---:|---:|"]

    def row(label, p):
        saving = "-" if p.saving_vs_baseline_pct is None else f"{p.saving_vs_baseline_pct:.0f} %"
        rows.append(f"| {label} | {p.region_id} | {p.instance_type} | {p.gpu_count}x {p.gpu} | {p.market} | "
                    f"{p.start:%Y-%m-%d %H:%M} | {p.kg_co2e:.2f} | {p.cost_usd:.0f} | {saving} |")

    for i, p in enumerate(plan.placements[:top], 1):
        row(i, p)
    if plan.baseline is not None:
        row("baseline", plan.baseline)
    policy = f" under policy `{plan.policy_file['name']}`" if plan.policy_file else ""
    head = f"### carbonsched plan for `{plan.job.name}`{policy}\n\nplanned at {iso_utc(plan.now)}\n\n"
    return head + "\n".join(rows) + "\n"


def submit_under_policy(job: JobSpec, pf: PolicyFile | None, *, launcher: str, now: datetime, settings, store: Store,
                        max_attempts: int = 3, launcher_factory=None):
    """``carbonsched submit --yes`` as a library call: the job confined to what ``launcher`` can start,
    planned under ``pf`` (refused before anything is stored when the policy leaves nothing), stored,
    and launched at once when its best start is now; else left scheduled. Returns ``(Job, LaunchOutcome | None)``."""
    if not (job.command or job.payload.run or job.image):
        raise UserInputError(f"job {job.name!r} has nothing to run: give it a command (or run, or image)")
    if max_attempts < 1:
        raise UserInputError("max_attempts must be at least 1")
    job = restrict_to_launcher(job, launcher)
    plan = enforce_policy(job, pf, now=now, settings=settings, top=max(max_attempts, 10))
    job = plan.job  # stored as planned: under the policy
    check_launchable(job, plan, launcher)
    return submit(job, now=now, settings=settings, store=store, launcher=launcher, plan=plan,
                  launcher_factory=launcher_factory or launchers_for(settings), max_attempts=max_attempts)


def launchers_for(settings):
    """``name -> Launcher``, each made once (as the CLI's commands do)."""
    made: dict = {}

    def factory(name: str):
        if name not in made:
            made[name] = get_launcher(name, settings)
        return made[name]

    return factory


def poll_job(store: Store, job_id: str, now: datetime, launcher_factory) -> Job:
    """The job as it is now: a running job's resource is asked how it is (``refresh_status``: its end and
    measurement are recorded when it has ended)."""
    job = store.get(job_id)
    return refresh_status(store, job, launcher_factory, now) if job.state == "running" else job


def launch_if_due(store: Store, job_id: str, now: datetime, settings, launcher_factory, clock=None) -> Job:
    """Launch a scheduled job whose start has come (what ``carbonsched agent`` would do; the claim is
    atomic, so an agent on the same store and this call never both launch it). ``clock``: renews the
    launch's lease (default: the system clock)."""
    job = store.get(job_id)
    if job.state == "scheduled" and job.start_at <= now:
        launch_job(store, job.id, launcher_factory, now=now, lease_s=getattr(settings, "lease_seconds", 120.0),
                   clock=clock)
    return store.get(job_id)


def job_summary(job: Job) -> dict:
    """A stored job as a JSON-friendly dict (XCom, Prefect results)."""
    return {"job_id": job.id, "name": job.name, "state": job.state, "final": job.state in FINAL,
            "exit_code": job.exit_code, "region_id": job.region_id, "instance_type": job.instance_type,
            "resource_id": job.resource_id, "start_at": iso_utc(job.start_at), "launcher": job.launcher}


def pinned_to(job, placement: dict | None):
    """``job`` confined to an upstream wait task's placement: its region, GPU and market."""
    if not placement:
        raise UserInputError("pin_to has no placement: give it the placement a green-window wait returned")
    return replace(job, regions=(placement["region_id"],), exclude_regions=(), gpu_types=(placement["gpu"],),
                   spot=placement["market"] == "spot", earliest_start=None, max_delay_hours=0.0, deadline=None)


def plan_step(job_toml: str, policy_toml: str = "", now: str = "", max_wait_hours: float = 24.0, top: int = 5,
              wait: bool = False, skip_waits: bool = False, sleep=time.sleep) -> tuple[dict, str, dict]:
    """One pipeline step that plans from texts (a container gets no files): the job TOML, the policy
    TOML ("" = the ``policy`` setting, if any), ``now`` ("" = the clock). With ``wait`` it sleeps
    until the start, re-planning once an hour into the wait (``wait_for_window(max_replans=1)``; the
    step holds its pod, not a GPU), then returns the placement to start; ``skip_waits``: the clock
    jumps instead (tests). Returns ``(placement_summary,
    plan markdown, plan document)``."""
    try:
        raw = tomllib.loads(job_toml)
    except tomllib.TOMLDecodeError as exc:
        raise UserInputError(f"job TOML is not valid: {exc}") from None
    settings = settings_for()
    job, pf = job_from_dict(raw), read_policy(policy=policy_toml or None, settings=settings)
    clock = Clock.starting(now or None, skip_waits)
    max_wait = timedelta(hours=max_wait_hours) if max_wait_hours and max_wait_hours > 0 else None
    plan = plan_under_policy(job, pf, now=clock.now(), settings=settings, top=top, max_wait=max_wait)
    best = plan.best
    if wait:
        state = {"clock": clock}

        def now_fn():
            return state["clock"].now()

        def sleep_fn(seconds: float):
            target = state["clock"].now() + timedelta(seconds=seconds)
            sleep(state["clock"].real_seconds_until(target))
            state["clock"] = state["clock"].advanced_to(target)

        first = plan.now
        best = wait_for_window(job, now_fn=now_fn, sleep=sleep_fn, settings=settings, max_wait=max_wait, max_replans=1,
                     plan_fn=lambda j, *, now, settings: plan_under_policy(j, pf, now=now, settings=settings, top=top,
                                                                           max_wait=max_wait, first_now=first))
    return placement_summary(plan, best), plan_markdown(plan, top), plan.to_dict()
