"""The local launcher: jobs as detached processes on this machine (on-prem boxes, demos, tests).

Each attempt gets ``<home>/runs/<job>/attempt-<n>/`` (0700) with ``token`` (written before the
start, so ``find`` sees the attempt at once), ``pid`` (``PID START``: the process's start time from
/proc, so a recycled pid is not mistaken for the run), ``log.txt`` (0600) and ``exit.json`` written
by ``carbonsched/runner.py`` when the command ends. The resource id is ``local:<that directory>``.

A token without a pid is a launch that stopped before its process was recorded (the launcher writes
the pid as soon as ``Popen`` returns, and the runner waits for that record before it runs
anything, exiting when it does not come or names another process): ``find`` does not count it,
so the attempt is launched again with the same token, and the run still happens once. ``find`` is asked only by an agent
that holds the job's lease (its previous owner's expired: that agent is gone), or by ``cancel``,
whose state change stops a launch still under way. ``status`` gives a token without a pid
``STARTUP_GRACE_S`` to become a process, then reads it as failed, so no job stays "running"
without one.

Every run is measured: the runner starts ``python -m carbonsched.cli.track --out
<dir>/measurement.json -- CMD`` (``carbonsched track`` with this interpreter, so the tracker is
the agent's own version, without the other commands' imports: 0.05 s instead of 0.2 s a start), which passes the exit code
and signals through; ``measurement`` reads the record back for the agent. No GPU is assumed: a
machine without NVML-readable GPUs records none (the plan's GPUs were not here).

The job's process gets the job's own ``env`` on top of an allow-list of the launching process's
environment (``PASSED_ENV``: paths, locale, terminal, GPU selection), never the rest: an agent's
cloud keys and grid tokens do not leak into every job; the job's ``secrets`` are read from the
launching process's environment at launch (never stored). It starts in the job's ``workdir``
(when it has one) after its ``setup`` script. It also gets ``CARBONSCHED_JOB_ID`` and,
for the segments of an interruptible run, ``CARBONSCHED_SEGMENT`` (0, 1, ...) and
``CARBONSCHED_RESUME=1`` from the second segment on (the job resumes from its checkpoint).

Segments: segment 0 keeps ``attempt-<n>/``; segment k > 0 runs in ``attempt-<n>/segment-<k>/``.
``stop`` ends a segment: SIGTERM to the runner (passed on to the tracker and the command, which
saves its checkpoint), then SIGKILL to its process group after ``grace_s``.
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
from carbonsched.providers.cloud.launcher import (Job, job_argv, job_env, refuse_unsupported, run_env, secret_env,
                                                  with_setup)
from carbonsched.fileio import write_text_atomic
from carbonsched.record import is_record
from carbonsched.runner import proc_stat, process_start

TRACKER_MODULE = "carbonsched.cli.track"  # `carbonsched track` without the other commands' imports
RUNNER_MODULE = "carbonsched.runner"  # a light process entry point (see its docstring)
STARTUP_GRACE_S = 30.0  # a token this old without a pid: the launch died before the process started
ORPHAN_GRACE_S = 5.0  # cancel of a run whose runner died: SIGTERM to its group, SIGKILL this much later
PASSED_ENV = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM",
              "VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONPATH", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES",
              "CUDA_HOME", "NVIDIA_VISIBLE_DEVICES", "HF_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME")
PASSED_ENV_PREFIXES = ("LC_",)


def job_process_env(job: Job, environ=None, segment: int = 0) -> dict[str, str]:
    """The environment a local job runs with: the allow-listed variables of ``environ`` (default:
    this process's), the job's own ``env``, and the job id / segment variables (module docstring)."""
    environ = os.environ if environ is None else environ
    base = {k: v for k, v in environ.items() if k in PASSED_ENV or k.startswith(PASSED_ENV_PREFIXES)}
    return {**base, **job_env(job), **run_env(job, segment)}


class LocalLauncher:
    """Run jobs as local subprocesses under ``<home>/runs/<job>/<attempt>/`` (log.txt, exit.json,
    measurement.json). ``region_id``: where this machine draws its power (settings ``local_region``),
    or None when nobody said."""

    name = "local"

    def __init__(self, home: Path, timeout_s: float | None = None, region_id: str | None = None,
                 kill_after_s: float | None = None):
        self.root = Path(home) / "runs"
        self.timeout_s = timeout_s
        self.region_id = region_id
        self.kill_after_s = kill_after_s  # the runner's grace after SIGTERM (None: runner.KILL_AFTER_S)

    def _dir(self, job_id: str, attempt: int, segment: int = 0) -> Path:
        d = self.root / job_id / f"attempt-{attempt}"
        return d / f"segment-{segment}" if segment else d

    def launch(self, job: Job, placement: dict, attempt: int, token: str, segment: int = 0) -> str:
        refuse_unsupported(job, self.name)
        d = self._dir(job.id, attempt, segment)
        command = [sys.executable, "-m", TRACKER_MODULE, "--quiet", "--out", str(d / "measurement.json"),
                   "--", *with_setup(job, job_argv(job))]
        env = {**job_process_env(job, segment=segment), **secret_env(job)}
        cwd = job.spec.get("workdir") or None
        if cwd and not Path(cwd).is_dir():
            raise LaunchError(f"job {job.id}: its workdir {cwd} is not a folder on this machine")
        try:
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
            for parent in (self.root, self.root / job.id):  # mkdir gives the parents the umask's 0755: runs hold logs
                parent.chmod(0o700)
            (d / "token").write_text(token)  # before the start, so find() sees this attempt at once
            (d / "pid").unlink(missing_ok=True)  # a relaunch of an attempt that never started
        except OSError as exc:  # e.g. <home>/runs is a file: a launch error (the job fails), not a half-made attempt
            raise LaunchError(f"cannot prepare the run folder {d}: {exc.strerror or exc}") from None
        args = [sys.executable, "-m", RUNNER_MODULE, "--dir", str(d), "--token", token]
        if self.timeout_s:
            args += ["--timeout", str(self.timeout_s)]
        if self.kill_after_s is not None:
            args += ["--kill-after", str(self.kill_after_s)]
        with open(os.open(d / "log.txt", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log:
            try:
                proc = subprocess.Popen(args + ["--"] + command, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True, env=env, cwd=cwd)
            except (OSError, ValueError) as exc:  # ValueError: e.g. a NUL byte in an argument
                raise LaunchError(f"cannot start the local runner: {exc}") from None
        # the runner runs nothing until this names it (runner._confirmed): if this process dies first,
        # the attempt reads "not started" and the orphan runner exits, so no run happens twice
        write_text_atomic(d / "pid", f"{proc.pid} {process_start(proc.pid) or ''}".strip(), durable=False)
        return f"local:{d}"

    def find(self, job: Job, attempt: int, token: str, segment: int = 0) -> str | None:
        d = self._dir(job.id, attempt, segment)
        try:
            if (d / "token").read_text() != token:
                return None
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not (d / "pid").exists():
            return None  # the launch died between the token and the process: launch it again
        return f"local:{d}"

    def ran_on(self, placement: dict) -> dict:
        """Where a run of ``placement`` really happens: this machine, whatever the plan said."""
        return {"launcher": self.name, "where": "this machine", "region_id": self.region_id,
                "instance_type": None, "market": None}

    def measurement(self, resource_id: str) -> dict | None:
        """The run's measurement record (None when the tracker wrote none: killed, never started)."""
        try:
            doc = json.loads((self._path(resource_id) / "measurement.json").read_text())
        except (FileNotFoundError, ValueError):
            return None
        return doc if is_record(doc) else None

    def stop(self, resource_id: str, grace_s: float = 30.0) -> bool:
        """End a segment: SIGTERM, wait up to ``grace_s`` for the runner's exit.json, then SIGKILL the
        run's process group. True when it ended on its own terms (its record is written)."""
        d = self._path(resource_id)
        self.cancel(resource_id)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if (d / "exit.json").exists():
                return _stopped_cleanly(d)
            pid = _read_pid(d)
            if pid is None or not _alive(*pid):
                return _stopped_cleanly(d)
            time.sleep(0.05)
        pid = _read_pid(d)
        if pid is not None and _alive(*pid):
            try:
                os.killpg(pid[0], signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        return False

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
        if _alive(*pid) or _orphaned(pid[0]):  # the runner, or what it started if it was killed
            return "running", None
        return "failed", None  # died without writing exit.json

    def cancel(self, resource_id: str) -> None:
        """SIGTERM to the runner, which passes it on and kills the run's process group if it is still
        there ``runner.KILL_AFTER_S`` later. A runner that died (killed) leaves its group without
        that guard: the group gets SIGTERM, then SIGKILL after ``ORPHAN_GRACE_S``."""
        pid = _read_pid(self._path(resource_id))
        if pid is None:
            return
        if _alive(*pid):
            try:
                os.kill(pid[0], signal.SIGTERM)
            except ProcessLookupError:
                pass
            return
        if _orphaned(pid[0]):
            _stop_group(pid[0], ORPHAN_GRACE_S)

    def logs(self, resource_id: str) -> str | None:
        try:
            return (self._path(resource_id) / "log.txt").read_text(errors="replace")
        except FileNotFoundError:
            return None


def _group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process of the run's process group -- the runner's session, which
    the tracker and the command share -- is still there: the runner may be gone while its command
    runs on. Read from /proc (a zombie still counts for ``killpg``); ``killpg(pgid, 0)`` without it."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True
    for entry in proc.iterdir():
        fields = proc_stat(int(entry.name)) if entry.name.isdigit() else None  # None: it ended while we looked
        if fields is not None and len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def _orphaned(pid: int) -> bool:
    """The runner ``pid`` is gone but its process group is not: the command it started runs on. (A
    pid leading a live group is never reused, so a group with no process of that pid is the run's;
    a process with that pid is the runner, or a recycled pid that ``_alive`` tells apart.)"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return _group_alive(pid)
    except PermissionError:
        return False
    return _zombie(pid) and _group_alive(pid)  # a zombie runner still leads its group


def _stop_group(pgid: int, grace_s: float) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and _group_alive(pgid):
            time.sleep(0.05)


def _stopped_cleanly(d: Path) -> bool:
    """The run wrote its ``exit.json`` and was not killed by its runner for ignoring the signal."""
    try:
        return "killed" not in json.loads((d / "exit.json").read_text())
    except (FileNotFoundError, ValueError):
        return False


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
    if _zombie(pid):  # exited, not yet reaped by its parent (the agent that launched it): not running
        return False
    now = process_start(pid)
    return start is None or now is None or now == start


def _zombie(pid: int) -> bool:
    fields = proc_stat(pid)
    return fields is not None and fields[:1] == ["Z"]
