"""A real PostgreSQL server for tests and benchmarks, started from the PostgreSQL binaries.

``PostgresServer()`` runs ``initdb`` into a temporary folder and ``pg_ctl start`` on a free
loopback port (trust authentication, loopback only, the socket in the data folder); ``url(schema)``
gives a ``postgresql://`` URL whose ``search_path`` is a fresh schema, so each test gets an empty
store on one server. As root (PostgreSQL refuses to run as root) the server runs as the
``postgres`` user that Debian's package creates. Binaries are found on PATH or under
``/usr/lib/postgresql/*/bin`` (Debian's ``postgresql`` package; ``.ci/run`` installs it).

``durable=False`` (tests) turns fsync off; benchmarks keep the defaults.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path


def find_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    hits = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return hits[-1] if hits else None


def missing_reason() -> str | None:
    """Why no server can be started here, or None."""
    if not (find_bin("initdb") and find_bin("pg_ctl")):
        return "PostgreSQL binaries (initdb, pg_ctl) not found: apt-get install postgresql"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed: pip install -e '.[test]'"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run the server as"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self, durable: bool = False, max_connections: int = 300):
        reason = missing_reason()
        if reason:
            raise RuntimeError(reason)
        self.tmp = Path(tempfile.mkdtemp(prefix="carbonsched-pg-"))
        self.data = self.tmp / "data"
        self.port = free_port()
        self._as = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.tmp, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self._run([find_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                   "--no-instructions"])
        opts = [f"-p {self.port}", "-c listen_addresses=127.0.0.1", f"-k {self.data}",
                f"-c max_connections={max_connections}"]
        if not durable:
            opts += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run([find_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.tmp / "log.txt"), "-w", "-t", "60",
                   "-o", " ".join(opts), "start"])
        self.admin_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, argv: list[str]) -> None:
        done = subprocess.run(self._as + argv, capture_output=True, text=True, cwd=self.tmp)
        if done.returncode != 0:
            log = (self.tmp / "log.txt").read_text() if (self.tmp / "log.txt").exists() else ""
            raise RuntimeError(f"{argv[0]} failed: {done.stdout}{done.stderr}{log}")

    def url(self, schema: str | None = None) -> str:
        """A URL on a fresh, empty schema (``search_path``) of the server's database."""
        import psycopg

        schema = schema or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url, autocommit=True) as db:
            db.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        return f"{self.admin_url}?options=-csearch_path%3D{schema}"

    def stop(self) -> None:
        subprocess.run(self._as + [find_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                       capture_output=True, cwd=self.tmp)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "PostgresServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
