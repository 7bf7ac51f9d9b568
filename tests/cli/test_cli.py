"""The CLI through the real console script: output, JSON contract, bad input, exit codes."""
from __future__ import annotations

import json
import re
import math
from datetime import datetime

import pytest

from conftest import EXAMPLE_JOB, NOW_ISO

CONTRACT_FIELDS = {
    "provider", "region", "zone", "instance_type", "gpu", "gpu_count", "start", "end", "runtime_hours",
    "energy_kwh", "mean_intensity_g_per_kwh", "kg_co2e_operational", "kg_co2e_embodied", "kg_co2e",
    "cost_usd", "intensity_source", "saving_vs_baseline_pct",
}


def _iso(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_plan_example_table_ranks_and_beats_baseline(cli):
    r = cli("plan", EXAMPLE_JOB, "--now", NOW_ISO)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("Plan for 'llama-7b-finetune': 8xA100 for 12 h")
    header = next(line for line in lines if line.lstrip().startswith("#"))
    for column in ("region", "instance", "GPUs", "start (UTC)", "hours", "kWh", "kgCO2e", "USD", "g/kWh", "saving"):
        assert column in header
    rows = [line for line in lines if re.match(r"\s*\d+(-\d+)?\s", line)]
    ranks = [line.split()[0] for line in rows]  # "3" or "3-4" for instance variants folded into one row
    covered = [n for rank in ranks for n in range(int(rank.split("-")[0]), int(rank.split("-")[-1]) + 1)]
    assert covered == list(range(1, 11))
    folded = [line for line in rows if "SSD variant" in line]
    assert folded and all("-" in line.split()[0] for line in folded)
    assert any(line.startswith("base") and "aws:us-east-1" in line for line in lines)
    assert "(now)" in next(line for line in lines if line.startswith("base"))
    assert any(line.startswith("Best: ") for line in lines)


def test_plan_json_contract(cli):
    r = cli("plan", EXAMPLE_JOB, "--now", NOW_ISO, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema_version"] == 1
    assert doc["now"] == NOW_ISO
    for key in ("job", "baseline", "placements", "warnings", "data_sources"):
        assert key in doc
    assert doc["job"]["gpu"] == "A100" and doc["job"]["gpus"] == 8
    placements = doc["placements"]
    assert [p["rank"] for p in placements] == list(range(1, len(placements) + 1))
    base = doc["baseline"]
    assert base["region_id"] == "aws:us-east-1" and base["rank"] is None
    assert _iso(base["start"]) == _iso(NOW_ISO)
    for p in placements + [base]:
        assert CONTRACT_FIELDS <= set(p), CONTRACT_FIELDS - set(p)
        assert math.isclose(p["kg_co2e_operational"], p["energy_kwh"] * p["mean_intensity_g_per_kwh"] / 1000, rel_tol=1e-9)
        assert math.isclose(p["kg_co2e"], p["kg_co2e_operational"] + p["kg_co2e_embodied"], rel_tol=1e-9)
        hours = (_iso(p["end"]) - _iso(p["start"])).total_seconds() / 3600
        assert abs(hours - p["runtime_hours"]) < 1 / 3600 + 1e-9
        assert _iso(p["start"]) >= _iso(NOW_ISO)
        assert p["intensity_source"] == "embedded-profile"
        assert math.isclose(p["saving_vs_baseline_pct"], (base["kg_co2e"] - p["kg_co2e"]) / base["kg_co2e"] * 100, rel_tol=1e-9)
    # the example allows a 24 h delay and caps the price; ranking is by carbon
    for p in placements:
        assert (_iso(p["start"]) - _iso(NOW_ISO)).total_seconds() <= 24 * 3600
        assert p["price_usd_per_hour"] <= 60.0
        assert p["gpu"] in {"A100", "A100-80GB", "H100", "H200"}
    carbon = [p["kg_co2e"] for p in placements]
    assert carbon == sorted(carbon)
    # done-when: the best placement emits far less than the baseline
    assert placements[0]["kg_co2e"] < 0.5 * base["kg_co2e"]
    assert any("typical-day profiles" in w for w in doc["warnings"])
    names = {d["name"] for d in doc["data_sources"]}
    assert {"offerings", "intensity", "regions", "gpus"} <= names


def test_plan_is_reproducible_given_now(cli):
    a = cli("plan", EXAMPLE_JOB, "--now", NOW_ISO, "--json")
    b = cli("plan", EXAMPLE_JOB, "--now", NOW_ISO, "--json")
    assert a.returncode == 0 and a.stdout == b.stdout


def test_file_less_form_and_flags_override(cli):
    r = cli("plan", "--gpu", "A100", "--gpus", "8", "--hours", "12", "--max-delay", "24h", "--now", NOW_ISO, "--json",
            "--top", "3", "--region", "gcp:*")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert len(doc["placements"]) == 3
    assert all(p["provider"] == "gcp" for p in doc["placements"])
    assert doc["job"]["window"]["max_delay_hours"] == 24
    # the file's objective is overridden by the flag
    r = cli("plan", EXAMPLE_JOB, "--now", NOW_ISO, "--json", "--objective", "cost")
    doc = json.loads(r.stdout)
    assert doc["policy"]["objective"] == "cost"
    costs = [p["cost_usd"] for p in doc["placements"]]
    assert costs == sorted(costs)


def test_without_window_only_now_is_considered(cli):
    r = cli("plan", "--gpu", "H100", "--gpus", "8", "--hours", "4", "--now", NOW_ISO, "--json", "--top", "0")
    doc = json.loads(r.stdout)
    assert {p["start"] for p in doc["placements"]} == {NOW_ISO}
    assert any("now only" in w for w in doc["warnings"])


def test_top_zero_shows_all_offerings(cli):
    few = json.loads(cli("plan", EXAMPLE_JOB, "--now", NOW_ISO, "--json", "--top", "2").stdout)["placements"]
    every = json.loads(cli("plan", EXAMPLE_JOB, "--now", NOW_ISO, "--json", "--top", "0").stdout)["placements"]
    assert len(few) == 2 and len(every) > 10
    keys = [(p["region_id"], p["instance_type"], p["market"]) for p in every]
    assert len(keys) == len(set(keys)), "one row per offering (its best start)"


def test_pareto_front_has_no_dominated_entries(cli):
    doc = json.loads(cli("plan", EXAMPLE_JOB, "--now", NOW_ISO, "--json", "--objective", "pareto", "--top", "0").stdout)
    pts = [(p["kg_co2e"], p["cost_usd"], _iso(p["end"]).timestamp()) for p in doc["placements"]]
    assert pts
    for i, a in enumerate(pts):
        for j, b in enumerate(pts):
            if i != j:
                assert not (all(x <= y for x, y in zip(b, a)) and any(x < y for x, y in zip(b, a))), (a, b)


def _error(r, code=2):
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("carbonsched: error: "), r.stderr
    return lines[0]


@pytest.mark.parametrize("content, expect", [
    ('gpu = "A100"\ngpus = 8\nhours = \n', "malformed TOML"),
    ('gpu = "A1OO"\ngpus = 8\nhours = 12\n', "unknown GPU 'A1OO'; did you mean"),
    ('gpu = "A100"\ngpus = 8\nhours = 0\n', "hours must be > 0"),
    ('gpu = "A100"\ngpus = 8\nhours = -3\n', "hours"),
    ('gpu = "A100"\ngpus = 8\nhours = nan\n', "finite"),
    ('gpu = "A100"\ngpus = 0\nhours = 12\n', "gpus must be at least 1"),
    ('gpu = "A100"\ngpus = 2.5\nhours = 12\n', "whole number"),
    ('gpu = "A100"\ngpus = 8\nhours = 12\ngpu_count = 8\n', "unknown key 'gpu_count'"),
    ('gpu = "A100"\ngpus = 8\nhours = 12\n[window]\nmax_dealy = "2h"\n', "did you mean 'window.max_delay'"),
    ('gpu = "A100"\ngpus = 8\nhours = 12\n[constraints]\nregions = ["aws:eu-wset-*"]\n', "matches no known region"),
    ('gpu = "A100"\ngpus = 8\nhours = 12\n[constraints]\nmax_usd_per_hour = -1\n', ">= 0"),
    ('gpu = "A100"\ngpus = 8\n', "job lacks hours"),
    ('gpu = "A100"\ngpus = 8\nhours = 12\n[policy]\nobjective = "greenest"\n', "unknown objective"),
    ('gpu = "A100"\ngpus = 8\nhours = 12\n[window]\ndeadline = "tomorrow"\n', "ISO 8601"),
])
def test_bad_job_files_give_one_line_and_exit_2(cli, tmp_path, content, expect):
    path = tmp_path / "job.toml"
    path.write_text(content)
    line = _error(cli("plan", path, "--now", NOW_ISO))
    assert expect in line


def test_missing_job_file(cli):
    assert "not found" in _error(cli("plan", "nope.toml"))


def test_deadline_in_the_past(cli):
    line = _error(cli("plan", "--gpu", "A100", "--gpus", "8", "--hours", "12", "--now", NOW_ISO,
                      "--deadline", "2026-11-27T09:00Z"))
    assert "deadline" in line and "not after now" in line


def test_deadline_shorter_than_fastest_runtime(cli):
    line = _error(cli("plan", "--gpu", "A100", "--gpus", "8", "--hours", "12", "--now", NOW_ISO,
                      "--deadline", "2026-11-27T12:00Z"))
    assert "deadline rejects" in line and "fastest run takes" in line and "move window.deadline later" in line


def test_contradictory_constraints_explain_what_eliminated_candidates(cli):
    line = _error(cli("plan", EXAMPLE_JOB, "--now", NOW_ISO, "--max-usd-per-hour", "0.5"))
    assert "max_usd_per_hour rejects" in line and "cheapest is $" in line
    line = _error(cli("plan", "--gpu", "A100", "--gpus", "3", "--hours", "12", "--now", NOW_ISO))
    assert "gpu_count rejects" in line and "offered counts" in line


def test_unknown_region_and_gpu_suggest(cli):
    line = _error(cli("plan", "--gpu", "H10O", "--gpus", "8", "--hours", "1"))
    assert "did you mean" in line and "H100" in line.split("did you mean")[1].split("?")[0]
    line = _error(cli("plan", "--gpu", "H100", "--gpus", "8", "--hours", "1", "--baseline-region", "aws:us-eest-1"))
    assert "aws:us-east-1" in line


def test_debug_shows_traceback(cli):
    r = cli("--debug", "plan", "--gpu", "A100", "--gpus", "0", "--hours", "1")
    assert r.returncode != 0 and "Traceback" in r.stderr and "JobSpecError" in r.stderr


def test_help_and_no_command(cli):
    r = cli("plan", "--help")
    assert r.returncode == 0 and "--max-delay" in r.stdout and "examples:" in r.stdout
    r = cli()
    assert r.returncode == 2 and "plan" in r.stdout


def test_regions_lists_where_a_gpu_is_offered(cli):
    r = cli("regions", "--gpu", "H100", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["regions"]
    assert rows and all("H100" in row["gpus"] for row in rows)
    intensities = [row["yearly_intensity_g_per_kwh"] for row in rows]
    assert intensities == sorted(intensities)
    assert all(row["min_usd_per_hour"] > 0 for row in rows)
    r = cli("regions", "--provider", "gcp", "--gpu", "T4")
    assert r.returncode == 0 and "gcp:" in r.stdout and "aws:" not in r.stdout
    assert "did you mean" in _error(cli("regions", "--gpu", "H1000"))


def test_config_file_and_env_set_the_default_region(cli, tmp_path):
    config = tmp_path / "config" / "carbonsched" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('default_region = "gcp:us-central1"\n')
    args = ("plan", "--gpu", "A100", "--gpus", "8", "--hours", "12", "--now", NOW_ISO, "--json")
    doc = json.loads(cli(*args).stdout)
    assert doc["baseline"]["region_id"] == "gcp:us-central1"
    doc = json.loads(cli(*args, extra_env={"CARBONSCHED_DEFAULT_REGION": "aws:us-west-2"}).stdout)
    assert doc["baseline"]["region_id"] == "aws:us-west-2"
    doc = json.loads(cli(*args, "--baseline-region", "aws:eu-west-1", extra_env={"CARBONSCHED_DEFAULT_REGION": "aws:us-west-2"}).stdout)
    assert doc["baseline"]["region_id"] == "aws:eu-west-1"
    config.write_text('default_regoin = "gcp:us-central1"\n')
    assert "did you mean default_region" in _error(cli(*args))


def test_flag_errors_are_one_line_and_debug_works_after_the_subcommand(cli):
    for args in (["plan", "--gpus", "abc"], ["plan", "--weights", "carbon=abc"], ["regions", "--provider", "azure"],
                 ["plan", "--gpu", "A100", "--gpus", "8", "--hours", "1", "--max-delay=-5h"]):
        _error(cli(*args))
    r = cli("plan", "--gpu", "A100", "--gpus", "0", "--hours", "1", "--debug")
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_misplaced_key_and_bare_date(cli, tmp_path):
    path = tmp_path / "job.toml"
    path.write_text('gpu = "A100"\ngpus = 8\nhours = 12\nmax_delay = "24h"\n')
    assert "write it as 'window.max_delay'" in _error(cli("plan", path))
    path.write_text('gpu = "A100"\ngpus = 8\nhours = 12\n[window]\ndeadline = 2026-11-30\n')
    r = cli("plan", path, "--now", NOW_ISO, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["job"]["window"]["deadline"] == "2026-11-30T00:00:00Z"


def test_pareto_shows_the_whole_front_by_default(cli):
    args = ("plan", "--gpu", "A100", "--gpus", "8", "--hours", "12", "--max-delay", "48h", "--objective", "pareto",
            "--accept-gpu", "A100", "--accept-gpu", "H100", "--accept-gpu", "L4", "--gpu-count", "8", "--gpu-count", "1",
            "--now", NOW_ISO, "--json")
    doc = json.loads(cli(*args).stdout)
    assert len(doc["placements"]) > 10 and not any(w.startswith("showing") for w in doc["warnings"])
    doc = json.loads(cli(*args, "--top", "5").stdout)
    assert len(doc["placements"]) == 5 and any(w.startswith("showing 5 of") for w in doc["warnings"])


def test_plan_plot_is_a_png(cli, tmp_path):
    png = tmp_path / "plan.png"
    r = cli("plan", EXAMPLE_JOB, "--now", NOW_ISO, "--plot", png)
    assert r.returncode == 0, r.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert f"plot written to {png}" in r.stdout
    r = cli("plan", EXAMPLE_JOB, "--now", NOW_ISO, "--plot", tmp_path / "plan.jpg")
    assert r.returncode == 2 and ".png" in r.stderr


def test_plan_batch_from_the_console(cli, tmp_path):
    from conftest import REPO

    r = cli("plan", "--batch", REPO / "examples" / "batch.toml", "--now", NOW_ISO, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [j["name"] for j in doc["jobs"]] == ["pretrain-a", "pretrain-b", "finetune-c", "eval-d"]
    assert doc["solver"]["status"] and doc["totals"]["kg_co2e"] < doc["baseline"]["kg_co2e"]
    # the two H100 jobs cannot both hold Stockholm's single p5 in the same hours
    a, b = doc["jobs"][0]["placement"], doc["jobs"][1]["placement"]
    if a["region_id"] == b["region_id"] == "aws:eu-north-1":
        assert a["end"] <= b["start"] or b["end"] <= a["start"]
    text = cli("plan", "--batch", REPO / "examples" / "batch.toml", "--now", NOW_ISO)
    assert text.returncode == 0 and "Batch plan: 4 of 4 jobs placed" in text.stdout and "greedy in submission order" in text.stdout
    bad = tmp_path / "b.toml"
    bad.write_text('[[job]]\nname = "x"\ngpu = "A100"\ngpus = 8\nhours = 1\n[[job]]\nname = "x"\ngpu = "A100"\ngpus = 8\nhours = 1\n')
    assert "unique" in _error(cli("plan", "--batch", bad))
    bad.write_text('[capacity]\n"aws:eu-north-1" = { H100 = 0 }\ndefault = 0\n[[job]]\nname = "x"\ngpu = "H100"\ngpus = 8\nhours = 1\n')
    nothing = _error(cli("plan", "--batch", bad, "--now", NOW_ISO))  # nothing fits at all
    assert "capacity" in nothing and "without --strict" not in nothing  # it was not --strict that refused
    bad.write_text('[capacity]\ndefault = 8\n' + "".join(f'[[job]]\nname = "j{i}"\ngpu = "H100"\ngpus = 8\nhours = 6\n'
                                                      '[job.constraints]\nregions = ["aws:eu-north-1"]\n'
                                                      'gpu_types = ["H100"]\n' for i in range(2)))
    strict = _error(cli("plan", "--batch", bad, "--now", NOW_ISO, "--strict"))
    assert "at most 1 of 2 jobs fit" in strict and "without --strict" in strict
    for flags, words in ((["--top", "3"], "--top and --plot"), (["--plot", str(tmp_path / "p.png")], "--top and --plot"),
                         (["--time-limit", "0"], "--time-limit must be"), (["--top-k", "-1"], "--top-k must be"),
                         (["--capacity=-1"], "--capacity must be"), (["--capacity", "nan"], "--capacity must be")):
        assert words in _error(cli("plan", "--batch", bad, "--now", NOW_ISO, *flags))
    assert not (tmp_path / "p.png").exists()
    r = cli("plan", "--batch", bad, "--now", NOW_ISO, "--json")
    assert r.returncode == 0 and len(json.loads(r.stdout)["unplaced"]) == 1  # two equal jobs, one slot


def test_policy_check_and_schema_from_the_console(cli, tmp_path):
    policy = tmp_path / "policy.toml"
    policy.write_text('version = 1\nresidency = ["aws:eu-*", "gcp:europe-*"]\n')
    r = cli("policy", "check", policy, EXAMPLE_JOB, "--now", NOW_ISO, "--json")
    assert r.returncode == 0, r.stderr
    from conftest import REPO

    r = cli("policy", "check", REPO / "examples" / "policy.toml", EXAMPLE_JOB, "--now", NOW_ISO)
    assert r.returncode == 0, r.stderr
    r = cli("schema", "plan")
    assert r.returncode == 0 and json.loads(r.stdout)["title"]
    assert _error(cli("schema", "nope"))


def test_a_weight_given_twice_is_refused(cli):
    r = cli("plan", "--gpu", "A100", "--gpus", "1", "--hours", "1", "--objective", "weighted", "--weights", "carbon=1,carbon=2")
    assert r.returncode == 2 and "weight 'carbon' is given twice" in r.stderr  # it kept the last one


def test_weights_and_order_shape_their_objective_and_nothing_else(cli):
    """--weights/--order with another objective were accepted and ignored; alone they imply theirs."""
    base = ("plan", "--gpu", "A100", "--gpus", "1", "--hours", "1", "--json")
    r = cli(*base, "--objective", "cost", "--weights", "carbon=1")
    assert r.returncode == 2 and "--weights applies to the weighted objective, not cost" in r.stderr
    r = cli(*base, "--objective", "weighted", "--order", "cost,carbon")
    assert r.returncode == 2 and "--order applies to the lexicographic objective" in r.stderr
    assert json.loads(cli(*base, "--weights", "carbon=1,cost=1").stdout)["policy"]["objective"] == "weighted"
    assert json.loads(cli(*base, "--order", "cost,carbon").stdout)["policy"]["objective"] == "lexicographic"
    r = cli(*base, "--tolerance-pct", "5")
    assert r.returncode == 2 and "--tolerance-pct applies to the lexicographic objective, not carbon" in r.stderr
