"""A batch planned under an organisation's policy: ``enforce_policy_batch`` (``plan --batch --policy``).

Apart from ``policy_check`` so that a single plan under a policy does not load the batch solver.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from carbonsched.errors import InfeasibleError, PolicyViolationError
from carbonsched.spec.job import JobSpec
from carbonsched.spec.policy_file import PolicyFile, apply_policy
from carbonsched.planning import plan as plan_job
from carbonsched.planning.batch import BatchPlan, plan_batch
from carbonsched.planning.policy_check import refusal


def enforce_policy_batch(jobs: list[JobSpec], pf: PolicyFile | None, *, now: datetime, objective=None,
                         settings=None, offerings_source=None, forecast_source=None, **batch_kw) -> BatchPlan:
    """``plan_batch`` of ``jobs`` under policy ``pf`` (each job as ``apply_policy`` leaves it; the
    policy's objective, when it sets one, replaces ``objective``), recording the policy
    (``BatchPlan.policy_file``, with ``changes`` per job name). Refusals as ``enforce_policy``'s,
    naming the job; an InfeasibleError about capacity stays as it is."""
    kw = dict(settings=settings, offerings_source=offerings_source, forecast_source=forecast_source)
    if pf is None:
        return plan_batch(jobs, now=now, objective=objective, **kw, **batch_kw)
    applied, changes = [], []
    for j in jobs:
        try:
            a, ch = apply_policy(j, pf)
        except PolicyViolationError as exc:
            raise PolicyViolationError(f"job {j.name!r}: {exc}", rules=exc.rules) from None
        applied.append(a)
        changes.append(ch)
    if pf.get("objective") is not None and applied:
        objective = applied[0].policy
    try:
        result = plan_batch(applied, now=now, objective=objective, **kw, **batch_kw)
    except InfeasibleError:
        for j, a in zip(jobs, applied):  # a job with no placement under the policy: say which rule bites
            try:
                plan_job(a, now=now, top=1, **kw)
            except InfeasibleError as exc:
                raise refusal(j, a, pf, exc, now=now, **kw) from None
        raise  # every job fits alone: the capacity is short, not the policy to blame
    return replace(result, policy_file={**pf.provenance(), "changes": dict(zip(result.names, changes))})
