"""Planning one uninterrupted run: rank the job's candidates by its policy and build the Plan.

``plan`` (the ``"single"`` entry of ``planning.PLANNERS``) takes ``candidates.job_candidates``,
ranks the feasible ones with ``policies.rank`` (one row per offering at its best start, or the
Pareto set), and adds the baseline "default region, start now" and savings against it.
"""
from __future__ import annotations

from datetime import datetime

import numpy as np

from carbonsched.errors import UserInputError
from carbonsched.models import Plan
from carbonsched.policies import Policy, rank
from carbonsched.policies.ranking import robust_bar, robust_starts
from carbonsched.settings import Settings
from carbonsched.spec.job import JobSpec
from carbonsched.planning.assemble import (assemble_plan, intensity_warnings, price_warnings, shown_regions,
                                           speed_warnings, with_saving)
from carbonsched.units import iso_utc, utc_instant
from carbonsched.planning.candidates import job_candidates
from carbonsched.planning.infeasible import infeasible_error



def check_top(top) -> None:
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
        raise UserInputError(f"top must be a whole number >= 1 (or None for all), got {top!r}")


def plan(job: JobSpec, *, now: datetime, policy: Policy | None = None, settings: Settings | None = None,
         offerings_source=None, forecast_source=None, top: int | None = 10) -> Plan:
    """Rank uninterrupted placements for ``job`` as of ``now`` (see ``carbonsched.planning.plan``)."""
    now = utc_instant(now)
    check_top(top)
    jc = job_candidates(job, now=now, policy=policy, settings=settings, offerings_source=offerings_source,
                        forecast_source=forecast_source)
    if not jc.feasible.any():
        raise infeasible_error(jc)
    ranking = rank(jc.cands, jc.feasible, jc.policy)
    n_show = len(ranking.offering) if top is None else min(top, len(ranking.offering))
    placements = [jc.placement(int(oi), int(ki), rank_no=j + 1, score=float(ranking.score[j]))
                  for j, (oi, ki) in enumerate(zip(ranking.offering[:n_show], ranking.start[:n_show]))]
    baseline = jc.baseline()
    if baseline is not None:
        placements = [with_saving(p, baseline) for p in placements]

    warnings = list(jc.warnings)
    warnings.extend(intensity_warnings(jc.forecasts, shown_regions(placements, baseline)))
    warnings.extend(speed_warnings(jc.job, placements, jc.gpus))
    warnings.extend(price_warnings(jc.flagged_prices, placements))
    warnings.extend(tie_warnings(jc, ranking))
    if n_show < len(ranking.offering):
        what = "Pareto-optimal candidates" if jc.policy.objective == "pareto" else "ranked offerings"
        warnings.append(f"showing {n_show} of {len(ranking.offering)} {what} (--top 0 shows all)")
    return assemble_plan(jc, placements, baseline, warnings)


def tie_warnings(jc, ranking) -> list[str]:
    """Say when the best placement starts earlier than its offering's greenest start because the
    gain was within ``min_gain_pct`` or within the forecast's error (carbon, robust deferral: then
    also when waiting on another offering was passed over), or because the cost objective does
    not wait."""
    policy = jc.policy
    if policy.objective not in ("carbon", "cost") or not len(ranking.offering):
        return []
    o, k = int(ranking.offering[0]), int(ranking.start[0])
    if policy.objective == "carbon" and policy.deferral == "robust" and jc.cands.kg_co2e_p90 is not None:
        passed = robust_warning(jc, o, k)
        if passed:
            return passed
    row = np.where(jc.feasible[o], jc.cands.kg_co2e[o], np.inf)
    greenest = int(np.argmin(row))
    if row[greenest] >= row[k] or greenest == k:
        return []
    less = 100.0 * (row[k] - row[greenest]) / row[k]
    if less < 0.1:  # not worth a line
        return []
    at = iso_utc(jc.window.starts[greenest])
    if policy.objective == "cost":
        return [f"start: the cost objective starts as soon as it can; starting at {at} would emit {less:.1f} % less "
                "at the same price (objective lexicographic with order cost, carbon prefers that)"]
    return [f"start: {at} would emit {less:.1f} % less, within min_gain_pct ({policy.min_gain_pct:g} %): "
            "the earlier start was chosen"]


def robust_warning(jc, o: int, k: int) -> list[str]:
    """Robust deferral: the greenest start the rule passed over (not eligible, and greener than the
    chosen one by more than the tie fraction), with the bar its upper decile did not beat."""
    c, tie = jc.cands, jc.policy.tie_fraction
    kg = np.where(jc.feasible, c.kg_co2e, np.inf)
    shut = jc.feasible & ~robust_starts(c, jc.feasible, tie) & (kg < kg[o, k] * (1 - tie))
    if not shut.any():
        return []
    o2, k2 = np.unravel_index(int(np.argmin(np.where(shut, kg, np.inf))), kg.shape)
    less = 100.0 * (kg[o, k] - kg[o2, k2]) / kg[o, k]
    if less < 0.1:
        return []
    bar = float(robust_bar(c, jc.feasible, tie)[o2, 0])
    other = jc.offerings[o2]
    where = "" if o2 == o else f"{other.region_id} {other.instance_type} at "
    first = jc.window.starts[int(np.argmax(jc.feasible[o2]))]  # "now": the earliest start the window allows
    now = "now" if first <= jc.now else f"at the first start the window allows ({iso_utc(first)})"
    return [f"start: {where}{iso_utc(jc.window.starts[k2])} was forecast to emit {less:.1f} % less, but its upper "
            f"decile ({c.kg_co2e_p90[o2, k2]:.3g} kg) does not beat the {bar:.3g} kg expected from starting {now} "
            f"{'there' if o2 != o else 'here'} or on the greenest placement {'now' if now == 'now' else 'then'}: "
            "the gain is within the forecast's "
            f"error, so the plan did not {'move there and ' if o2 != o else ''}wait (deferral = \"robust\"; "
            "\"expected\" waits for the mean)"]
