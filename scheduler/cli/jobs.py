"""CLI for the job lifecycle: submit, status, list, cancel, logs, agent (thin: parse, call, format)."""
from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone

from carbonsched.errors import UserInputError
from carbonsched.cli._common import (add_plan_args, intensity_options, job_file_dir, jsonable, no_local_policy, now_from,
                                     overrides, policy_option)


def _store(a, create: bool = True):
    """(settings, store). Commands that only read or change existing jobs pass ``create=False``:
    without a store they stop with a message (or list nothing) instead of creating an empty one."""
    from carbonsched.run.store import Store
    from carbonsched.settings import resolve_settings

    settings = resolve_settings()
    if settings.database_url:  # a team's database: it exists or says why not
        return settings, _store_for(settings)
    path = Store.path_for(settings)
    existing = next((p for p in path.parents if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise UserInputError(f"the job store's folder {path.parent} cannot exist: {existing} is a file; "
                             "point CARBONSCHED_HOME (or home in the config file) at a folder")
    if not create and not path.exists():
        if getattr(a, "job_id", None) is not None:
            raise UserInputError(f"no job {a.job_id!r}: there is no job store at {path} yet; "
                                 "submit a job first (or set CARBONSCHED_HOME to where your jobs are)")
        return settings, None
    return settings, _store_for(settings)


def _store_for(settings):
    from carbonsched.run.store import Store

    return Store.for_settings(settings)


def _remote():
    """The server client when CARBONSCHED_SERVER is set (the command then goes through the API)."""
    from carbonsched.server.client import remote_from_env

    return remote_from_env()


def _factory(settings):
    from carbonsched.providers.cloud import get_launcher

    cache = {}

    def factory(name):
        if name not in cache:
            cache[name] = get_launcher(name, settings)
        return cache[name]

    return factory


def _now() -> datetime:
    return datetime.now(timezone.utc)


def cmd_submit(a: argparse.Namespace) -> int:
    from carbonsched.cli.plan import cmd_plan
    from carbonsched.spec.job import job_from_dict, merge, read_job_file
    from carbonsched.providers.cloud import LAUNCHERS
    from carbonsched.planning import plan as make_plan
    from carbonsched.cli.render import render_plan
    from carbonsched.run.submit import check_launchable, restrict_to_launcher, submit

    if a.dry_run:
        return cmd_plan(a)
    if a.batch:
        raise UserInputError("submit takes one job; plan a queue with `carbonsched plan --batch` and submit its "
                             "jobs one by one (submitting a batch is not supported yet)")
    raw = read_job_file(a.job) if a.job else {}
    merged = merge(raw, overrides(a))
    job = job_from_dict(merged, base=job_file_dir(a.job))
    if not (job.command or job.payload.run or job.image):
        raise UserInputError("submit needs something to run: add command = \"python train.py\" (or run = \"...\", "
                             "a bash script) to the job file")
    if a.max_attempts < 1:
        raise UserInputError("--max-attempts must be at least 1")
    launcher = a.launcher
    if launcher != "auto" and launcher not in LAUNCHERS:
        raise UserInputError(f"unknown launcher {launcher!r}; choose auto, {', '.join(LAUNCHERS)}")
    remote = _remote()
    if remote is not None:
        no_local_policy(a)  # the server enforces its own
        return _submit_remote(a, remote, job, jsonable(merged), launcher)
    job = restrict_to_launcher(job, launcher)
    settings, source = intensity_options(a, a.intensity_source)
    now = now_from(a)
    pf = policy_option(a, settings)
    if pf is None:
        plan = make_plan(job, now=now, settings=settings, top=max(a.max_attempts, 10), forecast_source=source)
    else:  # refused (exit 2) before anything is stored when the job or every plan breaks the policy
        from carbonsched.planning.policy_check import enforce_policy

        plan = enforce_policy(job, pf, now=now, settings=settings, top=max(a.max_attempts, 10), forecast_source=source)
        job = plan.job  # stored as planned: under the policy
    check_launchable(job, plan, launcher)
    store = _store_for(settings)
    if not a.json:
        print(render_plan(plan))
    if not a.yes:
        if not sys.stdin.isatty():
            raise UserInputError("submit asks for confirmation; pass --yes to submit without a terminal")
        via = plan.best.provider if launcher == "auto" else launcher
        answer = input(f"Submit {job.name!r} via {via} ({plan.best.region_id}, start {plan.best.start:%Y-%m-%d %H:%M} UTC)? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("not submitted")
            return 1
    stored, outcome = submit(job, now=now, settings=settings, store=store, launcher=launcher, plan=plan,
                             launcher_factory=_factory(settings), max_attempts=a.max_attempts)
    job_now = store.get(stored.id)
    if a.json:
        print(json.dumps(_job_doc(store, job_now), indent=2))
    elif outcome is None:
        hours = (stored.start_at - now).total_seconds() / 3600
        print(f"job {stored.id} scheduled for {stored.start_at:%Y-%m-%d %H:%M} UTC (in {hours:.1f} h); "
              "`carbonsched agent` launches it then")
    else:
        print(f"job {stored.id}: {outcome.state}" + (f" ({outcome.resource_id})" if outcome.resource_id else "")
              + (f": {outcome.message}" if outcome.message else ""))
    return 0 if job_now.state in ("scheduled", "running", "succeeded") else 1


def _submit_remote(a, remote, job, spec: dict, launcher: str) -> int:
    """submit through the server: preview its plan, confirm, submit (the server plans again, as of its clock)."""
    if getattr(a, "intensity_file", None):
        raise UserInputError("--intensity-file is local data: the server plans with its own intensity source; "
                             "unset CARBONSCHED_SERVER to plan with a file")
    if not a.yes:
        if not sys.stdin.isatty():
            raise UserInputError("submit asks for confirmation; pass --yes to submit without a terminal")
        best = remote.plan(spec, now=a.now, top=1)["placements"][0]
        answer = input(f"Submit {job.name!r} via {remote.base} ({best['region_id']}, start {best['start']})? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("not submitted")
            return 1
    doc = remote.submit(spec, launcher=launcher, max_attempts=a.max_attempts, now=a.now)
    if a.json:
        print(json.dumps(doc, indent=2))
    elif doc["state"] == "scheduled":
        print(f"job {doc['id']} scheduled for {doc['start_at']} on {remote.base}; its agents launch it then")
    else:
        print(f"job {doc['id']}: {doc['state']}" + (f" ({doc['resource_id']})" if doc.get("resource_id") else ""))
    return 0 if doc["state"] in ("scheduled", "running", "succeeded") else 1


def _job_doc(store, job) -> dict:
    from carbonsched.run.views import job_to_dict

    return job_to_dict(store, job)


def cmd_status(a: argparse.Namespace) -> int:
    from carbonsched.run.submit import refresh_status

    remote = _remote()
    if remote is not None:
        docs = [remote.job(a.job_id)] if a.job_id else remote.jobs()
    else:
        settings, store = _store(a, create=False)
        if store is None:  # no store yet, and no job id asked for: an empty listing
            return cmd_list(a)
        jobs = [store.get(a.job_id)] if a.job_id else store.jobs()
        factory = _factory(settings)
        jobs = [refresh_status(store, j, factory, _now()) if j.state == "running" else j for j in jobs]
        from carbonsched.run.views import jobs_to_dict

        docs = jobs_to_dict(store, jobs)["jobs"] if jobs else []
    if a.json:
        print(json.dumps(docs[0] if a.job_id else {"schema_version": 1, "jobs": docs}, indent=2))
        return 0
    if not a.job_id:
        return _print_list(docs)
    _print_status(docs[0], None if remote is not None else _measured_kg(settings, store, jobs[0]))
    return 0


def _measured_kg(settings, store, job) -> str | None:
    """A measured job's kgCO2e, as the ledger costs it (its metered energy x the grid in its hours)."""
    if job.state not in ("running", "paused", "succeeded", "failed", "cancelled"):
        return None
    from carbonsched.kubernetes import all_regions
    from carbonsched.measure.totals import job_ledger_row
    from carbonsched.providers.grid import build_forecast_source

    row, warning = job_ledger_row(store, job, source=build_forecast_source(settings), baseline_region=settings.default_region,
                                  regions=all_regions(settings))
    if row["measured_kg_co2e"] is None:
        return f"not costed ({warning})" if warning else None
    return f"{row['measured_kg_co2e']:.3g} kgCO2e"


def _print_status(d: dict, measured_kg: str | None = None) -> None:
    print(f"job {d['id']} ({d['name']}): {d['state']}, launcher {d['launcher']}")
    print(f"  planned start {d['start_at']}" + (f"; resource {d['resource_id']}" if d["resource_id"] else "")
          + (f"; exit code {d['exit_code']}" if d["exit_code"] is not None else ""))
    m = d.get("measured")
    if m:
        where = "this machine" if m["ran_on"] == "this machine" else (m["region_id"] or "?")
        gpus = f"{m['gpu_count']}x {m['gpu']}" if m["gpu_count"] else "no GPU"
        print(f"  measured: {m['it_energy_kwh']:.4g} kWh IT energy over {m['wall_seconds']:.1f} s"
              + (f" in {m['segments']} segments" if m["segments"] > 1 else "")
              + f" on {where} ({gpus}; GPU {m['methods']['gpu']}, CPU {m['methods']['cpu']}, memory {m['methods']['memory']})"
              + (f"; {measured_kg}" if measured_kg else ""))
    elif d["state"] in ("succeeded", "failed"):
        print("  measured: no record (see the events)")
    if d["planned"]:
        p = d["planned"]
        print(f"  plan: {p['region_id']} {p['instance_type']} {p['gpu_count']}x{p['gpu']}, {p['kg_co2e']:.3g} kgCO2e, "
              f"${p['cost_usd']:.2f}" + (f", {p['saving_vs_baseline_pct']:.0f}% below baseline" if p.get("saving_vs_baseline_pct") is not None else ""))
    for x in d["attempts"]:
        print(f"  attempt {x['attempt']} ({x['region_id']} {x['instance_type']}): {x['outcome']}"
              + (f" [{x['error_code']}]" if x["error_code"] else "") + (f" {x['message']}" if x["message"] else ""))
    for e in d["events"]:
        why = e.get("reason") or e.get("message")
        print(f"  {e['at']} {e['kind']}" + (f": {why}" if why else ""))


def _print_list(docs: list[dict]) -> int:
    from carbonsched.cli.render import table

    if not docs:
        print("no jobs; submit one with `carbonsched submit JOB.toml`")
        return 0
    rows = [[d["id"], d["name"], d["state"], d["start_at"][:16].replace("T", " "), d["region_id"] or "-", d["launcher"]]
            for d in docs]
    print(table(["id", "name", "state", "start (UTC)", "region", "launcher"], rows))
    return 0


def cmd_list(a: argparse.Namespace) -> int:
    states = tuple(getattr(a, "state", None) or ()) or None
    remote = _remote()
    if remote is not None:
        docs = remote.jobs(states)
    else:
        _, store = _store(a, create=False)
        if not a.json:  # the table needs no specs, plans, attempts or events
            return _print_list(store.summaries(states) if store is not None else [])
        jobs = store.jobs(states) if store is not None else []
        from carbonsched.run.views import jobs_to_dict

        docs = jobs_to_dict(store, jobs)["jobs"] if jobs else []
    if a.json:
        print(json.dumps({"schema_version": 1, "jobs": docs}, indent=2))
        return 0
    return _print_list(docs)


def cmd_cancel(a: argparse.Namespace) -> int:
    from carbonsched.run.submit import cancel

    remote = _remote()
    if remote is not None:
        doc = remote.cancel(a.job_id)
        print(f"job {doc['id']}: {doc['state']}")
        return 0
    settings, store = _store(a, create=False)
    job = cancel(store, a.job_id, _factory(settings), _now())
    print(f"job {job.id}: {job.state}")
    return 0


def cmd_logs(a: argparse.Namespace) -> int:
    remote = _remote()
    if remote is not None:
        sys.stdout.write(remote.logs(a.job_id))
        return 0
    settings, store = _store(a, create=False)
    job = store.get(a.job_id)
    if not job.resource_id:
        raise UserInputError(f"job {job.id} has not started ({job.state}); no logs yet")
    from carbonsched.run.submit import launcher_for_resource

    text = _factory(settings)(launcher_for_resource(job.resource_id)).logs(job.resource_id)
    if text is None:
        raise UserInputError(f"logs of job {job.id} are not available from the {job.launcher} launcher")
    sys.stdout.write(text)
    return 0


def cmd_agent(a: argparse.Namespace) -> int:
    import math

    from carbonsched.run.agent import run_agent

    if not math.isfinite(a.interval) or a.interval <= 0:
        raise UserInputError("--interval must be a number of seconds > 0")
    if a.stale_after is not None and (not math.isfinite(a.stale_after) or a.stale_after < 0):
        raise UserInputError("--stale-after must be a number of seconds >= 0")
    settings, store = _store(a)
    if a.stale_after is None:
        a.stale_after = settings.lease_seconds
    from carbonsched.run.replan import make_replanner

    pf = policy_option(a, settings)
    troubles: list = []
    launched = run_agent(store, _factory(settings), _now, once=a.once, interval_s=a.interval,
                         stale_after_s=a.stale_after, log=lambda line: print(line, flush=True), troubles=troubles,
                         replan=make_replanner(settings, pf), policy=pf)
    if a.once:
        print(f"{launched} job(s) launched" + (f", {len(troubles)} failed or erred (see above)" if troubles else ""))
    return 1 if troubles else 0  # --once in cron or CI: a job that could not launch must not pass silently


SUBMIT_EPILOG = """\
what each launcher runs (job-file keys; python -m pydoc carbonsched.spec.payload):
  key                 local   aws/gcp   skypilot
  command/run, env    yes     yes       yes
  setup               yes     yes       yes (once per cluster)
  image               yes     yes       yes
  workdir             yes     no        yes
  secrets             yes     no        yes (values never in the stored task)
  file_mounts         no      no        yes
  num_nodes > 1       no      no        yes
  checkpoint_dir      env     env       env
  interruptible       local: SIGTERM at each segment's end, restart at the next; aws/gcp:
                      stop/start the on-demand instance; spot and skypilot: start to end
  spot                aws/gcp: one-time spot instances; skypilot: managed jobs (recovered)
Every launched run is measured (carbonsched track) and its record comes back to the store.
Submit refuses, before storing anything, what the launcher cannot do, missing local paths,
missing cloud credentials, and (when it launches at once) secrets not set here.

examples:
  carbonsched submit job.toml --yes --launcher local
  carbonsched submit job.toml --launcher aws --policy org-policy.toml
"""


def register(sub, common) -> None:
    s = sub.add_parser("submit", parents=[common], help="plan, then launch now or defer to the chosen start",
                       description="Plan the job, store it, and launch it in the best placement (failing over down "
                                   "the ranking on capacity errors), or schedule it for the agent when the best "
                                   "start is later. --dry-run is exactly `plan`.",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=SUBMIT_EPILOG)
    add_plan_args(s)
    s.add_argument("--dry-run", action="store_true", help="only plan (same as `carbonsched plan`)")
    s.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    s.add_argument("--launcher", default="auto", help="auto (each placement's own cloud, so failover can cross "
                                                      "providers), local, aws, gcp, skypilot (see below)")
    s.add_argument("--max-attempts", type=int, default=3, help="placements to try on capacity errors (default 3)")
    s.set_defaults(func=cmd_submit)
    st = sub.add_parser("status", parents=[common], help="the job store: one job's story, or all jobs")
    st.add_argument("job_id", nargs="?", metavar="JOB")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)
    ls = sub.add_parser("list", parents=[common], help="list stored jobs")
    ls.add_argument("--state", action="append", choices=["scheduled", "launching", "running", "paused", "succeeded", "failed", "cancelled"])
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)
    c = sub.add_parser("cancel", parents=[common], help="cancel a job (terminates its instance or process)")
    c.add_argument("job_id", metavar="JOB")
    c.set_defaults(func=cmd_cancel)
    lg = sub.add_parser("logs", parents=[common], help="a job's output, where the launcher keeps it")
    lg.add_argument("job_id", metavar="JOB")
    lg.set_defaults(func=cmd_logs)
    ag = sub.add_parser("agent", parents=[common], help="launch scheduled jobs when they come due",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        description="Launch due jobs, resume launches a crash interrupted, and record finished runs.",
                        epilog="Each pass: a due job planned on a forecast older than 6 h, or reached more than 10 min "
                               "after its start, is\nplanned again first (it waits for a greener window if one is now "
                               "open before its deadline);\na launch that errs 5 times fails the job with the error; an "
                               "interruptible job is stopped\n(SIGTERM) at the end of each planned segment and resumed "
                               "at the next with CARBONSCHED_RESUME=1;\nevery run's measurement comes back into the "
                               "store (`carbonsched status JOB`).\n\nexit status with --once: 0, or 1 when a job "
                               "failed or erred in the pass.\nAs a service: docs/systemd/carbonsched-agent.service.")
    ag.add_argument("--once", action="store_true", help="one pass, then exit")
    ag.add_argument("--interval", type=float, default=60.0, help="seconds between passes (default 60)")
    ag.add_argument("--stale-after", type=float, default=None, metavar="SECONDS",
                    help="the lease this agent takes on a job it launches, renewed while the launch runs; another "
                         "agent resumes the launch only after it expired (default: lease_seconds setting, 120)")
    ag.add_argument("--policy", dest="policy", metavar="POLICY.toml",
                    help="organisation policy to check placements against before launching (default: the `policy` "
                         "setting or CARBONSCHED_POLICY)")
    ag.set_defaults(func=cmd_agent)
