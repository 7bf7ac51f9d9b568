"""Runs as they really happened: where a launch ran, its measurement record, and the segments of
an interruptible run.

* Where: ``ran_on(launcher, placement, resource)`` asks the launcher: SkyPilot says where its own
  failover landed (``actual_placement``); EC2/GCE ran exactly the placement they were given
  (``Launcher.ran_on``); the local launcher ran on *this machine*, in the grid
  region settings call ``local_region`` (or nowhere known). The job row keeps that region and
  instance type, not the plan's, and a run elsewhere than planned leaves a ``ran-elsewhere`` event.
* Measurement: every launcher runs the job under the tracker; when a run (or a segment) ends,
  ``collect_measurement`` takes the record from the launcher, adds ``ran_on`` (the GPUs are the
  ones NVML saw; on a cloud instance without NVML readings, the placement's, marked as such; on
  this machine, none unless NVML saw them) and stores it under the job id, summed with the
  job's earlier segments (``carbonsched.record.merge_segments``). No record (the run was killed
  before the tracker wrote one, or the image had no tracker) is an ``unmeasured`` event with the
  reason, never a silent gap.
* Segments: a placement with ``interruptible.segments`` runs in those windows. When segment k's
  end has passed and the run is still going, ``pause`` stops it (``Launcher.stop``: SIGTERM, so
  the job checkpoints; SIGKILL after the grace), then, in one transaction, moves the job to
  *paused* with ``start_at`` = segment k+1's start (a compare-and-set from *running*) and stores
  the segment's record summed with the earlier ones; the agent claims it then like any due job and
  ``resume`` launches segment k+1 on the same placement with ``CARBONSCHED_RESUME=1``. The
  segment index is the number of ``paused`` events, so a crash at any step is resumed where it
  stopped: pausing is decided by the clock and is idempotent (of several agents, or an agent
  retrying, that end one segment, only the one whose compare-and-set wins records it, and
  ``merge_segments`` never adds a segment it already has), and a resume is reconciled by its
  own token like any launch.
"""
from __future__ import annotations

from datetime import datetime

from carbonsched.errors import LaunchError
from carbonsched.providers.cloud.launcher import launch_token, segments_of, unmeasured_reason
from carbonsched.record import merge_segments
from carbonsched.run.store import Job, Store, UnknownJobError
from carbonsched.units import iso_utc, parse_utc


def ran_on(launcher, placement: dict, resource_id: str | None = None) -> dict:
    """Where a run of ``placement`` by ``launcher`` really happens: what the launcher saw it get
    (``actual_placement(resource_id)``: SkyPilot walks its own failover list), else what it says
    it does with a placement (``ran_on``), else the placement's own facts."""
    actual = getattr(launcher, "actual_placement", None)
    if actual is not None and resource_id:
        try:
            got = actual(resource_id)
        except LaunchError:
            got = None  # asked again when the run ends
        if got:
            return dict(got)
    facts = getattr(launcher, "ran_on", None)
    if facts is not None:
        return dict(facts(placement))
    return {"launcher": launcher.name, "where": "cloud", "region_id": placement.get("region_id"),
            "instance_type": placement.get("instance_type"), "market": placement.get("market")}


def note_elsewhere(store: Store, job: Job, facts: dict, placement: dict, now: datetime) -> None:
    """A ``ran-elsewhere`` event when the run is not where the plan put it."""
    if facts.get("where") == "this machine" or facts.get("region_id") != placement.get("region_id"):
        store.add_event(job.id, now, "ran-elsewhere", {
            "planned": {"region_id": placement.get("region_id"), "instance_type": placement.get("instance_type")},
            "ran_on": {"where": facts.get("where"), "region_id": facts.get("region_id"),
                       "instance_type": facts.get("instance_type")},
            "reason": (f"the {facts.get('launcher')} launcher runs on this machine"
                       + (f" (grid region {facts['region_id']})" if facts.get("region_id") else
                          " (grid region unknown: set local_region in the settings)")
                       if facts.get("where") == "this machine" else "the launcher placed it elsewhere")})


def with_ran_on(record: dict, facts: dict, placement: dict, resource_id: str) -> dict:
    """``record`` with its ``ran_on`` section and ``region_id`` (see the module docstring)."""
    devices = (record.get("gpu") or {}).get("devices") or []
    if devices:
        gpu, count, source = devices[0].get("name"), len(devices), "nvml"
    elif facts.get("where") == "cloud" and placement.get("gpu_count"):
        gpu, count, source = placement.get("gpu"), int(placement["gpu_count"]), "placement"
    else:
        gpu, count, source = None, 0, "none"
    return {**record, "region_id": facts.get("region_id"),
            "ran_on": {**facts, "gpu": gpu, "gpu_count": count, "gpu_source": source, "resource_id": resource_id}}


def collect_measurement(store: Store, job: Job, launcher, resource_id: str, placement: dict, now: datetime,
                        segment: int = 0) -> dict | None:
    """Store the run's (or segment's) record under the job (module docstring); None when none came.
    The caller has won the job's state change (a compare-and-set), so it runs once per run end."""
    record, why = fetch_measurement(store, job, launcher, resource_id, placement, segment)
    if record is None:
        note_unmeasured(store, job, now, segment, why)
        return None
    store.save_measurement(job.id, record, replace=True)  # a later segment's sum replaces the earlier one
    return record


def fetch_measurement(store: Store, job: Job, launcher, resource_id: str, placement: dict,
                      segment: int = 0) -> tuple[dict | None, str | None]:
    """The run's (or segment's) record with its ``ran_on``, summed with the job's stored earlier
    segments, without storing it; or (None, why none came back: None when unknown)."""
    get = getattr(launcher, "measurement", None)
    try:
        record = get(resource_id) if get is not None else None
    except LaunchError as exc:
        return None, f"the launcher could not return it ({exc})"
    if record is None:
        try:
            return None, unmeasured_reason(launcher.logs(resource_id))
        except LaunchError:
            return None, None
    record = with_ran_on(record, ran_on(launcher, placement, resource_id), placement, resource_id)
    if segment:
        try:
            record = merge_segments([store.load_measurement(job.id), record])
        except UnknownJobError:
            pass  # the earlier segments came back unmeasured: this one stands alone
    return record, None


def note_unmeasured(store: Store, job: Job, now: datetime, segment: int, why: str | None) -> None:
    """The ``unmeasured`` event: a run (or segment) whose record did not come back, and why."""
    store.add_event(job.id, now, "unmeasured", {"segment": segment, "reason": why or (
        "no measurement record came back: the run was killed before the tracker wrote it, "
        "or the launcher cannot return one")})


# -- segments ---------------------------------------------------------------------------------
def in_segments(job: Job) -> bool:
    """Whether any of the job's placements runs in segments (an interruptible plan)."""
    return any(segments_of(p) for p in job.plan.get("placements") or [])


def segments_done(store: Store, job: Job) -> int:
    """How many segments of the job have ended (its ``paused`` events); 0 without reading them for
    a job that does not run in segments (every launch and poll asks)."""
    if not in_segments(job):
        return 0
    return sum(1 for e in store.events(job.id) if e["kind"] == "paused")


def run_placement(store: Store, job: Job) -> dict:
    """The placement the job's run was launched on ({} before any launch)."""
    attempt = current_attempt(store, job)
    return (job.plan.get("placements") or [{}])[attempt.attempt] if attempt else {}


def current_attempt(store: Store, job: Job):
    """The attempt that launched the job's run (its last launched or reconciled one), or None."""
    launched = [a for a in store.attempts(job.id) if a.outcome in ("launched", "reconciled")]
    return launched[-1] if launched else None


def segment_ended(placement: dict, k: int, now: datetime) -> bool:
    """Whether segment ``k`` (not the last) is over at ``now``."""
    segs = segments_of(placement)
    return k < len(segs) - 1 and now >= parse_utc(segs[k]["end"])


def pause(store: Store, job: Job, launcher, placement: dict, k: int, now: datetime) -> Job:
    """End segment ``k`` of a running job and schedule segment k+1 (module docstring)."""
    stop = getattr(launcher, "stop", None)
    can = getattr(launcher, "can_stop", None)
    if stop is None or (can is not None and not can(placement)):
        if not any(e["kind"] == "segments-unsupported" for e in store.events(job.id)):
            store.add_event(job.id, now, "segments-unsupported", {
                "reason": f"the {launcher.name} launcher cannot stop and resume this run (a spot instance, or no "
                          "stop/start): it runs to the end"})
        return job
    clean = stop(job.resource_id)  # each launcher's own grace: 30 s locally, minutes for an instance
    record, why = fetch_measurement(store, job, launcher, job.resource_id, placement, segment=k)
    nxt = parse_utc(segments_of(placement)[k + 1]["start"])
    # the record is stored with the move to paused, in one transaction: of two agents ending this
    # segment at once (or one retrying after a crash) exactly one records it
    if store.set_state(job.id, "paused", now, expect=("running",), start_at=nxt, measurement=record,
                       detail={"segment": k, "next_start": iso_utc(nxt), "resource_id": job.resource_id,
                               "reason": "its planned segment ended" + ("" if clean else
                                         "; it did not stop within the launcher's grace period (killed, or still stopping)")}):
        if record is None:
            note_unmeasured(store, job, now, k, why)
    return store.get(job.id)


def segment_token(job_id: str, attempt: int, k: int) -> str:
    return f"{launch_token(job_id, attempt)}-s{k}"
