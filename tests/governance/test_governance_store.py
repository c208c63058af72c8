"""The settled-proposal store (`node.governance_store`, `data_dir/governance.sqlite`) on a real anvil chain
and real SQLite files: a restarted node (a new process) reads no settled proposal and derives the same
state, byte for byte, as a cold read; a store of another chain or contract is not used; a damaged or
unknown-version file is refused, logged and rebuilt; a reorg deeper than the settled depth below a
stored anchor drops those entries and reads them again."""

from __future__ import annotations

import json
import logging
import sqlite3
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bridges.anvil import rpc_call
from bridges.governance_chain import (
    SETTLED_DEPTH_BLOCKS,
    GovernanceChain,
    SettledProposal,
    deploy_governance,
    read_governance_state,
)
from governance.encoding import encode_governance_state
from governance.lifecycle import ProposalStatus
from governance.proposals import ProposalKind, ValidatorSetChange, encode_validator_set_change
from node.governance_source import GovernanceScheduleSource, build_governance_source
from node.governance_store import FORMAT_VERSION, GovernanceStore, StoreRefused, decode_entry, encode_entry
from risk.params import encode_params
from tests.governance.conftest import EPOCH_SECONDS, Deployed
from tests.governance.helpers import WIDE_BTC
from tests.governance.solc_helper import compile_governance

REPO = Path(__file__).resolve().parents[2]
PARAMS, VSET = ProposalKind.PARAMETER_SET, ProposalKind.VALIDATOR_SET
YES, NO, ABSTAIN = 1, 2, 3
PERIOD = 12  # voting period: one block per transaction, all votes fit
WINDOW = 20  # maxVotingPeriodBlocks of these deployments
DEPTH = 8  # settled depth of these tests' readers (the node's is 256): short chains, same rule
SETTLE = WINDOW + DEPTH + 12  # blocks after which every proposal ended so far is settled


def deploy_short(d: Deployed) -> GovernanceChain:
    address = deploy_governance(d.gov.client, d.keys[0], d.gov.abi, compile_governance()[1], d.validators, 3, WINDOW)
    return GovernanceChain(d.gov.client, address, d.gov.abi)


@pytest.fixture
def short(deployed: Deployed) -> Deployed:
    return replace(deployed, gov=deploy_short(deployed))


def make_history(d: Deployed) -> None:
    """An approved parameter set, an executed validator-set change (bytes payload, execution fields) and
    an expired proposal with a no and an abstain vote; then every one of them settles."""
    approved, _ = d.gov.propose(d.keys[0], PARAMS, encode_params(WIDE_BTC), PERIOD, 3)
    change = encode_validator_set_change(ValidatorSetChange((), (d.validators[3],), 3))
    removal, _ = d.gov.propose(d.keys[1], VSET, change, PERIOD, 5)
    expired, _ = d.gov.propose(d.keys[2], PARAMS, encode_params(WIDE_BTC), PERIOD, 4)
    for key in d.keys[:3]:
        d.gov.vote(key, approved, YES)
        d.gov.vote(key, removal, YES)
    d.gov.vote(d.keys[0], expired, NO)
    d.gov.vote(d.keys[1], expired, ABSTAIN)
    d.mine(PERIOD)
    d.gov.execute(d.keys[5], removal)
    d.mine(SETTLE)


def make_store(path: Path, gov: GovernanceChain) -> GovernanceStore:
    return GovernanceStore(path, gov.client.chain_id, gov.address)


def make_reader(gov: GovernanceChain, path: Path | None = None, every: int = 32) -> GovernanceChain:
    """A node's reader of `gov`'s contract (settled depth DEPTH), over the store at `path` if given."""
    store = None if path is None else make_store(path, gov)
    return GovernanceChain(gov.client, gov.address, gov.abi, DEPTH, store=store, anchor_check_every=every)


def encode_state_at(d: Deployed, gov: GovernanceChain, pin: Any) -> bytes:
    return encode_governance_state(read_governance_state(gov, pin, d.genesis))


def start_node(d: Deployed, store: Path, pin: Any, tmp_path: Path) -> dict[str, Any]:
    """One node start in a new process: its store, one snapshot at `pin`; returns what it printed."""
    args = {"chain_id": d.chain.chain_id, "rpc_url": d.chain.rpc_url, "address": d.gov.address,
            "abi": d.gov.abi, "store": str(store), "settled_depth": DEPTH, "pin_number": pin.number, "pin_hash": pin.hash.hex(),
            "pin_timestamp": pin.timestamp, "validators": list(d.validators), "threshold": 3,
            "genesis_time": d.genesis.clock.genesis_time, "epoch_seconds": d.genesis.clock.epoch_seconds}
    (tmp_path / "args.json").write_text(json.dumps(args))
    out = subprocess.run([sys.executable, "-m", "tests.governance.store_main", str(tmp_path / "args.json")],
                         cwd=REPO, capture_output=True, text=True, timeout=120, check=True)
    return dict(json.loads(out.stdout))


def test_restart_reads_no_settled_proposal_and_derives_the_cold_state(short: Deployed, tmp_path: Path) -> None:
    d = short
    make_history(d)
    path = tmp_path / "governance.sqlite"
    pin = d.gov.get_pin_at_head()
    cold = encode_state_at(d, make_reader(d.gov), pin)
    first = start_node(d, path, pin, tmp_path)
    assert first["proposal_reads"] == 3 and first["calls"]["eth_call:getProposal"] == 3
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    restarted = start_node(d, path, pin, tmp_path)
    assert restarted["proposal_reads"] == 0
    assert "eth_call:getProposal" not in restarted["calls"] and "eth_call:getVotes" not in restarted["calls"]
    assert restarted["calls"]["batch"] == 1  # the anchors' check: one batch, one block for the one anchor
    assert restarted["calls"]["eth_getBlockByNumber"] == 2  # that anchor and the pin's re-validation
    assert bytes.fromhex(restarted["state"]) == bytes.fromhex(first["state"]) == cold
    assert [o.status for o in read_governance_state(d.gov, pin, d.genesis).proposals] == [
        ProposalStatus.APPROVED, ProposalStatus.APPROVED, ProposalStatus.EXPIRED]

    live, _ = d.gov.propose(d.keys[0], PARAMS, encode_params(WIDE_BTC), 3, 9)  # after a restart: only it is read
    node = make_reader(d.gov, path)
    later = d.gov.get_pin_at_head()
    assert encode_state_at(d, node, later) == encode_state_at(d, make_reader(d.gov), later)
    assert node.proposal_reads == 1 and live == 4


def test_entries_round_trip_exactly(short: Deployed, tmp_path: Path) -> None:
    d = short
    make_history(d)
    node = make_reader(d.gov, tmp_path / "g.sqlite")
    snap = node.read_snapshot(d.gov.get_pin_at_head())
    loaded = make_store(tmp_path / "g.sqlite", d.gov).load()
    assert [e.record for e in loaded] == list(snap.proposals)
    assert [v for e in loaded for v in e.votes] == list(snap.votes)
    executed = loaded[1].record
    assert executed.executed and executed.executed_timestamp is not None and executed.resulting_set_version == 1
    for entry in loaded:
        assert decode_entry(encode_entry(entry), entry.anchor_number, entry.anchor_hash) == entry


def test_invalid_row_fields_are_refused_naming_the_field(short: Deployed, tmp_path: Path) -> None:
    d = short
    make_history(d)
    node = make_reader(d.gov, tmp_path / "g.sqlite")
    node.read_snapshot(d.gov.get_pin_at_head())
    entry: SettledProposal = make_store(tmp_path / "g.sqlite", d.gov).load()[0]
    body = json.loads(encode_entry(entry))
    for field, value, named in (("proposer", entry.record.proposer.upper(), "proposal.proposer"),
                                ("end_block", True, "proposal.end_block"), ("payload", "0xzz", "proposal.payload")):
        bad = {**body, "proposal": {**body["proposal"], field: value}}
        with pytest.raises(StoreRefused, match=named):
            decode_entry(json.dumps(bad), entry.anchor_number, entry.anchor_hash)


def test_a_store_of_another_chain_or_contract_is_not_used(short: Deployed, tmp_path: Path) -> None:
    d = short
    make_history(d)
    path = tmp_path / "governance.sqlite"
    make_reader(d.gov, path).read_snapshot(
        d.gov.get_pin_at_head())
    assert len(make_store(path, d.gov).load()) == 3
    assert GovernanceStore(path, d.gov.client.chain_id + 1, d.gov.address).load() == []
    other = deploy_short(d)  # another deployment on the same chain, same file
    assert make_store(path, other).load() == []
    pid, _ = other.propose(d.keys[0], PARAMS, encode_params(WIDE_BTC), 3, 3)
    d.mine(SETTLE)
    reader = make_reader(other, path)
    assert len(reader.read_snapshot(other.get_pin_at_head()).proposals) == 1 and reader.proposal_reads == 1
    assert [e.record.proposal_id for e in make_store(path, other).load()] == [pid]
    assert len(make_store(path, d.gov).load()) == 3  # the first deployment's rows untouched


@pytest.mark.parametrize("damage", ["garbage", "unknown_version", "row_digest"])
def test_damaged_or_unknown_store_is_refused_logged_and_rebuilt(short: Deployed, tmp_path: Path, damage: str,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    d = short
    make_history(d)
    path = tmp_path / "governance.sqlite"
    pin = d.gov.get_pin_at_head()
    cold = encode_state_at(d, make_reader(d.gov), pin)
    make_reader(d.gov, path).read_snapshot(pin)
    if damage == "garbage":
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        path.write_bytes(b"not a database " * 100)
    else:
        with sqlite3.connect(path) as db:
            if damage == "unknown_version":
                db.execute("PRAGMA user_version = 99")
            else:
                db.execute("UPDATE settled SET body = replace(body, '\"choice\":1', '\"choice\":2')")
        db.close()
    with caplog.at_level(logging.WARNING, logger="node.governance_store"):
        node = make_reader(d.gov, path)
        assert encode_state_at(d, node, pin) == cold  # the node continues: everything read again
    refused = [r for r in caplog.records if "governance store refused" in r.getMessage()]
    assert len(refused) == 1, caplog.text
    reason = str(getattr(refused[0], "reason", ""))
    expected = {"garbage": "not a database", "unknown_version": "format version 99", "row_digest": "digest mismatch"}
    assert expected[damage] in reason, reason
    assert node.proposal_reads == 3
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == FORMAT_VERSION
    db.close()
    assert len(make_store(path, d.gov).load()) == 3  # rebuilt with the fresh reads


def test_deep_reorg_below_an_anchor_drops_and_rereads_its_entries(short: Deployed, tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    d = short
    path = tmp_path / "governance.sqlite"
    kept, _ = d.gov.propose(d.keys[0], PARAMS, encode_params(WIDE_BTC), 3, 3)
    d.mine(SETTLE)
    live_node = make_reader(d.gov, path, every=1)
    live_node.read_snapshot(d.gov.get_pin_at_head())  # `kept` anchored below the fork
    fork = rpc_call(d.chain.rpc_url, "evm_snapshot")
    orphan, _ = d.gov.propose(d.keys[1], PARAMS, encode_params(WIDE_BTC), PERIOD, 3)
    for key in d.keys[:3]:
        d.gov.vote(key, orphan, YES)
    d.mine(SETTLE)
    before = d.gov.get_pin_at_head()
    outcome = read_governance_state(live_node, before, d.genesis).get_proposal(orphan)
    assert outcome is not None and outcome.status is ProposalStatus.APPROVED
    anchors = sorted(e.anchor_number for e in make_store(path, d.gov).load())
    assert len(anchors) == 2 and anchors[0] < anchors[1] == before.number

    rpc_call(d.chain.rpc_url, "evm_revert", [fork])  # a reorg of SETTLE + 1 blocks replaces the orphan
    replaced, _ = d.gov.propose(d.keys[2], PARAMS, encode_params(WIDE_BTC), 5, 4)  # same id, no votes
    d.mine(SETTLE + 20)
    pin = d.gov.get_pin_at_head()
    assert pin.number > before.number and replaced == orphan
    cold = encode_state_at(d, make_reader(d.gov), pin)
    with caplog.at_level(logging.WARNING, logger="bridges.governance_chain"):
        restarted = make_reader(d.gov, path)
        state = read_governance_state(restarted, pin, d.genesis)
        assert encode_governance_state(state) == cold
        assert encode_state_at(d, live_node, pin) == cold  # the running node's check (every snapshot here)
    assert restarted.proposal_reads == 1 and live_node.proposal_reads == 3  # only the replaced one, again
    assert state.get_proposal(replaced).status is ProposalStatus.EXPIRED  # type: ignore[union-attr]
    warnings = [r for r in caplog.records if "no longer canonical" in r.getMessage()]
    assert [(getattr(r, "dropped", None), getattr(r, "fork_block", None)) for r in warnings] == [
        (1, before.number), (1, before.number)]
    stored = make_store(path, d.gov).load()
    assert len(stored) == 2 and (stored[0].record.proposal_id, stored[0].anchor_number) == (kept, anchors[0])
    assert stored[1].record.proposer == d.validators[2] and stored[1].anchor_number == pin.number


def test_node_source_keeps_settled_proposals_in_its_data_dir(short: Deployed, tmp_path: Path) -> None:
    """The node's builder (`build_governance_source(..., data_dir)`, settled depth 256) over
    `data_dir/governance.sqlite`: a second start reads no settled proposal and derives the same state."""
    d = short
    make_history(d)
    rpc_call(d.chain.rpc_url, "anvil_mine", [hex(SETTLED_DEPTH_BLOCKS)], timeout=60.0)
    pin = d.gov.get_pin_at_head()

    def start() -> tuple[GovernanceScheduleSource, bytes]:
        source = build_governance_source(d.gov.client, d.gov.address, d.validators, 3,
                                         float(d.genesis.clock.genesis_time), float(EPOCH_SECONDS), data_dir=tmp_path)
        return source, encode_governance_state(source.get_state(pin))

    first, state = start()
    assert first.gov.proposal_reads == 3
    assert stat.S_IMODE((tmp_path / "governance.sqlite").stat().st_mode) == 0o600
    second, again = start()
    assert second.gov.proposal_reads == 0 and again == state
