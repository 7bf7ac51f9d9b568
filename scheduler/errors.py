"""One error hierarchy for carbonsched.

Every error message says what to do next. The CLI maps ``exit_code`` to the process exit
status: 2 for problems with the user's input (spec, flags, constraints), 1 otherwise.
"""
from __future__ import annotations


class CarbonschedError(Exception):
    """Root of all carbonsched errors."""

    exit_code = 1


class UserInputError(CarbonschedError):
    """The user's input (job file, flags, policy) is wrong; exit code 2."""

    exit_code = 2


class JobSpecError(UserInputError):
    """A job specification is malformed or inconsistent."""


class UnknownNameError(UserInputError):
    """A GPU, region or other name is not known; the message suggests close names."""


class InfeasibleError(UserInputError):
    """No candidate placement satisfies the constraints.

    ``eliminated`` maps each constraint name to the number of candidates it rejected.
    """

    def __init__(self, message: str, eliminated: dict[str, int] | None = None):
        super().__init__(message)
        self.eliminated = dict(eliminated or {})


class ConfigError(UserInputError):
    """The settings (config file, environment) are invalid."""


class DataError(CarbonschedError):
    """An embedded or cached dataset is missing or malformed (reinstall or rebuild it)."""


class GridSourceError(CarbonschedError):
    """A carbon-intensity source failed. The planner falls back (cache, forecaster, profile) and says so."""

    def __init__(self, message: str, source: str = ""):
        super().__init__(message)
        self.source = source


class SourceAuthError(GridSourceError):
    """Missing or rejected credentials (set the token named in the message)."""


class SourceQuotaError(GridSourceError):
    """Rate limit or plan quota exhausted (wait, or upgrade the plan)."""


class SourceNotFoundError(GridSourceError):
    """The zone/region is unknown to the source or not covered by the plan."""


class SourcePayloadError(GridSourceError):
    """The source answered with something that does not follow its documented schema."""


class SourceUnavailableError(GridSourceError):
    """Network failure, timeout or 5xx after retries."""


def did_you_mean(name: str, choices, n: int = 3, cutoff: float = 0.5) -> str:
    """``"; did you mean A, B?"`` for the closest of ``choices`` (case and punctuation forgiven), or ""."""
    import difflib
    import re

    choices = list(choices)
    close = difflib.get_close_matches(name, choices, n=n, cutoff=cutoff)
    if not close:
        norm = lambda s: re.sub(r"[^a-z0-9]", "", s.lower())  # noqa: E731
        normed = {norm(c): c for c in choices}
        close = [normed[c] for c in difflib.get_close_matches(norm(name), list(normed), n=n, cutoff=cutoff)]
    return f"; did you mean {', '.join(close)}?" if close else ""


class LaunchError(CarbonschedError):
    """A launcher could not start the job; ``code`` is the provider's error code when there is one."""

    def __init__(self, message: str, code: str = "", retryable: bool = False):
        super().__init__(message)
        self.code = code
        self.retryable = retryable


class CapacityError(LaunchError):
    """No capacity or quota for this placement (e.g. InsufficientInstanceCapacity, VcpuLimitExceeded,
    ZONE_RESOURCE_POOL_EXHAUSTED, QUOTA_EXCEEDED): the submitter fails over to the next placement."""


class TrackError(CarbonschedError):
    """Tracking a command failed before it could run (not found: exit 127, not executable: 126)."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


class CloudCatalogError(CarbonschedError):
    """A cloud provider's offerings could not be fetched (``catalog refresh``); plans keep using the
    embedded snapshot (or the last refreshed cache). ``provider`` is ``aws``/``gcp``; ``permission``
    names the missing IAM permission when that is the cause."""

    def __init__(self, message: str, provider: str = "", permission: str = ""):
        super().__init__(message)
        self.provider = provider
        self.permission = permission


class CloudAuthError(CloudCatalogError):
    """No cloud credentials, or they lack a permission: the message names the variable or permission."""


class PolicyFileError(UserInputError):
    """A policy file (policy.toml) is malformed, missing, or contradicts the job it is applied to."""


class PolicyViolationError(PolicyFileError):
    """A job, or every plan for it, breaks an organisation's policy: refused (exit 2), nothing stored.

    ``rules`` names the policy keys that fail (``residency``, ``constraints.max_usd_per_hour``, ...);
    the message says, for each, what would satisfy it."""

    def __init__(self, message: str, rules: tuple[str, ...] | list[str] = ()):
        super().__init__(message)
        self.rules = tuple(rules)
