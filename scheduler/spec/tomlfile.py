"""The one TOML reader for job, policy and batch files, and the typed values their schemas use.

Kinds: ``str`` (non-empty, stripped), ``bool``, ``int`` (>= 1), ``"number"`` (finite, >= 0),
``"duration"`` (hours: a number or "90m", "2d"), ``"time"`` (ISO 8601 -> aware UTC datetime),
``"strlist"``/``"intlist"`` (a scalar becomes a one-element tuple), ``"strmap"`` (environment:
valid names, secret-looking names refused), ``"pathmap"`` (path -> path or URI), ``"numbermap"``.
"""
from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path

from carbonsched.errors import JobSpecError
from carbonsched.redact import SECRET_NAME
from carbonsched.units import parse_duration_hours, parse_utc



def number(value, where: str, *, positive: bool = False, allow_zero: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise JobSpecError(f"{where} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise JobSpecError(f"{where} must be a finite number, got {value!r}")
    if value < 0 or (positive and value == 0) or (not allow_zero and value == 0):
        raise JobSpecError(f"{where} must be {'> 0' if positive else '>= 0'}, got {value!r}")
    return value


def typed_value(value, kind, where: str):
    """``value`` checked and converted to ``kind`` (a type, or one of the string kinds below);
    JobSpecError naming ``where`` when it does not fit."""
    if kind is str:
        if not isinstance(value, str) or not value.strip():
            raise JobSpecError(f"{where} must be a non-empty string, got {value!r}")
        if "\x00" in value:
            raise JobSpecError(f"{where} contains a NUL byte; remove it (no command, name or path can hold one)")
        return value.strip()
    if kind is bool:
        if not isinstance(value, bool):
            raise JobSpecError(f"{where} must be true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise JobSpecError(f"{where} must be a whole number, got {value!r}")
        if value < 1:
            raise JobSpecError(f"{where} must be at least 1, got {value!r}")
        return value
    if kind == "number":
        return number(value, where)
    if kind == "duration":
        return parse_duration_hours(value, where)
    if kind == "time":
        return parse_utc(value, where)
    if kind in ("strlist", "intlist"):
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list) or not value:
            raise JobSpecError(f"{where} must be a non-empty list, got {value!r}")
        return tuple(typed_value(v, str if kind == "strlist" else int, f"{where}[{i}]") for i, v in enumerate(value))
    if kind == "strmap":
        if not isinstance(value, dict):
            raise JobSpecError(f"{where} must be a table of strings, e.g. {{ HF_HOME = \"/data/hf\" }}, got {value!r}")
        out = {}
        for k, v in value.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(k)):
                raise JobSpecError(f"{where}: {k!r} is not a valid environment variable name")
            if SECRET_NAME.search(str(k)):
                raise JobSpecError(f"{where}.{k}: looks like a secret; job files, the job store, user-data and "
                                   "instance metadata are not secret stores: fetch it at run time from your "
                                   "cloud's secret manager instead")
            if not isinstance(v, (str, int, float)) or isinstance(v, bool):
                raise JobSpecError(f"{where}.{k} must be a string, got {v!r}")
            if "\x00" in str(v):
                raise JobSpecError(f"{where}.{k} contains a NUL byte; an environment value cannot hold one")
            out[str(k)] = str(v)
        return out
    if kind == "pathmap":
        if not isinstance(value, dict) or not value:
            raise JobSpecError(f"{where} must be a table of paths, e.g. {{ \"/data\" = \"s3://bucket/data\" }}, got {value!r}")
        out = {}
        for k, v in value.items():
            if not isinstance(v, str) or "\x00" in v or "\x00" in str(k):
                raise JobSpecError(f"{where}.{k} must be a path or URI string, got {v!r}")
            out[str(k)] = v
        return out
    if kind == "numbermap":
        if not isinstance(value, dict) or not value:
            raise JobSpecError(f"{where} must be a table of numbers, e.g. {{ carbon = 1.0 }}, got {value!r}")
        return {str(k): number(v, f"{where}.{k}") for k, v in value.items()}
    raise AssertionError(kind)


def read_toml(path: str | Path, what: str = "job file", error=JobSpecError, hint: str = "pass a TOML file") -> dict:
    """Raw TOML of a job/policy/batch file; ``error`` (a UserInputError) with the position when malformed."""
    return read_toml_bytes(path, what, error, hint)[0]


def read_toml_bytes(path: str | Path, what: str = "job file", error=JobSpecError,
                    hint: str = "pass a TOML file") -> tuple[dict, bytes]:
    """``read_toml`` and the bytes it parsed (one read: a digest of them is a digest of what was used)."""
    path = Path(path)
    try:
        data = path.read_bytes()
        return tomllib.loads(data.decode("utf-8")), data
    except FileNotFoundError:
        raise error(f"{what} {str(path)!r} not found; {hint}") from None
    except IsADirectoryError:
        raise error(f"{str(path)!r} is a directory; pass a {what}") from None
    except PermissionError:
        raise error(f"{what} {str(path)!r} cannot be read (permission denied); {hint}") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: malformed TOML: {exc}") from None
    except UnicodeDecodeError:
        raise error(f"{path}: not a UTF-8 text file") from None
    except RecursionError:
        raise error(f"{path}: nested too deeply to be a {what}") from None

