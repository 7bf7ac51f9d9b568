"""Embedded datasets (CSV), loaded lazily with importlib.resources.

Files (each built by ``tools/build_data.py`` from ``../shared/data``; see ``provenance.csv``):

* ``regions.csv``   GPU regions of AWS and GCP: location, grid zone, PUE, yearly intensity
* ``gpus.csv``      GPU models: TDP, dense throughput, memory, embodied footprint
* ``offerings.csv`` GPU instance types per region/zone with on-demand and spot USD/h
* ``profiles.csv``  typical-day intensity (month x hour-of-day UTC; mean, p10, p90; 2022 LCA)
* ``profile_zones.csv`` per-zone summary of the hourly data behind the profiles

Nothing is read at import time. Readers return plain parsed rows; the typed views live in
``carbonsched.refdata`` and ``carbonsched.providers``.
"""
from __future__ import annotations

import csv
import io
from functools import lru_cache
from importlib import resources

from carbonsched.errors import DataError

FILES = ("regions.csv", "gpus.csv", "offerings.csv", "profiles.csv", "profile_zones.csv", "provenance.csv")


@lru_cache(maxsize=None)
def read_text(name: str) -> str:
    """The text of one embedded file; DataError when it is missing from the installation."""
    try:
        return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
    except (FileNotFoundError, OSError) as exc:
        raise DataError(f"embedded data file {name!r} is missing from this installation ({exc}); reinstall carbonsched") from exc


def read_rows(name: str) -> list[dict[str, str]]:
    """Rows of an embedded CSV as dicts (strings)."""
    return list(csv.DictReader(io.StringIO(read_text(name))))
