"""The closed loop (issue 13): every launched run measured and disclosed where it really ran, the
agent re-planning late jobs and never launching early, interruptible runs executed in segments,
bounded retries. Real local launcher, real subprocesses, real planner, real stores."""
from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from carbonsched.errors import LaunchError, UserInputError
from carbonsched.planning import plan as make_plan
from carbonsched.providers.cloud.local import LocalLauncher
from carbonsched.record import merge_segments
from carbonsched.run.agent import agent_pass, run_agent
from carbonsched.run.replan import make_replanner, replan_reason
from carbonsched.run.store import Store
from carbonsched.run.submit import plan_document, submit
from carbonsched.spec.job import job_from_dict
from carbonsched.units import iso_utc

from conftest import poll_status

PY = sys.executable
NOW = datetime(2026, 11, 27, 10, 30, tzinfo=timezone.utc)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def test_local_job_from_submit_to_report_is_measured_and_names_this_machine(cli, tmp_path):
    """submit -> agent -> tracked run -> store -> status and report, through the real CLI."""
    jobfile = tmp_path / "job.toml"
    jobfile.write_text(f'name = "loop"\ncommand = "{PY} -c \\"sum(range(3_000_000))\\""\ngpu = "L40S"\ngpus = 1\n'
                       'hours = 1\n[constraints]\nproviders = ["aws"]\n')
    env = {"CARBONSCHED_HOME": str(tmp_path / "home"), "CARBONSCHED_INTENSITY_SOURCE": "profile"}
    r = cli("submit", jobfile, "--launcher", "local", "--yes", extra_env=env)
    assert r.returncode == 0, r.stderr
    job_id = json.loads(cli("list", "--json", extra_env=env).stdout)["jobs"][0]["id"]
    doc = poll_status(cli, job_id, env)
    assert doc["state"] == "succeeded" and doc["region_id"] is None and doc["instance_type"] == "this machine"
    m = doc["measured"]
    assert m["ran_on"] == "this machine" and m["gpu_count"] == 0 and m["it_energy_kwh"] > 0 and m["exit_code"] == 0
    assert any(e["kind"] == "ran-elsewhere" for e in doc["events"]) and any(e["kind"] == "measured" for e in doc["events"])
    text = cli("status", job_id, extra_env=env).stdout
    assert "measured:" in text and "this machine" in text and "kgCO2e" in text, text

    report = cli("report", job_id, extra_env=env)
    assert report.returncode == 0, report.stderr
    assert "Training ran on CPU only (this machine" in report.stdout and "Amazon Web Services" not in report.stdout
    assert "the intensity of aws:us-east-1, the default region, is assumed" in report.stdout
    d = json.loads(cli("report", job_id, "--format", "json", extra_env=env).stdout)
    assert d["ran_on"] == "this machine" and d["hardware"]["gpu_count"] == 0
    assert d["emissions"]["kg_co2e_embodied"] == 0  # no GPU was there: none embodied
    assert d["energy"]["pue"] == 1.0 and "no data-centre overhead (PUE) applied on this machine" in report.stdout
    assert d["forecast"] is None and any("is not compared with this run" in w for w in d["warnings"])
    assert "embodied in the GPUs" not in report.stdout and "GPU-hours" not in report.stdout
    assert "embodied emissions" not in d["modelled"]
    assert all(f"{k} energy" in d["modelled"] for k in ("cpu", "memory") if d["energy"]["methods"][k] == "model")
    # the region of this machine, once configured, is the one the disclosure uses
    d2 = json.loads(cli("report", job_id, "--format", "json", "--region", "aws:eu-north-1", extra_env=env).stdout)
    assert d2["region_id"] == "aws:eu-north-1"


def test_local_region_setting_is_where_local_runs_happen(env, tmp_path):
    settings, store, _ = env
    launcher = LocalLauncher(settings.home, region_id="gcp:europe-north1")
    stored, out = submit(job_from_dict({"name": "x", "command": f"{PY} -c pass", "gpu": "L40S", "gpus": 1, "hours": 1}),
                         now=NOW, settings=settings, store=store, launcher="local", launcher_factory=lambda n: launcher)
    assert out.state == "running" and store.get(stored.id).region_id == "gcp:europe-north1"
    _finish(store, stored.id, launcher)
    record = store.load_measurement(stored.id)
    assert record["region_id"] == "gcp:europe-north1" and record["ran_on"]["where"] == "this machine"
    assert record["job_id"] == stored.id  # CARBONSCHED_JOB_ID reached the tracker


def _finish(store, job_id, launcher, timeout=60, **kw):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        agent_pass(store, lambda name: launcher, utcnow(), **kw)
        job = store.get(job_id)
        if job.state in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {store.get(job_id).state}: {store.events(job_id)}")


CHECKPOINTED = r'''
import json, os, signal, sys, time
ckpt = sys.argv[1]
state = json.load(open(ckpt)) if os.environ.get("CARBONSCHED_RESUME") == "1" else {"done": 0, "runs": []}
state["runs"].append({"segment": os.environ.get("CARBONSCHED_SEGMENT", "0"), "resume": os.environ.get("CARBONSCHED_RESUME")})
def save(*_):
    json.dump(state, open(ckpt, "w"))
    sys.exit(0)
signal.signal(signal.SIGTERM, save)
while state["done"] < 16:
    time.sleep(0.3)
    state["done"] += 1
save()
'''


def _three_segments(store, tmp_path):
    """A stored job of CHECKPOINTED planned in three 2-second segments 1 s apart, the first starting
    in a second: (the job, the segments, its checkpoint file)."""
    script, ckpt = tmp_path / "train.py", tmp_path / "ckpt.json"
    script.write_text(CHECKPOINTED)
    t0 = utcnow() + timedelta(seconds=1)
    segs = [{"start": iso_utc(t0 + timedelta(seconds=3 * i)), "end": iso_utc(t0 + timedelta(seconds=3 * i + 2)),
             "overhead_hours": 0.0} for i in range(3)]
    placement = {"rank": 1, "provider": "aws", "region_id": "aws:eu-north-1", "instance_type": "g6e.xlarge",
                 "gpu": "L40S", "gpu_count": 1, "market": "on-demand", "start": segs[0]["start"],
                 "interruptible": {"segments": segs}}
    stored = store.add_job(name="ckpt", spec={"command": f"{PY} {script} {ckpt}"}, plan={"placements": [placement]},
                           start_at=t0, launcher="local", now=utcnow())
    return stored, segs, ckpt


def test_interruptible_job_runs_in_three_measured_segments_resumed_twice(env, tmp_path):
    """A plan with three 2-second segments: the agent stops the run (SIGTERM) at the end of the
    first two and resumes it at the next start with CARBONSCHED_RESUME=1; each segment is measured
    and the stored record sums them."""
    settings, store, launcher = env
    stored, segs, ckpt = _three_segments(store, tmp_path)
    done = _finish(store, stored.id, launcher)
    assert done.state == "succeeded" and done.exit_code == 0
    state = json.loads(ckpt.read_text())
    assert state["done"] == 16 and [r["segment"] for r in state["runs"]] == ["0", "1", "2"]
    assert [r["resume"] for r in state["runs"]] == [None, "1", "1"]
    kinds = [e["kind"] for e in store.events(stored.id)]
    assert kinds.count("paused") == 2 and kinds.count("resuming") == 2
    record = store.load_measurement(stored.id)
    assert len(record["segments"]) == 3 and all(s["it_energy_kwh"] > 0 for s in record["segments"])
    assert record["wall_seconds"] == pytest.approx(sum(s["wall_seconds"] for s in record["segments"]))
    assert record["it_energy_kwh"] == pytest.approx(sum(s["it_energy_kwh"] for s in record["segments"]))
    # the resumes started no earlier than their segments' starts
    resumed = [e for e in store.events(stored.id) if e["kind"] == "resuming"]
    assert all(e["at"] >= segs[e["segment"]]["start"] for e in resumed)


def test_two_agents_ending_one_segment_record_it_once(env, tmp_path):
    """Two agents that both saw the run going at the end of segment 2 (agents sharing one store)
    both pause it: only the one whose compare-and-set wins records the segment, so the stored
    record sums each segment once, with one ``measured`` event per segment."""
    from carbonsched.run.measured import pause, run_placement

    settings, store, launcher = env
    stored, segs, ckpt = _three_segments(store, tmp_path)
    deadline = time.monotonic() + 30
    while not (store.get(stored.id).state == "running" and
               [e["kind"] for e in store.events(stored.id)].count("resuming") == 1):  # segment 2 runs
        assert time.monotonic() < deadline, store.events(stored.id)
        agent_pass(store, lambda name: launcher, utcnow())
        time.sleep(0.1)
    seen = store.get(stored.id)  # what both agents read: running, in segment 2
    while utcnow() < datetime.fromisoformat(segs[1]["end"].replace("Z", "+00:00")):
        time.sleep(0.1)
    now = utcnow()
    first = pause(store, seen, launcher, run_placement(store, seen), 1, now)
    second = pause(store, seen, launcher, run_placement(store, seen), 1, now)
    assert first.state == second.state == "paused"
    record = store.load_measurement(stored.id)
    assert len(record["segments"]) == 2 and len({s["started_at"] for s in record["segments"]}) == 2
    assert record["it_energy_kwh"] == pytest.approx(sum(s["it_energy_kwh"] for s in record["segments"]))
    kinds = [e["kind"] for e in store.events(stored.id)]
    assert kinds.count("paused") == 2 and kinds.count("measured") == 2, kinds
    done = _finish(store, stored.id, launcher)  # and the run still ends with its three segments summed once
    assert done.state == "succeeded"
    record = store.load_measurement(stored.id)
    assert len(record["segments"]) == 3
    assert record["wall_seconds"] == pytest.approx(sum(s["wall_seconds"] for s in record["segments"]))


def test_merging_a_segment_already_in_the_sum_adds_nothing():
    def rec(start, end, kwh):
        return {"schema": "carbonsched.measurement", "schema_version": 1, "exit_code": 0, "started_at": start,
                "ended_at": end, "wall_seconds": 60.0, "gpu": {"method": "model", "energy_kwh": kwh, "devices": []},
                "cpu": {"method": "model", "energy_kwh": 0.0}, "memory": {"method": "model", "energy_kwh": 0.0},
                "it_energy_kwh": kwh, "hourly": [{"hour": "2026-01-01T00:00:00Z", "it_energy_kwh": kwh}], "samples": 1}
    a = rec("2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z", 0.1)
    b = rec("2026-01-01T00:05:00Z", "2026-01-01T00:06:00Z", 0.2)
    once = merge_segments([a, b])
    assert merge_segments([once, b]) == once and merge_segments([once, a]) == once
    assert merge_segments([a, a]) == a
    assert merge_segments([once, rec("2026-01-01T00:09:00Z", "2026-01-01T00:10:00Z", 0.3)])["it_energy_kwh"] \
        == pytest.approx(0.6)


def test_merge_segments_sums_energy_hours_and_devices():
    def rec(start, end, wall, gpu_kwh, hour, power):
        dev = {"index": 0, "name": "NVIDIA L40S", "method": "nvml-energy", "energy_kwh": gpu_kwh, "mean_power_w": power,
               "samples": 3, "missed_samples": 0}
        return {"schema": "carbonsched.measurement", "schema_version": 1, "exit_code": 0, "started_at": start,
                "ended_at": end, "wall_seconds": wall, "gpu": {"method": "nvml-energy", "energy_kwh": gpu_kwh, "devices": [dev]},
                "cpu": {"method": "model", "energy_kwh": 0.1, "domains": []}, "memory": {"method": "model", "energy_kwh": 0.01},
                "it_energy_kwh": gpu_kwh + 0.11, "hourly": [{"hour": hour, "it_energy_kwh": gpu_kwh + 0.11}], "samples": 3,
                "warnings": ["w"]}
    a = rec("2026-01-01T00:10:00Z", "2026-01-01T00:40:00Z", 1800, 0.2, "2026-01-01T00:00:00Z", 400)
    b = rec("2026-01-01T05:00:00Z", "2026-01-01T06:00:00Z", 3600, 0.5, "2026-01-01T05:00:00Z", 250)
    c = rec("2026-01-01T05:30:00Z", "2026-01-01T05:40:00Z", 600, 0.1, "2026-01-01T05:00:00Z", 100)
    m = merge_segments([merge_segments([a, b]), c])  # a stored sum plus the next segment
    assert m["it_energy_kwh"] == pytest.approx(0.8 + 0.33) and m["wall_seconds"] == 6000
    assert m["hourly"] == [{"hour": "2026-01-01T00:00:00Z", "it_energy_kwh": pytest.approx(0.31)},
                           {"hour": "2026-01-01T05:00:00Z", "it_energy_kwh": pytest.approx(0.82)}]
    dev = m["gpu"]["devices"][0]
    assert dev["energy_kwh"] == pytest.approx(0.8) and dev["samples"] == 9
    assert dev["mean_power_w"] == pytest.approx((400 * 1800 + 250 * 3600 + 100 * 600) / 6000)
    assert [s["wall_seconds"] for s in m["segments"]] == [1800, 3600, 600] and m["warnings"] == ["w"]


def test_submit_never_launches_before_the_earliest_start(env):
    settings, store, launcher = env
    early = utcnow() + timedelta(seconds=20)
    j = job_from_dict({"name": "soon", "command": f"{PY} -c pass", "gpu": "L40S", "gpus": 1, "hours": 1,
                       "window": {"earliest_start": iso_utc(early)}})
    stored, outcome = submit(j, now=utcnow(), settings=settings, store=store, launcher="local",
                             launcher_factory=lambda n: launcher)
    assert outcome is None and stored.state == "scheduled" and stored.start_at >= early.replace(microsecond=0)
    assert agent_pass(store, lambda n: launcher, utcnow()) == []  # not due yet
    assert store.get(stored.id).state == "scheduled"


def _late_job(settings, store, submitted):
    j = job_from_dict({"name": "late", "command": f"{PY} -c pass", "gpu": "A100", "gpus": 8, "hours": 4,
                       "window": {"max_delay": "24h"}, "constraints": {"providers": ["aws"]}})
    doc = plan_document(make_plan(j, now=submitted, settings=settings, top=10))
    start = datetime.fromisoformat(doc["placements"][0]["start"].replace("Z", "+00:00"))
    return j, store.add_job(name="late", spec=j.to_dict(), plan=doc, start_at=start, launcher="local", now=submitted)


def test_a_late_job_is_replanned_within_its_original_window(env):
    """The agent reaches a job 7 h after it was planned: it plans again with the same window (not
    a window that starts now) and either waits for the greener start the new plan found or
    launches now, recording why."""
    settings, store, launcher = env
    j, stored = _late_job(settings, store, NOW)
    later = stored.start_at + timedelta(hours=7)
    assert replan_reason(stored, later).startswith("late")
    out = agent_pass(store, lambda n: launcher, later, replan=make_replanner(settings))
    again = make_plan(replace(j, earliest_start=NOW), now=later, settings=settings, top=10).best
    ev = [e for e in store.events(stored.id) if e["kind"] == "replanned"]
    assert len(ev) == 1 and ev[0]["reason"].startswith("late") and ev[0]["new_start"] == iso_utc(again.start)
    assert ev[0]["new_kg_co2e"] == pytest.approx(again.kg_co2e)
    assert again.start <= NOW + timedelta(hours=24)  # the submitted window, not one that starts now
    job = store.get(stored.id)
    if again.start > later + timedelta(minutes=1):
        assert job.state == "scheduled" and job.start_at == again.start and out[0].state == "rescheduled"
        assert ev[0]["action"] == "moved to a greener window"
    else:
        assert job.state == "running" and ev[0]["action"] == "launching now"


def test_a_fresh_on_time_job_is_not_replanned(env):
    settings, store, launcher = env
    _, stored = _late_job(settings, store, NOW)
    on_time = stored.start_at + timedelta(minutes=2)
    if on_time - NOW > timedelta(hours=6):
        on_time = None  # the plan deferred it by more than the forecast's age limit: re-planning is right
    if on_time is not None:
        assert replan_reason(stored, on_time) is None


def test_unreachable_cloud_fails_the_job_after_bounded_errors_and_once_exits_nonzero(env, monkeypatch):
    """A real EC2 client against a closed loopback port: every launch errs as unreachable (retryable);
    after ``max_errors`` the job fails with the reason instead of being retried for ever."""
    pytest.importorskip("boto3")
    import boto3
    from botocore.config import Config

    from carbonsched.providers.cloud.aws_launch import Ec2Launcher
    from pgserver import free_port

    settings, store, _ = env
    for k, v in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}.items():
        monkeypatch.setenv(k, v)
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    ec2 = Ec2Launcher(client_factory=lambda service, region: boto3.client(
        service, region_name=region, endpoint_url=url, config=Config(retries={"max_attempts": 1}, connect_timeout=1)),
        ami_id="ami-12345678")
    stored = store.add_job(name="x", spec={"command": "true"}, now=NOW, start_at=NOW, launcher="aws",
                           plan={"placements": [{"rank": 1, "provider": "aws", "region_id": "aws:us-east-1", "region": "us-east-1",
                                                 "instance_type": "p4d.24xlarge", "gpu": "A100", "gpu_count": 8}]})
    troubles: list = []
    for i in range(6):
        run_agent(store, lambda n: ec2, lambda: NOW + timedelta(minutes=10 * i), once=True, stale_after_s=0,
                  log=lambda line: None, troubles=troubles, max_errors=3)
    job = store.get(stored.id)
    assert job.state == "failed" and troubles  # `agent --once` exits 1 on these
    errors = [e for e in store.events(stored.id) if e["kind"] == "agent-error"]
    assert len(errors) == 3
    assert any("gave up after 3 errors" in (e.get("reason") or "") for e in store.events(stored.id))


def test_submit_checks_cloud_credentials_before_storing(env, monkeypatch, tmp_path):
    pytest.importorskip("boto3")
    from carbonsched.providers.cloud import get_launcher

    settings, store, _ = env
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    j = job_from_dict({"name": "x", "command": "true", "gpu": "A100", "gpus": 8, "hours": 1})
    with pytest.raises(UserInputError, match="no AWS credentials found.*nothing was stored"):
        submit(j, now=NOW, settings=settings, store=store, launcher="aws",
               launcher_factory=lambda n: get_launcher(n, settings))
    assert store.jobs() == []
    with pytest.raises(LaunchError):
        get_launcher("aws", settings).check()


def test_a_stored_job_echo_plans_as_the_job_it_came_from():
    """The agent re-plans from the stored echo (``JobSpec.to_dict``): every key survives the trip."""
    from carbonsched.spec.job import job_from_echo, load_job

    from conftest import REPO

    rich = job_from_dict({
        "name": "x", "command": "python t.py", "gpu": "A100", "gpus": 8, "hours": "90m", "priority": 3,
        "window": {"earliest_start": "2026-01-01T00:00Z", "deadline": "2026-01-03T00:00Z"},
        "constraints": {"providers": ["aws"], "exclude_regions": ["aws:eu-*"], "spot": True, "max_usd_per_hour": 50},
        "policy": {"objective": "weighted", "weights": {"carbon": 1, "cost": 0.5}}, "power": {"utilisation_factor": 0.7},
        "throughput": {"H100": 2.0, "A100": 1.0}, "baseline": {"region": "gcp:us-central1"},
        "interruptible": {"max_segments": 3, "overhead": "15m"},
        "spot": {"preemption_rates": {"aws": 0.1}, "checkpoint_interval": "30m"},
        "data": {"size_gb": 100, "home_region": "aws:us-east-1"}, "env": {"HF_HOME": "/x"}})
    for j in (rich, load_job(REPO / "examples" / "job.toml")):
        assert job_from_echo(json.loads(json.dumps(j.to_dict()))).to_dict() == j.to_dict()


def test_track_job_models_the_gpus_the_job_was_placed_on(cli, tmp_path):
    """`track --job JOB` without NVML models the stored job's placement GPUs (it said "GPU energy
    is 0" before), and says so in the record; --gpus overrides."""
    home = tmp_path / "home"
    store = Store(home / "jobs.sqlite")
    j = store.add_job(name="x", spec={"command": "true"}, now=NOW, start_at=NOW, launcher="aws",
                      plan={"placements": [{"rank": 1, "region_id": "aws:eu-north-1", "gpu": "L40S", "gpu_count": 2}]})
    store.close()
    env = {"CARBONSCHED_HOME": str(home)}
    r = cli("track", "--job", j.id, "--gpu-method", "model", "--", PY, "-c", "import time; time.sleep(1.2)", extra_env=env)
    assert r.returncode == 0, r.stderr
    record = Store(home / "jobs.sqlite").load_measurement(j.id)
    assert record["gpu"]["method"] == "model" and record["gpu"]["energy_kwh"] > 0
    assert any("2x L40S" in w for w in record["warnings"])
    # 2 x L40S at the model's 0.84 x 350 W for the run's wall time
    assert record["gpu"]["energy_kwh"] == pytest.approx(2 * 0.84 * 350 * record["wall_seconds"] / 3.6e6, rel=0.05)


def test_the_agent_launches_only_what_the_policy_allows(env):
    """`agent --policy`: a job stored without the organisation's policy launches on the placements
    the policy allows (the others dropped, with an event), and fails naming the rule when none is left."""
    from carbonsched.spec.policy_file import load_policy

    from conftest import REPO

    settings, store, launcher = env
    pf = load_policy(REPO / "examples" / "policy.toml")  # residency: aws:eu-*, gcp:europe-*
    now = utcnow()
    mixed = job_from_dict({"name": "mixed", "command": f"{PY} -c pass", "gpu": "L40S", "gpus": 1, "hours": 1})
    doc = plan_document(make_plan(mixed, now=now, settings=settings, top=20))
    regions = [p["region_id"] for p in doc["placements"]]
    assert any(r.startswith(("aws:eu-", "gcp:europe-")) for r in regions)
    assert not all(r.startswith(("aws:eu-", "gcp:europe-")) for r in regions)
    a = store.add_job(name="mixed", spec=mixed.to_dict(), plan=doc, start_at=now, launcher="local", now=now)
    us = job_from_dict({"name": "us", "command": f"{PY} -c pass", "gpu": "L40S", "gpus": 1, "hours": 1,
                        "constraints": {"regions": ["aws:us-*"]}})
    b = store.add_job(name="us", spec=us.to_dict(), plan=plan_document(make_plan(us, now=now, settings=settings)),
                      start_at=now, launcher="local", now=now)
    out = {o.job_id: o for o in agent_pass(store, lambda n: launcher, now, policy=pf)}
    assert out[a.id].state == "running" and out[a.id].placement["region_id"].startswith(("aws:eu-", "gcp:europe-"))
    kept = store.get(a.id).plan["placements"]
    assert kept and all(p["region_id"].startswith(("aws:eu-", "gcp:europe-")) for p in kept)
    ev = [e for e in store.events(a.id) if e["kind"] == "replanned"]
    assert ev and ev[0]["dropped"] == len(regions) - len(kept) and "residency" in ev[0]["rules"][0]
    assert out[b.id].state == "failed" and "every planned placement breaks it" in out[b.id].message
    assert "residency" in out[b.id].message and store.get(b.id).state == "failed"


def test_a_jobs_measurement_is_replaced_only_when_asked(env):
    """On both stores: a second measurement of a job is refused, naming the one there and how to
    replace it, and nothing of it is written (no record, no ``measured`` event)."""
    from carbonsched.run.store import MeasurementExistsError

    settings, store, _ = env
    job = store.add_job(name="x", spec={}, plan={}, start_at=NOW, launcher="local", now=NOW)
    first = {"it_energy_kwh": 1.5, "started_at": "2026-11-27T10:30:00Z", "ran_on": {"where": "cloud",
                                                                                  "region_id": "aws:eu-north-1"}}
    store.save_measurement(job.id, first)
    with pytest.raises(MeasurementExistsError, match=r"already has a measurement \(recorded 2026-11-27T10:30:00Z, "
                                                     r"1\.500000 kWh, ran on cloud, aws:eu-north-1\).*--replace"):
        store.save_measurement(job.id, {"it_energy_kwh": 9.0, "started_at": "2026-11-28T10:30:00Z"})
    with pytest.raises(MeasurementExistsError):
        store.check_measurement_absent(job.id)
    assert store.load_measurement(job.id) == first
    assert [e["kind"] for e in store.events(job.id)].count("measured") == 1
    store.save_measurement(job.id, {"it_energy_kwh": 9.0}, replace=True)
    assert store.load_measurement(job.id) == {"it_energy_kwh": 9.0}
    store.check_measurement_absent("another")  # none there: no error
