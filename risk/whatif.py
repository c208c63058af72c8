"""The what-if document (RISK_SPEC.md section 6, version 1; docs/risk_v2.md section 7, version 2): parse
(edge converter) and simulate (single entry point of `clearingd margin simulate` and of the gRPC what-if
call).

`parse_whatif(doc)` turns the JSON object into validated domain types or raises `InvalidInput` naming
the field path (`positions[2].strike`, `market.spot.BTC`, `params.scenarios[3].shock`, ...);
`simulate_whatif(whatif)` returns the output object (JSON-ready: floats, ints, None, lists and dicts with
string keys): exactly RISK_SPEC.md section 6's keys for a version-1 document, those plus the v2 keys
(`V2_OUTPUT_KEYS`: each scenario's P&L by name, the basis loss and the contingency breakdown, ...) for
a version-2 one; `load_whatif_json(text, field)` is the bounded text -> document step
(`risk.bounded_json` with `WHATIF_JSON_LIMITS`) of every entry point that receives JSON text.

A document without `version` (or `"version": 1`) is version 1: the v2 keys are refused as unknown and
`params` overrides RRA-1. A version-2 document may name its base set (`"params": {"base": "PM2", ...}`,
default RRA-1) and carries the v2 inputs (`risk.whatif_parse`) and a signed `cash`.
Bounds (the document comes from anyone who can reach a node's public API): the text's size, nesting
and number tokens (`WHATIF_JSON_LIMITS`); at most `MAX_POSITIONS` positions, `MAX_FORWARDS` forwards,
`MAX_KEYS` entries per name -> value object; names of at most `MAX_NAME_CHARS`; every number inside
its bound (`risk.whatif_parse`), so the engine stays in float64 range; the `params` override inside the
ranges of `risk.params.validate_params`.
Invariants: no partial result on bad input; amounts are USD (version 2: units of the stable).
Nothing is persisted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from risk.bounded_json import JsonLimits, load_bounded_json
from risk.errors import InvalidInput, InvalidParams
from risk.instruments import Market, Position, validate_market
from risk.params import MAX_NAME_CHARS, PM2, RRA1, RiskParams, params_with_overrides
from risk.reference import AccountRisk, compute_account_risk
from risk.whatif_parse import (
    BALANCE_BOUND,
    CASH_BOUND,
    DAYS_BOUND,
    MAX_FORWARDS,
    MAX_KEYS,
    MAX_POSITIONS,
    PRICE_BOUND,
    QUANTITY_BOUND,
    VOL_BOUND,
    get_list,
    get_name,
    get_number,
    get_object,
    key_path,
    parse_market,
    parse_position,
)

__all__ = ["BALANCE_BOUND", "BASE_PARAMS", "DAYS_BOUND", "MAX_FORWARDS", "MAX_KEYS", "MAX_NAME_CHARS",
           "MAX_POSITIONS", "PRICE_BOUND", "QUANTITY_BOUND", "V2_OUTPUT_KEYS", "VOL_BOUND", "WHATIF_JSON_LIMITS",
           "WhatIf", "load_whatif_json", "parse_whatif", "render_result", "simulate_whatif"]

WHATIF_JSON_LIMITS = JsonLimits(max_bytes=256 * 1024, max_depth=8, max_number_chars=40)
"""Bounds of a what-if document's JSON text (the deepest valid document nests 5 levels)."""
BASE_PARAMS: dict[str, RiskParams] = {"RRA-1": RRA1, "PM2": PM2}
"""Parameter sets a version-2 document may name as the base of its `params` overrides."""
V2_OUTPUT_KEYS = ("requirement", "im_factor", "basis_loss", "contingencies", "scenario_pnl", "worst_scenario_name",
                  "cash")

_TOP_KEYS = {"market", "positions", "collateral", "params"}
_TOP_KEYS_V2 = {"version", "cash"}


@dataclass(frozen=True)
class WhatIf:
    market: Market
    positions: tuple[Position, ...]
    collateral: dict[str, float]
    params: RiskParams
    version: int = 1
    cash: float = 0.0  # version 2: cash plus the perps' unrealised P&L and funding


def load_whatif_json(text: str | bytes, field: str) -> dict[str, Any]:
    """The what-if document of JSON `text` (bounded: `WHATIF_JSON_LIMITS`); `InvalidInput(field, ...)`."""
    doc = load_bounded_json(text, field, WHATIF_JSON_LIMITS)
    if not isinstance(doc, dict):
        raise InvalidInput(field, "must be a JSON object")
    return doc


def _version(top: Mapping[str, Any]) -> int:
    version = top.get("version", 1)
    if isinstance(version, bool) or version not in (1, 2):
        raise InvalidInput("version", "expected 1 or 2")
    return int(version)


def parse_params(raw: Any, version: int) -> RiskParams:
    """RRA-1 with the document's overrides; version 2 may name another base (`BASE_PARAMS`)."""
    try:
        if raw is None:
            return RRA1
        overrides = dict(get_object(raw, "params"))
        base = RRA1
        if version == 2 and "base" in overrides:
            name = overrides.pop("base")
            if name not in BASE_PARAMS:
                raise InvalidParams("base", f"expected one of {', '.join(BASE_PARAMS)}")
            base = BASE_PARAMS[name]
        return params_with_overrides(base, overrides)
    except InvalidParams as exc:
        field = exc.field if exc.field.startswith("params") else f"params.{exc.field}"
        raise InvalidInput(field, exc.reason) from exc


def parse_whatif(doc: Any) -> WhatIf:
    """Validated what-if inputs, or `InvalidInput(field, reason)` for the first bad field."""
    top = get_object(doc, "document")
    version = _version(top)
    unknown = set(top) - _TOP_KEYS - {"version"} - (_TOP_KEYS_V2 if version == 2 else set())
    if unknown:
        raise InvalidInput(str(sorted(unknown, key=str)[0])[:MAX_NAME_CHARS + 8], "unknown key")
    params = parse_params(top.get("params"), version)
    parsed = parse_market(top.get("market"), version)
    validate_market(parsed.market, params)
    raw_positions = get_list(top.get("positions", []), "positions", MAX_POSITIONS)
    positions, cash = [], get_number(top.get("cash", 0.0), "cash", CASH_BOUND)
    for i, p in enumerate(raw_positions):
        position, extra = parse_position(p, f"positions[{i}]", parsed, params, version)
        positions.append(position)
        cash += extra
    collateral: dict[str, float] = {}
    for asset, balance in get_object(top.get("collateral", {}), "collateral", MAX_KEYS).items():
        collateral[get_name(asset, key_path("collateral", asset))] = get_number(balance, f"collateral.{asset}",
                                                                                BALANCE_BOUND)
        if asset not in parsed.market.asset_prices:
            raise InvalidInput(f"collateral.{asset}", "unknown asset (no price in market.asset_prices)")
    return WhatIf(parsed.market, tuple(positions), collateral, params, version, cash)


def render_result(r: AccountRisk, params: RiskParams | None = None) -> dict[str, Any]:
    """The output object of an `AccountRisk`: RISK_SPEC.md section 6's keys, and with `params` (a
    version-2 document) the `V2_OUTPUT_KEYS`."""
    req = r.requirement
    out: dict[str, object] = {
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
    if params is None:
        return out
    cont = req.contingencies
    names = [s.name for s in params.scenarios]
    worst = req.worst_scenario
    out.update({
        "requirement": req.requirement,
        "im_factor": req.im_factor,
        "basis_loss": req.basis_loss,
        "contingencies": {**dataclasses.asdict(cont), "oracle": cont.oracle, "maintenance": cont.maintenance,
                          "initial": cont.initial},
        "scenario_pnl": dict(zip(names, req.risk_array, strict=True)),
        "worst_scenario_name": None if worst is None else ("basis" if worst == len(names) else names[worst]),
        "cash": r.cash,
    })
    return out


def simulate_whatif(whatif: WhatIf) -> dict[str, Any]:
    """The output object of a parsed what-if document."""
    result = compute_account_risk(list(whatif.positions), whatif.collateral, whatif.market, whatif.params,
                                  cash=whatif.cash)
    return render_result(result, whatif.params if whatif.version == 2 else None)
