"""JSON Schemas (draft 2020-12) for job files, policy files and ``plan --json`` output.

They are generated from the code's own definitions, so they cannot drift from what is checked:

* job: ``carbonsched.spec.job.SCHEMA`` (key -> kind), ``REQUIRED``;
* policy: ``carbonsched.spec.policy_file.SCHEMA``, ``REQUIRED``;
* plan: ``carbonsched.models.PLACEMENT_FIELDS`` typed from the ``Placement`` dataclass's
  annotations, plus the top-level keys of ``Plan.to_dict``.

TOML values map to JSON as a TOML parser returns them (a job file read with ``tomllib`` and
dumped with ``json`` validates; TOML datetimes must then be ISO strings).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from datetime import datetime

from carbonsched.errors import UserInputError, did_you_mean
from carbonsched.models import PLACEMENT_FIELDS, SCHEMA_VERSION, Placement
from carbonsched.spec import job as job_file, policy_file

DRAFT = "https://json-schema.org/draft/2020-12/schema"
NAMES = ("job", "policy", "plan")

_STR = {"type": "string", "minLength": 1}
_NUM = {"type": "number", "minimum": 0}
_KINDS = {
    "number": _NUM,
    "duration": {"anyOf": [_NUM, {"type": "string", "pattern": r"^\s*[-+]?\d+(\.\d+)?\s*(m|min|h|d|w)?\s*$"}]},
    "time": {"type": "string", "description": "ISO 8601; UTC when no offset is given"},
    "strlist": {"anyOf": [_STR, {"type": "array", "items": _STR, "minItems": 1}]},
    "intlist": {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1}]},
    "numbermap": {"type": "object", "additionalProperties": _NUM, "minProperties": 1},
    "strmap": {"type": "object", "additionalProperties": {"type": ["string", "number"]},
               "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}},
    "pathmap": {"type": "object", "additionalProperties": {"type": "string", "minLength": 1}, "minProperties": 1},
}


def _kind(kind) -> dict:
    if isinstance(kind, dict):
        return {"type": "object", "additionalProperties": False, "properties": {k: _kind(v) for k, v in kind.items()}}
    if kind is str:
        return dict(_STR)
    if kind is bool:
        return {"type": "boolean"}
    if kind is int:
        return {"type": "integer", "minimum": 1}
    return dict(_KINDS[kind])


def _table_schema(schema: dict, required, title: str) -> dict:
    out = {"$schema": DRAFT, "title": title, **_kind(schema)}
    out["required"] = list(required)
    return out


def job_schema() -> dict:
    return _table_schema(job_file.SCHEMA, job_file.REQUIRED, "carbonsched job file")


def policy_schema() -> dict:
    out = _table_schema(policy_file.SCHEMA, policy_file.REQUIRED, "carbonsched policy file")
    out["properties"]["version"] = {"const": policy_file.POLICY_VERSION}
    return out


def _json_type(tp) -> dict:
    """JSON Schema of a Placement field annotation."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        inner = _json_type(args[0]) if len(args) == 1 else {}
        return {"anyOf": [inner, {"type": "null"}]} if type(None) in typing.get_args(tp) else inner
    if origin is tuple:
        return {"type": "array", "items": _json_type(typing.get_args(tp)[0])}
    if tp is float:
        return {"type": "number"}
    if tp is int:
        return {"type": "integer"}
    if tp is str:
        return {"type": "string"}
    if tp is datetime:
        return {"type": "string", "format": "date-time"}
    return {}  # object: described separately


_SEGMENT = {"type": "object", "required": ["start", "end", "overhead_hours"],
            "properties": {"start": {"type": "string", "format": "date-time"},
                           "end": {"type": "string", "format": "date-time"},
                           "overhead_hours": {"type": "number", "minimum": 0}}}
_INTERRUPTIBLE = {"anyOf": [{"type": "null"}, {
    "type": "object", "required": ["segments", "resumes", "kg_co2e", "energy_kwh", "cost_usd", "occupied_hours"],
    "properties": {"segments": {"type": "array", "items": _SEGMENT, "minItems": 1},
                   "resumes": {"type": "integer", "minimum": 0}, "kg_co2e": {"type": "number"},
                   "energy_kwh": {"type": "number"}, "cost_usd": {"type": "number"},
                   "occupied_hours": {"type": "number"}}}]}


def placement_schema() -> dict:
    hints = typing.get_type_hints(Placement)
    props = {}
    for name in PLACEMENT_FIELDS:
        if name == "region_id":
            props[name] = {"type": "string", "pattern": "^[a-z]+:"}
        elif name == "interruptible":
            props[name] = _INTERRUPTIBLE
        else:
            props[name] = _json_type(hints[name])
    assert {f.name for f in dataclasses.fields(Placement)} >= set(PLACEMENT_FIELDS) - {"region_id"}
    return {"type": "object", "required": list(PLACEMENT_FIELDS), "properties": props}


def plan_schema() -> dict:
    place = placement_schema()
    return {
        "$schema": DRAFT, "title": "carbonsched plan --json", "type": "object",
        "required": ["schema_version", "now", "job", "policy", "baseline", "placements", "warnings",
                     "data_sources", "stats"],
        "properties": {
            "schema_version": {"const": SCHEMA_VERSION},
            "now": {"type": "string", "format": "date-time"},
            "job": {"type": "object", "required": ["name", "gpu", "gpus", "hours", "window", "constraints", "policy",
                                                   "interruptible", "spot_model", "data"]},
            "policy": {"type": "object", "required": ["objective", "weights", "order", "tolerance_pct", "risk"]},
            "policy_file": {  # only when an organisation policy was enforced (--policy, the policy setting)
                "type": "object", "required": ["name", "version", "path", "sha256", "changes"],
                "properties": {"name": {"type": "string"}, "version": {"const": policy_file.POLICY_VERSION},
                               "path": {"type": ["string", "null"]},
                               "sha256": {"anyOf": [{"type": "null"}, {"type": "string", "pattern": "^[0-9a-f]{64}$"}]},
                               "changes": {"type": "array", "items": {"type": "string"}}}},
            "baseline": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/placement"}]},
            "placements": {"type": "array", "items": {"$ref": "#/$defs/placement"}},
            "warnings": {"type": "array", "items": {"type": "string"}},
            "data_sources": {"type": "array", "items": {"type": "object"}},
            "stats": {"type": "object", "required": ["candidates", "feasible"]},
        },
        "$defs": {"placement": place},
    }


def get_schema(name: str) -> dict:
    """The JSON Schema called ``name`` (job, policy or plan)."""
    builders = {"job": job_schema, "policy": policy_schema, "plan": plan_schema}
    if name not in builders:
        raise UserInputError(f"unknown schema {name!r}{did_you_mean(name, NAMES)}; choose one of {', '.join(NAMES)}")
    return builders[name]()
