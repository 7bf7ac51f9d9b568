"""``plan --json`` is byte-identical to the recorded output for the examples at fixed instants.

The golden files were written by main a9e6e11 (before the layout change) and guard every later
refactor: a change that alters any number, warning or key order fails here (only wall times,
``"seconds"`` and the ``*_s`` timings, are masked). When a change is
*meant* to alter plan output, regenerate them with the commands in tests/data/golden/README.md
and say why in the commit.
"""
from __future__ import annotations

import re

import pytest

from conftest import REPO

GOLDEN = REPO / "tests" / "data" / "golden"

# wall times are the fields that differ between runs
_TIMING = re.compile(r'("(?:seconds|[a-z]+_s)": )[0-9.e+-]+')


def _masked(text: str) -> str:
    return _TIMING.sub(r"\1<elapsed>", text)


CASES = [
    (["examples/job.toml"], "2026-11-27T10:00Z", "plan_job_2026-11-27T10.json"),
    (["examples/job.toml"], "2026-06-01T03:30Z", "plan_job_2026-06-01T0330.json"),
    (["--batch", "examples/batch.toml"], "2026-11-27T10:00Z", "plan_batch_2026-11-27T10.json"),
    (["--batch", "examples/batch.toml"], "2026-06-01T03:30Z", "plan_batch_2026-06-01T0330.json"),
]


@pytest.mark.parametrize("args,now,golden", CASES, ids=[c[2] for c in CASES])
def test_plan_json_is_byte_identical(cli, args, now, golden):
    args = [str(REPO / a) if a.endswith(".toml") else a for a in args]
    r = cli("plan", *args, "--json", "--now", now)
    assert r.returncode == 0, r.stderr
    expected = (GOLDEN / golden).read_text()
    assert _masked(r.stdout) == _masked(expected), f"plan --json for {golden} changed; see tests/data/golden/README.md"
