"""`carbonsched db`: migrate, export and import between a real SQLite file and a real PostgreSQL
server (tests/pgserver.py), through the console script."""
from __future__ import annotations

import json
import sqlite3
import threading
from datetime import datetime, timedelta, timezone

import pytest

from carbonsched.run.schema import SCHEMA_VERSION, statements
from carbonsched.run.store import Store, StoreError

NOW = datetime(2026, 11, 27, 10, 30, tzinfo=timezone.utc)


def populate(store: Store) -> list[str]:
    """Jobs in several states with attempts, events (quotes, unicode, NUL-free control text) and a measurement."""
    ids = []
    for i in range(3):
        j = store.add_job(name=f"job {i} «é» 'q'", spec={"command": f"python train.py --lr {i}e-4", "env": {"A": "b\"c"}},
                          plan={"placements": [{"rank": 1, "region_id": "aws:eu-north-1", "kg": 1.25 + i}]},
                          start_at=NOW + timedelta(hours=i), launcher="local", now=NOW + timedelta(seconds=i))
        ids.append(j.id)
    assert store.claim(ids[0], "agent-1", NOW)
    store.begin_attempt(ids[0], attempt=0, rank=1, launcher="local", placement={"region_id": "aws:eu-north-1"},
                        token="tok-0", now=NOW)
    store.finish_attempt(ids[0], 0, outcome="capacity", now=NOW, error_code="InsufficientInstanceCapacity",
                         message="no p5 in eu-north-1a")
    store.begin_attempt(ids[0], attempt=1, rank=2, launcher="local", placement={"region_id": "aws:eu-west-1"},
                        token="tok-1", now=NOW)
    store.finish_attempt(ids[0], 1, outcome="launched", now=NOW, resource_id="local:/runs/x/attempt-1")
    store.set_state(ids[0], "running", NOW, expect=("launching",), resource_id="local:/runs/x/attempt-1")
    store.set_state(ids[1], "cancelled", NOW, expect=("scheduled",))
    store.save_measurement(ids[0], {"it_energy_kwh": 1.5, "started_at": "2026-11-27T10:30:00Z", "note": "ünï"})
    return ids


def rows(export_text: str) -> list[dict]:
    return [json.loads(line) for line in export_text.splitlines()[1:]]  # without the header (it names the source)


def test_sqlite_to_postgresql_and_back_keeps_every_row(cli, tmp_path, postgres):
    src = tmp_path / "a" / "jobs.sqlite"
    ids = populate(Store(src))
    r = cli("db", "export", "--database", src, "--output", tmp_path / "out.jsonl")
    assert r.returncode == 0, r.stderr
    assert "3 jobs, 2 attempts" in r.stderr
    exported = (tmp_path / "out.jsonl").read_text()
    url = postgres.url()
    r = cli("db", "import", tmp_path / "out.jsonl", extra_env={"CARBONSCHED_DATABASE_URL": url})
    assert r.returncode == 0, r.stderr
    assert "3 jobs, 2 attempts" in r.stdout
    r = cli("db", "export", extra_env={"CARBONSCHED_DATABASE_URL": url})
    assert rows(r.stdout) == rows(exported)
    # and the imported store works as a store: status, a claim, events in their order
    pg = Store(url)
    assert pg.get(ids[0]).state == "running" and pg.get(ids[1]).state == "cancelled"
    assert [a.token for a in pg.attempts(ids[0])] == ["tok-0", "tok-1"]
    assert [e["kind"] for e in pg.events(ids[0])] == [e["kind"] for e in Store(src).events(ids[0])]
    assert pg.load_measurement(ids[0])["note"] == "ünï"
    assert pg.claim_next("agent-2", NOW + timedelta(hours=3)).id == ids[2]
    pg.add_event(ids[2], NOW, "after-import", {})  # event numbering continues after the imported rows
    assert pg.events(ids[2])[-1]["kind"] == "after-import"
    # back into a fresh SQLite file
    r = cli("db", "export", "--output", tmp_path / "pg.jsonl", extra_env={"CARBONSCHED_DATABASE_URL": url})
    back = tmp_path / "b" / "jobs.sqlite"
    r = cli("db", "import", "--database", back, tmp_path / "pg.jsonl")
    assert r.returncode == 0, r.stderr
    assert Store(back).get(ids[2]).state == "launching" and Store(back).get(ids[2]).claimed_by == "agent-2"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_bad_import_writes_nothing_and_names_the_line(cli, tmp_path, backend, request):
    src = tmp_path / "a" / "jobs.sqlite"
    ids = populate(Store(src))
    assert cli("db", "export", "--database", src, "--output", tmp_path / "out.jsonl").returncode == 0
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    target = str(tmp_path / "t" / "jobs.sqlite") if backend == "sqlite" else request.getfixturevalue("postgres").url()
    existing = Store(target if backend == "postgresql" else tmp_path / "t" / "jobs.sqlite")
    existing.add_job(name="theirs", spec={}, plan={}, start_at=NOW, launcher="local", now=NOW)
    cases = {
        "bad-json": (lines[:4] + ["{not json"] + lines[4:], "line 5: not JSON"),
        "unknown-column": (lines[:2] + [json.dumps({"table": "jobs", "row": {"id": "zz", "owner": "x"}})], "no column(s) owner"),
        "unknown-table": (lines[:2] + [json.dumps({"table": "users", "row": {}})], "line 3: expected"),
        "no-header": (lines[1:], "line 1: not a carbonsched store export"),
        "newer": ([json.dumps({**json.loads(lines[0]), "schema_version": SCHEMA_VERSION + 1})] + lines[1:], "upgrade carbonsched"),
        "constraint": (lines[:1] + [json.dumps({"table": "jobs", "row": {"id": "zz"}})], "refused by the database"),
        "duplicate": (lines, None),  # last: it adds one of the file's jobs to the target first
    }
    for name, (content, message) in cases.items():
        f = tmp_path / f"{name}.jsonl"
        f.write_text("\n".join(content) + "\n")
        if name == "duplicate":  # the target already has one of the file's jobs
            Store(target if backend == "postgresql" else tmp_path / "t" / "jobs.sqlite").add_job(
                name="dup", spec={}, plan={}, start_at=NOW, launcher="local", now=NOW, job_id=ids[2])
            message = f"job '{ids[2]}' is already in"
        r = cli("db", "import", "--database", target, f)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, (name, r.stderr)
        names = sorted(j.name for j in existing.jobs())
        assert names in (["theirs"], ["dup", "theirs"]), (name, names)  # nothing from the file landed
        assert len(existing._read("SELECT * FROM attempts")) == 0
    r = cli("db", "import", "--database", target, tmp_path / "missing.jsonl")
    assert r.returncode == 2 and "no export file" in r.stderr


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_an_import_of_values_the_store_cannot_read_back_is_refused(cli, tmp_path, backend, request):
    """Each value every later read depends on is checked at import (it used to be accepted, then
    `list`, `status`, `ledger` failed with a traceback, or exit 2 on every command): the line and
    the field are named and nothing is imported."""
    src = tmp_path / "a" / "jobs.sqlite"
    ids = populate(Store(src))
    assert cli("db", "export", "--database", src, "--output", tmp_path / "out.jsonl").returncode == 0
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    target = str(tmp_path / "t" / "jobs.sqlite") if backend == "sqlite" else request.getfixturevalue("postgres").url()

    def changed(table: str, **values) -> tuple[list[str], int]:
        """The export with the first ``table`` row's ``values`` changed, and that row's line number."""
        out, at = [], None
        for n, line in enumerate(lines, 1):
            doc = json.loads(line)
            if at is None and doc.get("table") == table:
                doc["row"].update(values)
                at, line = n, json.dumps(doc)
            out.append(line)
        return out, at

    cases = [("jobs", {"plan_json": "not json"}, "jobs.plan_json is not JSON"),
             ("jobs", {"spec_json": "[1, 2]"}, "jobs.spec_json must be a JSON object"),
             ("jobs", {"start_at": "tomorrow"}, 'jobs.start_at is "tomorrow", not an ISO 8601 time with its zone'),
             ("jobs", {"created_at": "2026-11-27T10:30:00"}, "jobs.created_at is"),
             ("jobs", {"state": "weird"}, 'jobs.state is "weird", not one of scheduled'),
             ("jobs", {"exit_code": "3"}, "jobs.exit_code is \"3\", not an integer"),
             ("attempts", {"started_at": 5}, "attempts.started_at is 5"),
             ("attempts", {"outcome": "maybe"}, "attempts.outcome"),
             ("events", {"detail_json": "{"}, "events.detail_json is not JSON"),
             ("measurements", {"record_json": "null"}, "measurements.record_json must be a JSON object")]
    for table, values, message in cases:
        content, at = changed(table, **values)
        f = tmp_path / "bad.jsonl"
        f.write_text("\n".join(content) + "\n")
        r = cli("db", "import", "--database", target, f)
        assert r.returncode == 2 and f"line {at}: {message}" in r.stderr, (values, r.stderr)
        assert "nothing was imported" in r.stderr and "Traceback" not in r.stderr
        assert Store(target).jobs() == []  # all or nothing
    # a time in another zone is kept as UTC, the form the store compares as text
    content, _ = changed("jobs", start_at="2026-11-27T12:30:00+02:00")
    (tmp_path / "zone.jsonl").write_text("\n".join(content) + "\n")
    assert cli("db", "import", "--database", target, tmp_path / "zone.jsonl").returncode == 0
    env = {"CARBONSCHED_DATABASE_URL": target} if backend == "postgresql" else {"CARBONSCHED_HOME": str(tmp_path / "t")}
    r = cli("list", "--json", extra_env=env)
    assert r.returncode == 0 and {j["id"] for j in json.loads(r.stdout)["jobs"]} == set(ids), r.stderr
    assert Store(target).get(ids[0]).start_at == NOW


def test_a_stored_row_carbonsched_did_not_write_is_named_not_a_traceback(cli, tmp_path):
    """A store that holds such a row already (changed by hand, or imported before the check): every
    read names the job and the column, exit 1, no traceback."""
    home = tmp_path / "home"
    ids = populate(Store(home / "jobs.sqlite"))
    with sqlite3.connect(home / "jobs.sqlite") as db:
        db.execute("UPDATE jobs SET plan_json = 'not json' WHERE id = ?", (ids[1],))
    env = {"CARBONSCHED_HOME": str(home)}
    for args in (["list", "--json"], ["status", ids[1]]):
        r = cli(*args, extra_env=env)
        assert r.returncode == 1 and f"job {ids[1]} has an unreadable plan_json" in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr
    with sqlite3.connect(home / "jobs.sqlite") as db:
        db.execute("UPDATE jobs SET plan_json = '{}', start_at = 'tomorrow' WHERE id = ?", (ids[1],))
    r = cli("list", "--json", extra_env=env)
    assert r.returncode == 1 and f"job {ids[1]} has an unreadable start_at" in r.stderr, r.stderr


def test_migrate_upgrades_an_old_file_and_reading_commands_create_nothing(cli, tmp_path):
    old = tmp_path / "old.sqlite"
    db = sqlite3.connect(old)
    for v in (1, 2, 3):  # a store written by the carbonsched before the PostgreSQL backend
        for s in statements(v, "sqlite"):
            db.execute(s)
    db.execute("PRAGMA user_version = 3")
    db.execute("INSERT INTO jobs (id, name, state, created_at, updated_at, start_at, launcher, spec_json, plan_json) "
               "VALUES ('abc', 'n', 'scheduled', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', "
               "'2026-01-01T00:00:00Z', 'local', '{}', '{}')")
    db.commit()
    db.close()
    r = cli("db", "migrate", "--database", old)
    assert r.returncode == 0 and f"migrated schema 3 -> {SCHEMA_VERSION}" in r.stdout, r.stdout + r.stderr
    r = cli("db", "migrate", "--database", old)
    assert f"already at schema version {SCHEMA_VERSION}" in r.stdout
    r = cli("db", "info", "--database", old, "--json")
    assert json.loads(r.stdout)["jobs_by_state"] == {"scheduled": 1}
    for action in ("info", "export"):
        r = cli("db", action, "--database", tmp_path / "nope.sqlite")
        assert r.returncode == 2 and "no job store at" in r.stderr
        assert not (tmp_path / "nope.sqlite").exists()


def test_postgresql_agents_starting_together_migrate_once_and_newer_is_refused(postgres):
    url = postgres.url()
    errors, stores = [], []
    barrier = threading.Barrier(6)

    def open_store():
        barrier.wait()
        try:
            stores.append(Store(url))
        except Exception as exc:  # noqa: BLE001 -- the assertion below shows it
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == [] and len(stores) == 6
    assert sorted(s.backend.found_version for s in stores).count(0) == 1  # exactly one of them migrated
    assert {s.schema_version() for s in stores} == {SCHEMA_VERSION}
    stores[0]._exec("UPDATE carbonsched_schema SET version = 99")
    with pytest.raises(StoreError, match="schema version 99, newer"):
        Store(url)
    [s.close() for s in stores]


def test_an_unreachable_or_misnamed_database_says_what_to_do(cli, tmp_path, postgres):
    dead = f"postgresql://carbonsched:hunter2secret@127.0.0.1:{postgres.port + 1}/none"
    r = cli("list", extra_env={"CARBONSCHED_DATABASE_URL": dead})
    assert r.returncode != 0 and "cannot use the PostgreSQL job store" in r.stderr, r.stderr
    assert "hunter2secret" not in r.stderr and "carbonsched:***@" in r.stderr
    r = cli("list", extra_env={"CARBONSCHED_DATABASE_URL": "mysql://x@y/z"})
    assert r.returncode == 2 and "must be a postgresql://" in r.stderr
    r = cli("db", "info", "--database", f"{postgres.admin_url.rsplit('/', 1)[0]}/no_such_db")
    assert r.returncode != 0 and 'database "no_such_db" does not exist' in r.stderr
