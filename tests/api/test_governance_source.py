"""Governance served by the API and read by the node: proposals and the parameter schedule read from
a real Governance contract on anvil (proposed and voted with `clearingd gov`), through
`GovernanceReader` and the live server's ListProposals / GetParameters; the node's
`build_governance_source` deriving its genesis from the contract's set version 0 at the pin (not
from its configured operators), in agreement with the API reader."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from eth_account import Account

from bridges.chain import ChainClient, ChainConfig, Pin
from governance.encoding import encode_governance_state
from governance.params import compute_params_hash
from governance.proposals import ProposalKind, ValidatorSetChange, VoteChoice, encode_validator_set_change
from governance.tally import get_pending_reshare, get_validator_set
from node.api.governance import GovernanceReader
from node.api.live import LiveSources
from node.api.server import ApiServerConfig, start_api_server
from node.consensus.errors import InputsUnavailable
from node.governance_source import (
    GenesisSpec,
    GovernanceScheduleSource,
    GovernanceSourceError,
    build_governance_source,
    get_genesis_at,
)
from node.pb.clearing.api.v1 import api_pb2, api_pb2_grpc
from node.store import SQLiteStore
from risk.params import RRA1
from tests.governance.conftest import EPOCH_SECONDS, Deployed, anvil_chain, deployed  # noqa: F401
from tests.governance.helpers import INVALID_MM_PAYLOAD, WIDE_BTC

REPO = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def serve_api(tmp_path: Path, reader: GovernanceReader) -> Iterator[api_pb2_grpc.MarginServiceStub]:
    """The public API over an empty store and `reader`, on loopback gRPC; yields a client stub."""
    store = SQLiteStore(tmp_path / "n.sqlite")
    server = start_api_server(ApiServerConfig(listen="127.0.0.1:0"), store,
                              LiveSources(store, tmp_path / "status.json", governance=reader))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield api_pb2_grpc.MarginServiceStub(channel)
    finally:
        server.stop(0.2)
        store.close()


def gov_cli(d: Deployed, *argv: str, dev_key: int) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARING_")}
    env |= {"CLEARING_HOME_RPC_URL": d.chain.rpc_url, "CLEARING_GOVERNANCE_ADDRESS": d.gov.address,
            "CLEARING_GENESIS_TIME": str(d.genesis.clock.genesis_time), "CLEARING_EPOCH_SECONDS": str(EPOCH_SECONDS),
            "CLEARING_DEV_KEY": str(dev_key)}
    return subprocess.run([sys.executable, "-m", "node.cli.main", "gov", *argv], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.mark.slow
def test_proposals_and_schedule_from_the_chain(deployed: Deployed, tmp_path: Path) -> None:  # noqa: F811
    d = deployed
    clock = Clock()
    reader = GovernanceReader(d.chain.rpc_url, d.gov.address, 0, d.genesis.clock.genesis_time, EPOCH_SECONDS,
                              refresh_s=5, clock=clock)
    assert reader.list_proposals(0, 10) == []
    assert reader.get_parameters(0).params_hash == compute_params_hash(RRA1)
    (tmp_path / "wide.json").write_text(json.dumps({"price_scan_range": {"BTC": 0.25}}))
    out = gov_cli(d, "propose", "--kind", "params", "--params-file", str(tmp_path / "wide.json"),
                  "--voting-period-blocks", "8", "--activation-epoch", "3", "--json", dev_key=0)
    assert out.returncode == 0, out.stderr
    pid = json.loads(out.stdout)["proposal_id"]
    assert reader.list_proposals(0, 10) == []  # cached until refresh_s passes
    clock.t += 6
    (open_,) = reader.list_proposals(0, 10)
    assert (open_.id, open_.status, open_.activation_epoch) == (pid, "open", 3)
    for i in range(3):
        assert gov_cli(d, "vote", "--id", str(pid), "--choice", "yes", dev_key=i).returncode == 0
    d.mine(9)
    clock.t += 6
    (passed,) = reader.list_proposals(0, 10)
    assert (passed.status, passed.votes_for, passed.params_hash) == ("passed", 3, compute_params_hash(WIDE_BTC))
    kept = reader._gov
    clock.t += 6
    assert reader.list_proposals(0, 10) == [passed]
    assert kept is not None and reader._gov is kept  # one chain reader across refreshes: settled ones read once
    with serve_api(tmp_path, reader) as stub:
        listed = stub.ListProposals(api_pb2.ListProposalsRequest(), timeout=10)
        assert [(p.id, p.status) for p in listed.proposals] == [(pid, api_pb2.PROPOSAL_STATUS_PASSED)]
        before = stub.GetParameters(api_pb2.GetParametersRequest(epoch=2), timeout=10)
        after = stub.GetParameters(api_pb2.GetParametersRequest(epoch=3), timeout=10)
        assert before.params_hash == compute_params_hash(RRA1) and before.version == 1
        assert after.params_hash == compute_params_hash(WIDE_BTC) and after.version == 2
        assert json.loads(after.params_json)["price_scan_range"]["BTC"] == 0.25


def test_unreachable_chain_gives_no_state_and_keeps_serving(tmp_path: Path) -> None:
    reader = GovernanceReader("http://127.0.0.1:1", "0x" + "00" * 20, 0, 0, 10, refresh_s=5)
    assert reader.get_state() is None and reader.list_proposals(0, 5) == [] and reader.get_parameters(1) is None
    with serve_api(tmp_path, reader) as stub:
        with pytest.raises(grpc.RpcError) as err:
            stub.GetParameters(api_pb2.GetParametersRequest(epoch=1), timeout=10)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert list(stub.ListProposals(api_pb2.ListProposalsRequest(), timeout=10).proposals) == []


def node_source(d: Deployed, operators: tuple[str, ...], threshold: int, **kw: object) -> GovernanceScheduleSource:
    """What `node.validator.build_input_source` builds from a node's configuration."""
    return build_governance_source(d.gov.client, d.gov.address, operators, threshold,
                                   float(d.genesis.clock.genesis_time), float(EPOCH_SECONDS), **kw)  # type: ignore[arg-type]


def get_pin(d: Deployed) -> Pin:
    return d.gov.get_pin_at_head(0)


def approve_validator_change(d: Deployed, change: ValidatorSetChange, activation: int) -> int:
    pid, _ = d.gov.propose(d.keys[0], ProposalKind.VALIDATOR_SET, encode_validator_set_change(change), 4, activation)
    for key in d.keys[:3]:
        d.gov.vote(key, pid, VoteChoice.YES)
    d.mine(5)
    d.gov.execute(d.keys[0], pid)
    return pid


def test_node_with_other_operators_derives_genesis_from_set_version_0(deployed: Deployed) -> None:  # noqa: F811
    d = deployed
    outsider = Account.from_key(d.keys[4]).address.lower()
    pin = get_pin(d)
    configured = node_source(d, d.validators, 3).get_state(pin)
    # a node configured with another set and threshold (a later set, or a joining validator)
    other = node_source(d, (*d.validators[1:], outsider), 2).get_state(pin)
    assert encode_governance_state(other) == encode_governance_state(configured)
    genesis_set = get_validator_set(other, 0)
    assert (genesis_set.members, genesis_set.threshold, genesis_set.keyset_id) == (d.validators, 3, 1)
    # and one configured with no operators at all
    assert encode_governance_state(node_source(d, (), 0).get_state(pin)) == encode_governance_state(configured)
    # the genesis key-set id is a parameter (default 1), not read from the operators
    assert get_validator_set(node_source(d, d.validators, 3, keyset_id=4).get_state(pin), 0).keyset_id == 4


def test_after_a_set_change_every_configuration_derives_the_same_state(deployed: Deployed) -> None:  # noqa: F811
    """Version 0 stays the genesis after the contract executed a change: old members, new members
    and a joining validator derive the same new set and the same pending reshare at the same pin."""
    d = deployed
    joiner = Account.from_key(d.keys[4]).address.lower()
    pid = approve_validator_change(d, ValidatorSetChange((joiner,), (), 4), activation=5)
    assert d.gov.get_validators(get_pin(d))[0] == 1  # the contract's voting set moved to version 1
    pin = get_pin(d)
    new_set = (*d.validators, joiner)
    states = [node_source(d, ops, t).get_state(pin) for ops, t in ((d.validators, 3), (new_set, 4), ((joiner,), 1))]
    assert len({encode_governance_state(s) for s in states}) == 1
    state = states[0]
    assert state.get_proposal(pid).status.value == "approved"
    assert get_validator_set(state, 4).members == d.validators
    after = get_validator_set(state, 5)
    assert (after.members, after.threshold, after.keyset_id) == (new_set, 4, 2)
    reshare = get_pending_reshare(state, 4)
    assert reshare is not None and reshare.activation_epoch == 5
    # the API reader derives the same state as the node at the same pin (no block mined in between)
    reader = GovernanceReader(d.chain.rpc_url, d.gov.address, 0, d.genesis.clock.genesis_time, EPOCH_SECONDS)
    assert encode_governance_state(reader.get_state()) == encode_governance_state(state)


def test_invalid_unreadable_set_version_0_stalls(deployed: Deployed) -> None:  # noqa: F811
    d = deployed
    pin = get_pin(d)
    no_contract = build_governance_source(d.gov.client, "0x" + "5e" * 20, d.validators, 3,
                                          float(d.genesis.clock.genesis_time), float(EPOCH_SECONDS))
    with pytest.raises(GovernanceSourceError, match=f"home block {pin.number}") as info:
        no_contract.get_state(pin)
    assert isinstance(info.value, InputsUnavailable)
    assert "validatorsAt" in str(info.value)
    assert no_contract.reads == 0
    # the chain unreachable: no fallback to the configured operators either
    dead = ChainClient(ChainConfig(chain_id=d.chain.chain_id, rpc_url="http://127.0.0.1:9", timeout_s=0.5,
                                   max_attempts=1))
    unreachable = build_governance_source(dead, d.gov.address, d.validators, 3,
                                          float(d.genesis.clock.genesis_time), float(EPOCH_SECONDS))
    with pytest.raises(GovernanceSourceError):
        unreachable.get_state(pin)


class VersionZero:
    """Unit seam: a Governance reader whose set version 0 is whatever the test says."""

    def __init__(self, members: tuple[str, ...], threshold: int) -> None:
        self.members, self.threshold = members, threshold

    def get_validators(self, pin: object, version: int | None = None) -> tuple[int, tuple[str, ...], int]:
        assert version == 0
        return 0, self.members, self.threshold


def test_invalid_set_version_0_is_not_a_genesis_set() -> None:
    spec = GenesisSpec(1_000, 10)
    members = tuple(f"0x{i:040x}" for i in range(1, 5))
    assert get_genesis_at(VersionZero(members, 3), None, spec).validators == members
    for bad_members, bad_threshold in (((), 0), (members, 5), (members, 0)):
        with pytest.raises(GovernanceSourceError, match="set version 0"):
            get_genesis_at(VersionZero(bad_members, bad_threshold), None, spec)


def test_invalid_fractional_clock_refused_naming_the_field(deployed: Deployed) -> None:  # noqa: F811
    d = deployed
    with pytest.raises(ValueError, match="epoch_period_s"):
        build_governance_source(d.gov.client, d.gov.address, d.validators, 3, 1_700_000_000.0, 2.5)
    with pytest.raises(ValueError, match="keyset_id"):
        node_source(d, d.validators, 3, keyset_id=0)


def test_invalid_parameter_set_listed_as_invalid_over_grpc(deployed: Deployed, tmp_path: Path) -> None:  # noqa: F811
    d = deployed
    out = gov_cli(d, "propose", "--kind", "params", "--payload-hex", INVALID_MM_PAYLOAD.hex(),
                  "--voting-period-blocks", "4", "--activation-epoch", "5", "--json", dev_key=0)
    assert out.returncode == 0, out.stderr
    pid = json.loads(out.stdout)["proposal_id"]
    for i in range(3):  # approved by the votes, still never valid
        d.gov.vote(d.keys[i], pid, VoteChoice.YES)
    d.mine(5)
    reader = GovernanceReader(d.chain.rpc_url, d.gov.address, 0, d.genesis.clock.genesis_time, EPOCH_SECONDS)
    (info,) = reader.list_proposals(0, 10)
    assert (info.id, info.status) == (pid, "invalid")
    with serve_api(tmp_path, reader) as stub:
        (listed,) = stub.ListProposals(api_pb2.ListProposalsRequest(), timeout=10).proposals
        assert (listed.id, listed.status) == (pid, api_pb2.PROPOSAL_STATUS_INVALID)
        assert listed.description.startswith("invalid: parameter set refused: ")
        assert "maintenance_factor" in listed.description
        assert listed.votes_for == 3
        # never activated: the parameters stay the genesis set at its activation epoch
        after = stub.GetParameters(api_pb2.GetParametersRequest(epoch=5), timeout=10)
        assert after.params_hash == compute_params_hash(RRA1)
