"""A stored job as the JSON document ``status --json``, ``list --json`` and the server's
``/v1/jobs`` share (one contract, schema_version 1)."""
from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

from carbonsched.run.store import Job, Store
from carbonsched.units import iso_utc

JOB_SCHEMA_VERSION = 1


def measured_summary(record: dict | None) -> dict | None:
    """What ``status`` shows of a job's measurement record (None: not measured)."""
    if record is None:
        return None
    ran = record.get("ran_on") or {}
    devices = (record.get("gpu") or {}).get("devices") or []  # a `track` record has no ran_on: its GPUs are here
    return {"it_energy_kwh": record.get("it_energy_kwh"), "wall_seconds": record.get("wall_seconds"),
            "methods": {k: (record.get(k) or {}).get("method") for k in ("gpu", "cpu", "memory")},
            "gpu": ran.get("gpu") or (devices[0].get("name") if devices else None),
            "gpu_count": ran.get("gpu_count", len(devices)),
            "ran_on": ran.get("where"), "region_id": record.get("region_id"),
            "segments": len(record.get("segments") or []) or 1, "exit_code": record.get("exit_code"),
            "started_at": record.get("started_at"), "ended_at": record.get("ended_at")}


_UNREAD = object()


def job_to_dict(store: Store, job: Job, *, events: bool = True, attempts: list | None = None,
                job_events: list | None = None, measurement=_UNREAD) -> dict:
    """The job, its best planned placement and baseline, every attempt, its measurement (summed
    over segments) and (``events``) its story. ``attempts``/``job_events``/``measurement`` given (a
    listing read them for many jobs at once) save the queries."""
    attempts = store.attempts(job.id) if attempts is None else attempts
    if measurement is _UNREAD:
        measurement = store.measurements_of([job.id]).get(job.id)
    best = (job.plan.get("placements") or [None])[0]
    doc = {
        "schema_version": JOB_SCHEMA_VERSION, "id": job.id, "name": job.name, "state": job.state,
        "launcher": job.launcher, "team": job.team,
        "created_at": iso_utc(job.created_at), "updated_at": iso_utc(job.updated_at), "start_at": iso_utc(job.start_at),
        "resource_id": job.resource_id, "region_id": job.region_id, "instance_type": job.instance_type,
        "exit_code": job.exit_code, "planned": best, "baseline": job.plan.get("baseline"),
        "attempts": [{k: (iso_utc(v) if isinstance(v, datetime) else v) for k, v in asdict(x).items()} for x in attempts],
        "measured": measured_summary(measurement),
    }
    if events:
        doc["events"] = store.events(job.id) if job_events is None else job_events
    return doc


def jobs_to_dict(store: Store, jobs: list[Job], *, next_cursor: str | None = None) -> dict:
    """Many jobs' documents: their attempts and events read in a few queries, not two per job."""
    ids = [j.id for j in jobs]
    attempts, events, measured = store.attempts_of(ids), store.events_of(ids), store.measurements_of(ids)
    doc = {"schema_version": JOB_SCHEMA_VERSION,
           "jobs": [job_to_dict(store, j, attempts=attempts[j.id], job_events=events[j.id], measurement=measured.get(j.id))
                    for j in jobs]}
    if next_cursor is not None:
        doc["next_cursor"] = next_cursor
    return doc
