"""Rebuild the embedded datasets in data/ from ../shared/data/.

Usage: python tools/build_data.py [--shared ../shared/data] [--out data]

Each module in tools/data_build/ exposes ``build(shared: Path, out: Path) -> list[dict]``
which writes its CSV files into ``out`` and returns provenance rows
(keys: file, source, retrieved, licence, attribution, notes). This script runs them all
and writes ``data/provenance.csv``. The shipped package never imports this code.
"""
from __future__ import annotations

import argparse
import csv
import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = ["regions", "profiles", "gpus", "offerings"]
PROVENANCE_FIELDS = ["file", "source", "retrieved", "licence", "attribution", "notes"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "data")
    ap.add_argument("--only", nargs="*", choices=MODULES, help="rebuild only these (provenance rows of the others are kept)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    wanted = args.only or MODULES
    prov_path = args.out / "provenance.csv"
    rows: list[dict] = []
    if prov_path.exists() and args.only:
        with prov_path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    rebuilt_files: set[str] = set()
    new_rows: list[dict] = []
    for name in wanted:
        mod = importlib.import_module(f"tools.data_build.{name}")
        produced = mod.build(args.shared, args.out)
        for row in produced:
            missing = set(PROVENANCE_FIELDS) - set(row)
            if missing:
                raise SystemExit(f"{name}: provenance row lacks {sorted(missing)}")
            rebuilt_files.add(row["file"])
        new_rows.extend(produced)
        print(f"built {name}: {', '.join(sorted({r['file'] for r in produced}))}")
    rows = [r for r in rows if r["file"] not in rebuilt_files] + new_rows
    rows.sort(key=lambda r: (r["file"], r["source"]))
    with prov_path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=PROVENANCE_FIELDS, lineterminator="\n")
        w.writeheader()
        w.writerows({k: r[k] for k in PROVENANCE_FIELDS} for r in rows)
    print(f"wrote {prov_path} ({len(rows)} rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
