"""Price anomalies in an offerings catalog: pure functions over the offerings, no I/O.

A public catalog joins host and GPU prices per region, and a bad join or a stale row wins plans on
price without anyone noticing (the snapshot has GCP H100 rows where ``a3-highgpu-8g`` costs
$43.07/h and ``a3-megagpu-8g`` $92.21/h in one region and the reverse in another). The checks:

* ``spot_above_on_demand``: an instance's spot price is at or above its on-demand price in the
  same region (a spot price is a discount; otherwise the row is wrong or stale);
* ``regional_outlier``: an instance type's on-demand price (so its price per GPU-hour) more than
  ``RATIO`` (2x) away, either side, from the median of the same instance type across the
  provider's regions (the "same GPU, one region 2x the others" symptom; comparing one instance
  type keeps host size out of it: a 1-GPU 64-vCPU host is not a 1-GPU 4-vCPU one);
* ``variant_spread``: in one region, instance types with the same GPU type and count on hosts of
  similar size (vCPUs within 1.5x) whose on-demand prices are more than ``RATIO`` apart; the
  variant farther from its own regional median is flagged (its host+GPU join is wrong);
* ``stale``: the catalog is older than ``max_age_days``.

``check_offerings`` returns every anomaly and ``flagged``, the offerings (by ``offering_key``)
whose price is in doubt: plans warn when a shown placement uses one, and the ranking can leave
them out (``exclude_flagged_prices``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from carbonsched.models import Offering

RATIO = 2.0
NOISE = 1e-9  # relative: prices this close compare as equal, so a change of currency unit flips nothing


def _above(a: float, b: float) -> bool:
    """``a > b`` by more than float noise."""
    return a > b * (1 + NOISE)

OfferingKey = tuple[str, str, str, str]  # provider, region, instance type, market


def offering_key(o: Offering) -> OfferingKey:
    return (o.provider, o.region, o.instance_type, o.market)


@dataclass(frozen=True)
class Anomaly:
    kind: str  # spot_above_on_demand | regional_outlier | variant_spread | stale
    provider: str
    region: str = ""
    instance_type: str = ""
    market: str = ""
    detail: str = ""

    @property
    def key(self) -> OfferingKey:
        return (self.provider, self.region, self.instance_type, self.market)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "provider": self.provider, "region": self.region,
                "instance_type": self.instance_type, "market": self.market, "detail": self.detail}


@dataclass(frozen=True)
class CatalogCheck:
    anomalies: tuple[Anomaly, ...]
    flagged: dict[OfferingKey, str] = field(default_factory=dict)  # offering -> why its price is in doubt

    def to_dict(self) -> dict:
        kinds: dict[str, int] = {}
        for a in self.anomalies:
            kinds[a.kind] = kinds.get(a.kind, 0) + 1
        return {"schema_version": 1, "anomalies": [a.to_dict() for a in self.anomalies], "counts": kinds,
                "flagged_offerings": len(self.flagged)}


def per_gpu_hour(o: Offering) -> float:
    return o.price_usd_per_hour / max(o.gpu_count, 1)


def instance_medians(offerings: list[Offering]) -> dict[tuple[str, str], float]:
    """Median on-demand price of each (provider, instance type) across its regions."""
    prices: dict[tuple[str, str], list[float]] = {}
    for o in offerings:
        if o.market == "on-demand" and o.price_usd_per_hour > 0:
            prices.setdefault((o.provider, o.instance_type), []).append(o.price_usd_per_hour)
    return {k: _median(v) for k, v in prices.items()}


def _median(values: list[float]) -> float:
    """The median (``statistics`` would cost the plan command its import of fractions/decimal)."""
    v = sorted(values)
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2


def _off_median(o: Offering, medians: dict[tuple[str, str], float]) -> float:
    """How far (a ratio >= 1) ``o``'s price is from its instance type's regional median."""
    median = medians.get((o.provider, o.instance_type)) or o.price_usd_per_hour
    r = o.price_usd_per_hour / median
    return max(r, 1 / r)


def spot_above_on_demand(offerings: list[Offering]) -> list[Anomaly]:
    on_demand = {(o.provider, o.region, o.instance_type): o.price_usd_per_hour
                 for o in offerings if o.market == "on-demand"}
    out = []
    for o in offerings:
        od = on_demand.get((o.provider, o.region, o.instance_type))
        if o.market == "spot" and od is not None and not _above(od, o.price_usd_per_hour):
            out.append(Anomaly("spot_above_on_demand", o.provider, o.region, o.instance_type, "spot",
                               f"spot ${o.price_usd_per_hour:.2f}/h >= on-demand ${od:.2f}/h"))
    return out


def regional_outliers(offerings: list[Offering], medians: dict[tuple[str, str], float]) -> list[Anomaly]:
    out = []
    for o in offerings:
        median = medians.get((o.provider, o.instance_type))
        if o.market != "on-demand" or not median or o.price_usd_per_hour <= 0:
            continue
        ratio = o.price_usd_per_hour / median
        if _above(o.price_usd_per_hour, RATIO * median) or _above(median, RATIO * o.price_usd_per_hour):
            out.append(Anomaly("regional_outlier", o.provider, o.region, o.instance_type, "on-demand",
                               f"${per_gpu_hour(o):.2f} per {o.gpu}-hour is {ratio:.2f}x the median of "
                               f"{o.instance_type} across {o.provider} regions (${median / max(o.gpu_count, 1):.2f})"))
    return out


def variant_spreads(offerings: list[Offering], medians: dict[tuple[str, str], float]) -> list[Anomaly]:
    groups: dict[tuple, list[Offering]] = {}
    for o in offerings:
        if o.market == "on-demand" and o.price_usd_per_hour > 0:
            groups.setdefault((o.provider, o.region, o.gpu, o.gpu_count), []).append(o)
    out, seen = [], set()
    for (provider, region, gpu, count), group in sorted(groups.items()):
        group = sorted(group, key=lambda o: (o.price_usd_per_hour, o.instance_type))
        for i, a in enumerate(group):
            for b in group[i + 1:]:
                similar_host = max(a.vcpus, b.vcpus) <= 1.5 * max(min(a.vcpus, b.vcpus), 1)
                if not similar_host or not _above(b.price_usd_per_hour, RATIO * a.price_usd_per_hour):
                    continue
                worse, other = (a, b) if _off_median(a, medians) > _off_median(b, medians) else (b, a)
                if worse.instance_type in seen:
                    continue
                seen.add(worse.instance_type)
                out.append(Anomaly("variant_spread", provider, region, worse.instance_type, "on-demand",
                                   f"{worse.instance_type} ${worse.price_usd_per_hour:.2f}/h vs {other.instance_type} "
                                   f"${other.price_usd_per_hour:.2f}/h for the same {count}x{gpu} host size in {region}"))
        seen.clear()
    return out


def staleness(as_of: str | dict | None, today: date | None, max_age_days: float | None,
              provider: str = "") -> list[Anomaly]:
    """A catalog older than ``max_age_days``; ``as_of`` per provider when a cache mixes fresh
    sections with the embedded snapshot (``CachedCatalog.describe``)."""
    if isinstance(as_of, dict):
        return [a for p, when in sorted(as_of.items()) for a in staleness(when, today, max_age_days, p)]
    if not as_of or today is None or max_age_days is None:
        return []
    try:
        age = (today - date.fromisoformat(as_of[:10])).days
    except ValueError:
        return [Anomaly("stale", provider, detail=f"catalog date {as_of!r} is unreadable")]
    if age > max_age_days:
        return [Anomaly("stale", provider, detail=f"catalog as of {as_of[:10]} is {age} days old "
                                                  f"(> {max_age_days:g}); refresh it: carbonsched catalog refresh")]
    return []


def check_offerings(offerings: list[Offering], *, as_of: str | None = None, today: date | None = None,
                    max_age_days: float | None = None) -> CatalogCheck:
    """Every anomaly of ``offerings`` (see the module docstring) and the offerings they put in doubt."""
    medians = instance_medians(offerings)
    anomalies = (spot_above_on_demand(offerings) + regional_outliers(offerings, medians)
                 + variant_spreads(offerings, medians) + staleness(as_of, today, max_age_days))
    flagged: dict[OfferingKey, str] = {}
    for a in anomalies:
        if a.instance_type:
            flagged.setdefault(a.key, f"{a.kind}: {a.detail}")
    return CatalogCheck(tuple(anomalies), flagged)
