"""Where a job can run and how it gets there: offering sources and launchers, each behind one
small protocol with an explicit registry here (implementations are imported only when chosen).

Launchers (the protocol in ``launcher.py``): ``LAUNCHERS`` maps a name to a factory
``(settings, **kw) -> Launcher``; ``get_launcher(name, settings)``.

An offerings source has a ``name`` and two methods::

    list_offerings() -> list[Offering]   # every GPU offering it knows
    describe() -> dict                   # provenance: source, as_of, note

``OFFERING_SOURCES`` is the explicit registry; a new provider is one module plus one entry (and one
in ``REFRESHERS`` for ``carbonsched catalog refresh``: a ``refresh(regions, progress=..., concurrency=...,
known_regions=...) -> cache.RefreshResult`` function). Sources may also carry ``warnings`` (a tuple of
strings the plan reports).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

from carbonsched.errors import UnknownNameError
from carbonsched.models import Offering

if TYPE_CHECKING:  # the registry below imports each launcher only when it is chosen
    from carbonsched.providers.cloud.launcher import Launcher


class OfferingSource(Protocol):
    name: str

    def list_offerings(self) -> list[Offering]: ...

    def describe(self) -> dict: ...


def _embedded() -> OfferingSource:
    from carbonsched.providers.cloud.catalog import EmbeddedCatalog

    return EmbeddedCatalog()


def _aws() -> OfferingSource:
    from carbonsched.providers.cloud.aws import AwsLiveSource

    return AwsLiveSource()


def _gcp() -> OfferingSource:
    from carbonsched.providers.cloud.gcp import GcpLiveSource

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
    from carbonsched.providers.cloud.cache import choose_offering_source as choose

    return choose(settings, **kwargs)


def get_offering_source(name: str = "embedded") -> OfferingSource:
    try:
        factory = OFFERING_SOURCES[name]
    except KeyError:
        raise UnknownNameError(f"unknown offerings source {name!r}; known: {', '.join(OFFERING_SOURCES)}") from None
    return factory()


def _local(settings, **kw) -> Launcher:
    from carbonsched.providers.cloud.local import LocalLauncher

    return LocalLauncher(Path(settings.home), region_id=getattr(settings, "local_region", None), **kw)


def _aws(settings, **kw) -> Launcher:
    from carbonsched.providers.cloud.aws_launch import DEFAULT_AMI_PARAMETER, Ec2Launcher

    return Ec2Launcher(ami_parameter=os.environ.get("CARBONSCHED_AWS_AMI_PARAMETER", DEFAULT_AMI_PARAMETER),
                       ami_id=os.environ.get("CARBONSCHED_AWS_AMI_ID") or None, **kw)


def _gcp(settings, **kw) -> Launcher:
    from carbonsched.providers.cloud.gcp_launch import GceLauncher

    return GceLauncher(**kw)


def _skypilot(settings, **kw) -> Launcher:
    from carbonsched.providers.cloud.skypilot import IDLE_MINUTES, SkyPilotLauncher  # sky itself loads on first use

    return SkyPilotLauncher(idle_minutes=int(os.environ.get("CARBONSCHED_SKYPILOT_IDLE_MINUTES") or IDLE_MINUTES), **kw)


LAUNCHERS: dict[str, Callable[..., Launcher]] = {"local": _local, "aws": _aws, "gcp": _gcp, "skypilot": _skypilot}


def get_launcher(name: str, settings, **kw) -> Launcher:
    try:
        factory = LAUNCHERS[name]
    except KeyError:
        raise UnknownNameError(f"unknown launcher {name!r}; known: {', '.join(LAUNCHERS)}") from None
    return factory(settings, **kw)
