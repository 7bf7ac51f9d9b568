"""Grid carbon-intensity sources behind one small protocol.

A forecast source has a ``name`` and::

    forecast(region: Region, start: datetime, hours: int) -> Forecast

``start`` is a UTC hour boundary; the result covers ``hours`` hourly values and says where they
came from (``Forecast.segments``, ``Forecast.warnings``). Live sources are wrapped in a
``ChainedSource`` (cache -> forecaster on history -> embedded profile), so a plan always gets
an answer and says how it got it.

``GRID_SOURCES`` is the explicit registry of live sources; ``build_forecast_source`` picks one
from the settings (``intensity_source``): ``auto`` uses Electricity Maps when
``ELECTRICITYMAPS_TOKEN`` is set, else WattTime when ``WATTTIME_USERNAME``/``WATTTIME_PASSWORD``
are, else the embedded profiles.
"""
from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Callable, Mapping, Protocol

from carbonsched.models import Forecast, Region
from carbonsched.errors import UnknownNameError
from carbonsched.providers.grid.cache import SeriesCache
from carbonsched.providers.grid.chain import ChainedSource
from carbonsched.settings import resolve_settings


class ForecastSource(Protocol):
    name: str

    def forecast(self, region: Region, start: datetime, hours: int) -> Forecast: ...


def _electricitymaps(**kw):
    from carbonsched.providers.grid.electricitymaps import ElectricityMapsSource

    return ElectricityMapsSource(**kw)


def _watttime(**kw):
    from carbonsched.providers.grid.watttime import WattTimeSource

    return WattTimeSource(**kw)


def _ukci(**kw):
    from carbonsched.providers.grid.ukci import UkCarbonIntensitySource

    return UkCarbonIntensitySource(**kw)


def _file(**kw):
    from carbonsched.providers.grid.file import FileSource

    return FileSource(**kw)


GRID_SOURCES: dict[str, Callable[..., object]] = {
    "electricitymaps": _electricitymaps,
    "watttime": _watttime,
    "uk-carbon-intensity": _ukci,
    "file": _file,  # needs files=[...] ("[ZONE=]PATH") and signal ("lca" | "direct")
}
CHOICES = ("auto", "profile", *GRID_SOURCES)


def auto_source_name(env: Mapping[str, str]) -> str:
    if env.get("ELECTRICITYMAPS_TOKEN"):
        return "electricitymaps"
    if (env.get("WATTTIME_USERNAME") or env.get("WATTTIME_USER")) and env.get("WATTTIME_PASSWORD"):
        return "watttime"
    return "profile"


def build_forecast_source(settings=None, *, name: str | None = None, clock: Callable[[], datetime] | None = None,
                          env: Mapping[str, str] | None = None, live=None, files: list[str] | None = None,
                          file_signal: str = "lca") -> ForecastSource:
    """The forecast source for ``name`` (default: the settings'), wrapped with cache and fallbacks.

    ``live`` injects a ready live source (tests, custom sources); ``clock`` gives real time for
    cache freshness (default: the system clock).
    """
    settings = settings or resolve_settings()
    env = os.environ if env is None else env
    clock = clock or (lambda: datetime.now(timezone.utc))
    asked, name = name, name or settings.intensity_source
    if name not in CHOICES:
        raise UnknownNameError(f"unknown intensity source {name!r}; choose one of {', '.join(CHOICES)}")
    if name == "auto" and not files:
        name = auto_source_name(env)
    if files and (name in ("auto", "file") or asked is None):  # files given win over the settings' source
        name = "file"
    elif files:  # another source named with them: the files would be silently unused
        raise UnknownNameError(f"--intensity-file reads history files: use it with --intensity-source file (or "
                               f"auto), not {name}")
    elif name == "file" and not files:
        raise UnknownNameError("the file intensity source needs history files (--intensity-file [ZONE=]PATH)")
    if live is None and name == "file":
        live = GRID_SOURCES["file"](files=list(files), signal=file_signal)
    elif live is None and name == "electricitymaps":
        live = GRID_SOURCES[name](clock=clock, emission_factor_type=settings.electricitymaps_emission_factor)
    elif live is None and name != "profile":
        live = GRID_SOURCES[name](clock=clock)
    # file histories are already on disk: caching them would only copy them
    cache_root = settings.cache_dir or (settings.home / "cache" if settings.home else None)
    cache = SeriesCache(cache_root / "grid") if live is not None and name != "file" and cache_root else None
    return ChainedSource(live, cache, clock=clock, ttl_hours=settings.cache_ttl_hours)
