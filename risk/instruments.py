"""Domain types of the risk engine: instruments, positions, the market snapshot, and their checks.

Invariants: kinds are `option`, `future`, `perp`, `spot`; options carry strike > 0, vol > 0 and a right;
options and futures are priced on the forward of their (underlying, days_to_expiry), perps and spot on
spot (RISK_SPEC.md section 1). Validation raises `InvalidInput` naming the field. Nothing is persisted.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field

from risk.errors import InvalidInput
from risk.params import RiskParams

KINDS = ("option", "future", "perp", "spot")
RIGHTS = ("call", "put")


@dataclass(frozen=True)
class Instrument:
    """One tradable contract; `strike`, `right`, `vol` matter for options only, `days_to_expiry` for
    options and futures (perps and spot ignore it)."""

    underlying: str
    kind: str
    days_to_expiry: float = 0.0
    strike: float = 0.0
    right: str = ""
    vol: float = 0.0


@dataclass(frozen=True)
class Position:
    instrument: Instrument
    quantity: float  # signed, + long, in units of the underlying


@dataclass(frozen=True)
class Market:
    """Spot per underlying, forwards keyed by (underlying, days_to_expiry), USD price per collateral asset."""

    spot: Mapping[str, float]
    forwards: Mapping[tuple[str, float], float] = field(default_factory=dict)
    asset_prices: Mapping[str, float] = field(default_factory=dict)


def is_option(instrument: Instrument) -> bool:
    return instrument.kind == "option"


def is_finite_number(x: object) -> bool:
    if type(x) is float or type(x) is int:  # fast path; bool is not int by type identity
        return math.isfinite(x)
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def get_reference_price(market: Market, instrument: Instrument) -> float:
    """F of the instrument: its forward (options, futures) or spot (perps, spot)."""
    if instrument.kind in ("option", "future"):
        key = (instrument.underlying, float(instrument.days_to_expiry))
        if key not in market.forwards:
            raise InvalidInput("market.forwards", f"missing forward for {key[0]} at {key[1]:g} days")
        return market.forwards[key]
    return market.spot[instrument.underlying]


def validate_market(market: Market, params: RiskParams) -> None:
    for u, s in market.spot.items():
        if not is_finite_number(s) or s <= 0:
            raise InvalidInput(f"market.spot.{u}", "price must be finite and > 0")
    for (u, days), f in market.forwards.items():
        if u not in params.underlyings:
            raise InvalidInput("market.forwards", f"unknown underlying {u!r}")
        if not is_finite_number(days) or days < 0:
            raise InvalidInput("market.forwards", "days_to_expiry must be finite and >= 0")
        if not is_finite_number(f) or f <= 0:
            raise InvalidInput("market.forwards", f"price of {u} at {days:g} days must be finite and > 0")
    for a, p in market.asset_prices.items():
        if not is_finite_number(p) or p <= 0:
            raise InvalidInput(f"market.asset_prices.{a}", "price must be finite and > 0")


def validate_instrument(instrument: Instrument, market: Market, params: RiskParams, where: str) -> None:
    """Raise `InvalidInput` (field prefixed by `where`) unless the instrument can be priced."""
    if instrument.kind not in KINDS:
        raise InvalidInput(f"{where}.kind", f"unknown kind {instrument.kind!r}")
    if instrument.underlying not in params.underlyings:
        raise InvalidInput(f"{where}.underlying", f"unknown underlying {instrument.underlying!r}")
    spot = market.spot.get(instrument.underlying)
    if spot is None:
        raise InvalidInput(f"{where}.underlying", f"no spot price for {instrument.underlying!r}")
    if not is_finite_number(spot) or spot <= 0:
        raise InvalidInput(f"market.spot.{instrument.underlying}", "price must be finite and > 0")
    if instrument.kind in ("option", "future"):
        days = instrument.days_to_expiry
        if not is_finite_number(days) or days < 0:
            raise InvalidInput(f"{where}.days_to_expiry", "must be finite and >= 0")
        try:
            forward = get_reference_price(market, instrument)
        except InvalidInput as exc:
            raise InvalidInput(f"{where}.days_to_expiry", exc.reason) from exc
        if not is_finite_number(forward) or forward <= 0:
            raise InvalidInput("market.forwards", f"forward of {instrument.underlying} at {days:g} days "
                               "must be finite and > 0")
    if instrument.kind == "option":
        if not is_finite_number(instrument.strike) or instrument.strike <= 0:
            raise InvalidInput(f"{where}.strike", "must be finite and > 0")
        if not is_finite_number(instrument.vol) or instrument.vol <= 0:
            raise InvalidInput(f"{where}.vol", "must be finite and > 0")
        if instrument.right not in RIGHTS:
            raise InvalidInput(f"{where}.right", f"expected call or put, got {instrument.right!r}")
