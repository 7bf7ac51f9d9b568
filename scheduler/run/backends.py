"""The two databases a job store can live in, behind one small connection interface.

``Store`` (``store.py``) writes its SQL once, with ``?`` parameters; a backend runs it:

- ``SQLiteBackend``: one file (WAL), the default for one person. Writes are ``BEGIN IMMEDIATE``
  transactions (busy timeout 10 s), which serialise writers: a claim cannot race.
- ``PostgresBackend``: a team's database, reached with psycopg 3 (``carbonsched[postgres]``,
  imported only here, only when a ``postgresql://`` URL is configured). Transactions are READ
  COMMITTED; rows a transaction is about to change are taken with ``SELECT ... FOR UPDATE`` (and
  ``SKIP LOCKED`` when claiming due jobs, so agents claim different jobs instead of queueing on
  one row).

Both turn their drivers' errors into ``StoreError`` with what to do, name the database without its
password, and migrate the schema forward on open (``schema.py``; ``found_version`` is what the
store had before).
"""
from __future__ import annotations

import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from carbonsched.errors import CarbonschedError, ConfigError
from carbonsched.run.schema import SCHEMA_VERSION, statements

PG_SCHEMES = ("postgresql", "postgres")
_PG_LOCK_KEY = 0x63617262  # "carb": the advisory lock migrations hold


class StoreError(CarbonschedError):
    """The job store cannot be used as it is (corrupt, newer, locked, unreachable); the message says what to do."""


def is_database_url(target: str | Path) -> bool:
    return isinstance(target, str) and urlsplit(target).scheme in PG_SCHEMES


def safe_url(url: str) -> str:
    """``url`` without its password, for messages and ``db`` output."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def open_backend(target: str | Path, timeout_s: float = 10.0):
    """The backend for a ``postgresql://`` URL or a SQLite file path."""
    if is_database_url(target):
        return PostgresBackend(str(target), timeout_s)
    if isinstance(target, str) and "://" in target:
        raise ConfigError(f"job store {target!r}: only postgresql:// URLs or SQLite file paths are supported")
    return SQLiteBackend(Path(target), timeout_s)


class _Backend:
    """What both backends share: reads whose driver errors become ``StoreError`` with the
    backend's own explanation (each backend has ``execute`` and ``_error``; ``driver_error`` is
    its driver's base exception)."""

    driver_error: type[Exception] = Exception

    def close(self) -> None:
        self.db.close()

    def read(self, sql: str, params=()) -> list:
        """A query's rows (corrupt pages and dropped connections surface on reads too)."""
        try:
            return self.execute(sql, params).fetchall()
        except self.driver_error as exc:
            raise StoreError(self._error(exc)) from None


class SQLiteBackend(_Backend):
    dialect = "sqlite"
    driver_error = sqlite3.DatabaseError
    lock = ""  # BEGIN IMMEDIATE already holds the write lock
    skip_locked = ""

    def __init__(self, path: Path, timeout_s: float = 10.0):
        self.path, self.timeout_s = Path(path), timeout_s
        self.location = str(self.path)
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
            self.journal_mode = "ro" if self.read_only else self.db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            self.db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(self._error(exc)) from None

    def reopen(self) -> "SQLiteBackend":
        return SQLiteBackend(self.path, self.timeout_s)

    def _error(self, exc: Exception) -> str:
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

    def execute(self, sql: str, params=()):
        """Inside ``tx()``: errors end the transaction there."""
        return self.db.execute(sql, params)

    @contextmanager
    def tx(self):
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise StoreError(self._error(exc)) from None
        try:
            yield
            self.db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            self._rollback()
            raise StoreError(self._error(exc)) from None
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        try:
            self.db.execute("ROLLBACK")
        except sqlite3.DatabaseError:
            pass  # the transaction is already gone (e.g. the error ended it)

    def schema_version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self) -> None:
        version = self.found_version = self.schema_version()
        _check_version(self.location, version, self.read_only)
        for v in range(version + 1, SCHEMA_VERSION + 1):
            with self.tx():
                for statement in statements(v, self.dialect):
                    self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {v}")


class PostgresBackend(_Backend):
    dialect = "postgresql"
    lock = " FOR UPDATE"
    skip_locked = " FOR UPDATE SKIP LOCKED"
    read_only = False
    journal_mode = None

    def __init__(self, url: str, timeout_s: float = 10.0):
        self.url, self.timeout_s = url, timeout_s
        self.location = safe_url(url)
        self.path = None
        try:
            import psycopg
            from psycopg.rows import dict_row
        except ImportError:
            raise ConfigError("a postgresql:// job store needs psycopg: pip install 'carbonsched[postgres]'") from None
        self._psycopg, self.driver_error = psycopg, psycopg.Error
        try:
            self.db = psycopg.connect(url, autocommit=True, row_factory=dict_row,
                                      connect_timeout=max(1, int(timeout_s)), application_name="carbonsched")
        except psycopg.Error as exc:
            raise StoreError(self._error(exc)) from None
        except Exception as exc:  # noqa: BLE001 -- libpq's URL parser raises ProgrammingError and friends
            raise ConfigError(f"job store URL {self.location} is not usable: {exc}") from None
        self._sql: dict[str, str] = {}
        self._in_tx = False
        try:
            self._migrate()
        except psycopg.Error as exc:
            self.db.close()
            raise StoreError(self._error(exc)) from None

    def reopen(self) -> "PostgresBackend":
        return PostgresBackend(self.url, self.timeout_s)

    def _error(self, exc: Exception) -> str:
        text = " ".join(str(exc).split()).replace(self.url, self.location)
        if isinstance(exc, self._psycopg.OperationalError):
            return (f"cannot use the PostgreSQL job store {self.location} ({text}); check that the server runs and "
                    "that CARBONSCHED_DATABASE_URL (or database_url in the config file) names it, its user and database")
        return f"PostgreSQL job store {self.location} failed ({text})"

    def _convert(self, sql: str) -> str:
        """``?`` parameters as psycopg's ``%s`` (the store's SQL has no ``?`` or ``%`` literals)."""
        out = self._sql.get(sql)
        if out is None:
            out = self._sql[sql] = sql.replace("%", "%%").replace("?", "%s")
        return out

    def execute(self, sql: str, params=()):
        return self.db.execute(self._convert(sql), params)

    @contextmanager
    def tx(self):
        if self._in_tx:
            raise RuntimeError("nested job-store transaction")
        self._in_tx = True
        try:
            with self.db.transaction():
                yield
        except self._psycopg.Error as exc:
            raise StoreError(self._error(exc)) from None
        finally:
            self._in_tx = False

    def schema_version(self) -> int:
        exists = self.db.execute("SELECT to_regclass('carbonsched_schema') IS NOT NULL AS e").fetchone()["e"]
        if not exists:
            return 0
        row = self.db.execute("SELECT version FROM carbonsched_schema").fetchone()
        return row["version"] if row else 0

    def _migrate(self) -> None:
        self.found_version = self.schema_version()
        if self.found_version == SCHEMA_VERSION:
            return  # the common case takes no lock
        with self.db.transaction():
            self.db.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK_KEY,))
            self.db.execute("CREATE TABLE IF NOT EXISTS carbonsched_schema (version INTEGER NOT NULL)")
            version = self.found_version = self.schema_version()  # again, under the lock: another agent may have migrated
            _check_version(self.location, version, False)
            for v in range(version + 1, SCHEMA_VERSION + 1):
                for statement in statements(v, self.dialect):
                    self.db.execute(statement)
            if version == 0:
                self.db.execute("INSERT INTO carbonsched_schema (version) VALUES (%s)", (SCHEMA_VERSION,))
            else:
                self.db.execute("UPDATE carbonsched_schema SET version = %s", (SCHEMA_VERSION,))


def _check_version(location: str, version: int, read_only: bool) -> None:
    if version > SCHEMA_VERSION:
        raise StoreError(f"job store {location} has schema version {version}, newer than this carbonsched "
                         f"({SCHEMA_VERSION}); upgrade carbonsched (the store is left untouched)")
    if version < SCHEMA_VERSION and read_only:
        raise StoreError(f"job store {location} is read-only here and needs an upgrade to schema {SCHEMA_VERSION} "
                         f"(it has {version}); run carbonsched once with write access to it")


def _private_file(path: Path) -> None:
    """Create ``path`` readable by the user only, or tighten it."""
    try:
        if path.exists():
            if path.stat().st_mode & 0o077:
                os.chmod(path, 0o600)
        else:
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    except OSError:
        pass  # a read-only store: opening it says so
