"""Domain types of the risk engine: instruments, positions, the market snapshot, and their checks.

Invariants: kinds are `option`, `future`, `perp`, `spot`; options carry strike > 0, vol > 0 and a right;
options and futures are priced on the forward of their (underlying, days_to_expiry), perps on the perp
mark (spot when none is given) and spot on spot (RISK_SPEC.md section 1). The v2 market inputs
(docs/risk_v2.md) are optional and default to the neutral value: rate 0, fixed forward part 0,
confidences 1, stable price 1, so a market without them is an RRA-1 market. Validation raises
`InvalidInput` naming the field (NaN, negative rate, confidence outside [0, 1], fixed part not below the
forward). Nothing is persisted.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field

from risk.errors import InvalidInput
from risk.params import RiskParams

KINDS = ("option", "future", "perp", "spot")
RIGHTS = ("call", "put")
MAX_RATE = 2.0
"""Largest admissible rate (per year, continuously compounded): keeps every discount factor in range."""


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


Expiry = tuple[str, float]
"""(underlying, days_to_expiry): the key of a forward and of every per-expiry input."""


@dataclass(frozen=True)
class Market:
    """Spot per underlying, forwards keyed by (underlying, days_to_expiry), price per collateral asset, and
    the optional v2 inputs (missing entries take the neutral value)."""

    spot: Mapping[str, float]
    forwards: Mapping[Expiry, float] = field(default_factory=dict)
    asset_prices: Mapping[str, float] = field(default_factory=dict)
    rates: Mapping[Expiry, float] = field(default_factory=dict)  # per expiry, >= 0 (missing: 0)
    forward_fixed: Mapping[Expiry, float] = field(default_factory=dict)  # fixed part of the settlement average
    expiry_confidence: Mapping[Expiry, float] = field(default_factory=dict)  # min(forward, rate, vol feeds)
    spot_confidence: Mapping[str, float] = field(default_factory=dict)
    perp_marks: Mapping[str, float] = field(default_factory=dict)  # perp mark per underlying (missing: spot)
    perp_confidence: Mapping[str, float] = field(default_factory=dict)
    asset_confidence: Mapping[str, float] = field(default_factory=dict)
    stable_price: float = 1.0  # collateral values are divided by it; below the peg threshold it raises f_IM

    def get_rate(self, key: Expiry) -> float:
        return self.rates.get(key, 0.0)

    def get_forward_fixed(self, key: Expiry) -> float:
        return self.forward_fixed.get(key, 0.0)

    def get_expiry_confidence(self, key: Expiry) -> float:
        return self.expiry_confidence.get(key, 1.0)

    def get_spot_confidence(self, underlying: str) -> float:
        return self.spot_confidence.get(underlying, 1.0)

    def get_perp_confidence(self, underlying: str) -> float:
        return self.perp_confidence.get(underlying, 1.0)

    def get_asset_confidence(self, asset: str) -> float:
        return self.asset_confidence.get(asset, 1.0)


def is_option(instrument: Instrument) -> bool:
    return instrument.kind == "option"


def is_finite_number(x: object) -> bool:
    if type(x) is float or type(x) is int:  # fast path; bool is not int by type identity
        return math.isfinite(x)
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def is_dated(instrument: Instrument) -> bool:
    """Options and futures: priced on the forward of their expiry."""
    return instrument.kind in ("option", "future")


def get_expiry(instrument: Instrument) -> Expiry:
    return (instrument.underlying, float(instrument.days_to_expiry))


def get_reference_price(market: Market, instrument: Instrument) -> float:
    """F of the instrument: its forward (options, futures), the perp mark (perps) or spot."""
    if is_dated(instrument):
        key = get_expiry(instrument)
        if key not in market.forwards:
            raise InvalidInput("market.forwards", f"missing forward for {key[0]} at {key[1]:g} days")
        return market.forwards[key]
    if instrument.kind == "perp":
        return market.perp_marks.get(instrument.underlying, market.spot[instrument.underlying])
    return market.spot[instrument.underlying]


def get_fixed_part(market: Market, instrument: Instrument) -> float:
    """The part of F that no scenario moves (settlement average already fixed); 0 for undated instruments."""
    return market.get_forward_fixed(get_expiry(instrument)) if is_dated(instrument) else 0.0


def get_rate(market: Market, instrument: Instrument) -> float:
    return market.get_rate(get_expiry(instrument)) if is_dated(instrument) else 0.0


def _check_confidence(where: str, c: object) -> None:
    if not is_finite_number(c) or not 0.0 <= c <= 1.0:  # type: ignore[operator]
        raise InvalidInput(where, "confidence must be a finite number in [0, 1]")


def _validate_expiry_inputs(market: Market, params: RiskParams) -> None:
    for (u, days), r in market.rates.items():
        if not is_finite_number(r) or r < 0:
            raise InvalidInput(f"market.rates.{u}.{days:g}", "rate must be finite and >= 0")
        if r > MAX_RATE:
            raise InvalidInput(f"market.rates.{u}.{days:g}", f"rate above {MAX_RATE:g}")
    for (u, days), fixed in market.forward_fixed.items():
        forward = market.forwards.get((u, days))
        if forward is None:
            raise InvalidInput(f"market.forward_fixed.{u}.{days:g}", "no forward for this expiry")
        if not is_finite_number(fixed) or not 0.0 <= fixed < forward:
            raise InvalidInput(f"market.forward_fixed.{u}.{days:g}", "fixed part must be finite, >= 0 and below the forward")
    for (u, days), c in market.expiry_confidence.items():
        _check_confidence(f"market.expiry_confidence.{u}.{days:g}", c)
    for name in ("spot_confidence", "perp_confidence", "asset_confidence"):
        for key, c in getattr(market, name).items():
            _check_confidence(f"market.{name}.{key}", c)
    for u, mark in market.perp_marks.items():
        if u not in params.underlyings:
            raise InvalidInput(f"market.perp_marks.{u}", "unknown underlying")
        if not is_finite_number(mark) or mark <= 0:
            raise InvalidInput(f"market.perp_marks.{u}", "price must be finite and > 0")
    if not is_finite_number(market.stable_price) or market.stable_price <= 0:
        raise InvalidInput("market.stable_price", "price must be finite and > 0")


def get_pricing_market(market: Market, use_rates: int) -> Market:
    """The market the engines price with: `market` itself, or without its rates (every rate 0, as
    RISK_SPEC.md prices) when the parameter set's `use_rates` is 0."""
    return market if use_rates or not market.rates else dataclasses.replace(market, rates={})


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
    _validate_expiry_inputs(market, params)


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
    if is_dated(instrument):
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
