"""Live GPU offerings from Google Cloud (google-cloud-compute, REST; the ``carbonsched[gcp]`` extra).

What is fetched (``refresh``):
  * regions and their zones: ``regions.list`` (compute.regions.list);
  * accelerator types per zone: ``acceleratorTypes.aggregatedList`` (compute.acceleratorTypes.list);
  * GPU machine types per zone: ``machineTypes.aggregatedList`` filtered to the accelerator-optimised
    families (a2, a3, a4, g2, g4) and the n1-standard hosts of attachable GPUs
    (compute.machineTypes.list);
  * regional GPU quotas (``NVIDIA_*_GPUS``, ``PREEMPTIBLE_NVIDIA_*_GPUS``): ``regions.get`` per region,
    concurrently (compute.regions.get); ``max_instances = floor((limit - usage) / GPUs per VM)``;
    spot VMs use the preemptible quota when the region has one, else the on-demand quota (as GCP does).

Prices: the Cloud Billing Catalog API (``gcp_prices``: the Compute Engine service's SKUs, on-demand
and spot, priced per part: cores, memory and GPUs of the machine's family) when google-cloud-billing
is installed and the API answers; any price it cannot give (the API denied or not enabled, a part
without a SKU) comes from the embedded snapshot for the same (region, zone, machine type), else
the region's, and ``price_basis`` and the notes say which. Offerings without any price are skipped
(and counted).

N1 + attachable GPU (T4, V100, P100, P4) offerings follow the embedded catalog's convention
``n1-standard-(8 x N)+NxGPU`` for N in 1, 2, 4, 8 up to the zone's maximum cards per instance.

Credentials: ``google.auth.default()`` (``gcloud auth application-default login`` or
GOOGLE_APPLICATION_CREDENTIALS); project from CARBONSCHED_GCP_PROJECT, GOOGLE_CLOUD_PROJECT or the
credentials. CARBONSCHED_GCP_API_ENDPOINT points the clients elsewhere (a local server),
CARBONSCHED_GCP_BILLING_ENDPOINT the billing client alone; CARBONSCHED_GCP_ANONYMOUS=1 sends no credentials (for such servers only).
"""
from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Mapping

from carbonsched.errors import CloudAuthError, CloudCatalogError
from carbonsched.providers.cloud import gcp_prices
from carbonsched.providers.cloud.cache import RefreshResult, embedded_prices, for_each_region, max_instances
from carbonsched.refdata import read_gpus

# accelerator type -> (canonical GPU, regional quota metric)
ACCELERATORS = {
    "nvidia-tesla-t4": ("T4", "NVIDIA_T4_GPUS"), "nvidia-tesla-v100": ("V100", "NVIDIA_V100_GPUS"),
    "nvidia-tesla-p100": ("P100", "NVIDIA_P100_GPUS"), "nvidia-tesla-p4": ("P4", "NVIDIA_P4_GPUS"),
    "nvidia-tesla-a100": ("A100", "NVIDIA_A100_GPUS"), "nvidia-a100-80gb": ("A100-80GB", "NVIDIA_A100_80GB_GPUS"),
    "nvidia-l4": ("L4", "NVIDIA_L4_GPUS"), "nvidia-h100-80gb": ("H100", "NVIDIA_H100_GPUS"),
    "nvidia-h100-mega-80gb": ("H100", "NVIDIA_H100_MEGA_GPUS"), "nvidia-h200-141gb": ("H200", "NVIDIA_H200_GPUS"),
    "nvidia-b200": ("B200", "NVIDIA_B200_GPUS"),
}
N1_ATTACHABLE = {"nvidia-tesla-t4", "nvidia-tesla-v100", "nvidia-tesla-p100", "nvidia-tesla-p4"}
N1_COUNTS = (1, 2, 4, 8)
MACHINE_FILTER = 'name eq "(a2|a3|a4|g2|g4|n1-standard)-.*"'
PERMISSIONS = {"regions": "compute.regions.list", "accelerators": "compute.acceleratorTypes.list",
               "machines": "compute.machineTypes.list", "quotas": "compute.regions.get",
               "prices": "cloudbilling.googleapis.com services.skus.list"}
SCOPES = ["https://www.googleapis.com/auth/compute.readonly", "https://www.googleapis.com/auth/cloud-billing.readonly"]
SOURCE = "Google Compute Engine API: regions, acceleratorTypes, machineTypes; prices: Cloud Billing Catalog API"
SNAPSHOT = "embedded snapshot price"
LIVE = "gcp billing catalog"


# -- parsers (pure; inputs are the REST JSON shapes, or proto-plus objects converted to them) ------

def _zone_of(scope: str) -> str:
    return scope.rsplit("/", 1)[-1]


def _region_of_zone(zone: str) -> str:
    return zone.rsplit("-", 1)[0]


def _parse_accelerators(scoped: dict[str, list[dict]]) -> dict[str, dict[str, int]]:
    """``{zone: {accelerator type: maximum cards per instance}}`` for the NVIDIA types we model."""
    out: dict[str, dict[str, int]] = {}
    for scope, items in scoped.items():
        for a in items:
            if a["name"] in ACCELERATORS:
                out.setdefault(_zone_of(scope), {})[a["name"]] = int(a.get("maximumCardsPerInstance") or 0)
    return out


def _parse_machine_types(scoped: dict[str, list[dict]]) -> dict[str, dict[str, dict]]:
    """``{zone: {machine type: {vcpus, memory_gib, accelerator, count}}}`` (accelerator "" for hosts)."""
    out: dict[str, dict[str, dict]] = {}
    for scope, items in scoped.items():
        for m in items:
            accs = m.get("accelerators") or []
            acc = accs[0] if accs else {}
            out.setdefault(_zone_of(scope), {})[m["name"]] = {
                "vcpus": int(m["guestCpus"]), "memory_gib": float(m["memoryMb"]) / 1024.0,
                "accelerator": acc.get("guestAcceleratorType", ""), "count": int(acc.get("guestAcceleratorCount") or 0)}
    return out


def _parse_quotas(region: dict) -> dict[str, float]:
    """``{metric: limit - usage}`` (what is still free) from a Region resource."""
    return {q["metric"]: float(q.get("limit", 0)) - float(q.get("usage", 0)) for q in region.get("quotas") or []}


def _quota_for(quotas: dict | None, accelerator: str, count: int) -> dict:
    if quotas is None:
        return {"on_demand_max_instances": "", "spot_max_instances": "", "on_demand_quota": "", "spot_quota": ""}
    metric = ACCELERATORS[accelerator][1]
    spot_metric = "PREEMPTIBLE_" + metric if "PREEMPTIBLE_" + metric in quotas else metric
    out = {}
    for prefix, m in (("on_demand", metric), ("spot", spot_metric)):
        n = max_instances(quotas.get(m), count)  # a metric the region does not list: unknown, not zero
        out[f"{prefix}_max_instances"] = "" if n is None else str(n)
        out[f"{prefix}_quota"] = "" if n is None else f"gcp {m} ({quotas[m]:g} GPUs free)"
    return out


def _zone_offerings(machines: dict[str, dict], accelerators: dict[str, int]) -> list[tuple[str, str, dict]]:
    """``[(instance type, accelerator, machine)]`` launchable in one zone."""
    out = []
    for name, m in machines.items():
        if m["accelerator"] in ACCELERATORS and m["count"] > 0:
            out.append((name, m["accelerator"], m))
    for acc, max_cards in accelerators.items():
        if acc not in N1_ATTACHABLE:
            continue
        for n in N1_COUNTS:
            host = machines.get(f"n1-standard-{8 * n}")
            if n <= max_cards and host is not None:
                gpu = ACCELERATORS[acc][0]
                out.append((f"n1-standard-{8 * n}+{n}x{gpu}", acc, {**host, "accelerator": acc, "count": n}))
    return sorted(out)


def _price(live: gcp_prices.SkuPrices | None, snapshot: tuple[str, str], region: str, itype: str, m: dict,
           acc: str) -> tuple[str, str, str]:
    """(on-demand, spot, basis) for one machine: the live parts' sum where every part has a SKU,
    else the snapshot's (strings as in the CSV; "" = none)."""
    out, bases = [], []
    for i, market in enumerate(("on-demand", "spot")):
        usd = None if live is None else gcp_prices.price_machine(
            live, region, itype, m["vcpus"], m["memory_gib"], acc, m["count"], market)
        out.append(repr(usd) if usd is not None else snapshot[i])
        bases.append(LIVE if usd is not None else SNAPSHOT if snapshot[i] else "none")
    basis = bases[0] if bases[0] == bases[1] else f"{bases[0]}; spot: {bases[1]}"
    return out[0], out[1], basis


def _rows(regions: list[str], machines: dict, accelerators: dict, quotas: dict[str, dict | None],
          notes: list[str], live: gcp_prices.SkuPrices | None = None) -> list[dict]:
    """Per-zone rows (cache.ROW_FIELDS) for ``regions``, priced from ``live`` SKUs, else the snapshot."""
    gpus = read_gpus()
    by_zone, by_region = embedded_prices("gcp")
    rows, unpriced, from_snapshot = [], set(), set()
    wanted = set(regions)
    for zone in sorted(set(machines) | set(accelerators)):
        region = _region_of_zone(zone)
        if region not in wanted:
            continue
        for itype, acc, m in _zone_offerings(machines.get(zone, {}), accelerators.get(zone, {})):
            gpu = ACCELERATORS[acc][0]
            snapshot = by_zone.get((region, zone, itype)) or by_region.get((region, itype), ("", ""))
            od, spot, basis = _price(live, snapshot, region, itype, m, acc)
            if not od:
                unpriced.add(f"{region}/{itype}")
                continue
            if live is not None and SNAPSHOT in basis:
                from_snapshot.add(f"{region}/{itype}")
            rows.append({"provider": "gcp", "region": region, "zone": zone, "instance_type": itype, "gpu": gpu,
                         "gpu_count": str(m["count"]), "vcpus": str(m["vcpus"]), "memory_gib": f"{m['memory_gib']:g}",
                         "gpu_memory_gib": f"{gpus[gpu].memory_gb:g}", "price_usd_per_hour": od,
                         "spot_price_usd_per_hour": spot, "price_basis": basis,
                         **_quota_for(quotas.get(region), acc, m["count"])})
    if unpriced:
        notes.append(f"{len(unpriced)} machine types have no price (no SKU for every part, none in the embedded "
                     f"snapshot) and were skipped (e.g. {', '.join(sorted(unpriced)[:3])})")
    if from_snapshot:
        series: dict[str, set[str]] = {}
        for item in from_snapshot:
            region, itype = item.split("/")
            series.setdefault(region, set()).add("-".join(itype.split("+")[0].split("-")[:2]))
        where = "; ".join(f"{r}: {', '.join(sorted(s))}" for r, s in sorted(series.items()))
        notes.append(f"{len(from_snapshot)} machine types took a price from the embedded snapshot (the billing "
                     f"catalog has no SKU for one of their parts): {where}")
    return rows


def get_prices(client, regions: list[str], notes: list[str], page_size: int = 5000) -> gcp_prices.SkuPrices | None:
    """The billing catalog's part prices for ``regions``, or None (and a note) when it cannot be read."""
    if client is None:
        notes.append("prices: embedded snapshot (google-cloud-billing is not installed: pip install 'carbonsched[gcp]')")
        return None
    try:
        skus = _call("prices", lambda: gcp_prices.get_skus(client, page_size))
    except CloudCatalogError as exc:
        notes.append(f"prices: embedded snapshot (the Cloud Billing Catalog API failed: {exc}; enable "
                     "cloudbilling.googleapis.com in the project to get live prices)")
        return None
    live = gcp_prices.parse_skus(skus, set(regions))
    conflicts = f", {live.conflicts} conflicting part prices (the higher kept)" if live.conflicts else ""
    notes.append(f"prices: {gcp_prices.SOURCE}: {live.read} SKUs read, {len(live.prices)} part prices "
                 f"in these regions{conflicts}")
    return live


# -- network ---------------------------------------------------------------------------------------

def gcp_clients(env: Mapping[str, str] | None = None) -> tuple[dict, str]:
    """(``{"regions", "accelerators", "machines"}`` REST clients, project) from the environment."""
    env = os.environ if env is None else env
    try:
        from google.cloud import compute_v1
    except ImportError:
        raise CloudCatalogError("google-cloud-compute is not installed: pip install 'carbonsched[gcp]'", "gcp") from None
    project = env.get("CARBONSCHED_GCP_PROJECT") or env.get("GOOGLE_CLOUD_PROJECT") or ""
    if env.get("CARBONSCHED_GCP_ANONYMOUS") == "1":
        from google.auth.credentials import AnonymousCredentials

        creds = AnonymousCredentials()
    else:
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError

        try:
            creds, detected = google.auth.default(scopes=SCOPES)
        except DefaultCredentialsError:
            raise CloudAuthError("no Google Cloud credentials found: run `gcloud auth application-default login` "
                                 "or set GOOGLE_APPLICATION_CREDENTIALS; plans use the embedded snapshot meanwhile", "gcp") from None
        project = project or detected or ""
    if not project:
        raise CloudAuthError("no Google Cloud project: set GOOGLE_CLOUD_PROJECT (or CARBONSCHED_GCP_PROJECT)", "gcp")
    kw = {"transport": "rest", "credentials": creds}
    if env.get("CARBONSCHED_GCP_API_ENDPOINT"):
        kw["client_options"] = {"api_endpoint": env["CARBONSCHED_GCP_API_ENDPOINT"]}
    clients = {"regions": compute_v1.RegionsClient(**kw), "accelerators": compute_v1.AcceleratorTypesClient(**kw),
               "machines": compute_v1.MachineTypesClient(**kw), "billing": None}
    try:
        from google.cloud import billing_v1
    except ImportError:
        return clients, project
    billing = env.get("CARBONSCHED_GCP_BILLING_ENDPOINT") or env.get("CARBONSCHED_GCP_API_ENDPOINT")
    clients["billing"] = billing_v1.CloudCatalogClient(
        **{**kw, "client_options": {"api_endpoint": billing}} if billing else kw)
    return clients, project


def _google_error(exc: Exception, what: str, where: str = "") -> CloudCatalogError | None:
    from google.api_core import exceptions as gex

    perm = PERMISSIONS[what]
    at = f" in {where}" if where else ""
    if what == "prices" and isinstance(exc, (gex.Forbidden, gex.PermissionDenied)):
        return CloudAuthError(f"Google Cloud refused the Cloud Billing Catalog API ({exc.message})", "gcp")
    if isinstance(exc, (gex.Forbidden, gex.PermissionDenied)):
        return CloudAuthError(f"Google Cloud denied {perm}{at} ({exc.message}): grant it (e.g. role "
                              "roles/compute.viewer) to your account or service account", "gcp", perm)
    if isinstance(exc, gex.Unauthenticated):
        return CloudAuthError(f"Google Cloud rejected the credentials ({exc.message}): run "
                              "`gcloud auth application-default login`", "gcp", perm)
    if isinstance(exc, (gex.GoogleAPIError, OSError)):
        return CloudCatalogError(f"Google Cloud {perm}{at} failed: {exc}", "gcp", "")
    return None


def _call(what: str, fn, where: str = ""):
    try:
        return fn()
    except Exception as exc:
        err = _google_error(exc, what, where)
        if err is None:
            raise
        raise err from None


def _scoped(pager, field: str) -> dict[str, list[dict]]:
    """An aggregatedList pager (all pages) as ``{scope: [REST JSON items]}``."""
    out: dict[str, list[dict]] = {}
    for scope, scoped_list in pager:
        items = getattr(scoped_list, field)
        if items:
            out.setdefault(scope, []).extend(type(i).to_dict(i, use_integers_for_enums=False, preserving_proto_field_name=False) for i in items)
    return out


def get_quotas(client, project: str, region: str) -> dict[str, float]:
    r = _call("quotas", lambda: client.get(project=project, region=region), region)
    return _parse_quotas({"quotas": [{"metric": q.metric, "limit": q.limit, "usage": q.usage} for q in r.quotas]})


def refresh(regions: list[str] | None = None, *, clients: dict | None = None, project: str | None = None,
            concurrency: int = 8, page_size: int = 500, progress=None, now: datetime | None = None,
            known_regions: set[str] | None = None, env: Mapping[str, str] | None = None) -> RefreshResult:
    """Fetch GPU offerings and quotas for ``regions`` (default: UP regions carbonsched has data for)."""
    now = now or datetime.now(timezone.utc)
    if clients is None:
        clients, project = gcp_clients(env)
    result = RefreshResult("gcp", now, SOURCE, prices=gcp_prices.SOURCE)
    all_regions = _call("regions", lambda: [r.name for r in clients["regions"].list(
        request={"project": project, "max_results": page_size}) if r.status in ("", "UP")])
    if regions:
        unknown = sorted(set(regions) - set(all_regions))
        if unknown:
            result.notes.append(f"unknown or down regions (skipped): {', '.join(unknown)}")
        todo = [r for r in regions if r in all_regions]
    else:
        todo = [r for r in all_regions if known_regions is None or r in known_regions]
    accelerators = _parse_accelerators(_call("accelerators", lambda: _scoped(clients["accelerators"].aggregated_list(
        request={"project": project, "max_results": page_size}), "accelerator_types")))
    machines = _parse_machine_types(_call("machines", lambda: _scoped(clients["machines"].aggregated_list(
        request={"project": project, "filter": MACHINE_FILTER, "max_results": page_size}), "machine_types")))
    quotas: dict[str, dict | None] = {}
    for region, res in for_each_region("gcp", todo, lambda r: get_quotas(clients["regions"], project, r),
                                       concurrency, progress).items():
        if isinstance(res, CloudCatalogError):
            quotas[region] = None
            result.notes.append(f"quotas {region} (max instances unknown): {res}")
            if res.permission:
                result.missing_permissions.append(res.permission)
        elif isinstance(res, Exception):
            raise res
        else:
            quotas[region] = res
    result.regions = list(todo)
    live = get_prices(clients.get("billing"), todo, result.notes)
    if live is None:
        result.prices = "embedded snapshot (Cloud Billing Catalog API not read: see notes)"
    result.rows = _rows(todo, machines, accelerators, quotas, result.notes, live)
    return result


class GcpLiveSource:
    """Offerings straight from the Compute API (registry name ``gcp``); ``catalog refresh`` caches them."""

    name = "gcp"

    def __init__(self, regions: list[str] | None = None, clients: dict | None = None, project: str | None = None):
        self._regions, self._clients, self._project, self._result = regions, clients, project, None

    def list_offerings(self):
        if self._result is None:
            self._result = refresh(self._regions, clients=self._clients, project=self._project)
        return self._result.offerings()

    def describe(self) -> dict:
        r = self._result
        return {"name": "offerings", "source": SOURCE, "as_of": r.fetched_at.isoformat() if r else None,
                "note": f"prices: {r.prices if r else gcp_prices.SOURCE}"}
