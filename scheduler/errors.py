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
