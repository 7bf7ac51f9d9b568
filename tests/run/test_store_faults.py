"""The job store under faults: damaged pages, a read-only filesystem, an empty id (issue 11).
Real SQLite files; the read-only case mounts a real read-only tmpfs (skipped where mounting is
not allowed)."""
from __future__ import annotations

import shutil
import subprocess
from datetime import datetime, timezone

import pytest

from carbonsched.run.store import Store, StoreError, UnknownJobError

NOW = datetime(2026, 11, 27, 10, 30, tzinfo=timezone.utc)


def _store_with_jobs(path, n=40):
    store = Store(path)
    ids = [store.add_job(name=f"j{i}", spec={"command": "true", "pad": "x" * 2000}, plan={"placements": []},
                         start_at=NOW, launcher="local", now=NOW).id for i in range(n)]
    store.close()
    return ids


def test_damaged_pages_give_a_message_not_a_traceback(cli, tmp_path):
    home = tmp_path / "home"
    ids = _store_with_jobs(home / "jobs.sqlite")
    raw = bytearray((home / "jobs.sqlite").read_bytes())
    page = 4096
    for start in range(2 * page, len(raw) - page, 3 * page):  # scribble over data pages, keep the header
        raw[start + 100:start + 3000] = b"\xde\xad\xbe\xef" * 725
    (home / "jobs.sqlite").write_bytes(bytes(raw))
    env = {"CARBONSCHED_HOME": str(home)}
    for args in (["list"], ["agent", "--once"]):  # full scans reach the damaged pages
        r = cli(*args, extra_env=env)
        assert r.returncode != 0 and "Traceback" not in r.stderr, (args, r.stderr)
        assert "damaged" in r.stderr and ".recover" in r.stderr, (args, r.stderr)
    for job_id in ids[::7]:  # a row on an intact page still reads; any other says what happened
        for args in (["status", job_id], ["cancel", job_id]):
            r = cli(*args, extra_env=env)
            assert "Traceback" not in r.stderr and (r.returncode == 0 or "damaged" in r.stderr), (args, r.stderr)
    with pytest.raises(StoreError, match="damaged"):
        Store(home / "jobs.sqlite").jobs()


@pytest.fixture
def read_only_dir(tmp_path):
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if shutil.which("mount") is None or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                                                        capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", str(mnt)], capture_output=True)


def test_a_read_only_store_reads_and_refuses_writes_with_the_reason(cli, tmp_path, read_only_dir):
    src = tmp_path / "src"
    ids = _store_with_jobs(src / "jobs.sqlite", n=2)
    shutil.copy(src / "jobs.sqlite", read_only_dir / "jobs.sqlite")
    assert subprocess.run(["mount", "-o", "remount,ro", str(read_only_dir)]).returncode == 0
    env = {"CARBONSCHED_HOME": str(read_only_dir)}
    r = cli("list", extra_env=env)
    assert r.returncode == 0 and ids[0] in r.stdout, r.stderr
    r = cli("cancel", ids[0], extra_env=env)
    assert r.returncode != 0 and "read-only" in r.stderr and "move it aside" not in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_an_empty_id_matches_no_job(cli, tmp_path):
    home = tmp_path / "home"
    (only,) = _store_with_jobs(home / "jobs.sqlite", n=1)
    r = cli("cancel", "", extra_env={"CARBONSCHED_HOME": str(home)})
    assert r.returncode == 2 and "no job id given" in r.stderr
    assert Store(home / "jobs.sqlite").get(only).state == "scheduled"
    with pytest.raises(UnknownJobError):
        Store(home / "jobs.sqlite").get("  ")
