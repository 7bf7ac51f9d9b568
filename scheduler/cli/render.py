"""Human-readable text for plans and region lists (the CLI's formatting, no logic)."""
from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING

from carbonsched.models import Plan
from carbonsched.units import hours_between

if TYPE_CHECKING:
    from carbonsched.measure.mlco2 import EstimateComparison


def table(headers: list[str], rows: list[list[str]], right: set[int] | None = None) -> str:
    """A plain aligned table; columns in ``right`` are right-aligned."""
    right = right or set()
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def when(start: datetime, now: datetime) -> str:
    h = hours_between(now, start)
    stamp = start.strftime("%Y-%m-%d %H:%M")
    if h < 1 / 60:
        return f"{stamp} (now)"
    return f"{stamp} (in {h:.0f} h)" if h >= 1 else f"{stamp} (in {h * 60:.0f} min)"


def _num(x: float, digits: int = 1) -> str:
    """At least ``digits`` decimals, more for small values so three significant digits show."""
    ax = abs(x)
    if 0 < ax < 100:
        digits = max(digits, min(4, 2 - math.floor(math.log10(ax))))
    return f"{x:,.{digits}f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.0f}%".replace("+", "") if x <= 0 else f"{x:.0f}%"


def _saving_words(pct: float | None) -> str:
    if pct is None:
        return "saving unknown"
    return f"{pct:.0f}% less" if pct >= 0 else f"{-pct:.0f}% more"


def policy_lines(record: dict | None) -> list[str]:
    """The one line saying which organisation policy a plan was made under (none without one)."""
    if not record:
        return []
    changes = record.get("changes") or []
    n = sum(len(c) for c in changes.values()) if isinstance(changes, dict) else len(changes)  # batch: per job
    return [f"policy: {record['name']} (version {record['version']}) applied: {n} change{'' if n == 1 else 's'}"]


def render_plan(plan: Plan) -> str:
    job = plan.job
    head = (f"Plan for {job.name!r}: {job.gpus}x{job.gpu} for {job.hours:g} h (reference), "
            f"objective {plan.policy.objective}, now {plan.now.strftime('%Y-%m-%d %H:%M')} UTC")
    risk = plan.policy.risk == "p90"
    headers = ["#", "region", "instance", "GPUs", "start (UTC)", "hours", "kWh", "kgCO2e"] + \
        (["kg p90"] if risk else []) + ["USD", "g/kWh", "saving"]

    def row(rank: str, p, saving: str) -> list[str]:
        instance = p.instance_type + (" (spot)" if p.market == "spot" else "")
        cells = [rank, p.region_id, instance, f"{p.gpu_count}x{p.gpu}", when(p.start, plan.now),
                 _num(p.runtime_hours), _num(p.energy_kwh, 0), _num(p.kg_co2e)]
        if risk:
            cells.append("-" if p.kg_co2e_p90 is None else _num(p.kg_co2e_p90))
        return cells + [_num(p.cost_usd, 0), _num(p.mean_intensity_g_per_kwh, 0), saving]

    rows, merged = [], 0
    for group in storage_variant_groups(list(plan.placements)):
        p = group[0]
        r = row(str(p.rank) if len(group) == 1 else f"{p.rank}-{group[-1].rank}", p, _pct(p.saving_vs_baseline_pct))
        if len(group) > 1:
            r[2] = f"{_storage_base(p.instance_type)} (+{len(group) - 1} SSD variant{'s' if len(group) > 2 else ''})"
            merged += len(group) - 1
        rows.append(r)
    b = plan.baseline
    if b is not None:
        rows.append(row("base", b, "-"))
    out = [head] + policy_lines(plan.policy_file) + ["", table(headers, rows, right={0} | set(range(5, len(headers))))]
    if merged:
        out.append(f"rows marked '+N SSD variant' join instance types that differ only in local SSD and give the "
                   f"same numbers ({merged} row{'s' if merged > 1 else ''} folded; --json lists each)")
    out += _economics_lines(plan) + _segment_lines(plan)
    if b is not None and plan.placements:
        best = plan.placements[0]
        out += ["", f"Best: {best.region_id} {best.instance_type} starting {when(best.start, plan.now)} emits "
                    f"{_num(best.kg_co2e)} kgCO2e vs {_num(b.kg_co2e)} for the baseline ({b.region_id}, now): "
                    f"{_saving_words(best.saving_vs_baseline_pct)}, ${_num(best.cost_usd, 0)} vs ${_num(b.cost_usd, 0)}."]
    out.append(f"{plan.n_feasible:,} of {plan.n_candidates:,} candidates (offering x start) feasible; "
               "kgCO2e = operational (energy x mean grid intensity over the run, PUE included) + embodied GPU share"
               " (+ dataset transfer where the job names one).")
    by_source: dict[str, list[str]] = {}
    for rid, f in sorted(plan.forecasts.items()):
        by_source.setdefault(f"{f.source} ({f.signal})", []).append(rid)
    if by_source:
        out.append("intensity: " + "; ".join(f"{src} for {', '.join(rids)}" for src, rids in by_source.items()))
    for w in plan.warnings:
        out.append(f"warning: {w}")
    return "\n".join(out)


STORAGE_SUFFIXES = ("-nolssd", "-lssd")  # GCP machine types that differ only in local SSD


def _storage_base(instance_type: str) -> str:
    for suffix in STORAGE_SUFFIXES:
        if instance_type.endswith(suffix):
            return instance_type[: -len(suffix)]
    return instance_type


def storage_variant_groups(placements: list) -> list[list]:
    """Consecutive placements that differ only in a local-storage variant of the instance type (same
    region, market, start, GPUs, emissions and cost), grouped for display."""
    groups: list[list] = []
    for p in placements:
        last = groups[-1][-1] if groups else None
        if last is not None and (last.region_id, _storage_base(last.instance_type), last.market, last.start,
                                 last.gpu_count, last.gpu, round(last.kg_co2e, 9), round(last.cost_usd, 6)) == \
                (p.region_id, _storage_base(p.instance_type), p.market, p.start, p.gpu_count, p.gpu,
                 round(p.kg_co2e, 9), round(p.cost_usd, 6)):
            groups[-1].append(p)
        else:
            groups.append([p])
    return groups


def _economics_lines(plan: Plan) -> list[str]:
    """Say where spot restarts and dataset transfer are part of the figures (they are included)."""
    shown = list(plan.placements) + ([plan.baseline] if plan.baseline else [])
    lines = []
    for p in shown:
        parts = []
        if p.spot_restart_overhead_hours > 0:
            parts.append(f"spot restarts +{_num(p.spot_restart_overhead_hours)} h")
        if p.data_transfer_usd > 0 or p.data_transfer_kwh > 0:
            parts.append(f"data transfer ${_num(p.data_transfer_usd, 0)}, {_num(p.data_transfer_kwh)} kWh, "
                         f"{_num(p.kg_co2e_transfer)} kgCO2e")
        if parts:
            lines.append(f"  {p.rank if p.rank is not None else 'base'}: " + "; ".join(parts))
    return (["", "included above (expected spot restarts; moving the dataset from its home region):"] + lines) if lines else []


def _segment_lines(plan: Plan) -> list[str]:
    """Interruptible schedules: the segments of each placement (UTC)."""
    lines = []
    for p in plan.placements:
        s = p.interruptible
        if s is None:
            continue
        segs = ", ".join(f"{a:%m-%d %H:%M}-{b:%H:%M}" + (f" (+{o * 60:.0f} min restore)" if o else "")
                         for a, b, o in s.segments)
        lines.append(f"  {p.rank}: {len(s.segments)} segment(s): {segs}")
    return (["", "interruptible schedules (UTC):"] + lines) if lines else []


def render_regions(rows: list[dict]) -> str:
    headers = ["region", "location", "grid zone", "g/kWh", "provider g/kWh", "CFE %", "PUE", "GPUs offered",
               "$/GPU-h", "spot $/GPU-h"]

    def money(x):
        return "-" if x is None else f"{x:.2f}"

    def published(r):
        pp = r.get("provider_published") or {}
        return "-" if pp.get("published_g_per_kwh") is None else f"{pp['published_g_per_kwh']:.0f} ({pp.get('year')})"

    body = [[r["region_id"], r["location"], r["grid_zone"] + ("" if r["profile_zone"] else "*"),
             _num(r["yearly_intensity_g_per_kwh"], 0), published(r),
             "-" if (r.get("provider_published") or {}).get("cfe_pct") is None else f"{r['provider_published']['cfe_pct']:.0f}",
             f"{r['pue']:.2f}", r["gpus"], money(r["usd_per_gpu_hour"]), money(r["spot_usd_per_gpu_hour"])] for r in rows]
    note = ("g/kWh: ours, yearly mean, lifecycle (Electricity Maps 2022; * = zone without hourly data, 2024 yearly). "
            "provider g/kWh: the provider's own yearly location-based figure (direct emissions, so lower than "
            "lifecycle); CFE %: Google's carbon-free energy share, market-based (not used in kgCO2e). "
            "$/GPU-h: cheapest on-demand (and spot) price per GPU-hour of a matching instance in the catalog "
            "plans use; --json adds the cheapest instance per GPU count and the PUE source.")
    return table(headers, body, right={3, 4, 5, 6, 8, 9}) + "\n" + note


def render_forecast(f) -> str:
    from datetime import timedelta

    head = f"Intensity forecast for {f.region_id} (zone {f.zone}): {f.source}, {f.kind}, {f.signal}, g/kWh"
    rows = []
    for i in range(f.hours):
        t = f.start + timedelta(hours=i)
        rows.append([t.strftime("%Y-%m-%d %H:%M"), _num(float(f.intensity_g_per_kwh[i]), 0),
                     "-" if f.p10_g_per_kwh is None else _num(float(f.p10_g_per_kwh[i]), 0),
                     "-" if f.p90_g_per_kwh is None else _num(float(f.p90_g_per_kwh[i]), 0)])
    out = [head, "", table(["hour (UTC)", "mean", "p10", "p90"], rows, right={1, 2, 3})]
    for seg in f.segments:
        out.append(f"{seg['from']} .. {seg['to']}: {seg['source']} ({seg['kind']}, {seg['signal']})")
    out += [f"warning: {w}" for w in f.warnings]
    return "\n".join(out)


def render_batch(doc: dict) -> str:
    """The joint placement of a batch (from ``BatchPlan.to_dict()``), with totals vs greedy and
    baseline, and the jobs that did not fit."""
    from datetime import datetime

    now = datetime.fromisoformat(doc["now"].replace("Z", "+00:00"))
    rows = []
    for j in doc["jobs"]:
        p = j["placement"]
        if p is None:
            continue
        start = datetime.fromisoformat(p["start"].replace("Z", "+00:00"))
        rows.append([j["name"], p["region_id"], p["instance_type"], f"{p['gpu_count']}x{p['gpu']}", when(start, now),
                     _num(p["runtime_hours"]), _num(p["kg_co2e"]), _num(p["cost_usd"], 0),
                     "-" if j["baseline"] is None else _num(j["baseline"]["kg_co2e"])])
    t, g, b, s = doc["totals"], doc["greedy"], doc["baseline"], doc["solver"]
    head = f"Batch plan: {t['jobs']} of {len(doc['jobs'])} jobs placed, objective {doc['objective']}, " \
           f"now {now:%Y-%m-%d %H:%M} UTC"
    gap = f"{100 * s['gap']:.2f} %" if s.get("gap") is not None else \
        "not proven (placement count not proven maximal)" if not s.get("placement_proven_maximal") else \
        "not proven (the solver stopped before proving its placement count; the jobs placed after it make it maximal)"
    if (s.get("deferral_rules") or {}).get("moved") and s.get("gap") is not None:
        gap += " for the solver's assignment, before the moves below"
    out = [head, *policy_lines(doc.get("policy_file")), "",
           table(["job", "region", "instance", "GPUs", "start (UTC)", "hours", "kgCO2e", "USD", "baseline kg"],
                 rows, right={5, 6, 7, 8}), "",
           f"total: {_num(t['kg_co2e'])} kgCO2e, ${_num(t['cost_usd'], 0)}; greedy in submission order: "
           f"{_num(g['kg_co2e'])} kgCO2e with {g['jobs']} job(s) placed; run now in the default region: "
           f"{_num(b['kg_co2e'])} kgCO2e",
           f"solver: {s.get('status')}, optimality gap {gap} ({_num(s.get('seconds') or 0, 2)} s)"]
    r = s.get("deferral_rules") or {}
    if r.get("moved"):
        out.append(f"deferral rules: {r['moved']} job(s) moved to where plan would start them (or the best start their "
                   f"rule accepts among those with room), {r['objective_change']:+.3g} in the objective against the "
                   "solver's assignment" + (f"; {r['placed_after']} more job(s) placed in room left after the moves"
                                            if r.get("placed_after") else ""))
    if doc.get("unplaced"):
        urows = []
        for u in doc["unplaced"]:
            cells = ", ".join(f"{c['region_id']} {c['gpu']} {c['hour'][5:16].replace('T', ' ')} "
                              f"({c['in_use']:g}/{c['capacity']:g})" for c in u["full_cells"]) or "-"
            room = "-" if not u["earliest_start_with_room"] else \
                f"{u['earliest_start_with_room'][:16].replace('T', ' ')} in {u['earliest_region_id']}"
            urows.append([u["name"], str(u["priority"]), cells, room])
        out += ["", f"not placed ({len(doc['unplaced'])}):",
                table(["job", "priority", "full capacity cells (in use/capacity)", "room from (window widened)"], urows)]
    out += [f"warning: {w}" for w in doc["warnings"]]
    return "\n".join(out)


def render_comparison(c: EstimateComparison) -> str:
    from carbonsched.measure.mlco2 import CITATION

    rows = [[t["term"], t["calculator"], t["ours"]] for t in c.terms]
    ratio = c.ours["kg_co2e"] / c.calculator.kg_co2e if c.calculator.kg_co2e else float("nan")
    lines = [f"Estimate for {c.gpus}x{c.gpu} for {c.hours:g} h in {c.region_id}",
             table(["term", "ML CO2 Impact calculator", "carbonsched"], rows), "",
             f"calculator: {c.calculator.kg_co2e:.2f} kgCO2e ({c.calculator.data})",
             f"carbonsched: {c.ours['kg_co2e']:.2f} kgCO2e ({ratio:.2f}x the calculator)"]
    lines += [f"note: {n}" for n in c.notes]
    lines.append(f"calculator: {CITATION}")
    return "\n".join(lines)
