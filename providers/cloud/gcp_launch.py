"""Launch jobs on Google Compute Engine (google-cloud-compute, extra ``carbonsched[gcp]``).

``instances.insert`` in the placement's zone with: the GPU machine type (a2/a3/g2 carry their
GPUs; ``n1-standard-8+1xT4``-style offerings attach ``guestAccelerators``),
``onHostMaintenance=TERMINATE`` (GPUs cannot live-migrate), SPOT provisioning when the
placement's market is spot, a Deep Learning VM image family (``CARBONSCHED_GCP_IMAGE``), the
job's command as ``startup-script`` metadata (run under ``carbonsched track``, every argument
``shlex.quote``-d; it prints the measurement as a marked line and ``carbonsched-exit-code: N`` and
powers off), labels ``carbonsched-job-id`` /
``carbonsched-attempt``, and ``requestId`` = a UUID derived from the attempt's token, so a retried
insert is idempotent. The zone operation is waited on; ZONE_RESOURCE_POOL_EXHAUSTED,
QUOTA_EXCEEDED and friends become ``CapacityError`` (failover). ``find`` lists instances by label.

Environment: ``CARBONSCHED_GCP_PROJECT`` or ``GOOGLE_CLOUD_PROJECT``; credentials from
``google.auth.default()``; ``CARBONSCHED_GCP_API_ENDPOINT`` (tests: a local server) and
``CARBONSCHED_GCP_ANONYMOUS=1`` (tests).

Minimal IAM permissions: ``compute.instances.create``, ``compute.instances.setMetadata``,
``compute.instances.setLabels``, ``compute.disks.create``, ``compute.subnetworks.use``,
``compute.subnetworks.useExternalIp``, ``compute.instances.get``/``list``,
``compute.instances.delete`` (cancel), ``compute.instances.getSerialPortOutput`` (logs),
``compute.zoneOperations.get``; for interruptible jobs ``compute.instances.stop``/``start`` (an
on-demand run in segments is stopped at each segment's end and started at the next; startup
scripts run at every boot and number the segments on the boot disk).
"""
from __future__ import annotations

import hashlib
import os
import re
import uuid

from carbonsched.errors import CapacityError, LaunchError
from carbonsched.providers.cloud.launcher import ConsoleRecord, refuse_unsupported, shell_lines, stoppable

DEFAULT_IMAGE = "projects/deeplearning-platform-release/global/images/family/common-cu124-debian-11-py310"
CAPACITY_CODES = frozenset({"ZONE_RESOURCE_POOL_EXHAUSTED", "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
                            "QUOTA_EXCEEDED", "RESOURCE_EXHAUSTED", "STOCKOUT", "UNSUPPORTED_OPERATION"})
N1_GPU = {"T4": "nvidia-tesla-t4", "V100": "nvidia-tesla-v100", "P100": "nvidia-tesla-p100", "P4": "nvidia-tesla-p4"}


def request_id(token: str) -> str:
    """GCE wants a UUID as requestId: a stable one from the attempt token."""
    return str(uuid.UUID(hex=hashlib.sha256(token.encode()).hexdigest()[:32]))


def startup_script(lines: list[str], job_id: str) -> str:
    """The startup script: run the job (``launcher.shell_lines``), report its exit code, power off."""
    return "\n".join(["#!/bin/bash", f"# carbonsched job {job_id}", "set +e", *lines, "code=$?",
                      'echo "carbonsched-exit-code: $code" > /dev/ttyS0', 'echo "carbonsched-exit-code: $code"',
                      "shutdown -h now", ""])


def instance_name(job_id: str, attempt: int) -> str:
    return re.sub(r"[^a-z0-9-]", "-", f"cs-{job_id}-{attempt}".lower())[:63]


def _split_type(instance_type: str, gpu: str) -> tuple[str, list[tuple[str, int]]]:
    """``n1-standard-8+1xT4`` -> ("n1-standard-8", [("nvidia-tesla-t4", 1)]); GPU families as is."""
    m = re.match(r"^(n1-[a-z0-9-]+)\+(\d+)x(.+)$", instance_type)
    if not m:
        return instance_type, []
    if gpu not in N1_GPU:
        raise LaunchError(f"cannot attach {gpu} to {m.group(1)}: not an N1-attachable GPU")
    return m.group(1), [(N1_GPU[gpu], int(m.group(2)))]


def _error_codes(exc) -> list[str]:
    codes = []
    for err in getattr(exc, "errors", None) or []:
        code = err.get("reason") if isinstance(err, dict) else getattr(err, "reason", None) or getattr(err, "code", None)
        if code:
            codes.append(str(code))
    for text in (getattr(exc, "message", "") or str(exc),):
        codes += [c for c in CAPACITY_CODES if c in text]
    return codes


def _google_errors(what: str):
    """A context manager turning Google API errors into LaunchError."""
    from contextlib import contextmanager

    @contextmanager
    def guard():
        from google.api_core import exceptions as gex

        try:
            yield
        except gex.GoogleAPICallError as exc:
            raise LaunchError(f"Compute Engine {what}: {exc.message}") from None

    return guard()


class GceLauncher(ConsoleRecord):
    name = "gcp"

    def __init__(self, instances_client=None, operations_client=None, project: str | None = None,
                 image: str | None = None, timeout_s: float = 600.0, install: str | None = None):
        self._client = instances_client
        self._ops = operations_client
        self.project = project or os.environ.get("CARBONSCHED_GCP_PROJECT") or os.environ.get("GOOGLE_CLOUD_PROJECT")
        self.image = image or os.environ.get("CARBONSCHED_GCP_IMAGE") or DEFAULT_IMAGE
        self.timeout_s = timeout_s
        self.install = install if install is not None else (os.environ.get("CARBONSCHED_REMOTE_INSTALL") or None)

    def check(self) -> None:
        """Before a job is stored: the client library, credentials and a project are there."""
        self.client()

    def client(self):
        if self._client is None:
            self._client, self._ops = _default_clients()
        if not self.project:
            raise LaunchError("no Google Cloud project: set GOOGLE_CLOUD_PROJECT (or CARBONSCHED_GCP_PROJECT)")
        return self._client

    def instance(self, job, placement: dict, attempt: int, zone: str) -> dict:
        from google.cloud import compute_v1

        machine, accelerators = _split_type(placement["instance_type"], placement["gpu"])
        scheduling = compute_v1.Scheduling(on_host_maintenance="TERMINATE", automatic_restart=False)
        if placement.get("market") == "spot":
            scheduling.provisioning_model = "SPOT"
            scheduling.instance_termination_action = "DELETE"
        return compute_v1.Instance(
            name=instance_name(job.id, attempt),
            machine_type=f"zones/{zone}/machineTypes/{machine}",
            guest_accelerators=[compute_v1.AcceleratorConfig(accelerator_type=f"zones/{zone}/acceleratorTypes/{t}",
                                                             accelerator_count=n) for t, n in accelerators],
            scheduling=scheduling,
            disks=[compute_v1.AttachedDisk(boot=True, auto_delete=True, initialize_params=compute_v1.AttachedDiskInitializeParams(
                source_image=self.image, disk_size_gb=200))],
            network_interfaces=[compute_v1.NetworkInterface(network="global/networks/default", access_configs=[
                compute_v1.AccessConfig(name="External NAT", type_="ONE_TO_ONE_NAT")])],
            metadata=compute_v1.Metadata(items=[compute_v1.Items(key="startup-script",
                                                                 value=startup_script(shell_lines(
                                                                     job, placement, install=self.install,
                                                                     segmented=self.can_stop(placement)), job.id))]),
            labels={"carbonsched-job-id": job.id, "carbonsched-attempt": str(attempt)},
        )

    can_stop = staticmethod(stoppable)  # segments stop and start the instance (startup scripts run every boot)

    def stop(self, resource_id: str, grace_s: float | None = None) -> bool:
        """End a segment: instances.stop (the guest's shutdown sends SIGTERM to the job, which
        checkpoints; the tracker prints its record), waited on until done."""
        zone, name = self._split(resource_id)
        with _google_errors("instances.stop (compute.instances.stop)"):
            op = self._wait(zone, self.client().stop_unary(project=self.project, zone=zone, instance=name))
        return not (op.error and op.error.errors)

    def _resume(self, job, attempt: int, segment: int) -> str:
        """Segment k > 0: start the stopped instance again (its startup script runs segment k)."""
        found = self._find(job, attempt)
        if found is None:
            raise LaunchError(f"job {job.id}: the stopped instance of attempt {attempt} is gone; its segment "
                              f"{segment + 1} cannot resume")
        zone, name = self._split(found)
        with _google_errors("instances.start (compute.instances.start)"):
            self._wait(zone, self.client().start_unary(project=self.project, zone=zone, instance=name))
        return found

    def launch(self, job, placement: dict, attempt: int, token: str, segment: int = 0) -> str:
        refuse_unsupported(job, self.name)  # a boot script: no workdir, mounts, secrets or nodes
        if segment:
            return self._resume(job, attempt, segment)
        from google.api_core import exceptions as gex

        zone = placement.get("zone") or (placement.get("zones") or [None])[0]
        if not zone:
            raise LaunchError(f"placement in {placement.get('region_id')} names no zone; refresh the catalog")
        client = self.client()
        body = self.instance(job, placement, attempt, zone)
        try:
            from google.cloud import compute_v1

            op = client.insert_unary(request=compute_v1.InsertInstanceRequest(
                project=self.project, zone=zone, instance_resource=body, request_id=request_id(token)))
            op = self._wait(zone, op)
            if op.error and op.error.errors:
                codes = [e.code for e in op.error.errors]
                message = "; ".join(e.message for e in op.error.errors)
                capacity = [c for c in codes if c in CAPACITY_CODES]
                if capacity:
                    raise CapacityError(f"{zone}: {capacity[0]}: {message}", code=capacity[0])
                raise LaunchError(f"{zone}: {', '.join(codes)}: {message}", code=codes[0])
        except (gex.RetryError, gex.DeadlineExceeded, gex.ServiceUnavailable, gex.Conflict) as exc:
            # sent, but the outcome is unclear (or the instance already exists): find() decides
            raise LaunchError(f"{zone}: {getattr(exc, 'message', exc)}", retryable=True) from None
        except gex.GoogleAPICallError as exc:
            codes = _error_codes(exc)
            if any(c in CAPACITY_CODES for c in codes):
                raise CapacityError(f"{zone}: {exc.message}", code=next(c for c in codes if c in CAPACITY_CODES)) from None
            if isinstance(exc, (gex.Forbidden, gex.PermissionDenied)):
                raise LaunchError(f"{zone}: {exc.message}; the launcher needs compute.instances.create (e.g. "
                                  "roles/compute.instanceAdmin.v1)", code="PERMISSION_DENIED") from None
            raise LaunchError(f"{zone}: {exc.message}", code=(codes or [""])[0]) from None
        return f"gcp:{zone}:{body.name}"

    def _wait(self, zone: str, op):
        """Wait on a zone operation until DONE (zoneOperations.wait returns after ~2 min at most)."""
        import time

        deadline = time.monotonic() + self.timeout_s
        while op.status != op.Status.DONE:
            if time.monotonic() > deadline:
                raise LaunchError(f"{zone}: the insert operation {op.name} did not finish in {self.timeout_s:.0f} s",
                                  retryable=True)
            op = self._ops.wait(project=self.project, zone=zone, operation=op.name)
        return op

    def find(self, job, attempt: int, token: str, segment: int = 0) -> str | None:
        """The attempt's instance, by label; for segment k > 0 only once it runs again (a paused
        run's instance is stopped until its next segment starts it)."""
        return self._find(job, attempt, running=bool(segment))

    def _find(self, job, attempt: int, running: bool = False) -> str | None:
        placement = (job.plan.get("placements") or [])[attempt:attempt + 1]
        zones = [p.get("zone") or (p.get("zones") or [None])[0] for p in placement]
        for zone in filter(None, zones):
            from google.cloud import compute_v1

            request = compute_v1.ListInstancesRequest(
                project=self.project, zone=zone,
                filter=f"labels.carbonsched-job-id={job.id} AND labels.carbonsched-attempt={attempt}")
            with _google_errors("instances.list (compute.instances.list)"):
                for inst in self.client().list(request=request):
                    if running and inst.status not in ("PROVISIONING", "STAGING", "RUNNING"):
                        return None
                    return f"gcp:{zone}:{inst.name}"
        return None

    @staticmethod
    def _split(resource_id: str) -> tuple[str, str]:
        provider, zone, name = resource_id.split(":", 2)
        if provider != "gcp":
            raise LaunchError(f"{resource_id!r} is not a Compute Engine instance")
        return zone, name

    def status(self, resource_id: str) -> tuple[str, int | None]:
        from google.api_core import exceptions as gex

        zone, name = self._split(resource_id)
        try:
            inst = self.client().get(project=self.project, zone=zone, instance=name)
        except gex.NotFound:
            return "failed", None
        except gex.GoogleAPICallError as exc:
            raise LaunchError(f"Compute Engine instances.get: {exc.message}") from None
        if inst.status in ("PROVISIONING", "STAGING", "RUNNING", "STOPPING", "SUSPENDING", "REPAIRING"):
            return "running", None
        return self.ended(resource_id)

    def cancel(self, resource_id: str) -> None:
        zone, name = self._split(resource_id)
        with _google_errors("instances.delete (compute.instances.delete)"):
            self.client().delete(project=self.project, zone=zone, instance=name)

    def logs(self, resource_id: str) -> str | None:
        from google.api_core import exceptions as gex

        zone, name = self._split(resource_id)
        try:
            return self.client().get_serial_port_output(project=self.project, zone=zone, instance=name).contents
        except gex.GoogleAPICallError:
            return None


def _default_clients():
    """(InstancesClient, ZoneOperationsClient) from the environment (see the module docstring)."""
    try:
        from google.cloud import compute_v1
    except ImportError:
        raise LaunchError("the GCP launcher needs google-cloud-compute: pip install 'carbonsched[gcp]'") from None
    kw: dict = {"transport": "rest"}
    if os.environ.get("CARBONSCHED_GCP_ANONYMOUS") == "1":
        from google.auth.credentials import AnonymousCredentials

        kw["credentials"] = AnonymousCredentials()
    if os.environ.get("CARBONSCHED_GCP_API_ENDPOINT"):
        kw["client_options"] = {"api_endpoint": os.environ["CARBONSCHED_GCP_API_ENDPOINT"]}
    try:
        return compute_v1.InstancesClient(**kw), compute_v1.ZoneOperationsClient(**kw)
    except Exception as exc:  # google.auth.exceptions.DefaultCredentialsError and friends
        raise LaunchError(f"cannot create a Compute Engine client ({exc}); run `gcloud auth application-default "
                          "login` or set GOOGLE_APPLICATION_CREDENTIALS") from None
