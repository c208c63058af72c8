"""SQLiteStore's columnar leaves on real SQLite files: bulk round trips over many row groups, point
reads by binary search, the stored Merkle tree, retention, and the migration of a schema-1 database
(one row per leaf) that keeps serving its old epochs exactly."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from bridges.merkle import keccak256, verify_proof
from node import leafblob
from node.api.snapshot import build_snapshot
from node.records import AccountLeaf, SignedState
from node.store import MIGRATIONS, SCHEMA_VERSION, SQLiteStore, StoreError, _pins_to_text
from tests.store.factories import make_epoch_leaves, make_state


def test_columns_round_trip_over_many_groups(tmp_path: Path) -> None:
    n = 3 * leafblob.GROUP_ROWS + 17
    leaves = make_epoch_leaves(5, n, seed=21)
    state, _ = make_state(5, 0)
    with SQLiteStore(tmp_path / "n.sqlite") as store:
        store.put_signed_state(state, leaves)
        conn = sqlite3.connect(tmp_path / "n.sqlite")
        assert conn.execute("SELECT COUNT(*) FROM leaf_groups WHERE epoch = 5").fetchone()[0] == 4
        conn.close()
        got = store.get_epoch_leaves(5)
        assert got is not None and len(got) == len(leaves)
        for name in ("accounts", "equity", "im", "mm", "flags"):
            assert np.array_equal(getattr(got, name), getattr(leaves, name)), name
        assert np.array_equal(got.detail.risk, leaves.detail.risk)
        assert np.array_equal(got.detail.worst, leaves.detail.worst)
        assert dict(got.approvals) == dict(leaves.approvals)
        rows = [0, 1, leafblob.GROUP_ROWS - 1, leafblob.GROUP_ROWS, leafblob.GROUP_ROWS + 1, len(leaves) - 1,
                *range(3, len(leaves), 97), *leaves.approvals]
        for row in rows:
            assert store.get_leaf(5, leaves.accounts[row].tobytes()) == leaves[row] == got[row]
        for miss in (bytes(20), b"\xff" * 20, leaves.accounts[leafblob.GROUP_ROWS].tobytes()[:19] + b"\x00"):
            if leaves.find(miss) is None:
                assert store.get_leaf(5, miss) is None
        assert store.get_leaf(4, leaves.accounts[0].tobytes()) is None
        assert store.get_leaf(5, leaves.accounts[3].tobytes()[:19]) is None
        tree = store.get_leaf_tree(5)
        assert tree is not None and np.array_equal(tree.nodes, leaves.tree.nodes)
        assert np.array_equal(tree.tree_index, leaves.tree.tree_index)
        assert store.has_leaves(5) and not store.has_leaves(4)


def test_records_and_columns_store_the_same_bytes(tmp_path: Path) -> None:
    state, records = make_state(3, 40)
    with SQLiteStore(tmp_path / "a.sqlite") as a, SQLiteStore(tmp_path / "b.sqlite") as b:
        a.put_signed_state(state, records)
        columns = a.get_epoch_leaves(3)
        assert columns is not None and not columns.verbatim
        b.put_signed_state(state, columns)
        assert b.get_leaves(3) == records
        assert b.get_leaf_tree(3).root == state.root  # type: ignore[union-attr]


def test_retention_keeps_the_newest_epochs_leaves(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "n.sqlite") as store:
        for epoch in range(1, 6):
            state, _ = make_state(epoch, 0)
            store.put_signed_state(state, make_epoch_leaves(epoch, 700, seed=epoch))
        assert store.prune_leaves(2) == [1, 2, 3]
        assert [store.has_leaves(e) for e in range(1, 6)] == [False, False, False, True, True]
        assert store.get_leaf_tree(2) is None and store.get_epoch_leaves(3) is None
        conn = sqlite3.connect(tmp_path / "n.sqlite")
        assert conn.execute("SELECT DISTINCT epoch FROM leaf_groups ORDER BY epoch").fetchall() == [(4,), (5,)]
        conn.close()
        assert [s.epoch for s in store.list_signed_states(0, 10)] == [1, 2, 3, 4, 5]


def write_v1_database(path: Path, states: list[tuple[SignedState, list[AccountLeaf]]]) -> None:
    """A database as the schema-1 code wrote it: one `leaves` row per leaf, amounts as decimal text."""
    conn = sqlite3.connect(path)
    first = MIGRATIONS[0]
    assert isinstance(first, str)
    conn.executescript(first)
    for state, leaves in states:
        conn.execute("INSERT INTO states VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (state.epoch, state.network_id, state.keyset_id, _pins_to_text(state.pins), state.inputs_digest,
                      state.params_hash, state.root, state.leaf_count, state.digest, state.signature,
                      json.dumps(list(state.signers))))
        conn.executemany("INSERT INTO leaves VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
            (x.epoch, x.account, x.index, str(x.equity), str(x.im), str(x.mm), x.flags,
             b"".join(x.approved_withdrawals), x.encoded, x.detail) for x in leaves])
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()


def test_schema_one_database_is_migrated_and_serves_its_old_epochs(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    old = [make_state(1, 30), make_state(2, 1200), make_state(3, 0)]
    state2, leaves2 = old[1]
    big = AccountLeaf(epoch=2, index=len(leaves2), account=b"\xff" * 20, equity=-(2**200), im=2**255 - 1, mm=1,
                      flags=0, approved_withdrawals=(), encoded=b"leaf", detail=b"")
    leaves2 = [*leaves2, big]  # a record the columns cannot hold: kept verbatim
    old[1] = (state2, leaves2)
    write_v1_database(path, old)
    with SQLiteStore(path) as store:
        assert store.get_schema_version() == SCHEMA_VERSION == 3
        for state, leaves in old:
            assert store.get_signed_state(state.epoch) == state
            assert store.get_leaves(state.epoch) == leaves
        assert store.get_leaf(2, big.account) == big
        assert store.get_leaf(2, leaves2[777].account) == leaves2[777]
        assert not store.has_leaves(3)
        snap = build_snapshot(store, old[0][0])
        assert snap.proofs_valid
        for leaf in old[0][1]:
            proof = snap.get_proof(leaf)
            assert proof and verify_proof(old[0][0].root, keccak256(keccak256(leaf.encoded)), proof)
        assert not build_snapshot(store, state2).proofs_valid  # the extra leaf changed the root: no proofs
        state4, leaves4 = make_state(4, 5)
        store.put_signed_state(state4, leaves4)  # the migrated file takes new epochs
        assert store.get_leaves(4) == leaves4
    conn = sqlite3.connect(path)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.close()
    assert "leaves" not in names and {"leaf_sets", "leaf_groups"} <= names


def test_invalid_schema_one_leaves_refuse_migration_and_keep_the_file(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    state, leaves = make_state(1, 4)
    leaves[2], leaves[3] = leaves[3], leaves[2]  # index order no longer ascending by account
    leaves[2], leaves[3] = (AccountLeaf(**{**leaves[2].__dict__, "index": 2}),
                            AccountLeaf(**{**leaves[3].__dict__, "index": 3}))
    write_v1_database(path, [(state, leaves)])
    with pytest.raises(StoreError, match="epoch 1"):
        SQLiteStore(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert conn.execute("SELECT COUNT(*) FROM leaves").fetchone()[0] == 4
    conn.close()


def test_a_leaf_that_differs_from_the_stored_tree_gets_no_proof(tmp_path: Path) -> None:
    path = tmp_path / "n.sqlite"
    state, leaves = make_state(2, 20)
    with SQLiteStore(path) as store:
        store.put_signed_state(state, leaves)
        snap = build_snapshot(store, state)
        assert snap.proofs_valid and snap.get_proof(store.get_leaf(2, leaves[0].account))  # type: ignore[arg-type]
    conn = sqlite3.connect(path)  # flip one bit of row 0's equity inside its group blob
    data = bytearray(conn.execute("SELECT data FROM leaf_groups WHERE epoch = 2").fetchone()[0])
    offset = leafblob.HEADER.size + 20 * 20  # the header, then 20 accounts (400 bytes, 8-aligned)
    assert leafblob.decode_group(0, bytes(data)).columns["equity"][0] == leaves[0].equity
    data[offset] ^= 1  # the low byte of row 0's little-endian equity
    conn.execute("UPDATE leaf_groups SET data = ? WHERE epoch = 2", (bytes(data),))
    conn.commit()
    conn.close()
    with SQLiteStore(path) as store:
        leaf = store.get_leaf(2, leaves[0].account)
        assert leaf is not None and leaf.equity == leaves[0].equity ^ 1
        snap = build_snapshot(store, state)
        assert snap.proofs_valid and snap.get_proof(leaf) == []
        assert snap.get_proof(store.get_leaf(2, leaves[1].account)) != []  # type: ignore[arg-type]
