"""Launch jobs on AWS EC2 (boto3, extra ``carbonsched[aws]``).

``run_instances`` in the placement's region (and zone, when the plan names one) with:

* the AMI from a public SSM parameter (default: an AWS Deep Learning Base AMI with NVIDIA
  drivers; ``aws_ami_parameter`` in the settings, or ``ami_id`` to pin one);
* user-data: a bash script that runs the job's command under ``carbonsched track`` (each argument
  ``shlex.quote``-d, never interpolated; ``launcher.shell_lines``), logs to the console and
  ``/var/log/carbonsched-job.log``, prints the measurement as a marked line and
  ``carbonsched-exit-code: N``, and powers off; ``InstanceInitiatedShutdownBehavior=terminate``
  so a finished job stops billing;
* tags ``carbonsched:job-id``, ``carbonsched:attempt``, ``carbonsched:token`` (and ``Name``);
* spot via ``InstanceMarketOptions`` when the placement's market is spot;
* ``ClientToken`` = the attempt's token, so a retried call cannot start a second instance where
  EC2 honours it; ``find`` looks instances up by the job/attempt tags, which is what makes crash
  recovery safe where it does not (moto ignores ClientToken).

No secrets go into user-data or tags: the job's environment is not shipped.

Minimal IAM permissions: ``ec2:RunInstances``, ``ec2:CreateTags`` (tag on create),
``ec2:DescribeInstances``, ``ec2:DescribeAvailabilityZones``, ``ec2:TerminateInstances``,
``ec2:GetConsoleOutput`` (status/logs), ``ssm:GetParameter`` (the AMI parameter); for interruptible
jobs also ``ec2:StopInstances`` and ``ec2:StartInstances``.

Interruptible placements (on-demand) run in segments: the boot script installs itself as a
cloud-init per-boot script; at a segment's end the agent stops the instance (its root volume, and
a checkpoint on it, stays) and starts it at the next, tagged ``carbonsched:segment``.
"""
from __future__ import annotations

import base64
import os
import re

from carbonsched.errors import CapacityError, LaunchError
from carbonsched.providers.cloud.launcher import ConsoleRecord, refuse_unsupported, shell_lines, stoppable

DEFAULT_AMI_PARAMETER = "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
CAPACITY_CODES = frozenset({
    "InsufficientInstanceCapacity", "InstanceLimitExceeded", "VcpuLimitExceeded", "MaxSpotInstanceCountExceeded",
    "SpotMaxPriceTooLow", "InsufficientCapacityOnHost", "Unsupported", "InsufficientHostCapacity",
})
AUTH_CODES = frozenset({"UnauthorizedOperation", "AuthFailure", "AccessDenied", "AccessDeniedException"})
LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down", "terminated"]


PER_BOOT = "/var/lib/cloud/scripts/per-boot/carbonsched-job.sh"


def user_data(lines: list[str], job_id: str, every_boot: bool = False) -> str:
    """The boot script: run the job (``launcher.shell_lines``), record its exit code, power off (-> terminate).

    ``every_boot`` (an interruptible placement, stopped and started at its segments): the script
    installs itself as a cloud-init per-boot script, so each start runs the next segment
    (``launcher.segment_lines`` numbers them and sets ``CARBONSCHED_RESUME=1`` from the second)."""
    body = [
        "#!/bin/bash",
        f"# carbonsched job {job_id}",
        "exec > >(tee -a /var/log/carbonsched-job.log | logger -t carbonsched -s 2>/dev/console) 2>&1",
        "set +e",
        *lines,
        "code=$?",
        'echo "carbonsched-exit-code: $code"',
        "shutdown -h now",
        "",
    ]
    if not every_boot:
        return "\n".join(body)
    return "\n".join(["#!/bin/bash", f"# carbonsched job {job_id}: runs at every boot (segments)",
                      f"install -D -m 700 /dev/stdin {PER_BOOT} <<'CARBONSCHED_JOB_EOF'", *body,
                      "CARBONSCHED_JOB_EOF", f"exec {PER_BOOT}", ""])


class _AwsErrors:
    """Turn boto errors (no credentials, denied, network) into LaunchError with what to do."""

    def __init__(self, what: str):
        self.what = what

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None:
            return False
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        if isinstance(exc, NoCredentialsError):
            raise LaunchError(f"AWS {self.what}: no credentials; set AWS_PROFILE or AWS_ACCESS_KEY_ID/"
                              "AWS_SECRET_ACCESS_KEY") from None
        if isinstance(exc, ClientError):
            code, msg = _client_error(exc)
            raise LaunchError(f"AWS {self.what}: {code}: {msg}", code=code) from None
        if isinstance(exc, BotoCoreError):
            raise LaunchError(f"AWS {self.what}: {exc}", retryable=True) from None
        return False


def _client_error(exc) -> tuple[str, str]:
    err = getattr(exc, "response", {}).get("Error", {})
    return err.get("Code", ""), err.get("Message", str(exc))


class Ec2Launcher(ConsoleRecord):
    """EC2 launcher; ``client_factory(service, region)`` returns boto3 clients (injected in tests)."""

    name = "aws"

    def __init__(self, client_factory=None, ami_parameter: str = DEFAULT_AMI_PARAMETER, ami_id: str | None = None,
                 install: str | None = None):
        self._factory = client_factory or _default_factory
        self.install = install if install is not None else (os.environ.get("CARBONSCHED_REMOTE_INSTALL") or None)
        self.ami_parameter = ami_parameter
        self.ami_id = ami_id

    def check(self) -> None:
        """Before a job is stored: boto3 is installed and finds credentials (env, profile, role)."""
        try:
            import boto3
        except ImportError:
            raise LaunchError("the AWS launcher needs boto3: pip install 'carbonsched[aws]'") from None
        if boto3.Session().get_credentials() is None:
            raise LaunchError("no AWS credentials found; set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
                              "(or run where an instance role provides them)")

    def _ec2(self, region: str):
        return self._factory("ec2", region)

    def _ami(self, region: str) -> str:
        if self.ami_id:
            return self.ami_id
        with _AwsErrors(f"GetParameter {self.ami_parameter} in {region} (ssm:GetParameter; or set "
                        "CARBONSCHED_AWS_AMI_ID)"):
            return self._factory("ssm", region).get_parameter(Name=self.ami_parameter)["Parameter"]["Value"]

    def _zone_name(self, ec2, zone: str | None) -> str | None:
        """The catalog names zones by id (use1-az2); RunInstances wants the account's zone name."""
        if not zone or not re.match(r"^[a-z]{2,4}\d-az\d+$", zone):
            return zone
        zones = ec2.describe_availability_zones(ZoneIds=[zone])["AvailabilityZones"]
        return zones[0]["ZoneName"] if zones else None

    can_stop = staticmethod(stoppable)  # segments stop and start the instance

    def stop(self, resource_id: str, grace_s: float = 300.0) -> bool:
        """End a segment: StopInstances (the OS's shutdown sends SIGTERM to the job, which checkpoints;
        the tracker prints its record), then wait until the instance is stopped."""
        region, instance = self._split(resource_id)
        ec2 = self._ec2(region)
        with _AwsErrors("StopInstances (ec2:StopInstances)"):
            ec2.stop_instances(InstanceIds=[instance])
            try:
                ec2.get_waiter("instance_stopped").wait(InstanceIds=[instance], WaiterConfig={
                    "Delay": 5, "MaxAttempts": max(1, int(grace_s // 5))})
            except Exception as exc:  # noqa: BLE001 -- botocore's WaiterError: not stopped in time
                if type(exc).__name__ != "WaiterError":
                    raise
                return False
        return True

    def _resume(self, job, placement: dict, attempt: int, segment: int) -> str:
        """Segment k > 0: start the stopped instance again (its per-boot script runs segment k)."""
        found = self._find(job, attempt)
        if found is None:
            raise LaunchError(f"job {job.id}: the stopped instance of attempt {attempt} is gone; its segment "
                              f"{segment + 1} cannot resume")
        region, instance = self._split(found)
        ec2 = self._ec2(region)
        with _AwsErrors("StartInstances (ec2:StartInstances, ec2:CreateTags)"):
            ec2.create_tags(Resources=[instance], Tags=[{"Key": "carbonsched:segment", "Value": str(segment)}])
            ec2.start_instances(InstanceIds=[instance])
        return found

    def launch(self, job, placement: dict, attempt: int, token: str, segment: int = 0) -> str:
        refuse_unsupported(job, self.name)  # a boot script: no workdir, mounts, secrets or nodes
        if segment:
            return self._resume(job, placement, attempt, segment)
        from botocore.exceptions import BotoCoreError, ClientError

        region = placement["region"]
        ec2 = self._ec2(region)
        tags = [{"Key": "carbonsched:job-id", "Value": job.id}, {"Key": "carbonsched:attempt", "Value": str(attempt)},
                {"Key": "carbonsched:token", "Value": token}, {"Key": "Name", "Value": f"carbonsched-{job.name}"[:255]}]
        kwargs = dict(
            ImageId=self._ami(region), InstanceType=placement["instance_type"], MinCount=1, MaxCount=1,
            ClientToken=token, UserData=user_data(shell_lines(job, placement, install=self.install,
                                                              segmented=self.can_stop(placement)),
                                                  job.id, every_boot=self.can_stop(placement)),
            InstanceInitiatedShutdownBehavior="terminate",
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
        )
        try:
            zone = self._zone_name(ec2, placement.get("zone"))
            if zone:
                kwargs["Placement"] = {"AvailabilityZone": zone}
            if placement.get("market") == "spot":
                kwargs["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": {
                    "SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}}
            reply = ec2.run_instances(**kwargs)
        except ClientError as exc:
            code, msg = _client_error(exc)
            if code in CAPACITY_CODES:
                raise CapacityError(f"{region}: {code}: {msg}", code=code) from None
            if code in AUTH_CODES:
                raise LaunchError(f"{region}: {code}: {msg}; the launcher needs ec2:RunInstances and ec2:CreateTags",
                                  code=code) from None
            raise LaunchError(f"{region}: {code}: {msg}", code=code) from None
        except BotoCoreError as exc:  # e.g. a read timeout after the request went out: it may have launched
            from botocore.exceptions import NoCredentialsError

            if isinstance(exc, NoCredentialsError):
                raise LaunchError("AWS RunInstances: no credentials; set AWS_PROFILE or AWS_ACCESS_KEY_ID") from None
            raise LaunchError(f"{region}: {exc}", retryable=True) from None
        return f"aws:{region}:{reply['Instances'][0]['InstanceId']}"

    def find(self, job, attempt: int, token: str, segment: int = 0) -> str | None:
        with _AwsErrors("DescribeInstances (ec2:DescribeInstances)"):
            return self._find(job, attempt, segment)

    def _find(self, job, attempt: int, segment: int | None = None) -> str | None:
        """The attempt's instance (``segment`` k > 0: only once it was started for segment k)."""
        regions = {p.get("region") for p in job.plan.get("placements", [])[attempt:attempt + 1]}
        for region in filter(None, regions):
            pages = self._ec2(region).get_paginator("describe_instances").paginate(Filters=[
                {"Name": "tag:carbonsched:job-id", "Values": [job.id]},
                {"Name": "tag:carbonsched:attempt", "Values": [str(attempt)]},
                {"Name": "instance-state-name", "Values": LIVE_STATES}])
            for page in pages:
                for res in page["Reservations"]:
                    for inst in res["Instances"]:
                        tags = {t["Key"]: t["Value"] for t in inst.get("Tags") or []}
                        if segment and (tags.get("carbonsched:segment") != str(segment)
                                        or inst["State"]["Name"] not in ("pending", "running")):
                            return None
                        return f"aws:{region}:{inst['InstanceId']}"
        return None

    @staticmethod
    def _split(resource_id: str) -> tuple[str, str]:
        provider, region, instance = resource_id.split(":", 2)
        if provider != "aws":
            raise LaunchError(f"{resource_id!r} is not an EC2 instance")
        return region, instance

    def status(self, resource_id: str) -> tuple[str, int | None]:
        region, instance = self._split(resource_id)
        ec2 = self._ec2(region)
        with _AwsErrors("DescribeInstances (ec2:DescribeInstances)"):
            reservations = ec2.describe_instances(InstanceIds=[instance])["Reservations"]
        if not reservations:
            return "failed", None
        state = reservations[0]["Instances"][0]["State"]["Name"]
        if state in ("pending", "running", "stopping", "shutting-down"):
            return "running", None
        return self.ended(resource_id)

    def cancel(self, resource_id: str) -> None:
        region, instance = self._split(resource_id)
        with _AwsErrors("TerminateInstances (ec2:TerminateInstances)"):
            self._ec2(region).terminate_instances(InstanceIds=[instance])

    def logs(self, resource_id: str) -> str | None:
        region, instance = self._split(resource_id)
        with _AwsErrors("GetConsoleOutput (ec2:GetConsoleOutput)"):
            out = self._ec2(region).get_console_output(InstanceId=instance).get("Output")
        if not out:
            return None
        try:
            return base64.b64decode(out).decode("utf-8", "replace")
        except (ValueError, TypeError):
            return out


def _default_factory(service: str, region: str):
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise LaunchError("the AWS launcher needs boto3: pip install 'carbonsched[aws]'") from None
    return boto3.client(service, region_name=region, config=Config(retries={"mode": "standard", "max_attempts": 3}))
