"""Moving a job store between databases: JSON lines out of one, into another (``carbonsched db``).

The format: a header line ``{"format": "carbonsched-store", "schema_version": N, "tables": [...]}``,
then one line per row, ``{"table": "jobs", "row": {column: value, ...}}``, tables in parent-first
order (jobs, attempts, events, measurements, tokens: digests only), events in their original order. Values are the
stored ones (ISO-8601 text times, JSON text documents), so a SQLite store exported and imported
into PostgreSQL (or back) reads the same: same ids, states, attempts with their idempotency tokens,
events and measurements. Event sequence numbers are not carried: the target numbers them anew in
the same order.

An import is one transaction: a malformed line, an unknown table or column, a schema version this
carbonsched does not know, or a job id the target already has stops it with the line number, and
nothing is written. So does a value the store could not read back (``_check``): a JSON document
(spec, plan, event detail, measurement) that is not a JSON object, a time that is not ISO 8601
with its zone (kept as UTC ``...Z``, the form the store compares as text), a job state or attempt
outcome carbonsched does not know, a count that is not an integer.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import IO, Iterable, Iterator

from carbonsched.errors import UserInputError
from carbonsched.run.schema import SCHEMA_VERSION, TABLES
from carbonsched.run.store import OUTCOMES, STATES, Store

FORMAT = "carbonsched-store"
_ORDER = {"jobs": "created_at, id", "attempts": "job_id, attempt", "events": "seq", "measurements": "job_id",
          "tokens": "created_at, id"}
_SKIP = {"events": {"seq"}}  # numbered anew by the target
# what the store reads back from each table's columns (``_check``)
_DOCS = {"jobs": ("spec_json", "plan_json"), "events": ("detail_json",), "measurements": ("record_json",)}
_TIMES = {"jobs": ("created_at", "updated_at", "start_at", "claimed_at", "lease_expires_at"),
          "attempts": ("started_at", "finished_at"), "events": ("at",), "measurements": ("recorded_at",),
          "tokens": ("created_at", "last_used_at", "revoked_at")}
_INTS = {"jobs": ("exit_code", "max_attempts"), "attempts": ("attempt", "rank")}
_CHOICES = {"jobs": {"state": STATES},
            "attempts": {"outcome": OUTCOMES}}


def export_rows(store: Store) -> Iterator[dict]:
    """The header, then every row of every table (see the module docstring)."""
    yield {"format": FORMAT, "schema_version": store.schema_version(), "tables": list(TABLES),
           "source": store.location}
    for table in TABLES:
        for row in store.backend.read(f"SELECT * FROM {table} ORDER BY {_ORDER[table]}"):
            yield {"table": table, "row": {k: row[k] for k in row.keys() if k not in _SKIP.get(table, ())}}


def write_export(store: Store, out: IO[str]) -> dict[str, int]:
    """Write the export to ``out``; rows per table."""
    counts = {t: 0 for t in TABLES}
    for line in export_rows(store):
        out.write(json.dumps(line, separators=(",", ":")) + "\n")
        if "table" in line:
            counts[line["table"]] += 1
    return counts


def _parse(lines: Iterable[str]) -> Iterator[tuple[int, dict]]:
    for n, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserInputError(f"line {n}: not JSON ({exc.msg}); is this a `carbonsched db export` file?") from None
        if not isinstance(doc, dict):
            raise UserInputError(f"line {n}: expected a JSON object")
        yield n, doc


def import_rows(store: Store, lines: Iterable[str]) -> dict[str, int]:
    """Load an export into ``store`` in one transaction; rows per table. Nothing is written on error."""
    rows = _parse(lines)
    first = next(rows, None)
    if first is None:
        raise UserInputError("the import is empty; expected a `carbonsched db export` file")
    n, header = first
    if header.get("format") != FORMAT:
        raise UserInputError(f"line {n}: not a carbonsched store export (no \"format\": \"{FORMAT}\" header)")
    version = header.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise UserInputError(f"line {n}: the export has schema version {version!r}; this carbonsched reads up to "
                             f"{SCHEMA_VERSION}: upgrade carbonsched")
    columns = {t: _columns(store, t) for t in TABLES}
    counts = {t: 0 for t in TABLES}
    with store._tx():
        for n, doc in rows:
            table, row = doc.get("table"), doc.get("row")
            if table not in columns or not isinstance(row, dict):
                raise UserInputError(f"line {n}: expected {{\"table\": one of {', '.join(TABLES)}, \"row\": {{...}}}}")
            unknown = sorted(set(row) - columns[table])
            if unknown:
                raise UserInputError(f"line {n}: table {table} has no column(s) {', '.join(unknown)}")
            row = _check(n, table, row)
            if table == "jobs" and store.backend.execute("SELECT 1 FROM jobs WHERE id = ?", (row.get("id"),)).fetchone():
                raise UserInputError(f"line {n}: job {row.get('id')!r} is already in {store.location}; nothing was "
                                     "imported (import into an empty store, or remove those jobs from the file)")
            names = sorted(row)
            try:
                store.backend.execute(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                                      [row[k] for k in names])
            except Exception as exc:  # noqa: BLE001 -- a constraint the row breaks: say which line, keep nothing
                raise UserInputError(f"line {n}: {table} row refused by the database ({' '.join(str(exc).split())}); "
                                     "nothing was imported") from None
            counts[table] += 1
    return counts


def _columns(store: Store, table: str) -> set[str]:
    cur = store.backend.execute(f"SELECT * FROM {table} WHERE 1 = 0")
    return {d[0] for d in cur.description} - _SKIP.get(table, set())


def _check(n: int, table: str, row: dict) -> dict:
    """``row`` as the store can read it back (module docstring), else UserInputError naming line ``n``
    and the field: nothing of the import is kept."""
    def bad(column: str, what: str) -> UserInputError:
        return UserInputError(f"line {n}: {table}.{column} {what}; nothing was imported (fix that line of the "
                              "export, or export the store again)")

    row = dict(row)
    for column in _DOCS.get(table, ()):
        if column in row:
            try:
                doc = json.loads(row[column]) if isinstance(row[column], str) else None
            except json.JSONDecodeError as exc:
                raise bad(column, f"is not JSON ({exc.msg})") from None
            if not isinstance(doc, dict):
                raise bad(column, f"must be a JSON object written as text, got {_show(row[column])}")
    for column in _TIMES.get(table, ()):
        value = row.get(column)
        if value is None or (table == "measurements" and value == ""):  # a record without times is stored with ""
            continue
        try:
            t = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value)
        except (TypeError, ValueError, AttributeError):
            t = None
        if t is None or t.tzinfo is None:
            raise bad(column, f"is {_show(value)}, not an ISO 8601 time with its zone (e.g. 2026-11-27T14:00:00Z)")
        row[column] = t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    for column in _INTS.get(table, ()):
        if row.get(column) is not None and (not isinstance(row[column], int) or isinstance(row[column], bool)):
            raise bad(column, f"is {_show(row[column])}, not an integer")
    for column, choices in _CHOICES.get(table, {}).items():
        if column in row and row[column] not in choices:
            raise bad(column, f"is {_show(row[column])}, not one of {', '.join(choices)}")
    return row


def _show(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
