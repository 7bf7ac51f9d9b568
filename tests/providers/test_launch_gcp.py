"""The GCE launcher with the real google-cloud-compute client (REST) against a loopback server that
speaks the Compute API: inserts recorded, zone operations waited on, ZONE_RESOURCE_POOL_EXHAUSTED
injected for failover, label lookup for reconciliation."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

pytest.importorskip("google.cloud.compute_v1")

from google.auth.credentials import AnonymousCredentials  # noqa: E402
from google.cloud import compute_v1  # noqa: E402

from carbonsched.spec.job import job_from_dict  # noqa: E402
from carbonsched.providers.cloud.gcp_launch import GceLauncher, request_id  # noqa: E402
from carbonsched.settings import Settings  # noqa: E402
from carbonsched.run.store import Store  # noqa: E402
from carbonsched.run.submit import cancel, submit  # noqa: E402

from grid_server import GridServer  # noqa: E402

NOW = datetime(2026, 11, 27, 10, 30, tzinfo=timezone.utc)
P = "proj-1"
JOB = {"name": "vit", "command": "python train.py --lr 3e-4", "gpu": "A100", "gpus": 8, "hours": 2,
       "constraints": {"gpu_types": ["A100"], "providers": ["gcp"]}}


class Compute:
    """Minimal Compute REST: instances insert/list/get/delete and zone operations."""

    def __init__(self, exhausted_zones=()):
        self.exhausted = set(exhausted_zones)
        self.instances: dict[str, dict] = {}
        self.inserts: list[dict] = []
        self.ops: dict[str, dict] = {}
        self.calls: list[tuple[str, str]] = []

    def route(self, rec):
        parts = rec.path.split("/")  # /compute/v1/projects/P/zones/Z/...
        zone = parts[6]
        if rec.method == "POST" and parts[-1] == "instances":
            body = json.loads(rec.body)
            self.inserts.append({"zone": zone, "body": body, "requestId": rec.query.get("requestId")})
            op = {"kind": "compute#operation", "id": str(len(self.ops) + 1), "name": f"operation-{len(self.ops) + 1}",
                  "zone": f"https://compute.googleapis.com/compute/v1/projects/{P}/zones/{zone}",
                  "operationType": "insert", "status": "RUNNING", "progress": 0,
                  "targetLink": f"https://compute.googleapis.com/compute/v1/projects/{P}/zones/{zone}/instances/{body['name']}"}
            if zone in self.exhausted:
                done = {**op, "status": "DONE", "progress": 100, "httpErrorStatusCode": 503,
                        "httpErrorMessage": "SERVICE UNAVAILABLE",
                        "error": {"errors": [{"code": "ZONE_RESOURCE_POOL_EXHAUSTED",
                                              "message": f"The zone 'projects/{P}/zones/{zone}' does not have enough "
                                                         "resources available to fulfill the request."}]}}
            else:
                self.instances[body["name"]] = {**body, "zone": zone, "status": "RUNNING"}
                done = {**op, "status": "DONE", "progress": 100}
            self.ops[op["name"]] = done
            return 200, {}, op
        if rec.method in ("GET", "POST") and parts[-2] == "operations" or parts[-1] == "wait":
            name = parts[-2] if parts[-1] == "wait" else parts[-1]
            return 200, {}, self.ops[name]
        if rec.method == "GET" and parts[-1] == "instances":
            flt = rec.query.get("filter", "")
            items = [i for i in self.instances.values() if i["zone"] == zone
                     and all(f"labels.{k}={v}" in flt for k, v in i["labels"].items())]
            return 200, {}, {"kind": "compute#instanceList", "items": items}
        if parts[-3] == "instances" and rec.method == "POST" and parts[-1] in ("stop", "start"):
            inst = self.instances.get(parts[-2])
            if inst is None:
                return 404, {}, {"error": {"code": 404, "message": f"not found: {parts[-2]}", "errors": [{"reason": "notFound"}]}}
            inst["status"] = "TERMINATED" if parts[-1] == "stop" else "RUNNING"  # as GCE calls a stopped instance
            self.calls.append((parts[-1], parts[-2]))
            return 200, {}, {"kind": "compute#operation", "name": f"operation-{parts[-1]}", "status": "DONE", "zone": zone}
        if parts[-2] == "instances" and rec.method == "GET" and parts[-1] in self.instances:
            return 200, {}, self.instances[parts[-1]]
        if parts[-2] == "instances" and rec.method == "DELETE":
            self.instances.pop(parts[-1], None)
            return 200, {}, {"kind": "compute#operation", "name": "operation-del", "status": "DONE", "zone": zone}
        return 404, {}, {"error": {"code": 404, "message": f"not found: {rec.path}", "errors": [{"reason": "notFound"}]}}


def launcher_for(server):
    kw = {"transport": "rest", "credentials": AnonymousCredentials(), "client_options": {"api_endpoint": server.url}}
    return GceLauncher(instances_client=compute_v1.InstancesClient(**kw),
                       operations_client=compute_v1.ZoneOperationsClient(**kw),
                       project=P, image="projects/p/global/images/family/test")


class _CatchAll(dict):
    """Routes for GridServer that send every request to one handler."""

    def __init__(self, handler):
        super().__init__()
        self.handler = handler

    def get(self, key, default=None):
        return self.handler


def test_insert_waits_labels_request_id_and_cancel(tmp_path):
    compute = Compute()
    with GridServer() as srv:
        srv.routes = _CatchAll(compute.route)
        settings = Settings(home=tmp_path)
        store = Store.for_settings(settings)
        launcher = launcher_for(srv)
        stored, outcome = submit(job_from_dict(JOB), now=NOW, settings=settings, store=store, launcher="gcp",
                                 launcher_factory=lambda name: launcher)
        assert outcome.state == "running", outcome
        (ins,) = compute.inserts
        body = ins["body"]
        assert body["machineType"].endswith("/machineTypes/a2-highgpu-8g")
        assert body["scheduling"]["onHostMaintenance"] == "TERMINATE"
        assert body["labels"] == {"carbonsched-job-id": stored.id, "carbonsched-attempt": "0"}
        script = body["metadata"]["items"][0]["value"]
        assert "python train.py --lr 3e-4" in script and "shutdown -h now" in script
        assert ins["requestId"] == request_id(store.attempts(stored.id)[0].token)
        assert launcher.find(store.get(stored.id), 0, "t") == outcome.resource_id
        cancel(store, stored.id, lambda name: launcher, NOW)
        assert compute.instances == {}


def test_zone_resource_pool_exhausted_fails_over(tmp_path):
    settings = Settings(home=tmp_path)
    from carbonsched.planning import plan as make_plan

    plan = make_plan(job_from_dict(JOB), now=NOW, settings=settings, top=10)
    first = plan.placements[0]
    zone = first.zone or first.zones[0]
    compute = Compute(exhausted_zones={zone})
    with GridServer() as srv:
        srv.routes = _CatchAll(compute.route)
        store = Store.for_settings(settings)
        launcher = launcher_for(srv)
        stored, outcome = submit(job_from_dict(JOB), now=NOW, settings=settings, store=store, launcher="gcp",
                                 plan=plan, launcher_factory=lambda name: launcher)
    attempts = store.attempts(stored.id)
    assert attempts[0].outcome == "capacity" and attempts[0].error_code == "ZONE_RESOURCE_POOL_EXHAUSTED"
    assert outcome.state == "running" and attempts[-1].outcome == "launched"
    assert len(compute.instances) == 1 and next(iter(compute.instances.values()))["zone"] != zone


def test_n1_offerings_attach_accelerators_and_spot():
    from carbonsched.providers.cloud.gcp_launch import _split_type

    assert _split_type("n1-standard-8+1xT4", "T4") == ("n1-standard-8", [("nvidia-tesla-t4", 1)])
    assert _split_type("a3-highgpu-8g", "H100") == ("a3-highgpu-8g", [])
    launcher = GceLauncher(instances_client=object(), project=P, image="img")
    j = job_from_dict({"name": "x", "command": "python t.py", "gpu": "T4", "gpus": 1, "hours": 1})
    from carbonsched.run.store import Job

    stored = Job(id="abc123", name="x", state="launching", created_at=NOW, updated_at=NOW, start_at=NOW, launcher="gcp",
                 spec=j.to_dict(), plan={}, claimed_by=None, resource_id=None, region_id=None, instance_type=None,
                 exit_code=None, max_attempts=3)
    inst = launcher.instance(stored, {"instance_type": "n1-standard-8+2xT4", "gpu": "T4", "market": "spot"}, 1, "us-central1-a")
    assert inst.machine_type == "zones/us-central1-a/machineTypes/n1-standard-8"
    assert inst.guest_accelerators[0].accelerator_count == 2
    assert inst.scheduling.provisioning_model == "SPOT" and inst.name == "cs-abc123-1"


def test_interruptible_on_demand_run_stops_and_starts_its_instance_at_segments(tmp_path):
    """GCE: the startup script numbers segments at every boot; the agent stops the instance at the end
    of segment 0 (job paused) and starts it at segment 1's start; found again only once running."""
    from datetime import timedelta

    from carbonsched.run.agent import agent_pass

    compute = Compute()
    with GridServer() as server:
        server.routes = _CatchAll(compute.route)
        launcher = launcher_for(server)
        store = Store.for_settings(Settings(home=tmp_path))
        segs = [{"start": (NOW + timedelta(hours=3 * i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                 "end": (NOW + timedelta(hours=3 * i + 2)).strftime("%Y-%m-%dT%H:%M:%SZ"), "overhead_hours": 0.0}
                for i in range(2)]
        placement = {"rank": 1, "provider": "gcp", "region": "us-central1", "region_id": "gcp:us-central1",
                     "zone": "us-central1-a", "instance_type": "a2-highgpu-8g", "gpu": "A100", "gpu_count": 8,
                     "market": "on-demand", "start": segs[0]["start"], "interruptible": {"segments": segs}}
        stored = store.add_job(name="ckpt", spec={"command": "python train.py"}, plan={"placements": [placement]},
                               start_at=NOW, launcher="gcp", now=NOW)
        factory = lambda name: launcher  # noqa: E731
        assert [o.state for o in agent_pass(store, factory, NOW + timedelta(minutes=1))] == ["running"]
        script = next(i["value"] for i in compute.inserts[0]["body"]["metadata"]["items"] if i["key"] == "startup-script")
        assert "CARBONSCHED_SEGMENT" in script
        agent_pass(store, factory, NOW + timedelta(hours=2, minutes=1))
        job = store.get(stored.id)
        assert job.state == "paused" and compute.calls[-1][0] == "stop"
        assert launcher.find(job, 0, "t", segment=1) is None  # stopped: not yet resumed
        assert [o.state for o in agent_pass(store, factory, NOW + timedelta(hours=3, minutes=1))] == ["running"]
        assert compute.calls[-1][0] == "start" and store.get(stored.id).state == "running"
        assert launcher.find(store.get(stored.id), 0, "t", segment=1) == store.get(stored.id).resource_id
        assert not launcher.can_stop({**placement, "market": "spot"})
