"""``carbonsched ledger``: planned, measured and baseline emissions summed over the stored jobs."""
from __future__ import annotations

import argparse
import csv
import json
import sys


COLUMNS = ["id", "name", "team", "state", "created_at", "region_id", "planned_kg_co2e", "baseline_kg_co2e",
           "measured_kg_co2e", "measured_baseline_kg_co2e", "measured_energy_kwh"]


def cmd_ledger(a: argparse.Namespace) -> int:
    from carbonsched.server.client import remote_from_env
    from carbonsched.units import parse_utc

    since = parse_utc(a.since, "--since") if a.since else None
    remote = remote_from_env()
    if remote is not None:
        doc = remote.ledger(since=a.since)
    else:
        from carbonsched.cli._common import open_store
        from carbonsched.kubernetes import all_regions
        from carbonsched.measure.totals import team_ledger
        from carbonsched.providers.grid import build_forecast_source
        from carbonsched.settings import resolve_settings

        settings = resolve_settings({"intensity_source": a.intensity_source})
        doc = team_ledger(open_store(settings=settings), source=build_forecast_source(settings), since=since,
                          baseline_region=settings.default_region, regions=all_regions(settings))
    if a.json:
        print(json.dumps(doc, indent=2))
    elif a.csv:
        w = csv.DictWriter(sys.stdout, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(doc["jobs"])
    else:
        print(render_ledger(doc))
    return 0


def _energy_basis(t: dict) -> str:
    modelled = t.get("measured_jobs_energy_modelled") or 0
    if not t["jobs_measured"]:
        return "no job measured"
    if not modelled:
        return "metered energy"
    return (f"energy partly modelled for {modelled} of {t['jobs_measured']} job(s): no power counter could be read"
            if modelled < t["jobs_measured"] else "energy modelled: no power counter could be read")


def render_ledger(doc: dict) -> str:
    t = doc["totals"]

    def pct(x):
        return "-" if x is None else f"{x:.1f} %"

    lines = [f"{t['jobs']} job(s){' since ' + doc['since'] if doc['since'] else ''}; {t['jobs_ran']} ran, "
             f"{t['jobs_measured']} measured ({pct(t['measured_share_of_ran_pct'])} of those that ran)",
             f"planned:  {t['planned_kg_co2e']:.4g} kgCO2e vs baseline {t['baseline_kg_co2e']:.4g} "
             f"(saving {t['planned_saving_kg_co2e']:.4g} kg, {pct(t['planned_saving_pct'])}; the plans' estimates)",
             f"measured: {t['measured_kg_co2e']:.4g} kgCO2e vs {t['measured_baseline_kg_co2e']:.4g} for the same energy "
             f"in the default region at the same hours (saving {t['measured_saving_kg_co2e']:.4g} kg, "
             f"{pct(t['measured_saving_pct'])}; {_energy_basis(t)})"]
    lines += [f"warning: {w}" for w in doc.get("warnings") or []]
    return "\n".join(lines)


def register(sub, common) -> None:
    from carbonsched.providers.grid import CHOICES

    p = sub.add_parser("ledger", parents=[common], help="planned, measured and baseline kgCO2e over all jobs",
                       description="Sum the stored jobs' planned emissions (the plans' estimates), their "
                                   "baselines (default region, start now) and, for jobs with a measurement, what "
                                   "they really emitted; with the savings and how much of it was measured.")
    p.add_argument("--since", metavar="ISO8601", help="only jobs created at or after this instant")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="totals and one row per job")
    out.add_argument("--csv", action="store_true", help="one row per job")
    p.add_argument("--intensity-source", choices=CHOICES, help="for costing measured runs")
    p.set_defaults(func=cmd_ledger)
