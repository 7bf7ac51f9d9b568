"""The in-process tracker (``carbonsched.Tracker``, ``@carbonsched.track_emissions``): real threads
and real time, injected readers where a GPU would be; the record as ``carbonsched track`` writes
it; the job store and files it is kept in; Prometheus output read back with prometheus-client's
own parser, pushed to a real local HTTP server standing in for the pushgateway."""
from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import carbonsched
from carbonsched.errors import ConfigError, TrackError
from carbonsched.kubernetes import all_regions
from carbonsched.measure.energy import J_PER_KWH
from carbonsched.measure.inprocess import METRICS, Tracker
from carbonsched.measure.ledger import build_ledger
from carbonsched.measure.track import open_store, read_record, run_tracked
from carbonsched.providers.grid import build_forecast_source
from carbonsched.settings import resolve_settings


REGION = "gcp:europe-west4"


class Watts:
    """An injected GPU reader drawing ``watts`` from its first sample on; counts its samples and
    the threads they came from."""

    method = "nvml-energy"

    def __init__(self, watts: float):
        self.watts, self.t0, self.calls, self.threads = watts, None, 0, set()

    def open(self):
        pass

    def sample(self, t_s):
        self.calls += 1
        self.threads.add(threading.get_ident())
        self.t0 = t_s if self.t0 is None else self.t0
        return self.watts * (t_s - self.t0)

    def close(self, t_s):
        e = self.sample(t_s)
        return {"method": self.method, "energy_j": e,
                "devices": [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "method": self.method,
                             "energy_kwh": e / J_PER_KWH, "mean_power_w": self.watts, "tdp_w": 700.0,
                             "utilisation_mean_pct": None, "utilisation_max_pct": None, "samples": self.calls,
                             "missed_samples": 0}]}


@pytest.fixture
def home(tmp_path, monkeypatch):
    for k in [k for k in os.environ if k.startswith("CARBONSCHED_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("CARBONSCHED_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path / "home"


def _kw(watts=500.0, **kw):
    return dict(gpu_chain=(Watts(watts),), cpu_chain=("model",), vcpus=4, memory_gib_=16.0, interval_s=0.02, **kw)


def test_a_block_is_sampled_in_the_background_and_recorded_like_track(home, tmp_path):
    kw = _kw()
    reader = kw["gpu_chain"][0]
    out = tmp_path / "run.json"
    with Tracker(out=out, command=["train.py"], **kw) as t:
        time.sleep(0.3)
    m = t.measurement
    assert reader.calls >= 5 and len(reader.threads) == 2  # the sampling thread, then the last sample here
    assert m.exit_code == 0 and m.command == ("train.py",)
    assert m.gpu["energy_kwh"] == pytest.approx(500.0 * m.wall_seconds / J_PER_KWH)
    assert m.wall_seconds == pytest.approx(0.3, abs=0.15)
    rec = read_record(out)
    assert rec == t.record and t.written == [out]
    # hourly_split works on datetimes (microseconds): each 20 ms interval within 1e-4
    assert sum(h["it_energy_kwh"] for h in rec["hourly"]) == pytest.approx(rec["it_energy_kwh"], rel=1e-4)
    assert rec["samples"] == len(t._sampler.samples) >= 5
    # the same record as `carbonsched track` (the subprocess tracker) writes
    sub = run_tracked([sys.executable, "-c", "pass"], cpu_chain=("model",), gpu_chain=("model",), interval_s=0.05).to_dict()
    assert set(rec) == set(sub) and set(rec["gpu"]) == set(sub["gpu"]) and set(rec["cpu"]) == set(sub["cpu"])
    assert not (home / "measurements").exists()  # --out alone, as track


def test_a_block_that_raises_is_recorded_and_the_exception_goes_on(home):
    with pytest.raises(ZeroDivisionError):
        with Tracker(job="ft-1", **_kw()) as t:
            1 / 0
    assert t.record["exit_code"] == 1
    assert "the tracked block raised ZeroDivisionError: division by zero" in t.record["warnings"]
    stored = open_store(resolve_settings()).load_measurement("ft-1")  # in the job store, as track --job
    assert stored["exit_code"] == 1 and stored["job_id"] == "ft-1"

    with pytest.raises(SystemExit):
        with Tracker(save=False, **_kw()) as t2:
            sys.exit(3)
    assert t2.record["exit_code"] == 3 and t2.written == []


def test_without_job_or_out_the_record_goes_to_the_measurements_folder(home):
    with Tracker(**_kw()) as t:
        pass
    (path,) = t.written
    assert path.parent == home / "measurements" and read_record(path) == t.record


def test_decorator_bare_and_with_arguments(home, tmp_path):
    @carbonsched.track_emissions
    def plain(x):
        return x * 2

    @carbonsched.track_emissions(out=tmp_path / "f.json", **_kw(100.0))
    def step(x, *, y):
        time.sleep(0.05)
        return x + y

    assert plain(4) == 8 and plain.last_tracker.record["command"] == [f"{__name__}.test_decorator_bare_and_with_arguments.<locals>.plain"]
    assert step(1, y=2) == 3
    first = step.last_tracker
    assert read_record(tmp_path / "f.json") == first.record and first.measurement.gpu["energy_kwh"] > 0
    step(1, y=2)
    assert step.last_tracker is not first  # a new tracker (and record) per call


def test_region_gives_emissions_from_the_ledger_and_a_textfile(home, tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    prom = tmp_path / "textfile" / "carbonsched.prom"
    with Tracker(job="ft-2", region=REGION, prometheus_textfile=prom, **_kw(700.0)) as t:
        time.sleep(0.1)
    settings = resolve_settings()
    ledger = build_ledger(t.record, source=build_forecast_source(settings, name="profile"), region=REGION,
                          regions=all_regions(settings))
    assert t.kg_co2e == pytest.approx(ledger.kg_co2e) and t.kg_co2e > 0
    assert sorted(p.name for p in prom.parent.iterdir()) == ["carbonsched.prom"]  # no temporary file left
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for fam in text_string_to_metric_families(prom.read_text()) for s in fam.samples}
    m = t.measurement
    for part in ("gpu", "cpu", "memory"):
        assert samples[("carbonsched_energy_kwh", (("job_id", "ft-2"), ("part", part)))] == pytest.approx(
            getattr(m, part)["energy_kwh"])
    assert samples[("carbonsched_emissions_kg", (("job_id", "ft-2"), ("region", REGION)))] == pytest.approx(t.kg_co2e)
    assert samples[("carbonsched_wall_seconds", (("job_id", "ft-2"),))] == pytest.approx(m.wall_seconds)
    assert samples[("carbonsched_run_end_timestamp_seconds", (("job_id", "ft-2"),))] == pytest.approx(
        m.ended_at.timestamp())
    assert {name for name, _ in samples} == set(METRICS)


class _Gateway(BaseHTTPRequestHandler):
    """A pushgateway's push endpoint: records each request (method, path, body)."""

    status = 200

    def do_PUT(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.pushes.append((self.command, self.path, self.headers.get("Content-Type"), body.decode()))
        self.send_response(self.server.status)
        self.end_headers()

    do_POST = do_PUT

    def log_message(self, *args):
        pass


@pytest.fixture
def gateway():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Gateway)
    server.pushes, server.status = [], 200
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_pushgateway_receives_the_metrics(home, gateway):
    from prometheus_client.parser import text_string_to_metric_families

    url = f"http://127.0.0.1:{gateway.server_address[1]}"
    with Tracker(job="ft 3/a", region=REGION, pushgateway=url, save=False, **_kw()) as t:
        pass
    ((method, path, ctype, body),) = gateway.pushes
    assert method == "PUT"  # push_to_gateway: replace the group
    # the pushgateway's URL form for a label value with a "/": base64url
    assert path == "/metrics/job/carbonsched/job_id@base64/" + base64.urlsafe_b64encode(b"ft 3/a").decode()
    assert ctype.startswith("text/plain")
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value
           for fam in text_string_to_metric_families(body) for s in fam.samples}
    assert got[("carbonsched_energy_kwh", (("part", "gpu"),))] == pytest.approx(t.measurement.gpu["energy_kwh"])
    assert got[("carbonsched_emissions_kg", (("region", REGION),))] == pytest.approx(t.kg_co2e)
    assert t.export_errors == []


def test_a_failed_push_warns_and_keeps_the_record(home, gateway):
    gateway.status = 500
    url = f"http://127.0.0.1:{gateway.server_address[1]}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Tracker(job="ft-4", pushgateway=url, **_kw()) as t:
            pass
    assert len(gateway.pushes) == 1 and len(t.export_errors) == 1 and "pushgateway" in t.export_errors[0]
    assert any(issubclass(w.category, RuntimeWarning) and "pushgateway" in str(w.message) for w in caught)
    assert open_store(resolve_settings()).load_measurement("ft-4") == t.record


def test_bad_arguments_fail_before_the_block(home):
    with pytest.raises(TrackError):
        Tracker(interval_s=0)
    with pytest.raises(carbonsched.UnknownNameError):
        Tracker(region="nowhere:moon-1", **_kw()).start()
    t = Tracker(**_kw())
    with t:
        pass
    with pytest.raises(TrackError, match="new one"):
        t.start()


def _blocked(tmp_path, module: str) -> dict:
    """Environment in which ``module`` cannot be imported (as if not installed)."""
    block = tmp_path / f"block-{module}"
    block.mkdir()
    (block / "sitecustomize.py").write_text(f"import sys\nsys.modules[{module!r}] = None\n")
    return {**os.environ, "PYTHONPATH": str(block)}


def test_missing_extras_are_named_before_anything_runs(home, tmp_path, cli):
    code = ("import carbonsched\n"
            "t = carbonsched.Tracker(pushgateway='http://127.0.0.1:9', save=False)\n"
            "try:\n    t.start()\nexcept carbonsched.CarbonschedError as e:\n    print(type(e).__name__, e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env=_blocked(tmp_path, "prometheus_client"))
    assert r.stdout.startswith("ConfigError") and "carbonsched[prometheus]" in r.stdout, r.stdout + r.stderr
    assert issubclass(ConfigError, carbonsched.CarbonschedError)

    marker = tmp_path / "ran"
    r = cli("track", "--mlflow", "--", sys.executable, "-c", f"open({str(marker)!r}, 'w')",
            extra_env={"PYTHONPATH": _blocked(tmp_path, "mlflow")["PYTHONPATH"]})
    assert r.returncode == 2 and "carbonsched[mlflow]" in r.stderr and not marker.exists(), r.stderr


def test_plan_loads_no_integration(tmp_path):
    """`carbonsched plan` stays light: no tracker, integration, MLflow or Prometheus client."""
    code = ("import sys, io, contextlib\nfrom carbonsched.cli.main import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    rc = main(['plan', '--gpu', 'H100', '--gpus', '8', '--hours', '2', '--json', '--now', '2026-11-27T10:30:00Z'])\n"
            "bad = sorted(m for m in sys.modules if m.startswith(('carbonsched.integrations', 'carbonsched.measure', "
            "'mlflow', 'prometheus_client', 'yaml')))\nprint(rc, bad)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                       env={k: v for k, v in os.environ.items() if not k.startswith("CARBONSCHED_")})
    assert r.stdout.strip() == "0 []", r.stdout + r.stderr


def doc_block(section: str, lang: str) -> str:
    """The first ``lang`` code block under ``## section`` in docs/pipelines.md."""
    from conftest import REPO

    text = (REPO / "docs" / "pipelines.md").read_text(encoding="utf-8")
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return body.split(f"```{lang}\n", 1)[1].split("```", 1)[0]


def test_the_docs_example_runs(home, tmp_path):
    r = subprocess.run([sys.executable, "-c", doc_block("In-process tracker", "python")], capture_output=True,
                       text=True, timeout=120, cwd=tmp_path, env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    first, second = r.stdout.splitlines()
    assert "kWh" in first and "kgCO2e, kept in job store (llama-ft)" in first
    assert second == f"0 {2 * len(METRICS) + 3 + len(METRICS) - 1}"  # HELP, TYPE each; 3 energy parts, 1 of each other
    assert read_record(tmp_path / "eval.json")["command"][0].endswith("evaluate")
    assert open_store(resolve_settings()).load_measurement("llama-ft")["region_id"] == REGION
