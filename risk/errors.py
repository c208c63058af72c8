"""Errors of the risk package: one base, one leaf per failure class, each naming the offending field.

Invariants: every error carries `field` (a dotted/indexed path such as `positions[2].strike` or
`price_scan_range.BTC`) and `reason`; `str(error)` is `"<field>: <reason>"`. Nothing is persisted.
"""

from __future__ import annotations


class RiskError(Exception):
    """Base of every error raised by the risk package."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class InvalidParams(RiskError):
    """A risk parameter set (or an override of one) is malformed or out of its admissible range."""


class InvalidInput(RiskError):
    """A market, position or collateral input is malformed (unknown kind, NaN, missing forward, ...)."""


class QuantizationError(RiskError):
    """An amount cannot be quantized to integer micro-USD (not finite or outside int64)."""
