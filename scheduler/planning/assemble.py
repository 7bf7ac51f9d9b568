"""From estimate rows to the Plan: placements, savings against the baseline, the warnings a user
must see about the intensities and speeds behind them, and where every number came from.

``placement_at(offering, est, i, k, ...)`` reads row ``i`` (the offering), column ``k`` (the start)
of the estimate arrays; ``with_saving`` adds ``saving_vs_baseline_pct = (baseline - p) / baseline``;
``assemble_plan`` adds the data sources and counts of the candidates behind the ranking.
"""
from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np

from carbonsched import data
from carbonsched.models import Forecast, Gpu, Offering, Placement, Plan, Region

if TYPE_CHECKING:
    from carbonsched.planning.candidates import JobCandidates
    from carbonsched.spec.job import JobSpec

def placement_at(o: Offering, est, i: int, k: int, start: datetime, forecast: Forecast, region: Region,
               rank_no: int | None = None, score: float | None = None) -> Placement:
    """The Placement of estimate row ``i``, column ``k``, starting at ``start``."""
    runtime = float(est.runtime_h[i])
    kg_op, kg_emb = float(est.kg_operational[i, k]), float(est.kg_embodied[i])
    kg_p90 = float(est.kg_co2e_p90[i, k]) if est.kg_co2e_p90 is not None else None
    econ = {"spot_restart_overhead_hours": float(est.spot_restart_overhead_h[i]),
            "data_transfer_usd": float(est.transfer_usd[i]), "data_transfer_kwh": float(est.transfer_kwh[i]),
            "kg_co2e_transfer": float(est.kg_transfer[i])} if est.kg_transfer is not None else {}
    return Placement(
        provider=o.provider, region=o.region, zone=o.zone, zones=o.zones, instance_type=o.instance_type,
        gpu=o.gpu, gpu_count=o.gpu_count, market=o.market, start=start, end=start + timedelta(hours=runtime),
        runtime_hours=runtime, energy_kwh=float(est.energy_kwh[i]),
        mean_intensity_g_per_kwh=float(est.mean_intensity[i, k]), kg_co2e_operational=kg_op,
        kg_co2e_embodied=kg_emb, kg_co2e=kg_op + kg_emb + econ.get("kg_co2e_transfer", 0.0),
        cost_usd=float(est.cost_usd[i]),
        price_usd_per_hour=o.price_usd_per_hour, intensity_source=forecast.source,
        intensity_signal=forecast.signal, pue=region.pue, rank=rank_no, score=score, kg_co2e_p90=kg_p90, **econ,
    )


def with_saving(p: Placement, baseline: Placement) -> Placement:
    """``p`` with its saving against ``baseline`` (a shallow copy: Placement checks nothing on
    construction, and ``replace`` through ``__init__`` was a third of a 10k-job batch's assembly)."""
    pct = (baseline.kg_co2e - p.kg_co2e) / baseline.kg_co2e * 100.0 if baseline.kg_co2e > 0 else None
    out = copy.copy(p)
    object.__setattr__(out, "saving_vs_baseline_pct", pct)
    return out


def intensity_warnings(forecasts: dict[str, Forecast], shown: set[str]) -> list[str]:
    """What the user must know about the intensities behind the shown placements."""
    out = []
    for r in sorted(shown):
        out.extend(forecasts[r].warnings)
    flat = sorted(r for r in shown if "yearly" in forecasts[r].kind)
    if flat:
        out.append("no hourly intensity data for " + ", ".join(f"{r} ({forecasts[r].zone})" for r in flat)
                   + ": a flat yearly mean is used, so timing cannot help there")
    signals = {forecasts[r].signal for r in shown}
    if len(signals) > 1:
        by = "; ".join(f"{sig}: {', '.join(sorted(r for r in shown if forecasts[r].signal == sig))}" for sig in sorted(signals))
        out.append(f"intensity signals differ across regions ({by}); lifecycle, direct and marginal figures "
                   "are not comparable, so treat the ranking across them with care")
    if any(seg["source"] == "embedded-profile" for r in shown for seg in (forecasts[r].segments or [{"source": forecasts[r].source}])):
        out.append("offline: intensities are typical-day profiles (Electricity Maps 2022 hourly, lifecycle), "
                   "not a forecast for these days" if all(forecasts[r].source == "embedded-profile" for r in shown)
                   else "some hours use the embedded typical-day profiles (2022), not a live forecast")
    return out


def speed_warnings(job: JobSpec, placements: list[Placement], gpus: dict[str, Gpu]) -> list[str]:
    """Say when runtimes on other GPU types are extrapolated from datasheets."""
    others = sorted({p.gpu for p in placements if p.gpu != job.gpu and p.gpu not in (job.throughput or {})})
    if not others:
        return []
    ref = gpus[job.gpu]
    ratios = ", ".join(f"{g} {gpus[g].training_tflops / ref.training_tflops:.2f}x" for g in others)
    return [f"runtimes on other GPUs are scaled from {job.gpu} by datasheet dense throughput ({ratios}); real "
            "training speedups are usually smaller: give measured [throughput] or restrict constraints.gpu_types"]


def data_sources(offerings_source, forecasts: dict[str, Forecast], shown: set[str],
                 regions: dict[str, Region] | None = None) -> list[dict]:
    """Where every number came from: the catalog, each shown region's intensity (with the provider's
    own published figures beside it, labelled, when it publishes any), and the reference data."""
    prov: dict[str, list[dict]] = {}
    for row in data.read_rows("provenance.csv"):
        prov.setdefault(row["file"], []).append(row)
    out = [dict(offerings_source.describe())]
    for r in sorted(shown):
        entry = {"name": "intensity", **forecasts[r].provenance()}
        if any(s["source"].startswith("embedded") for s in entry["segments"]) or forecasts[r].source.startswith("embedded"):
            entry["attribution"] = "Electricity Maps (ODbL) for the embedded profiles"
        facts = regions[r].provider_facts() if regions and r in regions else None
        if facts:
            entry["provider_published"] = facts
        out.append(entry)
    for name in ("regions.csv", "gpus.csv"):
        rows = prov.get(name, [])
        if rows:
            out.append({"name": name.removesuffix(".csv"), "as_of": max(r["retrieved"] for r in rows),
                        "sources": [{"source": r["source"], "licence": r["licence"], "attribution": r["attribution"]}
                                    for r in rows]})
    return out


def price_warnings(flagged: dict, placements: list[Placement], limit: int = 3) -> list[str]:
    """Say when a shown placement's catalog price is in doubt (``providers.cloud.anomalies``)."""
    first: dict[tuple, str] = {}  # (region_id, instance, market) -> why; one entry per offering, in rank order
    for p in placements:
        why = flagged.get((p.provider, p.region, p.instance_type, p.market))
        if why:
            first.setdefault((p.region_id, p.instance_type, p.market), why)
    doubtful = [(*key, why) for key, why in first.items()]
    out = [f"the catalog price of {rid} {inst} ({market}) is in doubt ({why}); check it before trusting the ranking"
           for rid, inst, market, why in doubtful[:limit]]
    if len(doubtful) > limit:
        out.append(f"{len(doubtful) - limit} more shown placements have prices in doubt")
    if doubtful:
        out.append("`carbonsched catalog check` lists every price anomaly; exclude_flagged_prices = true "
                   "(or --exclude-flagged-prices) ranks without them")
    return out


def shown_regions(placements, baseline: Placement | None) -> set[str]:
    """The regions a plan shows: those of its placements and of the baseline."""
    return {p.region_id for p in placements} | ({baseline.region_id} if baseline else set())


def assemble_plan(jc: JobCandidates, placements: list[Placement], baseline: Placement | None,
                  warnings: list[str]) -> Plan:
    """The Plan of ranked ``placements`` chosen from ``jc``, with its data sources and candidate counts."""
    shown = shown_regions(placements, baseline)
    return Plan(
        now=jc.now, job=jc.job, policy=jc.policy, placements=tuple(placements), baseline=baseline,
        warnings=tuple(warnings), data_sources=tuple(data_sources(jc.offerings_source, jc.forecasts, shown, jc.regions)),
        forecasts={r: jc.forecasts[r] for r in shown}, n_candidates=jc.n_total,
        n_feasible=int(np.count_nonzero(jc.feasible)), eliminated=jc.eliminated,
        n_after_offering_filters=jc.n_remaining, eliminated_after_filters=jc.numeric_elim,
    )
