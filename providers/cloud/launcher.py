"""Launchers: how a placement becomes a running job. The protocol and the job payload helpers.

A launcher has a ``name`` and::

    launch(job, placement, attempt, token) -> str   # resource id; CapacityError -> failover
    find(job, attempt, token) -> str | None          # a resource this attempt already started
    status(resource_id) -> (state, exit_code)        # running | succeeded | failed | unknown
    cancel(resource_id) -> None
    logs(resource_id) -> str | None

``token`` is derived from job id + attempt (``launch_token``), so a retried call is
idempotent where the provider honours it (EC2 ClientToken, GCE requestId); ``find`` is the
reconciliation that does not rely on that (looks the resource up by tag/label or, locally, by
the runner's files).

Implementations sit beside this file and register in ``carbonsched.providers.cloud.LAUNCHERS``
(imported only when chosen, so their SDKs load only for the launcher in use): ``local.py`` runs
the job's command on this machine (on-prem boxes, demos, tests) through ``carbonsched.runner``,
detached, logs to a file, exit code and duration recorded; ``aws_launch.py`` (EC2) and
``gcp_launch.py`` (Compute Engine).
"""
from __future__ import annotations

import re
import shlex
from functools import lru_cache
from typing import Protocol

from carbonsched.errors import LaunchError


class Job(Protocol):
    """What a launcher reads of a stored job (``carbonsched.run.store.Job`` is one)."""

    id: str
    spec: dict  # the job file's table: command, image, env, ...


class Launcher(Protocol):
    name: str

    def launch(self, job: Job, placement: dict, attempt: int, token: str) -> str: ...

    def find(self, job: Job, attempt: int, token: str) -> str | None: ...

    def status(self, resource_id: str) -> tuple[str, int | None]: ...

    def cancel(self, resource_id: str) -> None: ...

    def logs(self, resource_id: str) -> str | None: ...


def launch_token(job_id: str, attempt: int) -> str:
    """Idempotency token for one attempt of one job (<= 64 chars, as EC2 ClientToken allows)."""
    import hashlib  # here, not at the top: `plan` imports this module and never needs it

    return "cs-" + hashlib.sha256(f"{job_id}/{attempt}".encode()).hexdigest()[:40]


def job_command(job: Job) -> list[str]:
    """The job's command as an argument list (no shell); LaunchError when there is none."""
    command = (job.spec.get("command") or "").strip()
    if not command:
        if job.spec.get("image"):
            return []  # the image's own entry point
        raise LaunchError(f"job {job.id} has no command; add command = \"...\" to the job file")
    try:
        return shlex.split(command)
    except ValueError as exc:  # the command is not repeated here: it could hold a secret
        raise LaunchError(f"job {job.id}: cannot split its command ({exc}); check its quoting") from None


# the OCI/Docker image reference grammar (distribution/reference): [domain[:port]/]path[:tag][@digest]
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
IMAGE_REFERENCE = rf"(?:{_DOMAIN}/)?{_PATH_PART}(?:/{_PATH_PART})*(?::{_TAG})?(?:@{_DIGEST})?"


@lru_cache(maxsize=1)
def _image_reference() -> re.Pattern:
    return re.compile(IMAGE_REFERENCE)  # compiled on first use: plans never need it


def image_reference_error(ref: str) -> str | None:
    """Why ``ref`` is not an image reference (None when it is): it reaches ``docker run``, so
    anything else (``--privileged``, ``--volume=/:/host``, spaces) is refused, not passed on."""
    if not isinstance(ref, str) or len(ref) > 512 or not _image_reference().fullmatch(ref):
        return (f"image {ref!r} is not an image reference; write e.g. nvcr.io/nvidia/pytorch:24.10-py3 or "
                "name@sha256:<digest> (lowercase path, optional registry, tag and digest)")
    return None


def job_env(job: Job) -> dict[str, str]:
    return dict(job.spec.get("env") or {})


def job_argv(job: Job) -> list[str]:
    """What to execute: the command, or ``docker run --gpus all`` of the job's image with it (the
    image checked against the reference grammar and placed after ``--``, so it cannot be an option)."""
    command = job_command(job)
    image = job.spec.get("image")
    if not image:
        return command
    problem = image_reference_error(image)
    if problem:
        raise LaunchError(f"job {job.id}: {problem}")
    env_flags = [flag for name in sorted(job_env(job)) for flag in ("-e", name)]  # values come from the env
    return ["docker", "run", "--rm", "--gpus", "all", *env_flags, "--", image, *command]


def shell_lines(job: Job) -> list[str]:
    """Bash lines that set the job's environment and run it, every value ``shlex.quote``-d."""
    lines = [f"export {name}={shlex.quote(value)}" for name, value in sorted(job_env(job).items())]
    lines.append(" ".join(shlex.quote(a) for a in job_argv(job)))
    return lines
