"""Grid carbon-intensity sources behind one small protocol.

A forecast source has a ``name`` and::

    forecast(region: Region, start: datetime, hours: int) -> Forecast

``start`` is a UTC hour boundary; the result covers ``hours`` hourly values. ``GRID_SOURCES`` is
the explicit registry. Offline, the embedded typical-day profiles answer for every region.
"""
from __future__ import annotations

from datetime import datetime
from typing import Callable, Protocol

from carbonsched.models import Forecast, Region


class ForecastSource(Protocol):
    name: str

    def forecast(self, region: Region, start: datetime, hours: int) -> Forecast: ...


def _profile() -> ForecastSource:
    from .profile import ProfileSource

    return ProfileSource()


GRID_SOURCES: dict[str, Callable[[], ForecastSource]] = {"profile": _profile}


def get_forecast_source(name: str = "profile") -> ForecastSource:
    from carbonsched.errors import UnknownNameError

    try:
        factory = GRID_SOURCES[name]
    except KeyError:
        raise UnknownNameError(f"unknown intensity source {name!r}; known: {', '.join(GRID_SOURCES)}") from None
    return factory()
