"""Measure a block of this process: ``carbonsched track`` for notebooks and training scripts.

    import carbonsched

    with carbonsched.Tracker(job="llama-ft", region="gcp:europe-west4") as t:
        train()
    t.measurement.it_energy_kwh, t.kg_co2e, t.record        # after the block

    @carbonsched.track_emissions(region="gcp:europe-west4", out="runs/train.json")
    def train(): ...

The same sampling as ``carbonsched track`` (``measure.track.Sampler``: the NVML/RAPL readers of
``measure/energy.py`` via ``open_first``, else the power model), taken by a background thread
every ``interval_s`` while the block runs; the same record (``Measurement.to_dict()``), kept where
``track`` keeps it (``measure.track.save_record``): the job store under ``job``, and/or the JSON
file ``out``; with neither, ``$CARBONSCHED_HOME/measurements/<start>.json``. ``save=False`` keeps
it only in memory.

The record's ``command`` is ``command`` (default: this process's ``sys.argv``; the decorator:
``module.function``). ``exit_code``: 0 when the block ends normally; when it raises, 1 (130 for
KeyboardInterrupt, the code of a SystemExit) with the exception named in ``warnings``: the
record is kept and the exception goes on.

Emissions (``kg_co2e``, only with ``region``): the ledger of the record (``measure.ledger
.build_ledger``: hourly energy x PUE x intensity, plus embodied), intensity from
``intensity_source`` (default ``profile``, the embedded typical-day profiles: offline, so the end
of a run never waits on the network; ``auto`` and the live sources work as in ``report``).

Prometheus (optional, ``pip install 'carbonsched[prometheus]'``, prometheus-client imported only
when asked for), written once when the block ends:

* ``prometheus_textfile=PATH`` (``*.prom`` in node_exporter's ``--collector.textfile.directory``):
  written atomically (a temporary file renamed over PATH), with a ``job_id`` label when ``job``
  is given;
* ``pushgateway=URL``: pushed (HTTP PUT, replacing the group) as job ``carbonsched`` with
  grouping key ``job_id`` when ``job`` is given.

Metrics (gauges; ``METRICS``): ``carbonsched_energy_kwh{part="gpu"|"cpu"|"memory"}`` (IT energy,
before PUE; the parts sum to the record's ``it_energy_kwh``), ``carbonsched_wall_seconds``,
``carbonsched_emissions_kg{region=...}`` (kgCO2e, operational + embodied; only with ``region``),
``carbonsched_run_end_timestamp_seconds`` (Unix time the block ended). A failed export is a
warning (``RuntimeWarning``, also in ``Tracker.export_errors``), never a lost record.
"""
from __future__ import annotations

import functools
import math
import os
import sys
import threading
import time
import warnings as _warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

from carbonsched.errors import CarbonschedError, ConfigError, TrackError
from carbonsched.kubernetes import all_regions
from carbonsched.measure.energy import CPU_CHAIN, GPU_CHAIN
from carbonsched.measure.ledger import Ledger, build_ledger
from carbonsched.measure.track import Measurement, Sampler, save_record
from carbonsched.models import PowerModel
from carbonsched.providers.grid import build_forecast_source
from carbonsched.refdata import resolve_region
from carbonsched.settings import resolve_settings

METRICS = {
    "carbonsched_energy_kwh": "IT energy of the tracked run by part (gpu, cpu, memory), kWh before PUE",
    "carbonsched_wall_seconds": "wall-clock duration of the tracked run, seconds",
    "carbonsched_emissions_kg": "emissions of the tracked run, kgCO2e (operational + embodied; needs region)",
    "carbonsched_run_end_timestamp_seconds": "when the tracked run ended, Unix time",
}

PUSH_JOB = "carbonsched"


def _exit_code(exc: BaseException | None) -> int:
    if exc is None:
        return 0
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 130 if isinstance(exc, KeyboardInterrupt) else 1


def _prometheus_client():
    try:
        import prometheus_client
    except ImportError:
        raise ConfigError("Prometheus output needs prometheus-client: pip install 'carbonsched[prometheus]'") from None
    return prometheus_client


def metrics_registry(m: Measurement, *, kg_co2e: float | None = None, region_id: str | None = None,
                     labels: dict | None = None):
    """A prometheus-client ``CollectorRegistry`` holding ``METRICS`` for ``m`` (module docstring);
    ``labels`` are added to every metric."""
    pc = _prometheus_client()
    labels = dict(labels or {})
    names = sorted(labels)
    reg = pc.CollectorRegistry()
    energy = pc.Gauge("carbonsched_energy_kwh", METRICS["carbonsched_energy_kwh"], [*names, "part"], registry=reg)
    for part in ("gpu", "cpu", "memory"):
        energy.labels(**labels, part=part).set(float(getattr(m, part)["energy_kwh"]))
    wall = pc.Gauge("carbonsched_wall_seconds", METRICS["carbonsched_wall_seconds"], names, registry=reg)
    (wall.labels(**labels) if names else wall).set(m.wall_seconds)
    end = pc.Gauge("carbonsched_run_end_timestamp_seconds", METRICS["carbonsched_run_end_timestamp_seconds"], names,
                   registry=reg)
    (end.labels(**labels) if names else end).set(m.ended_at.timestamp())
    if kg_co2e is not None:
        kg = pc.Gauge("carbonsched_emissions_kg", METRICS["carbonsched_emissions_kg"], [*names, "region"], registry=reg)
        kg.labels(**labels, region=region_id or "").set(kg_co2e)
    return reg


def write_prometheus_textfile(path: str | Path, m: Measurement, *, kg_co2e: float | None = None,
                              region_id: str | None = None, job_id: str | None = None) -> Path:
    """``METRICS`` of ``m`` in the text format at ``path``, atomically (for node_exporter's
    textfile collector, which reads ``*.prom``); ``job_id`` becomes a label."""
    pc = _prometheus_client()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    reg = metrics_registry(m, kg_co2e=kg_co2e, region_id=region_id, labels={"job_id": job_id} if job_id else None)
    pc.write_to_textfile(str(path), reg)
    return path


def push_prometheus(gateway: str, m: Measurement, *, kg_co2e: float | None = None, region_id: str | None = None,
                    job_id: str | None = None, timeout_s: float = 10.0) -> None:
    """PUT ``METRICS`` of ``m`` to the pushgateway at ``gateway`` (``http://host:9091``) as job
    ``carbonsched``, grouped by ``job_id`` when given (one group per tracked job)."""
    pc = _prometheus_client()
    pc.push_to_gateway(gateway, job=PUSH_JOB, registry=metrics_registry(m, kg_co2e=kg_co2e, region_id=region_id),
                       grouping_key={"job_id": job_id} if job_id else None, timeout=timeout_s)


class Tracker:
    """Measure the energy (and, with ``region``, the emissions) of a ``with`` block (module docstring).

    ``job``: job id or label (the record goes into the job store under it); ``out``: also a JSON
    file; ``gpu``/``gpus``: the hardware for the modelled fallback (no NVML); ``gpu_chain``/
    ``cpu_chain``: reader names or ready readers, as in ``run_tracked``; ``clock`` the wall-clock
    start (UTC), ``monotonic`` the durations. After the block: ``measurement``, ``record``,
    ``written`` (where the record went), ``ledger`` and ``kg_co2e`` (with ``region``),
    ``export_errors``. One block per Tracker.
    """

    def __init__(self, job: str | None = None, *, region: str | None = None, out: str | Path | None = None,
                 interval_s: float = 1.0, gpu: str | None = None, gpus: int | None = None,
                 power: PowerModel | None = None, plan_file: str | None = None, command: Sequence[str] | None = None,
                 prometheus_textfile: str | Path | None = None, pushgateway: str | None = None,
                 intensity_source: str = "profile", save: bool = True, settings=None, store=None,
                 gpu_chain: Sequence = GPU_CHAIN, cpu_chain: Sequence = CPU_CHAIN, vcpus: float | None = None,
                 memory_gib_: float | None = None, rapl_root: str | Path = "/sys/class/powercap", nvml=None,
                 clock: Callable[[], datetime] | None = None, monotonic: Callable[[], float] = time.monotonic):
        if not (interval_s > 0 and math.isfinite(interval_s)):
            raise TrackError(f"interval_s must be a positive number of seconds, got {interval_s!r}", exit_code=2)
        if gpus is not None and gpus < 1:
            raise TrackError(f"gpus must be at least 1, got {gpus}", exit_code=2)
        self.job, self.region, self.out, self.interval_s = job, region, out, interval_s
        self.command = tuple(command) if command else (tuple(sys.argv) or ("python",))
        self.plan_file, self.prometheus_textfile, self.pushgateway = plan_file, prometheus_textfile, pushgateway
        self.intensity_source, self.save, self.store = intensity_source, save, store
        self._settings = settings
        self._sampler_kw = dict(gpu_chain=gpu_chain, cpu_chain=cpu_chain, power=power, gpu=gpu, gpus=gpus or 0,
                                vcpus=vcpus, memory_gib_=memory_gib_, rapl_root=rapl_root, nvml=nvml,
                                monotonic=monotonic)
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._sampler: Sampler | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread_error: BaseException | None = None
        self.started_at: datetime | None = None
        self.measurement: Measurement | None = None
        self.record: dict | None = None
        self.written: list = []
        self.ledger: Ledger | None = None
        self.export_errors: list[str] = []

    @property
    def settings(self):
        if self._settings is None:
            self._settings = resolve_settings()
        return self._settings

    @property
    def kg_co2e(self) -> float | None:
        return self.ledger.kg_co2e if self.ledger is not None else None

    # -- the block ------------------------------------------------------------------------------
    def start(self) -> "Tracker":
        """Open the readers, take the first sample, start the sampling thread (``__enter__``)."""
        if self._sampler is not None:
            raise TrackError("this Tracker has measured a block already: make a new one for each block")
        if self.region:  # fail before the run, not after it
            resolve_region(self.region, all_regions(self.settings))
        if self.prometheus_textfile or self.pushgateway:
            _prometheus_client()
        self._sampler = Sampler(**self._sampler_kw)
        self.started_at = self._clock()
        self._sampler.start()
        self._thread = threading.Thread(target=self._sample_until_stopped, name="carbonsched-tracker", daemon=True)
        self._thread.start()
        return self

    def _sample_until_stopped(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                with self._lock:
                    self._sampler.take()
            except Exception as exc:  # e.g. a RAPL file gone: stop sampling, say so in the record
                self._thread_error = exc
                return

    def stop(self, exc: BaseException | None = None) -> Measurement:
        """End the block (``__exit__``): last sample, the record, where it is kept, emissions, exports."""
        self._stop.set()
        self._thread.join()
        with self._lock:
            self._sampler.stop()
        notes = []
        if self._thread_error is not None:
            notes.append(f"sampling stopped early ({self._thread_error.__class__.__name__}: {self._thread_error}); "
                         "energy between the last sample and the end is interpolated")
        if exc is not None:
            notes.append(f"the tracked block raised {exc.__class__.__name__}: {exc}")
        m = self._sampler.measurement(
            self.started_at, command=self.command, exit_code=_exit_code(exc), interval_s=self.interval_s,
            job_id=self.job or os.environ.get("CARBONSCHED_JOB_ID") or None, region_id=self.region,
            plan_file=str(Path(self.plan_file).resolve()) if self.plan_file else None, warnings=notes)
        self.measurement, self.record = m, m.to_dict()
        if self.save:
            self.written, save_notes = save_record(self.record, self.settings, job_id=self.job, out=self.out,
                                                   store=self.store)
            for n in save_notes:
                _warnings.warn(f"carbonsched: {n}", RuntimeWarning, stacklevel=3)
        if self.region:
            try:
                source = build_forecast_source(self.settings, name=self.intensity_source)
                self.ledger = build_ledger(self.record, source=source, region=self.region,
                                           regions=all_regions(self.settings))
            except CarbonschedError as e:
                self._export_failed(f"emissions not computed ({e})")
        self._export()
        return m

    def _export(self) -> None:
        m, kw = self.measurement, dict(kg_co2e=self.kg_co2e, region_id=self.region, job_id=self.job)
        if self.prometheus_textfile:
            try:
                write_prometheus_textfile(self.prometheus_textfile, m, **kw)
            except (OSError, ValueError) as e:
                self._export_failed(f"Prometheus textfile {self.prometheus_textfile} not written ({e})")
        if self.pushgateway:
            try:
                push_prometheus(self.pushgateway, m, **kw)
            except (OSError, ValueError) as e:  # urllib's URLError/HTTPError are OSErrors
                self._export_failed(f"push to the Prometheus pushgateway {self.pushgateway} failed ({e})")

    def _export_failed(self, message: str) -> None:
        self.export_errors.append(message)
        _warnings.warn(f"carbonsched: {message}", RuntimeWarning, stacklevel=4)

    def __enter__(self) -> "Tracker":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.stop(exc)
        return False  # the block's exception, if any, goes on


def track_emissions(fn: Callable | None = None, /, **tracker_kw):
    """Decorator: each call of the function runs under a new ``Tracker(**tracker_kw)`` (its record's
    command is ``module.function``); ``wrapper.last_tracker`` is the latest call's tracker.
    Use bare (``@track_emissions``) or with the Tracker's arguments (``@track_emissions(job=...)``)."""
    def decorate(f: Callable) -> Callable:
        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            kw = {"command": (f"{f.__module__}.{f.__qualname__}",), **tracker_kw}
            tracker = Tracker(**kw)
            wrapper.last_tracker = tracker
            with tracker:
                return f(*args, **kwargs)

        wrapper.last_tracker = None
        return wrapper

    return decorate(fn) if fn is not None else decorate
