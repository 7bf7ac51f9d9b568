"""Launch jobs through SkyPilot (``skypilot`` on PyPI, extra ``carbonsched[skypilot]``): carbonsched
decides where, SkyPilot provisions.

One task per launch, built by SkyPilot itself (``sky.Task.from_yaml_config`` of ``task_config``):

* ``name``: the job's name and id; ``workdir``, ``setup``, ``file_mounts``, ``num_nodes`` as the job
  file gives them (SkyPilot's meanings); ``envs``: the job's ``env`` plus what every launcher tells
  a run (``launcher.run_env``: ``CARBONSCHED_JOB_ID``, ``CARBONSCHED_CHECKPOINT_DIR``, ...);
  ``secrets``: the values of the job's secret names, read from the launching process's environment
  (``launcher.secret_env``) and handed to SkyPilot, which redacts them; never stored here;
* ``run``: the job's ``run`` script or its ``command`` under ``carbonsched track --mark`` when
  carbonsched is on the machine (``launcher.shell_lines``; without it the job runs unmeasured),
  then ``carbonsched-exit-code: N``. ``image`` becomes ``image_id: docker:IMAGE``: SkyPilot runs
  ``setup`` and ``run`` inside that container, so a job with an image needs ``command`` or ``run``;
* ``resources.ordered``: the plan's placements in rank order (``infra: aws/REGION``,
  ``gcp/REGION`` or ``k8s/CONTEXT``, the instance type, ``accelerators: {GPU: count}`` in
  SkyPilot's names, ``use_spot``), so SkyPilot's own failover walks carbonsched's ranking.
  Entries name regions, not zones (the grid, hence the carbon, is the region's; SkyPilot then tries
  every zone of it), so placements that differ only by zone or start time collapse into one; a
  machine SkyPilot itself says it cannot start (``launchable``) is left out, with its reason.

A launch of placement n (attempt n of ``run/submit.py``) orders the placements from n on that share
its market: a spot placement goes to a managed job (``sky.jobs.launch``, which recovers from
preemptions), an on-demand one to ``sky.launch`` on a cluster named ``cs-<job id>-a<n>``; the
cluster tears itself down ``idle_minutes`` after its job ends (time enough for the agent to read
the end and the logs). Both are found again by that name (``find``), so a crashed launch is
reconciled instead of launched twice. When SkyPilot exhausts the ordered entries the launch is a
``CapacityError`` and submit moves on to the next placement.

Resource ids: ``skypilot:cluster:NAME`` and ``skypilot:managed:ID:NAME``. ``actual_placement``
says where SkyPilot really put a run (provider, region, instance, market); ``ran_on(placement)``
only restates the plan.

The SDK is reached through one narrow object, ``SkyApi`` (the handful of SDK calls this launcher
makes, answering plain dicts); ``skypilot_fake.FakeSky`` is its stateful stand-in for tests.
``sky`` is imported only when a task is built or the API is called: ``carbonsched plan`` never
loads it.
"""
from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass

from carbonsched.errors import CapacityError, LaunchError
from carbonsched.providers.cloud.launcher import (ConsoleRecord, image_reference_error, job_env, last_exit_code, run_env,
                                                  secret_env, shell_lines)
from carbonsched.record import decode_marked

INSTALL_HINT = "pip install 'carbonsched[skypilot]'"
DOCS_URL = "https://docs.skypilot.co/en/latest/getting-started/installation.html"
RECORD_PATH = "/tmp/carbonsched/measurement.json"  # SkyPilot runs as a user: /var/lib is not writable
MAX_ORDERED = 8  # ordered entries per launch: SkyPilot tries each in turn, and a long list only adds waiting
IDLE_MINUTES = 10  # an on-demand cluster tears itself down this long after its job ends

# provider -> SkyPilot infra prefix
INFRA = {"aws": "aws", "gcp": "gcp", "kubernetes": "k8s"}
# carbonsched GPU names that SkyPilot's catalog spells differently (the rest are the same)
SKY_GPU = {"T4G": "T4g"}

RUNNING_JOB = frozenset({"INIT", "PENDING", "SETTING_UP", "RUNNING"})
RUNNING_MANAGED = frozenset({"PENDING", "SUBMITTED", "STARTING", "RUNNING", "RECOVERING", "WINDING_DOWN",
                             "CANCELLING"})


def import_sky():
    """The ``sky`` module, or LaunchError saying how to install it."""
    try:
        import sky
    except ImportError:
        raise LaunchError(f"the SkyPilot launcher needs SkyPilot: {INSTALL_HINT}, then `sky check` to enable "
                          f"your clouds ({DOCS_URL})") from None
    return sky


# -- the task ---------------------------------------------------------------------------------
def sky_accelerator(gpu: str, provider: str, instance_type: str | None) -> str:
    """SkyPilot's name for carbonsched's GPU ``gpu`` on this instance type (GCP's a3-mega machines
    carry H100s that SkyPilot's catalog calls H100-MEGA)."""
    if provider == "gcp" and (instance_type or "").startswith("a3-megagpu"):
        return "H100-MEGA"
    return SKY_GPU.get(gpu, gpu)


def sky_instance_type(instance_type: str) -> str:
    """SkyPilot's instance type: carbonsched names a GCP N1 host with attached GPUs
    ``n1-standard-8+1xT4``; SkyPilot wants the host (the GPUs go in ``accelerators``)."""
    return instance_type.split("+", 1)[0]


def resource_entry(placement: dict) -> dict:
    """One ``resources.ordered`` entry for a plan placement."""
    provider = placement.get("provider")
    if provider not in INFRA:
        raise LaunchError(f"SkyPilot cannot launch {provider!r} placements (it takes {', '.join(INFRA)})")
    entry: dict = {"infra": f"{INFRA[provider]}/{placement['region']}"}
    if provider != "kubernetes" and placement.get("instance_type"):
        entry["instance_type"] = sky_instance_type(placement["instance_type"])
    if placement.get("gpu") and placement.get("gpu_count"):
        name = sky_accelerator(placement["gpu"], provider, placement.get("instance_type"))
        entry["accelerators"] = {name: int(placement["gpu_count"])}
    if placement.get("market") == "spot":
        entry["use_spot"] = True
    return entry


def _entry_key(placement: dict) -> tuple:
    return tuple(placement.get(k) for k in ("provider", "region", "instance_type", "gpu", "gpu_count", "market"))


def distinct_placements(placements: list[dict], limit: int | None = None) -> list[dict]:
    """The placements in rank order, the first of each (provider, region, instance, GPUs, market):
    what ``resources.ordered`` lists (zones and start times do not reach SkyPilot)."""
    seen, out = set(), []
    for p in placements:
        key = _entry_key(p)
        if key not in seen:
            seen.add(key)
            out.append(p)
            if limit and len(out) >= limit:
                break
    return out


def ordered_placements(plan: dict, attempt: int, limit: int | None = MAX_ORDERED) -> list[dict]:
    """What a launch of placement ``attempt`` asks SkyPilot for: that placement, then the later ones
    of the same market (spot -> managed job, on-demand -> cluster), distinct, at most ``limit``."""
    placements = plan.get("placements") or []
    if attempt >= len(placements):
        raise LaunchError(f"the plan has no placement {attempt}")
    market = placements[attempt].get("market")
    return distinct_placements([p for p in placements[attempt:] if p.get("market") == market], limit)


def launchable(placements: list[dict], *, num_nodes: int = 1, limit: int | None = None
               ) -> tuple[list[dict], list[tuple[dict, str]]]:
    """SkyPilot's own verdict on each placement (``Cloud.get_feasible_launchable_resources`` over its
    catalog): (the launchable ones, at most ``limit``; the others with SkyPilot's reason). Some
    catalog machines SkyPilot cannot start with their GPUs (0.14.1: GCP a3-edgegpu-8g, the
    a3-*-nolssd variants), and an ordered entry it cannot start would only fail later."""
    sky = import_sky()
    kept: list[dict] = []
    dropped: list[tuple[dict, str]] = []
    for p in placements:
        if limit and len(kept) >= limit:
            break
        if p.get("provider") == "kubernetes":  # judged against the cluster itself, at launch
            kept.append(p)
            continue
        resources = next(iter(sky.Resources.from_yaml_config(resource_entry(p))))
        try:
            feasible = resources.cloud.get_feasible_launchable_resources(resources, num_nodes)
        except sky.exceptions.ResourcesMismatchError as exc:
            dropped.append((p, str(exc).strip().splitlines()[0]))
            continue
        except Exception:  # noqa: BLE001 -- SkyPilot cannot judge it here (catalog unreachable or partial): its launch will
            kept.append(p)
            continue
        if feasible.resources_list:
            kept.append(p)
        else:
            dropped.append((p, feasible.hint or "SkyPilot finds no launchable resources for it"))
    return kept, dropped


@dataclass(frozen=True)
class _RunView:
    """The job as ``shell_lines`` should see it under SkyPilot: no image (SkyPilot already runs the
    script inside it) and no setup (SkyPilot runs it before ``run``)."""

    id: str
    spec: dict


def run_script(job, placements: list[dict], install: str | None = None) -> str:
    """The task's ``run``: the job under the tracker (``launcher.shell_lines``), then its exit code."""
    spec = job.spec
    if spec.get("image") and not (spec.get("run") or "").strip() and not (spec.get("command") or "").strip():
        raise LaunchError(f"job {job.id}: SkyPilot runs the task's run script inside the image, not the image's entry "
                          "point; add command = \"...\" or run = \"...\" to the job file")
    view = _RunView(str(job.id), {k: v for k, v in spec.items() if k not in ("image", "setup")})
    gpus = {(p.get("gpu"), p.get("gpu_count")) for p in placements}
    # the GPUs the tracker models when NVML cannot be read: only when every entry has the same ones
    lines = shell_lines(view, placements[0] if len(gpus) == 1 else None, install=install, record_path=RECORD_PATH)
    return "\n".join([*lines, "code=$?", 'echo "carbonsched-exit-code: $code"', "exit $code", ""])


def task_name(name: str, job_id: str | None = None) -> str:
    """A SkyPilot task name: letters, digits and single - . _ between them."""
    base = re.sub(r"[^A-Za-z0-9]+", "-", name or "job").strip("-") or "job"
    return f"{base}-{job_id}" if job_id else base


def resource_name(job_id: str, attempt: int, segment: int = 0) -> str:
    """The cluster / managed-job name of one attempt (and segment) of a job."""
    base = f"cs-{re.sub(r'[^a-z0-9]+', '-', str(job_id).lower()).strip('-')}-a{int(attempt)}"
    return f"{base}-s{int(segment)}" if segment else base


def task_config(job, placements: list[dict], *, segment: int = 0, install: str | None = None,
                secrets: dict | None = None, name: str | None = None) -> dict:
    """The task as SkyPilot's YAML config (module docstring). ``secrets``: name -> value (a launch)
    or name -> None (an exported task: ``sky launch --secret NAME`` fills it in)."""
    if not placements:
        raise LaunchError(f"job {job.id}: the plan has no placement SkyPilot could launch")
    spec = job.spec
    resources: dict = {"ordered": [resource_entry(p) for p in placements]}
    if spec.get("image"):
        problem = image_reference_error(spec["image"])
        if problem:
            raise LaunchError(f"job {job.id}: {problem}")
        resources["image_id"] = f"docker:{spec['image']}"
    config: dict = {"name": name or task_name(spec.get("name") or "job", str(job.id))}
    if spec.get("workdir"):
        config["workdir"] = spec["workdir"]
    if int(spec.get("num_nodes") or 1) > 1:
        config["num_nodes"] = int(spec["num_nodes"])
    config["resources"] = resources
    if spec.get("file_mounts"):
        config["file_mounts"] = dict(spec["file_mounts"])
    config["envs"] = {**job_env(job), **run_env(job, segment)}
    if secrets:
        config["secrets"] = dict(secrets)
    if spec.get("setup"):
        config["setup"] = spec["setup"]
    config["run"] = run_script(job, placements, install)
    return config


def build_task(config: dict):
    """A real ``sky.Task`` from ``task_config`` (SkyPilot parses and validates it)."""
    sky = import_sky()
    config = dict(config)
    secrets = config.pop("secrets", None)  # set after parsing: kept out of the task's copy of its own YAML
    try:
        task = sky.Task.from_yaml_config(config)
        if secrets:
            task.update_secrets(secrets)
    except (ValueError, sky.exceptions.ResourcesMismatchError) as exc:
        raise LaunchError(f"SkyPilot refused the task: {exc}") from None
    return task


# -- export -----------------------------------------------------------------------------------
def _literal_yaml(config: dict) -> str:
    """``config`` as YAML (multi-line scripts as literal blocks); JSON, which is YAML too, without PyYAML."""
    try:
        import yaml
    except ImportError:
        import json

        return json.dumps(config, indent=2) + "\n"

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper, value):
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return yaml.dump(config, Dumper=Dumper, sort_keys=False, default_flow_style=False, width=1000)


@dataclass(frozen=True)
class Export:
    """An exported task: its YAML, whether SkyPilot itself loaded it here (it is not installed
    otherwise), and the placements left out because SkyPilot cannot launch them, with why."""

    text: str
    checked: bool
    dropped: tuple = ()


def _sky_or_none():
    try:
        import sky
    except ImportError:
        return None
    return sky


def export_skypilot(spec: dict, plan: dict, *, top: int = 5, install: str | None = None) -> Export:
    """``carbonsched export skypilot``: the task as YAML for ``sky launch`` after a comment block with
    each ordered entry's rank, region, instance, market, kgCO2e and cost. With SkyPilot installed,
    it judges each placement (``launchable``) and loads the result (``sky.Task.from_yaml_str``).
    There is no store id yet: ``CARBONSCHED_JOB_ID`` is the job's name."""
    sky = _sky_or_none()
    candidates = distinct_placements(plan.get("placements") or [])
    nodes = int(spec.get("num_nodes") or 1)
    if sky is not None:
        placements, dropped = launchable(candidates, num_nodes=nodes, limit=top)
    else:
        placements, dropped = candidates[:top], []
    if not placements:
        raise LaunchError("SkyPilot can launch none of the plan's placements: " + "; ".join(
            f"{p.get('region_id')} {p.get('instance_type')}: {why}" for p, why in dropped[:3]))
    job = _RunView(task_name(spec.get("name") or "job"), spec)
    secrets = {name: None for name in spec.get("secrets") or ()}
    config = task_config(job, placements, install=install, secrets=secrets, name=job.id)
    text = _comment(spec, plan, placements, dropped, config) + _literal_yaml(config)
    if sky is not None:
        try:
            sky.Task.from_yaml_str(text)
        except (ValueError, sky.exceptions.ResourcesMismatchError) as exc:
            raise LaunchError(f"SkyPilot refused the exported task: {exc}") from None
    return Export(text, sky is not None, tuple(dropped))


def _comment(spec: dict, plan: dict, placements: list[dict], dropped: list, config: dict) -> str:
    now = plan.get("now", "")
    rows = [f"{'#':>2}  {'rank':>4}  {'region':<28} {'instance':<22} {'gpus':<14} {'market':<9} "
            f"{'start (UTC)':<16}  {'kgCO2e':>9}  {'cost $':>9}"]
    for i, p in enumerate(placements, 1):
        gpus = f"{p.get('gpu')}:{p.get('gpu_count')}" if p.get("gpu") else "-"
        rows.append(f"{i:>2}  {p.get('rank', ''):>4}  {p.get('region_id', ''):<28} {p.get('instance_type') or '-':<22} "
                    f"{gpus:<14} {p.get('market', ''):<9} {str(p.get('start', ''))[:16].replace('T', ' '):<16}  "
                    f"{p.get('kg_co2e', 0):>9.3g}  {p.get('cost_usd', 0):>9.2f}")
    spot = any(p.get("market") == "spot" for p in placements)
    head = [f"SkyPilot task for {spec.get('name') or 'job'!r}, exported by carbonsched from its plan as of {now}.",
            "resources.ordered is carbonsched's ranking: SkyPilot tries the entries top to bottom.", "", *rows, ""]
    for p, why in dropped:
        head.append(f"Left out: rank {p.get('rank')} {p.get('region_id')} {p.get('instance_type')} "
                    f"(SkyPilot cannot launch it: {why})")
    if placements and str(placements[0].get("start", "")) > str(now):
        head.append(f"The best start is {str(placements[0]['start'])[:16].replace('T', ' ')} UTC: launch then for the "
                    "planned carbon.")
    head.append("Launch: sky jobs launch task.yaml (managed; recovers spot preemptions)" if spot else
                "Launch: sky launch -c NAME task.yaml")
    if config.get("secrets"):
        head.append("Secrets come from your environment: add " + " ".join(f"--secret {n}" for n in config["secrets"]))
    return "\n".join(f"# {line}".rstrip() for line in head) + "\n"


# -- the SDK seam -----------------------------------------------------------------------------
def _get(record, key: str):
    return record.get(key) if isinstance(record, dict) else getattr(record, key, None)


def _value(status) -> str | None:
    return None if status is None else str(getattr(status, "value", status))


def cluster_record(record) -> dict:
    """A ``sky.status`` record as plain data: name, status, and where the cluster really is."""
    handle = _get(record, "handle")
    res = getattr(handle, "launched_resources", None)
    out = {"name": _get(record, "name"), "status": _value(_get(record, "status")), "cloud": None, "region": None,
           "zone": None, "instance_type": None, "use_spot": None}
    if res is not None:
        out.update(cloud=str(res.cloud).lower() if res.cloud else None, region=res.region, zone=res.zone,
                   instance_type=res.instance_type, use_spot=bool(res.use_spot))
    else:
        out.update(cloud=(_get(record, "cloud") or "").lower() or None, region=_get(record, "region"))
    return out


def managed_record(record) -> dict:
    """A ``sky.jobs.queue_v2`` record as plain data (the instance read from its resources string,
    e.g. ``[spot](gpus=H100:8, cpus=192, mem=2048, p5.48xlarge, ...)``)."""
    full = _get(record, "cluster_resources_full") or _get(record, "cluster_resources") or ""
    inside = full[full.find("(") + 1:full.rfind(")")] if "(" in full else ""
    plain = [part.strip() for part in inside.split(",") if part.strip() and "=" not in part and part.strip() != "..."]
    cloud = _get(record, "cloud")
    return {"job_id": _get(record, "job_id"), "name": _get(record, "job_name"), "status": _value(_get(record, "status")),
            "cloud": str(cloud).lower() if cloud else None, "region": _get(record, "region"),
            "zone": _get(record, "zone"), "instance_type": plain[0] if plain else None,
            "use_spot": full.startswith("[spot]") if full else None,
            "recovery_count": _get(record, "recovery_count")}


class _SkyErrors:
    """SkyPilot's exceptions as carbonsched's: no capacity in any ordered entry -> CapacityError;
    the API server unreachable -> retryable LaunchError; no cloud access -> LaunchError with what to do."""

    def __init__(self, what: str):
        self.what = what

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None or not isinstance(exc, Exception) or isinstance(exc, LaunchError):
            return False
        from sky import exceptions as ex

        if isinstance(exc, ex.ResourcesUnavailableError):
            raise CapacityError(f"SkyPilot {self.what}: no capacity in any ordered resource: {exc}",
                                code="ResourcesUnavailable") from None
        if isinstance(exc, (ex.ApiServerConnectionError, ConnectionError, TimeoutError)):
            raise LaunchError(f"SkyPilot {self.what}: its API server did not answer ({exc}); `sky api status`",
                              retryable=True) from None
        if isinstance(exc, (ex.NoCloudAccessError, ex.CloudUserIdentityError)):
            raise LaunchError(f"SkyPilot {self.what}: {exc}; run `sky check` and fix the credentials it names "
                              f"({DOCS_URL})", code=type(exc).__name__) from None
        if isinstance(exc, (ex.ResourcesMismatchError, ex.NotSupportedError, ex.ClusterOwnerIdentityMismatchError,
                            ValueError)):
            raise LaunchError(f"SkyPilot {self.what}: {exc}", code=type(exc).__name__) from None
        return False


class SkyApi:
    """The SkyPilot SDK calls this launcher makes, answering plain data (the seam the tests replace
    with ``skypilot_fake.FakeSky``). Each call waits for its request (``sky.get``)."""

    def check(self) -> None:
        import_sky()

    def launch(self, task, cluster_name: str, *, idle_minutes: int) -> int | None:
        """``sky.launch`` on a new cluster; the job id on it."""
        sky = import_sky()
        with _SkyErrors("launch"):
            job_id, _handle = sky.get(sky.launch(task, cluster_name=cluster_name, idle_minutes_to_autostop=idle_minutes,
                                                 down=True))
        return job_id

    def jobs_launch(self, task, name: str) -> int:
        """``sky.jobs.launch``: the managed job's id."""
        sky = import_sky()
        with _SkyErrors("jobs launch"):
            job_ids, _handle = sky.get(sky.jobs.launch(task, name=name))
        return int(job_ids[0])

    def clusters(self, names: list[str]) -> list[dict]:
        """``sky.status`` of these clusters (absent ones are left out)."""
        sky = import_sky()
        with _SkyErrors("status"):
            return [cluster_record(r) for r in sky.get(sky.status(names, all_users=True))]

    def job_status(self, cluster_name: str) -> str | None:
        """The status of the last job on a cluster (ours: one job per cluster), None if none."""
        sky = import_sky()
        try:
            with _SkyErrors("job status"):
                statuses = sky.get(sky.job_status(cluster_name, None))
        except LaunchError:
            return None
        return _value(next(iter(statuses.values()), None))

    def managed_jobs(self, *, name: str | None = None, job_ids: list[int] | None = None) -> list[dict]:
        """Managed jobs by exact name or ids (``sky.jobs.queue_v2``)."""
        sky = import_sky()
        with _SkyErrors("jobs queue"):
            reply = sky.get(sky.jobs.queue_v2(refresh=False, all_users=True, job_ids=job_ids, name_match=name,
                                              fields=None))
        records = reply[0] if isinstance(reply, tuple) else reply
        return [r for r in map(managed_record, records) if name is None or r["name"] == name]

    def down(self, cluster_name: str) -> None:
        sky = import_sky()
        try:
            with _SkyErrors("down"):
                sky.get(sky.down(cluster_name))
        except sky.exceptions.ClusterDoesNotExist:
            pass

    def jobs_cancel(self, job_id: int) -> None:
        sky = import_sky()
        with _SkyErrors("jobs cancel"):
            sky.get(sky.jobs.cancel(job_ids=[job_id]))

    def tail_logs(self, cluster_name: str) -> str:
        sky = import_sky()
        out = io.StringIO()
        with _SkyErrors("logs"):
            sky.tail_logs(cluster_name, None, follow=False, output_stream=out)
        return out.getvalue()

    def jobs_tail_logs(self, job_id: int) -> str:
        sky = import_sky()
        out = io.StringIO()
        with _SkyErrors("jobs logs"):
            sky.jobs.tail_logs(job_id=job_id, follow=False, output_stream=out)
        return out.getvalue()


# -- the launcher -----------------------------------------------------------------------------
def parse_resource(resource_id: str) -> tuple[str, str, int | None]:
    """(kind, name, managed job id) of ``skypilot:cluster:NAME`` / ``skypilot:managed:ID:NAME``."""
    parts = resource_id.split(":")
    if len(parts) == 3 and parts[:2] == ["skypilot", "cluster"]:
        return "cluster", parts[2], None
    if len(parts) == 4 and parts[:2] == ["skypilot", "managed"] and parts[2].isdigit():
        return "managed", parts[3], int(parts[2])
    raise LaunchError(f"{resource_id!r} is not a SkyPilot cluster or managed job id")


class SkyPilotLauncher(ConsoleRecord):
    """``--launcher skypilot`` (module docstring); ``api``: the SDK seam (default: the real SDK)."""

    name = "skypilot"

    def __init__(self, api=None, install: str | None = None, idle_minutes: int = IDLE_MINUTES,
                 max_ordered: int = MAX_ORDERED, environ=None):
        self.api = api if api is not None else SkyApi()
        self.install = install if install is not None else (os.environ.get("CARBONSCHED_REMOTE_INSTALL") or None)
        self.idle_minutes = idle_minutes
        self.max_ordered = max_ordered
        self.environ = environ

    def check(self) -> None:
        """Before a job is stored: SkyPilot is installed (its clouds are `sky check`'s business)."""
        self.api.check()

    def task(self, job, attempt: int, segment: int = 0):
        """The ``sky.Task`` a launch of placement ``attempt`` submits (secrets read now)."""
        placements, dropped = launchable(ordered_placements(job.plan, attempt, None),
                                         num_nodes=int(job.spec.get("num_nodes") or 1), limit=self.max_ordered)
        if not placements:
            raise CapacityError("SkyPilot can launch none of the placements from this one on: " + "; ".join(
                f"{p.get('region_id')} {p.get('instance_type')}: {why}" for p, why in dropped[:3]),
                code="NotLaunchable")
        config = task_config(job, placements, segment=segment, install=self.install,
                             secrets=secret_env(job, self.environ))
        return build_task(config)

    def launch(self, job, placement: dict, attempt: int, token: str, segment: int = 0) -> str:
        task = self.task(job, attempt, segment)
        name = resource_name(job.id, attempt, segment)
        if placement.get("market") == "spot":
            return f"skypilot:managed:{self.api.jobs_launch(task, name)}:{name}"
        self.api.launch(task, name, idle_minutes=self.idle_minutes)
        return f"skypilot:cluster:{name}"

    def find(self, job, attempt: int, token: str, segment: int = 0) -> str | None:
        placements = (job.plan or {}).get("placements") or []
        if attempt >= len(placements):
            return None
        name = resource_name(job.id, attempt, segment)
        if placements[attempt].get("market") == "spot":
            found = self.api.managed_jobs(name=name)
            if found:
                newest = max(found, key=lambda r: r["job_id"])
                return f"skypilot:managed:{newest['job_id']}:{name}"
            return None
        return f"skypilot:cluster:{name}" if self.api.clusters([name]) else None

    def _exit_code(self, resource_id: str) -> int | None:
        return last_exit_code(self.logs(resource_id))

    def status(self, resource_id: str) -> tuple[str, int | None]:
        kind, name, job_id = parse_resource(resource_id)
        if kind == "managed":
            found = self.api.managed_jobs(job_ids=[job_id])
            if not found:
                return "failed", None
            state = found[0]["status"]
            if state in RUNNING_MANAGED:
                return "running", None
        else:
            found = self.api.clusters([name])
            if not found:  # torn down before its end was seen (autodown after idle_minutes), or by hand
                return "failed", None
            state = self.api.job_status(name)
            if state is None or state in RUNNING_JOB:
                return ("running", None) if found[0]["status"] in ("INIT", "UP") else ("failed", None)
        code = self._exit_code(resource_id)
        if state == "SUCCEEDED":
            return "succeeded", code if code is not None else 0
        return "failed", code

    def cancel(self, resource_id: str) -> None:
        kind, name, job_id = parse_resource(resource_id)
        if kind == "managed":
            self.api.jobs_cancel(job_id)
        else:
            self.api.down(name)

    def logs(self, resource_id: str) -> str | None:
        kind, name, job_id = parse_resource(resource_id)
        try:
            text = self.api.jobs_tail_logs(job_id) if kind == "managed" else self.api.tail_logs(name)
        except LaunchError as exc:
            if exc.retryable:
                raise
            return None
        return text or None

    def measurement(self, resource_id: str) -> dict | None:
        return decode_marked(self.logs(resource_id))

    def actual_placement(self, resource_id: str) -> dict | None:
        """Where SkyPilot really runs it: ``{launcher, where, provider, region, region_id, zone,
        instance_type, market}``, or None while it is not placed yet (a managed job still pending)."""
        kind, name, job_id = parse_resource(resource_id)
        found = self.api.managed_jobs(job_ids=[job_id]) if kind == "managed" else self.api.clusters([name])
        if not found or not found[0].get("cloud") or not found[0].get("region"):
            return None
        r = found[0]
        return {"launcher": self.name, "where": "cloud", "provider": r["cloud"], "region": r["region"],
                "region_id": f"{r['cloud']}:{r['region']}", "zone": r.get("zone"), "instance_type": r.get("instance_type"),
                "market": "spot" if r.get("use_spot") else "on-demand"}

