"""Kubernetes clusters as placements: a kube context, the grid it draws from, the GPUs it holds.

A team's own cluster is a candidate like a cloud region once the settings file says where it is
and what it has (SkyPilot launches onto it as ``infra: k8s/CONTEXT``)::

    [kubernetes.contexts.my-h100]
    region = "aws:us-east-1"      # a region id whose grid powers it (the cluster runs in that
                                  # cloud region), or a grid zone such as "SE-SE3" (on premises)
    gpus = { H100 = 8 }           # GPU type -> GPUs per node a job can get
    usd_per_gpu_hour = 0.0        # internal rate (default 0: already paid for)
    pue = 1.3                     # optional: the site's PUE (default: the region's, or 1.2 for a zone)
    vcpus_per_gpu = 12            # optional host size per GPU, for the host power (default 12)
    memory_gib_per_gpu = 96       # optional (default 96)

Each context becomes a region ``kubernetes:NAME`` (provider ``kubernetes``) with the grid of the region
or zone it names, and one on-demand offering per GPU type (instance type ``NAME/8xH100``). Plans,
reports and the ledger resolve those ids with ``all_regions(settings)``; the embedded reference
data never contains them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from carbonsched.errors import ConfigError, UnknownNameError
from carbonsched.models import Offering, Region
from carbonsched.refdata import read_gpus, read_regions, resolve_gpu, resolve_region

PROVIDER = "kubernetes"
PREFIX = PROVIDER + ":"
ZONE_PUE = 1.2  # a site's PUE when the settings name only a grid zone (an assumption; give `pue`)
KEYS = {"region", "gpus", "usd_per_gpu_hour", "pue", "vcpus_per_gpu", "memory_gib_per_gpu"}


@dataclass(frozen=True)
class KubeContext:
    name: str
    region: str  # region id or grid zone
    gpus: tuple[tuple[str, int], ...]  # (GPU type, count per node)
    usd_per_gpu_hour: float = 0.0
    pue: float | None = None
    vcpus_per_gpu: float = 12.0
    memory_gib_per_gpu: float = 96.0

    @property
    def region_id(self) -> str:
        return PREFIX + self.name


def _number(value, what: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise ConfigError(f"{what} must be a number from {low:g} to {high:g}, got {value!r}")
    return float(value)


def parse_contexts(table, where: str) -> tuple[KubeContext, ...]:
    """The ``[kubernetes.contexts.*]`` tables of a settings file; ConfigError naming what is wrong."""
    if not isinstance(table, dict) or set(table) - {"contexts"}:
        raise ConfigError(f"{where}: [kubernetes] holds one table, [kubernetes.contexts.NAME] per context")
    out = []
    for name, spec in (table.get("contexts") or {}).items():
        at = f"{where}: kubernetes.contexts.{name}"
        if not isinstance(spec, dict):
            raise ConfigError(f"{at} must be a table with region and gpus, e.g. region = \"aws:us-east-1\", "
                              "gpus = { H100 = 8 }")
        unknown = set(spec) - KEYS
        if unknown:
            raise ConfigError(f"{at}: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(KEYS))}")
        if not isinstance(spec.get("region"), str) or not isinstance(spec.get("gpus"), dict) or not spec["gpus"]:
            raise ConfigError(f"{at} needs region (a region id or grid zone) and gpus (e.g. {{ H100 = 8 }})")
        gpus = []
        for gpu, count in spec["gpus"].items():
            try:
                ref = resolve_gpu(gpu)
            except UnknownNameError as exc:
                raise ConfigError(f"{at}.gpus: {exc}") from None
            if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 1024:
                raise ConfigError(f"{at}.gpus.{gpu} must be a whole number of GPUs per node (1-1024), got {count!r}")
            gpus.append((ref.name, count))
        ctx = KubeContext(name=name, region=spec["region"], gpus=tuple(gpus),
                          usd_per_gpu_hour=_number(spec.get("usd_per_gpu_hour", 0.0), f"{at}.usd_per_gpu_hour", 0, 1000),
                          pue=_number(spec["pue"], f"{at}.pue", 1.0, 3.0) if "pue" in spec else None,
                          vcpus_per_gpu=_number(spec.get("vcpus_per_gpu", 12), f"{at}.vcpus_per_gpu", 0, 256),
                          memory_gib_per_gpu=_number(spec.get("memory_gib_per_gpu", 96), f"{at}.memory_gib_per_gpu", 0, 4096))
        context_region(ctx, read_regions(), at)  # its region or zone must be known
        out.append(ctx)
    return tuple(out)


def context_region(ctx: KubeContext, regions: dict[str, Region], where: str = "") -> Region:
    """The region ``kubernetes:NAME`` of a context: the grid (zone, profiles, yearly figure) of the region
    or zone it names, its own name, provider and PUE; no provider-published figures."""
    try:
        base = resolve_region(ctx.region, regions)
        pue = ctx.pue or base.pue
    except UnknownNameError:
        base = next((r for r in regions.values() if ctx.region in (r.grid_zone, r.profile_zone)), None)
        if base is None:
            raise ConfigError(f"{where or ctx.name}: region {ctx.region!r} is neither a region id nor a grid zone of "
                              "the reference data; name one (`carbonsched regions` lists them)") from None
        pue = ctx.pue or ZONE_PUE
    return replace(base, region_id=ctx.region_id, provider=PROVIDER, region=ctx.name, pue=pue,
                   location=f"Kubernetes context {ctx.name} (grid of {base.grid_zone}, {base.location})",
                   pue_source="settings" if ctx.pue else (base.pue_source if pue == base.pue else "assumed 1.2"),
                   provider_published_g_per_kwh=None, provider_published_basis="", provider_published_year=None,
                   provider_cfe_pct=None)


def all_regions(settings=None) -> dict[str, Region]:
    """The embedded regions plus the settings' Kubernetes contexts (``kubernetes:NAME``)."""
    return regions_with(getattr(settings, "kubernetes_contexts", ()) or ())


def regions_with(contexts) -> dict[str, Region]:
    """The embedded regions plus those of ``contexts``."""
    regions = read_regions()
    if not contexts:
        return regions
    return {**regions, **{c.region_id: context_region(c, regions) for c in contexts}}


def context_offerings(contexts) -> list[Offering]:
    """One on-demand offering per context and GPU type (module docstring)."""
    gpus = read_gpus()
    return [Offering(provider=PROVIDER, region=c.name, instance_type=f"{c.name}/{n}x{gpu}", gpu=gpu, gpu_count=n,
                     vcpus=c.vcpus_per_gpu * n, memory_gib=c.memory_gib_per_gpu * n,
                     gpu_memory_gib=gpus[gpu].memory_gb * n, price_usd_per_hour=c.usd_per_gpu_hour * n,
                     price_basis="internal rate (settings)" if c.usd_per_gpu_hour else "owned (settings: 0)",
                     source="settings")
            for c in contexts for gpu, n in c.gpus]
