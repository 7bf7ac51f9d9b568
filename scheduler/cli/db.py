"""CLI for the job store itself: ``db info``, ``db migrate``, ``db export``, ``db import`` (thin layer).

Every action works on the configured store (``CARBONSCHED_DATABASE_URL`` / ``database_url``, else
``<home>/jobs.sqlite``) or on ``--database PATH|URL``. Moving a person's SQLite store to a team's
PostgreSQL::

    carbonsched db export --database ~/.local/share/carbonsched/jobs.sqlite --output jobs.jsonl
    CARBONSCHED_DATABASE_URL=postgresql://carbonsched@db/carbonsched carbonsched db import jobs.jsonl
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from carbonsched.cli._common import open_store

DESCRIPTION = """The job store: a SQLite file under home (one person), or a team's PostgreSQL database
(CARBONSCHED_DATABASE_URL=postgresql://USER@HOST/DB, or database_url in the config file).
Each action works on the configured store, or on --database PATH|URL.

move a SQLite store to PostgreSQL:
  carbonsched db export --database ~/.local/share/carbonsched/jobs.sqlite --output jobs.jsonl
  CARBONSCHED_DATABASE_URL=postgresql://carbonsched@db/carbonsched carbonsched db import jobs.jsonl
"""


def _info(store) -> dict:
    from carbonsched.run.schema import SCHEMA_VERSION

    counts = store.count_by_state()
    return {"database": store.location, "backend": store.backend.dialect, "schema_version": store.schema_version(),
            "found_version": store.backend.found_version, "latest_version": SCHEMA_VERSION,
            "jobs": sum(counts.values()), "jobs_by_state": dict(sorted(counts.items()))}


def cmd_db_info(a: argparse.Namespace) -> int:
    info = _info(open_store(a.database))
    if a.json:
        print(json.dumps(info, indent=2))
        return 0
    by_state = ", ".join(f"{k} {v}" for k, v in info["jobs_by_state"].items()) or "none"
    print(f"{info['backend']} job store {info['database']}\nschema version {info['schema_version']} "
          f"(latest {info['latest_version']})\njobs: {info['jobs']} ({by_state})")
    return 0


def cmd_db_migrate(a: argparse.Namespace) -> int:
    info = _info(open_store(a.database, create=True))  # opening migrates forward, under a lock on PostgreSQL
    if a.json:
        print(json.dumps(info, indent=2))
    elif info["found_version"] == info["schema_version"]:
        print(f"{info['database']}: already at schema version {info['schema_version']}")
    else:
        print(f"{info['database']}: migrated schema {info['found_version']} -> {info['schema_version']}")
    return 0


def cmd_db_export(a: argparse.Namespace) -> int:
    from carbonsched.run.transfer import write_export

    store = open_store(a.database)
    if a.output in (None, "-"):
        counts = write_export(store, sys.stdout)
    else:  # written beside the target and renamed: never a half-written export
        target = Path(a.output)
        fd, tmp = tempfile.mkstemp(dir=target.parent if str(target.parent) else ".", prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "w") as out:
                counts = write_export(store, out)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    print(f"exported from {store.location}: " + ", ".join(f"{n} {t}" for t, n in counts.items()), file=sys.stderr)
    return 0


def cmd_db_import(a: argparse.Namespace) -> int:
    from carbonsched.run.transfer import import_rows

    if a.file != "-" and not Path(a.file).is_file():
        from carbonsched.errors import UserInputError

        raise UserInputError(f"no export file {a.file}; make one with `carbonsched db export --output FILE`")
    store = open_store(a.database, create=True)
    if a.file == "-":
        counts = import_rows(store, sys.stdin)
    else:
        with open(a.file, encoding="utf-8") as fh:
            counts = import_rows(store, fh)
    print(f"imported into {store.location}: " + ", ".join(f"{n} {t}" for t, n in counts.items()))
    return 0


def register(sub, common) -> None:
    p = sub.add_parser("db", parents=[common], help="the job store: info, migrate, export, import",
                       formatter_class=argparse.RawDescriptionHelpFormatter, description=DESCRIPTION)
    dsub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    target = argparse.ArgumentParser(add_help=False)
    target.add_argument("--database", metavar="PATH|URL",
                        help="a SQLite file or postgresql:// URL (default: CARBONSCHED_DATABASE_URL, database_url, "
                             "else <home>/jobs.sqlite)")
    i = dsub.add_parser("info", parents=[common, target], help="which store, its schema version and jobs by state")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_db_info)
    m = dsub.add_parser("migrate", parents=[common, target],
                        help="bring the store's schema up to this carbonsched's (safe to run from several places)")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=cmd_db_migrate)
    e = dsub.add_parser("export", parents=[common, target], help="every job, attempt, event and measurement as JSON lines")
    e.add_argument("--output", "-o", metavar="FILE", help="write here (default: stdout)")
    e.set_defaults(func=cmd_db_export)
    im = dsub.add_parser("import", parents=[common, target],
                         help="load an export into the store (one transaction: all or nothing)")
    im.add_argument("file", help="a `carbonsched db export` file, or - for stdin")
    im.set_defaults(func=cmd_db_import)
