"""Hostile CLI inputs: how many are refused cleanly, crash with a traceback, or are accepted.

Run: python benchmarks/adversarial_inputs.py [--pythonpath DIR]   (DIR: another carbonsched tree to compare)

Each case runs `python -m carbonsched ...` in a fresh CARBONSCHED_HOME and is classified:
refused (exit 2, one `carbonsched: error:` line, nothing written), refused-dirty (non-zero exit
without a traceback but with more output or files left), traceback, or accepted (exit 0: for
these inputs, a silently wrong result). Prints one table and the cases that were not refused.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
JOB = REPO / "examples" / "job.toml"
BASE = 'gpu = "A100"\ngpus = 8\nhours = 12\n'
NOW = ["--now", "2026-11-27T10:30Z"]

JOB_FILES = {
    "nul in command": BASE + 'command = "python\\u0000 train.py"\n',
    "image as a docker option": BASE + 'command = "python t.py"\nimage = "--privileged"\n',
    "image with a volume flag": BASE + 'command = "python t.py"\nimage = "--volume=/:/host"\n',
    "image with a space": BASE + 'command = "python t.py"\nimage = "ubuntu --entrypoint=/bin/sh"\n',
    "unsplittable command": BASE + 'command = "python -c \'unterminated"\n',
    "size 1e308": BASE + '[data]\nsize_gb = 1e308\nhome_region = "aws:us-east-1"\n',
    "negative hours": 'gpu = "A100"\ngpus = 8\nhours = -3\n',
    "nan hours": 'gpu = "A100"\ngpus = 8\nhours = nan\n',
    "inf price": BASE + '[constraints]\nmax_usd_per_hour = inf\n',
    "year 9999 deadline": BASE + '[window]\ndeadline = 9999-12-31T23:00:00Z\n',
    "year 9999 start": BASE + '[window]\nearliest_start = 9999-12-31T23:00:00Z\n',
    "unknown gpu": 'gpu = "A1000"\ngpus = 8\nhours = 12\n',
    "secret in env": BASE + 'command = "x"\nenv = { HF_TOKEN = "hf_abc" }\n',
    "key at the wrong level": BASE + 'max_delay = "24h"\n',
    "deep nesting": "a = " + "[" * 5000 + "]" * 5000 + "\n",
    "impossible deadline": BASE + '[window]\ndeadline = 2026-11-27T11:00:00Z\n',
}
BATCH_FILES = {
    "batch job list of strings": 'job = ["a", "b"]\n',
    "batch capacity unknown region": '[capacity]\n"aws:mars-1" = { H100 = 8 }\n[[job]]\n' + BASE,
    "batch capacity unknown gpu": '[capacity]\n"aws:eu-north-1" = { H1000 = 8 }\n[[job]]\n' + BASE,
}
FLAGS = {
    "--now year 9999": ["plan", str(JOB), "--now", "9999-12-31T23:00Z"],
    "--top -1": ["plan", str(JOB), "--top", "-1", *NOW],
    "--weights not a number": ["plan", str(JOB), "--weights", "carbon=x", *NOW],
    "--gpus 0": ["plan", "--gpu", "A100", "--gpus", "0", "--hours", "1", *NOW],
    "cancel empty id": ["cancel", ""],
    "status %": ["status", "%"],
    "agent --interval nan": ["agent", "--once", "--interval", "nan"],
    "agent --stale-after -5": ["agent", "--once", "--stale-after", "-5"],
    "launcher gcp, job only aws": ["submit", str(JOB), "--launcher", "gcp", "--provider", "aws", "--yes", *NOW],
}


def run(args, env_extra, home: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBONSCHED_")}
    env.update(env_extra, CARBONSCHED_HOME=str(home), XDG_CONFIG_HOME=str(home.parent / "cfg"))
    r = subprocess.run([sys.executable, "-m", "carbonsched", *args], capture_output=True, text=True, env=env,
                       timeout=120, cwd=home.parent)
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    written = home.exists() and any(home.rglob("*"))
    if "Traceback" in r.stderr:
        return "traceback"
    if r.returncode == 0:
        return "accepted"
    if r.returncode == 2 and len(lines) == 1 and lines[0].startswith("carbonsched: error:") and not written:
        return "refused"
    return "refused-dirty"


def cases(tmp: Path):
    for name, text in JOB_FILES.items():
        f = tmp / f"{len(name)}-{abs(hash(name))}.toml"
        f.write_text(text)
        yield f"job: {name} (plan)", ["plan", str(f), *NOW]
        yield f"job: {name} (submit)", ["submit", str(f), "--launcher", "local", "--yes", *NOW]
    for name, text in BATCH_FILES.items():
        f = tmp / f"b{abs(hash(name))}.toml"
        f.write_text(text)
        yield name, ["plan", "--batch", str(f), *NOW]
    yield from FLAGS.items()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pythonpath", help="import carbonsched from this folder instead (e.g. an older tree)")
    a = ap.parse_args()
    env_extra = {"PYTHONPATH": a.pythonpath} if a.pythonpath else {}
    counts: dict[str, int] = {}
    bad = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for i, (name, args) in enumerate(cases(tmp)):
            home = tmp / f"home{i}"
            outcome = run(args, env_extra, home)
            counts[outcome] = counts.get(outcome, 0) + 1
            if outcome != "refused":
                bad.append((outcome, name))
    total = sum(counts.values())
    print(f"{'inputs':>8} {'refused':>8} {'refused-dirty':>14} {'traceback':>10} {'accepted':>9}")
    print(f"{total:>8} {counts.get('refused', 0):>8} {counts.get('refused-dirty', 0):>14} "
          f"{counts.get('traceback', 0):>10} {counts.get('accepted', 0):>9}")
    for outcome, name in bad:
        print(f"  {outcome}: {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
