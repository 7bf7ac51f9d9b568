"""Disclosure reports against golden files (md, latex, json), the report CLI, and the plots.

Regenerate the golden files after an intended change with ``CARBONSCHED_REGEN_GOLDEN=1 pytest
tests/test_report.py`` and review the diff.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from carbonsched.measure.ledger import build_ledger
from carbonsched.measure.report import disclosure, render

from conftest import REPO, EXAMPLE_JOB, NOW_ISO
from test_ledger import PLAN, FakeLive, FakeSource, record

GOLDEN = REPO / "tests" / "data" / "report"


def _disclosure():
    rec = record()
    led = build_ledger(rec, source=FakeSource(FakeLive()), plan=PLAN)
    return led, disclosure(led, rec)


@pytest.mark.parametrize("fmt,name", [("md", "disclosure.md"), ("latex", "disclosure.tex"), ("json", "disclosure.json")])
def test_golden(fmt, name):
    _, d = _disclosure()
    text = render(d, fmt).replace(f"carbonsched {_version()}", "carbonsched VERSION")
    path = GOLDEN / name
    if os.environ.get("CARBONSCHED_REGEN_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


def _version():
    import carbonsched

    return carbonsched.__version__


def test_disclosure_states_every_required_fact():
    _, d = _disclosure()
    md = render(d, "md")
    for needle in ("1x A100", "Google Cloud", "gcp:us-central1", "2.00 h", "4.000 kWh of IT energy",
                   "NVML total-energy counters", "RAPL", "PUE of 1.11", "175.0 gCO2e/kWh", "average, lifecycle",
                   "history+forecast", "embodied", "% of the total", "aws:us-east-1", "less", "The plan had forecast",
                   "±"):
        assert needle in md, needle
    tex = render(d, "latex")
    assert "CO$_2$e" in tex and r"$\pm$" in tex and "%" not in tex.replace(r"\%", "")
    doc = json.loads(render(d, "json"))
    assert doc["schema"] == "carbonsched.disclosure" and doc["schema_version"] == 1
    assert doc["emissions"]["kg_co2e"] == pytest.approx(doc["emissions"]["kg_co2e_operational"]
                                                         + doc["emissions"]["kg_co2e_embodied"])


def test_cli_report_from_measurement_and_plot(cli, tmp_path):
    m = tmp_path / "run.json"
    r = cli("track", "--out", m, "--region", "gcp:europe-west4", "--gpu", "A100", "--gpus", "2", "--gpu-method", "model",
            "--", "python3", "-c", "pass")
    assert r.returncode == 0, r.stderr
    for fmt, marker in (("md", "### Carbon emissions"), ("latex", r"\subsection*{Carbon emissions}")):
        r = cli("report", "--measurement", m, "--format", fmt)
        assert r.returncode == 0, r.stderr
        assert marker in r.stdout and "gcp:europe-west4" in r.stdout and "2x A100" in r.stdout
    png = tmp_path / "report.png"
    r = cli("report", "--measurement", m, "--format", "json", "--plot", png, extra_env={"MPLBACKEND": "Agg"})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["energy"]["methods"]["gpu"] == "model"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = cli("report", "--format", "md")
    assert r.returncode == 2 and "give a job id or --measurement" in r.stderr
    r = cli("report", "no-such-job")
    assert r.returncode == 2 and "no measurement for job 'no-such-job'" in r.stderr


def test_report_for_a_tracked_job_follows_its_plan(cli, tmp_path):
    plan = tmp_path / "plan.json"
    r = cli("plan", EXAMPLE_JOB, "--now", NOW_ISO, "--json")
    plan.write_text(r.stdout)
    best = json.loads(r.stdout)["placements"][0]
    r = cli("track", "--job", "ft-1", "--plan", plan, "--gpu", "A100", "--gpus", "8", "--gpu-method", "model", "--quiet",
            "--", "python3", "-c", "pass")
    assert r.returncode == 0, r.stderr
    r = cli("report", "ft-1", "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["region_id"] == best["region_id"]  # the region comes from the plan it followed
    assert doc["forecast"]["kg_co2e"] == pytest.approx(best["kg_co2e"])
    assert doc["baseline"]["region_id"] == "aws:us-east-1"


def test_plots_render_without_display(tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    from datetime import datetime, timezone

    import carbonsched
    from carbonsched.cli.plots import plot_plan, plot_report
    from carbonsched.settings import Settings

    led, _ = _disclosure()
    out = plot_report(led, tmp_path / "report.png")
    assert out.stat().st_size > 10_000
    p = carbonsched.plan(carbonsched.load_job(EXAMPLE_JOB), now=datetime(2026, 11, 27, 10, 30, tzinfo=timezone.utc),
                         settings=Settings(home=tmp_path))
    out = plot_plan(p, tmp_path / "plan.png")
    assert out.stat().st_size > 10_000
    with pytest.raises(carbonsched.CarbonschedError, match=r"\.png"):
        plot_plan(p, tmp_path / "plan.jpg")
