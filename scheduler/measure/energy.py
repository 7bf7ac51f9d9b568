"""Energy readers: what ``measure.track`` samples while a command runs.

One small protocol, explicit registries, tried in order::

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

A failed NVML query during the run is a missed sample (``missed_samples`` per device, and a
warning in the record), never a silent zero.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Protocol, Sequence

from carbonsched.errors import TrackError
from carbonsched.models import PowerModel
from carbonsched.refdata import resolve_gpu

J_PER_KWH = 3.6e6


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
        except nv.NVMLError as exc:  # e.g. NVMLError_LibraryNotFound, _DriverNotLoaded: not here
            raise ReaderUnavailable(f"NVML unavailable ({exc})") from None
        if count == 0:
            raise ReaderUnavailable("NVML found no GPU")
        for i in range(count):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            name = nv.nvmlDeviceGetName(h)
            name = name.decode() if isinstance(name, bytes) else str(name)
            try:
                tdp_w = nv.nvmlDeviceGetPowerManagementLimit(h) / 1000.0
            except nv.NVMLError:  # not supported on some boards: the record shows null
                tdp_w = None
            dev = {"index": i, "name": name, "handle": h, "tdp_w": tdp_w, "energy_j": 0.0, "power": [],
                   "util": [], "counter0": None, "method": "nvml-power", "reads": 0, "missed": 0}
            if self.mode in ("auto", "energy"):
                try:
                    dev["counter0"] = nv.nvmlDeviceGetTotalEnergyConsumption(h)  # mJ since driver load
                    dev["method"] = "nvml-energy"
                except nv.NVMLError as exc:
                    if self.mode == "energy":
                        raise ReaderUnavailable(f"GPU {i} ({name}) has no NVML energy counter ({exc})") from None
            self.devices.append(dev)

    def _read(self, dev: dict, t_s: float) -> None:
        """One sample of one device. A failed NVML query (``NVMLError``: e.g. GPU lost, timeout)
        is a missed sample, counted and reported: the counter keeps its last value, sampled power
        is integrated across the gap, utilisation has one value fewer."""
        nv, h = self._nvml, dev["handle"]
        dev["reads"] += 1
        missed = False
        if dev["method"] == "nvml-energy":
            try:
                dev["energy_j"] = (nv.nvmlDeviceGetTotalEnergyConsumption(h) - dev["counter0"]) / 1000.0
            except nv.NVMLError:
                missed = True
        try:
            watts = nv.nvmlDeviceGetPowerUsage(h) / 1000.0
        except nv.NVMLError:
            watts, missed = None, True
        if watts is not None:
            if dev["method"] == "nvml-power" and dev["power"]:
                t0, w0 = dev["power"][-1]
                dev["energy_j"] += (w0 + watts) / 2.0 * (t_s - t0)
            dev["power"].append((t_s, watts))
        try:
            dev["util"].append(float(nv.nvmlDeviceGetUtilizationRates(h).gpu))
        except nv.NVMLError:
            missed = True
        dev["missed"] += missed

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
                "samples": len(pw), "missed_samples": d["missed"],
            })
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError:
            pass  # already shut down or the driver went away: nothing left to release
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
                    "utilisation_max_pct": None, "samples": 0, "missed_samples": 0} for i in range(self.gpus)]
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
