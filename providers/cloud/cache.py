"""The user's catalog cache (``carbonsched catalog refresh``) and the plumbing the adapters share.

File ``<settings.home>/catalog/offerings.json`` (written atomically: temp file + rename)::

    {"schema_version": 1,
     "providers": {"aws": {"fetched_at": "2026-11-27T10:00:00Z", "source": "...", "prices": "...",
                           "regions": ["us-east-1", ...], "notes": ["..."], "missing_permissions": [],
                           "columns": [...ROW_FIELDS], "rows": [["aws", "us-east-1", "us-east-1a", ...], ...]}}}

Rows are ``data/offerings.csv`` rows (one per provider, region, zone, instance type; strings, as in
the CSV) plus the quota columns, so ``catalog.parse_offerings`` turns cache and embedded data into
Offerings the same way. Each provider's section is replaced as a whole by its next refresh.

Choosing offerings (``choose_offering_source``): per provider, the cached section when it is younger
than the maximum age (``CARBONSCHED_CATALOG_MAX_AGE_DAYS``, default 7) and its rows parse, else the
embedded snapshot with a warning (naming the file, the section and the bad value). Without a cache
file the embedded catalog is used as before; a broken cache never stops a plan.
"""
from __future__ import annotations

import json
import math
import os
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping

from carbonsched.errors import ConfigError, DataError
from carbonsched.fileio import write_json_atomic
from carbonsched.models import Offering
from carbonsched import data
from carbonsched.providers.cloud.catalog import EmbeddedCatalog, parse_offerings
from carbonsched.settings import resolve_settings

SCHEMA_VERSION = 1
CSV_FIELDS = ["provider", "region", "zone", "instance_type", "gpu", "gpu_count", "vcpus", "memory_gib",
              "gpu_memory_gib", "price_usd_per_hour", "spot_price_usd_per_hour", "price_basis"]
QUOTA_FIELDS = ["on_demand_max_instances", "spot_max_instances", "on_demand_quota", "spot_quota"]
ROW_FIELDS = CSV_FIELDS + QUOTA_FIELDS
DEFAULT_MAX_AGE_DAYS = 7.0
MAX_AGE_ENV = "CARBONSCHED_CATALOG_MAX_AGE_DAYS"

Progress = Callable[[str, int, int, str], None]  # (provider, done, total, region)


@dataclass
class RefreshResult:
    """What one provider's refresh produced: per-zone rows (ROW_FIELDS, strings) and provenance.

    ``missing_permissions`` lists IAM permissions that were denied; ``notes`` say which fallbacks
    were taken (e.g. embedded prices). ``failed_regions`` maps a region to why it yielded nothing."""

    provider: str
    fetched_at: datetime
    source: str
    prices: str
    rows: list[dict] = field(default_factory=list)
    regions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    missing_permissions: list[str] = field(default_factory=list)
    failed_regions: dict[str, str] = field(default_factory=dict)

    def section(self) -> dict:
        return {
            "fetched_at": _iso(self.fetched_at), "source": self.source, "prices": self.prices,
            "regions": sorted(self.regions), "notes": list(self.notes),
            "missing_permissions": sorted(set(self.missing_permissions)),
            "failed_regions": dict(sorted(self.failed_regions.items())),
            "columns": ROW_FIELDS, "rows": [[str(r.get(c, "") if r.get(c) is not None else "") for c in ROW_FIELDS]
                                            for r in self.rows],
        }

    def offerings(self) -> list[Offering]:
        return offerings_from_rows([{c: str(r.get(c, "") if r.get(c) is not None else "") for c in ROW_FIELDS}
                                    for r in self.rows], source=f"{self.provider}-live")


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str, where: str) -> datetime:
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        raise DataError(f"{where}: fetched_at {text!r} is not an ISO time; run `carbonsched catalog refresh` again") from None
    if t.tzinfo is None:
        raise DataError(f"{where}: fetched_at {text!r} has no time zone; run `carbonsched catalog refresh` again")
    return t


# -- rows <-> offerings ---------------------------------------------------------------------------

def offerings_from_rows(rows: list[dict], source: str) -> list[Offering]:
    """Offerings from per-zone rows, exactly as the embedded catalog groups them, plus quotas.

    The quota columns hold per-region values (equal on every zone row of an instance type)."""
    quotas: dict[tuple, dict] = {}
    for r in rows:
        quotas.setdefault((r["provider"], r["region"], r["instance_type"]), r)
    out = []
    for o in parse_offerings(rows, source=source):
        r = quotas[(o.provider, o.region, o.instance_type)]
        prefix = "on_demand" if o.market == "on-demand" else "spot"
        raw = (r.get(f"{prefix}_max_instances") or "").strip()
        if raw:
            try:
                n = int(float(raw))
            except (ValueError, OverflowError):  # words, NaN, infinity
                n = -1
            if n < 0:
                raise DataError(f"catalog cache: {prefix}_max_instances {raw!r} is not a whole number >= 0; "
                                "run `carbonsched catalog refresh` again") from None
            o = replace(o, max_instances=n, quota_name=r.get(f"{prefix}_quota", ""))
        out.append(o)
    return out


def max_instances(quota: float | None, per_instance: float) -> int | None:
    """How many instances fit in ``quota`` (vCPUs or GPUs) when each needs ``per_instance``."""
    if quota is None or not math.isfinite(quota) or per_instance <= 0:
        return None
    return max(0, int(math.floor(quota / per_instance + 1e-9)))


def embedded_prices(provider: str) -> tuple[dict, dict]:
    """Prices from the embedded snapshot, for fallbacks: ``({(region, zone, type): (od, spot)},
    {(region, type): (cheapest od, cheapest spot)})``, values as the CSV's strings."""
    by_zone, by_region = {}, {}
    for r in data.read_rows("offerings.csv"):
        if r["provider"] != provider:
            continue
        od, spot = r["price_usd_per_hour"], r["spot_price_usd_per_hour"]
        by_zone[(r["region"], r["zone"], r["instance_type"])] = (od, spot)
        key = (r["region"], r["instance_type"])
        best = by_region.get(key, ("", ""))
        by_region[key] = (_min_text(best[0], od), _min_text(best[1], spot))
    return by_zone, by_region


def _min_text(a: str, b: str) -> str:
    vals = [v for v in (a, b) if v and v.strip()]
    return min(vals, key=float) if vals else ""


def for_each_region(provider: str, regions: list[str], fetch: Callable[[str], object], concurrency: int,
                    progress: Progress | None = None) -> dict[str, object]:
    """``{region: fetch(region) or the exception it raised}``; regions run on ``concurrency`` threads
    (1 = serially, in order). ``progress`` is told after each region."""
    results: dict[str, object] = {}
    total = len(regions)

    def one(region: str):
        try:
            return fetch(region)
        except Exception as exc:  # noqa: BLE001 -- kept per region; the caller classifies it
            return exc

    if concurrency <= 1 or total <= 1:
        for i, region in enumerate(regions, 1):
            results[region] = one(region)
            if progress:
                progress(provider, i, total, region)
        return results
    with ThreadPoolExecutor(max_workers=min(concurrency, total)) as pool:
        futures = {pool.submit(one, r): r for r in regions}
        for i, fut in enumerate(as_completed(futures), 1):
            results[futures[fut]] = fut.result()
            if progress:
                progress(provider, i, total, futures[fut])
    return {r: results[r] for r in regions}


# -- the cache file -------------------------------------------------------------------------------

def cache_path(settings) -> Path:
    return Path(settings.home) / "catalog" / "offerings.json"


def read_cache(path: Path) -> dict:
    """The cache document (``{"schema_version": 1, "providers": {}}`` when there is no file)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return {"schema_version": SCHEMA_VERSION, "providers": {}}
    except OSError as exc:
        raise DataError(f"cannot read the catalog cache {path}: {exc}; fix its permissions or delete it") from None
    return _parse_cache(text, str(path))


def _parse_cache(text: str, where: str) -> dict:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"catalog cache {where} is not valid JSON ({exc}); delete it or run `carbonsched catalog refresh`") from None
    if not isinstance(doc, dict) or doc.get("schema_version") != SCHEMA_VERSION or not isinstance(doc.get("providers"), dict):
        raise DataError(f"catalog cache {where} has an unknown layout (schema_version {doc.get('schema_version') if isinstance(doc, dict) else None!r}, "
                        f"expected {SCHEMA_VERSION}); run `carbonsched catalog refresh` to rewrite it")
    for name, sec in doc["providers"].items():
        if not isinstance(sec, dict) or not isinstance(sec.get("rows"), list) or sec.get("columns") != ROW_FIELDS:
            raise DataError(f"catalog cache {where}: section {name!r} is malformed; run `carbonsched catalog refresh --provider {name}`")
        _parse_time(sec.get("fetched_at", ""), f"catalog cache {where} ({name})")
        if any(not isinstance(row, list) or len(row) != len(ROW_FIELDS) or not all(isinstance(c, str) for c in row)
               for row in sec["rows"]):
            raise DataError(f"catalog cache {where}: section {name!r} has rows of the wrong width or non-text cells; "
                            f"run `carbonsched catalog refresh --provider {name}`")
    return doc


def write_cache(path: Path, doc: dict) -> None:
    """Write ``doc`` atomically (a reader sees the old file or the new one, never half of one)."""
    write_json_atomic(path, doc, compact=True)


def store_results(path: Path, results: list[RefreshResult]) -> dict:
    """Replace the sections of the providers in ``results`` (others are kept) and write the file.
    An unreadable old file is replaced rather than trusted."""
    try:
        doc = read_cache(path)
    except DataError:
        doc = {"schema_version": SCHEMA_VERSION, "providers": {}}
    for res in results:
        doc["providers"][res.provider] = res.section()
    write_cache(path, doc)
    return doc


def section_rows(section: dict) -> list[dict]:
    return [dict(zip(section["columns"], row)) for row in section["rows"]]


# -- choosing the offerings source ---------------------------------------------------------------

def max_age_days(env: Mapping[str, str] | None = None) -> float:
    env = os.environ if env is None else env
    raw = env.get(MAX_AGE_ENV, "")
    if not raw.strip():
        return DEFAULT_MAX_AGE_DAYS
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{MAX_AGE_ENV} must be a number of days >= 0, got {raw!r}")
    return value


FUTURE_SLACK_H = 0.25  # clocks disagree a little; a cache fetched further ahead than this is not trusted as fresh


def age_text(hours: float) -> str:
    return f"{hours * 60:.0f} min" if hours < 1 else f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


class CachedCatalog:
    """Offerings per provider from the user cache where it is fresh, else from the embedded snapshot.

    ``warnings`` says what the plan must report (stale caches; which source each provider used)."""

    name = "catalog"

    def __init__(self, doc: dict, path: Path, now: datetime, max_age: float):
        self.path, self.now, self.max_age_days = Path(path), now, max_age
        self._embedded = EmbeddedCatalog()
        self.choice: dict[str, dict] = {}
        warnings = []
        providers = sorted({o.provider for o in self._embedded.list_offerings()} | set(doc["providers"]))
        for p in providers:
            sec = doc["providers"].get(p)
            if sec is None:
                self.choice[p] = {"source": "embedded snapshot", "reason": "not refreshed"}
                continue
            fetched = _parse_time(sec["fetched_at"], str(path))
            age_h = (now - fetched).total_seconds() / 3600.0
            entry = {"fetched_at": sec["fetched_at"], "age_hours": round(age_h, 2), "prices": sec.get("prices", ""),
                     "regions": len(sec.get("regions", [])), "cache_source": sec.get("source", "")}
            if age_h < -FUTURE_SLACK_H:  # written by a clock ahead of this one: its age is unknown, not fresh
                entry.update(source="embedded snapshot", reason=f"cache fetched_at {sec['fetched_at']} is in the future")
                warnings.append(f"offerings: the {p} catalog cache says it was fetched at {sec['fetched_at']}, "
                                f"{age_text(-age_h)} from now (a clock ahead?); using the embedded snapshot for {p}: "
                                f"run `carbonsched catalog refresh --provider {p}`")
            elif age_h > max_age * 24:
                entry.update(source="embedded snapshot", reason=f"cache {age_text(age_h)} old (max {max_age:g} days)")
                warnings.append(f"offerings: the {p} catalog cache is {age_text(age_h)} old (max {max_age:g} days, "
                                f"{MAX_AGE_ENV}); using the embedded snapshot for {p}: run `carbonsched catalog refresh --provider {p}`")
            elif (broken := _unparsable(path, p, sec)) is not None:  # a bad row must not stop the plan
                entry.update(source="embedded snapshot", reason=f"cache rows do not parse: {broken}")
                warnings.append(f"offerings: the {p!r} section of the catalog cache {path} does not parse ({broken}); "
                                f"using the embedded snapshot for {p}: run `carbonsched catalog refresh --provider {p}` "
                                "or delete the file")
            else:
                entry.update(source="user cache", section=sec)
                if sec.get("failed_regions"):
                    warnings.append(f"offerings: the {p} refresh failed for {', '.join(sorted(sec['failed_regions']))}; "
                                    "those regions use the embedded snapshot")
            self.choice[p] = entry
        used = [f"{p} from the catalog cache ({age_text(c['age_hours'])} old)" for p, c in self.choice.items()
                if c["source"] == "user cache"]
        if used:
            rest = [p for p, c in self.choice.items() if c["source"] != "user cache"]
            warnings.append("offerings: " + "; ".join(used) + (f"; {', '.join(rest)} from the embedded snapshot" if rest else ""))
        self.warnings = tuple(warnings)

    def list_offerings(self) -> list[Offering]:
        """Cached offerings of fresh providers; regions a refresh did not cover (``--regions``, or
        regions that failed) keep their embedded offerings, so a partial refresh hides nothing."""
        out: list[Offering] = []
        embedded = self._embedded.list_offerings()
        for p, c in self.choice.items():
            if c["source"] == "user cache":
                sec = c["section"]
                covered = set(sec.get("regions", [])) - set(sec.get("failed_regions", {}))
                out.extend(_parsed_section(self.path, p, sec))
                out.extend(o for o in embedded if o.provider == p and o.region not in covered)
            else:
                out.extend(o for o in embedded if o.provider == p)
        return out

    def describe(self) -> dict:
        base = self._embedded.describe()
        return {
            "name": "offerings",
            "source": "; ".join(f"{p}: {c['source']}" + (f" ({age_text(c['age_hours'])} old)" if c["source"] == "user cache"
                                                          else f" ({c['reason']})") for p, c in self.choice.items()),
            "as_of": {p: c.get("fetched_at", base["as_of"]) if c["source"] == "user cache" else base["as_of"]
                      for p, c in self.choice.items()},
            "cache": str(self.path),
            "max_age_days": self.max_age_days,
            "providers": {p: {k: v for k, v in c.items() if k != "section"} for p, c in self.choice.items()},
            "note": "live offerings, zones and quotas from `carbonsched catalog refresh`; " + base["note"],
        }


_PARSED: dict[tuple, tuple[Offering, ...]] = {}  # (path, mtime_ns, size, provider) -> offerings


_DOCS: dict[tuple, dict] = {}  # (path, mtime_ns, size) -> validated document


def _version(path: Path) -> tuple:
    st = path.stat()
    return (str(path), st.st_mtime_ns, st.st_size)


def _read_cache_once(path: Path) -> dict:
    """``read_cache``, remembered per version of the file (plans in a loop read it once)."""
    key = _version(path)
    if key not in _DOCS:
        _DOCS.clear()
        _DOCS[key] = read_cache(path)
    return _DOCS[key]


def _parsed_section(path: Path, provider: str, section: dict) -> tuple[Offering, ...]:
    """Offerings of one cached section, parsed once per version of the file."""
    key = (*_version(path), provider)
    if key not in _PARSED:
        if len(_PARSED) > 8:
            _PARSED.clear()
        _PARSED[key] = tuple(offerings_from_rows(section_rows(section), source=f"{provider}-live"))
    return _PARSED[key]


def _unparsable(path: Path, provider: str, section: dict) -> str | None:
    """Why the rows of a cached section do not make offerings (a DataError's message), or None."""
    try:
        _parsed_section(path, provider, section)
    except DataError as exc:
        return str(exc)
    return None


def choose_offering_source(settings=None, *, now: datetime | None = None, max_age: float | None = None,
                           env: Mapping[str, str] | None = None):
    """The user cache (fresh providers) when ``catalog refresh`` has written one, else the embedded
    catalog. ``now`` is the wall clock by default: cache age is real age, whatever the plan's ``now``."""
    if settings is None:
        settings = resolve_settings(env=env)
    if settings.home is None:  # a bare Settings(): no state directory, so no cache
        return EmbeddedCatalog()
    path = cache_path(settings)
    if not path.exists():
        return EmbeddedCatalog()
    try:
        doc = _read_cache_once(path)
    except DataError as exc:  # never let a broken cache stop a plan: say so and use the snapshot
        catalog = EmbeddedCatalog()
        catalog.warnings = (f"offerings: {exc}; using the embedded snapshot",)
        return catalog
    if not doc["providers"]:
        return EmbeddedCatalog()
    return CachedCatalog(doc, path, now or datetime.now(timezone.utc), max_age_days(env) if max_age is None else max_age)


def quota_warnings(offerings: list[Offering], limit: int = 3) -> list[str]:
    """One warning naming offerings the account's quota does not allow (max_instances == 0)."""
    zero = [o for o in offerings if o.max_instances == 0]
    if not zero:
        return []
    quotas = sorted({o.quota_name for o in zero if o.quota_name})
    examples = ", ".join(f"{o.region_id} {o.instance_type} ({o.market})" for o in zero[:limit])
    return [f"quota: {len(zero)} offerings excluded because your account's quota allows 0 instances "
            f"(e.g. {examples}); request an increase of {', '.join(quotas[:4]) or 'the GPU quota'} to use them"]


def summarize(section: dict, now: datetime | None = None, max_age: float | None = None) -> dict:
    """Counts and provenance of one provider's cache section (for ``catalog show``/``refresh``)."""
    rows = section_rows(section)
    try:
        offerings, error = (offerings_from_rows(rows, source="cache") if rows else []), None
    except DataError as exc:  # said, not raised: `catalog show` reports every section
        offerings, error = [], (f"rows do not parse ({exc}); plans use the embedded snapshot for it: "
                                "run `carbonsched catalog refresh` or delete the cache file")
    out = {
        "fetched_at": section["fetched_at"], "source": section.get("source", ""), "prices": section.get("prices", ""),
        "regions": len(section.get("regions", [])), "zones": len({r["zone"] for r in rows}),
        "instance_types": len({r["instance_type"] for r in rows}), "gpu_types": sorted({r["gpu"] for r in rows}),
        "offerings": len(offerings),
        "zero_quota_offerings": sum(1 for o in offerings if o.max_instances == 0),
        "quota_known": sum(1 for o in offerings if o.max_instances is not None),
        "missing_permissions": section.get("missing_permissions", []),
        "failed_regions": section.get("failed_regions", {}), "notes": section.get("notes", []),
    }
    if error:
        out["error"] = error
    if now is not None:
        age_h = (now - _parse_time(section["fetched_at"], "catalog cache")).total_seconds() / 3600.0
        out["age_hours"] = round(age_h, 2)
        if max_age is not None:
            out["fresh"] = age_h <= max_age * 24
    return out
