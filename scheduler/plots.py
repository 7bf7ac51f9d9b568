"""PNG plots (matplotlib with the Agg backend; optional extra ``carbonsched[plot]``)."""
from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from .errors import UserInputError
from .models import Forecast


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
