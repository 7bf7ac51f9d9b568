"""What ``job_candidates`` reads, built once per planning call and shared by every job of a batch.

A ``PlanInputs`` belongs to one call (``plan`` for one job, ``plan_batch`` for many): one ``now``,
one settings object, one offerings source and one forecast source. Each memo below is a pure
function of those and of the job fields in its key, so sharing changes no result; it only stops a
batch of N jobs from repeating the same work N times (listing and checking the catalog, turning
offerings into arrays, matching constraints, fetching a region's forecast):

* ``usable(spot)``: the offerings plans may use (the catalog's plus the settings' Kubernetes
  contexts, ``carbonsched.kubernetes``; known region and GPU; spot only when allowed;
  doubtful prices left out when the setting says so), as an ``OfferingTable`` of arrays, with the
  flagged prices and the warnings that listing produced;
* ``categorical(job)``: the per-offering masks of the job's categorical constraints, keyed by
  (spot, GPU types, counts, providers, regions, excluded regions);
* ``baseline(job, region)``: "default region, start now", keyed by (region, GPU, count, accepted
  types);
* ``forecast(region, t0, hours)``: one forecast per (region, first hour, length).
"""
from __future__ import annotations

import fnmatch
import weakref
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from carbonsched.models import Forecast, Gpu, Offering, Region
from carbonsched.providers.cloud import choose_offering_source
from carbonsched.providers.cloud.anomalies import check_offerings, offering_key
from carbonsched.providers.cloud.cache import quota_warnings
from carbonsched.providers.grid import build_forecast_source
from carbonsched.kubernetes import context_offerings, regions_with
from carbonsched.refdata import read_gpus
from carbonsched.settings import Settings
from carbonsched.spec.job import JobSpec

# GPUs whose instances have ARM (Graviton) hosts: x86 software does not run there unchanged
ARM_HOST_GPUS = frozenset({"T4G"})


def accepted_gpu_types(job: JobSpec, gpus: dict[str, Gpu]) -> set[str]:
    """The job's GPU types: as listed, else every GPU with at least the reference GPU's memory
    (and, unless the reference is one, none on ARM hosts)."""
    if job.gpu_types:
        return set(job.gpu_types)
    ref = gpus[job.gpu]
    return {name for name, g in gpus.items() if g.memory_gb >= ref.memory_gb
            and (name not in ARM_HOST_GPUS or job.gpu in ARM_HOST_GPUS)}


@dataclass(frozen=True, eq=False)
class OfferingTable:
    """Offerings as columns (index i = ``offerings[i]``); GPU and region facts joined in."""

    offerings: list[Offering]
    region_id: np.ndarray  # str
    provider: np.ndarray  # str
    gpu: np.ndarray  # str
    market: np.ndarray  # str
    gpu_count: np.ndarray  # float
    vcpus: np.ndarray
    memory_gib: np.ndarray
    price_usd_per_hour: np.ndarray
    tdp_w: np.ndarray
    embodied_kg_per_gpu: np.ndarray
    gpu_memory_gb: np.ndarray
    pue: np.ndarray
    quota_ok: np.ndarray | None  # bool; None when no offering carries a quota
    gpu_names: np.ndarray  # the distinct GPU types, sorted; gpu_code[i] indexes it
    gpu_code: np.ndarray
    region_names: np.ndarray  # the distinct region ids, sorted; region_code[i] indexes it
    region_code: np.ndarray

    @classmethod
    def build(cls, offerings: list[Offering], regions: dict[str, Region], gpus: dict[str, Gpu]) -> "OfferingTable":
        def col(f, dtype=float):
            return np.array([f(o) for o in offerings], dtype=dtype)

        rid = col(lambda o: o.region_id, object)
        gpu = col(lambda o: o.gpu, object)
        quota = any(o.max_instances is not None for o in offerings)
        gpu_names, gpu_code = np.unique(gpu.astype(str), return_inverse=True)
        region_names, region_code = np.unique(rid.astype(str), return_inverse=True)
        return cls(offerings=offerings, region_id=rid, provider=col(lambda o: o.provider, object),
                   gpu=gpu, market=col(lambda o: o.market, object),
                   gpu_names=gpu_names, gpu_code=gpu_code, region_names=region_names, region_code=region_code,
                   gpu_count=col(lambda o: o.gpu_count), vcpus=col(lambda o: o.vcpus),
                   memory_gib=col(lambda o: o.memory_gib), price_usd_per_hour=col(lambda o: o.price_usd_per_hour),
                   tdp_w=col(lambda o: gpus[o.gpu].tdp_w), embodied_kg_per_gpu=col(lambda o: gpus[o.gpu].embodied_kg_co2e),
                   gpu_memory_gb=col(lambda o: gpus[o.gpu].memory_gb), pue=np.array([regions[r].pue for r in rid], dtype=float),
                   quota_ok=col(lambda o: o.max_instances is None or o.max_instances >= 1, bool) if quota else None)

    def by_gpu(self, values: dict[str, float]) -> np.ndarray:
        """A per-GPU-type value (e.g. speed) for every offering."""
        return np.array([values[n] for n in self.gpu_names], dtype=float)[self.gpu_code]

    def matches(self, patterns: tuple[str, ...]) -> np.ndarray:
        """Offerings whose region id matches any glob in ``patterns``."""
        hit = np.array([any(fnmatch.fnmatchcase(i, p) for p in patterns) for i in self.region_names], dtype=bool)
        return hit[self.region_code]


_FLAGGED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _flagged_prices(offerings_source, offerings: list[Offering]) -> dict:
    """The catalog check's doubtful prices, computed once per offerings source (plans made one
    after another against one source need not check it again)."""
    try:
        cached = _FLAGGED.get(offerings_source)
    except TypeError:  # a source that cannot be weakly referenced: check every time
        return check_offerings(offerings).flagged
    if cached is None or cached[0] != len(offerings):
        cached = (len(offerings), check_offerings(offerings).flagged)
        _FLAGGED[offerings_source] = cached
    return cached[1]


class PlanInputs:
    """The memos of one planning call (see the module docstring)."""

    def __init__(self, offerings_source, forecast_source, exclude_flagged: bool = False, kube_contexts=()):
        self.offerings_source, self.forecast_source = offerings_source, forecast_source
        self.exclude_flagged = exclude_flagged
        self.kube_contexts = tuple(kube_contexts)  # the settings' Kubernetes clusters, candidates beside the clouds
        self.regions, self.gpus = regions_with(self.kube_contexts), read_gpus()
        self._listed = None
        self._usable: dict[bool, tuple[OfferingTable, tuple[str, ...]]] = {}
        self._masks: dict[tuple, dict[str, np.ndarray]] = {}
        self._baseline: dict[tuple, tuple[Offering | None, int]] = {}
        self._forecasts: dict[tuple, Forecast] = {}
        self._intensity_cum: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    @classmethod
    def for_settings(cls, settings: Settings, offerings_source=None, forecast_source=None) -> "PlanInputs":
        """The inputs a plan uses under ``settings``: the given sources, else those the settings
        choose (the catalog cache with quotas, the configured intensity chain)."""
        return cls(offerings_source or choose_offering_source(settings),
                   forecast_source or build_forecast_source(settings), settings.exclude_flagged_prices,
                   getattr(settings, "kubernetes_contexts", ()))

    def _list(self) -> tuple[list[Offering], dict, tuple[str, ...]]:
        if self._listed is None:
            offerings = list(self.offerings_source.list_offerings()) + context_offerings(self.kube_contexts)
            said = tuple(getattr(self.offerings_source, "warnings", ()))  # e.g. which catalog, its age
            self._listed = (offerings, _flagged_prices(self.offerings_source, offerings), said)
        return self._listed

    @property
    def flagged(self) -> dict:
        """offering_key -> why its catalog price is in doubt."""
        return self._list()[1]

    def usable(self, spot: bool) -> tuple[OfferingTable, tuple[str, ...]]:
        """(the offerings a job may use, the warnings listing them produced)."""
        if spot not in self._usable:
            listed, flagged, said = self._list()
            warnings = list(said)
            usable = [o for o in listed if o.region_id in self.regions and o.gpu in self.gpus
                      and (spot or o.market != "spot")]
            if self.exclude_flagged:
                dropped = sum(1 for o in usable if offering_key(o) in flagged)
                usable = [o for o in usable if offering_key(o) not in flagged]
                if dropped:
                    warnings.append(f"{dropped} offerings left out: their catalog price is in doubt "
                                    "(exclude_flagged_prices; `carbonsched catalog check` says why)")
            skipped = sum(1 for o in listed if o.region_id not in self.regions or o.gpu not in self.gpus)
            if skipped:
                warnings.append(f"{skipped} offerings skipped: their region or GPU is not in the embedded reference data")
            warnings.extend(quota_warnings(usable))
            self._usable[spot] = (OfferingTable.build(usable, self.regions, self.gpus), tuple(warnings))
        return self._usable[spot]

    def categorical(self, job: JobSpec) -> dict[str, np.ndarray]:
        """Masks over ``usable(job.spot)`` of the job's categorical constraints, by name."""
        types = frozenset(accepted_gpu_types(job, self.gpus))
        counts = frozenset(job.gpu_counts or (job.gpus,))
        key = (job.spot, types, counts, tuple(job.providers or ()), tuple(job.regions or ()),
               tuple(job.exclude_regions or ()))
        if key not in self._masks:
            t, _ = self.usable(job.spot)
            masks = {"gpu_type": np.isin(t.gpu_names, list(types))[t.gpu_code],
                     "gpu_count": np.isin(t.gpu_count, list(counts))}
            if job.providers:
                masks["provider"] = np.array([o.provider in job.providers for o in t.offerings], dtype=bool)
            if job.regions:
                masks["region"] = t.matches(tuple(job.regions))
            if job.exclude_regions:
                masks["exclude_regions"] = ~t.matches(tuple(job.exclude_regions))
            if t.quota_ok is not None:  # quotas known (refreshed catalog): one instance needed
                masks["quota"] = t.quota_ok
            self._masks[key] = masks
        return self._masks[key]

    def baseline(self, job: JobSpec, region: Region) -> tuple[Offering | None, int]:
        """"Default region, start now": (the cheapest on-demand offering there of the job's GPU type
        and count, else of any accepted type with that count, its row in ``usable(job.spot)``);
        (None, -1) when there is none."""
        types = frozenset(accepted_gpu_types(job, self.gpus))
        key = (job.spot, region.region_id, job.gpu, job.gpus, types)
        if key not in self._baseline:
            t, _ = self.usable(job.spot)
            here = np.flatnonzero((t.region_id == region.region_id) & (t.market == "on-demand") & (t.gpu_count == job.gpus))
            pick = [i for i in here if t.offerings[i].gpu == job.gpu] or [i for i in here if t.offerings[i].gpu in types]
            best = min(pick, key=lambda i: (t.offerings[i].price_usd_per_hour, t.offerings[i].instance_type), default=-1)
            self._baseline[key] = (t.offerings[best] if best >= 0 else None, int(best))
        return self._baseline[key]

    def forecasts(self, regions: list[Region], start: datetime, hours: int) -> dict[str, Forecast]:
        """One forecast per region; those not yet fetched are fetched concurrently when a live
        source is involved (network-bound), sequentially otherwise (threads would only add overhead)."""
        todo = [r for r in regions if (r.region_id, start, hours) not in self._forecasts]
        source = self.forecast_source
        if getattr(source, "live", None) is None or len(todo) < 2:
            got = [source.forecast(r, start, hours) for r in todo]
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(8, len(todo))) as pool:
                got = list(pool.map(lambda r: source.forecast(r, start, hours), todo))
        for r, f in zip(todo, got):
            self._forecasts[(r.region_id, start, hours)] = f
        return {r.region_id: self._forecasts[(r.region_id, start, hours)] for r in regions}

    def intensity_cum(self, region_ids: tuple[str, ...], start: datetime, hours: int, make) -> tuple[np.ndarray, np.ndarray]:
        """``make()`` -- the (mean, p90) hourly prefix sums of these regions' forecasts -- once per
        (regions, start, hours): a batch's job shapes share a few region sets and horizons.
        The arrays are shared: read-only."""
        key = (region_ids, start, hours)
        if key not in self._intensity_cum:
            cums = make()
            for a in cums:
                a.flags.writeable = False
            self._intensity_cum[key] = cums
        return self._intensity_cum[key]
