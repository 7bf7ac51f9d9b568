"""Live GPU offerings from AWS (boto3, the ``carbonsched[aws]`` extra).

Per enabled region, concurrently (``refresh``):
  * GPU instance types: ``ec2:DescribeInstanceTypes`` (instance-type filter ``g*``/``p*``, paginated),
    keeping NVIDIA ``GpuInfo`` entries mapped to canonical GPU names (``canonical_gpu``);
  * zones offering them: ``ec2:DescribeInstanceTypeOfferings`` (LocationType availability-zone:
    the account's zone *names*, which launches use; the embedded snapshot has zone *ids*);
  * on-demand prices: ``pricing:GetProducts`` (us-east-1 endpoint; Linux, shared tenancy, no
    pre-installed software, capacitystatus Used), PriceList JSON strings, paginated;
  * spot prices: ``ec2:DescribeSpotPriceHistory`` with StartTime = now (the current price per zone);
  * quotas: ``servicequotas:GetServiceQuota`` for the vCPU-based GPU families (``QUOTA_CODES``),
    turned into ``floor(quota vCPUs / instance vCPUs)`` instances (usage is not subtracted).

Permissions needed (read-only): ec2:DescribeRegions, ec2:DescribeInstanceTypes,
ec2:DescribeInstanceTypeOfferings, ec2:DescribeSpotPriceHistory, pricing:GetProducts,
servicequotas:GetServiceQuota. Without the EC2 ones a region yields nothing; without pricing the
embedded snapshot's price is used (and said), without spot the snapshot's spot price, without
quotas ``max_instances`` stays unknown.

Credentials and endpoints come from boto3's usual chain (AWS_PROFILE, AWS_ACCESS_KEY_ID, ...,
and AWS_ENDPOINT_URL_EC2 / AWS_ENDPOINT_URL_PRICING / AWS_ENDPOINT_URL_SERVICE_QUOTAS for local
servers). Throttling is retried by botocore's adaptive mode. boto3 is imported lazily.
"""
from __future__ import annotations

import json
import math
import threading
from datetime import datetime, timezone

from carbonsched.errors import CloudAuthError, CloudCatalogError
from carbonsched.providers.cloud.cache import RefreshResult, embedded_prices, for_each_region, max_instances
from carbonsched.refdata import read_gpus

PERMISSIONS = {
    "DescribeRegions": "ec2:DescribeRegions",
    "DescribeInstanceTypes": "ec2:DescribeInstanceTypes",
    "DescribeInstanceTypeOfferings": "ec2:DescribeInstanceTypeOfferings",
    "DescribeSpotPriceHistory": "ec2:DescribeSpotPriceHistory",
    "GetProducts": "pricing:GetProducts",
    "GetServiceQuota": "servicequotas:GetServiceQuota",
    "GetAWSDefaultServiceQuota": "servicequotas:GetAWSDefaultServiceQuota",
}
# vCPU-based EC2 quotas of the NVIDIA GPU families, by (first letter of the type, market)
QUOTA_CODES = {
    ("g", "on-demand"): ("L-DB2E81BA", "Running On-Demand G and VT instances"),
    ("g", "spot"): ("L-3819A6DF", "All G and VT Spot Instance Requests"),
    ("p", "on-demand"): ("L-417A185B", "Running On-Demand P instances"),
    ("p", "spot"): ("L-7212CCBC", "All P Spot Instance Requests"),
}
TYPE_PATTERNS = ["g*", "p*"]  # every NVIDIA GPU family (G, P); the rest are filtered by GpuInfo
PRICE_FILTERS = {"operatingSystem": "Linux", "tenancy": "Shared", "preInstalledSw": "NA", "capacitystatus": "Used"}
DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedException", "AuthFailure",
          "InvalidClientTokenId", "UnrecognizedClientException", "OptInRequired"}
SOURCE = "AWS APIs: EC2 (types, zones, spot), Pricing, Service Quotas"


def canonical_gpu(name: str, memory_mib: float) -> str | None:
    """Our GPU name (data/gpus.csv) for an EC2 GpuInfo entry, None when we do not model it."""
    gib = memory_mib / 1024.0
    special = {"A100": "A100-80GB" if gib > 60 else "A100", "V100": "V100-32GB" if gib > 24 else "V100", "T4G": "T4G"}
    key = name.strip().upper()
    if key in special:
        return special[key]
    for gpu in read_gpus().values():
        if key in {gpu.name.upper(), *(a.upper() for a in gpu.aliases)}:
            return gpu.name
    return None


# -- parsers (pure) -------------------------------------------------------------------------------

def _parse_instance_types(items: list[dict], skipped: dict | None = None) -> dict[str, dict]:
    """``{instance_type: {gpu, gpu_count, vcpus, memory_gib, gpu_memory_gib}}`` for whole NVIDIA GPUs."""
    out = {}
    for it in items:
        gpus = (it.get("GpuInfo") or {}).get("Gpus") or []
        if not gpus:
            continue
        g = gpus[0]
        mib = float((g.get("MemoryInfo") or {}).get("SizeInMiB") or 0)
        gpu = canonical_gpu(g.get("Name", ""), mib) if g.get("Manufacturer", "").upper() == "NVIDIA" else None
        fractional = float(g.get("GpuPartitionSize", 1.0) or 1.0) < 1.0
        if gpu is None or fractional or len(gpus) > 1:
            if skipped is not None:
                skipped[it["InstanceType"]] = f"{g.get('Manufacturer', '?')} {g.get('Name', '?')}" + (" (fractional)" if fractional else "")
            continue
        out[it["InstanceType"]] = {
            "gpu": gpu, "gpu_count": int(g.get("Count", 1)),
            "vcpus": int(it["VCpuInfo"]["DefaultVCpus"]),
            "memory_gib": float(it["MemoryInfo"]["SizeInMiB"]) / 1024.0,
            "gpu_memory_gib": round(mib / 1024.0, 2),
        }
    return out


def _parse_zones(items: list[dict]) -> dict[str, list[str]]:
    zones: dict[str, set] = {}
    for o in items:
        zones.setdefault(o["InstanceType"], set()).add(o["Location"])
    return {t: sorted(z) for t, z in zones.items()}


def _parse_price_list(price_list: list, wanted: set[str] | None = None) -> dict[str, float]:
    """On-demand USD/hour per instance type from GetProducts' PriceList (JSON strings)."""
    out: dict[str, float] = {}
    for item in price_list:
        doc = json.loads(item) if isinstance(item, str) else item
        attrs = (doc.get("product") or {}).get("attributes") or {}
        itype = attrs.get("instanceType")
        if not itype or (wanted is not None and itype not in wanted):
            continue
        if any(attrs.get(k, v) != v for k, v in PRICE_FILTERS.items()) or attrs.get("operation", "RunInstances") != "RunInstances":
            continue
        for term in ((doc.get("terms") or {}).get("OnDemand") or {}).values():
            for dim in (term.get("priceDimensions") or {}).values():
                usd = float((dim.get("pricePerUnit") or {}).get("USD", "nan"))
                if dim.get("unit") == "Hrs" and math.isfinite(usd) and usd > 0:
                    out[itype] = min(usd, out.get(itype, usd))
    return out


def _parse_spot(items: list[dict]) -> dict[tuple[str, str], float]:
    """The latest spot price per (instance type, zone)."""
    latest: dict[tuple[str, str], tuple] = {}
    for s in items:
        key = (s["InstanceType"], s["AvailabilityZone"])
        ts = s["Timestamp"]
        if key not in latest or ts > latest[key][0]:
            latest[key] = (ts, float(s["SpotPrice"]))
    return {k: v[1] for k, v in latest.items()}


def _region_rows(region: str, types: dict, zones: dict, od: dict | None, spot: dict | None,
                 quotas: dict | None, notes: list[str]) -> list[dict]:
    """Per-zone rows (cache.ROW_FIELDS) for one region; prices missing from the API come from the
    embedded snapshot (said in price_basis and ``notes``)."""
    _, fallback = embedded_prices("aws") if od is None or spot is None or any(t not in od for t in types) else ({}, {})
    rows, unpriced = [], []
    for itype, info in sorted(types.items()):
        if itype not in zones:
            continue
        price, basis = (od or {}).get(itype), "aws pricing api"
        if price is None:
            text = fallback.get((region, itype), ("", ""))[0]
            price, basis = (float(text) if text else None), "embedded snapshot"
        if price is None:
            unpriced.append(itype)
            continue
        quota = {}
        for market, prefix in (("on-demand", "on_demand"), ("spot", "spot")):
            code, _ = QUOTA_CODES.get((itype[0], market), ("", ""))
            value = (quotas or {}).get(code)
            n = max_instances(value, info["vcpus"]) if quotas is not None and code in quotas else None
            quota[f"{prefix}_max_instances"] = "" if n is None else str(n)
            quota[f"{prefix}_quota"] = f"aws {code} ({value:g} vCPUs)" if n is not None else ""
        for z in zones[itype]:
            if spot is None:
                s, sbasis = fallback.get((region, itype), ("", ""))[1], "spot: embedded snapshot"
            else:
                s, sbasis = (repr(spot[(itype, z)]) if (itype, z) in spot else ""), "spot: live"
            rows.append({"provider": "aws", "region": region, "zone": z, "instance_type": itype, "gpu": info["gpu"],
                         "gpu_count": str(info["gpu_count"]), "vcpus": str(info["vcpus"]),
                         "memory_gib": f"{info['memory_gib']:g}", "gpu_memory_gib": f"{info['gpu_memory_gib']:g}",
                         "price_usd_per_hour": repr(price), "spot_price_usd_per_hour": s,
                         "price_basis": f"{basis}; {sbasis}", **quota})
    if unpriced:
        notes.append(f"{region}: no on-demand price for {', '.join(unpriced)} (not in the Pricing API nor the snapshot); skipped")
    return rows


# -- network ---------------------------------------------------------------------------------------

class AwsClients:
    """boto3 clients per (service, region), created once under a lock (client creation is not
    thread-safe; using a client from several threads is). Adaptive retries on throttling."""

    def __init__(self, session=None, max_attempts: int = 8, timeout_s: float = 20.0):
        self._session, self._lock, self._clients = session, threading.Lock(), {}
        self.max_attempts, self.timeout_s = max_attempts, timeout_s

    def __call__(self, service: str, region: str):
        from botocore.config import Config

        with self._lock:
            if self._session is None:
                import boto3

                self._session = boto3.session.Session()
            key = (service, region)
            if key not in self._clients:
                cfg = Config(retries={"mode": "adaptive", "max_attempts": self.max_attempts},
                             connect_timeout=self.timeout_s, read_timeout=self.timeout_s)
                self._clients[key] = self._session.client(service, region_name=region, config=cfg)
            return self._clients[key]

    def has_credentials(self) -> bool:
        from botocore.exceptions import BotoCoreError

        try:
            with self._lock:
                if self._session is None:
                    import boto3

                    self._session = boto3.session.Session()
            return self._session.get_credentials() is not None
        except BotoCoreError as exc:  # e.g. ProfileNotFound for a wrong AWS_PROFILE
            raise CloudAuthError(f"AWS credentials could not be loaded: {exc}; fix AWS_PROFILE or ~/.aws/config", "aws") from None


def _boto_error(exc: Exception, region: str = "") -> CloudCatalogError | None:
    """A CloudCatalogError for a botocore failure (None when ``exc`` is not one)."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    where = f" in {region}" if region else ""
    if isinstance(exc, NoCredentialsError):
        return CloudAuthError("no AWS credentials found: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
                              "(or run `aws configure`)", provider="aws")
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        op = getattr(exc, "operation_name", "")
        perm = PERMISSIONS.get(op, op)
        if code in DENIED:
            return CloudAuthError(f"AWS denied {op}{where} ({code}): grant {perm} to your IAM identity", "aws", perm)
        return CloudCatalogError(f"AWS {op}{where} failed: {code}: {exc.response.get('Error', {}).get('Message', '')}", "aws")
    if isinstance(exc, BotoCoreError):
        return CloudCatalogError(f"AWS request{where} failed: {exc}; check the network and AWS_ENDPOINT_URL_* settings", "aws")
    return None


def _paginate(client, op: str, key: str, **kwargs) -> list:
    out = []
    for page in client.get_paginator(op).paginate(**kwargs):
        out.extend(page.get(key, []))
    return out


def get_regions(clients, home_region: str = "us-east-1") -> list[str]:
    """Regions enabled for the account (opt-in regions only when opted in)."""
    try:
        regions = clients("ec2", home_region).describe_regions()["Regions"]
    except Exception as exc:
        raise (_boto_error(exc) or exc) from None
    return sorted(r["RegionName"] for r in regions if r.get("OptInStatus", "opt-in-not-required") != "not-opted-in")


def get_region(region: str, clients, *, page_size: int = 100, now: datetime | None = None) -> dict:
    """Everything about one region: ``{"rows", "notes", "missing"}`` (missing permissions).
    EC2 type/zone failures raise; price, spot and quota failures fall back and are noted."""
    now = now or datetime.now(timezone.utc)
    ec2 = clients("ec2", region)
    notes, missing, skipped = [], [], {}
    type_items = _paginate(ec2, "describe_instance_types", "InstanceTypes", PaginationConfig={"PageSize": page_size},
                           Filters=[{"Name": "instance-type", "Values": TYPE_PATTERNS}])
    types = _parse_instance_types(type_items, skipped)
    if not types:
        return {"rows": [], "notes": notes, "missing": missing, "skipped": skipped}
    zone_items = _paginate(ec2, "describe_instance_type_offerings", "InstanceTypeOfferings",
                           PaginationConfig={"PageSize": page_size}, LocationType="availability-zone",
                           Filters=[{"Name": "instance-type", "Values": sorted(types)}])
    zones = _parse_zones(zone_items)

    def optional(what: str, fn):
        try:
            return fn()
        except Exception as exc:
            err = _boto_error(exc, region)
            if err is None:
                raise
            if err.permission:
                missing.append(err.permission)
            notes.append(f"{what}: {err}")
            return None

    od = optional("on-demand prices (embedded snapshot used)", lambda: _parse_price_list(_paginate(
        clients("pricing", "us-east-1"), "get_products", "PriceList", ServiceCode="AmazonEC2",
        PaginationConfig={"PageSize": page_size},
        Filters=[{"Type": "TERM_MATCH", "Field": k, "Value": v}
                 for k, v in {"regionCode": region, **PRICE_FILTERS}.items()]), set(types)))
    spot = optional("spot prices (embedded snapshot used)", lambda: _parse_spot(_paginate(
        ec2, "describe_spot_price_history", "SpotPriceHistory", StartTime=now, InstanceTypes=sorted(zones),
        ProductDescriptions=["Linux/UNIX"], PaginationConfig={"PageSize": page_size})))
    codes = sorted({QUOTA_CODES[(t[0], m)][0] for t in types for m in ("on-demand", "spot") if (t[0], m) in QUOTA_CODES})
    quotas = optional("quotas (max instances unknown)", lambda: get_quotas(clients("service-quotas", region), codes))
    rows = _region_rows(region, types, zones, od, spot, quotas, notes)
    return {"rows": rows, "notes": notes, "missing": missing, "skipped": skipped}


def get_quotas(sq, codes: list[str]) -> dict[str, float]:
    """``{quota code: vCPUs}``; a quota never changed by the account falls back to AWS's default."""
    out = {}
    for code in codes:
        try:
            out[code] = float(sq.get_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"]["Value"])
        except sq.exceptions.NoSuchResourceException:
            out[code] = float(sq.get_aws_default_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"]["Value"])
    return out


def refresh(regions: list[str] | None = None, *, clients=None, concurrency: int = 8, page_size: int = 100,
            progress=None, now: datetime | None = None, known_regions: set[str] | None = None) -> RefreshResult:
    """Fetch every GPU offering the account can see. ``regions`` defaults to the enabled regions
    that carbonsched has grid data for (``known_regions``). Raises CloudCatalogError when no region
    could be read at all; partial failures are in the result's notes."""
    now = now or datetime.now(timezone.utc)
    clients = clients or AwsClients()
    if isinstance(clients, AwsClients) and not clients.has_credentials():
        raise CloudAuthError("no AWS credentials found: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
                             "(or run `aws configure`); plans use the embedded snapshot meanwhile", provider="aws")
    enabled = get_regions(clients)
    result = RefreshResult("aws", now, SOURCE, prices="AWS Pricing API (on-demand), DescribeSpotPriceHistory (spot)")
    if regions:
        unknown = sorted(set(regions) - set(enabled))
        if unknown:
            result.notes.append(f"not enabled for this account (skipped): {', '.join(unknown)}")
        todo = [r for r in regions if r in enabled]
    else:
        todo = [r for r in enabled if known_regions is None or r in known_regions]
    results = for_each_region("aws", todo, lambda r: get_region(r, clients, page_size=page_size, now=now),
                              concurrency, progress)
    skipped: dict[str, str] = {}
    for region, res in results.items():
        if isinstance(res, Exception):
            err = _boto_error(res, region)
            if err is None:
                raise res
            result.failed_regions[region] = str(err)
            if err.permission:
                result.missing_permissions.append(err.permission)
            continue
        result.regions.append(region)
        result.rows.extend(res["rows"])
        result.notes.extend(res["notes"])
        result.missing_permissions.extend(res["missing"])
        skipped.update(res["skipped"])
    if skipped:
        result.notes.append(f"{len(skipped)} instance types with GPUs carbonsched does not model were skipped "
                            f"(e.g. {', '.join(f'{k}: {v}' for k, v in sorted(skipped.items())[:3])})")
    if todo and not result.regions:
        first = next(iter(result.failed_regions.values()))
        raise CloudCatalogError(f"no AWS region could be read ({len(todo)} tried); first error: {first}", "aws",
                                result.missing_permissions[0] if result.missing_permissions else "")
    return result


class AwsLiveSource:
    """Offerings straight from the AWS APIs (registry name ``aws``); ``catalog refresh`` caches them."""

    name = "aws"

    def __init__(self, regions: list[str] | None = None, clients=None):
        self._regions, self._clients, self._result = regions, clients, None

    def list_offerings(self):
        if self._result is None:
            self._result = refresh(self._regions, clients=self._clients)
        return self._result.offerings()

    def describe(self) -> dict:
        r = self._result
        return {"name": "offerings", "source": SOURCE, "as_of": r.fetched_at.isoformat() if r else None,
                "note": "; ".join(r.notes) if r else "not fetched yet"}
