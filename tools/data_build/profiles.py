"""Typical-day carbon-intensity profiles per Electricity Maps zone and month.

Source: ``carbon_intensity/electricitymaps_2022_hourly_lca_123zones.csv`` -- 8,760 hourly
rows (2022, UTC) x 123 zones, lifecycle (LCA) average intensity in gCO2eq/kWh, as published
in the artifact of Sukprasert et al., EuroSys 2024 (umassos/decarbonization-potential,
commit 3493a63). Data: Electricity Maps, ODbL; everything derived here stays ODbL.

Outputs (written to ``out``)
----------------------------
profiles.csv -- ``zone,month,stat,h00..h23``: one row per (zone, month 1..12, stat in
    mean/p10/p90); ``hNN`` = that statistic of the hourly intensity at UTC hour NN over the
    days of that month, gCO2eq/kWh, 1 decimal. Never blank.
profile_zones.csv -- ``zone,mean_2022_g_per_kwh,valid_hours,flat_filled_hours,
    min_g_per_kwh,max_g_per_kwh``: mean/min/max over the valid hours of 2022;
    ``flat_filled_hours`` = hours dropped as gap fill (see below). Mean/min/max are blank
    only for a zone with no valid hour at all (HK, ID and US-NW-SCL in this file).

Gap detection (the authors back/forward-filled gaps, so a fill shows as a flat run)
-----------------------------------------------------------------------------------
* A run of >= ``FLAT_RUN_HOURS`` (6) identical consecutive values is a candidate gap.
  Shorter repeats occur in real data (hydro/nuclear-dominated zones such as CA-QC, SE-*,
  NO-* repeat 2-5 hours routinely); 6 hours of an unchanged two-decimal average of a real
  mix is implausible.
* Exception: if the same value forms >= ``RECURRING_RUNS`` (3) separate candidate runs in
  the zone's year, it is not a carried-over reading (a fill copies whatever reading
  preceded the gap, which differs from gap to gap) but a value the mix itself produces:
  e.g. 24.0 g = pure hydro in US-NW-DOPD/-CHPD/-GCPD and US-CENT-SPA, 12.62 g in DK-BHM,
  or the estimation model's constant night-time value in KR (502.67, every night), IL and
  IN-UP. Those runs are kept as data. (Without this exception half of the KR/IL/IN-UP
  hours -- every night -- would be dropped and nights would be filled with daytime values.)
* Everything else in a candidate run is NaN before aggregation.

Filling thin cells
------------------
A (zone, month, hour) cell needs >= ``MIN_SAMPLES`` (5) valid days. Otherwise the statistic
is taken over the zone's valid values at that hour across the whole year (if >= 5), else
over all the zone's valid hours, else (no valid hour at all) over the raw filled series,
which for the three fully flat zones is their one constant value.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from carbonsched.providers.grid.series import FLAT_RUN_HOURS, RECURRING_RUNS, flat_fill_mask

SOURCE_FILE = "carbon_intensity/electricitymaps_2022_hourly_lca_123zones.csv"
MIN_SAMPLES = 5
STATS = ("mean", "p10", "p90")
RETRIEVED = "2026-11-27"

PROFILE_COLUMNS = ["zone", "month", "stat"] + [f"h{h:02d}" for h in range(24)]
ZONE_COLUMNS = ["zone", "mean_2022_g_per_kwh", "valid_hours", "flat_filled_hours",
                "min_g_per_kwh", "max_g_per_kwh"]


def load_hourly(path: Path) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Return (zones, values[hours, zones], month[hours], hour_of_day[hours])."""
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        stamps, rows = [], []
        for row in reader:
            stamps.append(row[0])
            rows.append([float(c) if c else np.nan for c in row[1:]])
    if len(stamps) != 8760:
        raise ValueError(f"{path}: expected 8760 hourly rows, got {len(stamps)}")
    month = np.array([int(s[5:7]) for s in stamps])
    hour = np.array([int(s[11:13]) for s in stamps])
    if not (hour == np.tile(np.arange(24), 365)).all():
        raise ValueError(f"{path}: rows are not consecutive hours from 00:00 UTC")
    return header[1:], np.array(rows, dtype=float), month, hour


def _stats(values: np.ndarray) -> dict[str, float]:
    return {"mean": float(np.mean(values)),
            "p10": float(np.percentile(values, 10)),
            "p90": float(np.percentile(values, 90))}


def zone_profiles(raw: np.ndarray, valid: np.ndarray, month: np.ndarray,
                  hour: np.ndarray) -> dict[tuple[int, str], list[float]]:
    """{(month, stat): 24 values} for one zone, with the fallbacks of the module doc."""
    good = raw[valid]
    overall = _stats(good) if good.size >= MIN_SAMPLES else _stats(raw)
    # hours are consecutive from 00:00 UTC on 1 January, so reshape to (day, hour-of-day)
    days = raw.reshape(-1, 24)
    ok = valid.reshape(-1, 24)
    day_month = month.reshape(-1, 24)[:, 0]
    yearly_by_hour = {}
    for h in range(24):
        v = days[ok[:, h], h]
        yearly_by_hour[h] = _stats(v) if v.size >= MIN_SAMPLES else overall
    out: dict[tuple[int, str], list[float]] = {}
    for m in range(1, 13):
        cells = []
        for h in range(24):
            sel = (day_month == m) & ok[:, h]
            v = days[sel, h]
            cells.append(_stats(v) if v.size >= MIN_SAMPLES else yearly_by_hour[h])
        for s in STATS:
            out[(m, s)] = [c[s] for c in cells]
    return out


def compute(shared: Path) -> tuple[list[dict], list[dict]]:
    """Return (profile rows, zone summary rows) without writing anything."""
    zones, data, month, hour = load_hourly(shared / SOURCE_FILE)
    profile_rows, zone_rows = [], []
    for j, zone in enumerate(zones):
        raw = data[:, j]
        flat = flat_fill_mask(raw)
        valid = ~flat & ~np.isnan(raw)
        for (m, s), vals in sorted(zone_profiles(raw, valid, month, hour).items()):
            row = {"zone": zone, "month": m, "stat": s}
            row.update({f"h{h:02d}": f"{v:.1f}" for h, v in enumerate(vals)})
            profile_rows.append(row)
        good = raw[valid]
        zone_rows.append({
            "zone": zone,
            "mean_2022_g_per_kwh": f"{good.mean():.1f}" if good.size else "",
            "valid_hours": int(valid.sum()),
            "flat_filled_hours": int(flat.sum()),
            "min_g_per_kwh": f"{good.min():.1f}" if good.size else "",
            "max_g_per_kwh": f"{good.max():.1f}" if good.size else "",
        })
    order = {s: i for i, s in enumerate(STATS)}
    profile_rows.sort(key=lambda r: (r["zone"], r["month"], order[r["stat"]]))
    zone_rows.sort(key=lambda r: r["zone"])
    return profile_rows, zone_rows


def _write(path: Path, columns: list[str], rows: list[dict]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def build(shared: Path, out: Path) -> list[dict]:
    profile_rows, zone_rows = compute(shared)
    out.mkdir(parents=True, exist_ok=True)
    _write(out / "profiles.csv", PROFILE_COLUMNS, profile_rows)
    _write(out / "profile_zones.csv", ZONE_COLUMNS, zone_rows)
    source = ("Electricity Maps 2022 hourly LCA carbon intensity, 123 zones, via the artifact of "
              "Sukprasert et al. EuroSys 2024 (github.com/umassos/decarbonization-potential @ 3493a63); "
              f"shared/data/{SOURCE_FILE}")
    common = {"source": source, "retrieved": RETRIEVED, "licence": "ODbL-1.0",
              "attribution": "Electricity Maps (electricitymaps.com); Sukprasert et al., "
                             "'On the Limitations of Carbon-Aware Temporal and Spatial Workload "
                             "Shifting in the Cloud', EuroSys 2024"}
    doc = " ".join(__doc__.split())  # single-line column documentation
    return [
        dict(common, file="profiles.csv", notes=(
            "Signal: average (not marginal), lifecycle (LCA) gCO2eq/kWh, UTC hours. "
            f"Flat runs >= {FLAT_RUN_HOURS} h treated as gap fill unless the value recurs in >= "
            f"{RECURRING_RUNS} runs; cells with < {MIN_SAMPLES} valid days filled from the zone's "
            "all-year hour, then its overall values. Derived data, ODbL. | " + doc)),
        dict(common, file="profile_zones.csv", notes=(
            "Per-zone 2022 mean/min/max over valid (non-gap-fill) hours, LCA gCO2eq/kWh; "
            "HK, ID and US-NW-SCL are one constant all year (no valid hour; mean blank). "
            "Derived data, ODbL.")),
    ]
