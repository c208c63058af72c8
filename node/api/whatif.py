"""`SimulateMargin` glue: the what-if document (JSON text or the structured `WhatIf` message) ->
the risk module's bounded `load_whatif_json` / `parse_whatif` -> `simulate_whatif`, exactly what
`clearingd margin simulate` calls, so both give the same answer and the same refusals.

The serving process parses nothing of a document: `simulate_request` checks the request's size
and hands the text (or the serialized message) to a sandbox worker (`node.api.sandbox`), which runs
`simulate_payload` and returns a tagged outcome; the sandbox's refusals become gRPC statuses
(busy: RESOURCE_EXHAUSTED with RetryInfo, timeout: DEADLINE_EXCEEDED, memory: RESOURCE_EXHAUSTED,
crash: INTERNAL, stopping: UNAVAILABLE).

Bounds (besides those of `risk.whatif`): the structured form has the same counts as the JSON form
(`MAX_POSITIONS`, `MAX_FORWARDS`, `MAX_KEYS`), decimal strings of at most `max_number_chars`, and its
`params_json` goes through the same bounded loader. A structured message with `version` 2 carries the
version-2 inputs (docs/risk_v2.md section 7); empty strings are absent keys. The response of a version-2
document adds each scenario's P&L and the contingencies by name (micro-USD). Decimal strings become JSON numbers (integers
stay integers); a bad one is a field violation naming its path. Risk `InvalidInput`/`InvalidParams`
become field violations with the risk module's field path. Nothing is persisted.
"""

from __future__ import annotations

import json
import logging
import math
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

import grpc

from node.api.convert import OutOfRange, to_int64
from node.api.errors import (
    ApiError,
    FieldViolation,
    RpcAbort,
    invalid_argument,
    resource_exhausted,
)
from node.api.sandbox import (
    Sandbox,
    SandboxBusy,
    SandboxError,
    SandboxOutOfMemory,
    SandboxStopped,
    SandboxTimeout,
)
from node.pb.clearing.api.v1 import api_pb2
from risk.bounded_json import load_bounded_json
from risk.errors import RiskError
from risk.whatif import MAX_FORWARDS, MAX_KEYS, MAX_POSITIONS, WHATIF_JSON_LIMITS

LOG = logging.getLogger(__name__)
MICRO = Decimal(1_000_000)
BUSY_RETRY_S = 1.0


class WhatIfRejected(ApiError):
    """The what-if document is invalid; `violations` name the fields."""

    def __init__(self, violations: list[FieldViolation]) -> None:
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in violations))
        self.violations = violations


class WhatIfUnavailable(ApiError):
    """The risk module's what-if entry points are missing from this build."""


# ---------------------------------------------------------------------------------------------
# documents (run in the sandbox worker)


def _number(text: str, path: str, out: dict[str, Any], key: str, bad: list[FieldViolation]) -> None:
    if text == "":
        return
    if len(text) > WHATIF_JSON_LIMITS.max_number_chars:
        bad.append(FieldViolation(path, f"number of {len(text)} characters "
                                        f"(at most {WHATIF_JSON_LIMITS.max_number_chars})"))
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


def _check_counts(msg: api_pb2.WhatIf) -> list[FieldViolation]:
    m = msg.market
    counts = [("whatif.positions", len(msg.positions), MAX_POSITIONS),
              ("whatif.market.forwards", len(m.forwards), MAX_FORWARDS),
              ("whatif.market.spot", len(m.spot), MAX_KEYS),
              ("whatif.market.asset_prices", len(m.asset_prices), MAX_KEYS),
              ("whatif.market.spot_confidence", len(m.spot_confidence), MAX_KEYS),
              ("whatif.market.perps", len(m.perps), MAX_KEYS),
              ("whatif.market.asset_confidence", len(m.asset_confidence), MAX_KEYS),
              ("whatif.collateral", len(msg.collateral), MAX_KEYS)]
    return [FieldViolation(field, f"more than {bound} entries") for field, n, bound in counts if n > bound]


def _numbers(values: Any, where: str, bad: list[FieldViolation]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in sorted(values.items()):
        _number(v, f"{where}.{k[:40]}", out, k, bad)
    return out


def _forward_doc(i: int, fwd: api_pb2.WhatIfForward, bad: list[FieldViolation]) -> dict[str, Any]:
    where = f"whatif.market.forwards[{i}]"
    item: dict[str, Any] = {"underlying": fwd.underlying}
    for key in ("days_to_expiry", "price", "fixed", "rate", "confidence"):
        _number(getattr(fwd, key), f"{where}.{key}", item, key, bad)
    if fwd.HasField("svi"):
        item["svi"] = {}
        for key in ("a", "b", "rho", "m", "sigma", "forward", "tau"):
            _number(getattr(fwd.svi, key), f"{where}.svi.{key}", item["svi"], key, bad)
    return item


def _market_doc(m: api_pb2.WhatIfMarket, bad: list[FieldViolation]) -> dict[str, Any]:
    market: dict[str, Any] = {"spot": _numbers(m.spot, "whatif.market.spot", bad),
                              "forwards": [_forward_doc(i, f, bad) for i, f in enumerate(m.forwards)],
                              "asset_prices": _numbers(m.asset_prices, "whatif.market.asset_prices", bad)}
    for key in ("spot_confidence", "asset_confidence"):
        if getattr(m, key):
            market[key] = _numbers(getattr(m, key), f"whatif.market.{key}", bad)
    if m.perps:
        market["perps"] = {}
        for u, perp in sorted(m.perps.items()):
            market["perps"][u] = {}
            for key in ("mark", "confidence"):
                _number(getattr(perp, key), f"whatif.market.perps.{u[:40]}.{key}", market["perps"][u], key, bad)
    _number(m.stable_price, "whatif.market.stable_price", market, "stable_price", bad)
    return market


def whatif_doc_from_pb(msg: api_pb2.WhatIf) -> dict[str, Any]:
    """The JSON document equivalent to a structured what-if (raises `WhatIfRejected`)."""
    bad = _check_counts(msg)
    if bad:
        raise WhatIfRejected(bad)
    market = _market_doc(msg.market, bad)
    positions = []
    for i, pos in enumerate(msg.positions):
        item = {"kind": pos.kind, "underlying": pos.underlying}
        if pos.right:
            item["right"] = pos.right
        for key in ("days_to_expiry", "strike", "vol", "quantity", "unrealised_pnl", "funding"):
            _number(getattr(pos, key), f"whatif.positions[{i}].{key}", item, key, bad)
        positions.append(item)
    collateral = _numbers(msg.collateral, "whatif.collateral", bad)
    params = None
    if msg.params_json:
        try:
            params = load_bounded_json(msg.params_json, "whatif.params_json", WHATIF_JSON_LIMITS)
        except RiskError as exc:
            bad.append(FieldViolation(exc.field, exc.reason))
    if bad:
        raise WhatIfRejected(bad)
    doc = {"market": market, "positions": positions, "collateral": collateral, "params": params}
    if msg.version:
        doc["version"] = msg.version
    _number(msg.cash, "whatif.cash", doc, "cash", bad)
    if bad:
        raise WhatIfRejected(bad)
    return doc


def load_payload(kind: str, payload: str | bytes) -> dict[str, Any]:
    """The document of a request payload (`get_request_payload`), bounded; raises `WhatIfRejected`."""
    if kind == "whatif":
        try:
            msg = api_pb2.WhatIf.FromString(payload)  # type: ignore[arg-type]
        except Exception as exc:  # protobuf's DecodeError; the bytes come from our own serializer
            raise WhatIfRejected([FieldViolation("whatif", "not a WhatIf message")]) from exc
        return whatif_doc_from_pb(msg)
    from risk.whatif import load_whatif_json

    try:
        return load_whatif_json(payload, "whatif_json")
    except RiskError as exc:
        raise WhatIfRejected([FieldViolation(exc.field, exc.reason)]) from exc


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


def simulate_payload(kind: str, payload: str | bytes) -> tuple[str, Any]:
    """The sandbox task: `("ok", SimulateMarginResponse bytes)`, `("invalid", [(field, description)])`,
    `("out_of_range", message)` or `("unavailable", message)`."""
    try:
        return "ok", result_to_pb(compute_simulation(load_payload(kind, payload))).SerializeToString()
    except WhatIfRejected as exc:
        return "invalid", [(v.field, v.description) for v in exc.violations]
    except OutOfRange as exc:
        return "out_of_range", str(exc)
    except ArithmeticError as exc:  # the document's bounds keep the engine in range; a safety net
        return "out_of_range", f"result: the computation left the float64 range ({type(exc).__name__})"
    except WhatIfUnavailable as exc:
        return "unavailable", str(exc)


# ---------------------------------------------------------------------------------------------
# the RPC (serving process)


def get_request_payload(request: api_pb2.SimulateMarginRequest) -> tuple[str, str | bytes]:
    """(kind, payload) for the sandbox, after the one check that needs no parsing: the size."""
    limit = WHATIF_JSON_LIMITS.max_bytes
    which = request.WhichOneof("document")
    if which is None:
        raise WhatIfRejected([FieldViolation("document", "set whatif_json or whatif")])
    if which == "whatif_json":
        text = request.whatif_json
        if len(text) > limit or len(text.encode("utf-8")) > limit:
            raise WhatIfRejected([FieldViolation("whatif_json", f"larger than {limit} bytes")])
        return "whatif_json", text
    if request.whatif.ByteSize() > limit:
        raise WhatIfRejected([FieldViolation("whatif", f"larger than {limit} bytes")])
    return "whatif", request.whatif.SerializeToString()


def response_of(outcome: tuple[str, Any]) -> api_pb2.SimulateMarginResponse:
    """The RPC's answer to a sandbox outcome (raises the `RpcAbort` of a refusal)."""
    tag, value = outcome
    if tag == "ok":
        return api_pb2.SimulateMarginResponse.FromString(value)
    if tag == "invalid":
        raise invalid_argument([FieldViolation(field, description) for field, description in value])
    if tag == "out_of_range":
        raise RpcAbort(grpc.StatusCode.OUT_OF_RANGE, value)
    if tag == "unavailable":
        raise RpcAbort(grpc.StatusCode.UNIMPLEMENTED, value)
    raise RpcAbort(grpc.StatusCode.INTERNAL, "internal error")


def simulate_request(sandbox: Sandbox, request: api_pb2.SimulateMarginRequest,
                     timeout_s: float | None) -> api_pb2.SimulateMarginResponse:
    """`SimulateMargin`: the document computed in a sandbox worker within `timeout_s` (the call's
    remaining deadline, None: the sandbox's own limit); refusals raise `RpcAbort`."""
    try:
        kind, payload = get_request_payload(request)
    except WhatIfRejected as exc:
        raise invalid_argument(exc.violations) from exc
    try:
        outcome = sandbox.run(kind, payload, timeout_s=timeout_s)
    except SandboxBusy as exc:
        raise resource_exhausted(BUSY_RETRY_S, f"what-if: {exc}") from exc
    except SandboxTimeout as exc:
        raise RpcAbort(grpc.StatusCode.DEADLINE_EXCEEDED, f"what-if: {exc}") from exc
    except SandboxOutOfMemory as exc:
        raise RpcAbort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"what-if: {exc}") from exc
    except SandboxStopped as exc:
        raise RpcAbort(grpc.StatusCode.UNAVAILABLE, f"what-if: {exc}") from exc
    except SandboxError as exc:  # crashed or raised: a bug or a limit we did not foresee
        LOG.warning("what-if worker failed", extra={"error": str(exc)})
        raise RpcAbort(grpc.StatusCode.INTERNAL, "what-if: the worker failed") from exc
    return response_of(outcome)


# ---------------------------------------------------------------------------------------------
# results


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


def _amounts(values: dict[str, Any], name: str) -> list[api_pb2.WhatIfAmount]:
    return [api_pb2.WhatIfAmount(name=k, amount_micro_usd=to_micro_usd(v, f"{name}.{k}")) for k, v in values.items()]


def result_to_pb(result: dict[str, Any]) -> api_pb2.SimulateMarginResponse:
    worst = result.get("worst_scenario")
    contingencies = {"basis_loss": result["basis_loss"], **result["contingencies"]} if "contingencies" in result else {}
    return api_pb2.SimulateMarginResponse(
        scenario_pnl=_amounts(result.get("scenario_pnl", {}), "scenario_pnl"),
        contingencies=_amounts(contingencies, "contingencies"),
        result_json=format_result_json(result),
        initial_margin_micro_usd=to_micro_usd(result.get("initial_margin"), "initial_margin"),
        maintenance_margin_micro_usd=to_micro_usd(result.get("maintenance_margin"), "maintenance_margin"),
        equity_micro_usd=to_micro_usd(result.get("equity"), "equity"),
        free_collateral_micro_usd=to_micro_usd(result.get("free_collateral"), "free_collateral"),
        liquidatable=bool(result.get("liquidatable")),
        worst_scenario=worst if isinstance(worst, int) and not isinstance(worst, bool) else -1,
    )
