"""MLflow: a plan and a tracked run, logged to an MLflow run (``pip install 'carbonsched[mlflow]'``).

    import mlflow, carbonsched
    from carbonsched.integrations.mlflow import log_plan, log_run

    with mlflow.start_run():
        log_plan(carbonsched.plan(job, now=now))          # where and when, and what it should emit
        with carbonsched.Tracker(region="gcp:europe-west4", save=False) as t:
            train()
        log_run(t.measurement)                           # what it used and emitted

Both log to the active run; with none, to a new run they start and end (``$MLFLOW_RUN_ID`` names
an existing run to resume, as ``mlflow.start_run`` reads it). The tracking server is MLflow's own
choice (``$MLFLOW_TRACKING_URI``, ``mlflow.set_tracking_uri``). MLflow is imported only when one
of these functions runs; ``carbonsched plan`` never imports this module.

``log_plan(plan)`` (a ``Plan`` or its JSON dict), the best placement:

* params ``carbonsched.job``, ``carbonsched.region``, ``carbonsched.instance_type``,
  ``carbonsched.gpu``, ``carbonsched.gpu_count``, ``carbonsched.market``, ``carbonsched.start``,
  ``carbonsched.intensity_source``, ``carbonsched.intensity_signal``, ``carbonsched.objective``,
  ``carbonsched.baseline_region``, ``carbonsched.policy`` (when planned under one);
* metrics ``carbonsched.plan.kg_co2e``, ``.energy_kwh``, ``.cost_usd``, ``.runtime_hours``,
  ``.mean_intensity_g_per_kwh``, ``.baseline_kg_co2e``, ``.saving_pct`` (vs the baseline);
* artifact ``carbonsched/plan.json`` (the ``plan --json`` document).

``log_run(measurement)`` (a ``Measurement``, its record dict, or a record file):

* params ``carbonsched.run.job_id``, ``carbonsched.run.region``, ``carbonsched.run.gpu_method``,
  ``carbonsched.run.cpu_method``, and with a ledger ``carbonsched.run.intensity_source``;
* metrics ``carbonsched.run.energy_kwh.gpu`` / ``.cpu`` / ``.memory`` / ``.it`` (kWh before PUE),
  ``carbonsched.run.wall_seconds``, ``carbonsched.run.exit_code``; with a ledger (a region known:
  ``region=`` or the record's) ``carbonsched.run.kg_co2e`` (operational + embodied),
  ``.kg_co2e_operational``, ``.kg_co2e_embodied``, ``.facility_energy_kwh``,
  ``.intensity_g_per_kwh``, and ``.saving_pct`` / ``.forecast_error_pct`` when a baseline / the
  plan are known;
* artifacts ``carbonsched/measurement.json`` and, with a ledger, ``carbonsched/report.md`` (the
  disclosure text of ``carbonsched report``).

The ledger's intensity comes from ``intensity_source`` (default ``profile``: the embedded
typical-day profiles, offline; ``auto`` or a live source as in ``carbonsched report``).
MLflow params cannot change once logged: log one plan per MLflow run.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from carbonsched.errors import ConfigError
from carbonsched.kubernetes import all_regions
from carbonsched.measure.ledger import Ledger, build_ledger
from carbonsched.measure.report import disclosure, render
from carbonsched.measure.track import Measurement, read_record
from carbonsched.providers.grid import build_forecast_source
from carbonsched.settings import resolve_settings

ARTIFACT_DIR = "carbonsched"


def import_mlflow():
    """The ``mlflow`` module; ConfigError (exit 2) naming the extra when it is not installed."""
    try:
        import mlflow
    except ImportError:
        raise ConfigError("MLflow logging needs MLflow: pip install 'carbonsched[mlflow]'") from None
    return mlflow


@contextmanager
def _active_or_new_run(mlflow):
    """The active run, left open; else a new run (or $MLFLOW_RUN_ID's), ended on the way out."""
    active = mlflow.active_run()
    if active is not None:
        yield active
        return
    with mlflow.start_run() as run:
        yield run


def _clean(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


def plan_params_and_metrics(doc: dict) -> tuple[dict, dict]:
    """What ``log_plan`` logs from a plan document (module docstring): (params, metrics)."""
    best = doc["placements"][0]
    base = doc.get("baseline") or {}
    params = _clean({
        "carbonsched.job": (doc.get("job") or {}).get("name"), "carbonsched.region": best["region_id"],
        "carbonsched.instance_type": best["instance_type"], "carbonsched.gpu": best["gpu"],
        "carbonsched.gpu_count": best["gpu_count"], "carbonsched.market": best["market"],
        "carbonsched.start": best["start"], "carbonsched.intensity_source": best.get("intensity_source"),
        "carbonsched.intensity_signal": best.get("intensity_signal"),
        "carbonsched.objective": (doc.get("policy") or {}).get("objective"),
        "carbonsched.baseline_region": base.get("region_id"),
        "carbonsched.policy": (doc.get("policy_file") or {}).get("name"),
    })
    metrics = _clean({
        "carbonsched.plan.kg_co2e": best["kg_co2e"], "carbonsched.plan.energy_kwh": best["energy_kwh"],
        "carbonsched.plan.cost_usd": best["cost_usd"], "carbonsched.plan.runtime_hours": best["runtime_hours"],
        "carbonsched.plan.mean_intensity_g_per_kwh": best.get("mean_intensity_g_per_kwh"),
        "carbonsched.plan.baseline_kg_co2e": base.get("kg_co2e"),
        "carbonsched.plan.saving_pct": best.get("saving_vs_baseline_pct"),
    })
    return params, metrics


def log_plan(plan) -> str:
    """Log ``plan`` (a ``Plan`` or its JSON dict) to the active MLflow run, else a new one; the run id."""
    mlflow = import_mlflow()
    doc = plan.to_dict() if hasattr(plan, "to_dict") else plan
    params, metrics = plan_params_and_metrics(doc)
    with _active_or_new_run(mlflow) as run:
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        mlflow.log_dict(doc, f"{ARTIFACT_DIR}/plan.json")
        return run.info.run_id


def _record_of(measurement) -> dict:
    if isinstance(measurement, Measurement):
        return measurement.to_dict()
    if isinstance(measurement, (str, Path)):
        return read_record(measurement)
    return measurement


def run_ledger(record: dict, *, region: str | None = None, plan: dict | None = None,
               intensity_source: str = "profile", settings=None) -> Ledger | None:
    """The ledger of ``record`` when its region is known (``region`` or the record's), else None."""
    if not (region or record.get("region_id")):
        return None
    settings = settings or resolve_settings()
    source = build_forecast_source(settings, name=intensity_source)
    return build_ledger(record, source=source, region=region, plan=plan, regions=all_regions(settings))


def run_params_and_metrics(record: dict, ledger: Ledger | None) -> tuple[dict, dict]:
    """What ``log_run`` logs from a record and its ledger (module docstring): (params, metrics)."""
    params = _clean({
        "carbonsched.run.job_id": record.get("job_id"),
        "carbonsched.run.region": ledger.region_id if ledger else record.get("region_id"),
        "carbonsched.run.gpu_method": record["gpu"]["method"], "carbonsched.run.cpu_method": record["cpu"]["method"],
        "carbonsched.run.intensity_source": f"{ledger.intensity_source}/{ledger.intensity_kind}" if ledger else None,
    })
    metrics = {f"carbonsched.run.energy_kwh.{part}": float(record[part]["energy_kwh"])
               for part in ("gpu", "cpu", "memory")}
    metrics.update({"carbonsched.run.energy_kwh.it": float(record["it_energy_kwh"]),
                    "carbonsched.run.wall_seconds": float(record["wall_seconds"]),
                    "carbonsched.run.exit_code": float(record["exit_code"])})
    if ledger is not None:
        metrics.update(_clean({
            "carbonsched.run.kg_co2e": ledger.kg_co2e, "carbonsched.run.kg_co2e_operational": ledger.kg_co2e_operational,
            "carbonsched.run.kg_co2e_embodied": ledger.kg_co2e_embodied,
            "carbonsched.run.facility_energy_kwh": ledger.facility_energy_kwh,
            "carbonsched.run.intensity_g_per_kwh": ledger.intensity_g_per_kwh,
            "carbonsched.run.saving_pct": (ledger.baseline or {}).get("saving_pct"),
            "carbonsched.run.forecast_error_pct": (ledger.forecast or {}).get("error_pct"),
        }))
    return params, metrics


def log_run(measurement, *, region: str | None = None, plan: dict | None = None, ledger: Ledger | None = None,
            intensity_source: str = "profile", settings=None) -> str:
    """Log a tracked run (a ``Measurement``, its record, or a record file) to the active MLflow run,
    else a new one; the run id. ``ledger`` (else built when the region is known: ``region`` or
    the record's; ``plan``: the plan it followed, for forecast vs actual) adds kgCO2e and the report."""
    mlflow = import_mlflow()
    record = _record_of(measurement)
    if ledger is None:
        ledger = run_ledger(record, region=region, plan=plan, intensity_source=intensity_source, settings=settings)
    params, metrics = run_params_and_metrics(record, ledger)
    with _active_or_new_run(mlflow) as run:
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        mlflow.log_dict(record, f"{ARTIFACT_DIR}/measurement.json")
        if ledger is not None:
            mlflow.log_text(render(disclosure(ledger, record), "md"), f"{ARTIFACT_DIR}/report.md")
        return run.info.run_id
