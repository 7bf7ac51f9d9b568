"""The SkyPilot task and its YAML export, built and judged by the real ``skypilot`` package offline:
its catalog is seeded under a temporary HOME from ../shared/data/catalog (rows of SkyPilot's own
public catalog), so ``sky.Task``, ``sky.Resources`` and SkyPilot's feasibility and pricing checks
run for real without the network (notes: shared/notes/skypilot-offline.md)."""
from __future__ import annotations

import csv
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import NOW, NOW_ISO, REPO, SHARED_DATA

if importlib.util.find_spec("sky") is None:  # not imported here: SkyPilot must first see the temporary HOME
    pytest.skip("the SkyPilot tests need skypilot (pip install -e '.[test]')", allow_module_level=True)

from carbonsched.errors import CapacityError, LaunchError  # noqa: E402
from carbonsched.providers.cloud.skypilot import (distinct_placements, launchable,  # noqa: E402
                                                  managed_record, cluster_record, resource_entry, sky_accelerator,
                                                  task_config, build_task, _SkyErrors)
from carbonsched.run.store import Job  # noqa: E402
from carbonsched.settings import Settings  # noqa: E402
from carbonsched.spec.job import job_from_dict  # noqa: E402

CATALOG = SHARED_DATA / "catalog"


def seed_catalog(home: Path) -> None:
    """SkyPilot's catalog files under ``home``: AWS and GCP rows from the shared snapshot (fresh
    mtimes, so SkyPilot does not try to download newer ones)."""
    for cloud in ("aws", "gcp"):
        target = home / ".sky" / "catalogs" / "v8" / cloud
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(CATALOG / f"{cloud}_gpu_vms.csv", target / "vms.csv")


@pytest.fixture(scope="session")
def sky_home(tmp_path_factory):
    """A temporary HOME with SkyPilot's catalog seeded, set before ``sky`` is first imported here
    (SkyPilot fixes its catalog folder at import). Nothing reaches the user's ~/.sky."""
    if not CATALOG.is_dir():
        pytest.skip(f"{CATALOG} is missing")
    home = tmp_path_factory.mktemp("skyhome")
    seed_catalog(home)
    old = os.environ.get("HOME")
    os.environ["HOME"] = str(home)
    import sky
    from sky.catalog import common

    where = Path(common.get_catalog_path("aws/vms.csv"))
    if not where.exists():  # sky was imported earlier in this process, under another HOME
        pytest.fail(f"sky was imported before HOME was set; its catalog is {where}")
    yield sky, home
    if old is not None:
        os.environ["HOME"] = old


def _job(**extra) -> dict:
    raw = {"name": "bert pretrain", "command": "torchrun --nproc-per-node 8 train.py --note \"it's; rm -rf /\"",
           "gpu": "H100", "gpus": 8, "hours": 2, "constraints": {"gpu_types": ["H100"]}}
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return raw


def _planned(raw: dict, top: int = 30) -> tuple[dict, dict]:
    from carbonsched.planning import plan

    job = job_from_dict(raw)
    return job.to_dict(), plan(job, now=NOW, settings=Settings(), top=top).to_dict()


def _stored(spec: dict, plan: dict, job_id: str = "a1b2c3d4e5f6") -> Job:
    return Job(id=job_id, name=spec["name"], state="scheduled", created_at=NOW, updated_at=NOW, start_at=NOW,
               launcher="skypilot", spec=spec, plan=plan, claimed_by=None, resource_id=None, region_id=None,
               instance_type=None, exit_code=None, max_attempts=3)


def _judge(sky, resources) -> None:
    """SkyPilot's own checks of one launchable resource: its cloud can start it (instance type and
    accelerators agree) and the catalog prices it in that region and market."""
    feasible = resources.cloud.get_feasible_launchable_resources(resources, 1)
    assert feasible.resources_list, feasible.hint
    assert resources.get_cost(3600) > 0


@pytest.mark.parametrize("provider,spot", [("aws", False), ("gcp", False), ("aws", True), ("gcp", True)])
def test_task_orders_the_plans_ranking_and_skypilot_accepts_every_entry(sky_home, provider, spot):
    sky, _ = sky_home
    spec, plan = _planned(_job(constraints={"providers": [provider], "spot": spot}))
    job = _stored(spec, plan)
    market = "spot" if spot else "on-demand"
    distinct = distinct_placements([p for p in plan["placements"] if p["market"] == market])
    kept, dropped = launchable(distinct, limit=5)
    task = build_task(task_config(job, kept))
    assert isinstance(task.resources, list)  # ordered: SkyPilot tries them in this order
    got = [(str(r.cloud).lower(), r.region, r.instance_type, dict(r.accelerators), bool(r.use_spot))
           for r in task.resources]
    want = [(p["provider"], p["region"], p["instance_type"], {"H100": 8} if "megagpu" not in p["instance_type"]
             else {"H100-MEGA": 8}, p["market"] == "spot") for p in kept]
    assert got == want and len(got) >= 2
    ranks = [p["rank"] for p in kept]
    # the ranking, best first, less only what SkyPilot itself refused to launch
    assert sorted(ranks + [p["rank"] for p, _ in dropped]) == [p["rank"] for p in distinct[:len(kept) + len(dropped)]]
    assert ranks == sorted(ranks) and distinct[0]["rank"] == min(p["rank"] for p in plan["placements"]
                                                                   if p["market"] == market)
    for r in task.resources:
        _judge(sky, r)
    if spot:
        assert all(r.use_spot for r in task.resources)
    assert task.name == "bert-pretrain-a1b2c3d4e5f6"
    assert task.envs["CARBONSCHED_JOB_ID"] == "a1b2c3d4e5f6"
    # the command is quoted word by word and runs under the tracker; the exit code is reported
    assert "train.py --note 'it'\"'\"'s; rm -rf /'" in task.run and "carbonsched track --quiet --mark" in task.run
    assert 'echo "carbonsched-exit-code: $code"' in task.run
    for p, why in dropped:
        assert "cannot be attached" in why or "launchable" in why


def test_every_catalog_gpu_name_is_skypilots(sky_home):
    """carbonsched's offerings, one per (cloud, instance, GPU, count), in SkyPilot's names: SkyPilot
    finds the accelerators on the instance type (or refuses the few it cannot start, by name)."""
    sky, _ = sky_home
    combos = {}
    with open(REPO / "data" / "offerings.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["provider"] in ("aws", "gcp"):
                combos.setdefault((row["provider"], row["instance_type"], row["gpu"], row["gpu_count"]), row)
    refused = []
    for (provider, instance, gpu, count), row in sorted(combos.items()):
        p = {"provider": provider, "region": row["region"], "instance_type": instance, "gpu": gpu,
             "gpu_count": int(count), "market": "on-demand"}
        entry = resource_entry(p)
        if instance.startswith("n1-"):  # a GCP N1 host with attached GPUs; the seeded catalog has no N1 host rows
            host, _, gpus = instance.partition("+")
            assert entry["instance_type"] == host and entry["accelerators"] == {gpu: int(count)} and gpus.endswith(gpu)
            continue
        kept, dropped = launchable([p])
        if dropped:
            refused.append(instance)
            continue
        (r,) = sky.Resources.from_yaml_config(entry)
        assert r.cloud.get_feasible_launchable_resources(r, 1).resources_list, (instance, entry)
    # what SkyPilot 0.14.1 cannot start with its GPUs: only these GCP variants
    assert set(refused) <= {"a3-edgegpu-8g", "a3-edgegpu-8g-nolssd", "a3-ultragpu-8g-nolssd", "a3-megagpu-8g-nolssd",
                            "a3-highgpu-8g-nolssd", "a4-highgpu-8g-nolssd"}, refused
    assert sky_accelerator("T4G", "aws", "g5g.xlarge") == "T4g"
    assert sky_accelerator("H100", "gcp", "a3-megagpu-8g") == "H100-MEGA"


def test_kubernetes_image_payload_and_secrets_reach_the_task(sky_home, tmp_path):
    sky, _ = sky_home
    (tmp_path / "code").mkdir()
    spec, plan = _planned(_job(constraints={"providers": ["aws"]}))
    spec = {**spec, "image": "nvcr.io/nvidia/pytorch:24.10-py3", "setup": "pip install -r requirements.txt",
            "workdir": str(tmp_path / "code"), "file_mounts": {"/data": "s3://bucket/imagenet"}, "num_nodes": 2,
            "env": {"WANDB_PROJECT": "x"}, "secrets": ["HF_TOKEN"], "checkpoint_dir": "/checkpoints"}
    k8s = {"rank": 1, "provider": "kubernetes", "region": "lab-cluster", "region_id": "kubernetes:lab-cluster",
           "instance_type": None, "gpu": "H100", "gpu_count": 8, "market": "on-demand"}
    job = _stored(spec, {**plan, "placements": [k8s, *plan["placements"]]})
    task = build_task(task_config(job, [k8s, plan["placements"][0]], secrets={"HF_TOKEN": "hf_secret"}))
    first, second = task.resources
    assert str(first.cloud) == "Kubernetes" and first.region == "lab-cluster" and first.accelerators == {"H100": 8}
    assert str(second.cloud) == "AWS"
    assert all(r.extract_docker_image() == "nvcr.io/nvidia/pytorch:24.10-py3" for r in task.resources)
    assert task.setup == "pip install -r requirements.txt" and "pip install" not in task.run  # SkyPilot runs setup
    assert "docker run" not in task.run  # SkyPilot already runs `run` inside the image
    assert task.workdir == str(tmp_path / "code") and task.num_nodes == 2
    assert task.file_mounts == {"/data": "s3://bucket/imagenet"}
    assert task.envs["WANDB_PROJECT"] == "x" and task.envs["CARBONSCHED_CHECKPOINT_DIR"] == "/checkpoints"
    assert "HF_TOKEN" not in task.envs and task.secrets["HF_TOKEN"].get_secret_value() == "hf_secret"
    assert "hf_secret" not in str(task.to_yaml_config(use_user_specified_yaml=True))  # what SkyPilot shows and keeps


def test_a_job_with_only_an_image_is_refused(sky_home):
    spec, plan = _planned(_job(constraints={"providers": ["aws"]}))
    spec = {k: v for k, v in spec.items() if k != "command"} | {"image": "nvcr.io/nvidia/pytorch:24.10-py3"}
    with pytest.raises(LaunchError, match="add command"):
        task_config(_stored(spec, plan), plan["placements"][:1])


def test_export_loads_with_skypilots_own_parser_and_lists_each_entry(sky_home, cli, tmp_path):
    sky, home = sky_home
    job = tmp_path / "job.toml"
    job.write_text('name = "bert"\nrun = "python train.py --epochs 3\\necho done"\nsetup = "pip install -r req.txt"\n'
                   'gpu = "H100"\ngpus = 8\nhours = 2\nsecrets = ["HF_TOKEN"]\nenvs = { WANDB_PROJECT = "x" }\n'
                   '[constraints]\ngpu_types = ["H100", "A100-80GB"]\nspot = true\n')
    t0 = time.monotonic()
    r = cli("export", "skypilot", job, "--top", "4", "--now", NOW_ISO, extra_env={"HOME": str(home)})
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    text = r.stdout
    out = tmp_path / "task.yaml"
    out.write_text(text)
    task = sky.Task.from_yaml(str(out))  # SkyPilot's own loader, from the file as a user would
    assert len(task.resources) == 4 and isinstance(task.resources, list)
    rows = [line for line in text.splitlines() if line.startswith("#  ") and line[3:4].isdigit()]
    assert len(rows) == 4 and all("kg" not in row for row in rows)  # table rows: rank, region, ..., kgCO2e, cost
    _, plan = _planned(job_from_dict_file(job), top=50)
    kept, _ = launchable(distinct_placements(plan["placements"]), limit=4)
    assert [(str(r.cloud).lower(), r.region, r.instance_type, bool(r.use_spot)) for r in task.resources] == \
        [(p["provider"], p["region"], p["instance_type"], p["market"] == "spot") for p in kept]
    for row, p in zip(rows, kept):
        assert p["region_id"] in row and f"{p['kg_co2e']:.3g}" in row and f"{p['cost_usd']:.2f}" in row
    for r in task.resources:
        _judge(sky, r)
    # a secret without a value: SkyPilot resolves it at launch (`sky launch --secret HF_TOKEN` reads the local env)
    assert "--secret HF_TOKEN" in text and "secrets:\n  HF_TOKEN: null\n" in text and "HF_TOKEN" not in task.envs
    assert task.setup == "pip install -r req.txt" and "echo done" in task.run
    assert took < 20, took
    print(f"export skypilot took {took:.2f} s")


def job_from_dict_file(path: Path) -> dict:
    import tomllib

    return tomllib.loads(path.read_text())


def test_plan_imports_nothing_of_skypilot(cli, tmp_path):
    """`carbonsched plan` never loads SkyPilot (nor the launcher module that would)."""
    code = ("import sys, runpy; sys.argv = ['carbonsched', 'plan', '--gpu', 'H100', '--gpus', '8', '--hours', '2', "
            "'--json', '--now', '2026-11-27T10:30:00Z']\n"
            "from carbonsched.cli.main import main\nimport io, contextlib\n"
            "with contextlib.redirect_stdout(io.StringIO()): rc = main(sys.argv[1:])\n"
            "bad = sorted(m for m in sys.modules if m == 'sky' or m.startswith('sky.') or m.endswith('.skypilot'))\n"
            "print(rc, bad)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.stdout.strip() == "0 []", r.stdout + r.stderr


def test_sdk_records_and_errors_read_real_skypilot_objects(sky_home):
    sky, _ = sky_home
    from sky.utils import resources_utils

    (res,) = sky.Task.from_yaml_config({"run": "x", "resources": {"ordered": [
        {"infra": "aws/us-west-2", "instance_type": "p5.48xlarge", "accelerators": {"H100": 8}, "use_spot": True}]}
    }).resources
    handle = SimpleNamespace(launched_resources=res)
    rec = cluster_record({"name": "cs-x-a0", "status": sky.ClusterStatus.UP, "handle": handle})
    assert rec == {"name": "cs-x-a0", "status": "UP", "cloud": "aws", "region": "us-west-2", "zone": None,
                   "instance_type": "p5.48xlarge", "use_spot": True}
    simple, full = resources_utils.format_resource(res, simplified_only=False)
    from sky.jobs.state import ManagedJobStatus

    m = managed_record({"job_id": 7, "job_name": "cs-x-a0", "status": ManagedJobStatus.RECOVERING, "cloud": "AWS",
                        "region": "us-west-2", "zone": "us-west-2a", "cluster_resources_full": f"1x{full}"})
    assert (m["job_id"], m["status"], m["cloud"], m["instance_type"]) == (7, "RECOVERING", "aws", "p5.48xlarge")
    with pytest.raises(CapacityError):
        with _SkyErrors("launch"):
            raise sky.exceptions.ResourcesUnavailableError("no capacity anywhere")
    with pytest.raises(LaunchError) as err:
        with _SkyErrors("status"):
            raise sky.exceptions.ApiServerConnectionError("http://127.0.0.1:46580")
    assert err.value.retryable


def test_export_without_skypilot_still_writes_the_task(tmp_path):
    """Export on a machine without SkyPilot: the same YAML, a note that SkyPilot did not check it."""
    spec, plan = _planned(_job(constraints={"providers": ["aws"]}))
    code = ("import sys, json; sys.modules['sky'] = None\n"
            "from carbonsched.providers.cloud.skypilot import export_skypilot\n"
            "spec, plan = json.load(sys.stdin)\nout = export_skypilot(spec, plan, top=3)\n"
            "print(out.checked); print(out.text)")
    import json

    r = subprocess.run([sys.executable, "-c", code], input=json.dumps([spec, plan], default=str), capture_output=True,
                       text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("False\n") and "ordered:" in r.stdout and "p5.48xlarge" in r.stdout


def test_an_interruptible_job_is_exported_as_the_one_run_the_task_makes(sky_home, cli, tmp_path):
    """The exported task runs start to end: its header states that run's carbon, not the segmented
    schedule's (a found defect: 5.26 kg claimed for two segments the task never pauses between)."""
    _, home = sky_home
    text = 'name = "pausable"\ncommand = "python train.py"\ngpu = "H100"\ngpus = 8\nhours = 6\n' \
           '[constraints]\ngpu_types = ["H100"]\nregions = ["aws:*"]\n[window]\ndeadline = "2026-11-29T10:30:00Z"\n'
    job = tmp_path / "job.toml"
    job.write_text(text + "[interruptible]\nmax_segments = 3\n")
    r = cli("export", "skypilot", job, "--top", "2", "--now", NOW_ISO, extra_env={"HOME": str(home)})
    assert r.returncode == 0, r.stderr
    assert "planned as one uninterrupted run" in r.stderr and "carbonsched submit" in r.stderr
    plain = tmp_path / "plain.toml"
    plain.write_text(text)
    assert r.stdout == cli("export", "skypilot", plain, "--top", "2", "--now", NOW_ISO, extra_env={"HOME": str(home)}).stdout


def test_a_planned_kubernetes_context_becomes_skypilots_k8s_entry(sky_home):
    """A context from the settings wins the plan (owned GPUs on a clean grid) and the task SkyPilot
    builds from that plan's ranking puts it first as infra k8s/CONTEXT, the clouds after it."""
    from carbonsched.kubernetes import KubeContext
    from carbonsched.planning import plan

    sky, _ = sky_home
    settings = Settings(kubernetes_contexts=(KubeContext(name="lab-h100", region="SE-SE3", gpus=(("H100", 8),)),))
    job = job_from_dict(_job())
    doc = plan(job, now=NOW, settings=settings, top=10).to_dict()
    assert doc["placements"][0]["region_id"] == "kubernetes:lab-h100"
    stored = _stored(job.to_dict(), doc)
    task = build_task(task_config(stored, distinct_placements(doc["placements"])[:3]))
    first, *rest = task.resources
    assert str(first.cloud) == "Kubernetes" and first.region == "lab-h100" and first.accelerators == {"H100": 8}
    assert rest and all(str(r.cloud) in ("AWS", "GCP") for r in rest)


def test_export_keeps_stdout_clean_when_skypilot_cannot_update_its_catalog(sky_home, cli, tmp_path):
    """A fresh HOME and no network: SkyPilot prints its catalog-update progress; that goes to
    stderr, so `export skypilot > task.yaml` still writes a task SkyPilot loads."""
    sky, _ = sky_home
    empty = tmp_path / "fresh-home"
    empty.mkdir()
    r = cli("export", "skypilot", REPO / "examples" / "job.toml", "--top", "2", "--now", NOW_ISO,
            extra_env={"HOME": str(empty)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("# SkyPilot task") and "sky-payload" not in r.stdout
    assert len(sky.Task.from_yaml_str(r.stdout).resources) == 2
