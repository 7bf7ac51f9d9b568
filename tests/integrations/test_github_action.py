"""The GitHub Action: action.yml is a composite action wired to its script, and the script, run as
the action runs it (a subprocess, inputs as environment variables), writes $GITHUB_OUTPUT and
$GITHUB_STEP_SUMMARY in GitHub's formats and fails the step on a policy violation."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from carbonsched.errors import PolicyViolationError
from carbonsched.integrations.github_action import OUTPUTS, escape_data, output_lines
from carbonsched.planning.policy_check import enforce_policy
from carbonsched.settings import resolve_settings
from carbonsched.spec.job import load_job
from carbonsched.spec.policy_file import load_policy
from carbonsched.units import parse_utc

from conftest import EXAMPLE_JOB, NOW_ISO, REPO

POLICY = REPO / "examples" / "policy.toml"
US_ONLY_JOB = """\
name = "us-only"
gpu = "A100"
gpus = 8
hours = 12
[window]
max_delay = "12h"
[constraints]
regions = ["aws:us-*"]
"""


def parse_github_output(text: str) -> dict:
    """$GITHUB_OUTPUT as the runner reads it: ``name=value`` lines and ``name<<DELIM`` heredocs."""
    out, lines, i = {}, text.split("\n"), 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delim = line.split("<<", 1)
            j = lines.index(delim, i + 1)
            out[name] = "\n".join(lines[i + 1:j])
            i = j + 1
        elif line:
            name, value = line.split("=", 1)
            out[name] = value
            i += 1
        else:
            i += 1
    return out


def run_action(tmp_path, **inputs) -> tuple[subprocess.CompletedProcess, dict | None, str | None]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CARBONSCHED_", "INPUT_", "GITHUB_", "ELECTRICITYMAPS_", "WATTTIME_"))}
    env.update({"XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_CACHE_HOME": str(tmp_path / "cache"),
                "CARBONSCHED_HOME": str(tmp_path / "home"),
                "GITHUB_OUTPUT": str(tmp_path / "output"), "GITHUB_STEP_SUMMARY": str(tmp_path / "summary")})
    env.update({f"INPUT_{k.upper()}": str(v) for k, v in inputs.items()})
    r = subprocess.run([sys.executable, "-m", "carbonsched.integrations.github_action"], capture_output=True,
                       text=True, env=env, cwd=tmp_path, timeout=120)
    out = tmp_path / "output"
    summary = tmp_path / "summary"
    return (r, parse_github_output(out.read_text()) if out.exists() else None,
            summary.read_text() if summary.exists() else None)


def test_action_yml_is_a_composite_action_wired_to_the_script():
    doc = yaml.safe_load((REPO / "action.yml").read_text())
    assert doc["name"] and doc["description"]
    assert doc["runs"]["using"] == "composite"
    assert doc["inputs"]["job"]["required"] is True
    for name in ("policy", "intensity-source", "now", "electricitymaps-token", "watttime-username", "watttime-password"):
        assert doc["inputs"][name]["required"] is False and "default" in doc["inputs"][name], name
    assert set(doc["outputs"]) == set(OUTPUTS)
    for name, out in doc["outputs"].items():
        assert out["value"] == f"${{{{ steps.plan.outputs.{name} }}}}" and out["description"], name
    steps = doc["runs"]["steps"]
    assert all(s.get("shell") == "bash" for s in steps if "run" in s)  # composite run steps must name a shell
    install, plan = steps
    assert install["env"]["ACTION_PATH"] == "${{ github.action_path }}" and '"$ACTION_PATH"' in install["run"]
    assert plan["id"] == "plan" and "-m carbonsched.integrations.github_action" in plan["run"]
    # every input reaches the script through env (no ${{ }} inside the scripts: no injection)
    assert {"INPUT_JOB", "INPUT_POLICY", "INPUT_INTENSITY_SOURCE", "INPUT_NOW", "INPUT_TOP"} <= set(plan["env"])
    for s in steps:
        assert "${{" not in s["run"]
    for var in ("ELECTRICITYMAPS_TOKEN", "WATTTIME_USERNAME", "WATTTIME_PASSWORD"):
        assert f'export {var}="$IN_{var}"' in plan["run"]


def test_the_script_writes_outputs_and_a_summary(tmp_path):
    r, out, summary = run_action(tmp_path, job=EXAMPLE_JOB, now=NOW_ISO, intensity_source="profile", top=3)
    assert r.returncode == 0, r.stdout + r.stderr
    settings = resolve_settings({"intensity_source": "profile"})
    expected = enforce_policy(load_job(EXAMPLE_JOB), None, now=parse_utc(NOW_ISO), settings=settings, top=3)
    best = expected.best
    assert set(out) == set(OUTPUTS)
    assert out["region"] == best.region_id and out["instance_type"] == best.instance_type
    assert out["start"] == best.start.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert float(out["kg_co2e"]) == pytest.approx(best.kg_co2e, abs=1e-4)
    assert float(out["saving_pct"]) == pytest.approx(best.saving_vs_baseline_pct, abs=0.05)
    assert float(out["baseline_kg_co2e"]) == pytest.approx(expected.baseline.kg_co2e, abs=1e-4)
    plan = json.loads(out["plan_json"])  # multi-line: the heredoc form
    assert plan["placements"][0]["region_id"] == best.region_id and len(plan["placements"]) == 3
    assert re.search(r"^plan_json<<(ghadelimiter_[0-9a-f]{32})$", (tmp_path / "output").read_text(), re.M)
    rows = [line for line in summary.splitlines() if line.startswith("|")]
    assert rows[0].startswith("| rank | region |") and len(rows) == 2 + 3 + 1  # header, rule, 3 ranked, baseline
    assert rows[2].startswith(f"| 1 | {best.region_id} | {best.instance_type} |") and rows[-1].startswith("| baseline |")
    assert "intensity: embedded-profile" in summary
    assert "::error" not in r.stdout and best.region_id in r.stdout


def test_a_policy_violation_fails_the_step_with_an_error_annotation(tmp_path):
    job = tmp_path / "us.toml"
    job.write_text(US_ONLY_JOB)
    r, out, summary = run_action(tmp_path, job=job, policy=POLICY, now=NOW_ISO, intensity_source="profile")
    assert r.returncode == 2
    (error,) = [line for line in r.stdout.splitlines() if line.startswith("::error")]
    assert error.startswith("::error title=carbonsched policy violation::policy 'green-eu'")
    assert "residency" in error and "aws:eu-*" in error
    assert out is None  # no outputs: later steps cannot act on a refused plan
    assert "refused by the policy" in summary and "residency" in summary
    # the same job and policy through the library: the same refusal
    with pytest.raises(PolicyViolationError) as exc:
        enforce_policy(load_job(job), load_policy(POLICY), now=parse_utc(NOW_ISO),
                       settings=resolve_settings({"intensity_source": "profile"}))
    assert str(exc.value) in error.replace("%0A", "\n").replace("%25", "%")


def test_bad_inputs_fail_with_an_error_annotation(tmp_path):
    r, out, _ = run_action(tmp_path, now=NOW_ISO)
    assert r.returncode == 2 and r.stdout.startswith("::error title=carbonsched::the `job` input is required")
    r, _, _ = run_action(tmp_path, job=EXAMPLE_JOB, now="yesterday")
    assert r.returncode == 2 and "::error" in r.stdout and "now" in r.stdout
    r, _, _ = run_action(tmp_path, job=tmp_path / "missing.toml")
    assert r.returncode == 2 and "::error" in r.stdout and "missing.toml" in r.stdout


def test_workflow_command_and_output_formats():
    assert escape_data("50% done\r\nnext") == "50%25 done%0D%0Anext"
    assert output_lines("region", "gcp:europe-west4") == "region=gcp:europe-west4\n"
    assert output_lines("saving_pct", None) == "saving_pct=\n"
    block = output_lines("plan_json", '{\n  "a": 1\n}')
    assert parse_github_output(block) == {"plan_json": '{\n  "a": 1\n}'}


def test_the_docs_workflow_uses_the_actions_inputs_and_outputs(tmp_path):
    from test_tracker import doc_block

    action = yaml.safe_load((REPO / "action.yml").read_text())
    workflow = yaml.safe_load(doc_block("GitHub Action", "yaml"))
    steps = workflow["jobs"]["plan"]["steps"]
    (ours,) = [s for s in steps if s.get("uses") == "./"]
    assert set(ours["with"]) <= set(action["inputs"])
    used = set(re.findall(r"steps\.carbon\.outputs\.(\w+)", doc_block("GitHub Action", "yaml")))
    assert used and used <= set(action["outputs"])
    r, out, summary = run_action(tmp_path, job=REPO / ours["with"]["job"], policy=REPO / ours["with"]["policy"],
                                 now=NOW_ISO)
    assert r.returncode == 0, r.stdout + r.stderr
    assert out["region"].startswith(("aws:eu-", "gcp:europe-")) and "under policy `green-eu`" in summary
