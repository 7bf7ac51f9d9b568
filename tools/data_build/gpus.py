"""Build data/gpus.csv: one row per NVIDIA GPU model offered in the AWS/GCP catalog.

What each column means and why
------------------------------
* ``gpu`` is the canonical name the rest of carbonsched uses: the SkyPilot catalog's
  ``AcceleratorName``, except GCP's ``H100-MEGA`` (a3-megagpu: the same H100 SXM5 chip,
  only the host network differs), which is folded into ``H100`` and kept as an alias.
  AWS's ``T4g`` (g5g, Graviton host) stays its own row ``T4G``: same TU104 chip as T4.
* Throughput columns are *dense* tensor-core figures (no 2:4 sparsity), because the
  planner's runtime model scales by dense bf16/fp16 speed. ``dense_bf16_tflops`` is empty
  where the chip has no bf16 tensor support (Volta, Turing, Pascal). ``fp32_tflops`` is
  plain (non-tensor) FP32.
* ``tdp_w`` is the board power of the variant the clouds deploy (SXM for p4d/p5/a2/a3,
  the PCIe cards for g4dn/g5/g6/g6e/g2 and GCP's N1-attached P100/P4).
* ``embodied_kg_co2e`` follows the Green Algorithms method (Lannelongue et al.):
  ``gpu_base_impact_gwp + die_area_cm2 x gpu_die_impact_gwp``, both factors read from
  ``hardware/green_algorithms_hardware_impacts.csv``. Die areas come from
  ``hardware/green_algorithms_gpus.csv`` when that table has the chip, otherwise from the
  published die size (cited per row). HBM stacks, substrate and the host share are not in
  this method, so the figure is a lower bound.

The vendor figures are typed in below with their datasheet URL, because the only machine
readable table (``hardware/mlco2_gpus.csv``) mixes sparse peaks, TF32 and non-tensor FP16
into its TFLOPS columns; ``_mlco2_crosscheck`` prints where we differ from it.
"""
from __future__ import annotations

import csv
from pathlib import Path

FIELDS = ["gpu", "aliases", "vendor", "architecture", "form_factor", "tdp_w",
          "dense_bf16_tflops", "dense_fp16_tflops", "fp32_tflops", "memory_gb",
          "embodied_kg_co2e", "embodied_basis", "spec_source"]

# Datasheet URLs (NVIDIA unless stated).
_H100 = "https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet (H100 SXM: 1979 bf16/fp16 'with sparsity', dense = half = 989.4 per Hopper whitepaper; FP32 67)"
_H200 = "https://www.nvidia.com/en-us/data-center/h200/ (H200 SXM: same compute as H100 SXM, 1979 sparse bf16 -> 989.4 dense, FP32 67, 141 GB, up to 700 W)"
_B200 = ("https://www.nvidia.com/en-us/data-center/hgx/ (HGX B200 8-GPU: 36 PF fp16/bf16 sparse -> 2.25 PF dense per GPU, 1.44 TB); "
         "FP32 80 TF at 1000 W from NVIDIA Blackwell datasheet as tabulated at https://glennklockwood.com/garden/processors/B200 (secondary)")
_A100 = "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf (SXM4: 312 bf16/fp16 dense, 624 sparse; FP32 19.5; 400 W)"
_L40S = "https://resources.nvidia.com/en-us-l40s/l40s-datasheet-28413 (362.05 bf16/fp16 dense, 733 sparse; FP32 91.6; 350 W)"
_L4 = "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/l4/PB-11316-001_v01.pdf (242 bf16/fp16 sparse -> 121 dense; FP32 30.3; 72 W)"
_A10G = ("no NVIDIA datasheet for the AWS-only A10G: 70 TF fp16/bf16 tensor and 35 TF FP32 from https://www.baseten.co/blog/nvidia-a10-vs-a10g-for-ml-model-inference/ (secondary; "
         "A10 datasheet gives 125 dense bf16 / 31.2 FP32 at 150 W, the A10G trades tensor rate for 80 SMs); 300 W board power as reported by nvidia-smi on g5 (secondary)")
_T4 = "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/tesla-t4/t4-tensor-core-datasheet-951643.pdf (65 fp16 mixed-precision tensor; FP32 8.1; 70 W; no bf16)"
_V100 = "https://images.nvidia.com/content/technologies/volta/pdf/tesla-volta-v100-datasheet-letter-fnl-web.pdf (V100 SXM2: 125 tensor fp16; FP32 15.7; 300 W; no bf16)"
_P100 = "https://images.nvidia.com/content/tesla/pdf/nvidia-tesla-p100-PCIe-datasheet.pdf (P100 PCIe 16 GB: 18.7 fp16 (no tensor cores); FP32 9.3; 250 W)"
_P4 = ("https://images.nvidia.com/content/pdf/tesla/184457-Tesla-P4-Datasheet-NV-Final-Letter-Web.pdf (FP32 5.5; 75 W); GP104 native fp16 is 1/64 rate, "
       "so fp16 column = FP32 rate (what fp16-storage/fp32-math GEMMs get)")

# Published die sizes (mm2) used when green_algorithms_gpus.csv lacks the chip.
_DIE_PUBLISHED = {
    "GH100": (814.0, "GH100 814 mm2 (NVIDIA Hopper architecture whitepaper)"),
    "AD102": (609.0, "AD102 609 mm2 (NVIDIA Ada Lovelace architecture whitepaper)"),
    "AD104": (294.0, "AD104 294 mm2 (NVIDIA Ada Lovelace architecture whitepaper)"),
    "GA102": (628.0, "GA102 628 mm2 (NVIDIA Ampere GA102 whitepaper)"),
    "GB100x2": (1600.0, "B200 = 2 dies of ~800 mm2 (reticle-limited; NVIDIA publishes no exact figure, estimate)"),
}

# Green Algorithms GPU table model name for chips it covers (die_area column is in cm2).
_DIE_FROM_GA = {
    "TU104": "NVIDIA Tesla T4",
    "GA100": "NVIDIA A100 SXM4 40 GB",
    "GV100": "NVIDIA Tesla V100 SXM2 16 GB",
    "GP100": "NVIDIA Tesla P100 PCIe 16 GB",
    "GP104": "NVIDIA Tesla P4",
}

# gpu, aliases, architecture, die, form factor, tdp, bf16, fp16, fp32, memory GB, source, mlco2 name
_SPECS = [
    ("H100", "H100 SXM;H100-SXM5;H100-80GB;H100-MEGA;H100 80GB HBM3", "Hopper", "GH100", "SXM5", 700, 989.4, 989.4, 67.0, 80, _H100, "H100 SXM"),
    ("H200", "H200 SXM;H200-SXM5;H200-141GB", "Hopper", "GH100", "SXM5", 700, 989.4, 989.4, 67.0, 141, _H200, None),
    ("B200", "B200 SXM;HGX B200;B200-180GB", "Blackwell", "GB100x2", "SXM (HGX B200)", 1000, 2250.0, 2250.0, 80.0, 180, _B200, None),
    ("A100", "A100-40GB;A100 SXM4 40GB;A100-SXM4-40GB", "Ampere", "GA100", "SXM4", 400, 312.0, 312.0, 19.5, 40, _A100, "A100 SXM4 80 GB"),
    ("A100-80GB", "A100 SXM4 80GB;A100-SXM4-80GB;A100 80GB", "Ampere", "GA100", "SXM4", 400, 312.0, 312.0, 19.5, 80, _A100, "A100 SXM4 80 GB"),
    ("L40S", "L40S-48GB;NVIDIA L40S", "Ada Lovelace", "AD102", "PCIe", 350, 362.05, 362.05, 91.6, 48, _L40S, "L40S"),
    ("L4", "L4-24GB;NVIDIA L4", "Ada Lovelace", "AD104", "PCIe", 72, 121.0, 121.0, 30.3, 24, _L4, "L4"),
    ("A10G", "A10G-24GB;NVIDIA A10G", "Ampere", "GA102", "PCIe", 300, 70.0, 70.0, 35.0, 24, _A10G, "A10G"),
    ("T4", "Tesla T4;T4-16GB", "Turing", "TU104", "PCIe", 70, None, 65.0, 8.1, 16, _T4, "T4"),
    ("T4G", "T4g;NVIDIA T4G", "Turing", "TU104", "PCIe", 70, None, 65.0, 8.1, 16, _T4 + "; T4G = T4 chip on AWS Graviton (g5g) hosts", "T4"),
    ("V100", "V100-16GB;Tesla V100;V100 SXM2 16GB;V100-SXM2-16GB", "Volta", "GV100", "SXM2", 300, None, 125.0, 15.7, 16, _V100, "Tesla V100-SXM2-16GB"),
    ("V100-32GB", "V100 SXM2 32GB;V100-SXM2-32GB", "Volta", "GV100", "SXM2", 300, None, 125.0, 15.7, 32, _V100, "Tesla V100-SXM2-32GB"),
    ("P100", "Tesla P100;P100-16GB;P100 PCIe 16GB", "Pascal", "GP100", "PCIe", 250, None, 18.7, 9.3, 16, _P100, "Tesla P100"),
    ("P4", "Tesla P4;P4-8GB", "Pascal", "GP104", "PCIe", 75, None, 5.5, 5.5, 8, _P4, None),
]


def _num(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return None if value != value else value  # NaN -> None


def _impact_factors(shared: Path) -> tuple[float, float]:
    """Return (base g per card, g per cm2 of die) from the Green Algorithms impacts table."""
    with (shared / "hardware" / "green_algorithms_hardware_impacts.csv").open(newline="") as fh:
        table = {row["variable"]: row["value"] for row in csv.DictReader(fh)}
    return float(table["gpu_base_impact_gwp"]), float(table["gpu_die_impact_gwp"])


def _ga_die_areas(shared: Path) -> dict[str, float]:
    """Die area in cm2 per model from green_algorithms_gpus.csv (its first data row holds units)."""
    with (shared / "hardware" / "green_algorithms_gpus.csv").open(newline="") as fh:
        rows = list(csv.reader(fh))
    header = rows[1]
    i_model, i_die = header.index("model"), header.index("die_area")
    return {r[i_model]: float(r[i_die]) for r in rows[2:] if len(r) > i_die and _num(r[i_die])}


def _die_area_cm2(die: str, ga_areas: dict[str, float]) -> tuple[float, str]:
    if die in _DIE_FROM_GA:
        model = _DIE_FROM_GA[die]
        return ga_areas[model], f"{die} {ga_areas[model]:g} cm2 (green_algorithms_gpus.csv, '{model}')"
    mm2, why = _DIE_PUBLISHED[die]
    return mm2 / 100.0, why


def _mlco2_crosscheck(shared: Path) -> list[str]:
    """List where our figures differ from mlco2_gpus.csv (printed and summarised in provenance)."""
    with (shared / "hardware" / "mlco2_gpus.csv").open(newline="") as fh:
        ml = {r["name"].strip(): {k.strip(): (v or "").strip() for k, v in r.items()} for r in csv.DictReader(fh)}
    diffs = []
    for gpu, _a, _arch, _die, _ff, tdp, _bf16, fp16, fp32, _mem, _src, ml_name in _SPECS:
        if ml_name is None or ml_name not in ml:
            continue
        row = ml[ml_name]
        for label, ours, theirs in (("tdp_w", tdp, row["tdp_watts"]), ("fp16", fp16, row["TFLOPS16"]),
                                    ("fp32", fp32, row["TFLOPS32"])):
            t = _num(theirs)
            if t is None or abs(t - ours) > 0.02 * ours:
                diffs.append(f"{gpu} {label}: mlco2 '{ml_name}' {theirs or 'empty'} -> {ours:g}")
    return diffs


def build(shared: Path, out: Path) -> list[dict]:
    """Write out/gpus.csv and return its provenance rows."""
    base_g, per_cm2_g = _impact_factors(shared)
    ga_areas = _ga_die_areas(shared)
    rows = []
    for gpu, aliases, arch, die, ff, tdp, bf16, fp16, fp32, mem, src, _ml in _SPECS:
        area, area_why = _die_area_cm2(die, ga_areas)
        kg = (base_g + area * per_cm2_g) / 1000.0
        rows.append({
            "gpu": gpu, "aliases": aliases, "vendor": "NVIDIA", "architecture": arch,
            "form_factor": ff, "tdp_w": tdp,
            "dense_bf16_tflops": "" if bf16 is None else f"{bf16:g}",
            "dense_fp16_tflops": f"{fp16:g}", "fp32_tflops": f"{fp32:g}", "memory_gb": mem,
            "embodied_kg_co2e": f"{kg:.2f}",
            "embodied_basis": (f"({base_g:g} g/card + {area:.2f} cm2 x {per_cm2_g:g} g/cm2)/1000; "
                               f"die: {area_why}; excludes HBM/GDDR and board beyond the base term"),
            "spec_source": src,
        })
    out.mkdir(parents=True, exist_ok=True)
    with (out / "gpus.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)

    diffs = _mlco2_crosscheck(shared)
    for d in diffs:
        print(f"  gpus: differs from mlco2_gpus.csv: {d}")
    retrieved = "2026-11-27"
    return [
        {"file": "gpus.csv", "source": "NVIDIA datasheets and product pages (URL per row in spec_source); A10G and B200 FP32 from secondary sources named there",
         "retrieved": retrieved, "licence": "facts from vendor datasheets (no licence claimed)",
         "attribution": "NVIDIA Corporation datasheets",
         "notes": "dense tensor figures only (sparse peaks halved); bf16 empty for Volta/Turing/Pascal; P4 fp16 column = FP32 rate (GP104 fp16 is 1/64 rate); T4G is the T4 chip; H100-MEGA folded into H100"},
        {"file": "gpus.csv", "source": "Green-Algorithms-data: hardware impacts table (gpu_base_impact_gwp, gpu_die_impact_gwp) and GPU die-area table",
         "retrieved": retrieved, "licence": "CC-BY-4.0 (GPU table; impacts table per the Green-Algorithms-data repository)",
         "attribution": "Green Algorithms (Lannelongue et al.); factors from Loubet et al. 2023 (card base) and Groeger et al. 2021 / Umweltbundesamt (die)",
         "notes": f"embodied = {base_g:g} g + die_cm2 x {per_cm2_g:g} g; HBM stacks, substrate and host share are not in the method, so values are lower bounds; B200 die area is an estimate (2 x ~800 mm2)"},
        {"file": "gpus.csv", "source": "mlco2/impact gpus.csv (cross-check only; no value copied)",
         "retrieved": retrieved, "licence": "MIT", "attribution": "ML CO2 Impact calculator (Lacoste et al. 2019)",
         "notes": f"{len(diffs)} disagreements replaced by datasheet values, e.g. H100 SXM TFLOPS16 1979 is a sparse peak and TFLOPS32 989 is TF32; L4 and V100 TFLOPS16 are non-tensor"},
    ]
