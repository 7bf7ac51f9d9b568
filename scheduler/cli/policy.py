"""CLI for policies as code and machine interfaces: ``policy check`` and ``schema`` (thin layer).

``carbonsched policy check POLICY JOB`` exits 0 when the job has a feasible placement under the
policy, 2 when the policy leaves none (or a file is invalid), 1 on other errors.
"""
from __future__ import annotations

import argparse
import json

from carbonsched.cli._common import now_from


def cmd_policy_check(a: argparse.Namespace) -> int:
    from carbonsched.spec.job import load_job
    from carbonsched.planning.policy_check import check_policy
    from carbonsched.spec.policy_file import load_policy
    from carbonsched.settings import resolve_settings

    pf = load_policy(a.policy)
    job = load_job(a.job)
    settings = resolve_settings({"intensity_source": a.intensity_source})
    result = check_policy(job, pf, now=now_from(a), settings=settings, top=a.top)
    if a.json:
        print(json.dumps(result, indent=2))
    else:
        print(render_check(result))
    return 0 if result["feasible"] else 2


def _best(doc: dict) -> str:
    if doc["plan"] is None:
        return f"infeasible ({doc['error']})"
    b = doc["plan"]["placements"][0]
    return (f"{b['region_id']} {b['instance_type']}{' (spot)' if b['market'] == 'spot' else ''} "
            f"{b['gpu_count']}x{b['gpu']} from {b['start']}: {b['kg_co2e']:.2f} kgCO2e, ${b['cost_usd']:.0f}, "
            f"ends {b['end']}")


def render_check(result: dict) -> str:
    pol = result["policy"]
    out = [f"Policy {pol['name']!r} (version {pol['version']})", ""]
    out.append("changes to the job:" if result["changes"] else "the policy changes nothing in this job")
    out += [f"  {c}" for c in result["changes"]]
    out += ["", f"default:      {_best(result['default'])}", f"under policy: {_best(result['under_policy'])}"]
    if result["binding"]:
        out += ["", "binding (the default best placement breaks these):"] + [f"  {b}" for b in result["binding"]]
    out += ["", result["summary"]]
    return "\n".join(out)


def cmd_schema(a: argparse.Namespace) -> int:
    from carbonsched.spec.schemas import get_schema

    print(json.dumps(get_schema(a.name), indent=2))
    return 0


def register(sub, common) -> None:
    from carbonsched.providers.grid import CHOICES as SOURCE_CHOICES

    p = sub.add_parser("policy", parents=[common], help="policies as code: check a policy file against a job",
                       description="Policy files (policy.toml): see `python -m pydoc carbonsched.spec.policy_file`.")
    psub = p.add_subparsers(dest="policy_command", metavar="ACTION", required=True)
    c = psub.add_parser("check", parents=[common], help="the plan under POLICY vs the job's own (what changed and why)",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog="example:\n  carbonsched policy check policy.toml examples/job.toml --now 2026-03-01T00:00Z\n\n"
                               "exit codes: 0 feasible under the policy; 2 no placement under the policy or invalid "
                               "files; 1 other errors")
    c.add_argument("policy", help="policy file (TOML)")
    c.add_argument("job", help="job file (TOML)")
    c.add_argument("--now", metavar="ISO8601", help="plan as of this instant (default: the clock)")
    c.add_argument("--top", type=int, default=5, metavar="N", help="placements kept in each plan (default 5)")
    c.add_argument("--intensity-source", choices=SOURCE_CHOICES)
    c.add_argument("--json", action="store_true", help="machine-readable comparison")
    c.set_defaults(func=cmd_policy_check)
    s = sub.add_parser("schema", parents=[common], help="print the JSON Schema of job files, policy files or plan --json",
                       description="JSON Schemas (draft 2020-12), generated from the code's own definitions.")
    s.add_argument("name", choices=["job", "policy", "plan"])
    s.set_defaults(func=cmd_schema)
