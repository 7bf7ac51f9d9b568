"""The job's payload: what reaches the machine besides the command, with SkyPilot's meanings.

Job-file keys (beside ``command``, ``image`` and ``env`` in ``spec/job.py``)::

    run = "python train.py --epochs 3"     # a bash script (SkyPilot's `run`); or `command`, split into
                                           # arguments without a shell; not both
    setup = "pip install -r requirements.txt"   # bash, before the run (SkyPilot: once per cluster;
                                           # local, EC2, GCE: before every launch)
    workdir = "."                          # a local folder synced to the machine, where the run starts
                                           # (relative to the job file)
    envs = { WANDB_PROJECT = "x" }         # SkyPilot's name for `env` (give one of them)
    secrets = ["HF_TOKEN", "WANDB_API_KEY"]   # names only: each value is read from the environment
                                           # of the process that launches (submit, or the agent for a
                                           # deferred job) and never stored
    num_nodes = 2                          # instances of the placement, each with `gpus` GPUs
                                           # (default 1; more needs --launcher skypilot)
    checkpoint_dir = "/checkpoints"        # where the job saves and resumes; given to it as
                                           # CARBONSCHED_CHECKPOINT_DIR

    [file_mounts]                          # remote path = local path (relative to the job file) or
    "/data" = "s3://my-bucket/imagenet"    # a bucket URI (s3://, gs://, r2://, cos://, https://)
    "/configs" = "./configs"

What each launcher can honestly do (``providers.cloud.launcher.LAUNCHER_SUPPORT``, checked by
``payload_gaps`` at submit and again at launch): ``local`` runs setup, run/command,
workdir (as the working directory), env and secrets on this machine, one node, no file mounts
(point the job at the files); ``aws``/``gcp`` put setup, run/command and env into the boot script,
and refuse workdir, file mounts, secrets (the boot script is readable instance metadata) and more
than one node, naming the SkyPilot launcher; ``skypilot`` takes them all.

Local paths are checked when a job is submitted (``check_payload_paths``), not when it is planned:
a plan may be made on a machine that does not hold the data.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from carbonsched.errors import JobSpecError

BUCKET_SCHEMES = ("s3://", "gs://", "r2://", "cos://", "oci://", "https://", "http://")
MAX_NODES = 64
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
PAYLOAD_KEYS = ("run", "setup", "workdir", "file_mounts", "secrets", "num_nodes", "checkpoint_dir")

# launcher -> payload keys it supports (command, image and env: every launcher)


@dataclass(frozen=True)
class Payload:
    """The payload keys of a job (module docstring); every field optional."""

    run: str | None = None
    setup: str | None = None
    workdir: str | None = None
    file_mounts: dict[str, str] | None = None
    secrets: tuple[str, ...] = ()
    num_nodes: int = 1
    checkpoint_dir: str | None = None

    def to_dict(self) -> dict:
        """The keys that are set (the job's echo carries only those)."""
        out = {k: getattr(self, k) for k in ("run", "setup", "workdir", "checkpoint_dir") if getattr(self, k)}
        if self.file_mounts:
            out["file_mounts"] = dict(self.file_mounts)
        if self.secrets:
            out["secrets"] = list(self.secrets)
        if self.num_nodes != 1:
            out["num_nodes"] = self.num_nodes
        return out


def is_bucket(source: str) -> bool:
    return source.startswith(BUCKET_SCHEMES)


def _text(flat: dict, key: str) -> str | None:
    value = flat.get(key)
    if value is not None and not value.strip():
        raise JobSpecError(f"{key} is empty; leave it out or give a {'path' if key in ('workdir', 'checkpoint_dir') else 'script'}")
    return value


def _resolve(path: str, base: Path | None) -> str:
    p = Path(path).expanduser()
    return str((base / p) if base is not None and not p.is_absolute() else p)


def payload_from_flat(flat: dict, base: Path | None = None) -> Payload:
    """The payload of a validated flat job table (``spec.job._flatten``); ``base``: the job file's
    folder, against which relative local paths resolve."""
    if flat.get("run") is not None and flat.get("command") is not None:
        raise JobSpecError("give either command (split into arguments, no shell) or run (a bash script), not both")
    workdir = _text(flat, "workdir")
    mounts = {}
    for remote, source in (flat.get("file_mounts") or {}).items():
        if not remote.startswith(("/", "~")):
            raise JobSpecError(f"file_mounts: {remote!r} must be an absolute remote path (e.g. \"/data\")")
        if not isinstance(source, str) or not source.strip():
            raise JobSpecError(f"file_mounts.{remote} must be a local path or a bucket URI such as s3://bucket/path")
        mounts[remote] = source if is_bucket(source) else _resolve(source, base)
    secrets = tuple(flat.get("secrets") or ())
    bad = [s for s in secrets if not _ENV_NAME.fullmatch(s)]
    if bad:
        raise JobSpecError(f"secrets: {', '.join(map(repr, bad))} are not environment variable names (A-Z, 0-9, _)")
    nodes = flat.get("num_nodes", 1)
    if isinstance(nodes, bool) or not isinstance(nodes, int) or not 1 <= nodes <= MAX_NODES:
        raise JobSpecError(f"num_nodes must be a whole number from 1 to {MAX_NODES}, got {nodes!r}")
    checkpoint = _text(flat, "checkpoint_dir")
    if checkpoint is not None and not checkpoint.startswith(("/", "~")):
        raise JobSpecError(f"checkpoint_dir must be an absolute path on the machine that runs the job, got {checkpoint!r}")
    return Payload(run=_text(flat, "run"), setup=_text(flat, "setup"),
                   workdir=_resolve(workdir, base) if workdir else None, file_mounts=mounts or None,
                   secrets=secrets, num_nodes=nodes, checkpoint_dir=checkpoint)


def check_payload_paths(spec: dict) -> None:
    """At submit: the local workdir and mount sources exist (JobSpecError naming the first problem
    and the fix). Secrets are checked by the launch itself: a deferred job's come from the agent."""
    if spec.get("workdir") and not Path(spec["workdir"]).is_dir():
        raise JobSpecError(f"workdir {spec['workdir']} is not a folder on this machine; fix the path (relative paths "
                           "start at the job file's folder)")
    for remote, source in (spec.get("file_mounts") or {}).items():
        if not is_bucket(source) and not Path(source).exists():
            raise JobSpecError(f"file_mounts.{remote}: {source} does not exist on this machine; fix the path or use "
                               "a bucket URI (s3://..., gs://...)")
