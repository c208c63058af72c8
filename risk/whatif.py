"""The what-if document of RISK_SPEC.md section 6: parse (edge converter) and simulate (single entry point
of `clearingd margin simulate` and of the gRPC what-if call).

`parse_whatif(doc)` turns the JSON object into validated domain types or raises `InvalidInput` naming
the field path (`positions[2].strike`, `market.spot.BTC`, `params.price_scan_range`, ...);
`simulate_whatif(whatif)` returns exactly the section 6 output object (JSON-ready: floats, ints, None,
lists and dicts with string keys); `load_whatif_json(text, field)` is the bounded text -> document step
(`risk.bounded_json` with `WHATIF_JSON_LIMITS`) of every entry point that receives JSON text.

Bounds (the document comes from anyone who can reach a node's public API): the text's size, nesting
and number tokens (`WHATIF_JSON_LIMITS`); at most `MAX_POSITIONS` positions, `MAX_FORWARDS` forwards,
`MAX_KEYS` entries per name -> value object; names of at most `MAX_NAME_CHARS`; every number inside
its `*_BOUND` (prices, strikes, vols, days, quantities, balances), so the engine stays in float64
range; the `params` override inside the ranges of `risk.params.validate_params`.
Invariants: no partial result on bad input; `params` null or absent means RRA-1; amounts are USD.
Nothing is persisted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from risk.bounded_json import JsonLimits, load_bounded_json
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
from risk.params import MAX_NAME_CHARS, RRA1, Bound, RiskParams, params_with_overrides
from risk.reference import AccountRisk, compute_account_risk

WHATIF_JSON_LIMITS = JsonLimits(max_bytes=256 * 1024, max_depth=8, max_number_chars=40)
"""Bounds of a what-if document's JSON text (the deepest valid document nests 5 levels)."""
MAX_POSITIONS = 200
"""Positions of one document: the LQ-1 plan costs O(n^3) scenario sums (200 liquidatable short options:
~7 s of CPU with RRA-1; with the largest admissible grid more, which the API's timeout cuts)."""
MAX_FORWARDS = 256
MAX_KEYS = 64
"""Entries of `market.spot`, `market.asset_prices` and `collateral`."""
PRICE_BOUND = Bound(1e-12, 1e12)  # spot, forward and asset prices, strikes (USD)
VOL_BOUND = Bound(0.0, 10.0, lo_open=True)
DAYS_BOUND = Bound(0.0, 36_500.0)
QUANTITY_BOUND = Bound(-1e12, 1e12)
BALANCE_BOUND = Bound(0.0, 1e15)

_TOP_KEYS = {"market", "positions", "collateral", "params"}
_POSITION_KEYS = {"kind", "underlying", "days_to_expiry", "strike", "right", "vol", "quantity"}


@dataclass(frozen=True)
class WhatIf:
    market: Market
    positions: tuple[Position, ...]
    collateral: dict[str, float]
    params: RiskParams


def load_whatif_json(text: str | bytes, field: str) -> dict[str, Any]:
    """The what-if document of JSON `text` (bounded: `WHATIF_JSON_LIMITS`); `InvalidInput(field, ...)`."""
    doc = load_bounded_json(text, field, WHATIF_JSON_LIMITS)
    if not isinstance(doc, dict):
        raise InvalidInput(field, "must be a JSON object")
    return doc


def _object(value: Any, where: str, max_keys: int | None = None) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInput(where, "expected an object")
    if max_keys is not None and len(value) > max_keys:
        raise InvalidInput(where, f"more than {max_keys} entries")
    return value


def _list(value: Any, where: str, max_items: int) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidInput(where, "expected a list")
    if len(value) > max_items:
        raise InvalidInput(where, f"more than {max_items} entries")
    return value


def _number(value: Any, where: str, bound: Bound) -> float:
    if isinstance(value, int) and not isinstance(value, bool) and not bound.is_inside(value):
        shown = value if value.bit_length() <= 64 else f"an integer of {value.bit_length()} bits"
        raise InvalidInput(where, f"{shown} outside {bound.describe()}")  # before float(): may be huge
    if not is_finite_number(value):
        raise InvalidInput(where, "expected a finite number")
    x = float(value)
    if not bound.is_inside(x):
        raise InvalidInput(where, f"{x!r} outside {bound.describe()}")
    return x


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_CHARS:
        raise InvalidInput(where, f"expected a name of 1..{MAX_NAME_CHARS} characters")
    return value


def _key_path(where: str, key: Any) -> str:
    return f"{where}.{str(key)[:MAX_NAME_CHARS + 8]}"


def _prices(doc: Any, where: str) -> dict[str, float]:
    return {_name(k, _key_path(where, k)): _number(v, _key_path(where, k), PRICE_BOUND)
            for k, v in _object(doc, where, MAX_KEYS).items()}


def parse_market(doc: Any) -> Market:
    market = _object(doc, "market")
    unknown = set(market) - {"spot", "forwards", "asset_prices"}
    if unknown:
        raise InvalidInput(_key_path("market", sorted(unknown)[0]), "unknown key")
    spot = _prices(market.get("spot"), "market.spot")
    forwards: dict[tuple[str, float], float] = {}
    for i, entry in enumerate(_list(market.get("forwards", []), "market.forwards", MAX_FORWARDS)):
        where = f"market.forwards[{i}]"
        f = _object(entry, where)
        key = (_name(f.get("underlying"), f"{where}.underlying"),
               _number(f.get("days_to_expiry"), f"{where}.days_to_expiry", DAYS_BOUND))
        if key in forwards:
            raise InvalidInput(where, "duplicate forward")
        forwards[key] = _number(f.get("price"), f"{where}.price", PRICE_BOUND)
    prices = _prices(market.get("asset_prices", {}), "market.asset_prices")
    return Market(spot=spot, forwards=forwards, asset_prices=prices)


def parse_position(doc: Any, where: str, market: Market, params: RiskParams) -> Position:
    p = _object(doc, where)
    unknown = set(p) - _POSITION_KEYS
    if unknown:
        raise InvalidInput(_key_path(where, sorted(unknown)[0]), "unknown key")
    kind = p.get("kind")
    if kind not in KINDS:
        raise InvalidInput(f"{where}.kind", f"unknown kind {kind!r}")
    underlying = _name(p.get("underlying"), f"{where}.underlying")
    days = strike = vol = 0.0
    right = ""
    if kind in ("option", "future"):
        days = _number(p.get("days_to_expiry"), f"{where}.days_to_expiry", DAYS_BOUND)
    if kind == "option":
        strike = _number(p.get("strike"), f"{where}.strike", PRICE_BOUND)
        vol = _number(p.get("vol"), f"{where}.vol", VOL_BOUND)
        right = p.get("right")  # type: ignore[assignment]
        if right not in RIGHTS:
            raise InvalidInput(f"{where}.right", f"expected call or put, got {right!r}")
    instrument = Instrument(underlying, kind, days, strike, right, vol)
    validate_instrument(instrument, market, params, where)
    return Position(instrument, _number(p.get("quantity"), f"{where}.quantity", QUANTITY_BOUND))


def parse_whatif(doc: Any) -> WhatIf:
    """Validated what-if inputs, or `InvalidInput(field, reason)` for the first bad field."""
    top = _object(doc, "document")
    unknown = set(top) - _TOP_KEYS
    if unknown:
        raise InvalidInput(str(sorted(unknown, key=str)[0])[:MAX_NAME_CHARS + 8], "unknown key")
    raw_params = top.get("params")
    try:
        params = RRA1 if raw_params is None else params_with_overrides(RRA1, _object(raw_params, "params"))
    except InvalidParams as exc:
        field = exc.field if exc.field.startswith("params") else f"params.{exc.field}"
        raise InvalidInput(field, exc.reason) from exc
    market = parse_market(top.get("market"))
    validate_market(market, params)
    raw_positions = _list(top.get("positions", []), "positions", MAX_POSITIONS)
    positions = tuple(parse_position(p, f"positions[{i}]", market, params) for i, p in enumerate(raw_positions))
    collateral: dict[str, float] = {}
    for asset, balance in _object(top.get("collateral", {}), "collateral", MAX_KEYS).items():
        collateral[_name(asset, _key_path("collateral", asset))] = _number(balance, f"collateral.{asset}",
                                                                           BALANCE_BOUND)
        if asset not in market.asset_prices:
            raise InvalidInput(f"collateral.{asset}", "unknown asset (no price in market.asset_prices)")
    return WhatIf(market, positions, collateral, params)


def render_result(r: AccountRisk) -> dict[str, Any]:
    """The section 6 output object of an `AccountRisk`."""
    req = r.requirement
    return {
        "initial_margin": r.initial_margin,
        "maintenance_margin": r.maintenance_margin,
        "equity": r.equity,
        "free_collateral": r.free_collateral,
        "health": r.health,
        "liquidatable": r.liquidatable,
        "scan_loss_by_underlying": dict(req.scan_loss_by_underlying),
        "separate_scan_loss": req.separate_scan_loss,
        "joint_scan_loss": req.joint_scan_loss,
        "correlated_margin": req.correlated_margin,
        "short_option_minimum": req.short_option_minimum,
        "risk_array": list(req.risk_array),
        "worst_scenario": req.worst_scenario,
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
