"""Kubeflow Pipelines v2: the example pipeline compiled by the real ``kfp`` compiler and its YAML
checked (components, inputs, outputs, wiring, the training container runs ``carbonsched track``);
the plan component run by KFP's own local runner; the tracked container's command, as compiled,
run here. Runs in its own virtual environment (.ci/run); without kfp the module skips.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

kfp = pytest.importorskip("kfp")
yaml = pytest.importorskip("yaml")  # PyYAML: a kfp dependency

from kfp import compiler, local  # noqa: E402

from conftest import NOW, NOW_ISO, REPO  # noqa: E402
from carbonsched.integrations.placement import placement_summary, plan_under_policy, read_job  # noqa: E402
from carbonsched.settings import resolve_settings  # noqa: E402
from carbonsched.spec.policy_file import load_policy  # noqa: E402

EXAMPLE = REPO / "examples" / "pipelines" / "kfp_pipeline.py"


@pytest.fixture(autouse=True)
def carbonsched_env(tmp_path, monkeypatch):
    for k in [k for k in os.environ if k.startswith("CARBONSCHED_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("CARBONSCHED_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CARBONSCHED_INTENSITY_SOURCE", "profile")  # offline, reproducible
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


def _example():
    spec = importlib.util.spec_from_file_location("kfp_pipeline_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("kfp") / "pipeline.yaml"
    compiler.Compiler().compile(_example().green_training, package_path=str(out))
    return out, yaml.safe_load(out.read_text())


def test_the_compiled_pipeline_has_both_components_wired(compiled):
    path, doc = compiled  # yaml.safe_load parsed it: valid YAML, header comments included
    assert path.read_text().startswith("# PIPELINE DEFINITION\n# Name: carbonsched-green-training\n")
    assert doc["pipelineInfo"]["name"] == "carbonsched-green-training"
    comps = doc["components"]
    assert set(comps) == {"comp-carbonsched-plan", "comp-carbonsched-tracked-job"}
    plan = comps["comp-carbonsched-plan"]
    assert set(plan["inputDefinitions"]["parameters"]) == {"job_toml", "policy_toml", "now", "max_wait_hours", "top",
                                                            "wait"}
    assert plan["outputDefinitions"]["parameters"] == {
        "region_id": {"parameterType": "STRING"}, "instance_type": {"parameterType": "STRING"},
        "start": {"parameterType": "STRING"}, "kg_co2e": {"parameterType": "NUMBER_DOUBLE"},
        "saving_vs_baseline_pct": {"parameterType": "NUMBER_DOUBLE"}, "placement_json": {"parameterType": "STRING"}}
    assert set(plan["outputDefinitions"]["artifacts"]) == {"plan", "report"}
    assert plan["outputDefinitions"]["artifacts"]["report"]["artifactType"]["schemaTitle"] == "system.Markdown"
    job = comps["comp-carbonsched-tracked-job"]
    assert set(job["inputDefinitions"]["parameters"]) == {"command", "region_id"}
    assert set(job["outputDefinitions"]["parameters"]) == {"measurement"}
    # the training step takes the planned region from the plan step
    tasks = doc["root"]["dag"]["tasks"]
    region = tasks["carbonsched-tracked-job"]["inputs"]["parameters"]["region_id"]["taskOutputParameter"]
    assert region == {"outputParameterKey": "region_id", "producerTask": "carbonsched-plan"}
    assert tasks["carbonsched-tracked-job"]["dependentTasks"] == ["carbonsched-plan"]
    # the pipeline's parameters: the job (required) and the policy as TOML text
    params = doc["root"]["inputDefinitions"]["parameters"]
    assert params["job_toml"] == {"parameterType": "STRING"}
    assert params["policy_toml"]["defaultValue"] == "" and params["command"]["defaultValue"] == "python train.py"


def test_the_training_container_runs_under_carbonsched_track(compiled):
    _, doc = compiled
    execs = doc["deploymentSpec"]["executors"]
    container = execs["exec-carbonsched-tracked-job"]["container"]
    assert container["command"][:5] == ["carbonsched", "track", "--mark", "--out",
                                        "{{$.outputs.parameters['measurement'].output_file}}"]
    assert container["command"][5:] == ["--region", "{{$.inputs.parameters['region_id']}}", "--"]
    assert container["args"] == ["sh", "-c", "{{$.inputs.parameters['command']}}"]
    plan = execs["exec-carbonsched-plan"]["container"]
    assert plan["image"] == container["image"] == "carbonsched:0.1.0"
    assert "from carbonsched.integrations.placement import plan_step" in "\n".join(plan["command"])


def test_the_committed_yaml_is_what_the_compiler_makes(compiled):
    """examples/pipelines/kfp_pipeline.yaml is regenerated by running the example; it may not go stale."""
    path, _ = compiled
    assert (REPO / "examples" / "pipelines" / "kfp_pipeline.yaml").read_text() == path.read_text()


def test_the_plan_component_runs_in_kfps_local_runner(tmp_path):
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    module = _example()
    task = module.plan_placement(job_toml=module.JOB_TOML, policy_toml=module.POLICY_TOML, now=NOW_ISO)
    plan = plan_under_policy(read_job(REPO / "examples" / "pipelines" / "train_job.toml"),
                             load_policy(REPO / "examples" / "policy.toml"), now=NOW, settings=resolve_settings(),
                             top=5, max_wait=timedelta(hours=24))
    want = placement_summary(plan)
    out = task.outputs
    assert (out["region_id"], out["instance_type"], out["start"]) == (want["region_id"], want["instance_type"],
                                                                      want["start"])
    assert out["kg_co2e"] == want["kg_co2e"] and out["saving_vs_baseline_pct"] == want["saving_vs_baseline_pct"]
    assert json.loads(out["placement_json"])["policy"] == "green-eu"
    assert json.loads(Path(out["plan"].path).read_text())["placements"][0]["region_id"] == want["region_id"]
    assert "| baseline |" in Path(out["report"].path).read_text()


def test_the_compiled_container_command_runs_the_tracker(compiled, tmp_path):
    """The training container's command line, placeholders filled as the KFP launcher fills them,
    run here (carbonsched installed in this environment): the exit status passes through and the
    measurement is written where KFP collects the output."""
    _, doc = compiled
    container = doc["deploymentSpec"]["executors"]["exec-carbonsched-tracked-job"]["container"]
    out = tmp_path / "measurement.json"
    fill = {"{{$.outputs.parameters['measurement'].output_file}}": str(out),
            "{{$.inputs.parameters['region_id']}}": "aws:eu-north-1",
            "{{$.inputs.parameters['command']}}": "echo training; exit 3"}
    argv = [fill.get(a, a) for a in container["command"] + container["args"]]
    argv[0] = str(Path(sys.executable).with_name("carbonsched"))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 3 and "training" in done.stdout
    record = json.loads(out.read_text())
    assert record["region_id"] == "aws:eu-north-1" and record["exit_code"] == 3


def test_the_guide_shows_this_example():
    """docs/pipelines.md's example is an excerpt of the example file these tests run."""
    doc = (REPO / "docs" / "pipelines.md").read_text(encoding="utf-8")
    section = doc.split("## Kubeflow Pipelines\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert block.strip() and block in (REPO / "examples" / "pipelines" / "kfp_pipeline.py").read_text(encoding="utf-8")
