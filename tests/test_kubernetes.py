"""Kubernetes contexts from the settings as placements: parsing, the grid they take, the plan, and
the disclosure of a run measured there (carbonsched.kubernetes)."""
from __future__ import annotations

import json

import pytest

from carbonsched.errors import ConfigError
from carbonsched.kubernetes import KubeContext, all_regions, context_region
from carbonsched.measure.ledger import build_ledger
from carbonsched.planning import plan
from carbonsched.providers.grid import build_forecast_source
from carbonsched.refdata import read_regions
from carbonsched.settings import Settings, resolve_settings
from carbonsched.spec.job import job_from_dict

from conftest import NOW

JOB = {"name": "x", "gpu": "H100", "gpus": 8, "hours": 2, "constraints": {"gpu_types": ["H100"]}}


def _settings(tmp_path, text: str):
    cfg = tmp_path / "config.toml"
    cfg.write_text(text)
    return resolve_settings(env={"CARBONSCHED_CONFIG": str(cfg), "CARBONSCHED_HOME": str(tmp_path / "home")})


def test_contexts_are_read_from_the_settings_file(tmp_path):
    s = _settings(tmp_path, '[kubernetes.contexts.lab]\nregion = "SE-SE3"\ngpus = { h100 = 8, L4 = 1 }\n'
                            'usd_per_gpu_hour = 1.5\npue = 1.1\n[kubernetes.contexts.cloud]\nregion = "aws:us-east-1"\n'
                            'gpus = { A100 = 8 }\n')
    lab, cloud = s.kubernetes_contexts
    assert lab == KubeContext(name="lab", region="SE-SE3", gpus=(("H100", 8), ("L4", 1)), usd_per_gpu_hour=1.5, pue=1.1)
    regions = all_regions(s)
    r = regions["kubernetes:lab"]
    assert r.provider == "kubernetes" and r.grid_zone == "SE-SE3" and r.pue == 1.1 and r.provider_cfe_pct is None
    us = regions["kubernetes:cloud"]
    assert us.grid_zone == read_regions()["aws:us-east-1"].grid_zone and us.pue == read_regions()["aws:us-east-1"].pue


@pytest.mark.parametrize("text, words", [
    ('[kubernetes.contexts.a]\nregion = "XX-NOWHERE"\ngpus = { H100 = 8 }\n', "neither a region id nor a grid zone"),
    ('[kubernetes.contexts.a]\nregion = "SE-SE3"\ngpus = { H1000 = 8 }\n', "unknown GPU"),
    ('[kubernetes.contexts.a]\nregion = "SE-SE3"\n', "needs region"),
    ('[kubernetes.contexts.a]\nregion = "SE-SE3"\ngpus = { H100 = 0 }\n', "whole number of GPUs"),
    ('[kubernetes.contexts.a]\nregion = "SE-SE3"\ngpus = { H100 = 8 }\nprice = 3\n', "unknown key"),
    ('[kubernetes]\ncontext = 1\n', "[kubernetes.contexts.NAME]"),
])
def test_bad_contexts_are_errors_naming_the_key(tmp_path, text, words):
    with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("]", r"\]")):
        _settings(tmp_path, text)


def test_a_context_is_planned_with_its_grid_and_its_rate(tmp_path):
    """An owned cluster on Sweden's grid beats the clouds; its intensity is that zone's (the same as
    the cloud region on that grid at the same hours), its price the internal rate."""
    lab = KubeContext(name="lab", region="SE-SE3", gpus=(("H100", 8),), usd_per_gpu_hour=1.0, pue=1.14)
    p = plan(job_from_dict(JOB), now=NOW, settings=Settings(home=tmp_path, kubernetes_contexts=(lab,)), top=50)
    best = p.placements[0]
    assert (best.region_id, best.provider, best.instance_type, best.price_usd_per_hour) == \
        ("kubernetes:lab", "kubernetes", "lab/8xH100", 8.0)
    twin = next(x for x in p.placements if x.region_id == "aws:eu-north-1" and x.start == best.start)
    assert read_regions()["aws:eu-north-1"].grid_zone == "SE-SE3"
    assert best.mean_intensity_g_per_kwh == pytest.approx(twin.mean_intensity_g_per_kwh)
    # without the context nothing changes: no kubernetes placement appears
    plain = plan(job_from_dict(JOB), now=NOW, settings=Settings(home=tmp_path), top=50)
    assert all(x.provider != "kubernetes" for x in plain.placements)
    only_clouds = plan(job_from_dict({**JOB, "constraints": {**JOB["constraints"], "providers": ["aws", "gcp"]}}),
                       now=NOW, settings=Settings(home=tmp_path, kubernetes_contexts=(lab,)), top=50)
    assert all(x.provider != "kubernetes" for x in only_clouds.placements)


def test_a_run_on_a_context_is_disclosed_with_its_region(tmp_path):
    lab = KubeContext(name="lab", region="SE-SE3", gpus=(("H100", 8),), pue=1.3)
    settings = Settings(home=tmp_path, kubernetes_contexts=(lab,), intensity_source="profile")
    record = {"schema": "carbonsched.measurement", "schema_version": 1, "job_id": "j", "exit_code": 0,
              "started_at": "2026-11-27T10:00:00Z", "ended_at": "2026-11-27T11:00:00Z", "wall_seconds": 3600,
              "gpu": {"method": "model", "energy_kwh": 5.0, "devices": []}, "cpu": {"method": "model", "energy_kwh": 0.5},
              "memory": {"method": "model", "energy_kwh": 0.1}, "it_energy_kwh": 5.6,
              "hourly": [{"hour": "2026-11-27T10:00:00Z", "it_energy_kwh": 5.6}],
              "region_id": "kubernetes:lab", "ran_on": {"launcher": "skypilot", "where": "cloud",
                                                         "region_id": "kubernetes:lab", "gpu": "H100", "gpu_count": 8,
                                                         "gpu_source": "placement"}}
    led = build_ledger(record, source=build_forecast_source(settings), regions=all_regions(settings),
                       baseline_region="aws:us-east-1")
    assert led.region_id == "kubernetes:lab" and led.pue == 1.3 and led.gpu_count == 8
    assert led.facility_energy_kwh == pytest.approx(5.6 * 1.3)
    assert context_region(lab, read_regions()).location.startswith("Kubernetes context lab")


def test_regions_lists_the_contexts_beside_the_clouds(cli, tmp_path):
    """`carbonsched regions` shows what plans may use: a configured context is a region on its grid
    at its own rate; without contexts, --provider kubernetes says how to add one."""
    cfg = tmp_path / "k8s.toml"
    cfg.write_text('[kubernetes.contexts.lab]\nregion = "SE-SE3"\ngpus = { H100 = 8 }\nusd_per_gpu_hour = 1.5\n')
    env = {"CARBONSCHED_CONFIG": str(cfg), "CARBONSCHED_HOME": str(tmp_path / "home")}
    r = cli("regions", "--gpu", "H100", "--json", extra_env=env)
    assert r.returncode == 0, r.stderr
    rows = {row["region_id"]: row for row in json.loads(r.stdout)["regions"]}
    lab, twin = rows["kubernetes:lab"], rows["aws:eu-north-1"]
    assert (lab["provider"], lab["grid_zone"], lab["instance_types"], lab["usd_per_gpu_hour"]) == \
        ("kubernetes", "SE-SE3", ["lab/8xH100"], 1.5)
    assert lab["yearly_intensity_g_per_kwh"] == twin["yearly_intensity_g_per_kwh"]  # the same grid
    assert lab["offerings_source"] == "settings (kubernetes.contexts)" and lab["pue_source"] == "assumed 1.2"
    assert "kubernetes:lab" not in {row["region_id"] for row in json.loads(
        cli("regions", "--gpu", "L4", "--json", extra_env=env).stdout)["regions"]}  # it has no L4
    only = cli("regions", "--provider", "kubernetes", extra_env=env)
    assert only.returncode == 0 and "kubernetes:lab" in only.stdout and "aws:" not in only.stdout
    none = cli("regions", "--provider", "kubernetes")
    assert none.returncode == 2 and "[kubernetes.contexts.NAME]" in none.stderr and "Traceback" not in none.stderr
    assert "kubernetes:" not in cli("regions", "--gpu", "H100").stdout
