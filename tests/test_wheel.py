"""The built wheel ships the package layout and the embedded data, and plans from the wheel alone."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile

from conftest import REPO

DATA_FILES = ["regions.csv", "gpus.csv", "offerings.csv", "profiles.csv", "profile_zones.csv", "provenance.csv"]
PACKAGES = {"scheduler": "carbonsched", "providers": "carbonsched/providers", "policies": "carbonsched/policies",
            "data": "carbonsched/data"}


def test_wheel_contains_data_and_runs_from_the_wheel(tmp_path):
    # build from a clean copy: a stale build/ folder in the checkout must not leak into the wheel
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        "build", "dist", "*.egg-info", ".ci-venv*", ".venv*", "__pycache__", ".git", ".pytest_cache", ".hypothesis"))
    out = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)],
                   check=True, capture_output=True, text=True, timeout=300)
    (wheel,) = out.glob("carbonsched-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in DATA_FILES:
        assert f"carbonsched/data/{name}" in names, name
    # exactly the source modules, nothing stale or extra
    expected = {f"{PACKAGES[p.parts[0]]}/{'/'.join(p.parts[1:])}"
                for p in (path.relative_to(src) for path in src.rglob("*.py")) if p.parts[0] in PACKAGES}
    assert {n for n in names if n.endswith(".py")} == expected
    assert not any(n.startswith(("tools/", "tests/", "benchmarks/")) for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "carbonsched = carbonsched.cli.main:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    # import from the wheel file itself (zipimport), not from the editable checkout
    code = ("import carbonsched, carbonsched.cli.main as c; assert '.whl' in carbonsched.__file__, carbonsched.__file__; "
            "raise SystemExit(c.main(['plan', '--gpu', 'A100', '--gpus', '8', '--hours', '12', '--now', '2026-11-27T10:30Z', '--top', '3']))")
    env = {**os.environ, "PYTHONPATH": str(wheel)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "base" in r.stdout and "aws:us-east-1" in r.stdout
