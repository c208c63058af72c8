"""Fuzzing the public API: random bytes on every method of the live server, random field values in
well-formed requests, and the request decoders directly. The server answers each call with a
status (never crashes, never INTERNAL for a decodable request), and the store is unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.api import whatif
from node.api.convert import parse_account
from node.api.errors import get_rich_status
from node.pb.clearing.api.v1 import api_pb2
from tests.api.conftest import EPOCHS, ApiEnv, start_env, stop_env

METHODS = {
    "GetMargin": api_pb2.GetMarginRequest, "GetSignedState": api_pb2.GetSignedStateRequest,
    "SimulateMargin": api_pb2.SimulateMarginRequest, "ListValidators": api_pb2.ListValidatorsRequest,
    "GetParameters": api_pb2.GetParametersRequest, "ListProposals": api_pb2.ListProposalsRequest,
}
ALLOWED = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
           grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.DEADLINE_EXCEEDED}
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiEnv]:
    e = start_env(Path(tmp_path_factory.mktemp("fuzz")))
    yield e
    stop_env(e)


def store_fingerprint(env: ApiEnv) -> tuple:
    latest = env.store.get_latest_signed_state()
    return (latest, env.store.get_last_signed(), env.store.list_evidence(),
            [len(env.store.get_leaves(e)) for e in EPOCHS])


def call_raw(env: ApiEnv, method: str, payload: bytes) -> grpc.StatusCode:
    stub = env.channel.unary_unary(f"/clearing.api.v1.MarginService/{method}")
    try:
        stub(payload, timeout=10)
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


def is_decodable(message_type: type, payload: bytes) -> bool:
    try:
        message_type.FromString(payload)
    except Exception:
        return False
    return True


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


@FUZZ
@given(account=st.text(max_size=60), epoch=st.one_of(st.none(), st.integers(0, 2**64 - 1)))
def test_random_get_margin_fields(env: ApiEnv, account: str, epoch: int | None) -> None:
    req = api_pb2.GetMarginRequest(account=account)
    if epoch is not None:
        req.epoch = epoch
    try:
        env.stub.GetMargin(req, timeout=10)
        assert parse_account(account) is not None
    except grpc.RpcError as err:
        assert err.code() in ALLOWED
        if err.code() == grpc.StatusCode.INVALID_ARGUMENT:
            assert get_rich_status(err).details  # field violations present


def test_server_still_serves_after_fuzzing(env: ApiEnv) -> None:
    rep = env.stub.GetMargin(api_pb2.GetMarginRequest(account="0x" + (1).to_bytes(20, "big").hex()), timeout=5)
    assert rep.report.margin.epoch == EPOCHS[-1]


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                           lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
                           max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(max_size=200), json_values.map(lambda v: __import__("json").dumps(v))))
def test_decoder_of_json_documents_only_raises_rejections(text: str) -> None:
    try:
        doc = whatif.parse_request_doc(api_pb2.SimulateMarginRequest(whatif_json=text))
    except whatif.WhatIfRejected as exc:
        assert exc.violations and all(v.field for v in exc.violations)
        return
    assert isinstance(doc, dict)


decimal_text = st.one_of(st.text(max_size=12), st.decimals(allow_nan=True).map(str), st.integers().map(str))


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
