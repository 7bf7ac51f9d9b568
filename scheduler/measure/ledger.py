"""Forecast vs actual for a tracked run: the ledger behind ``carbonsched report``.

For a measurement record (``carbonsched.measure.track``) run in region r with IT energy ``E_h`` (kWh) in
UTC hour h (the record's ``hourly`` split):

* intensity ``I_h`` (g/kWh): the grid source's *history* for those hours where it has one
  (``source.live.history``), else the source's forecast for them (live forecast, forecaster or
  embedded profile). Each hour keeps its label, so the report says what the number is.
* operational kgCO2e = ``sum_h E_h * PUE(r) * I_h / 1000``; energy-weighted intensity
  ``I = sum_h E_h I_h / sum_h E_h``.
* embodied kgCO2e = ``n_gpu * embodied_kg(g) * wall_h / life_hours`` (as in ``estimate``).
* where: a launched job's record says where it ran (``ran_on``): on *this machine* (the local
  launcher) its grid region is the configured ``local_region``, else the default region, said
  in a warning; no data-centre PUE is applied (1.0) and the plan's forecast, made for other
  hardware, is not compared; its GPUs are the ones NVML saw (none assumed); on a cloud instance
  without NVML readings, the placement's GPUs (their energy is then modelled, and the record
  says so).
* forecast (from a plan JSON): the placement that ran (same region; else rank 1). Errors:
  ``kg_actual - kg_forecast`` and in % of the forecast, split into energy
  ``(E_actual * PUE - E_forecast) / E_forecast`` and intensity ``(I_actual - I_forecast) / I_forecast``;
  and, from the forecasts the plan stored, the forecast over the hours the run really took
  (``run_window_forecast_g_per_kwh``), so a late start does not pass for a forecast error.
* counterfactual baseline: the same hourly energy in the default region at the same hours,
  ``sum_h E_h * PUE(b) * I_b,h / 1000`` + the same embodied; saving = ``(kg_b - kg) / kg_b``. A
  run on this machine is compared at its own PUE (1.0): only the grids differ. With the region's
  PUE on one side only, a run whose grid was unknown (assumed the default region's) claimed a
  12 % saving made of nothing but that PUE.
* energy estimate error: the power model's GPU energy ``n * u * TDP * wall`` vs the measured GPU
  energy (only when the GPUs were measured); the implied factor ``u* = E_gpu / (sum TDP * wall)``.
* calibration: ``u = sum_runs E_gpu / sum_runs (sum TDP) * wall`` over measured past runs
  (GPU-time weighted), giving a PowerModel with that utilisation factor.
* uncertainty (relative, 1 sigma-ish, combined in quadrature): energy per method (NVML 5 %, RAPL
  10 %, model 50 %) and intensity from the forecast's p10-p90 half-width where hours are not
  history (the history's own error is not included; the report says so).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta

import numpy as np

from carbonsched.errors import GridSourceError, UnknownNameError, UserInputError
from carbonsched.models import EMBODIED_LIFE_HOURS, PowerModel
from carbonsched.models import Gpu, Region
from carbonsched.units import g_to_kg, iso_utc, parse_utc
from carbonsched.refdata import resolve_gpu, resolve_region

METHOD_REL_UNCERTAINTY = {"nvml-energy": 0.05, "nvml-power": 0.05, "nvml-mixed": 0.05, "rapl": 0.10, "model": 0.50,
                          "none": 0.0}


@dataclass(frozen=True, eq=False)
class RunIntensity:
    """Hourly intensity over a run: ``labels[i]`` is ``source/kind`` of hour i."""

    start: datetime
    values_g_per_kwh: np.ndarray
    p10_g_per_kwh: np.ndarray
    p90_g_per_kwh: np.ndarray
    labels: tuple[str, ...]
    signal: str
    warnings: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        return "+".join(dict.fromkeys(label.split("/")[1] for label in self.labels))

    @property
    def source(self) -> str:
        return "+".join(dict.fromkeys(label.split("/")[0] for label in self.labels))


def run_intensity(region: Region, start: datetime, hours: int, source) -> RunIntensity:
    """Intensity for ``[start, start + hours)``: history where the source has it, else its forecast."""
    values = np.full(hours, np.nan)
    labels = [""] * hours
    warnings: list[str] = []
    signal = None
    live = getattr(source, "live", None)
    if live is not None and hasattr(live, "history"):
        try:
            hist = live.history(region, start + timedelta(hours=hours), hours)
            part = hist.window(start, hours)
            have = np.isfinite(part)
            values[have] = part[have]
            for i in np.flatnonzero(have):
                labels[i] = f"{hist.source}/history"
            signal = hist.signal if have.any() else None
        except GridSourceError as exc:
            warnings.append(f"{region.region_id}: no history from {live.name} ({exc}); using its forecast")
    p10, p90 = values.copy(), values.copy()
    missing = ~np.isfinite(values)
    if missing.any():
        fc = source.forecast(region, start, hours)
        signal = signal or fc.signal
        values[missing] = fc.intensity_g_per_kwh[missing]
        p10[missing] = (fc.p10_g_per_kwh if fc.p10_g_per_kwh is not None else fc.intensity_g_per_kwh)[missing]
        p90[missing] = (fc.p90_g_per_kwh if fc.p90_g_per_kwh is not None else fc.intensity_g_per_kwh)[missing]
        seg_label = _segment_labels(fc, start, hours)
        for i in np.flatnonzero(missing):
            labels[i] = seg_label[i]
        warnings.extend(fc.warnings)
    return RunIntensity(start=start, values_g_per_kwh=values, p10_g_per_kwh=p10, p90_g_per_kwh=p90,
                        labels=tuple(labels), signal=signal or "average-lca", warnings=tuple(warnings))


def _segment_labels(fc, start: datetime, hours: int) -> list[str]:
    out = [f"{fc.source}/{fc.kind}"] * hours
    for seg in fc.segments:
        a = int((parse_utc(seg["from"]) - start) / timedelta(hours=1))
        b = int((parse_utc(seg["to"]) - start) / timedelta(hours=1))
        for i in range(max(0, a), min(hours, b)):
            out[i] = f"{seg['source']}/{seg['kind']}"
    return out


def resolve_device_gpu(name: str | None) -> Gpu | None:
    """The reference GPU for an NVML device name (``NVIDIA H100 80GB HBM3`` -> H100), or None."""
    if not name:
        return None
    candidates = [name]
    for prefix in ("NVIDIA ", "Tesla ", "NVIDIA Tesla "):
        if name.startswith(prefix):
            candidates.append(name[len(prefix):])
    candidates += [c.split()[0] for c in list(candidates) if " " in c]
    for c in candidates:
        try:
            return resolve_gpu(c)
        except UnknownNameError:
            continue
    return None


def _hourly(record: dict) -> tuple[datetime, np.ndarray]:
    rows = record.get("hourly") or []
    if not rows:
        start = parse_utc(record["started_at"]).replace(minute=0, second=0, microsecond=0)
        return start, np.array([float(record["it_energy_kwh"])])
    start = parse_utc(rows[0]["hour"])
    n = int((parse_utc(rows[-1]["hour"]) - start) / timedelta(hours=1)) + 1
    e = np.zeros(n)
    for r in rows:
        e[int((parse_utc(r["hour"]) - start) / timedelta(hours=1))] += float(r["it_energy_kwh"])
    return start, e


def _pick_placement(plan: dict, region_id: str | None) -> dict | None:
    placements = plan.get("placements") or []
    if region_id:
        for p in placements:
            if p.get("region_id") == region_id:
                return p
    return placements[0] if placements else None


@dataclass(frozen=True)
class Ledger:
    job_id: str | None
    region_id: str
    location: str
    pue: float
    started_at: datetime
    ended_at: datetime
    wall_hours: float
    gpu_name: str | None
    gpu_count: int
    it_energy_kwh: float
    facility_energy_kwh: float
    energy_methods: dict
    intensity_g_per_kwh: float
    intensity_source: str
    intensity_kind: str
    intensity_signal: str
    kg_co2e_operational: float
    kg_co2e_embodied: float
    kg_co2e: float
    hourly: tuple[dict, ...]
    forecast: dict | None = None
    baseline: dict | None = None
    energy_estimate: dict | None = None
    uncertainty: dict = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["started_at"], d["ended_at"] = iso_utc(self.started_at), iso_utc(self.ended_at)
        d["hourly"], d["warnings"] = list(self.hourly), list(self.warnings)
        return d


def build_ledger(record: dict, *, source, region: str | None = None, plan: dict | None = None,
                 baseline_region: str | None = None, gpu: str | None = None, power: PowerModel | None = None,
                 regions: dict | None = None) -> Ledger:
    """The ledger of one measurement record (module docstring). ``source`` is a forecast source
    (``build_forecast_source``); ``baseline_region`` defaults to the plan's baseline, else none;
    ``regions``: where region ids resolve (``kubernetes.all_regions(settings)``: the reference
    data plus the settings' Kubernetes contexts)."""
    warnings: list[str] = []
    ran = record.get("ran_on") or {}
    here = ran.get("where") == "this machine"
    placement = _pick_placement(plan, region or record.get("region_id")) if plan else None
    region_id = region or record.get("region_id")
    if not region_id and here:
        region_id = baseline_region
        if region_id:
            warnings.append(f"this machine's grid region is not known (set local_region in the settings, or give "
                            f"--region): the intensity of {region_id}, the default region, is assumed")
    region_id = region_id or (None if here else (placement or {}).get("region_id"))
    if not region_id:
        raise UserInputError("where did the job run? give --region (or track with --region, or pass the --plan it followed)")
    r = resolve_region(region_id, regions)
    start, e_it = _hourly(record)
    wall_h = float(record["wall_seconds"]) / 3600.0
    hours = len(e_it)
    ri = run_intensity(r, start, hours, source)
    warnings.extend(ri.warnings)
    pue = 1.0 if here else r.pue  # this machine is not in the region's data centres: no facility overhead assumed
    e_fac = e_it * pue
    kg_op = float(g_to_kg(np.sum(e_fac * ri.values_g_per_kwh)))
    mean_i = float(np.sum(e_it * ri.values_g_per_kwh) / np.sum(e_it)) if np.sum(e_it) > 0 else float(np.mean(ri.values_g_per_kwh))

    devices = record.get("gpu", {}).get("devices") or []
    g, n_gpu = _run_gpus(record, devices, ran, placement, gpu)
    life = power.embodied_life_hours if power else EMBODIED_LIFE_HOURS
    kg_emb = n_gpu * g.embodied_kg_co2e * wall_h / life if g else 0.0
    if n_gpu and g is None:
        warnings.append(f"GPU {devices[0].get('name')!r} is not in the reference data: embodied emissions left out (give --gpu)")

    methods = {k: record[k]["method"] for k in ("gpu", "cpu", "memory")}
    forecast = None
    if placement and here:
        warnings.append(f"the plan ({placement.get('gpu_count')}x {placement.get('gpu')} for "
                        f"{float(placement.get('runtime_hours') or 0):.2f} h in {placement.get('region_id')}) is not "
                        "compared with this run: it ran on this machine")
    elif placement:
        kg_f, e_f, i_f = float(placement["kg_co2e"]), float(placement["energy_kwh"]), float(placement["mean_intensity_g_per_kwh"])
        total = kg_op + kg_emb
        forecast = {
            "region_id": placement["region_id"], "start": placement["start"], "runtime_hours": placement["runtime_hours"],
            "energy_kwh": e_f, "mean_intensity_g_per_kwh": i_f, "kg_co2e": kg_f,
            "intensity_source": placement.get("intensity_source"), "intensity_signal": placement.get("intensity_signal"),
            "error_kg": total - kg_f, "error_pct": (total - kg_f) / kg_f * 100 if kg_f else None,
            "energy_error_pct": (float(e_fac.sum()) - e_f) / e_f * 100 if e_f else None,
            "intensity_error_pct": (mean_i - i_f) / i_f * 100 if i_f else None,
            "start_delay_hours": (parse_utc(record["started_at"]) - parse_utc(placement["start"])).total_seconds() / 3600,
            **_forecast_over_run(plan, r.region_id, start, e_it, mean_i),
        }
        if placement["region_id"] != r.region_id:
            where = "on this machine" if here else f"in {r.region_id}"
            warnings.append(f"the job ran {where}, not in the plan's {placement['region_id']}")
    base_id = baseline_region or ((plan or {}).get("baseline") or {}).get("region_id")
    baseline = None
    if base_id:
        b = resolve_region(base_id, regions)
        bi = run_intensity(b, start, hours, source)
        b_pue = pue if here else b.pue  # this machine's energy on that grid: the grids compared, not the buildings
        kg_b = float(g_to_kg(np.sum(e_it * b_pue * bi.values_g_per_kwh))) + kg_emb
        baseline = {"region_id": b.region_id, "pue": b_pue, "kg_co2e": kg_b,
                    "mean_intensity_g_per_kwh": float(np.sum(e_it * bi.values_g_per_kwh) / max(np.sum(e_it), 1e-300)),
                    "intensity_source": bi.source, "intensity_kind": bi.kind, "intensity_signal": bi.signal,
                    "saving_pct": (kg_b - kg_op - kg_emb) / kg_b * 100 if kg_b > 0 else None}
        if bi.signal != ri.signal:
            warnings.append(f"baseline intensity is {bi.signal}, the run's {ri.signal}: the saving compares unlike figures")

    energy_estimate = _energy_estimate(record, devices, g, power or PowerModel(), wall_h)
    unc = _uncertainty(record, ri, e_it)
    hourly = tuple({"hour": iso_utc(start + timedelta(hours=i)), "it_energy_kwh": float(e_it[i]),
                    "intensity_g_per_kwh": float(ri.values_g_per_kwh[i]), "label": ri.labels[i]} for i in range(hours))
    return Ledger(
        job_id=record.get("job_id"), region_id=r.region_id, location=r.location, pue=pue,
        started_at=parse_utc(record["started_at"]), ended_at=parse_utc(record["ended_at"]), wall_hours=wall_h,
        gpu_name=g.name if g else (devices[0].get("name") if devices else None), gpu_count=n_gpu,
        it_energy_kwh=float(e_it.sum()), facility_energy_kwh=float(e_fac.sum()), energy_methods=methods,
        intensity_g_per_kwh=mean_i, intensity_source=ri.source, intensity_kind=ri.kind, intensity_signal=ri.signal,
        kg_co2e_operational=kg_op, kg_co2e_embodied=kg_emb, kg_co2e=kg_op + kg_emb, hourly=hourly,
        forecast=forecast, baseline=baseline, energy_estimate=energy_estimate, uncertainty=unc,
        warnings=tuple(dict.fromkeys(warnings + list(record.get("warnings") or []))),
    )


def _run_gpus(record: dict, devices: list[dict], ran: dict, placement: dict | None, gpu: str | None) -> tuple[Gpu | None, int]:
    """The GPU type and count the run had: NVML's devices; for a launched run without them, the
    GPUs its launcher put there (``ran_on``: none on this machine, the placement's on a cloud
    instance); for a hand-tracked record without ``ran_on``, the plan's placement."""
    g = resolve_gpu(gpu) if gpu else (resolve_device_gpu(devices[0].get("name")) if devices else None)
    if ran:
        if g is None and ran.get("gpu"):
            g = resolve_device_gpu(ran["gpu"])
        return g, len(devices) or int(ran.get("gpu_count") or 0)
    if g is None and placement:
        g = resolve_gpu(placement["gpu"])
    return g, len(devices) or (int(placement["gpu_count"]) if placement else 0)


def _forecast_over_run(plan: dict | None, region_id: str, start: datetime, e_it: np.ndarray, mean_i: float) -> dict:
    """The plan's own forecast for the hours the run really took (its stored ``forecasts``), energy-
    weighted like the actual intensity: the forecast's error, apart from any move of the start."""
    fc = ((plan or {}).get("forecasts") or {}).get(region_id)
    if not fc:
        return {}
    by_hour = {row["time"]: row["intensity_g_per_kwh"] for row in fc.get("values") or []}
    hours = [iso_utc(start + timedelta(hours=i)) for i in range(len(e_it))]
    if not all(h in by_hour and by_hour[h] is not None for h in hours):
        return {"run_window_forecast_g_per_kwh": None}  # the run fell (partly) outside the stored forecast
    values = np.array([by_hour[h] for h in hours], dtype=float)
    w = e_it if e_it.sum() > 0 else np.ones(len(e_it))
    f = float(np.sum(w * values) / np.sum(w))
    return {"run_window_forecast_g_per_kwh": f, "run_window_intensity_error_pct": (mean_i - f) / f * 100 if f else None}


def _device_tdp(dev: dict, fallback: Gpu | None) -> float | None:
    g = resolve_device_gpu(dev.get("name")) or fallback
    return g.tdp_w if g else dev.get("tdp_w")


def _energy_estimate(record: dict, devices: list[dict], g: Gpu | None, power: PowerModel, wall_h: float) -> dict | None:
    measured = [d for d in devices if str(d.get("method", "")).startswith("nvml")]
    if not measured:
        return None
    tdp_sum = sum(_device_tdp(d, g) or 0.0 for d in measured)
    if tdp_sum <= 0:
        return None
    e_meas = sum(float(d["energy_kwh"]) for d in measured)
    e_model = power.utilisation_factor * tdp_sum * wall_h / 1000.0
    return {"gpu_measured_kwh": e_meas, "gpu_model_kwh": e_model, "utilisation_factor": power.utilisation_factor,
            "error_pct": (e_model - e_meas) / e_meas * 100 if e_meas > 0 else None,
            "implied_utilisation_factor": e_meas * 1000.0 / (tdp_sum * wall_h) if wall_h > 0 else None,
            "tdp_x_hours_kwh": tdp_sum * wall_h / 1000.0}


def _uncertainty(record: dict, ri: RunIntensity, e_it: np.ndarray) -> dict:
    parts = {k: (float(record[k]["energy_kwh"]), METHOD_REL_UNCERTAINTY.get(record[k]["method"], 0.5))
             for k in ("gpu", "cpu", "memory")}
    total = sum(e for e, _ in parts.values())
    energy_rel = math.sqrt(sum((e * u) ** 2 for e, u in parts.values())) / total if total > 0 else 0.0
    spread = (ri.p90_g_per_kwh - ri.p10_g_per_kwh) / 2.0
    w = e_it / e_it.sum() if e_it.sum() > 0 else np.full(len(e_it), 1 / len(e_it))
    mean_i = float(np.sum(w * ri.values_g_per_kwh))
    intensity_rel = float(np.sum(w * spread) / mean_i) if mean_i > 0 else 0.0
    history_share = float(np.sum(w[[("/history" in lab) for lab in ri.labels]]))
    return {"energy_rel": energy_rel, "intensity_rel": intensity_rel,
            "total_rel": math.sqrt(energy_rel ** 2 + intensity_rel ** 2), "history_share": history_share,
            "note": "energy: NVML 5 %, RAPL 10 %, model 50 % per part; intensity: the forecast's p10-p90 half-width "
                    "(history hours: the source's own error is not included)"}


@dataclass(frozen=True)
class Calibration:
    utilisation_factor: float
    runs: int
    gpu_hours: float
    per_run: tuple[float, ...]

    def power_model(self, base: PowerModel | None = None) -> PowerModel:
        return replace(base or PowerModel(), utilisation_factor=self.utilisation_factor)


def calibrate_utilisation(records: list[dict]) -> Calibration:
    """The GPU-time weighted utilisation factor ``u = sum E_gpu / sum TDP * t`` over measured runs."""
    num = den = 0.0
    per_run, runs, gpu_h = [], 0, 0.0
    for rec in records:
        wall_h = float(rec.get("wall_seconds", 0)) / 3600.0
        measured = [d for d in (rec.get("gpu") or {}).get("devices") or [] if str(d.get("method", "")).startswith("nvml")]
        tdps = [_device_tdp(d, None) for d in measured]
        if not measured or wall_h <= 0 or not all(tdps):
            continue
        e = sum(float(d["energy_kwh"]) for d in measured) * 1000.0  # Wh
        cap = sum(tdps) * wall_h
        num, den = num + e, den + cap
        per_run.append(e / cap)
        runs += 1
        gpu_h += len(measured) * wall_h
    if runs == 0:
        raise UserInputError("no past run has measured GPU energy (NVML) to calibrate from; track a run on a GPU first")
    return Calibration(utilisation_factor=num / den, runs=runs, gpu_hours=gpu_h, per_run=tuple(per_run))
