"""The local job runner: ``python -m carbonsched.runner --dir DIR [--timeout S] -- CMD ...``.

A process entry point, not a library module: the local launcher (``providers/cloud/local.py``)
starts one per job, so it imports only the standard library and ``carbonsched.fileio`` (no numpy,
no package registries: starting a job costs one interpreter start). It stays at this path because
runs already in a store were started as ``python -m carbonsched.runner``.

Started detached by the local launcher, which writes the runner's ``pid`` into DIR as soon as it
has started it. The runner waits for that record before it runs anything: a launcher killed in
between leaves an attempt that the next agent launches again (a token without a pid), so the
orphaned runner exits without running CMD, and a run happens exactly once. Then it runs CMD (no
shell: arguments as given),
forwards SIGTERM/SIGINT/SIGHUP to it, enforces the timeout (SIGTERM, then SIGKILL after 10 s),
and writes ``exit.json`` atomically: ``{"exit_code", "started_at", "finished_at",
"duration_s", "timed_out", "signal"}``. Its own exit status is the command's (127 when the command
does not exist, 128+N when killed by signal N). A run still there ``KILL_AFTER_S`` after a
forwarded signal (the job contract: save the checkpoint and exit within 30 s) is killed with its
whole process group -- the tracker and everything the command started -- after ``exit.json``
says so: a job that ignores SIGTERM ran on forever after `carbonsched cancel` said "cancelled".
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from carbonsched.fileio import write_json_atomic

STARTUP_WAIT_S = 20.0  # how long a new runner waits for its launcher to record it (local.STARTUP_GRACE_S is longer)
KILL_AFTER_S = 30.0  # a run still there this long after SIGTERM/SIGINT/SIGHUP is killed, process group and all
TIMEOUT_KILL_S = 10.0  # after the timeout's SIGTERM


def proc_stat(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields after the command name (field 3, the state, first), or None when
    the process is gone (or there is no /proc)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_start(pid: int) -> str | None:
    """Process start time since boot (/proc/PID/stat field 22), to tell a recycled pid apart."""
    fields = proc_stat(pid)
    return fields[19] if fields is not None and len(fields) > 19 else None


def _confirmed(directory: Path, wait_s: float) -> bool:
    """Wait until the launcher has written THIS process's pid to ``pid`` (it does right after
    starting it). A launcher killed before that leaves a run no agent knows of: the next agent
    finds a token without a pid and launches again, so this one must not run the command; and a
    pid file naming another process means that newer launch owns the attempt."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            owner = (directory / "pid").read_text().split()[0]
        except (FileNotFoundError, IndexError):
            owner = None
        if owner == str(os.getpid()):
            return True
        if owner is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.01)


def run(directory: Path, command: list[str], timeout_s: float | None, token: str,
        startup_wait_s: float = STARTUP_WAIT_S, kill_after_s: float = KILL_AFTER_S) -> int:
    received: list[int] = []
    child = None

    def forward(signum, _frame):
        received.append(signum)
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # before the pid is known: none is lost
        signal.signal(sig, forward)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not _confirmed(directory, startup_wait_s):
        return 0  # the launcher died before it recorded this process, or a newer launch replaced it
    started = datetime.now(timezone.utc)
    t0 = time.monotonic()
    if received:  # cancelled before the command started: do not start it
        return _exit(directory, 128 + received[-1], started, finished=started, duration_s=0.0, sig=received[-1])
    try:
        child = subprocess.Popen(command)
    except OSError as exc:
        print(f"carbonsched runner: cannot run {command[0]!r}: {exc}", file=sys.stderr)
        return _exit(directory, 127 if isinstance(exc, FileNotFoundError) else 126, started, duration_s=0.0,
                     error=str(exc))
    if received:  # a signal came while it started: pass it on now
        child.send_signal(received[-1])
    timed_out, kill_at = False, None  # kill_at: when a run asked to stop is killed
    while True:
        try:
            child.wait(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        if timeout_s is not None and not timed_out and now - t0 >= timeout_s:
            timed_out = True
            child.terminate()
            kill_at = min(kill_at or float("inf"), now + TIMEOUT_KILL_S)
        if received and kill_at is None:
            kill_at = now + kill_after_s
        if kill_at is not None and now >= kill_at:
            # exit.json first: the runner dies with the group it kills
            code = _exit(directory, 128 + signal.SIGKILL, started, duration_s=round(time.monotonic() - t0, 3),
                         timed_out=timed_out, sig=int(signal.SIGKILL), killed="it did not stop when asked")
            _kill(child)
            return code
    rc = child.returncode
    return _exit(directory, 128 - rc if rc < 0 else rc, started, duration_s=round(time.monotonic() - t0, 3),
                 timed_out=timed_out, sig=-rc if rc < 0 else (received[-1] if received else None))


def _exit(directory: Path, code: int, started: datetime, *, duration_s: float, finished: datetime | None = None,
          timed_out: bool = False, sig: int | None = None, **extra) -> int:
    """Write ``exit.json`` (module docstring; ``extra``: ``error``, ``killed``) and return ``code``."""
    write_json_atomic(directory / "exit.json", {
        "exit_code": code, "started_at": started.isoformat(),
        "finished_at": (finished or datetime.now(timezone.utc)).isoformat(), "duration_s": duration_s,
        "timed_out": timed_out, "signal": sig, **extra})
    return code


def _kill(child: subprocess.Popen) -> None:
    """Kill a run that did not stop when asked: SIGKILL to the process group this runner leads (the
    launcher starts it in a session of its own), else to the child alone."""
    if os.getpgrp() == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)
    child.kill()
    child.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m carbonsched.runner")
    ap.add_argument("--dir", required=True, type=Path)
    ap.add_argument("--timeout", type=float)
    ap.add_argument("--token", required=True)
    ap.add_argument("--startup-wait", type=float, default=STARTUP_WAIT_S, help=argparse.SUPPRESS)
    ap.add_argument("--kill-after", type=float, default=KILL_AFTER_S, help=argparse.SUPPRESS)
    ap.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args(argv)
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not command:
        ap.error("no command given after --")
    return run(a.dir, command, a.timeout, a.token, a.startup_wait, a.kill_after)


if __name__ == "__main__":
    sys.exit(main())
