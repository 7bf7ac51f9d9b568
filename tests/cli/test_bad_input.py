"""Adversarial input (issue 11): every bad job file, flag, batch or policy file is refused with one
line, exit 2, and nothing written. A table of the cases a hostile user found, plus hypothesis
fuzzing of job tables in-process (many cases) and of job files through the CLI (a few)."""
from __future__ import annotations

import os
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carbonsched.errors import UserInputError
from carbonsched.planning import plan
from carbonsched.spec.job import SCHEMA, job_from_dict
from conftest import EXAMPLE_JOB

NOW = datetime(2026, 11, 27, 10, 30, tzinfo=timezone.utc)
BASE = 'gpu = "A100"\ngpus = 8\nhours = 12\n'


def _refused(r, home):
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert len(lines) == 1 and lines[0].startswith("carbonsched: error:"), r.stderr
    assert not home.exists() or not any(home.rglob("*")), f"something was written: {list(home.rglob('*'))}"


CASES = {
    "nul in command": BASE + 'command = "python\\u0000 train.py"\n',
    "image as a docker option": BASE + 'command = "python t.py"\nimage = "--privileged"\n',
    "image with a volume flag": BASE + 'command = "python t.py"\nimage = "--volume=/:/host"\n',
    "size 1e308": BASE + '[data]\nsize_gb = 1e308\nhome_region = "aws:us-east-1"\n',
    "negative hours": 'gpu = "A100"\ngpus = 8\nhours = -3\n',
    "nan hours": 'gpu = "A100"\ngpus = 8\nhours = nan\n',
    "inf price": BASE + '[constraints]\nmax_usd_per_hour = inf\n',
    "year 9999 deadline": BASE + '[window]\ndeadline = 9999-12-31T23:00:00Z\n',
    "unknown gpu": 'gpu = "A1000"\ngpus = 8\nhours = 12\n',
    "unknown region": BASE + '[constraints]\nregions = ["aws:mars-1"]\n[baseline]\nregion = "aws:mars-1"\n',
    "secret in env": BASE + 'command = "x"\nenv = { HF_TOKEN = "hf_abc" }\n',
    "key at the wrong level": BASE + 'max_delay = "24h"\n',
    "deep nesting": "a = " + "[" * 5000 + "]" * 5000 + "\n",
    "not utf-8": None,
    "impossible deadline": BASE + '[window]\ndeadline = 2026-11-27T11:00:00Z\n',
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_job_files_are_refused_cleanly(cli, tmp_path, name):
    home = tmp_path / "home"
    f = tmp_path / "job.toml"
    if CASES[name] is None:
        f.write_bytes(b"gpu = \"\xff\xfe\"\n")
    else:
        f.write_text(CASES[name])
    for command in (["plan", f], ["submit", f, "--launcher", "local", "--yes"]):
        _refused(cli(*command, "--now", "2026-11-27T10:30Z", extra_env={"CARBONSCHED_HOME": str(home)}), home)


FLAG_CASES = [
    ["plan", EXAMPLE_JOB, "--now", "9999-12-31T23:00Z"],
    ["plan", EXAMPLE_JOB, "--top", "-1"],
    ["plan", EXAMPLE_JOB, "--weights", "carbon=x"],
    ["plan", "--gpu", "A100", "--gpus", "0", "--hours", "1"],
    ["cancel", ""],
    ["status", "%"],
    ["agent", "--once", "--interval", "nan"],
    ["agent", "--once", "--stale-after", "-5"],
    ["submit", EXAMPLE_JOB, "--launcher", "gcp", "--provider", "aws", "--yes"],
    ["submit", EXAMPLE_JOB, "--batch", EXAMPLE_JOB, "--yes"],  # a queue is planned, not submitted
    ["plan", EXAMPLE_JOB, "--strict"],  # queue-only flags without --batch
    ["plan", EXAMPLE_JOB, "--capacity", "8"],
]


@pytest.mark.parametrize("args", FLAG_CASES, ids=[" ".join(map(str, a[:3])) for a in FLAG_CASES])
def test_bad_flags_are_refused_cleanly(cli, tmp_path, args):
    home = tmp_path / "home"
    _refused(cli(*args, extra_env={"CARBONSCHED_HOME": str(home)}), home)


def test_batch_file_edges(cli, tmp_path):
    home = tmp_path / "home"
    cases = {
        "job list of strings": 'job = ["a", "b"]\n',
        "capacity for an unknown region": '[capacity]\n"aws:mars-1" = { H100 = 8 }\n[[job]]\n' + BASE,
        "capacity for an unknown gpu": '[capacity]\n"aws:eu-north-1" = { H1000 = 8 }\n[[job]]\n' + BASE,
        "priority zero": '[[job]]\npriority = 0\n' + BASE,
        "priority a string": '[[job]]\npriority = "high"\n' + BASE,
        "priority too large": '[[job]]\npriority = 100000\n' + BASE,
    }
    for name, text in cases.items():
        f = tmp_path / "batch.toml"
        f.write_text(text)
        _refused(cli("plan", "--batch", f, "--now", "2026-11-27T10:30Z", extra_env={"CARBONSCHED_HOME": str(home)}), home)
    f = tmp_path / "batch.toml"
    f.write_text("[[job]]\n" + BASE)
    for flags in (["--top-k", "-1"], ["--time-limit", "0"], ["--time-limit", "nan"]):
        _refused(cli("plan", "--batch", f, *flags, extra_env={"CARBONSCHED_HOME": str(home)}), home)


# -- fuzzing -------------------------------------------------------------------------------------
NASTY = st.sampled_from(["", " ", "\x00", "$(rm -rf ~)", "`id`", "'; DROP TABLE jobs; --", "\n", "--privileged",
                         "A100", "aws:us-east-1", "24h", "-1", "1e308", "nan", "../../etc/passwd", "é" * 300])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**63, max_value=2**63),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40), NASTY)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                      max_leaves=8)


def _table(schema: dict):
    keys = st.sampled_from(sorted(schema) + ["unknown", "Gpu"])
    return st.dictionaries(keys, st.one_of(VALUES, st.deferred(lambda: _nested())), max_size=6)


def _nested():
    subtables = {k: v for k, v in SCHEMA.items() if isinstance(v, dict)}
    return st.sampled_from(sorted(subtables)).flatmap(
        lambda k: st.dictionaries(st.sampled_from(sorted(subtables[k]) + ["bogus"]), VALUES, max_size=4))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=_table(SCHEMA), base=st.booleans())
def test_fuzzed_job_tables_are_jobs_or_user_errors(raw, base):
    """Any table either validates or raises a UserInputError (never another exception); a valid
    one plans or is refused with a UserInputError too."""
    if base:
        raw = {"gpu": "A100", "gpus": 8, "hours": 2, **raw}
    try:
        job = job_from_dict(raw)
    except UserInputError:
        return
    try:
        plan(job, now=NOW, top=3)
    except UserInputError:
        pass


TOML_STRINGS = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(command=TOML_STRINGS, name=TOML_STRINGS, hours=st.floats(allow_nan=True, allow_infinity=True))
def test_fuzzed_job_files_through_the_cli(cli, tmp_path_factory, command, name, hours):
    tmp = tmp_path_factory.mktemp("fuzz")
    home = tmp / "home"
    f = tmp / "job.toml"
    esc = lambda s: s.encode("unicode_escape").decode().replace('"', '\\"')  # noqa: E731
    f.write_text(f'gpu = "A100"\ngpus = 8\nhours = {hours!r}\ncommand = "{esc(command)}"\nname = "{esc(name)}"\n'
                 .replace("= nan", "= nan").replace("= inf", "= inf"))
    r = cli("plan", f, "--now", "2026-11-27T10:30Z", "--top", "1", extra_env={"CARBONSCHED_HOME": str(home)})
    assert r.returncode in (0, 2) and "Traceback" not in r.stderr, r.stderr
    if r.returncode == 2:
        _refused(r, home)
    assert os.path.exists(f)
