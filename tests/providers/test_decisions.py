"""The decision backtest (``carbonsched backtest decisions``): known answers on constructed series,
the planner's tie and min-gain rule, determinism, and the real Electricity Maps exports."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pytest

from carbonsched.providers.grid.history import read_histories
from carbonsched.providers.grid.decisions import (PREDICTORS, choose_start, decision_backtest, last_year,
                                                  window_means)

from conftest import SHARED_DATA

T0 = datetime(2021, 1, 1, tzinfo=timezone.utc)
RAW = SHARED_DATA / "carbon_intensity" / "electricitymaps_hourly_raw"
SIMPLE = {k: PREDICTORS[k] for k in ("weekly-mean", "yesterday")}


def daily(days: int, amplitude: float = 100.0) -> np.ndarray:
    h = np.arange(days * 24)
    return 300.0 + amplitude * np.sin(2 * np.pi * (h % 24) / 24)


def test_window_means_and_gaps():
    x = np.array([1.0, 2, 3, np.nan, 5])
    assert np.allclose(window_means(x, 2)[:2], [1.5, 2.5]) and np.isnan(window_means(x, 2)[2:]).all()


def test_a_repeating_day_is_predicted_perfectly_by_the_simple_predictors():
    """Every day the same: yesterday and the weekly mean know the future, so they capture the
    whole hindsight-best saving, never do worse than starting now, and regret nothing."""
    r = decision_backtest(daily(40), T0, hours=4, max_delay=20, predictors=SIMPLE, origins=50, seed=3)
    for s in r.scores:
        assert s.origins == 50 and s.captured_pct == pytest.approx(100.0)
        assert s.worse_than_now_pct == 0.0 and s.mean_regret_g_per_kwh == pytest.approx(0.0, abs=1e-9)
        assert s.realised_saving_pct == pytest.approx(s.oracle_saving_pct) and s.oracle_saving_pct > 0


def test_flat_grid_ties_go_to_starting_now():
    r = decision_backtest(np.full(40 * 24, 250.0), T0, hours=4, max_delay=20, predictors=SIMPLE, origins=20)
    for s in r.scores:
        assert s.waited_pct == 0.0 and s.captured_pct is None and s.realised_saving_pct == 0.0


def test_the_planners_min_gain_rule_decides_whether_to_wait():
    means = np.array([100.0, 99.0, 97.0, 98.0])  # waiting 2 h saves 3 %
    assert choose_start(means) == 2
    assert choose_start(means, min_gain_pct=5.0) == 0  # a gain inside the margin: start now
    assert choose_start(np.array([100.0, 100.0 * (1 - 1e-12), 100.0])) == 0  # a tie: the earliest


def test_deterministic_for_a_seed_and_one_origin_per_day_by_default():
    x = daily(60) + np.random.default_rng(0).normal(0, 20, 60 * 24)
    a = decision_backtest(x, T0, hours=3, max_delay=12, predictors=SIMPLE, seed=5)
    b = decision_backtest(x, T0, hours=3, max_delay=12, predictors=SIMPLE, seed=5)
    c = decision_backtest(x, T0, hours=3, max_delay=12, predictors=SIMPLE, seed=6)
    assert a.to_dict() == b.to_dict() and a.to_dict() != c.to_dict()
    days = (60 * 24 - 14 * 24 - 15 + 1 + 23) // 24
    assert a.scores[0].origins in (days - 1, days)  # one per UTC day with a whole window


def test_last_year_scales_the_same_hours_a_year_before_to_the_last_week():
    x = np.concatenate([daily(364 + 7, 50.0), daily(7, 50.0) * 2.0])  # the last week runs at twice the level
    f = last_year(x[: (364 + 7) * 24 + 168], T0, 24)
    assert f.diagnostics["level"] == pytest.approx(2.0, rel=0.05)
    with pytest.raises(ValueError, match="needs"):
        last_year(x[: 30 * 24], T0, 24)


def test_real_exports_fit_on_2021_score_2022(cli):
    """ES 2021 + 2022 through the CLI: every predictor scored on the same 2022 origins, each
    capturing at most what hindsight allows."""
    files = [RAW / "ES_2021_hourly.csv", RAW / "ES_2022_hourly.csv"]
    values, start, info = read_histories(files)
    assert start == T0 and values.size == 2 * 8760 and info["zone"] == "ES"
    r = cli("backtest", "decisions", "--history", files[0], "--history", files[1], "--score-from", "2022-01-01",
            "--hours", "4", "--max-delay", "24", "--origins", "25", "--seed", "1", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["scored_from"] >= "2022-01-01" and doc["zone"] == "ES"
    assert [s["predictor"] for s in doc["scores"]] == ["carbonsched", "weekly-mean", "yesterday", "last-year"]
    for s in doc["scores"]:
        assert s["origins"] + s["skipped"] == 25
        assert s["realised_saving_pct"] <= s["oracle_saving_pct"] + 1e-9 and 0 <= s["worse_than_now_pct"] <= 100
        assert s["mean_regret_g_per_kwh"] >= 0
    text = cli("backtest", "decisions", "--history", files[1], "--hours", "4", "--max-delay", "24", "--origins", "5")
    assert text.returncode == 0 and "captured %" in text.stdout and "last-year" in text.stdout


@pytest.mark.parametrize("args, words", [
    (["--hours", "0", "--max-delay", "24"], "--hours and --max-delay"),
    (["--hours", "4", "--max-delay", "24", "--origins", "0"], "--origins"),
    (["--hours", "4", "--max-delay", "24", "--score-from", "2030-01-01"], "no origin to score"),
])
def test_bad_input_exits_2_saying_what_to_change(cli, args, words):
    r = cli("backtest", "decisions", "--history", RAW / "BR_2022_hourly.csv", *args)
    assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr


def test_robust_deferral_in_the_planner_and_the_backtest(cli, tmp_path):
    """`plan` (robust deferral, the default) starts the example job now (waiting 20 h was a gain
    within the profile's spread) and says why; the JSON records it; `--deferral expected` waits for
    the mean; the decision backtest's robust rule never does worse than starting now more often
    than the expected rule, on real data."""
    from conftest import EXAMPLE_JOB

    r = cli("plan", EXAMPLE_JOB, "--now", "2026-11-27T10:30Z", "--json")
    doc = json.loads(r.stdout)
    assert doc["policy"]["deferral"] == "robust" and doc["placements"][0]["start"] == "2026-11-27T10:30:00Z"
    assert any("within the forecast's error" in w for w in doc["warnings"])
    plain = json.loads(cli("plan", EXAMPLE_JOB, "--now", "2026-11-27T10:30Z", "--deferral", "expected", "--json").stdout)
    assert plain["policy"]["deferral"] == "expected"
    assert plain["placements"][0]["start"] > doc["placements"][0]["start"]
    assert not any("within the forecast's error" in w for w in plain["warnings"])
    files = [RAW / "NO_2021_hourly.csv", RAW / "NO_2022_hourly.csv"]
    values, start, _ = read_histories(files)
    kw = dict(hours=4, max_delay=24, origins=30, seed=2, score_from=datetime(2022, 1, 1, tzinfo=timezone.utc),
              predictors={"carbonsched": PREDICTORS["carbonsched"]})
    expected = decision_backtest(values, start, robust=False, **kw).scores[0]
    robust = decision_backtest(values, start, robust=True, **kw).scores[0]
    assert robust.worse_than_now_pct <= expected.worse_than_now_pct and robust.waited_pct <= expected.waited_pct


def _strict_json(text: str):
    def refuse(const):
        raise ValueError(f"{const} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_a_predictor_with_no_scored_origin_gives_null_scores_in_strict_json():
    """last-year needs a year of history: on 40 days it scores nothing, and its scores are null, not NaN."""
    r = decision_backtest(daily(40), T0, hours=4, max_delay=20, predictors={**SIMPLE, "last-year": last_year},
                          origins=10)
    doc = _strict_json(json.dumps(r.to_dict(), allow_nan=False))
    ly = next(s for s in doc["scores"] if s["predictor"] == "last-year")
    assert ly["origins"] == 0 and ly["skipped"] == 10
    assert all(ly[k] is None for k in ("realised_saving_pct", "oracle_saving_pct", "captured_pct",
                                       "worse_than_now_pct", "mean_regret_g_per_kwh", "waited_pct"))
    assert all(isinstance(s["realised_saving_pct"], float) for s in doc["scores"] if s["predictor"] != "last-year")


def test_cli_decisions_json_is_strict_when_a_predictor_scores_nothing(cli):
    r = cli("backtest", "decisions", "--history", RAW / "ES_2022_hourly.csv", "--hours", "4", "--max-delay", "24",
            "--origins", "20", "--json")
    assert r.returncode == 0, r.stderr
    ly = next(s for s in _strict_json(r.stdout)["scores"] if s["predictor"] == "last-year")
    assert ly["origins"] == 0 and ly["realised_saving_pct"] is None and ly["waited_pct"] is None
