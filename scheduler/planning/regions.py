"""Where GPUs are offered: regions with grid intensity (ours and the provider's own figure), PUE,
and prices per GPU-hour (on-demand and spot) with the cheapest instance per GPU count. The
settings' Kubernetes contexts are listed beside the cloud regions, as plans use them."""
from __future__ import annotations

from carbonsched.errors import UserInputError
from carbonsched.kubernetes import PROVIDER as KUBERNETES, context_offerings, regions_with
from carbonsched.providers.cloud import choose_offering_source
from carbonsched.refdata import read_gpus, resolve_gpu


def list_regions(gpu: str | None = None, provider: str | None = None, offerings_source=None,
                 kube_contexts=()) -> list[dict]:
    """One dict per region offering ``gpu`` (any GPU when None), greenest (yearly mean) first;
    ``kube_contexts`` (the settings' ``kubernetes_contexts``) add a region ``kubernetes:NAME`` each."""
    regions, gpus = regions_with(kube_contexts), read_gpus()
    want = resolve_gpu(gpu, gpus).name if gpu else None
    if provider == KUBERNETES and not kube_contexts:
        raise UserInputError("no Kubernetes contexts are configured: add a [kubernetes.contexts.NAME] table to the "
                             "config file (`python -m pydoc carbonsched.kubernetes` shows one)")
    if provider is not None and provider not in {r.provider for r in regions.values()}:
        known = ", ".join(sorted({r.provider for r in regions.values()}))
        raise UserInputError(f"unknown provider {provider!r}; known: {known}")
    source = offerings_source or choose_offering_source()
    by_region: dict[str, list] = {}
    for o in [*source.list_offerings(), *context_offerings(kube_contexts)]:
        if o.region_id in regions and (want is None or o.gpu == want) and (provider is None or o.provider == provider):
            by_region.setdefault(o.region_id, []).append(o)
    rows = []
    catalog = source.describe().get("source", "")  # which catalog (user cache or embedded), with its age
    for rid, offers in by_region.items():
        r = regions[rid]
        on_demand = [o.price_usd_per_hour for o in offers if o.market == "on-demand"]
        rows.append({
            "region_id": rid, "provider": r.provider, "region": r.region, "location": r.location,
            "grid_zone": r.grid_zone, "profile_zone": r.profile_zone,
            "yearly_intensity_g_per_kwh": r.yearly_intensity_g_per_kwh,
            "yearly_intensity_basis": r.yearly_intensity_basis, "pue": r.pue,
            "gpus": ", ".join(sorted({o.gpu for o in offers})),
            "instance_types": sorted({o.instance_type for o in offers}),
            "min_usd_per_hour": min(on_demand) if on_demand else None,
            "usd_per_gpu_hour": _min_per_gpu(offers, "on-demand"),
            "spot_usd_per_gpu_hour": _min_per_gpu(offers, "spot"),
            "cheapest_by_gpu_count": _cheapest_by_gpu_count(offers),
            "pue_source": r.pue_source,
            "provider_published": r.provider_facts(),
            "offerings_source": "settings (kubernetes.contexts)" if r.provider == KUBERNETES else catalog,
        })
    rows.sort(key=lambda x: (x["yearly_intensity_g_per_kwh"], x["region_id"]))
    return rows


def _min_per_gpu(offers: list, market: str) -> float | None:
    prices = [o.price_usd_per_hour / max(o.gpu_count, 1) for o in offers if o.market == market]
    return min(prices) if prices else None


def _cheapest_by_gpu_count(offers: list) -> dict[str, dict]:
    """Per GPU count (as a string key, for JSON): the cheapest on-demand instance and its price."""
    out: dict[str, dict] = {}
    for o in sorted((o for o in offers if o.market == "on-demand"), key=lambda o: (o.price_usd_per_hour, o.instance_type)):
        out.setdefault(str(o.gpu_count), {"instance_type": o.instance_type, "gpu": o.gpu,
                                          "usd_per_hour": o.price_usd_per_hour})
    return dict(sorted(out.items(), key=lambda kv: int(kv[0])))
