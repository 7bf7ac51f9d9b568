"""carbonsched: carbon-aware placement for ML training jobs.

    import carbonsched
    from datetime import datetime, timezone
    job = carbonsched.load_job("job.toml")                  # or carbonsched.JobSpec(gpu="A100", gpus=8, hours=12)
    plan = carbonsched.plan(job, now=datetime.now(timezone.utc))
    plan.best, plan.baseline, plan.to_dict(), plan.to_dataframe()

Names are imported lazily (no import-time I/O, fast CLI start).
"""
from __future__ import annotations

__version__ = "0.1.0"

_EXPORTS = {
    "plan": ("carbonsched.planner", "plan"),
    "Plan": ("carbonsched.result", "Plan"),
    "JobSpec": ("carbonsched.jobspec", "JobSpec"),
    "load_job": ("carbonsched.jobspec", "load_job"),
    "job_from_dict": ("carbonsched.jobspec", "job_from_dict"),
    "Policy": ("carbonsched.policies", "Policy"),
    "PowerModel": ("carbonsched.estimate", "PowerModel"),
    "Placement": ("carbonsched.models", "Placement"),
    "list_regions": ("carbonsched.regions", "list_regions"),
    "plan_batch": ("carbonsched.batch", "plan_batch"),
    "BatchPlan": ("carbonsched.batch", "BatchPlan"),
    "plan_interruptible": ("carbonsched.interruptible", "plan_interruptible"),
    "submit": ("carbonsched.submit", "submit"),
    "wait_for_window": ("carbonsched.pipeline", "wait_for_window"),
    "load_policy": ("carbonsched.policyfile", "load_policy"),
    "apply_policy": ("carbonsched.policyfile", "apply_policy"),
    "check_policy": ("carbonsched.policyfile", "check_policy"),
    "get_schema": ("carbonsched.schemas", "get_schema"),
    "resolve_settings": ("carbonsched.settings", "resolve_settings"),
    "CarbonschedError": ("carbonsched.errors", "CarbonschedError"),
    "InfeasibleError": ("carbonsched.errors", "InfeasibleError"),
    "JobSpecError": ("carbonsched.errors", "JobSpecError"),
    "UnknownNameError": ("carbonsched.errors", "UnknownNameError"),
    "PolicyFileError": ("carbonsched.errors", "PolicyFileError"),
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    try:
        module, attr = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'carbonsched' has no attribute {name!r}") from None
    import importlib

    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value
