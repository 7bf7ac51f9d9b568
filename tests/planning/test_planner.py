"""carbonsched.plan() from Python: windows, baseline, spot, GPU counts, fallbacks, DataFrame."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

import carbonsched
from carbonsched.errors import InfeasibleError, JobSpecError
from carbonsched.spec.job import job_from_dict
from carbonsched.settings import Settings

NOW = datetime(2026, 11, 27, 10, 30, tzinfo=timezone.utc)
SETTINGS = Settings()  # defaults only: no user config or environment leaks into these plans


def plan(raw: dict, **kw):
    return carbonsched.plan(job_from_dict(raw), now=NOW, settings=SETTINGS, **kw)


def test_api_plan_dataframe_and_policy_override():
    p = carbonsched.plan(carbonsched.JobSpec(gpu="a100", gpus=8, hours=12, max_delay_hours=24), now=NOW, settings=SETTINGS)
    assert p.job.gpu == "A100"  # resolved alias/case
    df = p.to_dataframe()
    assert len(df) == len(p.placements) == 10
    assert list(df["rank"]) == list(range(1, 11))
    assert str(df["start"].dt.tz) == "UTC"
    cheap = carbonsched.plan(p.job, now=NOW, settings=SETTINGS, policy=carbonsched.Policy("cost"), top=None)
    costs = [x.cost_usd for x in cheap.placements]
    assert costs == sorted(costs) and len(cheap.placements) > 10


def test_candidate_starts_are_now_then_each_utc_hour():
    p = plan({"gpu": "H100", "gpus": 8, "hours": 2, "window": {"max_delay": "5h"}}, top=None)
    starts = {x.start for x in p.placements}
    allowed = {NOW} | {datetime(2026, 11, 27, h, tzinfo=timezone.utc) for h in range(11, 16)}
    assert starts <= allowed
    assert p.n_candidates % 6 == 0  # 6 starts: 10:30, 11:00 .. 15:00


def test_deadline_bounds_the_end_not_the_start():
    deadline = NOW + timedelta(hours=10)
    p = plan({"gpu": "A100", "gpus": 8, "hours": 8, "window": {"deadline": deadline.isoformat()}}, top=None)
    assert all(x.end <= deadline + timedelta(seconds=4) for x in p.placements)
    assert any(x.gpu == "A100" for x in p.placements)  # 8 h on A100 fits a 10 h window
    assert max(x.start for x in p.placements if x.gpu == "A100") <= NOW + timedelta(hours=2)


def test_earliest_start_in_future_and_in_past():
    later = NOW + timedelta(hours=30)
    p = plan({"gpu": "A100", "gpus": 8, "hours": 4, "window": {"earliest_start": later.isoformat(), "max_delay": "3h"}})
    assert all(later <= x.start <= later + timedelta(hours=3) for x in p.placements)
    assert p.baseline.start == NOW  # the baseline always starts now
    past = plan({"gpu": "A100", "gpus": 8, "hours": 4, "window": {"earliest_start": "2026-11-01T00:00:00Z"}})
    assert any("in the past" in w for w in past.warnings)
    assert all(x.start == NOW for x in past.placements)


def test_baseline_is_covered_when_candidates_are_much_faster():
    # candidates are H100s in GCP (about 3.8 h); the baseline is 8xA100 in aws:us-east-1 (12 h)
    p = plan({"gpu": "A100", "gpus": 8, "hours": 12, "constraints": {"gpu_types": ["H100"], "regions": ["gcp:*"]}})
    assert p.baseline.gpu == "A100" and p.baseline.runtime_hours == pytest.approx(12)
    assert all(x.gpu == "H100" and x.provider == "gcp" for x in p.placements)
    assert p.baseline.mean_intensity_g_per_kwh > 200


def test_baseline_region_without_matching_offering_warns():
    p = plan({"gpu": "A100", "gpus": 8, "hours": 4, "baseline": {"region": "gcp:europe-central2"}})
    assert p.baseline is None
    assert all(x.saving_vs_baseline_pct is None for x in p.placements)
    assert any(w.startswith("baseline: gcp:europe-central2 offers no 8xA100") for w in p.warnings)


def test_spot_only_when_allowed():
    raw = {"gpu": "A100", "gpus": 8, "hours": 12, "constraints": {"spot": False}}
    assert {x.market for x in plan(raw, top=None).placements} == {"on-demand"}
    raw["constraints"]["spot"] = True
    markets = {x.market for x in plan(raw, top=None).placements}
    assert markets == {"on-demand", "spot"}
    cheapest = plan(raw, policy=carbonsched.Policy("cost"), top=1).best
    assert cheapest.market == "spot"


def test_other_gpu_counts_scale_runtime():
    p = plan({"gpu": "A100", "gpus": 8, "hours": 12, "constraints": {"gpu_types": ["A100"], "gpu_counts": [8, 16]}}, top=None)
    by_count = {x.gpu_count: x.runtime_hours for x in p.placements}
    assert by_count[8] == pytest.approx(12)
    assert by_count[16] == pytest.approx(12 / (2 * 0.9))


def test_measured_throughput_overrides_datasheet():
    raw = {"gpu": "A100", "gpus": 8, "hours": 12, "constraints": {"gpu_types": ["A100", "H100"]},
           "throughput": {"A100": 1.0, "H100": 2.0}}
    p = plan(raw, top=None)
    assert {x.gpu: round(x.runtime_hours, 6) for x in p.placements} == {"A100": 12, "H100": 6}
    with pytest.raises(JobSpecError, match="must include the reference GPU"):
        job_from_dict({**raw, "throughput": {"H100": 2.0}})


def test_region_without_hourly_data_is_flagged():
    p = plan({"gpu": "T4", "gpus": 1, "hours": 3, "constraints": {"regions": ["aws:ap-east-1"], "gpu_types": ["T4"]}})
    assert p.forecasts["aws:ap-east-1"].kind == "yearly"
    assert any("no hourly intensity data for aws:ap-east-1 (HK)" in w for w in p.warnings)


def test_infeasible_lists_constraints():
    with pytest.raises(InfeasibleError) as err:
        plan({"gpu": "A100", "gpus": 8, "hours": 12, "constraints": {"carbon_budget_kg": 0.01}})
    assert err.value.eliminated["carbon_budget_kg"] > 0
    assert "lowest achievable is" in str(err.value) and "raise constraints.carbon_budget_kg" in str(err.value)
    with pytest.raises(JobSpecError, match="timezone-aware"):
        carbonsched.plan(job_from_dict({"gpu": "A100", "gpus": 8, "hours": 1}), now=datetime(2026, 1, 1))


def test_earliest_start_in_the_past_narrows_the_window():
    raw = {"gpu": "A100", "gpus": 8, "hours": 4,
           "window": {"earliest_start": (NOW - timedelta(hours=20)).isoformat(), "max_delay": "24h"}}
    p = plan(raw, top=None)
    assert all(x.start <= NOW + timedelta(hours=4) for x in p.placements)  # latest start = earliest + 24 h
    raw["window"]["max_delay"] = "10h"
    with pytest.raises(JobSpecError, match="start window closed"):
        plan(raw)


@pytest.mark.parametrize("raw, match", [
    ({"gpu": "A100", "gpus": 8, "hours": 1e20}, "at most 8760"),
    ({"gpu": "A100", "gpus": 8, "hours": 1, "window": {"earliest_start": "2150-12-31T23:00:00Z"}}, "days ahead"),
    ({"gpu": "A100", "gpus": 8, "hours": 1, "window": {"earliest_start": "9999-12-31T23:00:00Z"}}, "outside 1970..2200"),
    ({"gpu": "A100", "gpus": 8, "hours": 1, "window": {"max_delay": "1000d"}}, "90 days"),
    ({"gpu": "A100", "gpus": 8, "hours": 1, "name": "x" * 257}, "at most 256 characters"),
    ({"gpu": "A100", "gpus": 8, "hours": 1, "name": "a\nb"}, "no control or text-direction"),
    ({"gpu": "A100", "gpus": 8, "hours": 1, "name": "fine\u202etxt.exe"}, "no control or text-direction"),
])
def test_absurd_sizes_are_refused(raw, match):
    with pytest.raises(JobSpecError, match=match):
        plan(raw)


def test_slow_gpus_are_not_planned_beyond_a_year():
    p = plan({"gpu": "H100", "gpus": 8, "hours": 5000, "constraints": {"gpu_types": ["H100", "T4"], "gpu_counts": [1, 8]}}, top=None)
    assert all(x.runtime_hours <= 8760 for x in p.placements)
    assert p.eliminated["max_runtime"] > 0


def test_python_jobspec_gets_the_same_checks_and_normalisation():
    job = carbonsched.JobSpec(gpu="a100", gpus=8, hours=12, gpu_types=("h100",), regions=("AWS:eu-*",), providers=("AWS",))
    p = carbonsched.plan(job, now=NOW, settings=SETTINGS)
    assert {x.gpu for x in p.placements} == {"H100"} and all(x.region_id.startswith("aws:eu-") for x in p.placements)
    with pytest.raises(JobSpecError, match="must include the reference GPU"):
        carbonsched.plan(carbonsched.JobSpec(gpu="A100", gpus=8, hours=1, throughput={"H100": 2.6}), now=NOW, settings=SETTINGS)
    with pytest.raises(JobSpecError, match="timezone-aware"):
        carbonsched.plan(carbonsched.JobSpec(gpu="A100", gpus=8, hours=1, deadline=datetime(2026, 12, 1)), now=NOW, settings=SETTINGS)
    with pytest.raises(carbonsched.CarbonschedError, match="top must be"):
        carbonsched.plan(job, now=NOW, settings=SETTINGS, top=0)


def test_policy_override_is_reflected_in_the_job_echo_and_stats_are_consistent():
    p = plan({"gpu": "A100", "gpus": 8, "hours": 12}, policy=carbonsched.Policy("cost"))
    doc = p.to_dict()
    assert doc["policy"]["objective"] == doc["job"]["policy"]["objective"] == "cost"
    stats = doc["stats"]
    assert stats["feasible"] <= stats["after_offering_constraints"] <= stats["candidates"]
    assert all(v <= stats["after_offering_constraints"] for v in stats["rejected_among_those"].values())
    gpus = next(d for d in doc["data_sources"] if d["name"] == "gpus")
    assert any("NVIDIA" in s["source"] for s in gpus["sources"])


def test_datasheet_scaling_is_disclosed_and_arm_hosts_are_opt_in():
    p = plan({"gpu": "T4", "gpus": 1, "hours": 5}, top=None)
    assert any("datasheet dense throughput" in w for w in p.warnings)
    assert "T4G" not in {x.gpu for x in p.placements}
    p = plan({"gpu": "T4", "gpus": 1, "hours": 5, "constraints": {"gpu_types": ["T4", "T4G"]}}, top=None)
    assert "T4G" in {x.gpu for x in p.placements}


def test_the_same_instant_in_any_zone_plans_the_same():
    """Hour slots and profiles are UTC hours: a `now` of 11:30+01:00 is 10:30Z. The library used the
    local wall-clock hour for the intensity profile (numbers an hour off, under a plan saying 10:30Z)."""
    from carbonsched.planning.batch import plan_batch
    from carbonsched.planning.region_forecast import forecast_intensity

    job = job_from_dict({"name": "x", "gpu": "A100", "gpus": 8, "hours": 4, "window": {"max_delay": "12h"}})
    utc = carbonsched.plan(job, now=NOW, settings=Settings()).to_dict()
    for offset in (1, -5, 5.5):
        local = NOW.astimezone(timezone(timedelta(hours=offset)))
        assert carbonsched.plan(job, now=local, settings=Settings()).to_dict() == utc
        assert plan_batch([job], now=local, settings=Settings()).placements[0].kg_co2e == \
            pytest.approx(utc["placements"][0]["kg_co2e"])
        f = forecast_intensity("aws:eu-west-1", now=local, hours=3, settings=Settings(), source="profile")
        assert f.start == datetime(2026, 11, 27, 10, tzinfo=timezone.utc)  # India's :30 is not an hour boundary
    with pytest.raises(JobSpecError, match="timezone-aware datetime"):
        carbonsched.plan(job, now="2026-11-27T10:30Z", settings=Settings())


@pytest.mark.parametrize("policy", [{"objective": "weighted", "weights": {"carbon": 1}},
                                    {"objective": "weighted", "weights": {"carbon": 1, "cost": 0.01}},
                                    {"objective": "lexicographic", "order": ["carbon", "cost"], "tolerance_pct": 0}])
def test_robust_deferral_holds_for_the_multi_term_objectives(policy):
    """Robust deferral is the default for every objective: a weighted or lexicographic plan used to
    wait 11 h for a gain within the forecast's error that the carbon objective refuses."""
    raw = {"gpu": "A100", "gpus": 8, "hours": 4, "window": {"max_delay": "24h"},
           "constraints": {"regions": ["aws:eu-north-1"]}}
    carbon = plan(raw)
    robust = plan({**raw, "policy": policy}).placements[0]
    eager = plan({**raw, "policy": {**policy, "deferral": "expected"}}).placements[0]
    assert eager.start > NOW and eager.kg_co2e < robust.kg_co2e  # the mean forecast would wait ...
    assert robust.start == carbon.placements[0].start == NOW  # ... its p90 does not beat starting now


def test_the_package_lists_its_api_and_every_name_loads():
    """dir(carbonsched) listed only 'annotations' (the names load lazily): help and tab completion
    showed nothing of the API."""
    names = set(dir(carbonsched))
    assert {"plan", "plan_batch", "JobSpec", "Policy", "load_job", "submit", "Tracker"} <= names
    assert names >= set(carbonsched.__all__) and "annotations" not in names
    for name in carbonsched.__all__:
        assert getattr(carbonsched, name) is not None


def test_a_refused_wait_in_a_later_window_is_not_said_to_start_now():
    p = plan({"gpu": "A100", "gpus": 8, "hours": 4, "constraints": {"regions": ["aws:eu-north-1"]},
              "window": {"earliest_start": "2026-11-27T14:00:00Z", "max_delay": "24h"}})
    (said,) = [w for w in p.warnings if "upper decile" in w]
    assert "starting at the first start the window allows (2026-11-27T14:00:00Z)" in said and "starting now" not in said


def test_window_times_in_any_zone_give_utc_hour_starts():
    """earliest_start 08:30+05:30 is 03:00Z: the starts were 03:00, 03:30, 04:30, ... (local :30)."""
    from carbonsched.planning.candidates import job_candidates

    def starts(t):
        job = carbonsched.JobSpec(gpu="A100", gpus=8, hours=2, earliest_start=t, max_delay_hours=6)
        return [s.strftime("%H:%M") for s in job_candidates(job, now=datetime(2026, 6, 1, 2, 0, tzinfo=timezone.utc),
                                                             settings=SETTINGS).window.starts]

    india = datetime(2026, 6, 1, 8, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    assert starts(india) == starts(india.astimezone(timezone.utc)) and starts(india)[:2] == ["03:00", "04:00"]
