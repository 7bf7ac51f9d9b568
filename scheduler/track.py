"""Measure what a command really used: ``carbonsched track -- CMD ...`` as a library.

``run_tracked(cmd, ...)`` starts CMD as a child process, forwards SIGINT/SIGTERM/SIGHUP/SIGUSR1/
SIGUSR2 to it, samples energy readers every ``interval_s`` while it runs, and returns a
``Measurement`` with the child's exit status (a child killed by signal N reports ``128 + N``, as
shells do; a command that cannot be found reports 127, one that cannot be executed 126).

Energy readers (one small protocol, explicit registries, tried in order)::

    open()           -> None      raise ReaderUnavailable when the method cannot work here
    sample(t_s)      -> float     cumulative joules since open(), at monotonic time t_s
    close(t_s)       -> dict      final summary: "energy_j", "method", "devices" (GPU) / "domains" (CPU)

GPU chain ``GPU_CHAIN``: ``nvml`` (per device: the total-energy counter
``nvmlDeviceGetTotalEnergyConsumption`` in mJ, ``E = E(t1) - E(t0)``; on devices without the
counter, sampled ``nvmlDeviceGetPowerUsage`` (mW) integrated with the trapezoid rule
``E = sum (P_i + P_{i+1}) / 2 * (t_{i+1} - t_i)``), then ``model``
(``E = n * u * TDP * t``, u = the power model's utilisation factor, GPU type given by the user).
CPU chain ``CPU_CHAIN``: ``rapl`` (package domains ``/sys/class/powercap/intel-rapl:N/energy_uj``,
``dE = e1 - e0``, or ``max_energy_range_uj - e0 + e1`` after a wraparound), then ``model``
(``vcpus * host_w_per_vcpu * t``). Memory is always modelled (``GiB * host_w_per_gib * t``).
The record says which method produced each number.

Measurement record (``Measurement.to_dict()``, JSON, ``schema_version`` 1; see ``RECORD_FIELDS``).
"""
from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Protocol, Sequence

from .errors import TrackError
from .estimate import PowerModel
from .units import iso_utc

SCHEMA = "carbonsched.measurement"
SCHEMA_VERSION = 1
J_PER_KWH = 3.6e6
FORWARDED_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2")

RECORD_FIELDS = {
    "schema": "always 'carbonsched.measurement'",
    "schema_version": "1",
    "job_id": "job id given with --job, or null",
    "command": "argv of the tracked command",
    "exit_code": "the command's exit status (128+N when killed by signal N; 127 not found)",
    "signals_forwarded": "names of the signals passed on to the command, in order",
    "started_at / ended_at": "ISO 8601 UTC",
    "wall_seconds": "elapsed time (monotonic clock)",
    "host": "{hostname, vcpus, memory_gib}",
    "region_id": "where it ran (--region), or null",
    "plan_file": "the plan JSON given with --plan, or null",
    "gpu": "{method, energy_kwh, devices: [{index, name, method, energy_kwh, mean_power_w, tdp_w, "
           "utilisation_mean_pct, utilisation_max_pct, samples}]}",
    "cpu": "{method, energy_kwh, domains}",
    "memory": "{method, energy_kwh, memory_gib}",
    "it_energy_kwh": "gpu + cpu + memory (before PUE)",
    "hourly": "[{hour, it_energy_kwh}] energy per UTC hour (sums to it_energy_kwh)",
    "power_model": "the PowerModel behind any modelled part",
    "sample_interval_s / samples": "sampling period and count",
    "warnings": "fallbacks taken and anything else to know",
}


class ReaderUnavailable(Exception):
    """An energy reader cannot work on this machine (the chain falls back to the next one)."""


class EnergyReader(Protocol):
    method: str

    def open(self) -> None: ...

    def sample(self, t_s: float) -> float: ...

    def close(self, t_s: float) -> dict: ...


# -- GPU: NVML --------------------------------------------------------------------------------
def _import_pynvml():
    try:
        import pynvml  # from nvidia-ml-py (optional extra carbonsched[gpu])
    except ImportError:
        raise ReaderUnavailable("nvidia-ml-py is not installed (pip install 'carbonsched[gpu]')") from None
    return pynvml


class NvmlReader:
    """All visible NVIDIA GPUs; per device the energy counter, else sampled power.

    ``mode``: ``auto`` (counter where supported), ``energy`` (counter only), ``power`` (sampled only).
    ``nvml`` injects a pynvml-like module (tests); default: pynvml, imported lazily.
    """

    def __init__(self, mode: str = "auto", nvml=None):
        self.mode = mode
        self.method = {"auto": "nvml", "energy": "nvml-energy", "power": "nvml-power"}[mode]
        self._nvml = nvml
        self.devices: list[dict] = []

    def open(self) -> None:
        nv = self._nvml = self._nvml or _import_pynvml()
        try:
            nv.nvmlInit()
            count = nv.nvmlDeviceGetCount()
        except Exception as exc:  # pynvml raises NVMLError subclasses; any failure means "not here"
            raise ReaderUnavailable(f"NVML unavailable ({exc})") from None
        if count == 0:
            raise ReaderUnavailable("NVML found no GPU")
        for i in range(count):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            name = nv.nvmlDeviceGetName(h)
            name = name.decode() if isinstance(name, bytes) else str(name)
            try:
                tdp_w = nv.nvmlDeviceGetPowerManagementLimit(h) / 1000.0
            except Exception:
                tdp_w = None
            dev = {"index": i, "name": name, "handle": h, "tdp_w": tdp_w, "energy_j": 0.0, "power": [],
                   "util": [], "counter0": None, "method": "nvml-power"}
            if self.mode in ("auto", "energy"):
                try:
                    dev["counter0"] = nv.nvmlDeviceGetTotalEnergyConsumption(h)  # mJ since driver load
                    dev["method"] = "nvml-energy"
                except Exception as exc:
                    if self.mode == "energy":
                        raise ReaderUnavailable(f"GPU {i} ({name}) has no NVML energy counter ({exc})") from None
            self.devices.append(dev)

    def _read(self, dev: dict, t_s: float) -> None:
        nv, h = self._nvml, dev["handle"]
        if dev["method"] == "nvml-energy":
            dev["energy_j"] = (nv.nvmlDeviceGetTotalEnergyConsumption(h) - dev["counter0"]) / 1000.0
        try:
            watts = nv.nvmlDeviceGetPowerUsage(h) / 1000.0
        except Exception:
            watts = None
        if watts is not None:
            if dev["method"] == "nvml-power" and dev["power"]:
                t0, w0 = dev["power"][-1]
                dev["energy_j"] += (w0 + watts) / 2.0 * (t_s - t0)
            dev["power"].append((t_s, watts))
        try:
            dev["util"].append(float(nv.nvmlDeviceGetUtilizationRates(h).gpu))
        except Exception:
            pass

    def sample(self, t_s: float) -> float:
        for dev in self.devices:
            self._read(dev, t_s)
        return sum(d["energy_j"] for d in self.devices)

    def close(self, t_s: float) -> dict:
        total = self.sample(t_s)
        out = []
        for d in self.devices:
            pw = d["power"]
            span = pw[-1][0] - pw[0][0] if len(pw) > 1 else 0.0
            out.append({
                "index": d["index"], "name": d["name"], "method": d["method"],
                "energy_kwh": d["energy_j"] / J_PER_KWH,
                "mean_power_w": d["energy_j"] / span if span > 0 else (pw[-1][1] if pw else None),
                "tdp_w": d["tdp_w"],
                "utilisation_mean_pct": sum(d["util"]) / len(d["util"]) if d["util"] else None,
                "utilisation_max_pct": max(d["util"]) if d["util"] else None,
                "samples": len(pw),
            })
        try:
            self._nvml.nvmlShutdown()
        except Exception:
            pass
        methods = {d["method"] for d in out}
        return {"method": methods.pop() if len(methods) == 1 else "nvml-mixed", "energy_j": total, "devices": out}


class ModelGpuReader:
    """``E = n * u * TDP * t``: the power model, for when nothing can be measured."""

    method = "model"

    def __init__(self, gpu: str | None = None, gpus: int = 0, power: PowerModel | None = None):
        self.gpu, self.gpus, self.power = gpu, gpus, power or PowerModel()
        self.t0 = None
        self.watts = 0.0
        self.tdp_w = None

    def open(self) -> None:
        if self.gpu and self.gpus > 0:
            from .refdata import resolve_gpu

            self.tdp_w = resolve_gpu(self.gpu).tdp_w
            self.watts = self.gpus * self.power.utilisation_factor * self.tdp_w

    def sample(self, t_s: float) -> float:
        if self.t0 is None:
            self.t0 = t_s
        return self.watts * (t_s - self.t0)

    def close(self, t_s: float) -> dict:
        e = self.sample(t_s)
        devices = [{"index": i, "name": self.gpu, "method": "model", "energy_kwh": e / max(self.gpus, 1) / J_PER_KWH,
                    "mean_power_w": self.watts / self.gpus, "tdp_w": self.tdp_w, "utilisation_mean_pct": None,
                    "utilisation_max_pct": None, "samples": 0} for i in range(self.gpus)]
        return {"method": "model" if self.gpus else "none", "energy_j": e, "devices": devices}


# -- CPU: RAPL ------------------------------------------------------------------------------------
class RaplReader:
    """Package energy from the powercap tree: ``<root>/intel-rapl:N/energy_uj`` (top-level zones
    only; their subzones, e.g. core and uncore, are parts of the package and would count twice)."""

    method = "rapl"

    def __init__(self, root: str | Path = "/sys/class/powercap"):
        self.root = Path(root)
        self.domains: list[dict] = []

    def open(self) -> None:
        zones = sorted(p for p in self.root.glob("intel-rapl:*") if p.name.count(":") == 1)
        if not zones:
            raise ReaderUnavailable(f"no RAPL zones under {self.root}")
        for z in zones:
            try:
                e0 = int((z / "energy_uj").read_text())
                top = int((z / "max_energy_range_uj").read_text())
            except (OSError, ValueError) as exc:
                raise ReaderUnavailable(f"RAPL {z.name} not readable ({exc.__class__.__name__}; "
                                        "energy_uj is root-only on most kernels)") from None
            name = (z / "name").read_text().strip() if (z / "name").exists() else z.name
            self.domains.append({"zone": z.name, "name": name, "path": z / "energy_uj", "max": top, "last": e0,
                                 "energy_uj": 0})

    def sample(self, t_s: float) -> float:
        for d in self.domains:
            now = int(d["path"].read_text())
            delta = now - d["last"]
            if delta < 0:  # the counter wrapped around max_energy_range_uj
                delta += d["max"]
            d["energy_uj"] += delta
            d["last"] = now
        return sum(d["energy_uj"] for d in self.domains) / 1e6

    def close(self, t_s: float) -> dict:
        total = self.sample(t_s)
        return {"method": "rapl", "energy_j": total,
                "domains": [{"zone": d["zone"], "name": d["name"], "energy_kwh": d["energy_uj"] / 1e6 / J_PER_KWH}
                            for d in self.domains]}


class ModelCpuReader:
    """``E = vcpus * host_w_per_vcpu * t``."""

    method = "model"

    def __init__(self, vcpus: float | None = None, power: PowerModel | None = None):
        self.vcpus = vcpus if vcpus is not None else (os.cpu_count() or 1)
        self.power = power or PowerModel()
        self.t0 = None

    def open(self) -> None:
        pass

    def sample(self, t_s: float) -> float:
        if self.t0 is None:
            self.t0 = t_s
        return self.vcpus * self.power.host_w_per_vcpu * (t_s - self.t0)

    def close(self, t_s: float) -> dict:
        return {"method": "model", "energy_j": self.sample(t_s), "domains": [], "vcpus": self.vcpus}


GPU_READERS: dict[str, Callable[..., EnergyReader]] = {
    "nvml": lambda **kw: NvmlReader("auto", nvml=kw.get("nvml")),
    "nvml-energy": lambda **kw: NvmlReader("energy", nvml=kw.get("nvml")),
    "nvml-power": lambda **kw: NvmlReader("power", nvml=kw.get("nvml")),
    "model": lambda **kw: ModelGpuReader(kw.get("gpu"), kw.get("gpus") or 0, kw.get("power")),
}
CPU_READERS: dict[str, Callable[..., EnergyReader]] = {
    "rapl": lambda **kw: RaplReader(kw.get("rapl_root", "/sys/class/powercap")),
    "model": lambda **kw: ModelCpuReader(kw.get("vcpus"), kw.get("power")),
}
GPU_CHAIN = ("nvml", "model")
CPU_CHAIN = ("rapl", "model")


def open_first(chain: Sequence[str | EnergyReader], registry: dict, warnings: list[str], what: str, **kw) -> EnergyReader:
    """The first reader of ``chain`` (names or ready readers) that opens; each failure is a warning."""
    for i, item in enumerate(chain):
        reader = registry[item](**kw) if isinstance(item, str) else item
        try:
            reader.open()
            return reader
        except ReaderUnavailable as exc:
            if i == len(chain) - 1:
                raise TrackError(f"no {what} energy reader works here: {exc}") from None
            warnings.append(f"{what}: {reader.method} unavailable ({exc}); falling back")
    raise TrackError(f"no {what} energy reader given")


def hourly_split(started_at: datetime, samples: list[tuple[float, float]]) -> list[dict]:
    """Energy per UTC hour from cumulative samples ``(t_s, joules)`` (t_s from the start).

    Between two samples energy is taken as linear in time, so an interval crossing an hour
    boundary is split by the time on each side.
    """
    out: dict[datetime, float] = {}
    for (t0, e0), (t1, e1) in zip(samples, samples[1:]):
        if t1 <= t0:
            continue
        a, b = started_at + timedelta(seconds=t0), started_at + timedelta(seconds=t1)
        rate = (e1 - e0) / (t1 - t0)
        while a < b:
            hour = a.replace(minute=0, second=0, microsecond=0)
            nxt = min(b, hour + timedelta(hours=1))
            out[hour] = out.get(hour, 0.0) + rate * (nxt - a).total_seconds()
            a = nxt
    if not out:
        out[started_at.replace(minute=0, second=0, microsecond=0)] = samples[-1][1] if samples else 0.0
    return [{"hour": iso_utc(h), "it_energy_kwh": j / J_PER_KWH} for h, j in sorted(out.items())]


@dataclass(frozen=True)
class Measurement:
    """What one tracked run used. ``to_dict()`` is the measurement record (module docstring)."""

    command: tuple[str, ...]
    exit_code: int
    started_at: datetime
    ended_at: datetime
    wall_seconds: float
    gpu: dict
    cpu: dict
    memory: dict
    hourly: tuple[dict, ...]
    host: dict
    power_model: dict
    sample_interval_s: float
    samples: int
    signals_forwarded: tuple[str, ...] = ()
    job_id: str | None = None
    region_id: str | None = None
    plan_file: str | None = None
    warnings: tuple[str, ...] = field(default=())

    @property
    def it_energy_kwh(self) -> float:
        return self.gpu["energy_kwh"] + self.cpu["energy_kwh"] + self.memory["energy_kwh"]

    def to_dict(self) -> dict:
        from carbonsched import __version__

        return {
            "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "carbonsched_version": __version__,
            "job_id": self.job_id, "command": list(self.command), "exit_code": self.exit_code,
            "signals_forwarded": list(self.signals_forwarded),
            "started_at": iso_utc(self.started_at), "ended_at": iso_utc(self.ended_at),
            "wall_seconds": self.wall_seconds, "host": dict(self.host), "region_id": self.region_id,
            "plan_file": self.plan_file, "gpu": self.gpu, "cpu": self.cpu, "memory": self.memory,
            "it_energy_kwh": self.it_energy_kwh, "hourly": list(self.hourly), "power_model": self.power_model,
            "sample_interval_s": self.sample_interval_s, "samples": self.samples, "warnings": list(self.warnings),
        }


def memory_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return 0.0


def _terminal_already_delivers(signum: int) -> bool:
    """True for SIGINT when we are the terminal's foreground process group: Ctrl-C reaches the whole
    group (the child included), so forwarding would deliver it twice. A SIGINT sent to the tracker
    alone (``kill -INT``, no terminal) is forwarded."""
    if signum != signal.SIGINT:
        return False
    try:
        return os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


def run_tracked(cmd: Sequence[str], *, gpu_chain: Sequence = GPU_CHAIN, cpu_chain: Sequence = CPU_CHAIN,
                power: PowerModel | None = None, gpu: str | None = None, gpus: int = 0, vcpus: float | None = None,
                memory_gib_: float | None = None, interval_s: float = 1.0, job_id: str | None = None,
                region_id: str | None = None, plan_file: str | None = None,
                clock: Callable[[], datetime] | None = None, monotonic: Callable[[], float] = time.monotonic,
                rapl_root: str | Path = "/sys/class/powercap", nvml=None, on_start: Callable | None = None) -> Measurement:
    """Run ``cmd`` to completion under measurement (see the module docstring).

    ``gpu_chain``/``cpu_chain`` hold reader names (``GPU_READERS``/``CPU_READERS``) or ready
    readers (tests inject fakes here). ``gpu``/``gpus`` name the hardware for the model fallback.
    ``clock`` gives the wall-clock start (UTC); durations come from ``monotonic``.
    """
    if not cmd:
        raise TrackError("nothing to track: give the command after --, e.g. carbonsched track -- python train.py",
                         exit_code=2)
    if not (interval_s > 0 and math.isfinite(interval_s)):
        raise TrackError(f"--interval must be a positive number of seconds, got {interval_s!r}", exit_code=2)
    power = power or PowerModel()
    clock = clock or (lambda: datetime.now(timezone.utc))
    warnings: list[str] = []
    kw = dict(power=power, gpu=gpu, gpus=gpus, vcpus=vcpus, rapl_root=rapl_root, nvml=nvml)
    gpu_reader = open_first(gpu_chain, GPU_READERS, warnings, "GPU", **kw)
    cpu_reader = open_first(cpu_chain, CPU_READERS, warnings, "CPU", **kw)
    mem_gib = memory_gib() if memory_gib_ is None else memory_gib_
    if gpu_reader.method == "model" and not gpus:
        warnings.append("GPU: no GPU measured and none given (--gpu/--gpus): GPU energy is 0")

    started_at, t0 = clock(), monotonic()
    samples: list[tuple[float, float]] = []
    forwarded: list[str] = []

    def take(t_abs: float) -> None:
        t = t_abs - t0
        samples.append((t, gpu_reader.sample(t_abs) + cpu_reader.sample(t_abs) + mem_gib * power.host_w_per_gib * t))

    take(t0)
    try:
        proc = subprocess.Popen(list(cmd))
    except FileNotFoundError:
        raise TrackError(f"command not found: {cmd[0]}", exit_code=127) from None
    except PermissionError:
        raise TrackError(f"command not executable: {cmd[0]}", exit_code=126) from None

    def forward(signum, _frame):
        if not _terminal_already_delivers(signum):
            try:
                proc.send_signal(signum)
            except ProcessLookupError:
                pass
        forwarded.append(signal.Signals(signum).name)

    previous = {}
    for name in FORWARDED_SIGNALS:
        sig = getattr(signal, name, None)
        if sig is not None:
            previous[sig] = signal.signal(sig, forward)
    try:
        if on_start:
            on_start(proc)
        while True:
            try:
                proc.wait(timeout=interval_s)
                break
            except subprocess.TimeoutExpired:
                take(monotonic())
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    t_end = monotonic()
    take(t_end)
    wall = t_end - t0
    g, c = gpu_reader.close(t_end), cpu_reader.close(t_end)
    mem_j = mem_gib * power.host_w_per_gib * wall
    code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
    return Measurement(
        command=tuple(cmd), exit_code=code, started_at=started_at,
        ended_at=started_at + timedelta(seconds=wall), wall_seconds=wall,
        gpu={"method": g["method"], "energy_kwh": g["energy_j"] / J_PER_KWH, "devices": g["devices"]},
        cpu={"method": c["method"], "energy_kwh": c["energy_j"] / J_PER_KWH, "domains": c.get("domains", []),
             **({"vcpus": c["vcpus"]} if "vcpus" in c else {})},
        memory={"method": "model", "energy_kwh": mem_j / J_PER_KWH, "memory_gib": mem_gib},
        hourly=tuple(hourly_split(started_at, samples)),
        host={"hostname": socket.gethostname(), "vcpus": os.cpu_count(), "memory_gib": round(mem_gib, 3)},
        power_model=power.to_dict(), sample_interval_s=interval_s, samples=len(samples),
        signals_forwarded=tuple(forwarded), job_id=job_id, region_id=region_id, plan_file=plan_file,
        warnings=tuple(warnings),
    )


# -- records on disk and in the job store -----------------------------------------------------
def open_store(settings=None):
    """The job store (``$CARBONSCHED_HOME/jobs.sqlite``), which keeps measurements by job id."""
    from .settings import resolve_settings
    from .store import Store

    return Store.for_settings(settings or resolve_settings())


def measurement_dir(settings) -> Path:
    return Path(settings.home) / "measurements"


def write_record(record: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def read_record(path: str | Path) -> dict:
    from .errors import UserInputError

    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserInputError(f"measurement file {path} does not exist; write one with `carbonsched track --out`") from None
    except json.JSONDecodeError as exc:
        raise UserInputError(f"measurement file {path} is not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise UserInputError(f"{path} is not a carbonsched measurement record (no schema {SCHEMA!r})")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise UserInputError(f"{path}: measurement schema_version {doc.get('schema_version')!r} is not supported "
                             f"(this carbonsched reads {SCHEMA_VERSION})")
    return doc


def load_job_record(job_id: str, settings, store=None) -> dict:
    """The record of ``job_id`` from the job store (``store`` or the settings' one)."""
    return (store or open_store(settings)).load_measurement(job_id)


def past_records(settings, store=None) -> list[dict]:
    """Every measurement in the job store plus the loose records in the measurement directory
    (runs tracked without --job), for calibration."""
    from .errors import UserInputError

    out = list((store or open_store(settings)).list_measurements())
    for p in sorted(measurement_dir(settings).glob("*.json")):
        try:
            out.append(read_record(p))
        except (UserInputError, OSError, UnicodeDecodeError):  # a foreign or broken file is skipped
            continue
    return out
