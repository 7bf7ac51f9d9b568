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
nothing is written.
"""
from __future__ import annotations

import json
from typing import IO, Iterable, Iterator

from carbonsched.errors import UserInputError
from carbonsched.run.schema import SCHEMA_VERSION, TABLES
from carbonsched.run.store import Store

FORMAT = "carbonsched-store"
_ORDER = {"jobs": "created_at, id", "attempts": "job_id, attempt", "events": "seq", "measurements": "job_id",
          "tokens": "created_at, id"}
_SKIP = {"events": {"seq"}}  # numbered anew by the target


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
