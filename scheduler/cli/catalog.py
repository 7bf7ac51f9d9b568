"""``carbonsched catalog``: refresh the user catalog of live GPU offerings, or summarise it.

    carbonsched catalog refresh [--provider aws|gcp] [--regions R ...] [--json] [--progress]
    carbonsched catalog show [--json]
    carbonsched catalog check [--json] [--max-age-days N]

``refresh`` fetches offerings, zones, prices and quotas from each provider's API (credentials from
the provider's usual chain) and stores them in ``<home>/catalog/offerings.json``; plans and
``regions`` then use them while they are fresh (``CARBONSCHED_CATALOG_MAX_AGE_DAYS``, default 7).
A provider that fails (no credentials, a missing permission: the message names it) keeps its
previous cache section, and plans use the embedded snapshot for it.

``check`` lists price anomalies in the catalog plans use (``providers/cloud/anomalies.py``: spot at or
above on-demand, an instance priced > 2x away from its median across regions, same-size variants
> 2x apart in one region, a stale catalog).

Exit codes: refresh: 0 when at least one provider was refreshed (possibly with notes about
fallbacks), 1 when nothing could be refreshed; check: 0 when clean, 1 when anomalies were found;
2 for bad flags.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from datetime import datetime, timezone

from carbonsched.errors import CloudCatalogError, UserInputError

EPILOG = """\
examples:
  carbonsched catalog refresh                      # every provider with credentials
  carbonsched catalog refresh --provider aws --regions us-east-1 eu-north-1
  carbonsched catalog show --json

permissions (read-only):
  aws: ec2:DescribeRegions, ec2:DescribeInstanceTypes, ec2:DescribeInstanceTypeOfferings,
       ec2:DescribeSpotPriceHistory, pricing:GetProducts, servicequotas:GetServiceQuota
       (missing pricing/spot/quota permissions: snapshot prices / unknown quota, said in the output)
  gcp: compute.regions.list, compute.regions.get, compute.acceleratorTypes.list,
       compute.machineTypes.list (roles/compute.viewer has them); prices from the Cloud Billing
       Catalog API (enable cloudbilling.googleapis.com; any credentials may read it; without it,
       or for a machine whose parts have no SKU, the snapshot's price, said in the output)

exit status: 0 when at least one provider was refreshed, 1 when none could be, 2 for bad flags.
"""


def register(sub, common) -> None:
    p = sub.add_parser("catalog", parents=[common], help="refresh or show the live catalog of GPU offerings (cache)",
                       description="Live GPU offerings, prices and quotas from your cloud accounts, cached for plans.",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    csub = p.add_subparsers(dest="catalog_action", metavar="ACTION")
    r = csub.add_parser("refresh", parents=[common], help="fetch offerings from the cloud APIs into the cache",
                        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    r.add_argument("--provider", action="append", choices=_providers(), help="provider to refresh (repeatable; default all)")
    r.add_argument("--regions", nargs="+", metavar="REGION",
                   help="only these regions (us-east-1 or aws:us-east-1; commas allowed); default: enabled regions carbonsched has grid data for")
    r.add_argument("--concurrency", type=int, default=8, metavar="N", help="regions fetched at once (default 8; 1 = serially)")
    r.add_argument("--progress", action="store_true", help="show progress on stderr even when it is not a terminal")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_refresh)
    s = csub.add_parser("show", parents=[common], help="summarise the cached catalog and what plans use")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_show)
    c = csub.add_parser("check", parents=[common], help="price anomalies in the catalog plans use (exit 1 if any)",
                        description="Spot at or above on-demand, instances priced more than 2x away from their median "
                                    "across a provider's regions, same-size variants more than 2x apart in one "
                                    "region, and a stale catalog. Plans warn when a shown placement uses a flagged "
                                    "price; exclude_flagged_prices (or --exclude-flagged-prices) ranks without them.")
    c.add_argument("--max-age-days", type=float, metavar="N",
                   help="flag a catalog older than this (default: CARBONSCHED_CATALOG_MAX_AGE_DAYS, 7)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_check)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _providers() -> list[str]:
    from carbonsched.providers.cloud import REFRESHERS

    return list(REFRESHERS)


def _regions_for(provider: str, given: list[str] | None, known: dict[str, set[str]]) -> list[str] | None:
    """The regions of ``given`` meant for ``provider`` (None = default; [] = none of them)."""
    if not given:
        return None
    out = []
    for item in (x.strip() for g in given for x in g.split(",")):
        if not item:
            continue
        prefix, sep, name = item.partition(":")
        if sep:
            if prefix == provider:
                out.append(name)
        elif item in known.get(provider, set()) or not any(item in k for k in known.values()):
            out.append(item)
    return out


class _Progress:
    """One updating line on stderr per provider: ``aws: 5/22 regions (eu-west-1)``."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def __call__(self, provider: str, done: int, total: int, region: str) -> None:
        if self.enabled:
            end = "\n" if done == total else ""
            sys.stderr.write(f"\r  {provider}: {done}/{total} regions ({region})\033[K{end}")
            sys.stderr.flush()


def cmd_refresh(a: argparse.Namespace) -> int:
    from carbonsched.providers.cloud import REFRESHERS
    from carbonsched.providers.cloud.cache import cache_path, store_results, summarize
    from carbonsched.refdata import read_regions

    from carbonsched.settings import resolve_settings

    if a.concurrency < 1:
        raise UserInputError("--concurrency must be >= 1")
    settings = resolve_settings()
    known: dict[str, set[str]] = {}
    for r in read_regions().values():
        known.setdefault(r.provider, set()).add(r.region)
    progress = _Progress(a.progress or sys.stderr.isatty())
    report: dict[str, dict] = {}
    results = []
    for provider in a.provider or list(REFRESHERS):
        regions = _regions_for(provider, a.regions, known)
        if regions == []:
            if a.provider:
                report[provider] = {"status": "failed", "error": f"none of --regions names a {provider} region"}
            continue
        module, _, func = REFRESHERS[provider].partition(":")
        started = time.perf_counter()
        try:
            refresh = getattr(importlib.import_module(module), func)
            res = refresh(regions, concurrency=a.concurrency, progress=progress, known_regions=known.get(provider))
        except ImportError as exc:
            report[provider] = {"status": "failed", "error": f"{exc}; install carbonsched[{provider}]"}
            continue
        except CloudCatalogError as exc:
            report[provider] = {"status": "failed", "error": str(exc), "permission": exc.permission}
            continue
        results.append(res)
        report[provider] = {"status": "refreshed", "seconds": round(time.perf_counter() - started, 2)}
    path = cache_path(settings)
    if results:
        doc = store_results(path, results)
        for res in results:
            report[res.provider].update(summarize(doc["providers"][res.provider]))
    ok = bool(results)
    if a.json:
        print(json.dumps({"schema_version": 1, "cache": str(path) if ok else None, "providers": report}, indent=2))
    else:
        print(_render_refresh(report, path if ok else None))
    if not ok:
        failed = ", ".join(report) or "no provider selected"
        raise CloudCatalogError(f"nothing could be refreshed ({failed}: see the reasons above); "
                                "plans keep using the previous cache where fresh, else the embedded snapshot")
    return 0


def _render_refresh(report: dict, path) -> str:
    out = []
    for p, r in report.items():
        if r["status"] != "refreshed":
            out.append(f"{p}: not refreshed: {r['error']}")
            out.append(f"  plans use the previous cache for {p} if fresh, else the embedded snapshot")
            continue
        out.append(f"{p}: {r['offerings']} offerings ({r['instance_types']} instance types, GPUs {', '.join(r['gpu_types']) or '-'}) "
                   f"in {r['regions']} regions, {r['zones']} zones; {r['seconds']:.1f} s")
        out.append(f"  prices: {r['prices']}")
        out.append(f"  quotas: known for {r['quota_known']} offerings, {r['zero_quota_offerings']} at zero (excluded from plans)")
        for perm in r["missing_permissions"]:
            out.append(f"  missing permission: {perm} (fallback taken; see notes)")
        for region, why in r["failed_regions"].items():
            out.append(f"  region {region} failed: {why}")
        for note in r["notes"]:
            out.append(f"  note: {note}")
    if path is not None:
        out.append(f"cache written: {path}")
    return "\n".join(out)


def cmd_show(a: argparse.Namespace) -> int:
    from carbonsched.providers.cloud import choose_offering_source
    from carbonsched.providers.cloud.cache import cache_path, max_age_days, read_cache, summarize

    from carbonsched.settings import resolve_settings

    settings = resolve_settings()
    path, now, max_age = cache_path(settings), datetime.now(timezone.utc), max_age_days()
    doc = read_cache(path)
    providers = {p: summarize(sec, now, max_age) for p, sec in sorted(doc["providers"].items())}
    used = choose_offering_source(settings).describe()
    if a.json:
        print(json.dumps({"schema_version": 1, "cache": str(path), "exists": path.exists(), "max_age_days": max_age,
                          "providers": providers, "plans_use": used}, indent=2))
        return 0
    if not providers:
        print(f"no catalog cache at {path}: plans use the embedded snapshot (as of {used.get('as_of')}); "
              "run `carbonsched catalog refresh` to fetch live offerings")
        return 0
    from carbonsched.cli.render import table

    rows = [[p, str(s["regions"]), str(s["instance_types"]), ", ".join(s["gpu_types"]), str(s["offerings"]),
             f"{s['zero_quota_offerings']}/{s['quota_known']}", s["fetched_at"],
             f"{s['age_hours']:.1f} h" + ("" if s["fresh"] else " (stale)"), s["prices"]] for p, s in providers.items()]
    print(table(["provider", "regions", "types", "GPUs", "offerings", "zero quota", "fetched_at", "age", "prices"],
                rows, right={1, 2, 4}))
    print(f"cache: {path} (max age {max_age:g} days, {_max_age_env()})")
    print(f"plans use: {used['source']}")
    for p, s in providers.items():
        for perm in s["missing_permissions"]:
            print(f"{p}: missing permission {perm}")
    return 0


def cmd_check(a: argparse.Namespace) -> int:
    from carbonsched.providers.cloud import choose_offering_source
    from carbonsched.providers.cloud.anomalies import check_offerings
    from carbonsched.providers.cloud.cache import max_age_days
    from carbonsched.settings import resolve_settings

    if a.max_age_days is not None and not a.max_age_days >= 0:
        raise UserInputError("--max-age-days must be a number of days >= 0")
    source = choose_offering_source(resolve_settings())
    described = source.describe()
    result = check_offerings(source.list_offerings(), as_of=described.get("as_of"),
                             today=datetime.now(timezone.utc).date(),
                             max_age_days=a.max_age_days if a.max_age_days is not None else max_age_days())
    if a.json:
        print(json.dumps({**result.to_dict(), "catalog": described}, indent=2))
    elif not result.anomalies:
        print(f"no price anomalies in {described.get('source')} (as of {described.get('as_of')})")
    else:
        from carbonsched.cli.render import table

        rows = [[x.kind, f"{x.provider}:{x.region}" if x.region else x.provider, x.instance_type, x.market, x.detail]
                for x in result.anomalies]
        print(table(["anomaly", "region", "instance", "market", "detail"], rows))
        counts = ", ".join(f"{n} {k}" for k, n in sorted(result.to_dict()["counts"].items()))
        print(f"{len(result.anomalies)} anomalies ({counts}) in {described.get('source')} (as of "
              f"{described.get('as_of')}); {len(result.flagged)} offerings have prices in doubt")
    return 1 if result.anomalies else 0


def _max_age_env() -> str:
    from carbonsched.providers.cloud.cache import MAX_AGE_ENV

    return MAX_AGE_ENV
