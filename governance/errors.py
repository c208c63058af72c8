"""Errors of the governance package: one base, one leaf per failure, each with a one-line docstring.

Refusals of proposals and votes are NOT raised: they are data (a status with a reason) in the derived
`GovernanceState`. Errors here are for malformed inputs handed to the package by its callers.
"""

from __future__ import annotations


class GovernanceError(Exception):
    """Base of every error raised by `governance`."""


class InvalidGovernanceInput(GovernanceError):
    """A record read from the chain (or built by a caller) is malformed; names the offending field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class InvalidValidatorSetChange(GovernanceError):
    """A validator-set change payload does not decode or does not apply to its base set."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class IllegalTransition(GovernanceError):
    """A proposal lifecycle event is not allowed in the proposal's current status."""


class NoActiveParams(GovernanceError):
    """No parameter version is active at the requested epoch (negative epoch or empty schedule)."""
