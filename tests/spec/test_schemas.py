"""JSON Schemas: generated from the code, and real outputs validate against them."""
from __future__ import annotations

import json
import tomllib

import jsonschema
import pytest

from carbonsched.cli.main import main as cli_main
from carbonsched.errors import UserInputError
from carbonsched.spec.job import SCHEMA as JOB_SCHEMA
from carbonsched.models import PLACEMENT_FIELDS
from carbonsched.spec.schemas import get_schema
from conftest import EXAMPLE_JOB


def _validator(name):
    schema = get_schema(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_schemas_follow_the_code():
    job = get_schema("job")
    assert set(job["properties"]) == set(JOB_SCHEMA) and job["additionalProperties"] is False
    assert set(get_schema("plan")["$defs"]["placement"]["required"]) == set(PLACEMENT_FIELDS)
    with pytest.raises(UserInputError, match="did you mean plan"):
        get_schema("plna")


def test_example_job_and_tables_validate():
    v = _validator("job")
    with EXAMPLE_JOB.open("rb") as fh:
        v.validate(tomllib.load(fh))
    v.validate({"gpu": "A100", "gpus": 8, "hours": "90m", "interruptible": {"max_segments": 2, "overhead": "10m"},
                "data": {"size_gb": 5, "home_region": "aws:us-east-1"}, "spot": {"preemption_rates": {"aws": 0.1}}})
    assert not v.is_valid({"gpu": "A100", "gpus": 8, "hours": 1, "colour": "green"})
    assert not v.is_valid({"gpu": "A100", "hours": 1})


def test_policy_schema():
    v = _validator("policy")
    v.validate({"version": 1, "objective": "carbon", "residency": ["aws:eu-*"], "max_delay": "12h",
                "constraints": {"spot": False}})
    assert not v.is_valid({"version": 2})
    assert not v.is_valid({"version": 1, "residence": []})


def _plan_json(monkeypatch, capsys, *args):
    assert cli_main(["plan", *map(str, args), "--now", "2026-11-27T10:00:00Z", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_real_plan_output_validates(monkeypatch, capsys, tmp_path):
    v = _validator("plan")
    v.validate(_plan_json(monkeypatch, capsys, EXAMPLE_JOB))
    job = tmp_path / "i.toml"
    job.write_text('gpu = "A100"\ngpus = 8\nhours = 4\n[window]\ndeadline = "2026-11-29T00:00:00Z"\n[constraints]\nspot = true\n'
                   '[interruptible]\nmax_segments = 2\n[data]\nsize_gb = 100\nhome_region = "aws:us-east-1"\n')
    v.validate(_plan_json(monkeypatch, capsys, job))


def test_schema_command(monkeypatch, capsys):
    for name in ("job", "policy", "plan"):
        assert cli_main(["schema", name]) == 0
        assert json.loads(capsys.readouterr().out) == get_schema(name)
