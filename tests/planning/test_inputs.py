"""PlanInputs: sharing the catalog, masks and forecasts between the jobs of a batch changes nothing.

Each job's candidates built with one shared PlanInputs (as plan_batch does, in an order where
every memo is hit by several jobs) must equal, array for array, those built on their own (as
``plan`` does)."""
from __future__ import annotations

from datetime import datetime, timezone

import numpy as np

from carbonsched.planning.candidates import job_candidates
from carbonsched.planning.inputs import PlanInputs
from carbonsched.providers.cloud import choose_offering_source
from carbonsched.providers.grid import build_forecast_source
from carbonsched.settings import Settings
from carbonsched.spec.job import job_from_dict

NOW = datetime(2026, 11, 27, 10, 30, tzinfo=timezone.utc)
SETTINGS = Settings()

JOBS = [
    {"name": "a", "gpu": "H100", "gpus": 8, "hours": 6, "window": {"max_delay": "12h"}, "constraints": {"gpu_types": ["H100"]}},
    {"name": "b", "gpu": "H100", "gpus": 8, "hours": 3, "window": {"max_delay": "6h"}, "constraints": {"gpu_types": ["H100"]}},
    {"name": "c", "gpu": "L4", "gpus": 1, "hours": 2, "window": {"max_delay": "24h"}},
    {"name": "d", "gpu": "A100", "gpus": 8, "hours": 5, "window": {"max_delay": "12h"},
     "constraints": {"regions": ["aws:eu-*", "gcp:europe-*"], "spot": True}},
    {"name": "e", "gpu": "A100", "gpus": 8, "hours": 5, "window": {"max_delay": "12h"},
     "constraints": {"regions": ["aws:eu-*", "gcp:europe-*"], "spot": True}, "data": {"size_gb": 200, "home_region": "aws:eu-west-1"}},
    {"name": "f", "gpu": "L4", "gpus": 1, "hours": 2, "window": {"max_delay": "24h"}, "constraints": {"providers": ["gcp"]}},
]


def _same(a, b):
    assert [o for o in a.offerings] == [o for o in b.offerings] and a.base_offering == b.base_offering
    for name in ("runtime_h", "energy_kwh", "kg_co2e", "kg_co2e_p90", "cost_usd"):
        assert np.array_equal(getattr(a.est, name), getattr(b.est, name), equal_nan=True), name
    assert np.array_equal(a.feasible, b.feasible)
    assert a.eliminated == b.eliminated and a.numeric_elim == b.numeric_elim and a.warnings == b.warnings
    assert a.forecasts.keys() == b.forecasts.keys()
    for r in a.forecasts:
        assert np.array_equal(a.forecasts[r].intensity_g_per_kwh, b.forecasts[r].intensity_g_per_kwh)


def test_shared_inputs_give_the_same_candidates_as_one_job_alone():
    offerings, forecasts = choose_offering_source(SETTINGS), build_forecast_source(SETTINGS)
    shared = PlanInputs(offerings, forecasts, SETTINGS.exclude_flagged_prices)
    jobs = [job_from_dict(j) for j in JOBS]
    together = [job_candidates(j, now=NOW, settings=SETTINGS, inputs=shared) for j in jobs + jobs[::-1]]
    for j, jc in zip(jobs + jobs[::-1], together):
        alone = job_candidates(j, now=NOW, settings=SETTINGS, offerings_source=offerings, forecast_source=forecasts)
        _same(jc, alone)
    # the memos were hit: one table per spot flag, one mask set per constraint key
    assert len(shared._usable) == 2 and len(shared._masks) == 4
