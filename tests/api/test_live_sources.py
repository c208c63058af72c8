"""LiveSources of `clearingd start`: validator set from the validator config, peers and bindings from
the validator's status.json, chain heads over real JSON-RPC (anvil), and the syncing rule."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from bridges.anvil import rpc_call, start_chains
from node.api.live import SYNC_LAG_EPOCHS, LiveSources
from node.consensus.validation import ValidatorSet
from node.store import SQLiteStore
from tests.store.factories import get_test_keyset, make_state


def make_validator(genesis: float = 1000.0, period: float = 10.0) -> SimpleNamespace:
    group, _, public = get_test_keyset()
    vs = ValidatorSet(network_id=7, keyset_id=1, operator_addresses=tuple(bytes([i]) * 20 for i in range(4)),
                      public_shares=tuple(public[i + 1] for i in range(4)), threshold=3, group_key=group)
    return SimpleNamespace(validator_set=vs, index=1, epoch_period_s=period, genesis_time=genesis)


def test_validator_set_peers_and_syncing(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "n.sqlite")
    status = tmp_path / "status.json"
    now = {"t": 1000.0 + 10 * 20 + 1}  # wall-clock epoch 20
    live = LiveSources(store, status, make_validator(), clock=lambda: now["t"])
    vs = live.get_validator_set()
    assert (vs.keyset_id, vs.threshold, vs.self_index, len(vs.validators)) == (1, 3, 1, 4)
    assert vs.validators[2].address == "0x" + "02" * 20 and vs.validators[2].peer_id == ""
    assert live.is_syncing()  # no state at all after genesis + lag
    store.put_signed_state(*make_state(20 - SYNC_LAG_EPOCHS - 1, 2))
    assert live.is_syncing()
    store.put_signed_state(*make_state(20 - SYNC_LAG_EPOCHS, 2))
    assert not live.is_syncing()
    now["t"] = 1000.0 - 50  # before genesis: never syncing
    assert not LiveSources(SQLiteStore(tmp_path / "e.sqlite"), status, make_validator(), clock=lambda: now["t"]).is_syncing()
    assert live.list_peers() == []
    status.write_text(json.dumps({"peer_id": "self", "scores": {"peerX": 1.0, "peerY": 0.1},
                                  "bindings": {"3": "peerX"}}))
    assert [(p.peer_id, p.validator_index) for p in live.list_peers()] == [("peerX", 3), ("peerY", -1)]
    assert live.get_status().peer_id == "self" and live.get_status().validator_index == 1
    accepted, detail = live.request_reread(5, "test")
    assert not accepted and "not supported" in detail
    store.close()


@pytest.mark.slow
def test_chain_status_reads_heads_and_pins(tmp_path: Path) -> None:
    (chain,) = start_chains([31_455])
    try:
        rpc_call(chain.rpc_url, "anvil_mine", ["0x5"])
        store = SQLiteStore(tmp_path / "n.sqlite")
        state, leaves = make_state(3, 2)
        store.put_signed_state(state, leaves)
        live = LiveSources(store, tmp_path / "status.json", None, network_id=7,
                           chains=((31_455, chain.rpc_url), (31337, "http://127.0.0.1:1")))
        ok, down = live.get_status().chains
        assert (ok.chain_id, ok.head_block, ok.healthy) == (31_455, 5, True)
        assert (down.chain_id, down.head_block, down.pinned_block, down.healthy) == (31337, 0, 103, False)
        store.close()
    finally:
        chain.stop()


def test_validator_set_follows_the_key_set_of_the_newest_signed_state(tmp_path: Path) -> None:
    """After a validator-set change the node's status lists the new key set's public data: ListValidators
    serves the key set that signed the newest state, not the configured genesis set."""
    store = SQLiteStore(tmp_path / "n.sqlite")
    status = tmp_path / "status.json"
    live = LiveSources(store, status, make_validator(), clock=lambda: 1000.0)
    _, _, public = get_test_keyset()
    members = ["0x" + (bytes([0x40 + i]) * 20).hex() for i in range(5)]
    status.write_text(json.dumps({"keyset_public": {"1": {
        "threshold": 4, "index": 4, "operators": members,
        "public_shares": [public[(i % 4) + 1].hex() for i in range(5)]}},
        "bindings_by_address": {members[4]: "peerZ"},
        "keysets": {"2": {"index": None, "n": 5, "threshold": 4, "has_share": False, "pending": True},
                    "1": {"index": 1, "n": 4, "threshold": 3, "has_share": True, "pending": False}},
        "reshares": {"7": {"state": "running", "keyset_id": 2, "activation_epoch": 30, "attempts": 1, "error": ""}}}))
    assert live.get_validator_set().validators[0].address == "0x" + "00" * 20  # no signed state yet: configured set
    store.put_signed_state(*make_state(3, 1))
    vs = live.get_validator_set()
    assert (vs.keyset_id, vs.threshold, vs.self_index, len(vs.validators)) == (1, 4, 4, 5)
    assert [v.address for v in vs.validators] == members
    assert vs.validators[4].peer_id == "peerZ" and vs.validators[0].peer_id == ""
    st = live.get_status()  # key sets in id order, "not a member" as -1
    assert [(k.keyset_id, k.index, k.has_share, k.pending) for k in st.keysets] == [(1, 1, True, False),
                                                                                     (2, -1, False, True)]
    assert [(r.proposal_id, r.state, r.activation_epoch) for r in st.reshares] == [(7, "running", 30)]
    store.close()
