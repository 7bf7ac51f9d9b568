"""`carbonsched ledger` (measure/totals.py): planned, measured and baseline kgCO2e over the stored
jobs, worked from the stored plans and a real `carbonsched track` measurement."""
from __future__ import annotations

import csv
import io
import json
import re
import sys

import pytest

from carbonsched.measure.ledger import build_ledger
from carbonsched.providers.grid import build_forecast_source
from carbonsched.run.store import Store
from carbonsched.planning import plan as make_plan
from carbonsched.settings import Settings
from carbonsched.spec.job import job_from_dict

from conftest import NOW

PY = sys.executable


def plan(gpu: str) -> dict:
    """A real plan's document (as submit stores it)."""
    job = job_from_dict({"name": gpu, "command": "true", "gpu": gpu, "gpus": 1, "hours": 2})
    return make_plan(job, now=NOW, settings=Settings(intensity_source="profile")).to_dict()


def test_ledger_sums_plans_and_measurements(cli, tmp_path):
    home = tmp_path / "home"
    store = Store(home / "jobs.sqlite")
    pa, pb = plan("A100"), plan("L4")
    a = store.add_job(name="a", spec={}, plan=pa, start_at=NOW, launcher="local", now=NOW)
    b = store.add_job(name="b", spec={}, plan=pb, start_at=NOW, launcher="local", now=NOW)
    region = pa["placements"][0]["region_id"]
    store.set_state(a.id, "succeeded", NOW, region_id=region)
    kg = pa["placements"][0]["kg_co2e"] + pb["placements"][0]["kg_co2e"]
    base = pa["baseline"]["kg_co2e"] + pb["baseline"]["kg_co2e"]
    env = {"CARBONSCHED_HOME": str(home), "CARBONSCHED_INTENSITY_SOURCE": "profile"}
    r = cli("track", "--job", a.id, "--quiet", "--", PY, "-c", "import time; time.sleep(0.2)", extra_env=env)
    assert r.returncode == 0, r.stderr
    r = cli("ledger", "--json", extra_env=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    t = doc["totals"]
    assert (t["jobs"], t["jobs_ran"], t["jobs_measured"], t["measured_share_of_ran_pct"]) == (2, 1, 1, 100.0)
    assert t["planned_kg_co2e"] == pytest.approx(kg, abs=1e-6) and t["baseline_kg_co2e"] == pytest.approx(base, abs=1e-6)
    assert t["planned_saving_kg_co2e"] == pytest.approx(base - kg, abs=1e-5) and base > kg
    assert t["planned_saving_pct"] == round(100 * (base - kg) / base, 2)
    # the measured figure is the report's: metered energy x the grid in the hours it ran
    settings = Settings(home=home, intensity_source="profile", cache_dir=tmp_path / "cache")
    led = build_ledger(store.load_measurement(a.id), source=build_forecast_source(settings), region=region,
                       plan=store.get(a.id).plan, baseline_region=settings.default_region)
    assert t["measured_kg_co2e"] == pytest.approx(led.kg_co2e, abs=1e-6) and t["measured_kg_co2e"] > 0
    assert t["measured_baseline_kg_co2e"] == pytest.approx(led.baseline["kg_co2e"], abs=1e-6)
    row_b = next(j for j in doc["jobs"] if j["id"] == b.id)
    assert row_b["measured_kg_co2e"] is None and row_b["planned_kg_co2e"] == pb["placements"][0]["kg_co2e"]
    rows = list(csv.DictReader(io.StringIO(cli("ledger", "--csv", extra_env=env).stdout)))
    assert [r["id"] for r in rows] == sorted([a.id, b.id])  # oldest first, then by id (both made at NOW)
    assert next(r for r in rows if r["id"] == b.id)["measured_kg_co2e"] == ""
    text = cli("ledger", extra_env=env).stdout
    assert "2 job(s); 1 ran, 1 measured (100.0 % of those that ran)" in text
    assert f"(saving {base - kg:.4g} kg, {100 * (base - kg) / base:.1f} %" in text
    later = cli("ledger", "--json", "--since", "2027-01-01T00:00Z", extra_env=env)
    assert json.loads(later.stdout)["totals"]["jobs"] == 0
    r = cli("ledger", extra_env={"CARBONSCHED_HOME": str(tmp_path / "empty")})
    assert r.returncode == 2 and "no job store" in r.stderr


def test_a_run_on_this_machine_is_costed_where_it_ran_in_status_ledger_and_report(cli, tmp_path):
    """A local launch runs here, not in the plan's region: `status`, `ledger` and `report` cost it
    on one grid (this machine's is not configured: the default region's, said in a warning), and
    claim no saving for an assumed grid (the baseline at this machine's PUE). They used to cost it
    in the plan's Stockholm at 25 g/kWh, list that region, and call modelled energy "metered"."""
    from conftest import poll_status

    home = tmp_path / "home"
    env = {"CARBONSCHED_HOME": str(home), "CARBONSCHED_INTENSITY_SOURCE": "profile"}
    job = tmp_path / "job.toml"
    job.write_text(f'name = "here"\ncommand = "{PY} -c pass"\ngpu = "A100"\ngpus = 1\nhours = 0.1\n')
    r = cli("submit", job, "--launcher", "local", "--yes", extra_env=env)
    assert r.returncode == 0, r.stderr
    job_id = re.search(r"^job (\w+): ", r.stdout, re.M).group(1)
    assert poll_status(cli, job_id, env)["state"] == "succeeded"
    planned = Store(home / "jobs.sqlite").get(job_id).plan["placements"][0]["region_id"]
    report = json.loads(cli("report", job_id, "--format", "json", extra_env=env).stdout)
    assert report["ran_on"] == "this machine" and report["region_id"] == "aws:us-east-1" != planned
    assert report["baseline"]["saving_pct"] == pytest.approx(0.0, abs=1e-9) and report["provider_published"] is None
    doc = json.loads(cli("ledger", "--json", extra_env=env).stdout)
    (row,) = doc["jobs"]
    assert row["region_id"] == "aws:us-east-1" and row["energy_modelled"] is True
    assert row["measured_kg_co2e"] == pytest.approx(report["emissions"]["kg_co2e"], rel=1e-9)
    assert doc["totals"]["measured_saving_pct"] == 0.0
    assert f"{report['emissions']['kg_co2e']:.3g} kgCO2e" in cli("status", job_id, extra_env=env).stdout
    assert "metered energy" not in cli("ledger", extra_env=env).stdout


def test_metered_gpu_and_cpu_energy_is_not_called_modelled(tmp_path):
    """Memory energy is always the model's: counting it made every job "energy modelled"."""
    from test_ledger import PLAN, FakeLive, FakeSource, record

    from carbonsched.measure.totals import job_ledger_row

    store = Store(tmp_path / "j.sqlite")
    job = store.add_job(name="x", spec={}, plan=PLAN, start_at=NOW, launcher="local", now=NOW)
    store.save_measurement(job.id, record())  # GPU nvml-energy, CPU rapl, memory model
    row, _ = job_ledger_row(store, store.get(job.id), source=FakeSource(FakeLive()), baseline_region=None)
    assert row["energy_modelled"] is False
    other = store.add_job(name="y", spec={}, plan=PLAN, start_at=NOW, launcher="local", now=NOW)
    store.save_measurement(other.id, record(method="model"))
    row, _ = job_ledger_row(store, store.get(other.id), source=FakeSource(FakeLive()), baseline_region=None)
    assert row["energy_modelled"] is True


def test_status_names_the_gpus_of_a_track_record():
    """A `track --job` record has no ran_on: status showed "1x None"."""
    from test_ledger import record

    from carbonsched.run.views import measured_summary

    summary = measured_summary(record())
    assert (summary["gpu"], summary["gpu_count"]) == ("NVIDIA A100-SXM4-40GB", 1)
