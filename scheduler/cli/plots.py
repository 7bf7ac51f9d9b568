"""PNG plots (matplotlib with the Agg backend; optional extra ``carbonsched[plot]``)."""
from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from carbonsched.errors import UserInputError
from carbonsched.models import Forecast


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserInputError("plots need matplotlib: pip install 'carbonsched[plot]'") from None
    return plt


def plot_forecast(f: Forecast, path: str | Path) -> Path:
    """Mean intensity with its p10-p90 band; each stitched segment shaded and labelled by source."""
    plt = _pyplot()
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise UserInputError(f"plot file must end in .png, got {path.name}")
    times = [f.start + timedelta(hours=i) for i in range(f.hours)]
    fig, ax = plt.subplots(figsize=(10, 4), dpi=110)
    ax.step(times, f.intensity_g_per_kwh, where="post", color="tab:green", label=f"mean ({f.signal})")
    if f.p10_g_per_kwh is not None and f.p90_g_per_kwh is not None:
        ax.fill_between(times, f.p10_g_per_kwh, f.p90_g_per_kwh, step="post", color="tab:green", alpha=0.2,
                        label="p10-p90")
    colours = ["#eeeeee", "#dde8f5", "#f5e8dd", "#e8f5dd"]
    seen: dict[str, str] = {}
    for seg in f.segments:
        first = seg["source"] not in seen
        colour = seen.setdefault(seg["source"], colours[len(seen) % len(colours)])
        ax.axvspan(datetime.fromisoformat(seg["from"].replace("Z", "+00:00")),
                   datetime.fromisoformat(seg["to"].replace("Z", "+00:00")), color=colour, alpha=0.6, zorder=0,
                   label=f"{seg['source']} ({seg['kind']})" if first else None)
    ax.set_title(f"Grid carbon intensity, {f.region_id} (zone {f.zone})")
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel("gCO2e/kWh")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _save(fig, plt, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _png(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise UserInputError(f"plot file must end in .png, got {path.name}")
    return path


def plot_plan(plan, path: str | Path, regions: int = 5) -> Path:
    """Forecast curves of the top ``regions`` regions of a Plan, each region's best window shaded
    in its colour, and the baseline region (dashed) with its "start now" window hatched."""
    plt = _pyplot()
    path = _png(path)
    best: dict[str, object] = {}
    for p in plan.placements:
        if p.region_id not in best and len(best) < regions:
            best[p.region_id] = p
    fig, ax = plt.subplots(figsize=(11, 4.5), dpi=110)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (rid, p) in enumerate(best.items()):
        f = plan.forecasts[rid]
        times = [f.start + timedelta(hours=h) for h in range(f.hours)]
        c = colours[i % len(colours)]
        # better ranks drawn wider and underneath, so regions sharing a grid zone both stay visible
        ax.step(times, f.intensity_g_per_kwh, where="post", color=c, lw=max(3.0 - 0.5 * i, 1.0), zorder=10 + i,
                label=f"#{p.rank} {rid}: {p.kg_co2e:,.1f} kgCO2e")
        ax.axvspan(p.start, p.end, color=c, alpha=0.15)
    if plan.baseline is not None and plan.baseline.region_id in plan.forecasts:
        b = plan.baseline
        f = plan.forecasts[b.region_id]
        times = [f.start + timedelta(hours=h) for h in range(f.hours)]
        ax.step(times, f.intensity_g_per_kwh, where="post", color="black", ls="--", lw=1.2,
                label=f"baseline {b.region_id} (now): {b.kg_co2e:,.1f} kgCO2e")
        ax.axvspan(b.start, b.end, facecolor="none", edgecolor="black", hatch="//", alpha=0.3)
        ax.axvline(b.start, color="black", lw=0.8)
    ax.set_title("Forecast grid intensity of the top regions; shaded: chosen run window")
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel("gCO2e/kWh")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.autofmt_xdate()
    return _save(fig, plt, path)


def plot_report(ledger, path: str | Path) -> Path:
    """Forecast vs actual for a tracked run: hourly intensity used for the actual figure (labelled
    by source/kind), the plan's forecast mean intensity over its window, the baseline region's mean,
    and the energy per hour (bars, right axis)."""
    plt = _pyplot()
    path = _png(path)
    hours = [datetime.fromisoformat(h["hour"].replace("Z", "+00:00")) for h in ledger.hourly]
    intensity = [h["intensity_g_per_kwh"] for h in ledger.hourly]
    energy = [h["it_energy_kwh"] for h in ledger.hourly]
    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=110)
    ax2 = ax.twinx()
    ax2.bar(hours, energy, width=1 / 24, align="edge", color="tab:grey", alpha=0.3, label="IT energy per hour (kWh)")
    ax2.set_ylabel("kWh per hour")
    edges = hours + [hours[-1] + timedelta(hours=1)]
    ax.step(edges, intensity + intensity[-1:], where="post", color="tab:green", lw=1.8,
            label=f"actual: {ledger.intensity_kind} ({ledger.intensity_source}), mean {ledger.intensity_g_per_kwh:.0f}")
    if ledger.forecast:
        f = ledger.forecast
        fs = datetime.fromisoformat(f["start"].replace("Z", "+00:00"))
        ax.hlines(f["mean_intensity_g_per_kwh"], fs, fs + timedelta(hours=f["runtime_hours"]), colors="tab:blue",
                  linestyles="--", label=f"plan forecast mean {f['mean_intensity_g_per_kwh']:.0f} ({f['region_id']})")
    if ledger.baseline:
        b = ledger.baseline
        ax.hlines(b["mean_intensity_g_per_kwh"], edges[0], edges[-1], colors="black", linestyles=":",
                  label=f"baseline {b['region_id']} mean {b['mean_intensity_g_per_kwh']:.0f}")
    title = f"{ledger.region_id}: actual {_kg(ledger.kg_co2e)} kgCO2e"
    if ledger.forecast:
        title += f" vs forecast {_kg(ledger.forecast['kg_co2e'])} kgCO2e"
    ax.set_title(title)
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel("gCO2e/kWh")
    ax.set_ylim(bottom=0)
    ax.set_zorder(ax2.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.grid(alpha=0.3)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="lower left", fontsize=8)
    fig.autofmt_xdate()
    return _save(fig, plt, path)


def _kg(x: float) -> str:
    """kgCO2e for a title: 3 decimals, or 3 significant digits for a short run (never "0.000")."""
    return f"{x:.3g}" if x != 0 and abs(x) < 0.0005 else f"{x:.3f}"


def plot_decisions(result, path: str | Path) -> Path:
    """A decision backtest (``providers.grid.decisions``): per predictor, the share of the
    hindsight-best saving captured and the share of decisions worse than starting now."""
    plt = _pyplot()
    path = _png(path)
    names = [s.predictor for s in result.scores]
    captured = [s.captured_pct or 0.0 for s in result.scores]
    worse = [s.worse_than_now_pct for s in result.scores]
    fig, ax = plt.subplots(figsize=(8, 4), dpi=110)
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], captured, width=0.4, color="tab:green", label="captured of the hindsight-best saving %")
    ax.bar([i + 0.2 for i in x], worse, width=0.4, color="tab:red", label="decisions worse than starting now %")
    ax.set_xticks(list(x), names)
    ax.set_ylabel("%")
    ax.set_title(f"{result.zone or 'history'}: {result.hours} h job, may wait {result.max_delay_hours} h "
                 f"({result.scores[0].origins} decisions)")
    ax.legend(loc="upper right", fontsize=8)
    return _save(fig, plt, path)
