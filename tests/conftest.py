"""Shared fixtures: the installed console script, a fixed "now", paths to repo and shared data."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
EXAMPLE_JOB = REPO / "examples" / "job.toml"
NOW = datetime(2026, 11, 27, 10, 30, tzinfo=timezone.utc)
NOW_ISO = "2026-11-27T10:30:00Z"


def _entry_point() -> list[str]:
    script = Path(sys.executable).with_name("carbonsched")
    if script.exists():
        return [str(script)]
    found = shutil.which("carbonsched")
    if found:
        return [found]
    pytest.fail("the carbonsched console script is not installed; run pip install -e '.[test]'")


@pytest.fixture
def cli(tmp_path):
    """Run the real ``carbonsched`` console script in a clean environment; returns CompletedProcess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBONSCHED_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")  # no user config leaks in
    env["XDG_DATA_HOME"] = str(tmp_path / "share")
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")

    def run(*args: str, input: str | None = None, extra_env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(_entry_point() + [str(a) for a in args], capture_output=True, text=True,
                              env={**env, **(extra_env or {})}, input=input, timeout=120, cwd=tmp_path)

    return run


def poll_status(cli, job_id: str, env: dict, until: str = "succeeded", timeout: float = 30.0) -> dict:
    """`carbonsched status JOB --json` until the job reaches ``until`` (or the time is up): the last document."""
    import json
    import time

    deadline = time.monotonic() + timeout
    while True:
        doc = json.loads(cli("status", job_id, "--json", extra_env=env).stdout)
        if doc["state"] == until or time.monotonic() > deadline:
            return doc
        time.sleep(0.1)


@pytest.fixture
def now():
    return NOW


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server for the session (tests/pgserver.py). Without the binaries the
    tests that need it skip locally; under CI (``CI`` set) they fail, so a missing install step
    cannot hide behind a skip."""
    from pgserver import PostgresServer, missing_reason

    reason = missing_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL store tests: {reason}")
        pytest.skip(reason)
    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_target(request, tmp_path):
    """Where a test's job store lives, once per backend: a SQLite file path, or a URL on a fresh
    schema of the session's PostgreSQL server."""
    if request.param == "sqlite":
        return tmp_path / "store" / "jobs.sqlite"
    return request.getfixturevalue("postgres").url()


@pytest.fixture
def env(tmp_path, store_target):
    """(settings, store, local launcher) for the job-lifecycle tests; a test using it runs on SQLite
    and on PostgreSQL."""
    from carbonsched.providers.cloud.local import LocalLauncher
    from carbonsched.run.store import Store
    from carbonsched.settings import Settings

    url = store_target if isinstance(store_target, str) else None
    settings = Settings(home=tmp_path / "home", database_url=url)
    store = Store.for_settings(settings)
    yield settings, store, LocalLauncher(settings.home)
    store.close()


@pytest.fixture
def carbonsched_env(tmp_path, monkeypatch):
    """A test's own carbonsched environment: no CARBONSCHED_* variable from outside, a home and config
    folder under tmp_path, the embedded profile as intensity source (offline, reproducible)."""
    for k in [k for k in os.environ if k.startswith("CARBONSCHED_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("CARBONSCHED_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CARBONSCHED_INTENSITY_SOURCE", "profile")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path
