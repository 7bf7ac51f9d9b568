"""Policies enforced (issue 13 part 5): `plan`/`plan --batch`/`submit --policy`, the `policy` setting,
refusals naming the rule and the fix, the plan's record of the policy, stored placements checked
against a policy, and the server enforcing its settings' policy. Real planning, real files, the real
console script and a real server on loopback; no mocks."""
from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import replace

import httpx
import jsonschema
import pytest

from carbonsched.errors import InfeasibleError, PolicyFileError, PolicyViolationError
from carbonsched.planning import plan as make_plan
from carbonsched.planning.policy_batch import enforce_policy_batch
from carbonsched.planning.policy_check import binding_constraints, enforce_policy, placement_violations
from carbonsched.run.store import Store
from carbonsched.run.tokens import create_token
from carbonsched.server.app import ServerConfig
from carbonsched.settings import Settings, resolve_settings
from carbonsched.spec.job import job_from_dict, load_job
from carbonsched.spec.policy_file import load_policy, policy_from_dict
from carbonsched.spec.schemas import get_schema

from conftest import EXAMPLE_JOB, NOW, NOW_ISO, REPO
from server_fixture import ApiServer

POLICY = REPO / "examples" / "policy.toml"  # green-eu: residency aws:eu-*, gcp:europe-*; max 120 USD/h
EU = ("aws:eu-", "gcp:europe-")
SETTINGS = Settings(intensity_source="profile")


def _error(r) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("carbonsched: error: "), r.stderr
    return lines[0]


def _write(path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_plan_policy_applies_and_is_recorded_in_json_and_table(cli):
    r = cli("plan", EXAMPLE_JOB, "--policy", POLICY, "--now", NOW_ISO, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    rec = doc["policy_file"]
    assert rec["name"] == "green-eu" and rec["version"] == 1 and rec["path"] == str(POLICY.resolve())
    assert rec["sha256"] == hashlib.sha256(POLICY.read_bytes()).hexdigest()
    assert "objective: carbon -> weighted" in rec["changes"]
    assert any(c.startswith("regions:") and c.endswith("(residency)") for c in rec["changes"])
    assert doc["placements"] and all(p["region_id"].startswith(EU) for p in doc["placements"])
    assert doc["policy"]["objective"] == "weighted" and doc["job"]["constraints"]["regions"] == ["aws:eu-*", "gcp:europe-*"]
    assert list(doc)[:5] == ["schema_version", "now", "job", "policy", "policy_file"]
    jsonschema.Draft202012Validator(get_schema("plan")).validate(doc)
    plain = json.loads(cli("plan", EXAMPLE_JOB, "--now", NOW_ISO, "--json").stdout)
    assert "policy_file" not in plain  # no policy, no key: the golden plans stay byte-identical
    text = cli("plan", EXAMPLE_JOB, "--policy", POLICY, "--now", NOW_ISO)
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[1] == f"policy: green-eu (version 1) applied: {len(rec['changes'])} changes"
    assert "policy:" not in cli("plan", EXAMPLE_JOB, "--now", NOW_ISO).stdout
    for command in ("plan", "submit"):
        assert "enforce this organisation policy file" in cli(command, "--help").stdout


def test_job_regions_outside_residency_are_refused_naming_residency_and_the_fix(cli):
    msg = _error(cli("plan", EXAMPLE_JOB, "--region", "aws:us-*", "--policy", POLICY, "--now", NOW_ISO))
    assert "policy 'green-eu': rule residency allows regions matching aws:eu-*, gcp:europe-*" in msg
    assert "to satisfy it, allow a region matching aws:eu-* or gcp:europe-* in the job" in msg
    with pytest.raises(PolicyViolationError) as info:
        enforce_policy(job_from_dict({"gpu": "A100", "gpus": 8, "hours": 2, "constraints": {"providers": ["gcp"]}}),
                       policy_from_dict({"version": 1, "constraints": {"providers": ["aws"]}}), now=NOW, settings=SETTINGS)
    assert info.value.rules == ("constraints.providers",) and info.value.exit_code == 2
    assert "allow one of aws in the job (constraints.providers / --provider)" in str(info.value)


def test_no_feasible_placement_under_the_policy_names_the_binding_rule_and_its_value(tmp_path, cli):
    job = load_job(EXAMPLE_JOB)
    pf = policy_from_dict({"version": 1, "name": "frugal", "constraints": {"max_usd_per_hour": 1.0}})
    with pytest.raises(PolicyViolationError) as info:
        enforce_policy(job, pf, now=NOW, settings=SETTINGS)
    msg = str(info.value)
    assert info.value.rules == ("constraints.max_usd_per_hour",)
    assert msg.startswith("policy 'frugal' leaves job 'llama-7b-finetune' no feasible placement; without the policy "
                          "the best would be ")
    # the value it names is the one that admits the job's own best placement
    needed = float(re.search(r"raise constraints\.max_usd_per_hour to at least ([0-9.]+)", msg).group(1))
    best = make_plan(job, now=NOW, settings=SETTINGS, top=1).best
    assert needed >= best.price_usd_per_hour
    raised = policy_from_dict({"version": 1, "constraints": {"max_usd_per_hour": needed}})
    assert enforce_policy(job, raised, now=NOW, settings=SETTINGS).best.price_usd_per_hour <= needed
    # a job infeasible on its own keeps its own error: the policy is not to blame
    alone = replace(job, max_usd_per_hour=0.5)
    with pytest.raises(InfeasibleError) as own:
        enforce_policy(alone, pf, now=NOW, settings=SETTINGS)
    assert not isinstance(own.value, PolicyViolationError)
    # through the console, exit 2 naming the rule
    strict = _write(tmp_path / "strict.toml", 'version = 1\nname = "eu-only-cheap"\nresidency = ["aws:eu-*"]\n'
                                              "[constraints]\nmax_usd_per_hour = 30.0\n")
    msg = _error(cli("plan", EXAMPLE_JOB, "--policy", strict, "--now", NOW_ISO))
    assert "no feasible placement" in msg and "constraints.max_usd_per_hour:" in msg and "(to satisfy it: " in msg


def test_submit_refused_by_the_policy_stores_nothing(cli, tmp_path):
    job = _write(tmp_path / "job.toml", EXAMPLE_JOB.read_text())
    env = {"CARBONSCHED_HOME": str(tmp_path / "home")}
    msg = _error(cli("submit", job, "--region", "aws:us-*", "--policy", POLICY, "--launcher", "local", "--yes",
                     "--now", NOW_ISO, extra_env=env))
    assert "residency" in msg
    strict = _write(tmp_path / "strict.toml", "version = 1\n[constraints]\nmax_usd_per_hour = 1.0\n")
    assert "constraints.max_usd_per_hour" in _error(cli("submit", job, "--policy", strict, "--launcher", "local",
                                                        "--yes", "--now", NOW_ISO, extra_env=env))
    listed = cli("list", "--json", extra_env=env)
    assert listed.returncode == 0 and json.loads(listed.stdout)["jobs"] == []
    # one that complies is stored as planned: under the policy, with the policy on record (deferral
    # "expected": it waits for its greener hour, so it is stored, not launched)
    r = cli("submit", job, "--policy", POLICY, "--launcher", "local", "--yes", "--json", "--now", NOW_ISO,
            "--deferral", "expected", extra_env=env)
    assert r.returncode == 0, r.stderr
    store = Store(tmp_path / "home" / "jobs.sqlite")
    try:
        (stored,) = store.jobs()
        assert stored.state == "scheduled" and stored.plan["policy_file"]["name"] == "green-eu"
        assert stored.spec["constraints"]["regions"] == ["aws:eu-*", "gcp:europe-*"]
        assert stored.plan["placements"][0]["region_id"].startswith(EU)
        assert placement_violations(stored.plan["placements"][0], stored.spec, load_policy(POLICY), NOW) == []
    finally:
        store.close()


def test_the_policy_setting_applies_without_the_flag_and_the_flag_overrides_it(cli, tmp_path):
    config = tmp_path / "config" / "carbonsched" / "config.toml"
    _write(config.parent / "org" / "policy.toml", POLICY.read_text())
    _write(config, 'policy = "org/policy.toml"\n')  # relative to the config file's folder
    args = ("plan", EXAMPLE_JOB, "--now", NOW_ISO, "--json")
    doc = json.loads(cli(*args).stdout)
    assert doc["policy_file"]["path"] == str((config.parent / "org" / "policy.toml").resolve())
    assert all(p["region_id"].startswith(EU) for p in doc["placements"])
    other = _write(tmp_path / "cheap.toml", 'version = 1\nname = "cheap"\nobjective = "cost"\n')
    assert json.loads(cli(*args, extra_env={"CARBONSCHED_POLICY": str(other)}).stdout)["policy_file"]["name"] == "cheap"
    assert json.loads(cli(*args, "--policy", other).stdout)["policy_file"]["name"] == "cheap"
    s = resolve_settings(env={"CARBONSCHED_CONFIG": str(config), "XDG_DATA_HOME": str(tmp_path / "d")})
    assert s.policy == config.parent / "org" / "policy.toml"
    _write(config, 'policy = ""\n')
    assert "policy must be a non-empty string" in _error(cli(*args))


def test_a_missing_or_invalid_policy_file_is_an_error_naming_it(cli, tmp_path):
    config = _write(tmp_path / "config" / "carbonsched" / "config.toml", 'policy = "gone.toml"\n')
    msg = _error(cli("plan", EXAMPLE_JOB, "--now", NOW_ISO))
    assert str(config.parent / "gone.toml") in msg and "not found" in msg and "CARBONSCHED_POLICY" in msg
    config.unlink()
    msg = _error(cli("plan", EXAMPLE_JOB, "--policy", tmp_path / "nope.toml", "--now", NOW_ISO))
    assert "policy file" in msg and "nope.toml" in msg and "not found" in msg
    bad = _write(tmp_path / "bad.toml", "version = 1\nresidence = []\n")
    msg = _error(cli("submit", EXAMPLE_JOB, "--policy", bad, "--yes", "--launcher", "local", "--now", NOW_ISO))
    assert f"policy file '{bad}'" in msg and "did you mean 'residency'" in msg
    with pytest.raises(PolicyFileError, match="malformed TOML"):
        load_policy(_write(tmp_path / "broken.toml", "version = = 1\n"))


def test_batch_with_a_policy(cli, tmp_path):
    batch = REPO / "examples" / "batch.toml"
    r = cli("plan", "--batch", batch, "--policy", POLICY, "--now", NOW_ISO, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    rec = doc["policy_file"]
    assert rec["name"] == "green-eu" and set(rec["changes"]) == {j["name"] for j in doc["jobs"]}
    assert all(j["placement"]["region_id"].startswith(EU) for j in doc["jobs"] if j["placement"])
    text = cli("plan", "--batch", batch, "--policy", POLICY, "--now", NOW_ISO)
    assert text.returncode == 0 and text.stdout.splitlines()[1].startswith("policy: green-eu (version 1) applied: ")
    us = _write(tmp_path / "b.toml", '[[job]]\nname = "ok"\ngpu = "A100"\ngpus = 8\nhours = 2\n'
                                     '[[job]]\nname = "us"\ngpu = "A100"\ngpus = 8\nhours = 2\n'
                                     '[job.constraints]\nregions = ["aws:us-*"]\n')
    msg = _error(cli("plan", "--batch", us, "--policy", POLICY, "--now", NOW_ISO))
    assert msg.startswith("carbonsched: error: job 'us': policy 'green-eu': rule residency")
    jobs = [job_from_dict({"name": "a", "gpu": "A100", "gpus": 8, "hours": 2}),
            job_from_dict({"name": "b", "gpu": "A100", "gpus": 8, "hours": 2, "constraints": {"gpu_types": ["A100"]}})]
    with pytest.raises(PolicyViolationError, match="leaves job 'a' no feasible placement") as info:
        enforce_policy_batch(jobs, policy_from_dict({"version": 1, "constraints": {"max_usd_per_hour": 1.0}}),
                             now=NOW, settings=SETTINGS)
    assert info.value.rules == ("constraints.max_usd_per_hour",)


def test_placement_violations_on_stored_placements():
    job = load_job(EXAMPLE_JOB)
    doc = make_plan(job, now=NOW, settings=SETTINGS, top=None).to_dict()
    pf = load_policy(POLICY)
    outside = next(p for p in doc["placements"] if not p["region_id"].startswith(EU))
    inside = next(p for p in doc["placements"] if p["region_id"].startswith(EU))
    assert placement_violations(outside, doc["job"], pf, NOW) == [
        f"residency: {outside['region_id']} is not allowed (only aws:eu-*, gcp:europe-*)"]
    assert placement_violations(inside, doc["job"], pf, NOW) == []
    strict = policy_from_dict({"version": 1, "max_delay": "1h", "constraints": {
        "spot": False, "max_usd_per_hour": 1.0, "max_total_usd": 1.0, "carbon_budget_kg": 0.1, "providers": ["azure"],
        "gpu_types": ["L4"], "min_gpu_memory_gb": 1000, "exclude_regions": [inside["region_id"]]}})
    later = {**inside, "market": "spot", "start": "2026-11-28T10:30:00Z"}
    rules = [v.split(":")[0] for v in placement_violations(later, doc["job"], strict, NOW)]
    assert rules == ["constraints.exclude_regions", "constraints.providers", "constraints.gpu_types",
                     "constraints.min_gpu_memory_gb", "constraints.max_usd_per_hour", "constraints.max_total_usd",
                     "constraints.carbon_budget_kg", "max_delay", "constraints.spot"]
    # max_delay counts from the job's window: at the start itself nothing is late
    assert "max_delay" not in " ".join(placement_violations(later, doc["job"], strict, NOW.replace(day=28)))
    # the same checks, in the job's words, explain `policy check`
    best = make_plan(job, now=NOW, settings=SETTINGS, top=1).best
    narrowed = replace(job, regions=("aws:eu-*",))
    assert binding_constraints(best, narrowed, NOW) == (
        [] if best.region_id.startswith("aws:eu-") else [f"regions/residency: {best.region_id} is not allowed (only aws:eu-*)"])


def test_the_server_enforces_its_settings_policy(tmp_path):
    store_path = tmp_path / "jobs.sqlite"
    settings = Settings(home=tmp_path / "home", intensity_source="profile", cache_dir=tmp_path / "cache", policy=POLICY)
    store = Store(store_path)
    plan_token = create_token(store, team="ml", scope="plan", name="p", now=NOW)[0]
    submit_token = create_token(store, team="ml", scope="submit", name="s", now=NOW)[0]
    job = {"name": "t", "gpu": "A100", "gpus": 8, "hours": 2, "command": f"{sys.executable} -c pass"}
    try:
        with ApiServer(ServerConfig(store_target=store_path, settings=settings, rate_per_s=0)) as srv:
            c = httpx.Client(timeout=60)
            r = c.post(f"{srv.url}/v1/plan", json={"job": job, "now": NOW_ISO},
                       headers={"Authorization": f"Bearer {plan_token}"})
            assert r.status_code == 200, r.text
            assert r.json()["policy_file"]["name"] == "green-eu"
            assert all(p["region_id"].startswith(EU) for p in r.json()["placements"])
            us = {**job, "constraints": {"regions": ["aws:us-*"]}}
            r = c.post(f"{srv.url}/v1/jobs", json={"job": us, "launcher": "local", "now": NOW_ISO},
                       headers={"Authorization": f"Bearer {submit_token}"})
            assert r.status_code == 422 and "rule residency" in r.json()["error"]["message"], r.text
            assert store.jobs() == []
        with pytest.raises(PolicyFileError, match="not found"):  # a broken policy stops the server from starting
            ApiServer(ServerConfig(store_target=store_path, settings=replace(settings, policy=tmp_path / "gone.toml")))
    finally:
        store.close()
