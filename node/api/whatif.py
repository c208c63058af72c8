"""`SimulateMargin` glue: the what-if document (JSON text or the structured `WhatIf` message) ->
the risk module's `parse_whatif` -> `simulate_whatif`, exactly what `clearingd margin simulate`
calls, so both give the same answer.

Decimal strings of the structured form become JSON numbers (integers stay integers); an
unparsable one is a field violation naming its path. Risk `InvalidInput`/`InvalidParams` become
field violations with the risk module's field path. Bounded: at most `MAX_POSITIONS` positions.
Nothing is persisted.
"""

from __future__ import annotations

import json
import math
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from node.api.convert import OutOfRange, to_int64
from node.api.errors import ApiError, FieldViolation
from node.pb.clearing.api.v1 import api_pb2
from risk.errors import RiskError

MAX_POSITIONS = 1_000
MICRO = Decimal(1_000_000)


class WhatIfRejected(ApiError):
    """The what-if document is invalid; `violations` name the fields."""

    def __init__(self, violations: list[FieldViolation]) -> None:
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in violations))
        self.violations = violations


class WhatIfUnavailable(ApiError):
    """The risk module's what-if entry points are missing from this build."""


def _number(text: str, path: str, out: dict[str, Any], key: str, bad: list[FieldViolation]) -> None:
    if text == "":
        return
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        bad.append(FieldViolation(path, f"not a decimal number: {text[:40]!r}"))
        return
    if not value.is_finite():
        bad.append(FieldViolation(path, f"not a finite number: {text[:40]!r}"))
        return
    is_integer = value == value.to_integral_value() and "." not in text and "e" not in text.lower()
    number = int(value) if is_integer else float(value)
    if isinstance(number, float) and not math.isfinite(number):
        bad.append(FieldViolation(path, f"outside the float64 range: {text[:40]!r}"))
        return
    out[key] = number


def whatif_doc_from_pb(msg: api_pb2.WhatIf) -> dict[str, Any]:
    """The JSON document equivalent to a structured what-if (raises `WhatIfRejected`)."""
    bad: list[FieldViolation] = []
    market: dict[str, Any] = {"spot": {}, "forwards": [], "asset_prices": {}}
    for u, v in sorted(msg.market.spot.items()):
        _number(v, f"whatif.market.spot.{u}", market["spot"], u, bad)
    for u, v in sorted(msg.market.asset_prices.items()):
        _number(v, f"whatif.market.asset_prices.{u}", market["asset_prices"], u, bad)
    for i, fwd in enumerate(msg.market.forwards):
        item: dict[str, Any] = {"underlying": fwd.underlying}
        _number(fwd.days_to_expiry, f"whatif.market.forwards[{i}].days_to_expiry", item, "days_to_expiry", bad)
        _number(fwd.price, f"whatif.market.forwards[{i}].price", item, "price", bad)
        market["forwards"].append(item)
    positions = []
    for i, pos in enumerate(msg.positions):
        item = {"kind": pos.kind, "underlying": pos.underlying}
        if pos.right:
            item["right"] = pos.right
        for key in ("days_to_expiry", "strike", "vol", "quantity"):
            _number(getattr(pos, key), f"whatif.positions[{i}].{key}", item, key, bad)
        positions.append(item)
    collateral: dict[str, Any] = {}
    for a, v in sorted(msg.collateral.items()):
        _number(v, f"whatif.collateral.{a}", collateral, a, bad)
    params = None
    if msg.params_json:
        try:
            params = json.loads(msg.params_json)
        except ValueError as exc:
            bad.append(FieldViolation("whatif.params_json", f"not JSON: {exc}"))
    if bad:
        raise WhatIfRejected(bad)
    return {"market": market, "positions": positions, "collateral": collateral, "params": params}


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_request_doc(request: api_pb2.SimulateMarginRequest) -> dict[str, Any]:
    """The what-if document of a request (raises `WhatIfRejected`)."""
    which = request.WhichOneof("document")
    if which is None:
        raise WhatIfRejected([FieldViolation("document", "set whatif_json or whatif")])
    if which == "whatif":
        doc = whatif_doc_from_pb(request.whatif)
    else:
        try:
            doc = json.loads(request.whatif_json, parse_constant=_refuse_constant)
        except ValueError as exc:
            raise WhatIfRejected([FieldViolation("whatif_json", f"not JSON: {exc}")]) from exc
        if not isinstance(doc, dict):
            raise WhatIfRejected([FieldViolation("whatif_json", "must be a JSON object")])
    positions = doc.get("positions")
    if isinstance(positions, list) and len(positions) > MAX_POSITIONS:
        raise WhatIfRejected([FieldViolation("positions", f"at most {MAX_POSITIONS} positions")])
    return doc


def compute_simulation(doc: dict[str, Any]) -> dict[str, Any]:
    """`simulate_whatif(parse_whatif(doc))` (raises `WhatIfRejected` on a risk input error)."""
    try:
        from risk.whatif import parse_whatif, simulate_whatif
    except ImportError as exc:
        raise WhatIfUnavailable("the what-if engine (risk.whatif) is not installed in this build") from exc
    try:
        return simulate_whatif(parse_whatif(doc))
    except RiskError as exc:
        prefix = "params." if type(exc).__name__ == "InvalidParams" and not exc.field.startswith("params") else ""
        raise WhatIfRejected([FieldViolation(prefix + exc.field, exc.reason)]) from exc


def to_micro_usd(value: Any, name: str) -> int:
    """USD JSON number -> int64 micro-USD, half-even; non-numbers give 0; `OutOfRange` beyond int64."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    if isinstance(value, float) and not math.isfinite(value):
        raise OutOfRange(f"{name}: {value} is not finite")
    micro = int((Decimal(repr(value)) * MICRO).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    return to_int64(micro, name)


def format_result_json(result: dict[str, Any]) -> str:
    """The output object exactly as `clearingd margin simulate --json` prints it (same bytes)."""
    try:
        return json.dumps(result, indent=2, allow_nan=False)
    except ValueError as exc:
        raise OutOfRange(f"result: not finite ({exc})") from exc


def result_to_pb(result: dict[str, Any]) -> api_pb2.SimulateMarginResponse:
    worst = result.get("worst_scenario")
    return api_pb2.SimulateMarginResponse(
        result_json=format_result_json(result),
        initial_margin_micro_usd=to_micro_usd(result.get("initial_margin"), "initial_margin"),
        maintenance_margin_micro_usd=to_micro_usd(result.get("maintenance_margin"), "maintenance_margin"),
        equity_micro_usd=to_micro_usd(result.get("equity"), "equity"),
        free_collateral_micro_usd=to_micro_usd(result.get("free_collateral"), "free_collateral"),
        liquidatable=bool(result.get("liquidatable")),
        worst_scenario=worst if isinstance(worst, int) and not isinstance(worst, bool) else -1,
    )
