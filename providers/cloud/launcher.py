"""Launchers: how a placement becomes a running job. The protocol and the job payload helpers.

A launcher has a ``name`` and::

    launch(job, placement, attempt, token, segment=0) -> str   # resource id; CapacityError -> failover
    find(job, attempt, token, segment=0) -> str | None          # a resource this attempt already started
    status(resource_id) -> (state, exit_code)        # running | succeeded | failed | unknown
    cancel(resource_id) -> None
    logs(resource_id) -> str | None
    ran_on(placement) -> dict                        # where a run of the placement really happens
    measurement(resource_id) -> dict | None          # the run's measurement record, once it ended
    stop(resource_id, grace_s) -> bool               # optional: end one segment of an interruptible run

Every launcher runs the job under ``carbonsched track`` (measured by default) and brings the
record back through ``measurement``; ``segment`` > 0 is the k-th resume of an interruptible run
(``run_env``). A launcher without ``stop`` runs an interruptible job start to end (the agent says so).

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

import os
import re
import shlex
from functools import lru_cache
from typing import Protocol

from carbonsched.errors import LaunchError
from carbonsched.record import decode_marked


class Job(Protocol):
    """What a launcher reads of a stored job (``carbonsched.run.store.Job`` is one)."""

    id: str
    spec: dict  # the job file's table: command, image, env, ...


class Launcher(Protocol):
    name: str

    def launch(self, job: Job, placement: dict, attempt: int, token: str, segment: int = 0) -> str: ...

    def find(self, job: Job, attempt: int, token: str, segment: int = 0) -> str | None: ...

    def status(self, resource_id: str) -> tuple[str, int | None]: ...

    def cancel(self, resource_id: str) -> None: ...

    def logs(self, resource_id: str) -> str | None: ...

    def ran_on(self, placement: dict) -> dict: ...

    def measurement(self, resource_id: str) -> dict | None: ...


def launch_token(job_id: str, attempt: int) -> str:
    """Idempotency token for one attempt of one job (<= 64 chars, as EC2 ClientToken allows)."""
    import hashlib  # here, not at the top: `plan` imports this module and never needs it

    return "cs-" + hashlib.sha256(f"{job_id}/{attempt}".encode()).hexdigest()[:40]


def job_command(job: Job) -> list[str]:
    """The job's command as an argument list: ``command`` split (no shell), or ``run`` as a bash
    script (SkyPilot's meaning); LaunchError when there is neither."""
    if (job.spec.get("run") or "").strip():
        return ["bash", "-c", job.spec["run"]]
    command = (job.spec.get("command") or "").strip()
    if not command:
        if job.spec.get("image"):
            return []  # the image's own entry point
        raise LaunchError(f"job {job.id} has no command; add command = \"...\" (or run = \"...\") to the job file")
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


def run_env(job: Job, segment: int = 0) -> dict[str, str]:
    """What every launcher tells the job about its run: its id, ``CARBONSCHED_CHECKPOINT_DIR`` when
    the job has a ``checkpoint_dir``, and for the segments of an interruptible run the segment
    number and, from the second on, ``CARBONSCHED_RESUME=1`` (see the job file reference)."""
    env = {"CARBONSCHED_JOB_ID": str(job.id)}
    if job.spec.get("checkpoint_dir"):
        env["CARBONSCHED_CHECKPOINT_DIR"] = str(job.spec["checkpoint_dir"])
    if segment:
        env.update(CARBONSCHED_SEGMENT=str(segment), CARBONSCHED_RESUME="1")
    return env


def secret_env(job: Job, environ=None) -> dict[str, str]:
    """The job's ``secrets`` with their values, read now from ``environ`` (default: this process's,
    the one that launches); LaunchError naming any that is not set (no launch can do without it)."""
    environ = os.environ if environ is None else environ
    names = list(job.spec.get("secrets") or ())
    missing = [n for n in names if not environ.get(n)]
    if missing:
        raise LaunchError(f"job {job.id}: secret(s) {', '.join(missing)} are not set in the environment of the process "
                          "that launches it (submit, or the agent for a deferred job); export them there")
    return {n: environ[n] for n in names}


# the payload keys not every launcher can honour (command/run, setup, env, image, checkpoint_dir:
# all of them), in words, and which launcher honours which (spec/payload.py documents the keys)
PAYLOAD_LIMITS = {"workdir": "syncing a workdir", "file_mounts": "file mounts",
                  "secrets": "secrets (values kept out of instance metadata)", "num_nodes": "more than one node"}
LAUNCHER_SUPPORT = {"local": frozenset({"workdir", "secrets"}), "aws": frozenset(), "gcp": frozenset(),
                    "skypilot": frozenset(PAYLOAD_LIMITS)}


def payload_gaps(spec: dict, launcher: str) -> list[str]:
    """What of a job ``spec``'s payload ``launcher`` cannot honour, in words (an unknown launcher: nothing)."""
    allowed = LAUNCHER_SUPPORT.get(launcher, frozenset(PAYLOAD_LIMITS))
    asked = {k: (int(spec.get(k) or 1) > 1 if k == "num_nodes" else bool(spec.get(k))) for k in PAYLOAD_LIMITS}
    return [words for k, words in PAYLOAD_LIMITS.items() if asked[k] and k not in allowed]


def refuse_unsupported(job: Job, launcher: str) -> None:
    """LaunchError when the job asks for payload ``launcher`` cannot honour (a job stored before the
    check at submit, or moved to another launcher): the message names the SkyPilot launcher."""
    gaps = payload_gaps(job.spec, launcher)
    if gaps:
        raise LaunchError(f"job {job.id}: the {launcher} launcher cannot honour {', '.join(gaps)}; "
                          "submit it with --launcher skypilot")


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
    names = {*job_env(job), *run_env(job), *(job.spec.get("secrets") or ())}
    env_flags = [flag for name in sorted(names) for flag in ("-e", name)]  # values come from the env
    return ["docker", "run", "--rm", "--gpus", "all", *env_flags, "--", image, *command]


def with_setup(job: Job, argv: list[str]) -> list[str]:
    """``argv`` preceded by the job's ``setup`` script (bash), which must succeed first."""
    setup = (job.spec.get("setup") or "").strip()
    if not setup:
        return argv
    return ["bash", "-c", '{\n' + setup + '\n} || exit $?\nexec "$@"', "carbonsched-setup", *argv]


RECORD_PATH = "/var/lib/carbonsched/measurement.json"
UNMEASURED_MARK = "carbonsched-measurement-unavailable: "


def segments_of(placement: dict | None) -> list[dict]:
    """The planned segments of an interruptible placement ([] for a run start to end)."""
    return list(((placement or {}).get("interruptible") or {}).get("segments") or [])


def stoppable(placement: dict) -> bool:
    """Whether an instance launcher runs ``placement`` in segments by stopping and starting its
    instance: an interruptible on-demand placement (a one-time spot instance cannot be stopped,
    and GCE deletes a preempted SPOT one; those run to the end)."""
    return len(segments_of(placement)) > 1 and placement.get("market") != "spot"


EXIT_MARK = re.compile(r"carbonsched-exit-code: (\d+)")


def last_exit_code(console: str | None) -> int | None:
    """The exit status the boot script printed last (earlier ones ended segments), or None."""
    codes = EXIT_MARK.findall(console or "")
    return int(codes[-1]) if codes else None


def segment_lines(state_dir: str = "/var/lib/carbonsched") -> list[str]:
    """Bash lines for a boot script that runs at every boot: number this boot's segment (0, 1, ...)
    in a file on the instance's disk and export ``CARBONSCHED_SEGMENT`` / ``CARBONSCHED_RESUME``."""
    counter = shlex.quote(f"{state_dir}/segment")
    return [f"mkdir -p {shlex.quote(state_dir)}",
            f"CARBONSCHED_SEGMENT=$(( $(cat {counter} 2>/dev/null || echo -1) + 1 ))",
            f"echo \"$CARBONSCHED_SEGMENT\" > {counter}",
            "export CARBONSCHED_SEGMENT",
            'if [ "$CARBONSCHED_SEGMENT" -gt 0 ]; then export CARBONSCHED_RESUME=1; fi']


def shell_lines(job: Job, placement: dict | None = None, *, install: str | None = None,
                record_path: str = RECORD_PATH, segmented: bool = False) -> list[str]:
    """Bash lines that set the job's environment and run it under ``carbonsched track``, every value
    ``shlex.quote``-d. The tracker must be on the image (or ``install``, a pip requirement, puts it
    there); it prints the record as a marked console line (``carbonsched.record``) and passes the
    command's exit status through, which the lines leave in ``$?``. Without a tracker the command
    runs unmeasured and a ``carbonsched-measurement-unavailable:`` line says why. The placement's
    GPUs are what the tracker models when NVML cannot be read (they are on this instance).
    ``segmented``: the lines run at every boot of an interruptible run (``segment_lines``)."""
    env = {**job_env(job), **run_env(job)}
    lines = [f"export {name}={shlex.quote(value)}" for name, value in sorted(env.items())]
    if segmented:
        lines += segment_lines(record_path.rsplit("/", 1)[0])
    argv = " ".join(shlex.quote(a) for a in with_setup(job, job_argv(job)))
    hw = ""
    if placement and placement.get("gpu") and placement.get("gpu_count"):
        hw = f" --gpu {shlex.quote(str(placement['gpu']))} --gpus {int(placement['gpu_count'])}"
    if install:
        lines.append("command -v carbonsched >/dev/null 2>&1 || python3 -m pip install --quiet "
                     f"{shlex.quote(install)} >/dev/null 2>&1")
    lines += [
        f"mkdir -p {shlex.quote(record_path.rsplit('/', 1)[0])}",
        "if command -v carbonsched >/dev/null 2>&1; then",
        f"  carbonsched track --quiet --mark --out {shlex.quote(record_path)}{hw} -- {argv}",
        "else",
        f"  echo '{UNMEASURED_MARK}carbonsched is not installed on the image (install it there, or set "
        "CARBONSCHED_REMOTE_INSTALL to a pip requirement)'",
        f"  {argv}",
        "fi",
    ]
    return lines


def unmeasured_reason(console: str | None) -> str | None:
    """Why a cloud run was not measured, as its boot script said (None when it did not say)."""
    for line in reversed((console or "").splitlines()):
        at = line.find(UNMEASURED_MARK)
        if at >= 0:
            return line[at + len(UNMEASURED_MARK):].strip()
    return None


class ConsoleRecord:
    """``ran_on`` and ``measurement`` for launchers whose runs report through a console (EC2, GCE):
    the run is where the placement says (the cloud API started exactly that), and the record is
    the last marked line of the console output (``shell_lines``)."""

    name: str

    def logs(self, resource_id: str) -> str | None: ...

    def ran_on(self, placement: dict) -> dict:
        return {"launcher": self.name, "where": "cloud", "region_id": placement.get("region_id"),
                "instance_type": placement.get("instance_type"), "market": placement.get("market")}

    def measurement(self, resource_id: str) -> dict | None:
        return decode_marked(self.logs(resource_id))

    def ended(self, resource_id: str) -> tuple[str, int | None]:
        """How a run that is no longer running ended, from the exit status its script printed: no
        status line (killed, preempted, console gone) reads as failed."""
        code = last_exit_code(self.logs(resource_id))
        return ("failed", None) if code is None else (("succeeded" if code == 0 else "failed"), code)
