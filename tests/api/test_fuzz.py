"""Fuzzing the public API: random bytes on every method of the live server, random field values in
well-formed requests of every RPC of `clearing.api.v1.MarginService`, hostile what-if documents
(200 KB of nesting, huge numbers, NaN literals, long strings, wrong types, every `params` field at
and beyond its bound), and the request decoders directly. The server answers each call with a
status (never crashes, never INTERNAL for a decodable request), the store is unchanged, and the
server still reports SERVING and answers at the end.

The serving process here has `web3` imported, so its recursion limit is py_ecc's 100,000: the
interpreter state in which one deeply nested document used to overflow the C stack. Rate limiting
is off (sequential calls would otherwise meet it; it is tested in `test_margin_service`)."""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import web3  # noqa: F401 - py_ecc (through eth_account) raises the recursion limit, as in a validator
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.api import whatif
from node.api.convert import parse_account
from node.api.errors import get_field_violations
from node.api.service import ServiceLimits
from node.pb.clearing.api.v1 import api_pb2
from risk.whatif import MAX_POSITIONS, WHATIF_JSON_LIMITS
from tests.api.conftest import EPOCHS, ApiEnv, start_env, stop_env
from tests.api.test_simulate import DOC, structured
from tests.risk.test_params import CONTEXT, EDGES, override_of

METHODS = {
    "GetMargin": api_pb2.GetMarginRequest, "GetSignedState": api_pb2.GetSignedStateRequest,
    "SimulateMargin": api_pb2.SimulateMarginRequest, "ListValidators": api_pb2.ListValidatorsRequest,
    "GetParameters": api_pb2.GetParametersRequest, "ListProposals": api_pb2.ListProposalsRequest,
}
ALLOWED = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
           grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.DEADLINE_EXCEEDED}
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FEW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiEnv]:
    assert sys.getrecursionlimit() >= 100_000  # the validator's interpreter state (see the docstring)
    e = start_env(Path(tmp_path_factory.mktemp("fuzz")), limits=ServiceLimits(rate_limit_rps=0))
    yield e
    stop_env(e)


def store_fingerprint(env: ApiEnv) -> tuple:
    latest = env.store.get_latest_signed_state()
    return (latest, env.store.get_last_signed(), env.store.list_evidence(),
            [len(env.store.get_leaves(e)) for e in EPOCHS])


def call_raw(env: ApiEnv, method: str, payload: bytes) -> grpc.StatusCode:
    stub = env.channel.unary_unary(f"/clearing.api.v1.MarginService/{method}")
    try:
        stub(payload, timeout=30)
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


def is_decodable(message_type: type, payload: bytes) -> bool:
    try:
        message_type.FromString(payload)
    except Exception:
        return False
    return True


def answer(env: ApiEnv, method: str, request: Any) -> tuple[grpc.StatusCode, Any]:
    """(status, response or error) of one unary call; a refusal must be allowed and well-formed."""
    try:
        return grpc.StatusCode.OK, getattr(env.stub, method)(request, timeout=30)
    except grpc.RpcError as err:
        assert err.code() in ALLOWED, (err.code(), err.details())
        if err.code() == grpc.StatusCode.INVALID_ARGUMENT:
            violations = get_field_violations(err)
            assert violations and all(v.field and v.description for v in violations), err.details()
        return err.code(), err


def simulate(env: ApiEnv, **document: Any) -> tuple[grpc.StatusCode, Any]:
    return answer(env, "SimulateMargin", api_pb2.SimulateMarginRequest(**document))


# ---------------------------------------------------------------------------------------------
# every method: random bytes and random field values


@FUZZ
@given(method=st.sampled_from(sorted(METHODS)), payload=st.binary(max_size=512))
def test_random_bytes_never_crash_or_change_state(env: ApiEnv, method: str, payload: bytes) -> None:
    before = store_fingerprint(env)
    code = call_raw(env, method, payload)
    if is_decodable(METHODS[method], payload):
        assert code == grpc.StatusCode.OK or code in ALLOWED, code
    else:
        assert code == grpc.StatusCode.INTERNAL  # grpcio: "Exception deserializing request!"
    assert store_fingerprint(env) == before


@FUZZ
@given(payload=st.binary(max_size=256))
def test_random_bytes_on_stream_end_with_a_status(env: ApiEnv, payload: bytes) -> None:
    stub = env.channel.unary_stream("/clearing.api.v1.MarginService/StreamMarginUpdates")
    with pytest.raises(grpc.RpcError) as err:
        for _ in stub(payload, timeout=0.3):
            pass
    decodable = is_decodable(api_pb2.StreamMarginUpdatesRequest, payload)
    assert err.value.code() in (ALLOWED if decodable else {grpc.StatusCode.INTERNAL})


uint64 = st.integers(0, 2**64 - 1)


@FUZZ
@given(account=st.text(max_size=60), epoch=st.one_of(st.none(), uint64))
def test_random_get_margin_fields(env: ApiEnv, account: str, epoch: int | None) -> None:
    req = api_pb2.GetMarginRequest(account=account)
    if epoch is not None:
        req.epoch = epoch
    code, _ = answer(env, "GetMargin", req)
    if code == grpc.StatusCode.OK:
        assert parse_account(account) is not None


@FUZZ
@given(epoch=st.one_of(st.none(), uint64))
def test_random_get_signed_state_and_parameters_fields(env: ApiEnv, epoch: int | None) -> None:
    for method, message in (("GetSignedState", api_pb2.GetSignedStateRequest),
                            ("GetParameters", api_pb2.GetParametersRequest)):
        code, resp = answer(env, method, message() if epoch is None else message(epoch=epoch))
        if code == grpc.StatusCode.OK and method == "GetSignedState":
            assert resp.state.epoch in EPOCHS


@FUZZ
@given(page_size=st.integers(0, 2**32 - 1), from_id=uint64)
def test_random_list_proposals_and_validators_fields(env: ApiEnv, page_size: int, from_id: int) -> None:
    code, resp = answer(env, "ListProposals", api_pb2.ListProposalsRequest(page_size=page_size, from_id=from_id))
    if code == grpc.StatusCode.OK:
        assert len(resp.proposals) <= (page_size or 100)
    assert answer(env, "ListValidators", api_pb2.ListValidatorsRequest())[0] == grpc.StatusCode.OK


@FEW
@given(accounts=st.lists(st.one_of(st.text(max_size=44), st.sampled_from(["0x" + "11" * 20, "0x" + "00" * 20])),
                         max_size=120),
       send_current=st.booleans())
def test_random_stream_fields_end_with_a_status(env: ApiEnv, accounts: list[str], send_current: bool) -> None:
    stream = env.stub.StreamMarginUpdates(api_pb2.StreamMarginUpdatesRequest(accounts=accounts,
                                                                             send_current=send_current), timeout=0.3)
    with pytest.raises(grpc.RpcError) as err:
        for _ in stream:
            pass
    assert err.value.code() in ALLOWED


# ---------------------------------------------------------------------------------------------
# SimulateMargin: hostile documents

WRONG_TYPES = [None, True, 0, -1, 1.5, "1", "", [], {}, [1], {"a": 1}, "x" * 1000]
DOC_PATHS = [("market",), ("market", "spot"), ("market", "spot", "BTC"), ("market", "forwards"),
             ("market", "forwards", 0), ("market", "forwards", 0, "price"), ("market", "asset_prices"),
             ("positions",), ("positions", 0), ("positions", 0, "kind"), ("positions", 0, "strike"),
             ("positions", 0, "vol"), ("positions", 0, "quantity"), ("positions", 0, "right"),
             ("positions", 1, "days_to_expiry"), ("collateral",), ("collateral", "USDC"), ("params",)]


def with_value(path: tuple, value: Any) -> dict:
    doc = copy.deepcopy(DOC)
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


def with_token(path: tuple, token: str) -> str:
    """The document as JSON text with the raw `token` (any text, valid JSON or not) at `path`."""
    return json.dumps(with_value(path, "__TOKEN__")).replace('"__TOKEN__"', token)


MAX_BYTES = WHATIF_JSON_LIMITS.max_bytes
USDC, QTY, STRIKE = ("collateral", "USDC"), ("positions", 0, "quantity"), ("positions", 0, "strike")
HOSTILE_TEXTS = {
    "200KB of [": "[" * 200_000,
    "200KB of {a:": '{"a":' * 40_000,
    "nested params": with_token(("params",), "[" * 100_000 + "]" * 100_000),
    "nested in a position": with_token(("positions", 0, "x"), '{"a":' * 30_000 + "1" + "}" * 30_000),
    "unterminated nesting": '{"market": ' + "[" * 150_000,
    "escaped quotes": '"' + '\\"' * 100_000,
    "1e400": with_token(USDC, "1e400"),
    "-1e400": with_token(QTY, "-1e400"),
    "10**10000": with_token(USDC, "1" + "0" * 10_000),
    "-0": with_token(USDC, "-0"),
    "-0.0": with_token(QTY, "-0.0"),
    "NaN": with_token(USDC, "NaN"),
    "Infinity": with_token(USDC, "Infinity"),
    "-Infinity": with_token(STRIKE, "-Infinity"),
    "long string": with_token(("market", "spot"), json.dumps({"B" * 150_000: 1.0})),
    "long key": json.dumps({**DOC, "x" * 200_000: 1}),
    "too large": " " * (MAX_BYTES + 1) + "{}",
    "too many positions": json.dumps({**DOC, "positions": [DOC["positions"][2]] * (MAX_POSITIONS + 1)}),
    "huge es_samples": json.dumps({**DOC, "params": {"es_samples": 10**18}}),
    "huge price_steps": json.dumps({**DOC, "params": {"price_steps": 2**62, "extreme_k": 2**62}}),
    "not an object": "[1, 2, 3]",
    "empty": "",
    "not JSON": "{'market': 1}",
    "lone surrogate escape": with_token(("market",), '"\\ud800"'),
}
assert all("__TOKEN__" not in t for t in HOSTILE_TEXTS.values())


@pytest.mark.parametrize("name", sorted(HOSTILE_TEXTS))
def test_hostile_json_documents_are_refused_by_name(env: ApiEnv, name: str) -> None:
    code, result = simulate(env, whatif_json=HOSTILE_TEXTS[name])
    if name in ("-0", "-0.0"):  # harmless numbers: computed
        assert code == grpc.StatusCode.OK and result.initial_margin_micro_usd > 0
        return
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, name)
    fields = [v.field for v in get_field_violations(result)]
    assert fields and all(f.startswith(("whatif_json", "params.", "positions", "market", "x", "document"))
                          for f in fields), fields


@FUZZ
@given(path=st.sampled_from(DOC_PATHS),
       value=st.one_of(st.sampled_from(WRONG_TYPES), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                       st.text(max_size=50)))
def test_wrong_types_and_values_anywhere_in_the_document(env: ApiEnv, path: tuple, value: Any) -> None:
    code, result = simulate(env, whatif_json=json.dumps(with_value(path, value)))
    if code == grpc.StatusCode.INVALID_ARGUMENT:  # named by a path inside the document
        sections = ("market", "positions", "collateral", "params", "whatif_json")
        assert all(v.field.startswith(sections) for v in get_field_violations(result))


@pytest.mark.parametrize(("name", "value", "ok"), EDGES, ids=[f"{n}={v!r}" for n, v, _ in EDGES])
def test_every_params_field_at_and_beyond_its_bound(env: ApiEnv, name: str, value: object, ok: bool) -> None:
    override, field = override_of(name, value)
    doc = {**DOC, "params": {**CONTEXT.get(name, {}), **override}}
    code, result = simulate(env, whatif_json=json.dumps(doc))
    if ok:
        assert code == grpc.StatusCode.OK, result
        return
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in get_field_violations(result)] == [f"params.{field}"]


decimal_text = st.one_of(st.text(max_size=12), st.decimals(allow_nan=True).map(str), st.integers().map(str),
                         st.sampled_from(["1e400", "-0", "NaN", "Infinity", "9" * 5000, "1e-999999999", "1E+999999"]))


@FUZZ
@given(spot=st.dictionaries(st.text(max_size=5), decimal_text, max_size=3),
       positions=st.lists(st.builds(api_pb2.WhatIfPosition, kind=st.text(max_size=8), underlying=st.text(max_size=4),
                                    days_to_expiry=decimal_text, strike=decimal_text, right=st.text(max_size=4),
                                    vol=decimal_text, quantity=decimal_text), max_size=4),
       collateral=st.dictionaries(st.text(max_size=5), decimal_text, max_size=3),
       params=st.one_of(st.text(max_size=20), st.sampled_from(list(HOSTILE_TEXTS.values()))))
def test_hostile_structured_whatif_over_grpc(env: ApiEnv, spot: dict, positions: list, collateral: dict,
                                            params: str) -> None:
    msg = api_pb2.WhatIf(market=api_pb2.WhatIfMarket(spot=spot), positions=positions, collateral=collateral,
                         params_json=params)
    code, result = simulate(env, whatif=msg)
    if msg.ByteSize() > MAX_BYTES:
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in get_field_violations(result)] == ["whatif"]


def test_structured_whatif_bounds_name_the_field(env: ApiEnv) -> None:
    base = structured(DOC)
    cases = {
        "whatif.positions": api_pb2.WhatIf(market=base.market, positions=[base.positions[2]] * (MAX_POSITIONS + 1)),
        "whatif.positions[0].quantity": api_pb2.WhatIf(market=base.market, positions=[
            api_pb2.WhatIfPosition(kind="perp", underlying="BTC", quantity="1" * 41)]),
        "whatif.params_json": api_pb2.WhatIf(market=base.market, params_json="[" * 100_000),
        "params.es_samples": api_pb2.WhatIf(market=base.market, params_json='{"es_samples": 10001}'),
    }
    for field, msg in cases.items():
        code, result = simulate(env, whatif=msg)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and field in [v.field for v in get_field_violations(result)]


# ---------------------------------------------------------------------------------------------
# decoders, directly (in this process, with the raised recursion limit)

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                           lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
                           max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(max_size=200), json_values.map(json.dumps), st.sampled_from(list(HOSTILE_TEXTS.values()))))
def test_decoder_of_json_documents_only_raises_rejections(text: str) -> None:
    try:
        doc = whatif.load_payload("whatif_json", text)
    except whatif.WhatIfRejected as exc:
        assert exc.violations and all(v.field for v in exc.violations)
        return
    assert isinstance(doc, dict)


@settings(max_examples=300, deadline=None)
@given(spot=st.dictionaries(st.text(max_size=5), decimal_text, max_size=3),
       positions=st.lists(st.builds(api_pb2.WhatIfPosition, kind=st.text(max_size=8), underlying=st.text(max_size=4),
                                    days_to_expiry=decimal_text, strike=decimal_text, right=st.text(max_size=4),
                                    vol=decimal_text, quantity=decimal_text), max_size=4),
       collateral=st.dictionaries(st.text(max_size=5), decimal_text, max_size=3), params=st.text(max_size=20))
def test_decoder_of_structured_whatif_only_raises_rejections(spot: dict, positions: list, collateral: dict,
                                                             params: str) -> None:
    msg = api_pb2.WhatIf(market=api_pb2.WhatIfMarket(spot=spot), positions=positions, collateral=collateral,
                         params_json=params)
    try:
        doc = whatif.whatif_doc_from_pb(msg)
    except whatif.WhatIfRejected as exc:
        assert all(v.field.startswith("whatif.") for v in exc.violations)
        return
    assert len(doc["positions"]) == len(positions)


@settings(max_examples=500, deadline=None)
@given(text=st.text(max_size=50))
def test_parse_account_accepts_exactly_40_hex_digits(text: str) -> None:
    parsed = parse_account(text)
    valid = len(text) == 42 and text.startswith("0x") and all(c in "0123456789abcdefABCDEF" for c in text[2:])
    assert (parsed is not None) == valid
    if parsed is not None:
        assert parsed.hex() == text[2:].lower()


# ---------------------------------------------------------------------------------------------
# last: the server is still alive and serving (keep this test at the end of the module)


def test_server_still_serves_after_fuzzing(env: ApiEnv) -> None:
    health = health_pb2_grpc.HealthStub(env.channel)
    for service in ("", "clearing.api.v1.MarginService"):
        status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    rep = env.stub.GetMargin(api_pb2.GetMarginRequest(account="0x" + (1).to_bytes(20, "big").hex()), timeout=5)
    assert rep.report.margin.epoch == EPOCHS[-1]
    resp = env.stub.SimulateMargin(api_pb2.SimulateMarginRequest(whatif_json=json.dumps(DOC)), timeout=60)
    assert resp.initial_margin_micro_usd > 0
    assert env.server.sandbox.replacements == 0  # no hostile document killed or stalled a worker
