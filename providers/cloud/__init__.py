"""Where a job can run: sources of GPU offerings behind one small protocol.

An offerings source has a ``name`` and two methods::

    list_offerings() -> list[Offering]   # every GPU offering it knows
    describe() -> dict                   # provenance: source, as_of, note

``OFFERING_SOURCES`` is the explicit registry; a new provider is one module plus one entry.
"""
from __future__ import annotations

from typing import Callable, Protocol

from carbonsched.models import Offering


class OfferingSource(Protocol):
    name: str

    def list_offerings(self) -> list[Offering]: ...

    def describe(self) -> dict: ...


def _embedded() -> OfferingSource:
    from .catalog import EmbeddedCatalog

    return EmbeddedCatalog()


OFFERING_SOURCES: dict[str, Callable[[], OfferingSource]] = {"embedded": _embedded}


def get_offering_source(name: str = "embedded") -> OfferingSource:
    from carbonsched.errors import UnknownNameError

    try:
        factory = OFFERING_SOURCES[name]
    except KeyError:
        raise UnknownNameError(f"unknown offerings source {name!r}; known: {', '.join(OFFERING_SOURCES)}") from None
    return factory()
