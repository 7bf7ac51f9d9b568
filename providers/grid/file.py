"""The user's own hourly intensity history as a source (CSV in the layouts of
``history.read_history_csv``; Parquet with the same columns when pyarrow is installed).

Files are given as ``PATH`` (a wide file with one column per zone, or a portal export whose
``Zone Id`` names the zone) or ``ZONE=PATH`` (a single-series file for that zone). For a region,
the file of its grid zone serves:

* ``series``: the recorded values where the file covers the window (``kind="history"``: a replay,
  handy for evaluating plans on past days), NaN elsewhere;
* ``history``: the values before a point in time, for the forecaster.

The signal is stated, never guessed: ``signal="lca"`` (lifecycle) or ``"direct"``. Files with
points closer than an hour (15- or 30-minute data) are averaged into UTC hours, and the series
carries a warning that says so (plans repeat it).
"""
from __future__ import annotations

import io
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path

import numpy as np

from carbonsched.errors import SourceNotFoundError, UserInputError
from carbonsched.models import Region

from carbonsched.providers.grid.history import file_version, read_history_csv
from carbonsched.providers.grid.series import HourlySeries

SIGNALS = {"lca": "average-lca", "direct": "average-direct"}


def parse_file_spec(spec: str) -> tuple[str | None, Path]:
    """``ZONE=PATH`` or ``PATH`` -> (zone or None, path)."""
    zone, sep, path = spec.partition("=")
    if sep and zone and "/" not in zone:
        return zone.strip(), Path(path)
    return None, Path(spec)


def _parquet_as_csv(path: Path) -> io.StringIO:
    try:
        import pandas as pd

        df = pd.read_parquet(path)
    except ImportError:
        raise UserInputError(f"{path}: reading Parquet needs pyarrow: pip install 'carbonsched[parquet]'") from None
    except Exception as exc:  # pyarrow raises many types for bad files
        raise UserInputError(f"cannot read Parquet file {path}: {exc}") from None
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    buf.seek(0)
    return buf


def _read(path: Path, zone: str | None, signal: str) -> tuple[np.ndarray, datetime, dict]:
    """One zone of a history file, cached per file version: a long-running agent or server sees a
    file that changed, and a Parquet file is converted once per version, not per call."""
    return _read_version(path, zone, signal, file_version(path))


@lru_cache(maxsize=32)
def _read_version(path: Path, zone: str | None, signal: str, version: tuple) -> tuple[np.ndarray, datetime, dict]:
    if path.suffix.lower() == ".parquet":
        import tempfile

        with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False, encoding="utf-8") as tmp:
            tmp.write(_parquet_as_csv(path).getvalue())
        try:
            return read_history_csv(tmp.name, zone=zone, signal=signal)
        finally:
            Path(tmp.name).unlink(missing_ok=True)
    return read_history_csv(path, zone=zone, signal=signal)


class FileSource:
    """Hourly history files as an intensity source."""

    name = "file"

    def __init__(self, files: list[str], signal: str = "lca", clock=None):
        if signal not in SIGNALS:
            raise UserInputError(f"file signal must be 'lca' or 'direct', got {signal!r}")
        if not files:
            raise UserInputError("the file source needs at least one history file (--intensity-file [ZONE=]PATH)")
        self.specs = [parse_file_spec(f) for f in files]
        for _, path in self.specs:
            if not path.is_file():
                raise UserInputError(f"intensity history file {path} does not exist")
        self.file_signal = signal
        self.signal = SIGNALS[signal]

    def _series_for(self, zone: str) -> HourlySeries:
        for label, path in self.specs:
            if label is not None and label != zone:
                continue
            try:
                values, start, info = _read(path, label or zone, self.file_signal)  # an export's own zone is checked
            except UserInputError:
                if label is None:
                    continue  # a wide file without this zone's column
                raise
            if label is None and (info.get("format") == "simple" or info.get("zone") != zone):
                continue  # a single-series file needs ZONE=PATH; an export of another zone
            said = ()
            step = info.get("resolution_minutes", 60.0)
            if step < 59.5:
                said = (f"{path.name}: its {step:g}-minute values were averaged into UTC hours; plans and "
                        "backtests see hourly means, not the swings within an hour",)
            return HourlySeries(zone=zone, start=start, values_g_per_kwh=values, signal=self.signal,
                                source=f"file:{path.name}", kind="history", note=str(path), warnings=said)
        raise SourceNotFoundError(f"no intensity history file covers zone {zone}; add --intensity-file {zone}=PATH",
                                  source=self.name)

    def series(self, region: Region, start: datetime, hours: int) -> HourlySeries:
        full = self._series_for(region.grid_zone)
        return full.with_values(full.window(start, hours), start=start)

    def history(self, region: Region, end: datetime, hours: int) -> HourlySeries:
        full = self._series_for(region.grid_zone)
        begin = end - timedelta(hours=hours)
        return full.with_values(full.window(begin, hours), start=begin)
