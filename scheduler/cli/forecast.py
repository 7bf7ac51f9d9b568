"""``carbonsched forecast``: a region's or zone's hourly intensity; ``forecast backtest`` scores the forecaster."""
from __future__ import annotations

import argparse

import numpy as np

from carbonsched.errors import UserInputError
from carbonsched.cli._common import SOURCE_CHOICES, Progress, emit, fmt, intensity_options, now_from


def cmd_forecast(a: argparse.Namespace) -> int:
    if a.target == "backtest":
        return backtest_cmd(a)
    from carbonsched.planning.region_forecast import forecast_intensity, forecast_to_dict

    settings, source = intensity_options(a, a.source)
    f = forecast_intensity(a.target, now=now_from(a), hours=a.hours, settings=settings, forecast_source=source)
    from carbonsched.cli.render import render_forecast

    return emit(a, f, to_dict=forecast_to_dict, render=render_forecast, plot=_plot)


def _plot(forecast, path: str) -> None:
    from carbonsched.cli.plots import plot_forecast

    plot_forecast(forecast, path)


def backtest_cmd(a: argparse.Namespace) -> int:
    from carbonsched.providers.grid.backtest import backtest
    from carbonsched.providers.grid.history import read_history_csv

    if not a.history:
        raise UserInputError("forecast backtest needs --history FILE (an hourly history CSV) and usually --zone Z")
    if not 1 <= a.horizon <= 168:
        raise UserInputError(f"--horizon must be between 1 and 168 hours, got {a.horizon}")
    values, start, info = read_history_csv(a.history, zone=a.zone, signal=a.signal)
    masked = 0
    if a.mask_flat_runs:  # gap fill (a carried-over value) must not be scored as if it were data
        from carbonsched.providers.grid.series import flat_fill_mask

        flat = flat_fill_mask(values)
        values, masked = np.where(flat, np.nan, values), int(flat.sum())
    progress = Progress("backtest origins", quiet=a.json)
    try:
        result = backtest(values, start, horizon_h=a.horizon, zone=info.get("zone") or a.zone or "", progress=progress)
    except ValueError as exc:
        raise UserInputError(f"cannot backtest {a.history}: {exc}") from None
    finally:
        progress.close()
    from carbonsched.cli.render import table

    def render(doc: dict) -> str:
        def outside(m: dict) -> str:  # calibration of the p10-p90 band: ~10 % should fall on each side
            lo, hi = m.get("below_p10_pct"), m.get("above_p90_pct")
            return "-" if lo is None or hi is None else f"{lo:.0f} / {hi:.0f}"

        rows = [[name, fmt(m.get("mae")), fmt(m.get("mape")), fmt(m.get("spearman"), 2), outside(m)]
                for name, m in doc["models"].items()]
        flat = f", {doc['masked_flat_hours']} flat gap-fill hours not scored" if a.mask_flat_runs else ""
        return (f"Backtest of {doc['zone'] or a.history}: {doc['origins']} rolling origins, horizon {a.horizon} h, "
                f"signal {info.get('signal')}{flat}\n"
                + table(["model", "MAE g/kWh", "MAPE %", "Spearman", "% < p10 / > p90"], rows, right={1, 2, 3, 4})
                + "".join(f"\nwarning: {w}" for w in doc["warnings"]))

    doc = result.to_dict()
    if a.mask_flat_runs:
        doc["masked_flat_hours"] = masked
    step = info.get("resolution_minutes", 60.0)
    doc["resolution_minutes"] = step
    doc["warnings"] = [f"the file's {step:g}-minute values were averaged into UTC hours: the scores are for "
                       "hourly means"] if step < 59.5 else []
    return emit(a, doc, to_dict=lambda d: d, render=render)


def register(sub, common) -> None:
    f = sub.add_parser(
        "forecast", parents=[common], help="carbon-intensity forecast of a region or grid zone; or backtest the forecaster",
        description="Hourly grid carbon intensity for a cloud region (aws:eu-west-1) or an Electricity Maps zone "
                    "(DE), from the configured source with fallbacks. `carbonsched forecast backtest --history FILE "
                    "--zone Z` scores the forecaster against naive baselines on your history.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  carbonsched forecast aws:eu-west-1 --hours 48\n"
               "  carbonsched forecast DE --json\n  carbonsched forecast gcp:europe-west4 --plot ci.png\n"
               "  carbonsched forecast backtest --history ES_2022_hourly.csv --signal lca --horizon 24")
    f.add_argument("target", metavar="REGION_OR_ZONE", help="region id, grid zone, or 'backtest'")
    f.add_argument("--hours", type=int, default=48, help="hours from now (default 48, max 336)")
    f.add_argument("--source", choices=SOURCE_CHOICES,
                   help="intensity source (default: settings, 'auto')")
    f.add_argument("--intensity-file", action="append", metavar="[ZONE=]PATH", help="hourly history file (repeatable)")
    f.add_argument("--intensity-file-signal", choices=["lca", "direct"], default="lca")
    f.add_argument("--now", metavar="ISO8601", help="forecast from this instant (default: the clock)")
    f.add_argument("--plot", metavar="FILE.png", help="also draw the forecast (needs carbonsched[plot])")
    f.add_argument("--json", action="store_true")
    b = f.add_argument_group("backtest")
    b.add_argument("--history", metavar="FILE", help="hourly history CSV (simple, 123-zone wide, or Electricity Maps export)")
    b.add_argument("--zone", help="zone column of a wide history file")
    b.add_argument("--horizon", type=int, default=24, help="forecast horizon in hours (default 24)")
    b.add_argument("--signal", choices=["lca", "direct"], default="lca", help="which column of an Electricity Maps export")
    b.add_argument("--mask-flat-runs", action="store_true",
                   help="do not score flat gap-fill runs (>= 6 identical hours whose value does not recur in >= 3 "
                        "runs), as the README's backtest table does")
    f.set_defaults(func=cmd_forecast)
