"""The local launcher: jobs as detached processes on this machine (on-prem boxes, demos, tests).

Each attempt gets ``<home>/runs/<job>/attempt-<n>/`` with ``token`` (written before the start, so
``find`` sees the attempt at once), ``pid``, ``log.txt`` and ``exit.json`` written by
``carbonsched/runner.py`` when the command ends. The resource id is ``local:<that directory>``.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from carbonsched.errors import LaunchError
from carbonsched.providers.cloud.launcher import Job, job_argv, job_env

RUNNER_MODULE = "carbonsched.runner"  # a light process entry point (see its docstring)


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
        args = [sys.executable, "-m", RUNNER_MODULE, "--dir", str(d), "--token", token]
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
