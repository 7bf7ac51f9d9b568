"""The job store: one SQLite file (WAL) under ``$CARBONSCHED_HOME`` (``Settings.home``).

Tables: ``jobs`` (spec, full plan JSON incl. the forecasts used, state, chosen start),
``attempts`` (every launch attempt: placement, token, outcome, resource id), ``events`` (an
append-only story per job), ``measurements`` (``carbonsched track`` records by job id; a label
need not be a stored job). The schema version is SQLite's ``user_version``; migrations run
forward in one transaction. A file from a newer carbonsched, or one that is not a SQLite
database, is refused with a clear error (never rewritten); a corrupt or read-only file is named
as such, with what to do, on every read and write (never a raw sqlite3 traceback). The file and
its folder are private to the user (0600/0700): plans and job specs may name internal paths.

Concurrency: every write is a short ``BEGIN IMMEDIATE`` transaction (busy timeout 10 s). A job
is claimed with a compare-and-set ``UPDATE ... WHERE state = 'scheduled'`` that also takes a
lease: ``claimed_by`` (the worker), ``claimed_at`` (the clock at the claim, not at the start of the
agent's pass) and ``lease_expires_at``. The owner renews the lease while it launches
(``run/lease.py``); another agent may resume a launching job only once its lease has expired
(``stale_launching``/``reclaim``, checked again inside the reclaiming transaction), so a slow
cloud call is never launched twice. Job states::

    scheduled -> launching -> running -> succeeded | failed
         \\-> cancelled            \\-> failed (launch error, failover exhausted)
"""
from __future__ import annotations

import json
import os
import sqlite3
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from carbonsched.errors import CarbonschedError, ConfigError, UserInputError
from carbonsched.redact import redact
from carbonsched.units import iso_utc, parse_utc

SCHEMA_VERSION = 3
DEFAULT_LEASE_S = 120.0  # a claim holds this long without a heartbeat (renewed every quarter of it)
STATES = ("scheduled", "launching", "running", "succeeded", "failed", "cancelled")
FINAL = ("succeeded", "failed", "cancelled")

MIGRATIONS = {
    1: """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        state TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        start_at TEXT NOT NULL,
        launcher TEXT NOT NULL,
        spec_json TEXT NOT NULL,
        plan_json TEXT NOT NULL,
        claimed_by TEXT,
        claimed_at TEXT,
        resource_id TEXT,
        region_id TEXT,
        instance_type TEXT,
        exit_code INTEGER,
        max_attempts INTEGER NOT NULL DEFAULT 3
    );
    CREATE INDEX jobs_due ON jobs (state, start_at);
    CREATE TABLE attempts (
        job_id TEXT NOT NULL REFERENCES jobs(id),
        attempt INTEGER NOT NULL,
        rank INTEGER,
        launcher TEXT NOT NULL,
        region_id TEXT,
        zone TEXT,
        instance_type TEXT,
        market TEXT,
        token TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        outcome TEXT NOT NULL,
        error_code TEXT,
        message TEXT,
        resource_id TEXT,
        PRIMARY KEY (job_id, attempt)
    );
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL REFERENCES jobs(id),
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        detail_json TEXT NOT NULL
    );
    CREATE INDEX events_job ON events (job_id, seq);
    """,
    2: """
    CREATE TABLE measurements (
        job_id TEXT PRIMARY KEY,
        recorded_at TEXT NOT NULL,
        record_json TEXT NOT NULL
    );
    """,
    3: """
    ALTER TABLE jobs ADD COLUMN lease_expires_at TEXT;
    """,
}


class StoreError(CarbonschedError):
    """The job store cannot be used as it is (corrupt, newer, locked); the message says what to do."""


class UnknownJobError(UserInputError):
    """No job with that id (or prefix)."""


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
    outcome: str  # pending | launched | capacity | error | reconciled
    error_code: str | None
    message: str | None
    resource_id: str | None


def _job(row: sqlite3.Row) -> Job:
    return Job(id=row["id"], name=row["name"], state=row["state"], created_at=parse_utc(row["created_at"]),
               updated_at=parse_utc(row["updated_at"]), start_at=parse_utc(row["start_at"]), launcher=row["launcher"],
               spec=json.loads(row["spec_json"]), plan=json.loads(row["plan_json"]), claimed_by=row["claimed_by"],
               resource_id=row["resource_id"], region_id=row["region_id"], instance_type=row["instance_type"],
               exit_code=row["exit_code"], max_attempts=row["max_attempts"])


def _attempt(row: sqlite3.Row) -> Attempt:
    return Attempt(job_id=row["job_id"], attempt=row["attempt"], rank=row["rank"], launcher=row["launcher"],
                   region_id=row["region_id"], zone=row["zone"], instance_type=row["instance_type"],
                   market=row["market"], token=row["token"], started_at=parse_utc(row["started_at"]),
                   finished_at=parse_utc(row["finished_at"]) if row["finished_at"] else None,
                   outcome=row["outcome"], error_code=row["error_code"], message=row["message"],
                   resource_id=row["resource_id"])


class Store:
    """The job store at ``path`` (created with parents on first use)."""

    def __init__(self, path: str | Path, timeout_s: float = 10.0):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ConfigError(f"cannot create the job store's folder {self.path.parent} ({exc.strerror}); "
                             "point CARBONSCHED_HOME at a writable folder") from None
        self.read_only = self.path.exists() and not (os.access(self.path, os.W_OK)
                                                     and os.access(self.path.parent, os.W_OK))
        if not self.read_only:
            _private_file(self.path)
        try:
            if self.read_only:  # reading works without write access; writes say what to do
                # without a writable folder SQLite cannot create the WAL index: read the file as immutable
                flags = "mode=ro" if os.access(self.path.parent, os.W_OK) else "mode=ro&immutable=1"
                self.db = sqlite3.connect(f"{self.path.resolve().as_uri()}?{flags}", uri=True, timeout=timeout_s,
                                          isolation_level=None, check_same_thread=False)
            else:
                self.db = sqlite3.connect(self.path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
            self.db.row_factory = sqlite3.Row
            self.db.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
            mode = "ro" if self.read_only else self.db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            self.db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(self._db_error(exc)) from None
        self.journal_mode = mode

    def _db_error(self, exc: sqlite3.DatabaseError) -> str:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return f"job store {self.path} is locked by another process ({text}); wait and retry"
        if "readonly" in text or "read-only" in text or "unable to open" in text:
            return (f"job store {self.path} is read-only here ({text}): reading works, but submit, agent and "
                    "cancel need write access to the file and its folder; fix their permissions or point "
                    "CARBONSCHED_HOME at a writable copy")
        if "malformed" in text or "not a database" in text or "corrupt" in text:
            return (f"job store {self.path} is damaged ({text}); keep a copy, try `sqlite3 {self.path} .recover`, "
                    "or move it aside and run again (your jobs' cloud resources are not affected; `carbonsched "
                    "cancel` cannot reach them without the store, so note their ids from the copy)")
        return f"job store {self.path} cannot be used ({text}); check the file and its folder"

    def _read(self, sql: str, params=()) -> list[sqlite3.Row]:
        """A query whose database errors become StoreError (corrupt pages surface on reads too)."""
        try:
            return self.db.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise StoreError(self._db_error(exc)) from None

    @staticmethod
    def path_for(settings) -> Path:
        return Path(settings.home) / "jobs.sqlite"

    @classmethod
    def for_settings(cls, settings) -> "Store":
        return cls(cls.path_for(settings))

    def close(self) -> None:
        self.db.close()

    # -- schema -----------------------------------------------------------------------
    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"job store {self.path} has schema version {version}, newer than this carbonsched "
                             f"({SCHEMA_VERSION}); upgrade carbonsched (the file is left untouched)")
        if version < SCHEMA_VERSION and self.read_only:
            raise StoreError(f"job store {self.path} is read-only here and needs an upgrade to schema {SCHEMA_VERSION} "
                             f"(it has {version}); run carbonsched once with write access to it")
        for v in range(version + 1, SCHEMA_VERSION + 1):
            with self._tx():
                for statement in filter(str.strip, MIGRATIONS[v].split(";")):
                    self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {v}")

    @contextmanager
    def _tx(self):
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise StoreError(self._db_error(exc)) from None
        try:
            yield
            self.db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            self._rollback()
            raise StoreError(self._db_error(exc)) from None
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        try:
            self.db.execute("ROLLBACK")
        except sqlite3.DatabaseError:
            pass  # the transaction is already gone (e.g. the error ended it)

    # -- jobs -------------------------------------------------------------------------
    def add_job(self, *, name: str, spec: dict, plan: dict, start_at: datetime, launcher: str, now: datetime,
                max_attempts: int = 3, job_id: str | None = None) -> Job:
        job_id = job_id or uuid.uuid4().hex[:12]
        with self._tx():
            self.db.execute(
                "INSERT INTO jobs (id, name, state, created_at, updated_at, start_at, launcher, spec_json, plan_json,"
                " max_attempts) VALUES (?, ?, 'scheduled', ?, ?, ?, ?, ?, ?, ?)",
                (job_id, name, iso_utc(now), iso_utc(now), iso_utc(start_at), launcher, json.dumps(spec),
                 json.dumps(plan), max_attempts))
            self._event(job_id, now, "scheduled", {"start_at": iso_utc(start_at), "launcher": launcher})
        return self.get(job_id)

    def get(self, job_id: str) -> Job:
        if not job_id or not job_id.strip():
            raise UnknownJobError("no job id given; list jobs with `carbonsched list`")
        prefix = job_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._read("SELECT * FROM jobs WHERE id = ? OR id LIKE ? ESCAPE '\\' ORDER BY id",
                          (job_id, prefix + "%"))
        exact = [r for r in rows if r["id"] == job_id]
        if exact:
            return _job(exact[0])
        if len(rows) == 1:
            return _job(rows[0])
        if not rows:
            raise UnknownJobError(f"no job {job_id!r}; list jobs with `carbonsched list`")
        raise UnknownJobError(f"job id prefix {job_id!r} is ambiguous ({', '.join(r['id'] for r in rows[:5])}); type more of it")

    def jobs(self, states: tuple[str, ...] | None = None) -> list[Job]:
        if states:
            q = f"SELECT * FROM jobs WHERE state IN ({','.join('?' * len(states))}) ORDER BY created_at, id"
            return [_job(r) for r in self._read(q, states)]
        return [_job(r) for r in self._read("SELECT * FROM jobs ORDER BY created_at, id")]

    def due(self, now: datetime, limit: int = 100) -> list[Job]:
        rows = self._read("SELECT * FROM jobs WHERE state = 'scheduled' AND start_at <= ? ORDER BY start_at, id LIMIT ?",
                          (iso_utc(now), limit))
        return [_job(r) for r in rows]

    def claim(self, job_id: str, worker: str, now: datetime, lease_s: float = DEFAULT_LEASE_S) -> bool:
        """Atomically move a due job from scheduled to launching under a lease held by ``worker``
        until ``now + lease_s``; False if someone else has it."""
        with self._tx():
            cur = self.db.execute(
                "UPDATE jobs SET state = 'launching', claimed_by = ?, claimed_at = ?, lease_expires_at = ?, "
                "updated_at = ? WHERE id = ? AND state = 'scheduled'",
                (worker, iso_utc(now), _expiry(now, lease_s), iso_utc(now), job_id))
            if cur.rowcount == 1:
                self._event(job_id, now, "claimed", {"worker": worker, "lease_s": lease_s})
            return cur.rowcount == 1

    def renew(self, job_id: str, worker: str, now: datetime, lease_s: float) -> bool:
        """Extend ``worker``'s lease on a launching job to ``now + lease_s``; False when it no longer
        holds it (reclaimed after expiry, cancelled, or launched)."""
        with self._tx():
            cur = self.db.execute(
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
            row = self.db.execute("SELECT * FROM jobs WHERE id = ? AND state = 'launching' AND claimed_by IS ?",
                                  (job_id, previous_worker)).fetchone()
            if row is None or not _lease_expired(row, now, older_than_s):
                return False
            self.db.execute("UPDATE jobs SET claimed_by = ?, claimed_at = ?, lease_expires_at = ?, updated_at = ? "
                            "WHERE id = ?", (worker, iso_utc(now), _expiry(now, lease_s), iso_utc(now), job_id))
            self._event(job_id, now, "reclaimed", {"worker": worker, "previous": previous_worker})
            return True

    def set_state(self, job_id: str, state: str, now: datetime, *, expect: tuple[str, ...] | None = None,
                  detail: dict | None = None, **fields) -> bool:
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
            cur = self.db.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE {where}", params)
            if cur.rowcount == 1:
                self._event(job_id, now, state, detail or {k: v for k, v in fields.items() if k != "plan_json"})
            return cur.rowcount == 1

    # -- attempts and events ------------------------------------------------------------
    def begin_attempt(self, job_id: str, *, attempt: int, rank: int | None, launcher: str, placement: dict,
                      token: str, now: datetime) -> Attempt:
        """Record an attempt as 'pending' BEFORE the cloud call, so a crash leaves a trace to reconcile."""
        with self._tx():
            self.db.execute(
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
            self.db.execute(
                "UPDATE attempts SET outcome = ?, finished_at = ?, resource_id = ?, error_code = ?, message = ? "
                "WHERE job_id = ? AND attempt = ?",
                (outcome, iso_utc(now), resource_id, error_code, redact(message) if message else message, job_id, attempt))
            self._event(job_id, now, f"attempt-{outcome}", {"attempt": attempt, "resource_id": resource_id,
                                                             "error_code": error_code, "message": message})

    def attempts(self, job_id: str) -> list[Attempt]:
        return [_attempt(r) for r in self._read("SELECT * FROM attempts WHERE job_id = ? ORDER BY attempt", (job_id,))]

    def events(self, job_id: str) -> list[dict]:
        return [{"at": r["at"], "kind": r["kind"], **json.loads(r["detail_json"])}
                for r in self._read("SELECT * FROM events WHERE job_id = ? ORDER BY seq", (job_id,))]

    # -- measurements (carbonsched track) ----------------------------------------------------
    def save_measurement(self, job_id: str, record: dict) -> None:
        now = record.get("ended_at") or record.get("started_at") or ""
        with self._tx():
            self.db.execute("INSERT OR REPLACE INTO measurements (job_id, recorded_at, record_json) VALUES (?, ?, ?)",
                            (job_id, now, json.dumps(record)))
            if self.db.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone():
                self.db.execute("INSERT INTO events (job_id, at, kind, detail_json) VALUES (?, ?, 'measured', ?)",
                                (job_id, now, json.dumps({"it_energy_kwh": record.get("it_energy_kwh")})))

    def load_measurement(self, job_id: str) -> dict:
        rows = self._read("SELECT record_json FROM measurements WHERE job_id = ?", (job_id,))
        row = rows[0] if rows else None
        if row is None:
            raise UnknownJobError(f"no measurement for job {job_id!r}; record one with "
                                  f"`carbonsched track --job {job_id} -- CMD`, or pass --measurement FILE")
        return json.loads(row["record_json"])

    def list_measurements(self) -> list[dict]:
        return [json.loads(r["record_json"]) for r in
                self._read("SELECT record_json FROM measurements ORDER BY recorded_at, job_id")]

    def add_event(self, job_id: str, now: datetime, kind: str, detail: dict) -> None:
        with self._tx():
            self._event(job_id, now, kind, detail)

    def _event(self, job_id: str, now: datetime, kind: str, detail: dict) -> None:
        """Append to the job's story; error texts pass through ``redact`` (a server may echo a token)."""
        self.db.execute("INSERT INTO events (job_id, at, kind, detail_json) VALUES (?, ?, ?, ?)",
                        (job_id, iso_utc(now), kind, redact(json.dumps(detail, default=str))))


MIN_LEASE_S = 1.0  # a shorter lease would expire between two heartbeats


def _expiry(now: datetime, lease_s: float) -> str:
    """``now + lease_s`` (at least ``MIN_LEASE_S``), rounded up to the second the store keeps."""
    t = now + timedelta(seconds=max(lease_s, MIN_LEASE_S))
    if t.microsecond:
        t = t.replace(microsecond=0) + timedelta(seconds=1)
    return iso_utc(t)


def _lease_expired(row: sqlite3.Row, now: datetime, older_than_s: float) -> bool:
    if row["lease_expires_at"]:
        return row["lease_expires_at"] <= iso_utc(now)
    claimed = parse_utc(row["claimed_at"]) if row["claimed_at"] else None
    return claimed is None or (now - claimed).total_seconds() >= older_than_s


def _private_file(path: Path) -> None:
    """Create ``path`` (and its WAL companions' umask) readable by the user only, or tighten it."""
    try:
        if path.exists():
            if path.stat().st_mode & 0o077:
                os.chmod(path, 0o600)
        else:
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    except OSError:
        pass  # a read-only store: opening it says so
