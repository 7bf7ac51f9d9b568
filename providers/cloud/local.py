"""The local launcher: jobs as detached processes on this machine (on-prem boxes, demos, tests).

Each attempt gets ``<home>/runs/<job>/attempt-<n>/`` (0700) with ``token`` (written before the
start, so ``find`` sees the attempt at once), ``pid`` (``PID START``: the process's start time from
/proc, so a recycled pid is not mistaken for the run), ``log.txt`` (0600) and ``exit.json`` written
by ``carbonsched/runner.py`` when the command ends. The resource id is ``local:<that directory>``.

A token without a pid is a launch that stopped before the process started (the launcher writes the
pid itself as soon as ``Popen`` returns, and the runner writes it first thing): ``find`` does not
count it, so the attempt is launched again with the same token. ``find`` is asked only by an agent
that holds the job's lease (its previous owner's expired: that agent is gone), or by ``cancel``,
whose state change stops a launch still under way. ``status`` gives a token without a pid
``STARTUP_GRACE_S`` to become a process, then reads it as failed, so no job stays "running"
without one.

The job's process gets the job's own ``env`` on top of an allow-list of the launching process's
environment (``PASSED_ENV``: paths, locale, terminal, GPU selection), never the rest: an agent's
cloud keys and grid tokens do not leak into every job.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from carbonsched.errors import LaunchError
from carbonsched.providers.cloud.launcher import Job, job_argv, job_env
from carbonsched.runner import process_start

RUNNER_MODULE = "carbonsched.runner"  # a light process entry point (see its docstring)
STARTUP_GRACE_S = 30.0  # a token this old without a pid: the launch died before the process started
PASSED_ENV = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM",
              "VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONPATH", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES",
              "CUDA_HOME", "NVIDIA_VISIBLE_DEVICES", "HF_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME")
PASSED_ENV_PREFIXES = ("LC_",)


def job_process_env(job: Job, environ=None) -> dict[str, str]:
    """The environment a local job runs with: the allow-listed variables of ``environ`` (default:
    this process's) plus the job's own ``env``."""
    environ = os.environ if environ is None else environ
    base = {k: v for k, v in environ.items() if k in PASSED_ENV or k.startswith(PASSED_ENV_PREFIXES)}
    return {**base, **job_env(job)}


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
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        (d / "token").write_text(token)  # before the start, so find() sees this attempt at once
        (d / "pid").unlink(missing_ok=True)  # a relaunch of an attempt that never started
        args = [sys.executable, "-m", RUNNER_MODULE, "--dir", str(d), "--token", token]
        if self.timeout_s:
            args += ["--timeout", str(self.timeout_s)]
        with open(os.open(d / "log.txt", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log:
            try:
                proc = subprocess.Popen(args + ["--"] + command, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True,
                                        env=job_process_env(job))
            except (OSError, ValueError) as exc:  # ValueError: e.g. a NUL byte in an argument
                raise LaunchError(f"cannot start the local runner: {exc}") from None
        if not (d / "pid").exists():  # the runner writes it first thing; cancel() must work at once
            (d / "pid").write_text(f"{proc.pid} {process_start(proc.pid) or ''}".strip())
        return f"local:{d}"

    def find(self, job: Job, attempt: int, token: str) -> str | None:
        d = self._dir(job.id, attempt)
        try:
            if (d / "token").read_text() != token:
                return None
        except FileNotFoundError:
            return None
        if not (d / "pid").exists():
            return None  # the launch died between the token and the process: launch it again
        return f"local:{d}"

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
        pid = _read_pid(d)
        if pid is None:
            if _age_s(d / "token") > STARTUP_GRACE_S:
                return "failed", None  # never started: the launch died before the process existed
            return "running", None  # the runner is starting: it writes pid first thing
        return ("running", None) if _alive(*pid) else ("failed", None)  # died without writing exit.json

    def cancel(self, resource_id: str) -> None:
        pid = _read_pid(self._path(resource_id))
        if pid is not None and _alive(*pid):
            try:
                os.kill(pid[0], signal.SIGTERM)
            except ProcessLookupError:
                pass

    def logs(self, resource_id: str) -> str | None:
        try:
            return (self._path(resource_id) / "log.txt").read_text(errors="replace")
        except FileNotFoundError:
            return None


def _age_s(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")


def _read_pid(d: Path) -> tuple[int, str | None] | None:
    """``(pid, start)`` from the run's pid file (``PID`` or ``PID START``), None when absent."""
    try:
        parts = (d / "pid").read_text().split()
        return int(parts[0]), (parts[1] if len(parts) > 1 else None)
    except (FileNotFoundError, ValueError, IndexError):
        return None


def _alive(pid: int, start: str | None) -> bool:
    """Whether ``pid`` is still the run's process (a recycled pid has another start time)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else: a recycled pid unless the start time matches
    now = process_start(pid)
    return start is None or now is None or now == start
