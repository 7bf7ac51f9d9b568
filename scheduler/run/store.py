"""The job store: a SQLite file (WAL) under ``$CARBONSCHED_HOME`` (``Settings.home``), or a team's
PostgreSQL database (``CARBONSCHED_DATABASE_URL`` / ``database_url``; ``backends.py``).

Tables: ``jobs`` (spec, full plan JSON incl. the forecasts used, state, chosen start),
``attempts`` (every launch attempt: placement, token, outcome, resource id), ``events`` (an
append-only story per job), ``measurements`` (``carbonsched track`` records by job id; a label
need not be a stored job; one per job, replaced only when asked: ``save_measurement``). The SQL is written once for both databases; the schema is one list of
versioned migrations (``schema.py``) run forward on open. A store from a newer carbonsched, or a
file that is not a SQLite database, is refused with a clear error (never rewritten); a corrupt,
read-only or unreachable store is named as such, with what to do, on every read and write (never
a raw driver traceback). A SQLite file and its folder are private to the user (0600/0700): plans
and job specs may name internal paths.

Concurrency: every write is a short transaction. Agents claim due jobs with ``claim_next``: the
next due job is selected ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (several agents on several
machines claim different jobs at once) and under SQLite's write lock on a file, then moved with a
compare-and-set ``UPDATE ... WHERE state = 'scheduled'`` that also takes a lease: ``claimed_by``
(the worker), ``claimed_at`` (the clock at the claim, not at the start of the agent's pass) and
``lease_expires_at``. The owner renews the lease while it launches
(``run/lease.py``); another agent may resume a launching job only once its lease has expired
(``stale_launching``/``reclaim``, checked again inside the reclaiming transaction), so a slow
cloud call is never launched twice. Job states::

    scheduled -> launching -> running -> succeeded | failed
         \\-> cancelled            \\-> failed (launch error, failover exhausted)
                 launching <- paused <- running    (interruptible runs, between segments: run/measured.py)
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from carbonsched.errors import UserInputError
from carbonsched.run.backends import StoreError, open_backend  # noqa: F401 -- StoreError is part of this module's API
from carbonsched.redact import redact
from carbonsched.units import iso_utc, parse_utc

DEFAULT_LEASE_S = 120.0  # a claim holds this long without a heartbeat (renewed every quarter of it)
STATES = ("scheduled", "launching", "running", "paused", "succeeded", "failed", "cancelled")
FINAL = ("succeeded", "failed", "cancelled")
OUTCOMES = ("pending", "launched", "capacity", "error", "reconciled")  # of an attempt


class UnknownJobError(UserInputError):
    """No job with that id (or prefix)."""


class AmbiguousJobError(UnknownJobError):
    """A job id prefix that several jobs start with."""


class MeasurementExistsError(UserInputError):
    """The job already has a measurement, and replacing it was not asked for."""


@dataclass(frozen=True)
class Job:
    id: str
    name: str
    state: str
    created_at: datetime
    updated_at: datetime
    start_at: datetime
    launcher: str
    spec: dict
    plan: dict
    claimed_by: str | None
    resource_id: str | None
    region_id: str | None
    instance_type: str | None
    exit_code: int | None
    max_attempts: int
    team: str = ""


@dataclass(frozen=True)
class Attempt:
    job_id: str
    attempt: int
    rank: int | None
    launcher: str
    region_id: str | None
    zone: str | None
    instance_type: str | None
    market: str | None
    token: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str  # one of OUTCOMES
    error_code: str | None
    message: str | None
    resource_id: str | None


def _job(row) -> Job:
    return Job(id=row["id"], name=row["name"], state=row["state"], created_at=_column(row, "created_at", parse_utc),
               updated_at=_column(row, "updated_at", parse_utc), start_at=_column(row, "start_at", parse_utc),
               launcher=row["launcher"], spec=_column(row, "spec_json", json.loads), plan=_column(row, "plan_json", json.loads),
               claimed_by=row["claimed_by"], resource_id=row["resource_id"], region_id=row["region_id"],
               instance_type=row["instance_type"], exit_code=row["exit_code"], max_attempts=row["max_attempts"],
               team=row["team"])


def _column(row, column: str, read):
    """A job row's ``column`` through ``read``; a value carbonsched did not write (a row changed by
    hand, or imported before imports were checked) is a StoreError naming the job and column,
    never a traceback or a wrong exit status."""
    try:
        return read(row[column])
    except (ValueError, TypeError, UserInputError) as exc:
        raise StoreError(f"job {row['id']} has an unreadable {column} in the job store ({exc}); carbonsched did "
                         "not write it: correct that value in the database, or delete the job's rows") from None


def _attempt(row) -> Attempt:
    return Attempt(job_id=row["job_id"], attempt=row["attempt"], rank=row["rank"], launcher=row["launcher"],
                   region_id=row["region_id"], zone=row["zone"], instance_type=row["instance_type"],
                   market=row["market"], token=row["token"], started_at=parse_utc(row["started_at"]),
                   finished_at=parse_utc(row["finished_at"]) if row["finished_at"] else None,
                   outcome=row["outcome"], error_code=row["error_code"], message=row["message"],
                   resource_id=row["resource_id"])


class Store:
    """The job store at ``target``: a SQLite file path (created with parents on first use) or a
    ``postgresql://`` URL."""

    def __init__(self, target: str | Path, timeout_s: float = 10.0):
        self.backend = open_backend(target, timeout_s)
        self._companion: Store | None = None

    @property
    def path(self) -> Path | None:
        """The SQLite file; None for PostgreSQL."""
        return self.backend.path

    @property
    def location(self) -> str:
        """Where the store is, printable (a URL without its password)."""
        return self.backend.location

    @property
    def read_only(self) -> bool:
        return self.backend.read_only

    @property
    def journal_mode(self) -> str | None:
        return self.backend.journal_mode

    @staticmethod
    def path_for(settings) -> Path:
        return Path(settings.home) / "jobs.sqlite"

    @staticmethod
    def target_for(settings) -> str | Path:
        """The configured database URL, else the SQLite file under home."""
        return getattr(settings, "database_url", None) or Store.path_for(settings)

    @classmethod
    def for_settings(cls, settings) -> "Store":
        return cls(cls.target_for(settings))

    def reopen(self) -> "Store":
        """Another connection to the same database."""
        return Store._wrap(self.backend.reopen())

    def companion(self) -> "Store":
        """A second connection kept for the lease heartbeat (``run/lease.py``), opened once: on
        PostgreSQL a new connection per launch would cost more than the launch's own queries."""
        if self._companion is None:
            self._companion = self.reopen()
        return self._companion

    @classmethod
    def _wrap(cls, backend) -> "Store":
        store = cls.__new__(cls)
        store.backend, store._companion = backend, None
        return store

    def drop_companion(self) -> None:
        """Close the heartbeat's connection (after an error: the next launch opens a fresh one)."""
        companion, self._companion = self._companion, None
        if companion is not None:
            try:
                companion.close()
            except Exception:  # noqa: BLE001 -- a broken connection may fail to close; it is dropped anyway
                pass

    def close(self) -> None:
        self.drop_companion()
        self.backend.close()

    def schema_version(self) -> int:
        return self.backend.schema_version()

    def _read(self, sql: str, params=()) -> list:
        """A query whose database errors become StoreError (corrupt pages surface on reads too)."""
        return self.backend.read(sql, params)

    def _exec(self, sql: str, params=()):
        return self.backend.execute(sql, params)

    def _tx(self):
        return self.backend.tx()

    # -- jobs -------------------------------------------------------------------------
    def add_job(self, *, name: str, spec: dict, plan: dict, start_at: datetime, launcher: str, now: datetime,
                max_attempts: int = 3, job_id: str | None = None, team: str = "") -> Job:
        job_id = job_id or uuid.uuid4().hex[:12]
        with self._tx():
            self._exec(
                "INSERT INTO jobs (id, name, state, created_at, updated_at, start_at, launcher, spec_json, plan_json,"
                " max_attempts, team) VALUES (?, ?, 'scheduled', ?, ?, ?, ?, ?, ?, ?, ?)",
                (job_id, name, iso_utc(now), iso_utc(now), iso_utc(start_at), launcher, json.dumps(spec),
                 json.dumps(plan), max_attempts, team))
            self._event(job_id, now, "scheduled", {"start_at": iso_utc(start_at), "launcher": launcher})
        return self.get(job_id)

    def get(self, job_id: str, team: str | None = None) -> Job:
        """The job with this id or unique id prefix; with ``team``, only that team's jobs exist
        (another team's id reads as unknown, not as forbidden)."""
        if not job_id or not job_id.strip():
            raise UnknownJobError("no job id given; list jobs with `carbonsched list`")
        prefix = job_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        scope, params = ("", ()) if team is None else (" AND team = ?", (team,))
        rows = self._read(f"SELECT * FROM jobs WHERE (id = ? OR id LIKE ? ESCAPE '\\'){scope} ORDER BY id LIMIT 6",
                          (job_id, prefix + "%") + params)
        exact = [r for r in rows if r["id"] == job_id]
        if exact:
            return _job(exact[0])
        if len(rows) == 1:
            return _job(rows[0])
        if not rows:
            raise UnknownJobError(f"no job {job_id!r}; list jobs with `carbonsched list`")
        raise AmbiguousJobError(f"job id prefix {job_id!r} is ambiguous ({', '.join(r['id'] for r in rows[:5])}); type more of it")

    def jobs(self, states: tuple[str, ...] | None = None, *, team: str | None = None, limit: int | None = None,
             after: tuple[str, str] | None = None, changed_since: datetime | None = None) -> list[Job]:
        """Jobs oldest first; filtered by ``states``, ``team`` and a last change at or after
        ``changed_since``; at most ``limit`` of them, after the ``(created_at, id)`` cursor of the
        last job of the previous page."""
        where, params = _where(states, team, after, changed_since)
        q = f"SELECT * FROM jobs{where} ORDER BY created_at, id"
        if limit is not None:
            q += " LIMIT ?"
            params.append(limit)
        return [_job(r) for r in self._read(q, params)]

    def summaries(self, states: tuple[str, ...] | None = None) -> list[dict]:
        """What a job table shows (id, name, state, start_at, region_id, launcher), oldest first,
        without reading the specs and plans (``list`` over a large store)."""
        where, params = _where(states)
        return [dict(r) for r in self._read("SELECT id, name, state, start_at, region_id, launcher FROM jobs"
                                            f"{where} ORDER BY created_at, id", params)]

    def count_by_state(self, team: str | None = None) -> dict[str, int]:
        where, params = _where(team=team)
        rows = self._read(f"SELECT state, COUNT(*) AS n FROM jobs{where} GROUP BY state", params)
        return {r["state"]: int(r["n"]) for r in rows}

    def due(self, now: datetime, limit: int = 100) -> list[Job]:
        rows = self._read("SELECT * FROM jobs WHERE state = 'scheduled' AND start_at <= ? ORDER BY start_at, id LIMIT ?",
                          (iso_utc(now), limit))
        return [_job(r) for r in rows]

    def claim(self, job_id: str, worker: str, now: datetime, lease_s: float = DEFAULT_LEASE_S) -> bool:
        """Atomically move a due job from scheduled to launching under a lease held by ``worker``
        until ``now + lease_s``; False if someone else has it."""
        with self._tx():
            return self._take(job_id, worker, now, lease_s)

    def claim_next(self, worker: str, now: datetime, lease_s: float = DEFAULT_LEASE_S) -> Job | None:
        """Claim the next due job (earliest start first) for ``worker``, or None when none is left.

        On PostgreSQL the candidate row is selected ``FOR UPDATE SKIP LOCKED``: agents claiming at
        the same moment each get a different job instead of waiting on one row. On SQLite the
        transaction holds the write lock, so the select and the update cannot interleave."""
        for _ in range(3):  # a row changed under us (cancelled) leaves nothing claimed: look again
            with self._tx():
                row = self._exec("SELECT id FROM jobs WHERE state IN ('scheduled', 'paused') AND start_at <= ? "
                                 f"ORDER BY start_at, id LIMIT 1{self.backend.skip_locked}", (iso_utc(now),)).fetchone()
                if row is None:
                    return None
                taken = self._take(row["id"], worker, now, lease_s)
            if taken:
                return self.get(row["id"])
        return None

    def _take(self, job_id: str, worker: str, now: datetime, lease_s: float) -> bool:
        """Inside a transaction: the compare-and-set from scheduled to launching, with its event."""
        cur = self._exec(
            "UPDATE jobs SET state = 'launching', claimed_by = ?, claimed_at = ?, lease_expires_at = ?, "
            "updated_at = ? WHERE id = ? AND state IN ('scheduled', 'paused')",
            (worker, iso_utc(now), _expiry(now, lease_s), iso_utc(now), job_id))
        if cur.rowcount == 1:
            self._event(job_id, now, "claimed", {"worker": worker, "lease_s": lease_s})
        return cur.rowcount == 1

    def renew(self, job_id: str, worker: str, now: datetime, lease_s: float) -> bool:
        """Extend ``worker``'s lease on a launching job to ``now + lease_s``; False when it no longer
        holds it (reclaimed after expiry, cancelled, or launched)."""
        with self._tx():
            cur = self._exec(
                "UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND state = 'launching' AND claimed_by = ?",
                (_expiry(now, lease_s), job_id, worker))
            return cur.rowcount == 1

    def stale_launching(self, now: datetime, older_than_s: float) -> list[Job]:
        """Jobs in 'launching' whose lease has expired (their agent died or hung mid-launch). Rows
        claimed before leases existed count as stale ``older_than_s`` after their claim."""
        out = []
        for r in self._read("SELECT * FROM jobs WHERE state = 'launching'"):
            if _lease_expired(r, now, older_than_s):
                out.append(_job(r))
        return out

    def reclaim(self, job_id: str, worker: str, now: datetime, previous_worker: str | None,
                lease_s: float = DEFAULT_LEASE_S, older_than_s: float = DEFAULT_LEASE_S) -> bool:
        """Take over a launching job whose lease has expired (checked again here, atomically)."""
        with self._tx():
            row = self._exec(f"SELECT * FROM jobs WHERE id = ? AND state = 'launching'{self.backend.lock}",
                             (job_id,)).fetchone()
            if row is None or row["claimed_by"] != previous_worker or not _lease_expired(row, now, older_than_s):
                return False
            self._exec("UPDATE jobs SET claimed_by = ?, claimed_at = ?, lease_expires_at = ?, updated_at = ? "
                       "WHERE id = ?", (worker, iso_utc(now), _expiry(now, lease_s), iso_utc(now), job_id))
            self._event(job_id, now, "reclaimed", {"worker": worker, "previous": previous_worker})
            return True

    def set_state(self, job_id: str, state: str, now: datetime, *, expect: tuple[str, ...] | None = None,
                  detail: dict | None = None, measurement: dict | None = None, **fields) -> bool:
        """Move the job to ``state`` (only from one of ``expect``: a compare-and-set); False when it
        was not there. ``measurement``: stored (replacing the job's) in the same transaction, only
        when the move happens, so of several agents ending one run exactly one records it."""
        if state not in STATES:
            raise ValueError(state)
        allowed = {"resource_id", "region_id", "instance_type", "exit_code", "start_at", "plan_json"}
        sets = ["state = ?", "updated_at = ?"] + [f"{k} = ?" for k in fields if k in allowed]
        values = [state, iso_utc(now)] + [iso_utc(v) if isinstance(v, datetime) else v for k, v in fields.items() if k in allowed]
        where = "id = ?"
        params = values + [job_id]
        if expect:
            where += f" AND state IN ({','.join('?' * len(expect))})"
            params += list(expect)
        with self._tx():
            cur = self._exec(f"UPDATE jobs SET {', '.join(sets)} WHERE {where}", params)
            if cur.rowcount == 1:
                if measurement is not None:
                    self._put_measurement(job_id, measurement, replace=True)
                self._event(job_id, now, state, detail or {k: v for k, v in fields.items() if k != "plan_json"})
            return cur.rowcount == 1

    def replace_plan(self, job_id: str, *, plan: dict, start_at: datetime, now: datetime, release: bool,
                     detail: dict) -> bool:
        """A claimed (launching) job's new plan and start, with a ``replanned`` event; ``release``:
        back to *scheduled* (its lease dropped) to wait for the new start."""
        state = ", state = 'scheduled', claimed_by = NULL, lease_expires_at = NULL" if release else ""
        with self._tx():
            cur = self._exec(f"UPDATE jobs SET plan_json = ?, start_at = ?, updated_at = ?{state} "
                             "WHERE id = ? AND state = 'launching'",
                             (json.dumps(plan), iso_utc(start_at), iso_utc(now), job_id))
            if cur.rowcount == 1:
                self._event(job_id, now, "replanned", detail)
            return cur.rowcount == 1

    # -- attempts and events ------------------------------------------------------------
    def begin_attempt(self, job_id: str, *, attempt: int, rank: int | None, launcher: str, placement: dict,
                      token: str, now: datetime) -> Attempt:
        """Record an attempt as 'pending' BEFORE the cloud call, so a crash leaves a trace to reconcile."""
        with self._tx():
            self._exec(
                "INSERT INTO attempts (job_id, attempt, rank, launcher, region_id, zone, instance_type, market, token,"
                " started_at, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending')",
                (job_id, attempt, rank, launcher, placement.get("region_id"), placement.get("zone"),
                 placement.get("instance_type"), placement.get("market"), token, iso_utc(now)))
            self._event(job_id, now, "attempt", {"attempt": attempt, "rank": rank, "region_id": placement.get("region_id"),
                                                 "instance_type": placement.get("instance_type")})
        return self.attempts(job_id)[-1]

    def finish_attempt(self, job_id: str, attempt: int, *, outcome: str, now: datetime, resource_id: str | None = None,
                       error_code: str | None = None, message: str | None = None) -> None:
        with self._tx():
            self._exec(
                "UPDATE attempts SET outcome = ?, finished_at = ?, resource_id = ?, error_code = ?, message = ? "
                "WHERE job_id = ? AND attempt = ?",
                (outcome, iso_utc(now), resource_id, error_code, redact(message) if message else message, job_id, attempt))
            self._event(job_id, now, f"attempt-{outcome}", {"attempt": attempt, "resource_id": resource_id,
                                                             "error_code": error_code, "message": message})

    def attempts(self, job_id: str) -> list[Attempt]:
        return [_attempt(r) for r in self._read("SELECT * FROM attempts WHERE job_id = ? ORDER BY attempt", (job_id,))]

    def attempts_of(self, job_ids: list[str]) -> dict[str, list[Attempt]]:
        """Attempts of many jobs in a few queries (a listing page), by job id."""
        out: dict[str, list[Attempt]] = {j: [] for j in job_ids}
        for rows in self._chunked("SELECT * FROM attempts WHERE job_id IN ({}) ORDER BY job_id, attempt", job_ids):
            for r in rows:
                out[r["job_id"]].append(_attempt(r))
        return out

    def events_of(self, job_ids: list[str]) -> dict[str, list[dict]]:
        """Events of many jobs in a few queries, by job id, each in its order."""
        out: dict[str, list[dict]] = {j: [] for j in job_ids}
        for rows in self._chunked("SELECT * FROM events WHERE job_id IN ({}) ORDER BY seq", job_ids):
            for r in rows:
                out[r["job_id"]].append({"at": r["at"], "kind": r["kind"], **json.loads(r["detail_json"])})
        return out

    def _chunked(self, sql: str, ids: list[str], size: int = 500):
        for i in range(0, len(ids), size):
            part = ids[i:i + size]
            yield self._read(sql.format(",".join("?" * len(part))), part)

    def events(self, job_id: str) -> list[dict]:
        return [{"at": r["at"], "kind": r["kind"], **json.loads(r["detail_json"])}
                for r in self._read("SELECT * FROM events WHERE job_id = ? ORDER BY seq", (job_id,))]

    # -- measurements (carbonsched track) ----------------------------------------------------
    def save_measurement(self, job_id: str, record: dict, *, replace: bool = False) -> None:
        """Store ``record`` as the measurement of ``job_id`` (a stored job, with a ``measured`` event,
        or any label). A job's measurement says where and how it ran: one already there is replaced
        only with ``replace`` (the agent summing segments, `track --replace`), else
        MeasurementExistsError names it and nothing is written."""
        with self._tx():
            self._put_measurement(job_id, record, replace=replace)

    def check_measurement_absent(self, job_id: str) -> None:
        """MeasurementExistsError when ``job_id`` already has a measurement (``track`` asks before
        the run, so a run whose record could not be stored is not made)."""
        rows = self._read("SELECT recorded_at, record_json FROM measurements WHERE job_id = ?", (job_id,))
        if rows:
            raise _exists(job_id, rows[0])

    def _put_measurement(self, job_id: str, record: dict, *, replace: bool) -> None:
        """Inside a transaction: the measurement row (see ``save_measurement``) and its event."""
        now = record.get("ended_at") or record.get("started_at") or ""
        update = ("UPDATE SET recorded_at = excluded.recorded_at, record_json = excluded.record_json" if replace
                  else "NOTHING")
        cur = self._exec("INSERT INTO measurements (job_id, recorded_at, record_json) VALUES (?, ?, ?) "
                         f"ON CONFLICT (job_id) DO {update}", (job_id, now, json.dumps(record)))
        if cur.rowcount != 1:  # DO NOTHING: one is there (the transaction keeps nothing)
            row = self._exec("SELECT recorded_at, record_json FROM measurements WHERE job_id = ?", (job_id,)).fetchone()
            raise _exists(job_id, row)
        if self._exec("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone():
            self._exec("INSERT INTO events (job_id, at, kind, detail_json) VALUES (?, ?, 'measured', ?)",
                       (job_id, now, json.dumps({"it_energy_kwh": record.get("it_energy_kwh")})))

    def load_measurement(self, job_id: str) -> dict:
        rows = self._read("SELECT record_json FROM measurements WHERE job_id = ?", (job_id,))
        row = rows[0] if rows else None
        if row is None:
            raise UnknownJobError(f"no measurement for job {job_id!r}; record one with "
                                  f"`carbonsched track --job {job_id} -- CMD`, or pass --measurement FILE")
        return json.loads(row["record_json"])

    def measurements_of(self, job_ids: list[str]) -> dict[str, dict]:
        """The measurement records of many jobs in a few queries, by job id (jobs without one left out)."""
        out: dict[str, dict] = {}
        for rows in self._chunked("SELECT job_id, record_json FROM measurements WHERE job_id IN ({})", job_ids):
            for r in rows:
                out[r["job_id"]] = json.loads(r["record_json"])
        return out

    def list_measurements(self) -> list[dict]:
        return [json.loads(r["record_json"]) for r in
                self._read("SELECT record_json FROM measurements ORDER BY recorded_at, job_id")]

    def add_event(self, job_id: str, now: datetime, kind: str, detail: dict) -> None:
        with self._tx():
            self._event(job_id, now, kind, detail)

    def _event(self, job_id: str, now: datetime, kind: str, detail: dict) -> None:
        """Append to the job's story; error texts pass through ``redact`` (a server may echo a token)."""
        self._exec("INSERT INTO events (job_id, at, kind, detail_json) VALUES (?, ?, ?, ?)",
                        (job_id, iso_utc(now), kind, redact(json.dumps(detail, default=str))))


def _exists(job_id: str, row) -> MeasurementExistsError:
    """The error for a second measurement of ``job_id``: what is there, and how to replace it."""
    try:
        old = json.loads(row["record_json"])
    except (TypeError, ValueError):
        old = {}
    ran = old.get("ran_on") or {}
    place = ", ".join(p for p in (ran.get("where"), ran.get("region_id") or old.get("region_id")) if p)
    kwh = old.get("it_energy_kwh")
    energy = f"{kwh:.6f} kWh" if isinstance(kwh, (int, float)) else "energy unknown"
    return MeasurementExistsError(
        f"job {job_id!r} already has a measurement (recorded {row['recorded_at'] or 'at an unknown time'}, {energy}, "
        f"{f'ran on {place}' if place else 'where it ran not recorded'}); it was not replaced. To replace it, run "
        f"`carbonsched track --job {job_id} --replace -- CMD`; to keep both, track this run under another label")


def _where(states: tuple[str, ...] | None = None, team: str | None = None,
           after: tuple[str, str] | None = None, changed_since: datetime | None = None) -> tuple[str, list]:
    """The ``WHERE`` clause (with its leading space, or empty) and parameters for a job listing."""
    where, params = [], []
    if states:
        where.append(f"state IN ({','.join('?' * len(states))})")
        params += list(states)
    if team is not None:
        where.append("team = ?")
        params.append(team)
    if after is not None:
        where.append("(created_at > ? OR (created_at = ? AND id > ?))")
        params += [after[0], after[0], after[1]]
    if changed_since is not None:  # times are stored as ISO 8601 UTC text: they compare as text
        where.append("updated_at >= ?")
        params.append(iso_utc(changed_since))
    return (f" WHERE {' AND '.join(where)}" if where else ""), params


MIN_LEASE_S = 1.0  # a shorter lease would expire between two heartbeats


def _expiry(now: datetime, lease_s: float) -> str:
    """``now + lease_s`` (at least ``MIN_LEASE_S``), rounded up to the second the store keeps."""
    t = now + timedelta(seconds=max(lease_s, MIN_LEASE_S))
    if t.microsecond:
        t = t.replace(microsecond=0) + timedelta(seconds=1)
    return iso_utc(t)


def _lease_expired(row, now: datetime, older_than_s: float) -> bool:
    if row["lease_expires_at"]:
        return row["lease_expires_at"] <= iso_utc(now)
    claimed = parse_utc(row["claimed_at"]) if row["claimed_at"] else None
    return claimed is None or (now - claimed).total_seconds() >= older_than_s
