"""``carbonsched backtest decisions``: what start decisions realise, for the forecaster and simple
predictors (thin: read the history, call ``providers.grid.decisions``, format)."""
from __future__ import annotations

import argparse
import math

from carbonsched.errors import UserInputError
from carbonsched.cli._common import Progress, emit

EPILOG = """\
At each origin every predictor sees only the history before it, forecasts the next
MAX_DELAY + HOURS hours, and the planner's rule picks a start (the earliest within --min-gain
of the best); the start is then scored against the actual series: the saving against starting
at once, the share of the hindsight-best saving it captured, how often it did worse than
starting at once, and the regret. `python -m pydoc carbonsched.providers.grid.decisions`.

examples (the raw Electricity Maps exports: fit on 2021, score every day of 2022):
  carbonsched backtest decisions --history ES_2021_hourly.csv --history ES_2022_hourly.csv \\
      --score-from 2022-01-01 --hours 4 --max-delay 24
  carbonsched backtest decisions --history electricitymaps_2022_hourly_lca_123zones.csv --zone DE \\
      --hours 8 --max-delay 12 --origins 200 --seed 7 --json
"""


def _fmt(x, digits: int = 1) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def cmd_decisions(a: argparse.Namespace) -> int:
    from carbonsched.providers.grid.history import read_histories
    from carbonsched.providers.grid.decisions import decision_backtest
    from carbonsched.units import parse_utc

    if not 1 <= a.hours <= 168 or not 1 <= a.max_delay <= 168:
        raise UserInputError("--hours and --max-delay must be whole hours from 1 to 168")
    if a.origins is not None and a.origins < 1:
        raise UserInputError("--origins must be at least 1")
    if a.robust and a.deferral == "expected":
        raise UserInputError("--robust and --deferral expected contradict each other; --robust is the default now")
    if not (0 <= a.min_gain < 100):
        raise UserInputError("--min-gain must be a percentage from 0 to below 100")
    values, start, info = read_histories(a.history, zone=a.zone, signal=a.signal)
    progress = Progress("decision origins", quiet=a.json)
    try:
        result = decision_backtest(values, start, hours=a.hours, max_delay=a.max_delay, zone=info.get("zone") or a.zone or "",
                                   origins=a.origins, seed=a.seed, min_gain_pct=a.min_gain,
                                   robust=a.robust or a.deferral == "robust",
                                   score_from=parse_utc(a.score_from, "--score-from") if a.score_from else None,
                                   progress=progress)
    except ValueError as exc:
        raise UserInputError(f"cannot backtest decisions on {', '.join(a.history)}: {exc}") from None
    finally:
        progress.close()

    def render(doc: dict) -> str:
        from carbonsched.cli.render import table

        rows = [[s["predictor"], str(s["origins"]), _fmt(s["realised_saving_pct"]), _fmt(s["oracle_saving_pct"]),
                 _fmt(s["captured_pct"]), _fmt(s["worse_than_now_pct"]), _fmt(s["mean_regret_g_per_kwh"]),
                 _fmt(s["waited_pct"])] for s in doc["scores"]]
        head = (f"Decisions in {doc['zone'] or ', '.join(a.history)}: a {doc['hours']} h job that may wait "
                f"{doc['max_delay_hours']} h ({'robust' if doc.get('robust') else 'expected'} deferral), "
                f"{doc['scores'][0]['origins'] + doc['scores'][0]['skipped']} origins "
                f"from {doc['scored_from'][:10]} to {doc['scored_to'][:10]} (seed {doc['seed']}, min gain "
                f"{doc['min_gain_pct']:g} %)\n")
        skipped = [f"{s['predictor']}: {s['skipped']} origins skipped (too little history)" for s in doc["scores"]
                   if s["skipped"]]
        return (head + table(["predictor", "decisions", "saving %", "oracle %", "captured %", "worse than now %",
                              "regret g/kWh", "waited %"], rows, right=set(range(1, 8)))
                + "".join(f"\nnote: {s}" for s in skipped))

    def plot(r, path):
        from carbonsched.cli.plots import plot_decisions

        plot_decisions(r, path)

    return emit(a, result, to_dict=lambda r: r.to_dict(), render=lambda r: render(r.to_dict()), plot=plot)


def register(sub, common) -> None:  # imports nothing heavy: every command's parser is built for `plan` too
    p = sub.add_parser("backtest", parents=[common], help="replay decisions on history: what waiting really saved",
                       description="Backtests of decisions (the forecaster's own backtest is `carbonsched forecast "
                                   "backtest`).")
    psub = p.add_subparsers(dest="backtest_command", metavar="ACTION", required=True)
    d = psub.add_parser("decisions", parents=[common], help="start-now-or-wait decisions vs hindsight and simple predictors",
                        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
                        description="Replay the planner's start decision at many instants of an hourly history, "
                                    "each with the history cut at that instant, for carbonsched's forecaster and "
                                    "simple predictors; score each against hindsight and against starting now.")
    d.add_argument("--history", action="append", required=True, metavar="FILE",
                   help="hourly history CSV (the formats --intensity-file reads); repeat to join files (e.g. years)")
    d.add_argument("--zone", help="the zone column of a many-zone file")
    d.add_argument("--signal", choices=["direct", "lca"], default="lca", help="LCA or direct (Electricity Maps exports)")
    d.add_argument("--hours", type=int, required=True, help="job runtime in hours")
    d.add_argument("--max-delay", type=int, required=True, metavar="HOURS", help="how long the job may wait")
    d.add_argument("--origins", type=int, metavar="N", help="N origins drawn with --seed (default: one per day)")
    d.add_argument("--seed", type=int, default=0, help="origin draw (default 0): the same seed, the same result")
    d.add_argument("--min-gain", type=float, default=0.0, metavar="PCT",
                   help="wait only for a forecast gain above this percent (the job policy's min_gain_pct)")
    d.add_argument("--deferral", choices=["robust", "expected"], default="robust",
                   help="the planner's rule (default robust): wait only when the forecast's p90 for the later "
                        "window beats starting now, so the gain survives the forecast's own error (predictors "
                        "without a spread are unchanged); expected: wait for any gain in the mean forecast")
    d.add_argument("--robust", action="store_true", help=argparse.SUPPRESS)  # the default since deferral flipped
    d.add_argument("--score-from", metavar="ISO8601", help="score origins from this instant (earlier history only fits)")
    d.add_argument("--json", action="store_true", help="machine-readable scores (schema_version 1)")
    d.add_argument("--plot", metavar="FILE.png", help="also draw captured share and worse-than-now share per predictor")
    d.set_defaults(func=cmd_decisions)
