"""carbonsched: carbon-aware placement for ML training jobs.

    import carbonsched
    from datetime import datetime, timezone
    job = carbonsched.load_job("job.toml")                  # or carbonsched.JobSpec(gpu="A100", gpus=8, hours=12)
    plan = carbonsched.plan(job, now=datetime.now(timezone.utc))
    plan.best, plan.baseline, plan.to_dict(), plan.to_dataframe()

Names are imported lazily (no import-time I/O, fast CLI start); ``dir(carbonsched)`` lists them:
plan, plan_batch, plan_interruptible, load_job, JobSpec, Policy, submit, Tracker, track_emissions,
list_regions, the policy functions and the errors.
"""
from __future__ import annotations

__version__ = "0.1.0"

_EXPORTS = {
    "plan": ("carbonsched.planning", "plan"),
    "Plan": ("carbonsched.models", "Plan"),
    "JobSpec": ("carbonsched.spec.job", "JobSpec"),
    "load_job": ("carbonsched.spec.job", "load_job"),
    "job_from_dict": ("carbonsched.spec.job", "job_from_dict"),
    "Policy": ("carbonsched.policies", "Policy"),
    "PowerModel": ("carbonsched.models", "PowerModel"),
    "Placement": ("carbonsched.models", "Placement"),
    "list_regions": ("carbonsched.planning.regions", "list_regions"),
    "plan_batch": ("carbonsched.planning.batch", "plan_batch"),
    "BatchPlan": ("carbonsched.planning.batch", "BatchPlan"),
    "plan_interruptible": ("carbonsched.planning.interruptible", "best_schedules"),
    "submit": ("carbonsched.run.submit", "submit"),
    "wait_for_window": ("carbonsched.run.wait", "wait_for_window"),
    "load_policy": ("carbonsched.spec.policy_file", "load_policy"),
    "apply_policy": ("carbonsched.spec.policy_file", "apply_policy"),
    "check_policy": ("carbonsched.planning.policy_check", "check_policy"),
    "get_schema": ("carbonsched.spec.schemas", "get_schema"),
    "resolve_settings": ("carbonsched.settings", "resolve_settings"),
    "CarbonschedError": ("carbonsched.errors", "CarbonschedError"),
    "InfeasibleError": ("carbonsched.errors", "InfeasibleError"),
    "JobSpecError": ("carbonsched.errors", "JobSpecError"),
    "UnknownNameError": ("carbonsched.errors", "UnknownNameError"),
    "PolicyFileError": ("carbonsched.errors", "PolicyFileError"),
    "PolicyViolationError": ("carbonsched.errors", "PolicyViolationError"),
    "enforce_policy": ("carbonsched.planning.policy_check", "enforce_policy"),
    "Tracker": ("carbonsched.measure.inprocess", "Tracker"),
    "track_emissions": ("carbonsched.measure.inprocess", "track_emissions"),
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __dir__() -> list[str]:
    """The public names (``dir(carbonsched)``, tab completion), though they load only when used."""
    return sorted(set(__all__) | {"__doc__", "__name__"})


def __getattr__(name: str):
    try:
        module, attr = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'carbonsched' has no attribute {name!r}") from None
    import importlib

    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value
