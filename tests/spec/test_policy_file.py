"""policy.toml: schema checks, applying it to a job, and `policy check`."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from carbonsched.cli.main import main as cli_main
from carbonsched.errors import PolicyFileError, UserInputError
from carbonsched.spec.job import job_from_dict, load_job
from carbonsched.planning.policy_check import check_policy
from carbonsched.spec.policy_file import SCHEMA, apply_policy, load_policy, policy_from_dict
from carbonsched.settings import Settings
from conftest import EXAMPLE_JOB

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)
EU = {"version": 1, "name": "eu", "residency": ["aws:eu-*", "gcp:europe-*"], "max_delay": "12h",
      "constraints": {"max_usd_per_hour": 50.0}}


@pytest.mark.parametrize("raw, match", [
    ({"name": "x"}, "lacks version"),
    ({"version": 2}, "version 2 is not supported"),
    ({"version": 1, "objectve": "cost"}, "did you mean 'objective'"),
    ({"version": 1, "constraints": {"max_usd_per_hr": 3}}, "did you mean 'constraints.max_usd_per_hour'"),
    ({"version": 1, "objective": "greenest"}, "unknown objective"),
    ({"version": 1, "weights": {"carbon": -1}}, ">= 0"),
    ({"version": 1, "max_delay": "soon"}, "duration"),
])
def test_schema_errors(raw, match):
    with pytest.raises(PolicyFileError, match=match):
        policy_from_dict(raw)


def test_load_policy_file(tmp_path):
    path = tmp_path / "policy.toml"
    path.write_text('version = 1\nobjective = "weighted"\nweights = { carbon = 1, cost = 0.5 }\n')
    pf = load_policy(path)
    assert pf.get("objective") == "weighted" and pf.to_dict()["weights"] == {"carbon": 1.0, "cost": 0.5}
    with pytest.raises(PolicyFileError, match="not found"):
        load_policy(tmp_path / "nope.toml")


def test_apply_takes_the_stricter():
    job = load_job(EXAMPLE_JOB)  # max_usd_per_hour 60, max_delay 24h, no regions
    applied, changes = apply_policy(job, policy_from_dict(EU))
    assert applied.max_usd_per_hour == 50 and applied.max_delay_hours == 12
    assert applied.regions == ("aws:eu-*", "gcp:europe-*")
    assert any(c.startswith("regions:") for c in changes)
    loose = policy_from_dict({"version": 1, "constraints": {"max_usd_per_hour": 500.0}})
    assert apply_policy(job, loose)[0].max_usd_per_hour == 60  # the job's own limit is stricter
    narrow = job_from_dict({"gpu": "A100", "gpus": 8, "hours": 1, "constraints": {"regions": ["aws:*"]}})
    both = apply_policy(narrow, policy_from_dict(EU))[0]
    assert both.regions and all(r.startswith("aws:eu-") for r in both.regions)
    with pytest.raises(PolicyFileError, match="no region in common"):
        apply_policy(job_from_dict({"gpu": "A100", "gpus": 8, "hours": 1, "constraints": {"regions": ["aws:us-*"]}}),
                     policy_from_dict(EU))


def test_check_explains_binding_residency():
    job = load_job(EXAMPLE_JOB)
    result = check_policy(job, policy_from_dict(EU), now=NOW, settings=Settings())
    best_default = result["default"]["plan"]["placements"][0]
    best_policy = result["under_policy"]["plan"]["placements"][0]
    assert best_policy["region_id"].startswith(("aws:eu-", "gcp:europe-"))
    if not best_default["region_id"].startswith(("aws:eu-", "gcp:europe-")):
        assert any(b.startswith("regions/residency") for b in result["binding"])
    assert result["feasible"] and result["delta"]["kg_co2e"] == pytest.approx(best_policy["kg_co2e"] - best_default["kg_co2e"])
    json.dumps(result)


def test_check_infeasible_and_cli(tmp_path, monkeypatch, capsys):
    strict = tmp_path / "strict.toml"
    strict.write_text("version = 1\n[constraints]\nmax_usd_per_hour = 0.01\n")
    assert cli_main(["policy", "check", str(strict), str(EXAMPLE_JOB), "--now", "2026-11-27T10:00:00Z"]) == 2
    assert "no feasible placement" in capsys.readouterr().out
    eu = tmp_path / "eu.toml"
    eu.write_text('version = 1\nresidency = ["aws:eu-*", "gcp:europe-*"]\n')
    assert cli_main(["policy", "check", str(eu), str(EXAMPLE_JOB), "--now", "2026-11-27T10:00:00Z", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["changes"] and doc["under_policy"]["plan"]["placements"]
    bad = tmp_path / "bad.toml"
    bad.write_text("version = 1\nresidence = []\n")
    assert cli_main(["policy", "check", str(bad), str(EXAMPLE_JOB)]) == 2
    assert "did you mean 'residency'" in capsys.readouterr().err


_VALUES = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
                                 st.sampled_from(["\x00", "weighted", "aws:eu-*", "24h", "-1", "p90"])),
                       lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                       max_leaves=6)


@hyp_settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.dictionaries(st.sampled_from(sorted(SCHEMA) + ["bogus"]), _VALUES, max_size=6),
       versioned=st.booleans())
def test_fuzzed_policy_tables_are_policies_or_user_errors(raw, versioned):
    """Issue 11: any policy table validates, applies to a job, or raises a UserInputError."""
    if versioned:
        raw = {"version": 1, **raw}
    try:
        pf = policy_from_dict(raw)
    except UserInputError:
        return
    try:
        apply_policy(load_job(EXAMPLE_JOB), pf)
    except UserInputError:
        pass
