"""[interruptible] in job files: validation, echo, and plan() returning segmented schedules."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from carbonsched.cli.main import main
from carbonsched.errors import JobSpecError
from carbonsched.planning.interruptible import best_schedules as plan_interruptible
from carbonsched.spec.job import InterruptibleSpec, job_from_dict
from carbonsched.planning import plan
from carbonsched.settings import Settings

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)
RAW = {"gpu": "A100", "gpus": 8, "hours": 5,
       "window": {"earliest_start": "2026-11-27T10:00:00Z", "deadline": "2026-11-29T10:00:00Z"},
       "constraints": {"gpu_types": ["A100"], "regions": ["gcp:europe-west4", "aws:us-east-1"]},
       "interruptible": {"max_segments": 3, "overhead": "30m", "overhead_kwh": 1.5}}


def test_table_parsed_and_echoed():
    job = job_from_dict(RAW)
    assert job.interruptible == InterruptibleSpec(max_segments=3, overhead_hours=0.5, overhead_kwh=1.5)
    assert job.to_dict()["interruptible"] == {"max_segments": 3, "overhead_hours": 0.5, "overhead_kwh": 1.5}
    assert job_from_dict({k: v for k, v in RAW.items() if k != "interruptible"}).to_dict()["interruptible"] is None


@pytest.mark.parametrize("table, match", [
    ({"max_segment": 3}, r"interruptible.max_segments"),
    ({"overhead": "10m"}, r"needs max_segments"),
    ({"max_segments": 0}, r"at least 1"),
    ({"max_segments": 2, "overhead_kwh": -1}, r">= 0"),
    ({"max_segments": 2, "overhead": "soon"}, r"duration"),
])
def test_table_errors(table, match):
    with pytest.raises(JobSpecError, match=match):
        job_from_dict({**RAW, "interruptible": table})


def test_plan_returns_segments_with_identities():
    job = job_from_dict(RAW)
    result = plan(job, now=NOW, settings=Settings(), top=3)
    direct = plan_interruptible(job, now=NOW, k=3, overhead_h=0.5, overhead_kwh=1.5, settings=Settings(), top=3)
    assert [p.kg_co2e for p in result.placements] == pytest.approx([s.kg_co2e for s in direct])
    for p in result.placements:
        s = p.interruptible
        assert s is not None and 1 <= len(s.segments) <= 3
        assert p.start == s.segments[0][0] and p.end == s.segments[-1][1]
        assert p.kg_co2e == pytest.approx(p.kg_co2e_operational + p.kg_co2e_embodied + p.kg_co2e_transfer)
        assert p.kg_co2e_operational == pytest.approx(p.energy_kwh * p.mean_intensity_g_per_kwh / 1000)
        assert all(b <= job.deadline for _, b, _ in s.segments)
    assert result.baseline is not None and result.baseline.interruptible is None
    doc = result.to_dict()
    seg = doc["placements"][0]["interruptible"]["segments"][0]
    assert seg["start"].endswith("Z") and set(seg) == {"start", "end", "overhead_hours"}
    assert doc["baseline"]["interruptible"] is None



def test_cli_json_and_table_text(tmp_path, capsys):
    path = tmp_path / "job.toml"
    path.write_text('gpu = "A100"\ngpus = 8\nhours = 5\n[window]\nearliest_start = "2026-11-27T10:00:00Z"\n'
                    'deadline = "2026-11-29T10:00:00Z"\n[constraints]\ngpu_types = ["A100"]\n'
                    '[interruptible]\nmax_segments = 2\noverhead = "10m"\n')
    assert main(["plan", str(path), "--now", "2026-11-27T10:00:00Z", "--top", "2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert all(p["interruptible"]["segments"] for p in doc["placements"])
    assert main(["plan", str(path), "--now", "2026-11-27T10:00:00Z", "--top", "2"]) == 0
    assert "interruptible schedules (UTC):" in capsys.readouterr().out
