"""Launchers: how a placement becomes a running job. One protocol, an explicit registry.

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

The local launcher runs the job's command on this machine (on-prem boxes, demos, tests) through
``carbonsched.runner``: detached, logs to a file, exit code and duration recorded. Cloud
launchers live in ``carbonsched.providers.cloud`` and register here.
"""
from __future__ import annotations

import hashlib
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable, Protocol

from .errors import LaunchError, UnknownNameError
from .store import Job


class Launcher(Protocol):
    name: str

    def launch(self, job: Job, placement: dict, attempt: int, token: str) -> str: ...

    def find(self, job: Job, attempt: int, token: str) -> str | None: ...

    def status(self, resource_id: str) -> tuple[str, int | None]: ...

    def cancel(self, resource_id: str) -> None: ...

    def logs(self, resource_id: str) -> str | None: ...


def launch_token(job_id: str, attempt: int) -> str:
    """Idempotency token for one attempt of one job (<= 64 chars, as EC2 ClientToken allows)."""
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


def job_env(job: Job) -> dict[str, str]:
    return dict(job.spec.get("env") or {})


def job_argv(job: Job) -> list[str]:
    """What to execute: the command, or ``docker run --gpus all`` of the job's image with it."""
    command = job_command(job)
    image = job.spec.get("image")
    if not image:
        return command
    env_flags = [flag for name in sorted(job_env(job)) for flag in ("-e", name)]  # values come from the env
    return ["docker", "run", "--rm", "--gpus", "all", *env_flags, image, *command]


def shell_lines(job: Job) -> list[str]:
    """Bash lines that set the job's environment and run it, every value ``shlex.quote``-d."""
    lines = [f"export {name}={shlex.quote(value)}" for name, value in sorted(job_env(job).items())]
    lines.append(" ".join(shlex.quote(a) for a in job_argv(job)))
    return lines


class LocalLauncher:
    """Run jobs as local subprocesses under ``<home>/runs/<job>/<attempt>/`` (log.txt, exit.json)."""

    name = "local"

    def __init__(self, home: Path, timeout_s: float | None = None):
        self.root = Path(home) / "runs"
        self.timeout_s = timeout_s

    def _dir(self, job_id: str, attempt: int) -> Path:
        return self.root / job_id / f"attempt-{attempt}"

    def launch(self, job: Job, placement: dict, attempt: int, token: str) -> str:
        command = job_argv(job)
        d = self._dir(job.id, attempt)
        d.mkdir(parents=True, exist_ok=True)
        (d / "token").write_text(token)  # before the start, so find() sees this attempt at once
        args = [sys.executable, "-m", "carbonsched.runner", "--dir", str(d), "--token", token]
        if self.timeout_s:
            args += ["--timeout", str(self.timeout_s)]
        with open(d / "log.txt", "ab") as log:
            try:
                proc = subprocess.Popen(args + ["--"] + command, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True,
                                        env={**os.environ, **job_env(job)})
            except OSError as exc:
                raise LaunchError(f"cannot start the local runner: {exc}") from None
        (d / "pid").write_text(str(proc.pid))  # the runner writes it too; cancel() must work at once
        return f"local:{d}"

    def find(self, job: Job, attempt: int, token: str) -> str | None:
        d = self._dir(job.id, attempt)
        try:
            return f"local:{d}" if (d / "token").read_text() == token else None
        except FileNotFoundError:
            return None

    @staticmethod
    def _path(resource_id: str) -> Path:
        if not resource_id.startswith("local:"):
            raise LaunchError(f"{resource_id!r} is not a local run")
        return Path(resource_id[len("local:"):])

    def status(self, resource_id: str) -> tuple[str, int | None]:
        d = self._path(resource_id)
        try:
            import json

            doc = json.loads((d / "exit.json").read_text())
            return ("succeeded" if doc["exit_code"] == 0 else "failed"), int(doc["exit_code"])
        except FileNotFoundError:
            pass
        try:
            pid = int((d / "pid").read_text())
        except (FileNotFoundError, ValueError):
            return "running", None  # the runner is starting: it writes pid first thing
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return "failed", None  # the runner died without writing exit.json
        except PermissionError:
            pass
        return "running", None

    def cancel(self, resource_id: str) -> None:
        d = self._path(resource_id)
        try:
            pid = int((d / "pid").read_text())
            os.kill(pid, signal.SIGTERM)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            pass

    def logs(self, resource_id: str) -> str | None:
        try:
            return (self._path(resource_id) / "log.txt").read_text(errors="replace")
        except FileNotFoundError:
            return None


def _local(settings, **kw) -> Launcher:
    return LocalLauncher(Path(settings.home), **kw)


def _aws(settings, **kw) -> Launcher:
    from carbonsched.providers.cloud.aws_launch import DEFAULT_AMI_PARAMETER, Ec2Launcher

    return Ec2Launcher(ami_parameter=os.environ.get("CARBONSCHED_AWS_AMI_PARAMETER", DEFAULT_AMI_PARAMETER),
                       ami_id=os.environ.get("CARBONSCHED_AWS_AMI_ID") or None, **kw)


def _gcp(settings, **kw) -> Launcher:
    from carbonsched.providers.cloud.gcp_launch import GceLauncher

    return GceLauncher(**kw)


LAUNCHERS: dict[str, Callable[..., Launcher]] = {"local": _local, "aws": _aws, "gcp": _gcp}


def get_launcher(name: str, settings, **kw) -> Launcher:
    try:
        factory = LAUNCHERS[name]
    except KeyError:
        raise UnknownNameError(f"unknown launcher {name!r}; known: {', '.join(LAUNCHERS)}") from None
    return factory(settings, **kw)
