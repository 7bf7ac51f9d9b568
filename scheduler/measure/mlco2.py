"""``carbonsched estimate``: the ML CO2 Impact calculator's answer beside ours, each term shown.

The ML CO2 Impact calculator (Lacoste et al. 2019, https://mlco2.github.io/impact, code in
``mlco2/impact`` ``js/grayscale.js``) computes, rounding each step to 2 decimals as JavaScript's
``toFixed(2)`` does (half away from zero on the exact binary value)::

    energy_kWh = r2(TDP_W * hours / 1000)
    impact     = r2(trunc(intensity_g_per_kWh) / 1000)        # kg/kWh; the site parseInt()s the CSV value
    kgCO2e     = r2(energy_kWh * impact)
    offset_kg  = r2(kgCO2e * offsetRatio / 100)               # "already offset by the provider"

It has no GPU count and no PUE: ``hours`` are device-hours (mlco2/impact issue #39 asks users
to multiply hours by the number of GPUs), so ``hours = wall_hours * gpus`` here.

Ours (``carbonsched.planning.estimate``): ``P = n * u * TDP + vcpus * w_vcpu + GiB * w_gib``,
``E = P * hours * PUE / 1000``, operational = ``E * I / 1000`` with I the region's yearly mean
(a plan uses the hourly forecast instead), embodied = ``n * embodied_kg * hours / life_hours``.

The calculator's own data (its ``gpus.csv`` and ``impact.csv``, MIT) is not shipped; pass the
folder holding them (``--calculator-data``) to reproduce the site's numbers. Without it the
calculator's formula is applied to carbonsched's data (TDP, yearly intensity), and says so.
"""
from __future__ import annotations

import csv
import math
import re
from dataclasses import asdict, dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from carbonsched.errors import DataError, UnknownNameError, UserInputError, did_you_mean
from carbonsched.models import PowerModel
from carbonsched.models import Gpu, Region
from carbonsched.providers.cloud import get_offering_source
from carbonsched.refdata import resolve_gpu, resolve_region

CITATION = "Lacoste et al. 2019, Quantifying the Carbon Emissions of Machine Learning (arXiv:1910.09700)"
GPU_FILES = ("gpus.csv", "mlco2_gpus.csv")
REGION_FILES = ("impact.csv", "mlco2_impact_regions.csv")


def r2(x: float) -> float:
    """JavaScript ``Number(x.toFixed(2))``: the exact binary value rounded half away from zero."""
    return float(Decimal(x).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class CalculatorAnswer:
    hardware: str
    tdp_w: float
    device_hours: float
    intensity_g_per_kwh: float
    impact_kg_per_kwh: float
    energy_kwh: float
    kg_co2e: float
    offset_pct: float
    kg_offset: float
    data: str


def mlco2_calculator(tdp_w: float, device_hours: float, intensity_g_per_kwh: float, offset_pct: float = 0.0,
                     hardware: str = "", data: str = "") -> CalculatorAnswer:
    """The calculator's arithmetic, rounding included (module docstring)."""
    energy = r2(tdp_w * device_hours / 1000.0)
    impact = r2(math.trunc(intensity_g_per_kwh) / 1000.0)
    co2 = r2(energy * impact)
    return CalculatorAnswer(hardware=hardware, tdp_w=tdp_w, device_hours=device_hours,
                            intensity_g_per_kwh=intensity_g_per_kwh, impact_kg_per_kwh=impact, energy_kwh=energy,
                            kg_co2e=co2, offset_pct=offset_pct, kg_offset=r2(co2 * offset_pct / 100.0), data=data)


@dataclass(frozen=True)
class CalculatorData:
    """The calculator's tables: hardware name -> W; ``provider:region`` -> row."""

    gpus: dict[str, float]
    regions: dict[str, dict]
    origin: str


def _find(directory: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        hits = sorted(directory.rglob(name))
        if hits:
            return hits[0]
    raise UserInputError(f"{directory}: none of {', '.join(names)} found (the ML CO2 Impact calculator's data/ folder)")


def read_calculator_data(directory: str | Path) -> CalculatorData:
    directory = Path(directory)
    if not directory.is_dir():
        raise UserInputError(f"--calculator-data {directory} is not a folder")
    gpath, rpath = _find(directory, GPU_FILES), _find(directory, REGION_FILES)
    try:
        with gpath.open(newline="", encoding="utf-8") as fh:
            gpus = {row["name"].strip(): float(row["tdp_watts"]) for row in csv.DictReader(fh) if row.get("tdp_watts")}
        with rpath.open(newline="", encoding="utf-8") as fh:
            regions = {f"{row['provider'].strip()}:{row['region'].strip()}": row for row in csv.DictReader(fh)}
    except (KeyError, ValueError) as exc:
        raise DataError(f"calculator data in {directory} has an unexpected layout ({exc})") from None
    return CalculatorData(gpus=gpus, regions=regions, origin=f"{gpath.name} + {rpath.name} in {directory}")


def _norm(name: str) -> str:
    text = re.sub(r"[^a-z0-9]", "", name.lower())
    for prefix in ("nvidia", "tesla"):
        text = text.removeprefix(prefix)
    return text


def match_calculator_gpu(gpu: Gpu, names, explicit: str | None = None) -> str:
    """The calculator's hardware name for ``gpu`` (by name/alias), or ``explicit`` when given."""
    names = list(names)
    if explicit:
        if explicit in names:
            return explicit
        raise UnknownNameError(f"calculator hardware {explicit!r} not found{did_you_mean(explicit, names)}")
    keys = {_norm(gpu.name), *(_norm(a) for a in gpu.aliases)}
    hits = [n for n in names if _norm(n) in keys]
    if len(hits) == 1:
        return hits[0]
    close = [n for n in names if _norm(gpu.name) in _norm(n)]
    raise UnknownNameError(f"cannot match {gpu.name} to one of the calculator's hardware names"
                           f"{' (candidates: ' + ', '.join(close) + ')' if close else ''}; choose with --calculator-gpu")


@dataclass(frozen=True)
class EstimateComparison:
    gpu: str
    gpus: int
    hours: float
    region_id: str
    calculator: CalculatorAnswer
    ours: dict
    terms: tuple[dict, ...]
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        return {"schema_version": 1, "gpu": self.gpu, "gpus": self.gpus, "hours": self.hours,
                "region_id": self.region_id, "calculator": asdict(self.calculator), "ours": dict(self.ours),
                "terms": list(self.terms), "notes": list(self.notes), "calculator_citation": CITATION}


def _host(region: Region, gpu: Gpu, gpus: int) -> tuple[float, float, str]:
    """vCPUs and GiB of the cheapest on-demand instance with these GPUs in the region."""
    offers = [o for o in get_offering_source().list_offerings()
              if o.region_id == region.region_id and o.gpu == gpu.name and o.gpu_count == gpus and o.market == "on-demand"]
    if not offers:
        return 0.0, 0.0, f"no {gpus}x{gpu.name} instance in {region.region_id} in the catalog: host power left out (give --vcpus/--memory-gib)"
    o = min(offers, key=lambda x: (x.price_usd_per_hour, x.instance_type))
    return o.vcpus, o.memory_gib, f"host of {o.instance_type}: {o.vcpus:g} vCPUs, {o.memory_gib:g} GiB"


def compare(gpu: str, gpus: int, hours: float, region: str, *, power: PowerModel | None = None,
            vcpus: float | None = None, memory_gib: float | None = None, calculator_data: CalculatorData | None = None,
            calculator_gpu: str | None = None) -> EstimateComparison:
    if gpus < 1 or not (hours > 0 and math.isfinite(hours)):
        raise UserInputError(f"--gpus must be >= 1 and --hours > 0 (got {gpus}, {hours})")
    for name, value in (("--vcpus", vcpus), ("--memory-gib", memory_gib)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise UserInputError(f"{name} must be a finite number >= 0, got {value}")
    power = power or PowerModel()
    g, r = resolve_gpu(gpu), resolve_region(region)
    notes = []
    if vcpus is None or memory_gib is None:
        v, m, note = _host(r, g, gpus)
        vcpus = v if vcpus is None else vcpus
        memory_gib = m if memory_gib is None else memory_gib
        notes.append(note)
    device_hours = hours * gpus
    if calculator_data is not None:
        name = match_calculator_gpu(g, calculator_data.gpus, calculator_gpu)
        row = calculator_data.regions.get(r.region_id)
        if row is None:
            raise UnknownNameError(f"the calculator's data has no region {r.region_id}"
                                   f"{did_you_mean(r.region_id, calculator_data.regions)}")
        calc = mlco2_calculator(calculator_data.gpus[name], device_hours, float(row["impact"]),
                                float(row.get("offsetRatio") or 0), hardware=name,
                                data=f"the calculator's own data ({calculator_data.origin})")
        if calculator_data.gpus[name] != g.tdp_w:
            notes.append(f"the calculator lists {name} at {calculator_data.gpus[name]:g} W; carbonsched's {g.name} TDP is {g.tdp_w:g} W")
    else:
        calc = mlco2_calculator(g.tdp_w, device_hours, r.yearly_intensity_g_per_kwh, 0.0, hardware=g.name,
                                data="carbonsched's data (pass --calculator-data for the calculator's own tables)")
    p_gpu = gpus * power.utilisation_factor * g.tdp_w
    p_host = vcpus * power.host_w_per_vcpu + memory_gib * power.host_w_per_gib
    energy = (p_gpu + p_host) * hours * r.pue / 1000.0
    kg_op = energy * r.yearly_intensity_g_per_kwh / 1000.0
    kg_emb = gpus * g.embodied_kg_co2e * hours / power.embodied_life_hours
    ours = {"gpu_power_w": p_gpu, "host_power_w": p_host, "pue": r.pue, "energy_kwh": energy,
            "intensity_g_per_kwh": r.yearly_intensity_g_per_kwh, "intensity_basis": r.yearly_intensity_basis,
            "kg_co2e_operational": kg_op, "kg_co2e_embodied": kg_emb, "kg_co2e": kg_op + kg_emb}
    terms = (
        {"term": "GPU power", "calculator": f"{calc.tdp_w:g} W (TDP)", "ours": f"{gpus} x {power.utilisation_factor:g} x {g.tdp_w:g} W = {p_gpu:g} W"},
        {"term": "host power", "calculator": "not counted", "ours": f"{vcpus:g} vCPU x {power.host_w_per_vcpu:g} W + {memory_gib:g} GiB x {power.host_w_per_gib:g} W = {p_host:.1f} W"},
        {"term": "hours", "calculator": f"{calc.device_hours:g} device-hours ({hours:g} h x {gpus})", "ours": f"{hours:g} h"},
        {"term": "PUE", "calculator": "not counted", "ours": f"{r.pue:g}"},
        {"term": "energy", "calculator": f"{calc.energy_kwh:.2f} kWh", "ours": f"{energy:.2f} kWh"},
        {"term": "intensity", "calculator": f"{calc.impact_kg_per_kwh:.2f} kg/kWh ({calc.intensity_g_per_kwh:g} g/kWh)",
         "ours": f"{r.yearly_intensity_g_per_kwh:g} g/kWh ({r.yearly_intensity_basis})"},
        {"term": "operational", "calculator": f"{calc.kg_co2e:.2f} kgCO2e", "ours": f"{kg_op:.2f} kgCO2e"},
        {"term": "embodied", "calculator": "not counted", "ours": f"{kg_emb:.3f} kgCO2e ({gpus} x {g.embodied_kg_co2e:g} kg x {hours:g} h / {power.embodied_life_hours:g} h)"},
        {"term": "total", "calculator": f"{calc.kg_co2e:.2f} kgCO2e", "ours": f"{kg_op + kg_emb:.2f} kgCO2e"},
        {"term": "offset by provider", "calculator": f"{calc.kg_offset:.2f} kgCO2e ({calc.offset_pct:g} %)", "ours": "not subtracted"},
    )
    return EstimateComparison(gpu=g.name, gpus=gpus, hours=hours, region_id=r.region_id, calculator=calc, ours=ours,
                              terms=terms, notes=tuple(notes))
