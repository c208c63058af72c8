"""MarginService over real gRPC on loopback against a real SQLite store: every RPC, rich errors,
rate limiting, streams, deadlines, health and reflection."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import pytest
from Crypto.Hash import keccak
from eth_abi import decode
from eth_utils import to_checksum_address
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from bridges.statecodec import compute_inputs_digest, compute_state_digest
from node.api.errors import get_field_violations, get_retry_delay, get_rich_status
from node.api.service import ServiceLimits
from node.api.sources import ProposalInfo
from node.crypto import threshold
from node.pb.clearing.api.v1 import api_pb2
from tests.api.conftest import EPOCHS, N_LEAVES, ApiEnv, start_env, stop_env
from tests.store.factories import get_test_keyset, make_account, make_state, sign_digest


def kk(data: bytes) -> bytes:
    return keccak.new(data=data, digest_bits=256).digest()


def oz_verify(root: bytes, leaf: bytes, proof: list[bytes]) -> bool:
    """OpenZeppelin MerkleProof.verify with leaf hash keccak(keccak(abi.encode(...)))."""
    h = kk(kk(leaf))
    for sib in proof:
        h = kk(min(h, sib) + max(h, sib))
    return h == root


def is_signed_by_group(state: api_pb2.SignedState) -> bool:
    """The served state's digest recomputes from its fields and carries the group's signature."""
    digest = compute_state_digest(state.network_id, state.keyset_id, state.epoch, state.inputs_digest,
                                  state.params_hash, state.root, state.leaf_count)
    pins = [(p.chain_id, p.block_number, p.block_hash) for p in state.pins]
    return (digest == state.digest and compute_inputs_digest(pins) == state.inputs_digest
            and threshold.group_verify(get_test_keyset()[0], digest, state.signature))


def acct(i: int) -> str:
    """The account as the API returns it (EIP-55); requests accept any case."""
    return to_checksum_address(make_account(i))


def test_get_margin_latest_matches_stored_leaf_and_proof_verifies(api_env: ApiEnv) -> None:
    for i in (1, 2, 17, N_LEAVES):
        rep = api_env.stub.GetMargin(api_pb2.GetMarginRequest(account=acct(i)), timeout=5).report
        leaf = api_env.store.get_leaf(EPOCHS[-1], make_account(i))
        assert leaf is not None
        m = rep.margin
        assert (m.epoch, m.equity_micro_usd, m.initial_margin_micro_usd, m.maintenance_margin_micro_usd) == (
            EPOCHS[-1], leaf.equity, leaf.im, leaf.mm)
        assert m.free_collateral_micro_usd == leaf.equity - leaf.im
        assert m.liquidatable == (leaf.equity < leaf.mm)
        if leaf.mm == 0:
            assert m.health_unbounded and m.health_bps == 0
        else:
            assert not m.health_unbounded and m.health_bps == leaf.equity * 10_000 // leaf.mm
        assert list(m.risk_array_micro_usd) == [(-1) ** s * s * 1_000_000 for s in range(23)]
        assert m.worst_scenario == 21
        assert [(c.chain_id, c.asset, c.amount) for c in m.collateral] == [
            (31337, "USDC", str(5_000_000 * leaf.index)), (31338, "ETH", str(3 * 10**18 + leaf.index))]
        assert rep.leaf == leaf.encoded and rep.leaf_index == leaf.index
        decoded = decode(["address", "int256", "uint256", "uint256", "uint256", "bytes32[]"], rep.leaf)
        assert decoded[0] == acct(i) and decoded[1] == m.equity_micro_usd
        assert rep.state.epoch == EPOCHS[-1] and rep.state.leaf_count == N_LEAVES
        assert oz_verify(rep.state.root, rep.leaf, list(rep.proof))
        assert is_signed_by_group(rep.state)
        forged = api_pb2.SignedState()
        forged.CopyFrom(rep.state)
        forged.signature = sign_digest(b"\x00" * 32)
        assert not is_signed_by_group(forged)
        assert not oz_verify(rep.state.root, rep.leaf[:-1] + b"\x01", list(rep.proof))


def test_get_margin_at_older_epoch(api_env: ApiEnv) -> None:
    rep = api_env.stub.GetMargin(api_pb2.GetMarginRequest(account=acct(3), epoch=1), timeout=5).report
    state, leaves = make_state(1, N_LEAVES)
    assert rep.margin.epoch == 1 and rep.leaf == leaves[2].encoded and rep.state.digest == state.digest
    assert oz_verify(state.root, rep.leaf, list(rep.proof))


@pytest.mark.parametrize("account", ["", "0x12", "12" * 20, "0x" + "zz" * 20, "0x" + "ab" * 21])
def test_invalid_account_gives_field_violation(api_env: ApiEnv, account: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        api_env.stub.GetMargin(api_pb2.GetMarginRequest(account=account), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = get_field_violations(err.value)
    assert [v.field for v in violations] == ["account"]
    status = get_rich_status(err.value)
    assert status is not None and status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]


def test_invalid_unknown_account_and_epoch_not_found(api_env: ApiEnv) -> None:
    with pytest.raises(grpc.RpcError) as err:
        api_env.stub.GetMargin(api_pb2.GetMarginRequest(account="0x" + "ee" * 20), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    info = error_details_pb2.ResourceInfo()
    assert get_rich_status(err.value).details[0].Unpack(info) and info.resource_type == "account"
    for req in (api_pb2.GetMarginRequest(account=acct(1), epoch=99), api_pb2.GetSignedStateRequest(epoch=0)):
        method = api_env.stub.GetMargin if isinstance(req, api_pb2.GetMarginRequest) else api_env.stub.GetSignedState
        with pytest.raises(grpc.RpcError) as err:
            method(req, timeout=5)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_get_signed_state_latest_and_by_epoch(api_env: ApiEnv) -> None:
    latest = api_env.stub.GetSignedState(api_pb2.GetSignedStateRequest(), timeout=5).state
    state, _ = make_state(EPOCHS[-1], N_LEAVES)
    assert (latest.epoch, latest.root, latest.signature, list(latest.signers)) == (
        state.epoch, state.root, state.signature, list(state.signers))
    assert [(p.chain_id, p.block_number, p.block_hash) for p in latest.pins] == [
        (p.chain_id, p.number, p.block_hash) for p in state.pins]
    one = api_env.stub.GetSignedState(api_pb2.GetSignedStateRequest(epoch=1), timeout=5).state
    assert one.digest == make_state(1, N_LEAVES)[0].digest


def test_invalid_while_syncing_or_empty_gives_failed_precondition(tmp_path: Path) -> None:
    env = start_env(tmp_path, fill=False)
    try:
        with pytest.raises(grpc.RpcError) as err:
            env.stub.GetSignedState(api_pb2.GetSignedStateRequest(), timeout=5)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        env.store.put_signed_state(*make_state(4, 3))
        env.server.snapshots.refresh()
        assert env.stub.GetSignedState(api_pb2.GetSignedStateRequest(), timeout=5).state.epoch == 4
        env.sources.syncing = True
        with pytest.raises(grpc.RpcError) as err:
            env.stub.GetMargin(api_pb2.GetMarginRequest(account=acct(1)), timeout=5)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        failure = error_details_pb2.PreconditionFailure()
        assert get_rich_status(err.value).details[0].Unpack(failure)
        assert failure.violations[0].subject == "node"
    finally:
        stop_env(env)


def test_stream_delivers_current_and_new_signed_values(api_env: ApiEnv) -> None:
    req = api_pb2.StreamMarginUpdatesRequest(accounts=[acct(2), acct(5), "0x" + "ee" * 20], send_current=True)
    stream = api_env.stub.StreamMarginUpdates(req, timeout=30)
    got = [next(stream).report for _ in range(2)]
    assert [(r.margin.account, r.margin.epoch) for r in got] == [(acct(2), 3), (acct(5), 3)]

    def write() -> None:
        time.sleep(0.2)
        api_env.store.put_signed_state(*make_state(4, N_LEAVES))

    writer = threading.Thread(target=write)
    writer.start()
    new = [next(stream).report for _ in range(2)]
    writer.join()
    stream.cancel()
    assert [(r.margin.account, r.margin.epoch) for r in new] == [(acct(2), 4), (acct(5), 4)]
    assert all(oz_verify(r.state.root, r.leaf, list(r.proof)) and is_signed_by_group(r.state) for r in new)


def test_stream_ends_at_deadline(api_env: ApiEnv) -> None:
    stream = api_env.stub.StreamMarginUpdates(api_pb2.StreamMarginUpdatesRequest(accounts=[acct(1)]), timeout=0.5)
    with pytest.raises(grpc.RpcError) as err:
        list(stream)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


@pytest.mark.parametrize(("accounts", "fields"), [
    ([], ["accounts"]),
    ([acct(1)] * 101, ["accounts"]),
    ([acct(1), "0xbad", acct(2), ""], ["accounts[1]", "accounts[3]"]),
])
def test_invalid_stream_requests(api_env: ApiEnv, accounts: list[str], fields: list[str]) -> None:
    with pytest.raises(grpc.RpcError) as err:
        list(api_env.stub.StreamMarginUpdates(api_pb2.StreamMarginUpdatesRequest(accounts=accounts), timeout=5))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in get_field_violations(err.value)] == fields


def test_list_validators_parameters_proposals(api_env: ApiEnv) -> None:
    vs = api_env.stub.ListValidators(api_pb2.ListValidatorsRequest(), timeout=5)
    assert (vs.keyset_id, vs.threshold, len(vs.validators)) == (1, 3, 4)
    assert [v.is_self for v in vs.validators] == [False, False, True, False]
    assert vs.validators[3].public_key_share == b"\x03" * 96
    assert api_env.stub.GetParameters(api_pb2.GetParametersRequest(), timeout=5).version == 2  # latest epoch 3
    assert api_env.stub.GetParameters(api_pb2.GetParametersRequest(epoch=2), timeout=5).version == 1
    page = api_env.stub.ListProposals(api_pb2.ListProposalsRequest(page_size=3), timeout=5)
    assert [p.id for p in page.proposals] == [1, 2, 3] and page.next_from_id == 4
    assert page.proposals[0].status == api_pb2.PROPOSAL_STATUS_EXECUTED
    rest = api_env.stub.ListProposals(api_pb2.ListProposalsRequest(from_id=4), timeout=5)
    assert [p.id for p in rest.proposals] == [4, 5, 6, 7] and rest.next_from_id == 0
    assert rest.proposals[0].status == api_pb2.PROPOSAL_STATUS_OPEN
    with pytest.raises(grpc.RpcError) as err:
        api_env.stub.ListProposals(api_pb2.ListProposalsRequest(page_size=5000), timeout=5)
    assert [v.field for v in get_field_violations(err.value)] == ["page_size"]


def test_invalid_proposal_listed_as_invalid_with_its_reason(api_env: ApiEnv) -> None:
    reason = "invalid: parameter set refused: maintenance_factor: must be in (0, 1], got 1.5"
    api_env.sources.proposals = (
        ProposalInfo(8, "invalid", "0x" + "08" * 20, 20, b"", 3, 0, reason),
        ProposalInfo(9, "rejected", "0x" + "09" * 20, 21, b"\x09" * 32, 1, 3, "rejected: approval missed"),
        ProposalInfo(10, "unknown-status", "0x" + "0a" * 20, 22, b"", 0, 0, ""),
    )
    listed = api_env.stub.ListProposals(api_pb2.ListProposalsRequest(from_id=8), timeout=5).proposals
    assert [(p.id, p.status) for p in listed] == [(8, api_pb2.PROPOSAL_STATUS_INVALID),
                                                  (9, api_pb2.PROPOSAL_STATUS_REJECTED),
                                                  (10, api_pb2.PROPOSAL_STATUS_UNSPECIFIED)]
    assert listed[0].description == reason
    assert api_pb2.ProposalStatus.Name(listed[0].status) == "PROPOSAL_STATUS_INVALID"


def test_invalid_over_rate_limit_gives_resource_exhausted_with_retry_info(tmp_path: Path) -> None:
    env = start_env(tmp_path, limits=ServiceLimits(rate_limit_rps=2.0, rate_limit_burst=3.0))
    try:
        req = api_pb2.GetSignedStateRequest()
        for _ in range(3):
            env.stub.GetSignedState(req, timeout=5)
        with pytest.raises(grpc.RpcError) as err:
            env.stub.GetSignedState(req, timeout=5)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        delay = get_retry_delay(err.value)
        assert delay is not None and 0 < delay <= 0.5 + 1e-6
        time.sleep(delay + 0.05)
        assert env.stub.GetSignedState(req, timeout=5).state.epoch == EPOCHS[-1]
    finally:
        stop_env(env)


def test_invalid_oversized_request_is_refused_and_server_keeps_serving(tmp_path: Path) -> None:
    env = start_env(tmp_path, max_receive_bytes=4096)
    try:
        with pytest.raises(grpc.RpcError) as err:
            env.stub.SimulateMargin(api_pb2.SimulateMarginRequest(whatif_json="x" * 10_000), timeout=5)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert env.stub.GetMargin(api_pb2.GetMarginRequest(account=acct(1)), timeout=5).report.margin.epoch == 3
    finally:
        stop_env(env)


def test_health_and_reflection(api_env: ApiEnv) -> None:
    health = health_pb2_grpc.HealthStub(api_env.channel)
    for name in ("", "clearing.api.v1.MarginService"):
        resp = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(api_env.channel)
    responses = list(refl.ServerReflectionInfo(iter([
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="clearing.api.v1.MarginService"),
    ]), timeout=5))
    names = {s.name for s in responses[0].list_services_response.service}
    assert {"clearing.api.v1.MarginService", "grpc.health.v1.Health"} <= names
    assert responses[1].file_descriptor_response.file_descriptor_proto
    api_env.server.set_serving(False)
    resp = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert resp.status == health_pb2.HealthCheckResponse.NOT_SERVING


def test_report_to_dict_for_the_cli(api_env: ApiEnv) -> None:
    from node.api.client import report_to_dict

    rep = api_env.stub.GetMargin(api_pb2.GetMarginRequest(account=acct(5)), timeout=5).report
    doc = report_to_dict(rep)
    assert doc["margin"]["equity_micro_usd"] == rep.margin.equity_micro_usd
    assert doc["margin"]["liquidatable"] is rep.margin.liquidatable
    assert doc["leaf"] == "0x" + rep.leaf.hex() and doc["proof"] == ["0x" + p.hex() for p in rep.proof]
    assert doc["state"]["pins"][0]["chain_id"] == 31337 and doc["state"]["signers"] == [0, 1, 3]
    assert doc["margin"]["collateral"][1] == {"chain_id": 31338, "asset": "ETH",
                                              "amount": str(3 * 10**18 + 5 - 1)}


def test_invalid_too_many_streams_keeps_workers_for_unary_calls(tmp_path: Path) -> None:
    env = start_env(tmp_path, max_workers=4)
    try:
        req = api_pb2.StreamMarginUpdatesRequest(accounts=[acct(1)], send_current=True)
        streams = [env.stub.StreamMarginUpdates(req, timeout=30) for _ in range(2)]
        assert all(next(s).report.margin.epoch == EPOCHS[-1] for s in streams)
        with pytest.raises(grpc.RpcError) as err:
            next(env.stub.StreamMarginUpdates(req, timeout=30))
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and get_retry_delay(err.value) is not None
        assert env.stub.GetMargin(api_pb2.GetMarginRequest(account=acct(2)), timeout=5).report.margin.epoch == 3
        streams[0].cancel()
        deadline = time.monotonic() + 10
        while True:  # the cancelled stream frees its slot once its handler notices
            try:
                assert next(env.stub.StreamMarginUpdates(req, timeout=30)).report.margin.epoch == 3
                break
            except grpc.RpcError as again:
                assert again.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and time.monotonic() < deadline
                time.sleep(0.2)
        streams[1].cancel()
    finally:
        stop_env(env)


def test_invalid_margin_of_a_pruned_epoch_says_so(api_env: ApiEnv) -> None:
    assert api_env.store.prune_leaves(1) == [1, 2]
    with pytest.raises(grpc.RpcError) as err:
        api_env.stub.GetMargin(api_pb2.GetMarginRequest(account=acct(1), epoch=1), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "pruned" in err.value.details()
    assert api_env.stub.GetMargin(api_pb2.GetMarginRequest(account=acct(1)), timeout=5).report.margin.epoch == 3


def test_reflection_alone_is_enough_to_call_the_api(api_env: ApiEnv) -> None:
    """What grpcurl does: descriptors from server reflection only, a dynamic request, a decoded answer."""
    from google.protobuf import descriptor_pool, message_factory
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(api_env.channel))
    service = pool.FindServiceByName("clearing.api.v1.MarginService")
    method = service.methods_by_name["GetMargin"]
    request_cls = message_factory.GetMessageClass(method.input_type)
    response_cls = message_factory.GetMessageClass(method.output_type)
    call = api_env.channel.unary_unary("/clearing.api.v1.MarginService/GetMargin",
                                       request_serializer=request_cls.SerializeToString,
                                       response_deserializer=response_cls.FromString)
    response = call(request_cls(account=acct(4)), timeout=5)
    assert response.report.margin.account == acct(4) and response.report.state.epoch == EPOCHS[-1]
    assert {m.name for m in service.methods} == {"GetMargin", "GetSignedState", "StreamMarginUpdates",
                                                "SimulateMargin", "ListValidators", "GetParameters", "ListProposals"}


def test_reflection_v1_is_served_like_v1alpha(api_env: ApiEnv) -> None:
    """grpcurl and current tools ask `grpc.reflection.v1` first: same answers as v1alpha, and v1 describes
    itself (its own descriptor is served, under package grpc.reflection.v1)."""
    from google.protobuf import descriptor_pb2

    call = api_env.channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
    responses = list(call(iter([
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="clearing.api.v1.MarginService"),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="grpc.reflection.v1.ServerReflection"),
    ]), timeout=5))
    names = {s.name for s in responses[0].list_services_response.service}
    assert {"clearing.api.v1.MarginService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection"} <= names
    files = [descriptor_pb2.FileDescriptorProto.FromString(b)
             for b in responses[1].file_descriptor_response.file_descriptor_proto]
    assert any(f.package == "clearing.api.v1" and f.service[0].name == "MarginService" for f in files)
    own = [descriptor_pb2.FileDescriptorProto.FromString(b)
           for b in responses[2].file_descriptor_response.file_descriptor_proto]
    assert own[0].package == "grpc.reflection.v1"
    assert own[0].service[0].method[0].input_type == ".grpc.reflection.v1.ServerReflectionRequest"


def test_every_address_served_is_checksummed(api_env: ApiEnv) -> None:
    validators = api_env.stub.ListValidators(api_pb2.ListValidatorsRequest(), timeout=5).validators
    proposals = api_env.stub.ListProposals(api_pb2.ListProposalsRequest(), timeout=5).proposals
    margin = api_env.stub.GetMargin(api_pb2.GetMarginRequest(account=acct(3).lower()), timeout=5).report.margin
    for text in [v.address for v in validators] + [p.proposer for p in proposals] + [margin.account]:
        assert text == to_checksum_address(text)


def test_invalid_account_without_leaf_is_told_why(tmp_path: Path) -> None:
    """An account present on chain whose margin could not be computed (here: a stale mark) gets NOT_FOUND
    with the reason the node recorded for it, not a bare "no leaf"."""
    from bridges.book_merge import AccountFailure

    env = start_env(tmp_path, fill=False)
    try:
        stale = AccountFailure("0x" + "ee" * 20, "positions[31337:2]",
                               "chain 31337 oracle.spot.BTC: updated at 1000, older than 3600s")
        env.store.put_signed_state(*make_state(1, 4), failures=[stale])

        def ask(account: str) -> grpc.RpcError:
            deadline = time.monotonic() + 30
            while True:
                try:
                    env.stub.GetMargin(api_pb2.GetMarginRequest(account=account), timeout=5)
                except grpc.RpcError as exc:
                    if exc.code() == grpc.StatusCode.NOT_FOUND or time.monotonic() > deadline:
                        return exc
                    time.sleep(0.05)  # FAILED_PRECONDITION until the snapshot holds epoch 1
                else:
                    raise AssertionError("a leaf for an account that has none")

        err = ask("0x" + "EE" * 20)
        assert err.code() == grpc.StatusCode.NOT_FOUND
        assert err.details() == (f"account {to_checksum_address('0x' + 'ee' * 20)}: no leaf in epoch 1: its margin could not be computed "
                                 "(positions[31337:2]: chain 31337 oracle.spot.BTC: updated at 1000, older than 3600s)")
        other = ask("0x" + "dd" * 20)
        assert other.code() == grpc.StatusCode.NOT_FOUND and other.details().endswith("no leaf in epoch 1")
    finally:
        stop_env(env)
