"""The measurement record as data: its identity, the marked console line that carries it home, and
the sum of a run's segments.

The tracker (``measure/track.py``) writes a record; launchers bring it back (the local launcher
reads the run's ``measurement.json``, the EC2/GCE launchers find it in the console output as a
marked line); the agent (``run/``) stores it, summing the segments of an interruptible run. Those
layers sit on both sides of ``run``, so the record's plain-data operations live here, below them.

Marked line: ``carbonsched-measurement: <base64 of zlib-compressed JSON>``, one line, printed by
the boot script after the tracked command ends. A console keeps the newest output (EC2: the last
64 KiB), so the last marked line is the record; a compressed record of a day-long run on 8 GPUs
is ~2 KiB.

Segments (``merge_segments``): energies, samples and wall time add up; hours of the ``hourly``
split add up per UTC hour; per-GPU figures add up by device index (mean power re-weighted by
each segment's wall time); the exit code is the last segment's; methods that differ between
segments read ``mixed``; ``segments`` lists each part's start, end, wall time, energy and exit.
Merging is idempotent: a record whose segments (same start and end) are all in the sum already
adds nothing, so a segment merged twice is counted once.
"""
from __future__ import annotations

import base64
import json
import zlib

SCHEMA = "carbonsched.measurement"
SCHEMA_VERSION = 1
MARK = "carbonsched-measurement: "


def is_record(doc) -> bool:
    return isinstance(doc, dict) and doc.get("schema") == SCHEMA and doc.get("schema_version") == SCHEMA_VERSION


def encode_marked(record: dict) -> str:
    """The record as one marked console line (no newline)."""
    raw = json.dumps(record, separators=(",", ":"), sort_keys=True).encode()
    return MARK + base64.b64encode(zlib.compress(raw, 9)).decode("ascii")


def decode_marked(text: str | None) -> dict | None:
    """The last well-formed record in console ``text`` (None when there is none): a line cut
    short by the console's size limit, or garbage after the mark, is skipped."""
    for line in reversed((text or "").splitlines()):
        at = line.find(MARK)
        if at < 0:
            continue
        try:
            doc = json.loads(zlib.decompress(base64.b64decode(line[at + len(MARK):].strip(), validate=True)))
        except (ValueError, zlib.error):
            continue
        if is_record(doc):
            return doc
    return None


def _sum_hourly(records: list[dict]) -> list[dict]:
    hours: dict[str, float] = {}
    for r in records:
        for row in r.get("hourly") or []:
            hours[row["hour"]] = hours.get(row["hour"], 0.0) + float(row["it_energy_kwh"])
    return [{"hour": h, "it_energy_kwh": e} for h, e in sorted(hours.items())]


def _method(values: list[str]) -> str:
    distinct = list(dict.fromkeys(values))
    return distinct[0] if len(distinct) == 1 else "mixed"


def _sum_devices(records: list[dict]) -> list[dict]:
    by_index: dict[int, dict] = {}
    for r in records:
        wall = float(r.get("wall_seconds") or 0.0)
        for d in (r.get("gpu") or {}).get("devices") or []:
            acc = by_index.setdefault(d["index"], {**d, "energy_kwh": 0.0, "samples": 0, "missed_samples": 0,
                                                   "_w": 0.0, "_pw": 0.0, "methods": []})
            acc["energy_kwh"] += float(d.get("energy_kwh") or 0.0)
            acc["samples"] += int(d.get("samples") or 0)
            acc["missed_samples"] += int(d.get("missed_samples") or 0)
            acc["_w"] += wall
            acc["_pw"] += wall * float(d.get("mean_power_w") or 0.0)
            acc["methods"].append(d.get("method", ""))
            for key in ("utilisation_max_pct",):
                if d.get(key) is not None:
                    acc[key] = max(acc.get(key) or 0.0, d[key])
    out = []
    for index in sorted(by_index):
        d = by_index[index]
        w, pw, methods = d.pop("_w"), d.pop("_pw"), d.pop("methods")
        d["method"] = _method(methods)
        d["mean_power_w"] = pw / w if w > 0 else d.get("mean_power_w")
        out.append(d)
    return out


def merge_segments(records: list[dict]) -> dict:
    """One record for a run made of ``records`` (its segments, in order); see the module docstring."""
    if not records:
        raise ValueError("no segment records to merge")
    records = _distinct(records)
    if len(records) == 1:
        return dict(records[0])
    first, last = records[0], records[-1]
    part = {k: {"method": _method([r[k]["method"] for r in records]),
                "energy_kwh": sum(float(r[k]["energy_kwh"]) for r in records)} for k in ("gpu", "cpu", "memory")}
    part["gpu"]["devices"] = _sum_devices(records)
    part["cpu"]["domains"] = first["cpu"].get("domains", [])
    part["memory"]["memory_gib"] = first["memory"].get("memory_gib")
    return {
        **first,
        "exit_code": last["exit_code"], "started_at": first["started_at"], "ended_at": last["ended_at"],
        "wall_seconds": sum(float(r["wall_seconds"]) for r in records),
        "signals_forwarded": [s for r in records for s in r.get("signals_forwarded") or []],
        **part,
        "it_energy_kwh": sum(p["energy_kwh"] for p in part.values()),
        "hourly": _sum_hourly(records),
        "samples": sum(int(r.get("samples") or 0) for r in records),
        "warnings": list(dict.fromkeys(w for r in records for w in r.get("warnings") or [])),
        "segments": [s for r in records for s in (r.get("segments") or [_segment(r)])],
    }


def _distinct(records: list[dict]) -> list[dict]:
    """``records`` without those whose segments (by start and end) are all in an earlier one: a
    segment merged twice (an agent retrying) is summed once."""
    seen: set = set()
    out = []
    for r in records:
        keys = {(s.get("started_at"), s.get("ended_at")) for s in r.get("segments") or [r]}
        if keys <= seen:
            continue
        seen |= keys
        out.append(r)
    return out


def _segment(r: dict) -> dict:
    return {"started_at": r["started_at"], "ended_at": r["ended_at"], "wall_seconds": r["wall_seconds"],
            "it_energy_kwh": r["it_energy_kwh"], "exit_code": r["exit_code"]}
