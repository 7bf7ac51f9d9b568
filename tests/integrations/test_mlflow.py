"""MLflow: plans and tracked runs logged by the real MLflow client to a file-store tracking URI in a
temporary folder, read back with ``MlflowClient``.

MLflow needs its own virtual environment (mlflow-skinny pins cachetools<8, the test extra's
SkyPilot has 8): ``.venv-mlflow``, see README (tests). There, ``CARBONSCHED_TEST_MLFLOW=1`` turns
a missing MLflow into a failure instead of a skip.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

if os.environ.get("CARBONSCHED_TEST_MLFLOW"):
    import mlflow
else:
    mlflow = pytest.importorskip("mlflow")

import carbonsched
from carbonsched.integrations.mlflow import log_plan, log_run
from carbonsched.settings import resolve_settings
from carbonsched.spec.job import load_job
from carbonsched.measure.energy import J_PER_KWH
from carbonsched.units import iso_utc

from conftest import EXAMPLE_JOB, NOW

REGION = "gcp:europe-west4"


class Watts:
    method = "nvml-energy"

    def __init__(self, watts):
        self.watts, self.t0 = watts, None

    def open(self):
        pass

    def sample(self, t_s):
        self.t0 = t_s if self.t0 is None else self.t0
        return self.watts * (t_s - self.t0)

    def close(self, t_s):
        e = self.sample(t_s)
        return {"method": self.method, "energy_j": e, "devices": [
            {"index": 0, "name": "NVIDIA H100 80GB HBM3", "method": self.method, "energy_kwh": e / J_PER_KWH,
             "mean_power_w": self.watts, "tdp_w": 700.0, "utilisation_mean_pct": None, "utilisation_max_pct": None,
             "samples": 2, "missed_samples": 0}]}


@pytest.fixture
def client(tmp_path, monkeypatch):
    for k in [k for k in os.environ if k.startswith(("CARBONSCHED_", "MLFLOW_"))]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("CARBONSCHED_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3.x keeps the file store behind this switch
    mlflow.set_tracking_uri(uri)
    yield mlflow.MlflowClient(uri)
    while mlflow.active_run() is not None:
        mlflow.end_run()


def _artifact(client, run_id: str, path: str, tmp_path) -> str:
    local = client.download_artifacts(run_id, path, str(tmp_path))
    with open(local, encoding="utf-8") as fh:
        return fh.read()


def _plan():
    return carbonsched.plan(load_job(EXAMPLE_JOB), now=NOW, top=3, settings=resolve_settings({"intensity_source": "profile"}))


def test_log_plan_goes_to_the_active_run(client, tmp_path):
    plan = _plan()
    best = plan.best
    with mlflow.start_run() as active:
        run_id = log_plan(plan)
        assert run_id == active.info.run_id and mlflow.active_run() is not None  # the user's run stays open
    run = client.get_run(run_id)
    p, m = run.data.params, run.data.metrics
    assert p["carbonsched.region"] == best.region_id and p["carbonsched.instance_type"] == best.instance_type
    assert p["carbonsched.gpu"] == best.gpu and p["carbonsched.gpu_count"] == str(best.gpu_count)
    assert p["carbonsched.start"] == iso_utc(best.start) and p["carbonsched.job"] == "llama-7b-finetune"
    assert p["carbonsched.intensity_source"] == best.intensity_source == "embedded-profile"
    assert p["carbonsched.baseline_region"] == plan.baseline.region_id
    assert m["carbonsched.plan.kg_co2e"] == pytest.approx(best.kg_co2e)
    assert m["carbonsched.plan.saving_pct"] == pytest.approx(best.saving_vs_baseline_pct)
    assert m["carbonsched.plan.cost_usd"] == pytest.approx(best.cost_usd)
    assert m["carbonsched.plan.baseline_kg_co2e"] == pytest.approx(plan.baseline.kg_co2e)
    assert json.loads(_artifact(client, run_id, "carbonsched/plan.json", tmp_path)) == json.loads(json.dumps(plan.to_dict()))


def test_log_run_without_an_active_run_starts_and_ends_one(client, tmp_path):
    with carbonsched.Tracker(region=REGION, save=False, gpu_chain=(Watts(600.0),), cpu_chain=("model",), vcpus=8,
                             memory_gib_=32.0, interval_s=0.02) as t:
        time.sleep(0.1)
    plan = _plan().to_dict()
    run_id = log_run(t.measurement, plan=plan)
    assert mlflow.active_run() is None
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    m, p = run.data.metrics, run.data.params
    for part in ("gpu", "cpu", "memory"):
        assert m[f"carbonsched.run.energy_kwh.{part}"] == pytest.approx(getattr(t.measurement, part)["energy_kwh"])
    assert m["carbonsched.run.energy_kwh.it"] == pytest.approx(t.measurement.it_energy_kwh)
    assert m["carbonsched.run.wall_seconds"] == pytest.approx(t.measurement.wall_seconds)
    assert m["carbonsched.run.kg_co2e"] == pytest.approx(t.kg_co2e)  # the tracker's ledger: same profile
    assert "carbonsched.run.forecast_error_pct" in m and "carbonsched.run.saving_pct" in m  # the plan's forecast, baseline
    assert p["carbonsched.run.region"] == REGION and p["carbonsched.run.gpu_method"] == "nvml-energy"
    assert json.loads(_artifact(client, run_id, "carbonsched/measurement.json", tmp_path)) == t.record
    report = _artifact(client, run_id, "carbonsched/report.md", tmp_path)
    assert "CO" in report and REGION in report

    # a plan and then its run, in one MLflow run: no parameter clashes
    with mlflow.start_run() as both:
        log_plan(plan)
        log_run(t.record)
    assert {"carbonsched.region", "carbonsched.run.region"} <= set(client.get_run(both.info.run_id).data.params)


def test_track_mlflow_logs_the_command_run(client, cli, tmp_path):
    env = {"MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"], "MLFLOW_ALLOW_FILE_STORE": "true"}
    r = cli("track", "--mlflow", "--region", REGION, "--gpu-method", "model", "--gpu", "A100", "--gpus", "1",
            "--out", tmp_path / "rec.json", "--", sys.executable, "-c", "import time, sys; time.sleep(0.2); sys.exit(3)",
            extra_env=env)
    assert r.returncode == 3, r.stderr  # the command's status, as without --mlflow
    assert "logged to MLflow run" in r.stderr
    (run,) = client.search_runs(["0"])  # the default experiment of the tracking URI
    record = json.loads((tmp_path / "rec.json").read_text())
    assert run.info.run_id in r.stderr and run.info.status == "FINISHED"
    assert run.data.metrics["carbonsched.run.exit_code"] == 3
    assert run.data.metrics["carbonsched.run.energy_kwh.gpu"] == pytest.approx(record["gpu"]["energy_kwh"])
    assert run.data.metrics["carbonsched.run.kg_co2e"] > 0
    assert json.loads(_artifact(client, run.info.run_id, "carbonsched/measurement.json", tmp_path)) == record


def test_the_docs_example_runs(client, tmp_path):
    from test_tracker import doc_block

    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "job.toml").write_text(EXAMPLE_JOB.read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ELECTRICITYMAPS_", "WATTTIME_"))}
    r = subprocess.run([sys.executable, "-c", doc_block("MLflow", "python")], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    run = client.get_run(r.stdout.strip())
    assert run.info.run_name == "llama-ft" and run.info.status == "FINISHED"
    assert run.data.params["carbonsched.run.region"] == run.data.params["carbonsched.region"]
    assert run.data.metrics["carbonsched.run.kg_co2e"] > 0 and run.data.metrics["carbonsched.plan.kg_co2e"] > 0
    assert {a.path for a in client.list_artifacts(run.info.run_id, "carbonsched")} == {
        "carbonsched/plan.json", "carbonsched/measurement.json", "carbonsched/report.md"}
