"""Deferral rules in batch plans: a batch keeps the start ``plan`` gives each job alone where capacity allows."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from carbonsched.cli.render import render_batch
from carbonsched.planning.batch import plan_batch
from carbonsched.planning.single import plan
from carbonsched.settings import Settings
from carbonsched.spec.batch_file import read_batch
from carbonsched.spec.job import job_from_dict

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)
SETTINGS = Settings()
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def h100(name, regions=None, deferral="robust", hours=6, **policy):
    return job_from_dict({"name": name, "gpu": "H100", "gpus": 8, "hours": hours, "window": {"max_delay": "24h"},
                          "constraints": {"gpu_types": ["H100"], "gpu_counts": [8],
                                          **({"regions": regions} if regions else {})},
                          "policy": {"deferral": deferral, **policy}})


def where(p):
    return None if p is None else (p.region_id, p.instance_type, p.start)


@pytest.mark.parametrize("now", [NOW, datetime(2026, 6, 1, 3, 30, tzinfo=timezone.utc)])
def test_unlimited_batch_places_every_job_where_plan_puts_it_alone(now):
    jobs, _, _ = read_batch(EXAMPLES / "batch.toml")
    bp = plan_batch(jobs, now=now, settings=SETTINGS)
    assert [where(p) for p in bp.placements] == [where(plan(j, now=now, settings=SETTINGS).placements[0]) for j in jobs]
    assert [where(p) for p in bp.greedy] == [where(p) for p in bp.placements]  # greedy gets the same rule


@pytest.mark.parametrize("policy", [{"objective": "time"}, {"objective": "cost"},
                                    {"objective": "weighted", "weights": {"carbon": 1, "cost": 0.5}},
                                    {"objective": "weighted", "weights": {"time": 1}},  # one term: its ties too
                                    {"objective": "weighted", "weights": {"cost": 1}}])
def test_a_one_job_batch_takes_the_jobs_objective_and_plans_ties_as_plan(policy):
    """A job file's own objective is the batch's when every job asks for it; placements equally fast
    or cheap (the same finish in several regions, one price over many hours) go where plan ranks
    them first (the greener; the earlier start), not to an arbitrary one of them (the batch put a
    time job in ap-northeast-1 at 5.2 kg where plan found eu-north-1 at 0.26 kg, same finish)."""
    job = job_from_dict({"name": "t", "gpu": "A100", "gpus": 8, "hours": 4, "window": {"max_delay": "24h"},
                         "policy": policy})
    bp = plan_batch([job], now=NOW, settings=SETTINGS)
    assert bp.objective.split()[0] == policy["objective"]
    assert where(bp.placements[0]) == where(plan(job, now=NOW, settings=SETTINGS).placements[0])
    assert not [w for w in bp.warnings if "objective" in w]


def test_what_a_batch_does_not_do_for_a_job_is_said():
    lex = job_from_dict({"name": "l", "gpu": "A100", "gpus": 8, "hours": 4,
                         "policy": {"objective": "lexicographic", "order": ["cost", "carbon"]}})
    split = job_from_dict({"name": "i", "gpu": "A100", "gpus": 8, "hours": 4, "window": {"deadline": "2026-11-29T10:00Z"},
                           "interruptible": {"max_segments": 3}})
    bp = plan_batch([lex, split], now=NOW, settings=SETTINGS)
    assert bp.objective == "carbon"
    assert "job 'l' asks for objective lexicographic in [policy]; a batch optimises one objective for all its jobs, " \
           "here carbon (--objective sets it)" in bp.warnings
    assert any(w.startswith("job 'i' is [interruptible]: a batch plans each job as one uninterrupted run") for w in bp.warnings)
    # --objective wins; jobs that never asked for another (carbon is the default) are not warned about
    bp = plan_batch([split], now=NOW, settings=SETTINGS, objective="cost")
    assert bp.objective == "cost" and not [w for w in bp.warnings if "objective" in w]


def test_a_refused_wait_starts_now_and_the_solver_would_have_waited():
    regions = ["gcp:northamerica-northeast2", "aws:eu-north-1"]
    a = h100("a", regions)
    alone = plan(a, now=NOW, settings=SETTINGS).placements[0]
    expected = plan(h100("a", regions, "expected"), now=NOW, settings=SETTINGS).placements[0]
    assert alone.start == NOW and expected.start > NOW  # the mean forecast would wait; its p90 does not beat now
    bp = plan_batch([a], now=NOW, settings=SETTINGS)
    assert where(bp.placements[0]) == where(alone)
    r = bp.solver["deferral_rules"]
    assert r["moved"] == 1 and r["objective_change"] > 0
    assert bp.placements[0].kg_co2e == pytest.approx(alone.kg_co2e)
    # with deferral = "expected" the solver's (mean-forecast) choice is plan's: nothing moves
    e = plan_batch([h100("a", regions, "expected")], now=NOW, settings=SETTINGS)
    assert where(e.placements[0]) == where(expected) and e.solver["deferral_rules"]["moved"] == 0


def test_a_wait_counts_against_the_now_starts_that_have_room():
    """b's own "now" is full (a holds it): its rule compares its wait with the "now" starts that
    have room; in one region there is none, so b may wait (capacity, not a forecast gain). With a
    second region whose "now" has room, b's wait must beat that "now" on its p90."""
    one = ["aws:eu-north-1"]
    bp = plan_batch([h100("a", one), h100("b", one)], now=NOW, settings=SETTINGS, capacity=8)
    a, b = bp.placements
    assert a.start == NOW and b.start >= a.end  # first come: plan's choice; b after a
    assert bp.solver["deferral_rules"]["moved"] == 1  # a: the solver's wait -> now
    text = render_batch(bp.to_dict())
    assert "deferral rules: 1 job(s) moved to where plan would start them" in text
    assert "optimality gap 0.00 % for the solver's assignment, before the moves below" in text

    two = ["aws:eu-north-1", "aws:us-east-1"]  # us-east-1's "now" has room but is far dirtier
    bp2 = plan_batch([h100("a", two), h100("b", two)], now=NOW, settings=SETTINGS,
                     capacity={"aws:eu-north-1": {"H100": 8}})
    b2 = bp2.placements[1]
    from carbonsched.planning.candidates import job_candidates

    jc = job_candidates(h100("b", two), now=NOW, settings=SETTINGS)
    east_now = min(jc.cands.expected_kg[o, 0] for o, off in enumerate(jc.offerings) if off.region_id == "aws:us-east-1")
    # b waits in Stockholm: its p90 beats starting now in us-east-1 (the only "now" with room); a
    # capacity-blind rule would compare with Stockholm's full "now" and send b to us-east-1 (13x the kg)
    assert b2.region_id == "aws:eu-north-1" and b2.start >= bp2.placements[0].end
    assert b2.kg_co2e_p90 < east_now


def test_moves_never_unplace_a_job_nor_break_capacity():
    regions = ["aws:eu-north-1", "aws:ca-central-1", "gcp:northamerica-northeast2"]
    jobs = [h100(f"j{i}", regions, hours=3 + i % 4) for i in range(9)]
    free = plan_batch(jobs, now=NOW, settings=SETTINGS, capacity=16)
    solver_only = plan_batch([h100(j.name, regions, "expected", hours=j.hours) for j in jobs], now=NOW,
                             settings=SETTINGS, capacity=16)
    assert free.totals()["jobs"] == solver_only.totals()["jobs"] == 9
    use: dict = {}
    for p in free.placements:
        first = int((p.start - NOW).total_seconds() // 3600)
        last = int(np.ceil((p.end - NOW).total_seconds() / 3600 - 1e-9))
        for h in range(first, last):
            use[(p.region_id, h)] = use.get((p.region_id, h), 0) + p.gpu_count
    assert max(use.values()) <= 16
    assert 1 <= free.solver["deferral_rules"]["moved"] <= 9


def test_a_job_refused_its_wait_takes_any_accepted_start_with_room():
    """Plan's choices are one start per offering; when the one offering's is taken, a refused wait
    moves to "now" (always accepted) or another accepted start with room."""
    jobs = [h100(n, ["aws:ap-northeast-1"]) for n in "abc"]
    alone = plan(jobs[0], now=NOW, settings=SETTINGS).placements[0]
    assert alone.start > NOW  # plan waits for the night here; the solver gives that slot to b and c
    bp = plan_batch(jobs, now=NOW, settings=SETTINGS, capacity=8)
    a = bp.placements[0]
    assert a.start == NOW  # its solver start (a 3 h wait the rule refuses) -> now, which has room
    spans = sorted((p.start, p.end) for p in bp.placements)
    assert all(x[1] <= y[0] for x, y in zip(spans, spans[1:]))  # one 8-GPU job at a time


def test_min_gain_one_job_batch_is_plans_choice():
    now = datetime(2026, 6, 1, 3, 30, tzinfo=timezone.utc)
    for gain in (5, 12):
        for d in ("robust", "expected"):
            job = h100("x", deferral=d, min_gain_pct=gain)
            assert where(plan_batch([job], now=now, settings=SETTINGS).placements[0]) == \
                where(plan(job, now=now, settings=SETTINGS).placements[0])


def test_cli_policy_flags_apply_to_every_job_and_job_flags_are_refused(capsys):
    from carbonsched.cli.main import main

    argv = ["plan", "--batch", str(EXAMPLES / "batch.toml"), "--now", "2026-11-27T10:00Z", "--json"]
    assert main(argv) == 0
    robust = json.loads(capsys.readouterr().out)
    assert main(argv + ["--deferral", "expected"]) == 0
    expected = json.loads(capsys.readouterr().out)
    assert robust["solver"]["deferral_rules"]["moved"] >= 1 and expected["solver"]["deferral_rules"]["moved"] == 0
    assert expected["totals"]["kg_co2e"] < robust["totals"]["kg_co2e"]  # waits for gains in the mean forecast
    assert main(argv + ["--gpu", "H100", "--max-delay", "3h"]) == 2
    err = capsys.readouterr().err
    assert "gpu, window.max_delay" in err and "[[job]] tables" in err
    assert main(argv + ["--weights", "carbon=1,cost=0.5"]) == 0  # the batch objective (was silently carbon)
    assert json.loads(capsys.readouterr().out)["objective"].startswith("weighted")
    assert main(argv + ["--objective", "cost", "--weights", "carbon=1"]) == 2
    assert "--weights weigh the terms of --objective weighted" in capsys.readouterr().err


def test_a_move_that_frees_a_now_is_seen_by_the_jobs_before_it():
    """b's solver start fills a's "now", so a's wait is accepted on the first pass; b then moves
    away and the next pass sends a to plan's choice for it (one pass left a waiting 15 h)."""
    a = job_from_dict({"name": "a", "gpu": "H100", "gpus": 8, "hours": 5,
                       "window": {"earliest_start": "2026-11-27T14:00:00Z", "max_delay": "24h"},
                       "constraints": {"gpu_types": ["H100"], "regions": ["aws:us-west-2", "aws:eu-north-1"]},
                       "policy": {"risk": "p90"}})
    b = job_from_dict({"name": "b", "gpu": "H100", "gpus": 8, "hours": 3.5, "priority": 5, "window": {"max_delay": "6h"},
                       "constraints": {"gpu_types": ["H100"],
                                       "regions": ["gcp:northamerica-northeast1", "aws:eu-north-1", "gcp:us-west1"]},
                       "policy": {"min_gain_pct": 5}})
    bp = plan_batch([a, b], now=NOW, settings=SETTINGS, capacity=8)
    assert where(bp.placements[0]) == where(plan(a, now=NOW, settings=SETTINGS).placements[0])


def test_the_bar_looks_past_a_full_region_to_the_greenest_now_with_room():
    """Spot L4s: the greenest "now"s are all Stockholm instance and market variants. With
    Stockholm full, the job must not wait at a p90 worse than starting now in the next greenest
    region with room (the bar once looked at 8 offerings, all in Stockholm, and accepted any wait)."""
    now = datetime(2026, 9, 1, 0, 0, tzinfo=timezone.utc)
    spec = {"name": "x", "gpu": "L4", "gpus": 1, "hours": 4, "window": {"max_delay": "12h"}, "constraints": {"spot": True}}
    bp = plan_batch([job_from_dict(spec)], now=now, settings=SETTINGS, capacity={"aws:eu-north-1": {"L4": 0, "L40S": 0}})
    elsewhere = job_from_dict({**spec, "constraints": {"spot": True, "exclude_regions": ["aws:eu-north-1"]}})
    assert where(bp.placements[0]) == where(plan(elsewhere, now=now, settings=SETTINGS).placements[0])


@pytest.mark.parametrize("now, gpu, count, window, gain, deferral, risk, spot", [
    (datetime(2026, 6, 1, 3, 30, tzinfo=timezone.utc), "H100", 8, "24h", 5, "robust", "mean", True),
    (datetime(2026, 9, 1, 0, 0, tzinfo=timezone.utc), "H100", 8, "24h", 12, "expected", "p90", False),
    (datetime(2026, 9, 1, 0, 0, tzinfo=timezone.utc), "L4", 1, "6h", 12, "expected", "mean", False),
    (datetime(2026, 9, 1, 0, 0, tzinfo=timezone.utc), "H100", 8, "48h", 0, "expected", "mean", False),  # equal-kg days
])
def test_one_job_batch_is_plan_with_its_tie_rules(now, gpu, count, window, gain, deferral, risk, spot):
    """plan's tie rule (earliest within min_gain per offering, then offerings bucketed) may pick a
    start up to (1 + tie)^2 dearer than the cheapest, and among equally green days the first."""
    job = job_from_dict({"name": "x", "gpu": gpu, "gpus": count, "hours": 6, "window": {"max_delay": window},
                         "constraints": {"gpu_types": [gpu], "spot": spot},
                         "policy": {"min_gain_pct": gain, "deferral": deferral, "risk": risk}})
    assert where(plan_batch([job], now=now, settings=SETTINGS).placements[0]) == \
        where(plan(job, now=now, settings=SETTINGS).placements[0])


@pytest.mark.parametrize("deferral", ["expected", "robust"])
def test_jobs_the_solver_left_out_get_the_repairs_columns_even_when_nothing_moved(deferral):
    """The solver sees each job's top-k columns only; the repair's own columns (plan's choices,
    the "now" starts) may still have room for a job it left out, whether or not another job moved."""
    jobs = [h100(n, ["aws:eu-north-1"], deferral) for n in "ab"]  # top 1: both want the same greenest hour
    for strict in (False, True):
        bp = plan_batch(jobs, now=NOW, settings=SETTINGS, top_k=1, default_capacity=8, strict=strict)
        assert all(p is not None for p in bp.placements) and bp.solver["deferral_rules"]["placed_after"] == 1
        assert bp.solver["unplaced_weight"] == 0 and bp.solver["placement_proven_maximal"]  # all placed
        spans = sorted((p.start, p.end) for p in bp.placements)
        assert spans[0][1] <= spans[1][0]
