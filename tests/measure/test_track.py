"""carbonsched track: real subprocesses (exit codes, signals, missing commands), the reader
protocol with injected readers, RAPL against a fake powercap tree, NVML against a fake pynvml."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import types
from datetime import datetime, timezone
from pathlib import Path

import pytest

from carbonsched.errors import TrackError, UserInputError
from carbonsched.models import PowerModel
from carbonsched.measure.energy import (GPU_READERS, J_PER_KWH, ModelGpuReader, NvmlReader, RaplReader, ReaderUnavailable,
                                       open_first)
from carbonsched.measure.track import hourly_split, open_store, read_record, run_tracked, write_record

from conftest import _entry_point

PY = sys.executable


class ConstantPower:
    """An injected reader: ``watts`` from the first sample on (the protocol's smallest implementation)."""

    method = "nvml-energy"

    def __init__(self, watts: float):
        self.watts, self.t0, self.opened = watts, None, False

    def open(self):
        self.opened = True

    def sample(self, t_s):
        self.t0 = t_s if self.t0 is None else self.t0
        return self.watts * (t_s - self.t0)

    def close(self, t_s):
        e = self.sample(t_s)
        return {"method": self.method, "energy_j": e,
                "devices": [{"index": 0, "name": "NVIDIA A100-SXM4-40GB", "method": self.method,
                             "energy_kwh": e / J_PER_KWH, "mean_power_w": self.watts, "tdp_w": 400.0,
                             "utilisation_mean_pct": 90.0, "utilisation_max_pct": 100.0, "samples": 3}]}


class Unavailable:
    method = "nvml"

    def open(self):
        raise ReaderUnavailable("no GPU here")


def fake_monotonic(step: float):
    t = [0.0]

    def tick():
        t[0] += step
        return t[0]

    return tick


def _track(code: str, **kw):
    kw.setdefault("gpu_chain", (ConstantPower(300.0),))
    kw.setdefault("cpu_chain", ("model",))
    return run_tracked([PY, "-c", code], interval_s=0.05, memory_gib_=16.0, vcpus=4, **kw)


def test_exit_codes_are_preserved_and_energy_adds_up():
    ok = _track("pass", clock=lambda: datetime(2026, 11, 27, 10, 59, 30, tzinfo=timezone.utc),
                monotonic=fake_monotonic(40.0))
    assert ok.exit_code == 0
    assert _track("import sys; sys.exit(3)").exit_code == 3
    rec = ok.to_dict()
    # injected reader: 300 W for the whole (fake) wall time; CPU model 4 x 3.4 W; memory 16 GiB x 0.3725 W
    assert rec["gpu"]["energy_kwh"] == pytest.approx(300.0 * ok.wall_seconds / J_PER_KWH)
    assert rec["cpu"]["energy_kwh"] == pytest.approx(4 * 3.4 * ok.wall_seconds / J_PER_KWH)
    assert rec["memory"]["energy_kwh"] == pytest.approx(16 * 0.3725 * ok.wall_seconds / J_PER_KWH)
    assert sum(h["it_energy_kwh"] for h in rec["hourly"]) == pytest.approx(rec["it_energy_kwh"])
    # started 10:59:30; the fake clock advances 40 s per reading, so the run lasts >= 40 s and crosses 11:00
    assert [h["hour"] for h in rec["hourly"]] == ["2026-11-27T10:00:00Z", "2026-11-27T11:00:00Z"]
    assert rec["schema"] == "carbonsched.measurement" and rec["schema_version"] == 1
    assert rec["gpu"]["method"] == "nvml-energy" and rec["cpu"]["method"] == "model"


def test_hourly_split_by_hand():
    start = datetime(2026, 1, 1, 10, 30, tzinfo=timezone.utc)
    rows = hourly_split(start, [(0.0, 0.0), (3600.0, J_PER_KWH)])  # 1 kWh over 10:30-11:30
    assert rows == [{"hour": "2026-01-01T10:00:00Z", "it_energy_kwh": pytest.approx(0.5)},
                    {"hour": "2026-01-01T11:00:00Z", "it_energy_kwh": pytest.approx(0.5)}]


def test_reader_chain_falls_back_and_says_so():
    warnings = []
    reader = open_first((Unavailable(), ConstantPower(1.0)), GPU_READERS, warnings, "GPU")
    assert isinstance(reader, ConstantPower) and reader.opened
    assert warnings and "nvml unavailable (no GPU here)" in warnings[0]
    with pytest.raises(TrackError, match="no GPU energy reader works here"):
        open_first((Unavailable(),), GPU_READERS, [], "GPU")


def test_model_gpu_reader_uses_power_model():
    r = ModelGpuReader("A100", 2, PowerModel(utilisation_factor=0.5))
    r.open()
    r.sample(0.0)
    out = r.close(3600.0)
    assert out["energy_j"] == pytest.approx(2 * 0.5 * 400 * 3600)
    assert [d["method"] for d in out["devices"]] == ["model", "model"]


def test_without_nvml_gpu_energy_is_modelled_and_labelled():
    m = _track("pass", gpu_chain=("nvml", "model"), gpu="A100", gpus=1, nvml=None)
    if m.gpu["method"].startswith("nvml"):  # a machine with a GPU and nvidia-ml-py: nothing to check here
        pytest.skip("NVML works on this machine")
    assert m.gpu["method"] == "model"
    assert any("nvml unavailable" in w for w in m.warnings)


def _powercap(root: Path, zones: dict[str, tuple[int, int]]):
    for name, (energy, top) in zones.items():
        d = root / name
        d.mkdir(parents=True)
        (d / "energy_uj").write_text(f"{energy}\n")
        (d / "max_energy_range_uj").write_text(f"{top}\n")
        (d / "name").write_text("package-" + name.split(":")[1] + "\n")


def test_rapl_counts_packages_and_handles_wraparound(tmp_path):
    _powercap(tmp_path, {"intel-rapl:0": (900, 1000), "intel-rapl:1": (10, 1000), "intel-rapl:0:0": (5, 1000)})
    r = RaplReader(tmp_path)
    r.open()
    assert [d["zone"] for d in r.domains] == ["intel-rapl:0", "intel-rapl:1"]  # subzone not double counted
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("950")
    (tmp_path / "intel-rapl:1" / "energy_uj").write_text("60")
    assert r.sample(1.0) == pytest.approx((50 + 50) / 1e6)
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("100")  # wrapped: 1000 - 950 + 100 = 150
    (tmp_path / "intel-rapl:1" / "energy_uj").write_text("70")
    out = r.close(2.0)
    assert out["energy_j"] == pytest.approx((50 + 150 + 50 + 10) / 1e6)
    assert out["method"] == "rapl"


def test_rapl_unreadable_or_absent_is_unavailable(tmp_path):
    with pytest.raises(ReaderUnavailable, match="no RAPL zones"):
        RaplReader(tmp_path).open()
    (tmp_path / "intel-rapl:0" / "energy_uj").mkdir(parents=True)  # reading it fails like a root-only file
    (tmp_path / "intel-rapl:0" / "max_energy_range_uj").write_text("1000")
    with pytest.raises(ReaderUnavailable, match="not readable"):
        RaplReader(tmp_path).open()


def fake_pynvml(counter_devices=(0,)):
    """A pynvml-like module: device 0 has the energy counter (+5 J per read), device 1 does not;
    both draw 200 W and report 80 % utilisation."""

    class NVMLError(Exception):
        pass

    state = {"mj": {0: 1_000_000}, "shutdown": False}
    mod = types.SimpleNamespace(NVMLError=NVMLError)
    mod.nvmlInit = lambda: None
    mod.nvmlShutdown = lambda: state.__setitem__("shutdown", True)
    mod.nvmlDeviceGetCount = lambda: 2
    mod.nvmlDeviceGetHandleByIndex = lambda i: i
    mod.nvmlDeviceGetName = lambda h: b"NVIDIA H100 80GB HBM3"
    mod.nvmlDeviceGetPowerManagementLimit = lambda h: 700_000

    def energy(h):
        if h not in counter_devices:
            raise NVMLError("Not Supported")
        state["mj"][h] = state["mj"].get(h, 1_000_000) + 5_000
        return state["mj"][h]

    mod.nvmlDeviceGetTotalEnergyConsumption = energy
    mod.nvmlDeviceGetPowerUsage = lambda h: 200_000
    mod.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=80, memory=10)
    return mod, state


def test_nvml_errors_during_a_run_are_counted_as_missed_samples():
    nv, _ = fake_pynvml()
    failing = {"left": 2}

    def flaky_power(h):
        if h == 1 and failing["left"] > 0:  # device 1 (sampled power) loses two reads
            failing["left"] -= 1
            raise nv.NVMLError("GPU is lost")
        return 200_000

    nv.nvmlDeviceGetPowerUsage = flaky_power
    r = NvmlReader("auto", nvml=nv)
    r.open()
    for t in (0.0, 2.0, 4.0, 6.0):
        r.sample(t)
    dev0, dev1 = r.close(10.0)["devices"]
    assert dev0["missed_samples"] == 0 and dev1["missed_samples"] == 2
    # the gap is integrated across: 200 W from the first good read (4 s) to the end (10 s)
    assert dev1["energy_kwh"] * J_PER_KWH == pytest.approx(200.0 * 6.0)
    rec = run_tracked([PY, "-c", "pass"], gpu_chain=(_FlakyReader(),), cpu_chain=("model",), interval_s=0.05)
    assert any("NVML reads failed" in w for w in rec.warnings)


class _FlakyReader:
    """A GPU reader whose close() reports one missed sample, as NvmlReader does after an NVMLError."""

    method = "nvml"

    def open(self):
        pass

    def sample(self, t_s):
        return 0.0

    def close(self, t_s):
        return {"method": "nvml-power", "energy_j": 0.0,
                "devices": [{"index": 0, "name": "H100", "missed_samples": 1}]}


def test_nvml_counter_per_device_with_sampled_power_fallback():
    nv, state = fake_pynvml()
    r = NvmlReader("auto", nvml=nv)
    r.open()
    r.sample(0.0)
    r.sample(5.0)
    out = r.close(10.0)
    dev0, dev1 = out["devices"]
    assert dev0["method"] == "nvml-energy" and dev1["method"] == "nvml-power"
    assert dev0["energy_kwh"] * J_PER_KWH == pytest.approx(15.0)  # 3 reads after open: +5 J each
    assert dev1["energy_kwh"] * J_PER_KWH == pytest.approx(200.0 * 10.0)  # trapezoid over 0..10 s
    assert dev1["utilisation_mean_pct"] == 80 and dev0["tdp_w"] == 700
    assert out["method"] == "nvml-mixed" and state["shutdown"]
    with pytest.raises(ReaderUnavailable, match="no NVML energy counter"):
        NvmlReader("energy", nvml=fake_pynvml()[0]).open()


def test_missing_command_is_127_and_empty_command_is_an_error():
    with pytest.raises(TrackError) as exc:
        _track_cmd(["definitely-not-a-command-xyz"])
    assert exc.value.exit_code == 127 and "command not found" in str(exc.value)
    with pytest.raises(TrackError, match="nothing to track"):
        _track_cmd([])


def _track_cmd(cmd):
    return run_tracked(cmd, gpu_chain=(ConstantPower(1.0),), cpu_chain=("model",), interval_s=0.05)


def test_record_round_trip_and_validation(tmp_path):
    rec = _track("pass").to_dict()
    path = write_record(rec, tmp_path / "sub" / "run.json")
    assert read_record(path) == json.loads(json.dumps(rec))
    (tmp_path / "bad.json").write_text(json.dumps({"schema": "other"}))
    with pytest.raises(UserInputError, match="not a carbonsched measurement record"):
        read_record(tmp_path / "bad.json")
    with pytest.raises(UserInputError, match="does not exist"):
        read_record(tmp_path / "none.json")


def test_measurements_live_in_the_job_store(tmp_path):
    from carbonsched.settings import Settings
    from carbonsched.run.store import UnknownJobError
    from carbonsched.measure.track import load_job_record, past_records

    settings = Settings(home=tmp_path)
    store = open_store(settings)
    job = store.add_job(name="j", spec={}, plan={}, start_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
                        launcher="local", now=datetime(2026, 1, 1, tzinfo=timezone.utc))
    rec = _track("pass").to_dict()
    store.save_measurement(job.id, rec)
    assert load_job_record(job.id, settings) == json.loads(json.dumps(rec))
    assert [e["kind"] for e in store.events(job.id)][-1] == "measured"
    store.save_measurement("ad-hoc-label", rec)  # a label need not be a stored job
    assert len(past_records(settings)) == 2
    with pytest.raises(UnknownJobError, match="no measurement for job 'nope'"):
        load_job_record("nope", settings)


# -- through the console script ----------------------------------------------------------------
CHILD = """
import signal, sys, time, pathlib
marker = pathlib.Path(sys.argv[1])
def handler(signum, frame):
    marker.write_text(signal.Signals(signum).name)
    sys.exit(7)
signal.signal(signal.SIGTERM, handler)
signal.signal(signal.SIGINT, handler)
pathlib.Path(sys.argv[1] + ".ready").write_text("ready")
for _ in range(600):
    time.sleep(0.1)
sys.exit(1)
"""


def _tracker(tmp_path, *child_args, code=CHILD):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBONSCHED_")}
    env["CARBONSCHED_HOME"] = str(tmp_path / "home")
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    return subprocess.Popen(_entry_point() + ["track", "--out", str(tmp_path / "run.json"), "--interval", "0.1",
                                              "--", PY, "-c", code, *child_args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait_for(path: Path, proc):
    for _ in range(600):
        if path.exists():
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_reach_the_child_and_its_exit_code_comes_back(tmp_path, sig):
    marker = tmp_path / "got"
    proc = _tracker(tmp_path, str(marker))
    _wait_for(Path(str(marker) + ".ready"), proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert marker.read_text() == sig.name, err
    assert proc.returncode == 7, err
    rec = json.loads((tmp_path / "run.json").read_text())
    assert rec["exit_code"] == 7 and rec["signals_forwarded"] == [sig.name]


def test_child_killed_by_signal_reports_128_plus_n(tmp_path):
    code = "import os, signal, pathlib, sys; pathlib.Path(sys.argv[1]).write_text('x'); os.kill(os.getpid(), signal.SIGKILL)"
    proc = _tracker(tmp_path, str(tmp_path / "started"), code=code)
    proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGKILL


def test_cli_exit_codes_and_missing_command(cli, tmp_path):
    r = cli("track", "--out", tmp_path / "a.json", "--", PY, "-c", "print('hello from the child'); raise SystemExit(3)")
    assert r.returncode == 3, r.stderr
    assert r.stdout.strip() == "hello from the child"  # stdout belongs to the command
    assert "record written to" in r.stderr
    assert read_record(tmp_path / "a.json")["exit_code"] == 3
    r = cli("track", "--", "no-such-command-xyz")
    assert r.returncode == 127
    assert "command not found: no-such-command-xyz" in r.stderr
    r = cli("track", "--job", "job-42", "--quiet", "--", PY, "-c", "pass")
    assert r.returncode == 0 and r.stderr == ""
    from carbonsched.run.store import Store

    store = Store(tmp_path / "share" / "carbonsched" / "jobs.sqlite")  # XDG_DATA_HOME of the cli fixture
    assert store.load_measurement("job-42")["job_id"] == "job-42"
    r = cli("report", "job-42", "--format", "json")
    assert r.returncode == 2 and "where did the job run?" in r.stderr  # a bare label: no plan, no region
    r = cli("report", "job-42", "--format", "json", "--region", "aws:eu-north-1")
    assert r.returncode == 0, r.stderr


# -- where the record goes: one measurement per job, never lost ---------------------------------
def _stored_job(home):
    from carbonsched.run.store import Store

    store = Store(home / "jobs.sqlite")
    job = store.add_job(name="x", spec={"command": "true"}, now=datetime(2026, 1, 1, tzinfo=timezone.utc),
                        start_at=datetime(2026, 1, 1, tzinfo=timezone.utc), launcher="aws",
                        plan={"placements": [{"rank": 1, "region_id": "aws:eu-north-1", "gpu": "L40S", "gpu_count": 2}]})
    store.close()
    return job


def test_track_job_prefix_is_the_job_and_its_measurement_is_replaced_only_when_asked(cli, tmp_path):
    """`track --job PREFIX` stores the record under the job's full id (it took the job's GPUs
    through the prefix but kept the record under the prefix, never attached to the job); a second
    `track --job JOB` is refused before running anything, naming what is there and --replace."""
    from carbonsched.run.store import Store, UnknownJobError

    home = tmp_path / "home"
    job = _stored_job(home)
    env = {"CARBONSCHED_HOME": str(home)}
    r = cli("track", "--job", job.id[:5], "--gpu-method", "model", "--", PY, "-c", "pass", extra_env=env)
    assert r.returncode == 0, r.stderr
    assert f"is job {job.id}" in r.stderr
    store = Store(home / "jobs.sqlite")
    first = store.load_measurement(job.id)
    assert first["job_id"] == job.id and any("2x L40S" in w for w in first["warnings"])
    with pytest.raises(UnknownJobError):
        store.load_measurement(job.id[:5])

    marker = tmp_path / "ran"
    again = ["--", PY, "-c", f"open({str(marker)!r}, 'w').close(); raise SystemExit(5)"]
    r = cli("track", "--job", job.id, "--gpu-method", "model", *again, extra_env=env)
    assert r.returncode == 2 and not marker.exists()  # refused before the run
    assert f"job {job.id!r} already has a measurement" in r.stderr and "--replace" in r.stderr, r.stderr
    assert store.load_measurement(job.id) == first
    r = cli("track", "--job", job.id, "--replace", "--gpu-method", "model", *again, extra_env=env)
    assert r.returncode == 5 and marker.exists(), r.stderr
    replaced = store.load_measurement(job.id)
    assert replaced["exit_code"] == 5 and first["exit_code"] == 0
    assert [e["kind"] for e in store.events(job.id)].count("measured") == 2
    # a label that several jobs' ids start with names none of them: it stays a label (it was refused)
    firsts = [j.id[0] for j in store.jobs()] + [_stored_job(home).id[0] for _ in range(16)]
    label = next(c for c in firsts if firsts.count(c) > 1)  # 17 ids, 16 hex digits: two start alike
    r = cli("track", "--job", label, "--gpu-method", "model", "--", PY, "-c", "pass", extra_env=env)
    assert r.returncode == 0 and "is job" not in r.stderr, r.stderr
    assert store.load_measurement(label)["job_id"] == label


def test_save_record_keeps_a_second_measurement_of_a_job_beside_the_first(tmp_path):
    """A measurement stored meanwhile (another `track` of the same job, after this one's check):
    the run's record goes to the measurements folder, with a note; the first one stays."""
    from carbonsched.measure.track import save_record
    from carbonsched.settings import Settings

    settings = Settings(home=tmp_path / "home")
    rec = _track("pass").to_dict()
    assert save_record(rec, settings, job_id="j")[1] == []
    second = {**rec, "exit_code": 1}
    written, notes = save_record(second, settings, job_id="j")
    assert "already has a measurement" in notes[0] and "--replace" in notes[0]
    assert read_record(written[0]) == json.loads(json.dumps(second)) and written[0].parent.name == "measurements"
    assert open_store(settings).load_measurement("j") == json.loads(json.dumps(rec))
    save_record(second, settings, job_id="j", replace=True)
    assert open_store(settings).load_measurement("j")["exit_code"] == 1


def test_track_checks_where_the_record_goes_before_the_run_and_never_hides_the_exit_code(cli, tmp_path):
    """CARBONSCHED_HOME a plain file: with nowhere to keep the record, nothing runs (exit 2);
    with --out usable the run happens and keeps its exit code; and when the place breaks during
    the run, the record is printed on stderr and the exit code is still the command's."""
    home = tmp_path / "homefile"
    home.write_text("not a folder")
    env = {"CARBONSCHED_HOME": str(home)}
    marker = tmp_path / "ran"
    cmd = ["--", PY, "-c", f"open({str(marker)!r}, 'w').close(); raise SystemExit(3)"]
    r = cli("track", "--job", "j", *cmd, extra_env=env)
    assert r.returncode == 2 and not marker.exists(), r.stderr
    assert "nothing was run" in r.stderr and "CARBONSCHED_HOME" in r.stderr
    r = cli("track", "--job", "j", "--out", tmp_path / "rec.json", *cmd, extra_env=env)
    assert r.returncode == 3 and marker.exists(), r.stderr
    assert read_record(tmp_path / "rec.json")["exit_code"] == 3 and "job store is unusable" in r.stderr
    # the command itself turns the --out folder into a file: no place is left after the run
    out = tmp_path / "d" / "rec.json"
    breaker = (f"import shutil; shutil.rmtree({str(out.parent)!r}); open({str(out.parent)!r}, 'w').close(); "
               "raise SystemExit(3)")
    r = cli("track", "--out", out, "--", PY, "-c", breaker, extra_env=env)
    assert r.returncode == 3, r.stderr
    assert "the record could not be kept" in r.stderr
    printed = json.loads(r.stderr[r.stderr.index("\n{") + 1:r.stderr.index("\n}") + 2])
    assert printed["schema"] == "carbonsched.measurement" and printed["exit_code"] == 3
