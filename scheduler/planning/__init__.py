"""Planning: job spec -> candidates -> estimates -> policy ranking -> Plan.

``plan(job, now=...)`` picks the planner for the job's kind from ``PLANNERS`` (an explicit
registry, so the planners never call each other):

* ``"single"`` (``single.py``): one uninterrupted run, ranked by the job's policy;
* ``"interruptible"`` (``interruptible.py``): a job with ``[interruptible]`` runs in the
  lowest-carbon segments before its deadline (``best_schedules``).

Both start from ``candidates.job_candidates`` (offerings x starts, forecasts, ``estimate.py``'s
vectorised estimates, feasibility) and finish with ``assemble.assemble_plan`` (placements,
baseline, savings, warnings, data sources); ``infeasible.py`` explains an empty candidate set.
``batch.py`` places many jobs under shared capacity from the same candidates; ``regions.py`` and
``region_forecast.py`` answer the ``regions`` and ``forecast`` commands; ``policy_check.py`` says
what an organisation's policy file changes in a plan.
"""
from __future__ import annotations

from datetime import datetime
from typing import Callable

from carbonsched.models import Plan
from carbonsched.units import utc_instant
from carbonsched.planning import single


def _interruptible(job, **kw) -> Plan:
    from carbonsched.planning import interruptible

    return interruptible.plan(job, **kw)


PLANNERS: dict[str, Callable[..., Plan]] = {"single": single.plan, "interruptible": _interruptible}


def planner_for(job) -> str:
    """The PLANNERS key for ``job``: ``"interruptible"`` when it has ``[interruptible]``."""
    return "interruptible" if job.interruptible is not None else "single"


def plan(job, *, now: datetime, policy=None, settings=None, offerings_source=None, forecast_source=None,
         top: int | None = 10) -> Plan:
    """Rank placements for ``job`` as of ``now`` (aware datetime; plans are reproducible given it).

    ``policy`` overrides the job's own; ``top`` limits the placements returned (None = all
    offerings' best starts, or the whole Pareto front). ``offerings_source`` and
    ``forecast_source`` default to the catalog and intensity sources the settings choose
    (embedded data offline; see ``carbonsched.providers``).
    """
    now = utc_instant(now)
    return PLANNERS[planner_for(job)](job, now=now, policy=policy, settings=settings,
                                      offerings_source=offerings_source, forecast_source=forecast_source, top=top)
