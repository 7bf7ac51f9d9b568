"""The EC2 launcher against moto's server on loopback: launch, tags, user-data, failover through a
proxy that answers InsufficientInstanceCapacity, and kill -9 crash recovery (moto ignores ClientToken,
so exactly-once rests on the tag lookup)."""
from __future__ import annotations

import base64
import signal
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import threading

import pytest

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

from carbonsched.spec.job import job_from_dict  # noqa: E402
from carbonsched.providers.cloud.aws_launch import Ec2Launcher, user_data  # noqa: E402
from carbonsched.settings import Settings  # noqa: E402
from carbonsched.run.store import Store  # noqa: E402
from carbonsched.run.submit import cancel, refresh_status, submit  # noqa: E402

NOW = datetime(2026, 11, 27, 10, 30, tzinfo=timezone.utc)
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}


@pytest.fixture
def moto(monkeypatch):
    for k, v in CREDS.items():
        monkeypatch.setenv(k, v)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"))  # moto state is per process
    yield url
    server.stop()


class CapacityProxy:
    """Forwards to moto, but answers RunInstances in ``regions`` with EC2's documented
    InsufficientInstanceCapacity error (HTTP 500, XML body); ``delay_s`` makes every RunInstances
    that slow (a slow EC2 API)."""

    def __init__(self, target: str, regions: set[str], delay_s: float = 0.0):
        self.target, self.regions, self.refused, self.delay_s, self.run_calls = target, regions, [], delay_s, 0
        proxy = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                auth = self.headers.get("Authorization", "")
                region = auth.split("Credential=")[1].split("/")[2] if "Credential=" in auth else ""
                if b"Action=RunInstances" in body:
                    proxy.run_calls += 1
                    time.sleep(proxy.delay_s)
                if b"Action=RunInstances" in body and region in proxy.regions:
                    proxy.refused.append(region)
                    xml = (b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error>"
                           b"<Code>InsufficientInstanceCapacity</Code><Message>We currently do not have sufficient "
                           b"capacity in the Availability Zone you requested.</Message></Error></Errors>"
                           b"<RequestID>00000000-0000-0000-0000-000000000000</RequestID></Response>")
                    self.send_response(500)
                    self.send_header("Content-Type", "text/xml")
                    self.send_header("Content-Length", str(len(xml)))
                    self.end_headers()
                    self.wfile.write(xml)
                    return
                req = urllib.request.Request(proxy.target + self.path, data=body, method="POST",
                                             headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
                try:
                    with urllib.request.urlopen(req) as resp:
                        status, headers, data = resp.status, resp.headers, resp.read()
                except urllib.error.HTTPError as err:
                    status, headers, data = err.code, err.headers, err.read()
                self.send_response(status)
                for k, v in headers.items():
                    if k.lower() not in ("transfer-encoding", "content-length", "connection", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self):
        self.httpd.shutdown()


def factory_for(url):
    def factory(service, region):
        return boto3.client(service, region_name=region, endpoint_url=url)
    return factory


def any_ami(url, region="us-east-1"):
    return boto3.client("ec2", region_name=region, endpoint_url=url).describe_images(Owners=["amazon"])["Images"][0]["ImageId"]


def instances(url, region):
    ec2 = boto3.client("ec2", region_name=region, endpoint_url=url)
    return [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
            if i["State"]["Name"] != "terminated"]


JOB = {"name": "bert", "command": "torchrun --nproc-per-node 8 train.py --note \"it's; rm -rf /\"",
       "gpu": "H100", "gpus": 8, "hours": 2, "constraints": {"gpu_types": ["H100"], "providers": ["aws"]}}


def test_user_data_quotes_every_argument_and_runs_images_with_env():
    from carbonsched.providers.cloud.launcher import shell_lines
    from carbonsched.run.store import Job

    def stored(spec):
        return Job(id="j1", name="x", state="launching", created_at=NOW, updated_at=NOW, start_at=NOW, launcher="aws",
                   spec=spec, plan={}, claimed_by=None, resource_id=None, region_id=None, instance_type=None,
                   exit_code=None, max_attempts=3)

    script = user_data(shell_lines(stored({"command": "python train.py --name 'a b; rm -rf / $(whoami)'"})), "j1")
    assert "'a b; rm -rf / $(whoami)'" in script and "shutdown -h now" in script
    assert script.startswith("#!/bin/bash") and "carbonsched-exit-code" in script
    lines = shell_lines(stored({"command": "python train.py", "image": "nvcr.io/nvidia/pytorch:24.10-py3",
                                "env": {"HF_HOME": "/data/my hf"}}))
    assert "export HF_HOME='/data/my hf'" in lines and "export CARBONSCHED_JOB_ID=j1" in lines
    assert any(line.strip().endswith("-- docker run --rm --gpus all -e CARBONSCHED_JOB_ID -e HF_HOME -- "
                                     "nvcr.io/nvidia/pytorch:24.10-py3 python train.py") and "carbonsched track" in line
               for line in lines), lines


def test_boot_script_lines_run_the_job_under_the_tracker_and_print_its_record(tmp_path):
    """The lines EC2/GCE boot scripts run, executed by bash: with the real `carbonsched` on PATH
    the job runs under the tracker, its exit status passes through, and the record comes out as a
    marked console line (GPUs modelled from the placement: no NVML here); without it, the job
    still runs and a line says why it was not measured."""
    import os
    import subprocess
    import sys

    from carbonsched.providers.cloud.launcher import shell_lines, unmeasured_reason
    from carbonsched.record import decode_marked

    job = type("J", (), {"id": "j1", "spec": {"command": f"{sys.executable} -c \"import os; print('id', os.environ['CARBONSCHED_JOB_ID']); raise SystemExit(4)\""}})()
    placement = {"region_id": "aws:eu-north-1", "instance_type": "g6e.xlarge", "gpu": "L40S", "gpu_count": 1}
    script = "\n".join(shell_lines(job, placement, record_path=str(tmp_path / "rec" / "m.json")) + ['echo "exit: $?"'])
    bindir = os.path.dirname(sys.executable)
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                       env={"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(tmp_path)})
    out = r.stdout + r.stderr
    assert "id j1" in out and "exit: 4" in out
    record = decode_marked(out)
    assert record["job_id"] == "j1" and record["exit_code"] == 4
    assert record["gpu"]["method"] == "model" and record["gpu"]["energy_kwh"] > 0  # 1x L40S, modelled
    assert (tmp_path / "rec" / "m.json").exists() and unmeasured_reason(out) is None
    bare = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    out = bare.stdout + bare.stderr
    assert decode_marked(out) is None and "carbonsched is not installed" in unmeasured_reason(out)


def test_launch_tags_user_data_and_cancel(moto, tmp_path):
    settings = Settings(home=tmp_path)
    store = Store.for_settings(settings)
    launcher = Ec2Launcher(client_factory=factory_for(moto), ami_id=any_ami(moto))
    j = job_from_dict(JOB)
    stored, outcome = submit(j, now=NOW, settings=settings, store=store, launcher="aws",
                             launcher_factory=lambda name: launcher)
    assert outcome.state == "running", outcome
    region = outcome.placement["region"]
    (inst,) = instances(moto, region)
    assert inst["InstanceType"] == outcome.placement["instance_type"] == "p5.48xlarge"
    tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
    assert tags["carbonsched:job-id"] == stored.id and tags["carbonsched:attempt"] == "0"
    ec2 = boto3.client("ec2", region_name=region, endpoint_url=moto)
    data = ec2.describe_instance_attribute(InstanceId=inst["InstanceId"], Attribute="userData")["UserData"]["Value"]
    script = base64.b64decode(data).decode()
    assert "torchrun --nproc-per-node 8 train.py --note 'it'\"'\"'s; rm -rf /'" in script
    assert outcome.resource_id == f"aws:{region}:{inst['InstanceId']}"
    # found again by tag (the reconciliation path), and cancel terminates
    assert launcher.find(store.get(stored.id), 0, "any") == outcome.resource_id
    assert cancel(store, stored.id, lambda name: launcher, NOW).state == "cancelled"
    assert instances(moto, region) == []
    job_now = refresh_status(store, store.get(stored.id), lambda name: launcher, NOW)
    assert job_now.state == "cancelled"


def test_failover_on_insufficient_capacity_lands_in_the_next_region(moto, tmp_path):
    settings = Settings(home=tmp_path)
    store = Store.for_settings(settings)
    from carbonsched.planning import plan as make_plan

    plan = make_plan(job_from_dict(JOB), now=NOW, settings=settings, top=10)
    first, second = plan.placements[0].region, plan.placements[1].region
    assert first != second
    proxy = CapacityProxy(moto, {first})
    try:
        launcher = Ec2Launcher(client_factory=factory_for(proxy.url), ami_id=any_ami(moto))
        stored, outcome = submit(job_from_dict(JOB), now=NOW, settings=settings, store=store, launcher="aws", plan=plan,
                                 launcher_factory=lambda name: launcher)
    finally:
        proxy.close()
    assert first in proxy.refused
    assert outcome.state == "running" and outcome.placement["region"] == second
    attempts = store.attempts(stored.id)
    assert [(a.outcome, a.error_code, a.region_id) for a in attempts] == [
        ("capacity", "InsufficientInstanceCapacity", f"aws:{first}"), ("launched", None, f"aws:{second}")]
    assert instances(moto, first) == [] and len(instances(moto, second)) == 1


def test_kill_9_after_run_instances_then_agent_restart_gives_exactly_one_instance(moto, cli, tmp_path):
    home = tmp_path / "home"
    jobfile = tmp_path / "job.toml"
    jobfile.write_text('name = "crash"\ncommand = "python train.py"\ngpu = "H100"\ngpus = 8\nhours = 2\n'
                       '[constraints]\ngpu_types = ["H100"]\nproviders = ["aws"]\n')
    env = {**CREDS, "AWS_ENDPOINT_URL": moto, "CARBONSCHED_HOME": str(home), "CARBONSCHED_AWS_AMI_ID": any_ami(moto)}
    r = cli("submit", jobfile, "--launcher", "aws", "--yes",
            extra_env={**env, "CARBONSCHED_FAULT": "after-launch", "CARBONSCHED_LEASE_SECONDS": "1"})
    assert r.returncode == -signal.SIGKILL, r.stderr
    store = Store(home / "jobs.sqlite")
    (job,) = store.jobs()
    region = job.plan["placements"][0]["region"]
    assert job.state == "launching" and len(instances(moto, region)) == 1  # launched, but the store never heard
    time.sleep(2.1)  # the dead submit's 1 s lease runs out
    r = cli("agent", "--once", "--stale-after", "0", extra_env=env)
    assert r.returncode == 0, r.stderr
    job = store.get(job.id)
    assert job.state == "running" and [a.outcome for a in store.attempts(job.id)] == ["reconciled"]
    (inst,) = instances(moto, region)  # still exactly one: moto ignores ClientToken, the tag lookup did it
    assert job.resource_id == f"aws:{region}:{inst['InstanceId']}"
    r = cli("agent", "--once", "--stale-after", "0", extra_env=env)
    assert len(instances(moto, region)) == 1


def test_two_agents_and_a_slow_ec2_api_launch_once(moto, tmp_path):
    """Issue 11's reproduction: RunInstances takes 4 s behind a proxy; agent B, whose --stale-after
    is 0.5 s, passes while agent A is still launching. With leases B leaves the job alone."""
    from carbonsched.run.agent import agent_pass

    settings = Settings(home=tmp_path)
    store_a, store_b = Store.for_settings(settings), Store.for_settings(settings)
    from carbonsched.planning import plan as make_plan

    plan = make_plan(job_from_dict(JOB), now=NOW, settings=settings, top=3)
    stored, _ = submit(job_from_dict(JOB), now=NOW, settings=settings, store=store_a, launcher="aws", plan=plan,
                       launch=False)
    region = plan.placements[0].region
    proxy = CapacityProxy(moto, set(), delay_s=4.0)
    try:
        launcher = Ec2Launcher(client_factory=factory_for(proxy.url), ami_id=any_ami(moto))
        clock = lambda: datetime.now(timezone.utc)  # noqa: E731
        due = NOW + timedelta(hours=1)  # the planned start has come
        results = {}
        a = threading.Thread(target=lambda: results.setdefault("a", agent_pass(
            store_a, lambda n: launcher, due, worker="A", stale_after_s=2.0, clock=lambda: max(due, clock()))))
        a.start()
        time.sleep(3.0)
        results["b"] = agent_pass(store_b, lambda n: launcher, due, worker="B", stale_after_s=0.5,
                                  clock=lambda: max(due, clock()))
        a.join()
    finally:
        proxy.close()
    assert [o.state for o in results["a"]] == ["running"] and results["b"] == []
    found = instances(moto, region)
    assert proxy.run_calls == 1 and len(found) == 1, (proxy.run_calls, [(i["ClientToken"], i.get("Tags")) for i in found])


def test_cancel_after_a_crash_mid_launch_terminates_the_instance(moto, cli, tmp_path):
    """kill -9 after RunInstances, before the store heard of it: cancel finds the instance by its
    tags and terminates it (before, the job read 'cancelled' and the instance ran on)."""
    home = tmp_path / "home"
    jobfile = tmp_path / "job.toml"
    jobfile.write_text('name = "orphan"\ncommand = "python train.py"\ngpu = "H100"\ngpus = 8\nhours = 2\n'
                       '[constraints]\ngpu_types = ["H100"]\nproviders = ["aws"]\n')
    env = {**CREDS, "AWS_ENDPOINT_URL": moto, "CARBONSCHED_HOME": str(home), "CARBONSCHED_AWS_AMI_ID": any_ami(moto)}
    r = cli("submit", jobfile, "--launcher", "aws", "--yes", extra_env={**env, "CARBONSCHED_FAULT": "after-launch"})
    assert r.returncode == -signal.SIGKILL, r.stderr
    store = Store(home / "jobs.sqlite")
    (job,) = store.jobs()
    region = job.plan["placements"][0]["region"]
    assert len(instances(moto, region)) == 1 and job.resource_id is None
    r = cli("cancel", job.id, extra_env=env)
    assert r.returncode == 0, r.stderr
    assert store.get(job.id).state == "cancelled"
    assert instances(moto, region) == []  # terminated


def test_interruptible_on_demand_run_stops_and_starts_its_instance_at_segments(moto, tmp_path):
    """An interruptible on-demand placement on EC2: the boot script re-runs at every boot; at the end
    of segment 0 the agent stops the instance, pauses the job, and at segment 1's start starts the
    same instance again (tagged with the segment). A spot placement is not stopped (one-time spot)."""
    from carbonsched.run.agent import agent_pass

    settings = Settings(home=tmp_path)
    store = Store.for_settings(settings)
    launcher = Ec2Launcher(client_factory=factory_for(moto), ami_id=any_ami(moto))
    t0 = NOW
    segs = [{"start": (t0 + timedelta(hours=3 * i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
             "end": (t0 + timedelta(hours=3 * i + 2)).strftime("%Y-%m-%dT%H:%M:%SZ"), "overhead_hours": 0.0}
            for i in range(3)]
    placement = {"rank": 1, "provider": "aws", "region": "us-east-1", "region_id": "aws:us-east-1", "zone": None,
                 "instance_type": "p5.48xlarge", "gpu": "H100", "gpu_count": 8, "market": "on-demand",
                 "start": segs[0]["start"], "interruptible": {"segments": segs}}
    stored = store.add_job(name="ckpt", spec={"command": "python train.py"}, plan={"placements": [placement]},
                           start_at=t0, launcher="aws", now=t0)
    factory = lambda name: launcher  # noqa: E731
    assert [o.state for o in agent_pass(store, factory, t0 + timedelta(minutes=1))] == ["running"]
    (inst,) = instances(moto, "us-east-1")
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto)
    script = base64.b64decode(ec2.describe_instance_attribute(InstanceId=inst["InstanceId"], Attribute="userData")
                              ["UserData"]["Value"]).decode()
    assert "/var/lib/cloud/scripts/per-boot/carbonsched-job.sh" in script and "CARBONSCHED_SEGMENT" in script

    agent_pass(store, factory, t0 + timedelta(hours=2, minutes=1))  # segment 0 is over
    job = store.get(stored.id)
    assert job.state == "paused" and job.start_at == t0 + timedelta(hours=3)
    assert ec2.describe_instances(InstanceIds=[inst["InstanceId"]])["Reservations"][0]["Instances"][0]["State"]["Name"] \
        == "stopped"
    assert any(e["kind"] == "unmeasured" for e in store.events(stored.id))  # moto's console has no record

    assert [o.state for o in agent_pass(store, factory, t0 + timedelta(hours=3, minutes=1))] == ["running"]
    (again,) = ec2.describe_instances(InstanceIds=[inst["InstanceId"]])["Reservations"][0]["Instances"]
    assert again["State"]["Name"] in ("pending", "running") and store.get(stored.id).resource_id.endswith(inst["InstanceId"])
    assert {t["Key"]: t["Value"] for t in again["Tags"]}["carbonsched:segment"] == "1"
    assert launcher.find(store.get(stored.id), 0, "t", segment=1) == store.get(stored.id).resource_id
    assert launcher.find(store.get(stored.id), 0, "t", segment=2) is None
    assert not launcher.can_stop({**placement, "market": "spot"})


def test_every_boot_script_numbers_its_segments_and_resumes_from_the_second(tmp_path):
    """The per-boot lines, run twice by bash as two boots would: segment 0 without RESUME, then 1 with it."""
    import subprocess

    from carbonsched.providers.cloud.launcher import shell_lines

    job = type("J", (), {"id": "j9", "spec": {"run": "echo seg=$CARBONSCHED_SEGMENT resume=${CARBONSCHED_RESUME:-no}"}})()
    script = "\n".join(shell_lines(job, record_path=str(tmp_path / "state" / "m.json"), segmented=True))
    runs = [subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30,
                           env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}).stdout for _ in range(2)]
    assert "seg=0 resume=no" in runs[0] and "seg=1 resume=1" in runs[1]
