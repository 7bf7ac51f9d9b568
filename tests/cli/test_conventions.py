"""CLI conventions: --version, completion scripts generated from the parser, progress that only a
person at a terminal sees, schema_version in every --json output."""
from __future__ import annotations

import io
import json
import shutil
import subprocess

import pytest

from carbonsched import __version__
from carbonsched.cli._common import Progress
from carbonsched.cli.main import build_parser
from conftest import EXAMPLE_JOB, REPO


def test_version(cli):
    r = cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"carbonsched {__version__}"


def test_bash_completion_knows_every_command_and_choice(cli, tmp_path):
    r = cli("completion", "bash")
    assert r.returncode == 0
    script = r.stdout
    commands = [name for a in build_parser()._actions if hasattr(a, "choices") and isinstance(a.choices, dict)
                for name in a.choices]
    assert {"plan", "submit", "agent", "track", "report", "completion"} <= set(commands)
    for name in commands:
        assert f"        {name})" in script
    assert "carbon cost time weighted lexicographic pareto" in script  # --objective choices
    if shutil.which("bash"):
        path = tmp_path / "c.bash"
        path.write_text(script)
        # complete `carbonsched plan --objective c<TAB>` with the generated function, in a real bash
        probe = (f"source {path}; COMP_WORDS=(carbonsched plan --objective c); COMP_CWORD=3; "
                 "_carbonsched; printf '%s\\n' \"${COMPREPLY[@]}\"")
        out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["carbon", "cost"]


def test_zsh_completion_is_generated(cli):
    r = cli("completion", "zsh")
    assert r.returncode == 0 and r.stdout.startswith("#compdef carbonsched")
    assert "'plan:" in r.stdout and "'--objective[]:value:(carbon cost time weighted lexicographic pareto)'" in r.stdout
    assert cli("completion", "fish").returncode == 2


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_only_on_a_terminal_after_a_while_and_never_with_json():
    now = [0.0]
    tty = _Tty()
    p = Progress("jobs", stream=tty, clock=lambda: now[0], after_s=2.0)
    p(1, 10)  # fast work: nothing drawn
    assert tty.getvalue() == ""
    now[0] = 3.0
    p(5, 10)
    p(10, 10)
    assert tty.getvalue() == "\rjobs: 5/10\rjobs: 10/10\n"
    quiet = _Tty()
    q = Progress("jobs", stream=quiet, quiet=True, clock=lambda: 99.0, after_s=0)
    q(1, 2)
    plain = io.StringIO()  # a file or pipe: not a terminal
    Progress("jobs", stream=plain, clock=lambda: 99.0, after_s=0)(1, 2)
    assert quiet.getvalue() == "" and plain.getvalue() == ""


def test_json_outputs_carry_schema_version(cli, tmp_path):
    policy = REPO / "examples" / "policy.toml"
    history = tmp_path / "h.csv"
    rows = ["datetime,carbon_intensity"] + [f"2022-01-{1 + h // 24:02d}T{h % 24:02d}:00:00Z,{200 + (h % 24) * 5}"
                                            for h in range(24 * 20)]
    history.write_text("\n".join(rows) + "\n")
    for args in (["plan", EXAMPLE_JOB, "--json", "--now", "2026-11-27T10:00Z", "--top", "1"],
                 ["policy", "check", policy, EXAMPLE_JOB, "--json", "--now", "2026-11-27T10:00Z"],
                 ["forecast", "backtest", "--history", history, "--json"],
                 ["regions", "--gpu", "H100", "--json"],
                 ["forecast", "aws:eu-west-1", "--json", "--now", "2026-11-27T10:00Z"]):
        r = cli(*args)
        assert r.returncode == 0, (args, r.stderr)
        assert json.loads(r.stdout)["schema_version"] == 1, args


def test_plan_loads_only_what_planning_needs(tmp_path):
    """`carbonsched plan` stays <= 0.5 s as a process because every command's parser is built
    without its library: no scipy, no optional package, no other command's module. (A parser that
    imported the history reader for its choices pulled in scipy.stats: 0.23 s -> 0.95 s.)"""
    import os
    import sys

    heavy = ("scipy", "matplotlib", "sky", "fastapi", "uvicorn", "psycopg", "boto3", "botocore", "google.cloud",
             "mlflow", "prometheus_client", "yaml", "airflow", "prefect", "kfp", "httpx", "requests",
             "carbonsched.providers.grid.backtest", "carbonsched.providers.grid.decisions", "carbonsched.measure",
             "carbonsched.run", "carbonsched.server", "carbonsched.integrations")
    code = ("import sys, io, contextlib\nfrom carbonsched.cli.main import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    rc = main(['plan', {str(EXAMPLE_JOB)!r}, '--now', '2026-11-27T10:30:00Z'])\n"
            f"print(rc, sorted(m for m in sys.modules if m.startswith({heavy!r})))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                       env={k: v for k, v in os.environ.items() if not k.startswith("CARBONSCHED_")})
    assert r.stdout.strip() == "0 []", r.stdout + r.stderr
