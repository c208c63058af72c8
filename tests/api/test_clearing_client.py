"""`clearing_client.ClearingClient` against three real API servers on loopback (real SQLite stores):
typed results, every public RPC, failover when a server is stopped or lacks an epoch's leaves,
final errors, and local verification of proof and group signature (a wrong group key refuses)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from eth_utils import to_checksum_address

from clearing_client import ApiError, ClearingClient, NotFound, VerificationError
from clearing_client.chain import REGISTRY_ABI
from tests.api.conftest import EPOCHS, N_LEAVES, ApiEnv, start_env, stop_env
from tests.api.test_simulate import DOC
from tests.store.factories import get_test_keyset, make_account, make_state

REPO = Path(__file__).resolve().parents[2]


def start_envs(tmp_path: Path, n: int) -> list[ApiEnv]:
    for i in range(n):
        (tmp_path / f"v{i}").mkdir()
    return [start_env(tmp_path / f"v{i}") for i in range(n)]


@pytest.fixture
def envs(tmp_path: Path) -> Iterator[list[ApiEnv]]:
    started = start_envs(tmp_path, 3)
    yield started
    for env in started:
        if env not in STOPPED:
            stop_env(env)
        else:
            STOPPED.remove(env)


STOPPED: list[ApiEnv] = []


def account(i: int) -> str:
    return "0x" + make_account(i).hex()


def test_typed_results_of_every_rpc(envs: list[ApiEnv]) -> None:
    with ClearingClient([e.address for e in envs], group_public_key=get_test_keyset()[0], network_id=7) as client:
        report = client.get_margin(account(3))
        leaf = envs[0].store.get_leaf(EPOCHS[-1], make_account(3))
        assert leaf is not None
        m = report.margin
        assert m.account == to_checksum_address(make_account(3)) == report.leaf_values.account
        assert (m.epoch, m.equity_micro_usd, m.initial_margin_micro_usd) == (EPOCHS[-1], leaf.equity, leaf.im)
        assert m.equity_usd == Decimal(leaf.equity) / Decimal(10**6) and isinstance(m.free_collateral_usd, Decimal)
        assert report.leaf == leaf.encoded and report.state.epoch == EPOCHS[-1] and report.endpoint in client.endpoints
        assert report.leaf_values.as_abi_tuple()[1:4] == (leaf.equity, leaf.im, leaf.mm)
        assert client.get_margin(account(3), epoch=1).state.epoch == 1
        assert client.get_signed_state().epoch == EPOCHS[-1] and client.get_signed_state(2).epoch == 2
        vs = client.list_validators()
        assert vs.threshold == 3 and all(v.address == to_checksum_address(v.address) for v in vs.validators)
        assert client.get_parameters(0).version == 1
        proposals, next_from = client.list_proposals(page_size=3)
        assert [p.id for p in proposals] == [1, 2, 3] and next_from == 4
        assert proposals[0].status == "PROPOSAL_STATUS_EXECUTED"
        sim = client.simulate_margin(DOC)
        assert sim.initial_margin_micro_usd > 0 and json.loads(sim.result_json)
        streamed = list(client.stream_margin_updates([account(2)], send_current=True, timeout_s=2))
        assert [r.margin.epoch for r in streamed][:1] == [EPOCHS[-1]]


def test_failover_when_a_server_stops(envs: list[ApiEnv]) -> None:
    with ClearingClient([e.address for e in envs], timeout_s=2, backoff_s=0.05) as client:
        assert client.get_margin(account(1)).endpoint == envs[0].address
        stop_env(envs[0])
        STOPPED.append(envs[0])
        for i in range(1, 20):
            assert client.get_margin(account(i)).margin.epoch == EPOCHS[-1]
        assert client.failovers >= 1 and client.get_signed_state().epoch == EPOCHS[-1]


def test_failover_to_a_validator_holding_the_epochs_leaves(tmp_path: Path) -> None:
    """Epoch 4 asked by number: the first validator stored the state without leaves (NOT_FOUND epoch)."""
    envs = start_envs(tmp_path, 2)
    try:
        state, leaves = make_state(4, N_LEAVES)
        envs[0].store.put_signed_state(state, [])
        envs[1].store.put_signed_state(state, leaves)
        with ClearingClient([e.address for e in envs], group_public_key=get_test_keyset()[0]) as client:
            report = client.get_margin(account(5), epoch=4)
            assert report.endpoint == envs[1].address and report.state.epoch == 4
    finally:
        for env in envs:
            stop_env(env)


def test_final_errors(envs: list[ApiEnv]) -> None:
    with ClearingClient([e.address for e in envs], backoff_s=0.01) as client:
        with pytest.raises(NotFound):
            client.get_margin("0x" + "ee" * 20)
        with pytest.raises(ApiError) as err:
            client.get_margin("0x12")
        assert err.value.code is not None and err.value.code.name == "INVALID_ARGUMENT"
    with pytest.raises(ValueError, match="endpoints"):
        ClearingClient([])


def test_local_verification_refuses_a_wrong_group_key(envs: list[ApiEnv]) -> None:
    from node.crypto import threshold

    other_key = threshold.deal_trusted(4, 3, b"another network")[0]
    client = ClearingClient([e.address for e in envs], group_public_key=other_key, backoff_s=0.01, passes=1)
    with client, pytest.raises(VerificationError, match="group signature"):
        client.get_margin(account(2))
    client = ClearingClient([envs[0].address], network_id=8, passes=1)
    with client, pytest.raises(VerificationError, match="network"):
        client.verify_state(client.get_signed_state())


def test_verify_report_refuses_a_forged_leaf(envs: list[ApiEnv]) -> None:
    from dataclasses import replace

    with ClearingClient([envs[0].address], group_public_key=get_test_keyset()[0]) as client:
        report = client.get_margin(account(6))
        forged_leaf = bytearray(report.leaf)
        forged_leaf[63] ^= 1  # equity + 1 micro-USD in the encoding
        forged = replace(report, leaf=bytes(forged_leaf))
        with pytest.raises(VerificationError, match="proof"):
            client.verify_report(forged)
        with pytest.raises(VerificationError, match="numbers"):
            client.verify_report(replace(report, margin=replace(report.margin, equity_micro_usd=10**12)))


def test_registry_abi_fragment_matches_the_committed_interface() -> None:
    committed = json.loads((REPO / "bridges" / "artifacts" / "IMarginRegistry.json").read_text())["abi"]
    by_name = {e["name"]: e for e in committed if e.get("type") == "function"}
    for entry in REGISTRY_ABI:
        assert entry == by_name[entry["name"]], entry["name"]


def test_checksummed_requests_are_accepted(envs: list[ApiEnv]) -> None:
    with ClearingClient([envs[0].address]) as client:
        report = client.get_margin(to_checksum_address(make_account(4)))
    assert report.margin.account == to_checksum_address(make_account(4))
