"""One settings object, resolved once: defaults < config file < CARBONSCHED_* env < arguments.

Config file: ``$CARBONSCHED_CONFIG``, else ``$XDG_CONFIG_HOME/carbonsched/config.toml``
(``~/.config/carbonsched/config.toml``). Keys::

    default_region = "gcp:europe-west4"   # baseline "default region, now" (default aws:us-east-1)
    home = "/path/to/state"               # job store, catalog and measurements (default ~/.local/share/carbonsched)
    intensity_source = "auto"             # auto | profile | electricitymaps | watttime | uk-carbon-intensity
    cache_ttl_hours = 1.0                 # reuse a fetched live forecast this long before fetching again
    electricitymaps_emission_factor = "lifecycle"   # or "direct" (stack emissions only)
    lease_seconds = 120.0                 # how long a launch claim holds without a heartbeat
    exclude_flagged_prices = false        # rank without offerings whose catalog price is in doubt
    database_url = "postgresql://carbonsched@db.internal/carbonsched"   # a team's job store (default: SQLite under home)
    local_region = "aws:eu-north-1"       # the grid region this machine draws from (runs of --launcher local)

    [kubernetes.contexts.my-h100]         # a team's cluster as a candidate (carbonsched.kubernetes)
    region = "aws:us-east-1"              # the region id or grid zone whose grid powers it
    gpus = { H100 = 8 }                   # GPU type -> GPUs per node
    policy = "policy.toml"                # organisation policy enforced on plan, submit and the server
                                          # (relative to this file's folder; see carbonsched.spec.policy_file)

Fetched live forecasts are cached under ``<home>/cache`` when a home is set (``home`` or
``CARBONSCHED_HOME``), else under ``$XDG_CACHE_HOME/carbonsched`` (``~/.cache/carbonsched``):
the cache is disposable, the state under home is not (``Settings.cache_dir``).

Environment: ``CARBONSCHED_DEFAULT_REGION``, ``CARBONSCHED_HOME``, ``CARBONSCHED_INTENSITY_SOURCE``,
``CARBONSCHED_CACHE_TTL_HOURS``, ``CARBONSCHED_ELECTRICITYMAPS_EMISSION_FACTOR``, ``CARBONSCHED_LEASE_SECONDS``,
``CARBONSCHED_EXCLUDE_FLAGGED_PRICES`` (1/true), ``CARBONSCHED_DATABASE_URL``, ``CARBONSCHED_LOCAL_REGION``, ``CARBONSCHED_POLICY`` (a
path; relative to the working directory). ``plan``/``submit --policy FILE`` names another file for one
command; nothing turns an organisation's policy off. Credentials stay in their
vendors' variables (``ELECTRICITYMAPS_TOKEN``, ``WATTTIME_USERNAME``/``WATTTIME_PASSWORD``; a database
password in ``PGPASSWORD`` or ``~/.pgpass`` rather than in the URL) and are never stored.
"""
from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Mapping

from carbonsched.errors import ConfigError, UnknownNameError, did_you_mean
from carbonsched.kubernetes import parse_contexts
from carbonsched.refdata import resolve_region

DEFAULT_REGION = "aws:us-east-1"


def _default_home(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "carbonsched"


def _default_cache(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "carbonsched"


@dataclass(frozen=True)
class Settings:
    default_region: str = DEFAULT_REGION
    home: Path | None = None
    intensity_source: str = "auto"
    cache_ttl_hours: float = 1.0
    electricitymaps_emission_factor: str = "lifecycle"
    lease_seconds: float = 120.0
    exclude_flagged_prices: bool = False
    database_url: str | None = None  # postgresql://...: the job store is this database, not <home>/jobs.sqlite
    local_region: str | None = None  # the grid region of this machine, for runs of the local launcher
    policy: Path | None = None  # the organisation's policy file, enforced on every plan (read when used)
    kubernetes_contexts: tuple = ()  # KubeContext per [kubernetes.contexts.NAME] (carbonsched.kubernetes)
    config_path: Path | None = None  # the file that was read, if any
    cache_dir: Path | None = None  # disposable caches (fetched forecasts); None: <home>/cache


def config_path(env: Mapping[str, str]) -> Path:
    if env.get("CARBONSCHED_CONFIG"):
        return Path(env["CARBONSCHED_CONFIG"])
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "carbonsched" / "config.toml"


def _read_config(path: Path, explicit: bool) -> dict:
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"config file {path} (from CARBONSCHED_CONFIG) does not exist; create it or unset the variable") from None
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is malformed TOML: {exc}") from None
    allowed = {"default_region": str, "home": str, "intensity_source": str, "cache_ttl_hours": float,
               "electricitymaps_emission_factor": str, "lease_seconds": float, "exclude_flagged_prices": bool,
               "database_url": str, "policy": str, "local_region": str, "kubernetes": dict}
    for key in raw:
        if key not in allowed:
            hint = did_you_mean(key, sorted(allowed), n=1) or f"; allowed: {', '.join(sorted(allowed))}"
            raise ConfigError(f"config file {path}: unknown key {key!r}{hint}")
        if allowed[key] is str and (not isinstance(raw[key], str) or not raw[key].strip()):
            raise ConfigError(f"config file {path}: {key} must be a non-empty string")
        if allowed[key] is bool and not isinstance(raw[key], bool):
            raise ConfigError(f"config file {path}: {key} must be true or false")
    if "kubernetes" in raw:
        raw["kubernetes_contexts"] = parse_contexts(raw.pop("kubernetes"), str(path))
    if "policy" in raw:  # relative to the config file, so the file and its policy move together
        raw["policy"] = path.parent / Path(raw["policy"]).expanduser()
    return raw


def _check_region(value: str, what: str) -> None:
    try:
        resolve_region(value)
    except UnknownNameError as exc:
        raise ConfigError(f"{what}: {exc}") from None


def _ttl(value, where: str, key: str = "cache_ttl_hours", unit: str = "hours") -> float:
    try:
        ttl = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {key} must be a number of {unit}, got {value!r}") from None
    if not math.isfinite(ttl) or ttl < 0:
        raise ConfigError(f"{where}: {key} must be a finite number >= 0, got {value!r}")
    return ttl


def resolve_settings(overrides: Mapping[str, object] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Resolve settings from defaults, the config file, the environment and ``overrides`` (non-None)."""
    env = os.environ if env is None else env
    path = config_path(env)
    raw = _read_config(path, explicit=bool(env.get("CARBONSCHED_CONFIG")))
    values: dict[str, object] = {"default_region": DEFAULT_REGION, "home": _default_home(env)}
    values.update(raw)
    if env.get("CARBONSCHED_DEFAULT_REGION"):
        values["default_region"] = env["CARBONSCHED_DEFAULT_REGION"]
    if env.get("CARBONSCHED_HOME"):
        values["home"] = env["CARBONSCHED_HOME"]
    if env.get("CARBONSCHED_INTENSITY_SOURCE"):
        values["intensity_source"] = env["CARBONSCHED_INTENSITY_SOURCE"]
    if env.get("CARBONSCHED_CACHE_TTL_HOURS"):
        values["cache_ttl_hours"] = env["CARBONSCHED_CACHE_TTL_HOURS"]
    if env.get("CARBONSCHED_EXCLUDE_FLAGGED_PRICES"):
        flag = env["CARBONSCHED_EXCLUDE_FLAGGED_PRICES"].strip().lower()
        if flag not in ("1", "true", "yes", "0", "false", "no"):
            raise ConfigError(f"CARBONSCHED_EXCLUDE_FLAGGED_PRICES must be 1/true or 0/false, got {flag!r}")
        values["exclude_flagged_prices"] = flag in ("1", "true", "yes")
    if env.get("CARBONSCHED_LEASE_SECONDS"):
        values["lease_seconds"] = env["CARBONSCHED_LEASE_SECONDS"]
    if env.get("CARBONSCHED_ELECTRICITYMAPS_EMISSION_FACTOR"):
        values["electricitymaps_emission_factor"] = env["CARBONSCHED_ELECTRICITYMAPS_EMISSION_FACTOR"]
    if env.get("CARBONSCHED_DATABASE_URL"):
        values["database_url"] = env["CARBONSCHED_DATABASE_URL"]
    if env.get("CARBONSCHED_LOCAL_REGION"):
        values["local_region"] = env["CARBONSCHED_LOCAL_REGION"]
    if env.get("CARBONSCHED_POLICY", "").strip():
        values["policy"] = Path(env["CARBONSCHED_POLICY"].strip()).expanduser()
    if values.get("database_url") and not str(values["database_url"]).startswith(("postgresql://", "postgres://")):
        raise ConfigError("database_url (CARBONSCHED_DATABASE_URL) must be a postgresql://USER@HOST[:PORT]/DATABASE "
                          "URL; leave it unset for the SQLite store under home")
    if values.get("electricitymaps_emission_factor", "lifecycle") not in ("lifecycle", "direct"):
        raise ConfigError(f"electricitymaps_emission_factor must be 'lifecycle' or 'direct', "
                          f"got {values['electricitymaps_emission_factor']!r}")
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
    values["cache_ttl_hours"] = _ttl(values.get("cache_ttl_hours", 1.0), str(path) if "cache_ttl_hours" in raw else "settings")
    values["lease_seconds"] = _ttl(values.get("lease_seconds", 120.0), str(path) if "lease_seconds" in raw else "settings",
                                   "lease_seconds", "seconds")
    if values.get("policy") is not None:
        values["policy"] = Path(values["policy"]).expanduser()
    if values.get("local_region"):
        _check_region(str(values["local_region"]), "local_region (CARBONSCHED_LOCAL_REGION)")
    home_given = "home" in raw or bool(env.get("CARBONSCHED_HOME")) or (overrides or {}).get("home") is not None
    names = {f.name for f in fields(Settings)}
    settings = Settings(**{k: v for k, v in values.items() if k in names})
    home = Path(settings.home).expanduser()
    cache = settings.cache_dir or (home / "cache" if home_given else _default_cache(env))
    return replace(settings, home=home, cache_dir=Path(cache).expanduser(), config_path=path if raw else None)
