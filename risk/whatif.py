"""The what-if document of RISK_SPEC.md section 6: parse (edge converter) and simulate (single entry point
of `clearingd margin simulate` and of the gRPC what-if call).

`parse_whatif(doc)` turns the JSON object into validated domain types or raises `InvalidInput` naming
the field path (`positions[2].strike`, `market.spot.BTC`, `params.price_scan_range`, ...);
`simulate_whatif(whatif)` returns exactly the section 6 output object (JSON-ready: floats, ints, None,
lists and dicts with string keys). Invariants: no partial result on bad input; `params` null or absent
means RRA-1; amounts are USD. Nothing is persisted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from risk.errors import InvalidInput, InvalidParams
from risk.instruments import (
    KINDS,
    RIGHTS,
    Instrument,
    Market,
    Position,
    is_finite_number,
    validate_instrument,
    validate_market,
)
from risk.params import RRA1, RiskParams, params_with_overrides
from risk.reference import AccountRisk, compute_account_risk

MAX_POSITIONS = 10_000
"""Bound on the positions of one what-if document."""

_TOP_KEYS = {"market", "positions", "collateral", "params"}
_POSITION_KEYS = {"kind", "underlying", "days_to_expiry", "strike", "right", "vol", "quantity"}


@dataclass(frozen=True)
class WhatIf:
    market: Market
    positions: tuple[Position, ...]
    collateral: dict[str, float]
    params: RiskParams


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInput(where, "expected an object")
    return value


def _number(value: Any, where: str, positive: bool = False, non_negative: bool = False) -> float:
    if not is_finite_number(value):
        raise InvalidInput(where, "expected a finite number")
    x = float(value)
    if positive and x <= 0:
        raise InvalidInput(where, "must be > 0")
    if non_negative and x < 0:
        raise InvalidInput(where, "must be >= 0")
    return x


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInput(where, "expected a non-empty string")
    return value


def parse_market(doc: Any) -> Market:
    market = _object(doc, "market")
    unknown = set(market) - {"spot", "forwards", "asset_prices"}
    if unknown:
        raise InvalidInput(f"market.{sorted(unknown)[0]}", "unknown key")
    spot = {_name(u, "market.spot"): _number(p, f"market.spot.{u}", positive=True)
            for u, p in _object(market.get("spot"), "market.spot").items()}
    forwards: dict[tuple[str, float], float] = {}
    raw_forwards = market.get("forwards", [])
    if not isinstance(raw_forwards, list):
        raise InvalidInput("market.forwards", "expected a list")
    for i, entry in enumerate(raw_forwards):
        where = f"market.forwards[{i}]"
        f = _object(entry, where)
        key = (_name(f.get("underlying"), f"{where}.underlying"),
               _number(f.get("days_to_expiry"), f"{where}.days_to_expiry", non_negative=True))
        if key in forwards:
            raise InvalidInput(where, "duplicate forward")
        forwards[key] = _number(f.get("price"), f"{where}.price", positive=True)
    prices = {_name(a, "market.asset_prices"): _number(p, f"market.asset_prices.{a}", positive=True)
              for a, p in _object(market.get("asset_prices", {}), "market.asset_prices").items()}
    return Market(spot=spot, forwards=forwards, asset_prices=prices)


def parse_position(doc: Any, where: str, market: Market, params: RiskParams) -> Position:
    p = _object(doc, where)
    unknown = set(p) - _POSITION_KEYS
    if unknown:
        raise InvalidInput(f"{where}.{sorted(unknown)[0]}", "unknown key")
    kind = p.get("kind")
    if kind not in KINDS:
        raise InvalidInput(f"{where}.kind", f"unknown kind {kind!r}")
    underlying = _name(p.get("underlying"), f"{where}.underlying")
    days = strike = vol = 0.0
    right = ""
    if kind in ("option", "future"):
        days = _number(p.get("days_to_expiry"), f"{where}.days_to_expiry", non_negative=True)
    if kind == "option":
        strike = _number(p.get("strike"), f"{where}.strike", positive=True)
        vol = _number(p.get("vol"), f"{where}.vol", positive=True)
        right = p.get("right")  # type: ignore[assignment]
        if right not in RIGHTS:
            raise InvalidInput(f"{where}.right", f"expected call or put, got {right!r}")
    instrument = Instrument(underlying, kind, days, strike, right, vol)
    validate_instrument(instrument, market, params, where)
    return Position(instrument, _number(p.get("quantity"), f"{where}.quantity"))


def parse_whatif(doc: Any) -> WhatIf:
    """Validated what-if inputs, or `InvalidInput(field, reason)` for the first bad field."""
    top = _object(doc, "document")
    unknown = set(top) - _TOP_KEYS
    if unknown:
        raise InvalidInput(sorted(unknown)[0], "unknown key")
    raw_params = top.get("params")
    try:
        params = RRA1 if raw_params is None else params_with_overrides(RRA1, _object(raw_params, "params"))
    except InvalidParams as exc:
        field = exc.field if exc.field.startswith("params") else f"params.{exc.field}"
        raise InvalidInput(field, exc.reason) from exc
    market = parse_market(top.get("market"))
    validate_market(market, params)
    raw_positions = top.get("positions", [])
    if not isinstance(raw_positions, list):
        raise InvalidInput("positions", "expected a list")
    if len(raw_positions) > MAX_POSITIONS:
        raise InvalidInput("positions", f"more than {MAX_POSITIONS} positions")
    positions = tuple(parse_position(p, f"positions[{i}]", market, params) for i, p in enumerate(raw_positions))
    collateral: dict[str, float] = {}
    for asset, balance in _object(top.get("collateral", {}), "collateral").items():
        collateral[_name(asset, "collateral")] = _number(balance, f"collateral.{asset}", non_negative=True)
        if asset not in market.asset_prices:
            raise InvalidInput(f"collateral.{asset}", "unknown asset (no price in market.asset_prices)")
    return WhatIf(market, positions, collateral, params)


def render_result(r: AccountRisk) -> dict[str, Any]:
    """The section 6 output object of an `AccountRisk`."""
    return {
        "initial_margin": r.initial_margin,
        "maintenance_margin": r.maintenance_margin,
        "equity": r.equity,
        "free_collateral": r.free_collateral,
        "health": r.health,
        "liquidatable": r.liquidatable,
        "scan_loss_by_underlying": dict(r.scan_loss_by_underlying),
        "separate_scan_loss": r.separate_scan_loss,
        "joint_scan_loss": r.joint_scan_loss,
        "correlated_margin": r.correlated_margin,
        "short_option_minimum": r.short_option_minimum,
        "risk_array": list(r.risk_array),
        "worst_scenario": r.worst_scenario,
        "isolated_margins": list(r.isolated_margins),
        "capital_efficiency_ratio": r.capital_efficiency_ratio,
        "collateral_value": r.collateral_value,
        "collateral_value_after_haircut": r.collateral_value_after_haircut,
        "positions_mtm": r.positions_mtm,
        "greeks": {
            "delta_by_underlying": dict(r.greeks.delta_by_underlying),
            "dollar_delta": r.greeks.dollar_delta,
            "gamma": r.greeks.gamma,
            "vega": r.greeks.vega,
            "theta": r.greeks.theta,
        },
        "var99": r.var99,
        "es99": r.es99,
        "liquidation": [
            {"position": s.position, "penalty": s.penalty, "equity_after": s.equity_after,
             "initial_margin_after": s.initial_margin_after,
             "maintenance_margin_after": s.maintenance_margin_after}
            for s in r.liquidation
        ],
    }


def simulate_whatif(whatif: WhatIf) -> dict[str, Any]:
    """Section 6 output of a parsed what-if document."""
    result = compute_account_risk(list(whatif.positions), whatif.collateral, whatif.market, whatif.params)
    return render_result(result)
