"""Cloud regions that offer NVIDIA GPUs, with their grid zone, PUE and yearly intensity.

Region list: every AWS and GCP region with at least one NVIDIA GPU row in SkyPilot's catalog
(``catalog/aws_gpu_vms.csv``, ``catalog/gcp_gpu_vms.csv``). TPU-only GCP regions and regions
with GPU *host* rows but no GPU row (europe-west8, europe-west9) are left out.

Columns of regions.csv
----------------------
region_id (``provider:region``), provider (aws|gcp), region, location (area + country in words),
country (ISO 3166-1 alpha-2), latitude/longitude (approximate centre of the region's metro or
data-centre area, 2 decimals, public knowledge -- for WattTime look-ups, not a site address),
grid_zone (Electricity Maps zone judged right for the region's data centres), profile_zone
(= grid_zone when that zone has an hourly 2022 series with valid hours in profiles.csv, else
empty: the planner then uses the flat yearly value and warns), zone_basis (why this zone),
pue + pue_source, yearly_intensity_g_per_kwh + yearly_intensity_basis (LCA gCO2eq/kWh: the
profile zone's 2022 mean, else Electricity Maps 2024 LCA yearly value), provider_published_g_per_kwh
+ provider_published_basis (Google's own 2024 location-based grid intensity for GCP; empty for
AWS, which publishes none per region in the shared data), provider_published_year (2024 for GCP),
provider_cfe_pct (Google's 2024 carbon-free energy percentage for the region: an hourly-matched
market-based figure, shown beside the location-based intensity and never mixed into kgCO2e).

Zone choice
-----------
The zone is a hand-checked judgement kept in ``REGIONS`` below, not a copy of a mapping. The
candidate mappings (CCF, the GCP->zone JSON, the decarbonization-potential data_regions table)
disagree in places and are wrong in some. Each zone's 2022 LCA mean is compared with Google's
2022 figure (location-based, i.e. direct) scaled by that zone's own LCA/direct ratio (from the
2024 yearly file) and, for AWS, with the CCF factor (not a provider figure). Disagreements beyond
``FLAG_RATIO`` are listed in data/REGIONS_CHECK.md with the decision, which this module writes too.
Google's 2024 figures equal Electricity Maps' 2024 *direct* yearly values of one zone to within a
few g, which identifies the zone Google itself uses; that is shown as a second check.
"""
from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path

from tools.data_build import profiles

RETRIEVED = "2026-11-27"
FLAG_RATIO = 1.35
AWS_NVIDIA = {"T4", "T4g", "L4", "A10G", "L40S", "V100", "V100-32GB", "A100", "A100-80GB", "H100", "H200"}
GCP_NVIDIA = {"A100", "A100-80GB", "H100", "H100-MEGA", "H200", "B200", "L4", "T4", "V100", "P100", "P4"}
COLUMNS = ["region_id", "provider", "region", "location", "country", "latitude", "longitude",
           "grid_zone", "profile_zone", "zone_basis", "pue", "pue_source",
           "yearly_intensity_g_per_kwh", "yearly_intensity_basis",
           "provider_published_g_per_kwh", "provider_published_basis", "provider_published_year", "provider_cfe_pct"]

_EM = "Electricity Maps zone"
_BOTH = f"{_EM}; CCF and GCP mappings agree"
_NIGHT = "caution: in the 2022 hourly series every night is one repeated estimated value (kept, see profiles.py)"
# region_id: (location, country, lat, lon, grid_zone, zone_basis)
REGIONS: dict[str, tuple[str, str, float, float, str, str]] = {
    "aws:af-south-1": ("Cape Town, South Africa", "ZA", -33.92, 18.42, "ZA", f"{_EM} per CCF; national grid (Eskom)"),
    "aws:ap-east-1": ("Hong Kong, China", "HK", 22.32, 114.17, "HK", f"{_EM} (CCF has none); hourly 2022 series is one constant, so no profile"),
    "aws:ap-northeast-1": ("Tokyo, Japan", "JP", 35.68, 139.69, "JP-TK", f"{_EM} per CCF (TEPCO area)"),
    "aws:ap-northeast-2": ("Seoul, South Korea", "KR", 37.57, 126.98, "KR", f"{_EM} per CCF; {_NIGHT}"),
    "aws:ap-northeast-3": ("Osaka, Japan", "JP", 34.69, 135.50, "JP-KN", f"{_EM} per CCF (Kansai area)"),
    "aws:ap-south-1": ("Mumbai, India", "IN", 19.08, 72.88, "IN-WE", f"{_EM} per CCF; Western regional grid (current code; old IN-MH = Maharashtra state only)"),
    "aws:ap-southeast-1": ("Singapore", "SG", 1.35, 103.82, "SG", f"{_EM} per CCF"),
    "aws:ap-southeast-2": ("Sydney, Australia", "AU", -33.87, 151.21, "AU-NSW", f"{_EM} per CCF"),
    "aws:ap-southeast-3": ("Jakarta, Indonesia", "ID", -6.21, 106.85, "ID", f"{_EM} per CCF; hourly 2022 series is one constant, so no profile"),
    "aws:ca-central-1": ("Montreal, Canada", "CA", 45.50, -73.57, "CA-QC", f"{_EM} per CCF (Hydro-Quebec); CCF's 120 g is a Canada-wide factor"),
    "aws:eu-central-1": ("Frankfurt, Germany", "DE", 50.11, 8.68, "DE", f"{_EM} per CCF"),
    "aws:eu-north-1": ("Stockholm, Sweden", "SE", 59.33, 18.07, "SE-SE3", f"{_EM} per CCF (bidding zone SE3)"),
    "aws:eu-south-1": ("Milan, Italy", "IT", 45.46, 9.19, "IT-NO", f"{_EM} per CCF (North Italy); agrees with Google's Milan figure"),
    "aws:eu-west-1": ("Dublin, Ireland", "IE", 53.35, -6.26, "IE", f"{_EM} per CCF"),
    "aws:eu-west-2": ("London, UK", "GB", 51.51, -0.13, "GB", f"{_EM} per CCF"),
    "aws:eu-west-3": ("Paris, France", "FR", 48.86, 2.35, "FR", f"{_EM} per CCF"),
    "aws:me-central-1": ("United Arab Emirates (city not published; Dubai used)", "AE", 25.20, 55.27, "AE", f"{_EM} (CCF has none); national zone"),
    "aws:me-south-1": ("Manama, Bahrain", "BH", 26.23, 50.59, "BH", f"{_EM} (CCF has none); national zone"),
    "aws:us-east-1": ("Northern Virginia, USA", "US", 39.04, -77.49, "US-MIDA-PJM", f"{_EM} per CCF; Loudoun/Prince William (Dominion) is in PJM"),
    "aws:us-east-2": ("Columbus, Ohio, USA", "US", 39.96, -83.00, "US-MIDA-PJM", f"{_EM} per CCF; central Ohio (AEP Ohio) is in PJM"),
    "aws:us-west-1": ("Northern California (San Francisco Bay Area), USA", "US", 37.34, -121.89, "US-CAL-CISO", f"{_EM} per CCF; Bay Area utilities (PG&E, Silicon Valley Power) are in CAISO"),
    "aws:us-west-2": ("Umatilla/Morrow County, Oregon, USA", "US", 45.84, -119.70, "US-NW-BPAT",
                      "BPA balancing area: Boardman/Hermiston sites are served by Umatilla Electric Coop, a BPA-area utility; CCF's US-NW-PACW (PacifiCorp West, 236 g) is the wrong balancing area"),
    "gcp:asia-east1": ("Changhua County, Taiwan", "TW", 24.07, 120.54, "TW", _BOTH),
    "gcp:asia-east2": ("Hong Kong, China", "HK", 22.32, 114.17, "HK", f"{_EM} per GCP mapping (CCF has none); hourly 2022 series is one constant, so no profile"),
    "gcp:asia-northeast1": ("Tokyo, Japan", "JP", 35.68, 139.69, "JP-TK", _BOTH),
    "gcp:asia-northeast3": ("Seoul, South Korea", "KR", 37.57, 126.98, "KR", f"{_BOTH}; {_NIGHT}"),
    "gcp:asia-south1": ("Mumbai, India", "IN", 19.08, 72.88, "IN-WE",
                        f"{_EM} per CCF; GCP mapping's IN-MH is the old state zone; Google's 2024 figure equals IN-WE direct 2024"),
    "gcp:asia-south2": ("Delhi, India", "IN", 28.61, 77.21, "IN-NO",
                        f"{_EM} per CCF (Northern regional grid); GCP mapping's IN-DL is not a zone; Google's 2024 figure equals IN-NO direct 2024; IN-NO has no hourly series (IN-UP, one state, not substituted)"),
    "gcp:asia-southeast1": ("Jurong West, Singapore", "SG", 1.34, 103.71, "SG", _BOTH),
    "gcp:asia-southeast2": ("Jakarta, Indonesia", "ID", -6.21, 106.85, "ID", f"{_BOTH}; hourly 2022 series is one constant, so no profile"),
    "gcp:australia-southeast1": ("Sydney, Australia", "AU", -33.87, 151.21, "AU-NSW", f"{_BOTH} (GCP mapping spells it AUS-NSW)"),
    "gcp:europe-central2": ("Warsaw, Poland", "PL", 52.23, 21.01, "PL", _BOTH),
    "gcp:europe-north1": ("Hamina, Finland", "FI", 60.57, 27.20, "FI", _BOTH),
    "gcp:europe-west1": ("St. Ghislain, Belgium", "BE", 50.45, 3.82, "BE", _BOTH),
    "gcp:europe-west2": ("London, UK", "GB", 51.51, -0.13, "GB", _BOTH),
    "gcp:europe-west3": ("Frankfurt, Germany", "DE", 50.11, 8.68, "DE", _BOTH),
    "gcp:europe-west4": ("Eemshaven, Netherlands", "NL", 53.44, 6.83, "NL", _BOTH),
    "gcp:europe-west6": ("Zurich, Switzerland", "CH", 47.38, 8.54, "CH", _BOTH),
    "gcp:me-central2": ("Dammam, Saudi Arabia", "SA", 26.43, 50.10, "SA", f"{_EM} (in neither mapping); national zone; Google's 2024 figure equals SA direct 2024"),
    "gcp:me-west1": ("Tel Aviv, Israel", "IL", 32.09, 34.78, "IL", f"{_EM} (in neither mapping); national zone; {_NIGHT}"),
    "gcp:northamerica-northeast1": ("Montreal, Canada", "CA", 45.50, -73.57, "CA-QC", _BOTH),
    "gcp:northamerica-northeast2": ("Toronto, Canada", "CA", 43.65, -79.38, "CA-ON", _BOTH),
    "gcp:southamerica-east1": ("Sao Paulo (Osasco), Brazil", "BR", -23.55, -46.63, "BR-CS", _BOTH),
    "gcp:us-central1": ("Council Bluffs, Iowa, USA", "US", 41.26, -95.86, "US-MIDW-MISO",
                        "MISO: Council Bluffs is served by MidAmerican Energy, a MISO member (Omaha across the river is SPP); per CCF; GCP mapping's US-CENT-SWPP rejected; Google's 2024 figure equals MISO direct 2024"),
    "gcp:us-east1": ("Moncks Corner, South Carolina, USA", "US", 33.20, -80.01, "US-CAR-SC",
                     "Santee Cooper (SC Public Service Authority) balancing area serves Berkeley County; per GCP mapping; CCF's US-CAR-SCEG (Dominion SC) rejected: its LCA mean is below Google's direct figure"),
    "gcp:us-east4": ("Ashburn, Northern Virginia, USA", "US", 39.04, -77.49, "US-MIDA-PJM", f"{_BOTH}; Dominion Virginia is in PJM"),
    "gcp:us-east5": ("Columbus, Ohio, USA", "US", 39.96, -83.00, "US-MIDA-PJM", f"{_BOTH}; central Ohio is in PJM"),
    "gcp:us-south1": ("Dallas, Texas, USA", "US", 32.78, -96.80, "US-TEX-ERCO", f"{_BOTH}; ERCOT"),
    "gcp:us-west1": ("The Dalles, Oregon, USA", "US", 45.60, -121.18, "US-NW-BPAT",
                     "BPA balancing area: The Dalles is served by Northern Wasco County PUD, BPA-area; both mappings' US-NW-PACW (236 g) disagree with Google's 67 g (2022) / 79 g (2024), which equals BPAT direct 2024"),
    "gcp:us-west2": ("Los Angeles, California, USA", "US", 34.05, -118.24, "US-CAL-CISO",
                     f"{_BOTH}; Google's 2024 figure equals CAISO direct 2024, so its site is CAISO-served, not LADWP (US-CAL-LDWP, 374 g)"),
    "gcp:us-west3": ("Salt Lake City, Utah, USA", "US", 40.76, -111.89, "US-NW-PACE", f"{_BOTH}; PacifiCorp East (Rocky Mountain Power)"),
    "gcp:us-west4": ("Las Vegas, Nevada, USA", "US", 36.17, -115.14, "US-NW-NEVP", f"{_BOTH}; NV Energy (Nevada Power)"),
}


def _read(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        return list(csv.DictReader(fh))


def catalog_regions(shared: Path) -> list[str]:
    """region_ids with NVIDIA GPU rows in the SkyPilot catalog."""
    found = set()
    for provider, names in (("aws", AWS_NVIDIA), ("gcp", GCP_NVIDIA)):
        for row in _read(shared / "catalog" / f"{provider}_gpu_vms.csv"):
            if row["AcceleratorName"] in names:
                found.add(f"{provider}:{row['Region']}")
    return sorted(found)


def load_yearly_2024(shared: Path) -> dict[str, tuple[float, float]]:
    """zone -> (direct, LCA) 2024 yearly gCO2eq/kWh (Electricity Maps via Green-Algorithms)."""
    out = {}
    for row in _read(shared / "carbon_intensity" / "CI-electricitymap-yearly_2024.csv"):
        out[row["Zone id"]] = (float(row["Carbon intensity gCO₂eq/kWh (direct)"]),
                               float(row["Carbon intensity gCO₂eq/kWh (Life cycle)"]))
    return out


# AWS's own figure (re-checked 2026-11-29): "In 2025, our data centers reported an average global PUE
# of 1.14 which is an improvement compared to 1.15 reported in 2024" (sustainability.aboutamazon.com,
# The Cloud > Power usage effectiveness). AWS names its best sites per continent (Europe 1.04,
# Americas 1.05, Asia Pacific 1.07 in 2024) but no per-region table in a source this build can
# read, so every AWS region takes the global figure, said in pue_source.
AWS_PUBLISHED_PUE = (1.14, "AWS-published global PUE for 2025 (1.15 for 2024), "
                           "https://sustainability.aboutamazon.com/environment/the-cloud; AWS publishes no per-region "
                           "PUE here, so every AWS region takes the global figure")


def load_pue(shared: Path) -> tuple[dict[str, tuple[float, str]], dict[str, tuple[float, str]]]:
    """(per-region GCP PUE, provider defaults), each value (pue, source text)."""
    cr = shared / "cloud_regions"
    lines = (cr / "default-PUE_2024.csv").read_text(encoding="utf-8-sig").splitlines()
    defaults = {r["provider"]: (float(r["PUE"]), f"Green-Algorithms default PUE 2024 for {r['provider']}, citing {r['source']}")
                for r in csv.DictReader(lines[1:])}  # first line is a units/notes row
    per_region: dict[str, tuple[float, str]] = {}
    # mlco2 first so the (equally old but explicitly dated) DC-cloud_2023 figures override it
    for r in _read(cr / "mlco2_impact_regions.csv"):
        if r["provider"] == "gcp" and r["PUE"]:
            per_region[r["region"]] = (float(r["PUE"]), f"Google data-centre PUE via mlco2/impact, citing {r['PUE source']}")
    lines = (cr / "DC-cloud_2023.csv").read_text(encoding="utf-8-sig").splitlines()
    for r in csv.DictReader(lines[1:]):
        if r["provider"] == "gcp" and r["PUE"]:
            per_region[r["Name"]] = (float(r["PUE"]), f"Google data-centre PUE via Green-Algorithms DC-cloud_2023, citing {r['source_PUE']}")
    return per_region, defaults


def load_google(shared: Path, year: int) -> dict[str, float]:
    rows = _read(shared / "cloud_regions" / "gcp_region_carbon_info" / f"{year}.csv")
    return {r["Google Cloud Region"]: float(r["Grid carbon intensity (gCO2eq / kWh)"]) for r in rows}


def load_google_cfe(shared: Path, year: int) -> dict[str, float]:
    """Google's carbon-free energy share per region, as a fraction (0..1)."""
    rows = _read(shared / "cloud_regions" / "gcp_region_carbon_info" / f"{year}.csv")
    return {r["Google Cloud Region"]: float(r["Google CFE"]) for r in rows if r.get("Google CFE")}


def candidate_mappings(shared: Path) -> dict[str, dict[str, str]]:
    cr = shared / "cloud_regions"
    ccf = {f"{r['cloud']}:{r['region']}": r["electricitymaps_zone"]
           for r in _read(cr / "ccf_cloud_region_emission_factors.csv")}
    ccf_g = {f"{r['cloud']}:{r['region']}": r["grid_gco2e_per_kwh"]
             for r in _read(cr / "ccf_cloud_region_emission_factors.csv")}
    gjson = {f"gcp:{k}": v for k, v in json.loads((cr / "gcp_region_to_electricitymaps_zone.json").read_text()).items()}
    return {"ccf": ccf, "ccf_g": ccf_g, "json": gjson}


def build_rows(shared: Path) -> tuple[list[dict], list[dict]]:
    """Return (regions.csv rows, check-table rows)."""
    wanted = catalog_regions(shared)
    missing = set(wanted) - set(REGIONS)
    extra = set(REGIONS) - set(wanted)
    if missing or extra:
        raise SystemExit(f"regions: REGIONS table out of date: missing {sorted(missing)}, extra {sorted(extra)}")
    _, zone_rows = profiles.compute(shared)
    mean22 = {r["zone"]: float(r["mean_2022_g_per_kwh"]) for r in zone_rows if r["valid_hours"] > 0}
    y24 = load_yearly_2024(shared)
    pue_region, pue_default = load_pue(shared)
    g22, g24 = load_google(shared, 2022), load_google(shared, 2024)
    cfe24 = load_google_cfe(shared, 2024)
    maps = candidate_mappings(shared)
    rows, checks = [], []
    for rid in wanted:
        provider, region = rid.split(":")
        location, country, lat, lon, zone, basis = REGIONS[rid]
        if zone in mean22:
            profile_zone, yearly = zone, mean22[zone]
            ybasis = "Electricity Maps 2022 LCA mean (hourly file)"
        else:
            profile_zone, yearly = "", y24[zone][1]
            ybasis = "Electricity Maps 2024 LCA yearly (Green-Algorithms CI-electricitymap-yearly_2024); zone has no valid 2022 hourly series"
        if provider == "aws":
            pue, pue_src = AWS_PUBLISHED_PUE
        else:
            pue, pue_src = pue_region[region] if region in pue_region else pue_default[provider]
        published, pbasis, pyear, cfe = "", "", "", ""
        if provider == "gcp":
            if region not in g24:
                raise SystemExit(f"regions: {rid} missing from Google's 2024 region-carbon-info")
            published = f"{g24[region]:.1f}"
            pbasis = "Google region-carbon-info 2024, grid carbon intensity (location-based, direct emissions)"
            pyear = "2024"
            cfe = f"{100 * cfe24[region]:.0f}" if region in cfe24 else ""
        rows.append({
            "region_id": rid, "provider": provider, "region": region, "location": location,
            "country": country, "latitude": f"{lat:.2f}", "longitude": f"{lon:.2f}",
            "grid_zone": zone, "profile_zone": profile_zone, "zone_basis": basis,
            "pue": f"{pue:.2f}", "pue_source": pue_src,
            "yearly_intensity_g_per_kwh": f"{yearly:.1f}", "yearly_intensity_basis": ybasis,
            "provider_published_g_per_kwh": published, "provider_published_basis": pbasis,
            "provider_published_year": pyear, "provider_cfe_pct": cfe,
        })
        checks.append(check_row(rid, zone, mean22.get(zone), y24.get(zone), g22, g24, maps))
    return rows, checks


def check_row(rid, zone, zmean22, zone24, g22, g24, maps) -> dict:
    """One line of REGIONS_CHECK.md: chosen zone vs the provider's (or CCF's) figure."""
    provider, region = rid.split(":")
    lca_gap = zone24[1] / zone24[0] if zone24 and zone24[0] > 0 else float("nan")
    ours = zmean22 if zmean22 is not None else zone24[1]
    ours_label = f"{ours:.0f}" + ("" if zmean22 is not None else " (2024)")
    if provider == "gcp":
        ref, ref_label = g22.get(region), "Google 2022"
    else:
        ref = float(maps["ccf_g"][rid]) if maps["ccf_g"].get(rid) else None
        ref_label = "CCF (not provider)"
    ratio = ours / ref if ref else float("nan")
    adjusted = ratio / lca_gap if ref else float("nan")
    flagged = ref is not None and (ref == 0 or abs(math.log(adjusted)) > math.log(FLAG_RATIO))
    direct24 = f"{zone24[0]:.0f}" if zone24 else ""
    return {
        "region": rid, "zone": zone, "ccf": maps["ccf"].get(rid, "") or "-",
        "json": maps["json"].get(rid, "-") if provider == "gcp" else "n/a",
        "zone_mean": ours_label, "ref": f"{ref:.0f} ({ref_label})" if ref is not None else "-",
        "ratio": f"{ratio:.2f}" if ref else "n/a", "gap": f"{lca_gap:.2f}",
        "adjusted": f"{adjusted:.2f}" if ref else "n/a",
        "g24": f"{g24[region]:.0f} / {direct24}" if provider == "gcp" and region in g24 else "-",
        "flag": "FLAG" if flagged else "",
    }


CHECK_NOTES = {
    "aws:af-south-1": "CCF's 901 g is an older Eskom factor; ZA is the only zone.",
    "aws:ap-east-1": "CCF's 710 g is an older factor; HK 2024 direct (493) matches Google's 2024 HK figure (505).",
    "aws:ap-southeast-2": "CCF's 760 g is an older NSW factor; Google's 2022 Sydney figure (538 direct) agrees with AU-NSW.",
    "aws:ca-central-1": "CCF's 120 g is a Canada-wide factor; Montreal is Hydro-Quebec (Google reports ~0-5 g direct).",
    "aws:eu-north-1": "Tiny direct factor; ratio dominated by the hydro/nuclear LCA share.",
    "aws:eu-south-1": "CCF's 213 g is an older national factor; Google's 2022 Milan figure (323 g direct) agrees with IT-NO.",
    "aws:eu-west-2": "Raw ratio 1.04; GB's large LCA/direct gap in 2024 makes the CCF factor look low, Google's 2022 London figure (166) agrees.",
    "aws:me-central-1": "Raw ratio 0.95 against CCF (basis of the CCF factor unclear); no alternative zone.",
    "aws:me-south-1": "Raw ratio 0.96 against CCF (basis of the CCF factor unclear); no alternative zone.",
    "aws:us-west-1": "CCF uses one WECC-wide eGRID factor for all western US regions; Google's LA figure agrees with CAISO.",
    "aws:us-west-2": "CCF uses one WECC-wide eGRID factor, not location-specific. BPAT is the site's balancing area (same reasoning as gcp:us-west1).",
    "gcp:asia-east2": "Year mismatch (2024 LCA vs Google 2022; HK has no valid 2022 series); 2024 Google 505 vs HK direct 493 agrees.",
    "gcp:europe-west6": "Raw ratio 1.29 is normal; CH's 2024 LCA/direct gap (2.2) is unusually large. Google 2024 (15) matches CH direct (19).",
    "gcp:northamerica-northeast1": "Google reports 0 g for 2022 (5 g in 2024 = CA-QC direct 2024); hydro LCA is ~25-30 g.",
    "gcp:us-west1": "US-NW-PACW (236 g) would be 3.5x Google's figure; BPAT fits 2022 and matches 2024 within 3 g.",
    "gcp:us-east1": "US-CAR-SCEG (414 g LCA) is below Google's 532 g direct, impossible; US-CAR-SC fits 2022 and matches 2024.",
    "gcp:us-central1": "SWPP's 2022 mean (467) is also near, but Google's 2024 figure matches MISO direct (417), not SWPP (380). data_regions.csv's US-MIDW-AECI (Iowa; 672 g, 2024 direct 553) rejected: AECI does not serve Council Bluffs.",
    "gcp:us-west2": "US-CAL-LDWP (374 g) would be 1.85x Google's 2022 figure.",
}


def decision(c: dict) -> str:
    """How the chosen zone relates to the candidate mappings, plus any investigation note."""
    zone, ccf, js = c["zone"], c["ccf"], c["json"]
    others = [(name, z) for name, z in (("CCF", ccf), ("GCP json", js)) if z not in ("-", "n/a")]
    if not others:
        text = "in no mapping; national/obvious zone"
    elif all(z == zone for _, z in others):
        text = "kept (= " + " and ".join(n for n, _ in others) + ")"
    else:
        same = [n for n, z in others if z == zone]
        changed = [f"{n} {z}" for n, z in others if z != zone]
        text = ("= " + " and ".join(same) + "; " if same else "") + "changed from " + ", ".join(changed)
    note = CHECK_NOTES.get(c["region"])
    return f"{text}. {note}" if note else text


def write_check(path: Path, checks: list[dict]) -> None:
    head = ("| region | zone chosen | CCF zone | GCP-json zone | zone mean 2022 LCA | reference figure | ratio | "
            "zone LCA/direct (2024) | ratio / gap | Google 2024 / zone direct 2024 | flag | decision |")
    lines = [
        "# Region -> grid-zone checks",
        "",
        "Generated by `tools/data_build/regions.py` (do not edit by hand). Electricity Maps data (ODbL), "
        "Google region-carbon-info (Apache-2.0), Cloud Carbon Footprint factors (Apache-2.0).",
        "",
        "`ratio` = the chosen zone's 2022 LCA mean (hourly file; `(2024)` = 2024 LCA yearly where no "
        "valid 2022 series exists) / the reference figure. References are Google's own 2022 location-based "
        "figures (direct emissions) for GCP, and Cloud Carbon Footprint factors for AWS (eGRID subregion "
        "factors in the US; NOT an AWS figure). `ratio / gap` divides out the zone's own LCA/direct ratio "
        f"(2024 yearly file); FLAG when it is outside 1/{FLAG_RATIO}..{FLAG_RATIO} or the reference is 0. "
        "The last numeric column shows that Google's 2024 figure equals the chosen zone's 2024 direct "
        "value, i.e. Google uses the same zone.",
        "",
        head,
        "|" + "---|" * (head.count("|") - 1),
    ]
    for c in checks:
        lines.append(f"| {c['region']} | {c['zone']} | {c['ccf']} | {c['json']} | {c['zone_mean']} | {c['ref']} | "
                     f"{c['ratio']} | {c['gap']} | {c['adjusted']} | {c['g24']} | {c['flag']} | {decision(c)} |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def build(shared: Path, out: Path) -> list[dict]:
    rows, checks = build_rows(shared)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "regions.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    write_check(out / "REGIONS_CHECK.md", checks)
    doc = " ".join(__doc__.split())
    common = {"file": "regions.csv", "retrieved": RETRIEVED}
    return [
        dict(common, source="SkyPilot VM catalog v7 (skypilot-org/skypilot-catalog; aws @ 001367d, gcp @ 017e250): region list",
             licence="Apache-2.0", attribution="SkyPilot authors",
             notes=f"{len(rows)} regions with NVIDIA GPU rows. Latitude/longitude are approximate metro/data-centre-area coordinates from public knowledge (2 decimals), not from a dataset. | {doc}"),
        dict(common, source="Electricity Maps: 2022 hourly LCA (via umassos/decarbonization-potential @ 3493a63) and 2024 yearly LCA/direct (via Green-Algorithms-data v3.1 CI-electricitymap-yearly_2024)",
             licence="ODbL-1.0", attribution="Electricity Maps (electricitymaps.com)",
             notes="yearly_intensity_g_per_kwh and the zone checks; derived data stays ODbL. Zones chosen by hand (see REGIONS_CHECK.md)."),
        dict(common, source="Google Cloud region-carbon-info 2022 and 2024 (GoogleCloudPlatform/region-carbon-info)",
             licence="Apache-2.0", attribution="Google LLC",
             notes="provider_published_g_per_kwh = 2024 'Grid carbon intensity' (location-based); provider_cfe_pct = 2024 'Google CFE' x 100; 2022 figures used only for the zone check."),
        dict(common, source="Cloud Carbon Footprint cloud-region emission factors and zone mapping; GCP region->zone JSON",
             licence="Apache-2.0", attribution="Cloud Carbon Footprint (Thoughtworks)",
             notes="Candidate zone mappings and AWS comparison factors only; not used as provider figures."),
        dict(common, source="Green-Algorithms-data: default-PUE_2024.csv and DC-cloud_2023.csv; mlco2/impact impact.csv (GCP PUE)",
             licence="CC-BY-4.0 (Green-Algorithms-data); MIT (mlco2/impact)",
             attribution="Lannelongue et al., Green Algorithms; Lacoste et al., ML CO2 Impact",
             notes="pue: Google per-data-centre PUE (google.com/about/datacenters/efficiency, as of 2020) where listed, else GCP's default (1.12 as cited in default-PUE_2024); AWS: AWS's own global PUE for 2025 (1.14, sustainability.aboutamazon.com), no per-region figure published in a readable source. The shared README gives no explicit licence for the PUE files ('see Green-Algorithms-data'): CC-BY-4.0 assumed as for that project's GPU table - verify."),
        {"file": "REGIONS_CHECK.md", "source": "derived by tools/data_build/regions.py from the sources of regions.csv",
         "retrieved": RETRIEVED, "licence": "ODbL-1.0 (contains Electricity Maps-derived values)",
         "attribution": "Electricity Maps; Google LLC; Cloud Carbon Footprint",
         "notes": "Table of zone-vs-provider checks behind regions.csv grid_zone choices."},
    ]
