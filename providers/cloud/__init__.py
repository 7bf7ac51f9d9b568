"""Where a job can run: sources of GPU offerings behind one small protocol.

An offerings source has a ``name`` and two methods::

    list_offerings() -> list[Offering]   # every GPU offering it knows
    describe() -> dict                   # provenance: source, as_of, note

``OFFERING_SOURCES`` is the explicit registry; a new provider is one module plus one entry (and one
in ``REFRESHERS`` for ``carbonsched catalog refresh``: a ``refresh(regions, progress=..., concurrency=...,
known_regions=...) -> cache.RefreshResult`` function). Sources may also carry ``warnings`` (a tuple of
strings the plan reports).
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


def _aws() -> OfferingSource:
    from .aws import AwsLiveSource

    return AwsLiveSource()


def _gcp() -> OfferingSource:
    from .gcp import GcpLiveSource

    return GcpLiveSource()


def _cached() -> OfferingSource:
    return choose_offering_source()


# "embedded": the shipped snapshot; "cache": what `carbonsched catalog refresh` stored (fresh providers),
# else the snapshot; "aws"/"gcp": fetched live on first use (network, credentials).
OFFERING_SOURCES: dict[str, Callable[[], OfferingSource]] = {"embedded": _embedded, "cache": _cached, "aws": _aws, "gcp": _gcp}
# the providers `carbonsched catalog refresh` can fetch: name -> "module:function" (lazy import)
REFRESHERS: dict[str, str] = {"aws": "carbonsched.providers.cloud.aws:refresh", "gcp": "carbonsched.providers.cloud.gcp:refresh"}


def choose_offering_source(settings=None, **kwargs) -> OfferingSource:
    """What plans use by default: the user catalog cache for providers refreshed within the maximum
    age (``CARBONSCHED_CATALOG_MAX_AGE_DAYS``, default 7), the embedded snapshot for the rest; its
    ``describe()`` says which, with the age, and its ``warnings`` (if any) belong in the plan."""
    from .cache import choose_offering_source as choose

    return choose(settings, **kwargs)


def get_offering_source(name: str = "embedded") -> OfferingSource:
    from carbonsched.errors import UnknownNameError

    try:
        factory = OFFERING_SOURCES[name]
    except KeyError:
        raise UnknownNameError(f"unknown offerings source {name!r}; known: {', '.join(OFFERING_SOURCES)}") from None
    return factory()
