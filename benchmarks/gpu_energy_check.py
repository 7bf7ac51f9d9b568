"""GPU check for `carbonsched track`: tracked vs independently read NVML energy, and vs TDP x hours.

Runs a short bf16 training loop (a small transformer block stack, AdamW) under
``carbonsched track``, reads NVML's total-energy counter of every GPU itself just before the
tracker starts and just after it exits, and prints::

    tracked GPU energy      (from the measurement record)
    independent NVML energy (counter after - before, all GPUs)
    difference              goal: within 2 %
    TDP x wall-clock        the ML CO2 Impact calculator's estimate, and its ratio to the measurement

Needs an NVIDIA GPU, torch with CUDA, and nvidia-ml-py (``pip install 'carbonsched[gpu]' torch``).
Without them it says what is missing and exits with status 2 (nothing is run).

    python benchmarks/gpu_energy_check.py [--seconds 60] [--keep run.json]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOOP = r"""
import sys, time, torch
seconds = float(sys.argv[1])
torch.manual_seed(0)
dev = "cuda"
d, layers, batch, seq = 2048, 8, 16, 512
blocks = torch.nn.Sequential(*[torch.nn.TransformerEncoderLayer(d, 16, 4 * d, batch_first=True, dropout=0.0)
                               for _ in range(layers)]).to(dev, dtype=torch.bfloat16)
opt = torch.optim.AdamW(blocks.parameters(), lr=1e-4)
x = torch.randn(batch, seq, d, device=dev, dtype=torch.bfloat16)
steps, t0 = 0, time.monotonic()
while time.monotonic() - t0 < seconds:
    loss = blocks(x).float().pow(2).mean()
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    steps += 1
torch.cuda.synchronize()
print(f"training loop: {steps} steps in {time.monotonic() - t0:.1f} s, last loss {loss.item():.4f}", flush=True)
"""


def _missing() -> str | None:
    try:
        import pynvml
    except ImportError:
        return "nvidia-ml-py is not installed (pip install 'carbonsched[gpu]')"
    try:
        pynvml.nvmlInit()
        n = pynvml.nvmlDeviceGetCount()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return f"NVML is not usable here ({exc}): no NVIDIA GPU/driver"
    if n == 0:
        return "NVML sees no GPU"
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "torch has no CUDA device"
    return None


def _counters_mj() -> list[int]:
    import pynvml

    return [pynvml.nvmlDeviceGetTotalEnergyConsumption(pynvml.nvmlDeviceGetHandleByIndex(i))
            for i in range(pynvml.nvmlDeviceGetCount())]


def _carbonsched() -> list[str]:
    exe = Path(sys.executable).with_name("carbonsched")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("carbonsched")
    return [found] if found else [sys.executable, "-m", "carbonsched"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the training loop (default 60)")
    ap.add_argument("--interval", type=float, default=1.0, help="tracker sampling period (default 1 s)")
    ap.add_argument("--keep", metavar="FILE", help="also keep the measurement record here")
    a = ap.parse_args(argv)
    why = _missing()
    if why:
        print(f"gpu_energy_check: cannot run: {why}. This check needs a machine with an NVIDIA GPU, "
              "torch with CUDA and nvidia-ml-py.", file=sys.stderr)
        return 2
    import pynvml

    from carbonsched.measure.ledger import resolve_device_gpu

    with tempfile.TemporaryDirectory() as tmp:
        loop, record = Path(tmp) / "loop.py", Path(a.keep or Path(tmp) / "run.json")
        loop.write_text(LOOP)
        before, t0 = _counters_mj(), time.monotonic()
        proc = subprocess.run(_carbonsched() + ["track", "--out", str(record), "--interval", str(a.interval), "--",
                                                sys.executable, str(loop), str(a.seconds)])
        after, wall = _counters_mj(), time.monotonic() - t0
        if proc.returncode != 0:
            print(f"gpu_energy_check: the tracked loop failed (exit {proc.returncode})", file=sys.stderr)
            return 1
        rec = json.loads(record.read_text())
    independent_kwh = sum(b - a_ for a_, b in zip(before, after)) / 1000 / 3.6e6
    tracked_kwh = rec["gpu"]["energy_kwh"]
    diff_pct = (tracked_kwh - independent_kwh) / independent_kwh * 100
    tdp_w = 0.0
    for d in rec["gpu"]["devices"]:
        g = resolve_device_gpu(d["name"])
        tdp_w += g.tdp_w if g else (d.get("tdp_w") or 0.0)
    tdp_kwh = tdp_w * rec["wall_seconds"] / 3.6e6
    print(f"devices:                 {', '.join(d['name'] + ' (' + d['method'] + ')' for d in rec['gpu']['devices'])}")
    print(f"tracked wall time:       {rec['wall_seconds']:.1f} s (independent bracket {wall:.1f} s)")
    print(f"tracked GPU energy:      {tracked_kwh * 3.6e6:,.0f} J  ({tracked_kwh:.6f} kWh, method {rec['gpu']['method']})")
    print(f"independent NVML energy: {independent_kwh * 3.6e6:,.0f} J  ({independent_kwh:.6f} kWh)")
    print(f"difference:              {diff_pct:+.2f} %  (goal: within 2 %) -> {'OK' if abs(diff_pct) <= 2 else 'OFF'}")
    mean_w = tracked_kwh * 3.6e6 / rec["wall_seconds"]
    print(f"mean GPU power:          {mean_w:.0f} W of {tdp_w:.0f} W TDP (utilisation factor {mean_w / tdp_w:.2f})"
          if tdp_w else f"mean GPU power:          {mean_w:.0f} W")
    if tdp_w:
        print(f"TDP x hours estimate:    {tdp_kwh:.6f} kWh = {tdp_kwh / tracked_kwh:.2f}x the measurement")
    util = [d.get("utilisation_mean_pct") for d in rec["gpu"]["devices"]]
    print(f"GPU utilisation (mean):  {', '.join('-' if u is None else f'{u:.0f} %' for u in util)}")
    pynvml.nvmlShutdown()
    return 0 if abs(diff_pct) <= 2 else 1


if __name__ == "__main__":
    sys.exit(main())
