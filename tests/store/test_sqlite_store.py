"""SQLiteStore: round trips, atomic writes, the never-sign-twice record, migrations, concurrent
readers, and crash safety under SIGKILL of a writing subprocess (real SQLite files)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from node.ports import DoubleSignRefused
from node.store import SCHEMA_VERSION, SQLiteStore, StoreError
from tests.store.factories import make_evidence, make_leaf, make_state

REPO = Path(__file__).resolve().parents[2]


def test_round_trip_state_leaves_evidence_meta(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "n.sqlite") as store:
        state, leaves = make_state(5, 40)
        store.put_signed_state(state, leaves)
        assert store.get_signed_state(5) == state
        assert store.get_latest_signed_state() == state
        assert store.get_leaves(5) == leaves
        assert store.get_leaf(5, leaves[7].account) == leaves[7]
        assert store.get_leaf(5, b"\xff" * 20) is None
        assert store.get_signed_state(4) is None
        ev = make_evidence(5, 2)
        store.put_evidence(ev)
        store.put_evidence(ev)  # duplicate ignored
        assert store.list_evidence() == [ev]
        store.put_meta("k", b"\x00\x01")
        assert store.get_meta("k") == b"\x00\x01"
        assert store.get_meta("missing") is None
    with SQLiteStore(tmp_path / "n.sqlite") as store:  # durable across reopen
        assert store.get_leaves(5) == leaves
        assert store.list_evidence() == [ev]


def test_amounts_beyond_int64_round_trip(tmp_path: Path) -> None:
    state, leaves = make_state(1, 1)
    big = replace(leaves[0], equity=-(2**200), im=2**255 - 1, mm=2**70)
    with SQLiteStore(tmp_path / "n.sqlite") as store:
        store.put_signed_state(state, [big])
        assert store.get_leaf(1, big.account) == big


def test_latest_and_listing(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "n.sqlite") as store:
        for e in (3, 1, 2, 10):
            store.put_signed_state(*make_state(e, 2))
        assert store.get_latest_signed_state().epoch == 10
        assert [s.epoch for s in store.list_signed_states(2, 2)] == [2, 3]
        assert [s.epoch for s in store.list_signed_states(0, 100)] == [1, 2, 3, 10]


def test_invalid_leaf_epoch_writes_nothing(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "n.sqlite") as store:
        state, leaves = make_state(2, 5)
        with pytest.raises(StoreError, match="epoch"):
            store.put_signed_state(state, [*leaves, make_leaf(3, 5, b"\x09" * 20)])
        assert store.get_signed_state(2) is None
        assert store.get_leaves(2) == []


def test_invalid_duplicate_leaf_index_rolls_back_whole_state(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "n.sqlite") as store:
        state, leaves = make_state(2, 5)
        dup = replace(leaves[1], account=b"\x77" * 20, index=leaves[0].index)
        with pytest.raises(StoreError, match=r"leaves\[5\]\.index"):
            store.put_signed_state(state, [*leaves, dup])
        assert store.get_signed_state(2) is None
        assert store.get_leaves(2) == []
        store.put_signed_state(state, leaves)  # the writer is usable afterwards
        assert store.get_leaves(2) == leaves


def test_replacing_an_epoch_replaces_its_leaves(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "n.sqlite") as store:
        state, leaves = make_state(2, 5)
        store.put_signed_state(state, leaves)
        store.put_signed_state(state, leaves[:2])
        assert store.get_leaves(2) == leaves[:2]


def test_record_signing_refuses_double_sign_across_restart(tmp_path: Path) -> None:
    path = tmp_path / "n.sqlite"
    with SQLiteStore(path) as store:
        assert store.get_last_signed() is None
        store.record_signing(4, b"a" * 32)
        store.record_signing(4, b"a" * 32)  # same decision again is allowed
        store.record_signing(5, b"b" * 32)
    with SQLiteStore(path) as store:
        assert store.get_last_signed() == (5, b"b" * 32)
        with pytest.raises(DoubleSignRefused):
            store.record_signing(5, b"c" * 32)
        with pytest.raises(DoubleSignRefused):
            store.record_signing(4, b"a" * 32)
        assert store.get_last_signed() == (5, b"b" * 32)


def test_invalid_double_sign_from_two_processes_only_one_wins(tmp_path: Path) -> None:
    path = tmp_path / "n.sqlite"
    SQLiteStore(path).close()
    code = ("import sys; from node.store import SQLiteStore; from node.ports import DoubleSignRefused\n"
            "s = SQLiteStore(sys.argv[1])\n"
            "try:\n    s.record_signing(9, sys.argv[2].encode() * 32); print('signed')\n"
            "except DoubleSignRefused:\n    print('refused')\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), d], cwd=REPO, stdout=subprocess.PIPE,
                              text=True) for d in "xy"]
    outs = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert outs == ["refused", "signed"]


def test_schema_version_and_newer_schema_refused(tmp_path: Path) -> None:
    path = tmp_path / "n.sqlite"
    with SQLiteStore(path) as store:
        assert store.get_schema_version() == SCHEMA_VERSION
        assert store.check_integrity() == "ok"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        SQLiteStore(path)


def test_wal_mode_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "n.sqlite"
    SQLiteStore(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_readers_see_whole_states_while_one_writer_writes(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "n.sqlite")
    n_leaves = 50
    stop = threading.Event()
    errors: list[str] = []

    def read() -> None:
        while not stop.is_set():
            latest = store.get_latest_signed_state()
            if latest is None:
                continue
            got = store.get_leaves(latest.epoch)
            if len(got) != n_leaves:
                errors.append(f"epoch {latest.epoch}: {len(got)} leaves")

    readers = [threading.Thread(target=read) for _ in range(4)]
    for t in readers:
        t.start()
    for epoch in range(1, 41):
        store.put_signed_state(*make_state(epoch, n_leaves))
    stop.set()
    for t in readers:
        t.join(timeout=30)
    store.close()
    assert errors == []


@pytest.mark.parametrize("kill_after", [3, 11, 26])
def test_sigkill_during_writes_loses_nothing_committed_and_never_signs_twice(tmp_path: Path,
                                                                          kill_after: int) -> None:
    path = tmp_path / "n.sqlite"
    n_leaves = 300
    start = 1
    last_stored = last_signed = 0
    for _round in range(2):  # kill, restart from where the store says, kill again
        proc = subprocess.Popen([sys.executable, str(REPO / "tests/store/crash_writer.py"), str(path),
                                 str(start), str(n_leaves)], cwd=REPO, stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
        assert proc.stdout is not None
        for line in proc.stdout:
            what, epoch = line.split()
            if what == "signed":
                last_signed = int(epoch)
            else:
                last_stored = int(epoch)
                if last_stored >= start + kill_after:
                    break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        with SQLiteStore(path) as store:
            assert store.check_integrity() == "ok"
            signed = store.get_last_signed()
            assert signed is not None and signed[0] >= last_signed
            latest = store.get_latest_signed_state()
            assert latest is not None and latest.epoch >= last_stored
            for epoch in range(1, latest.epoch + 1):  # every committed state is whole and exact
                state, leaves = make_state(epoch, n_leaves)
                assert store.get_signed_state(epoch) == state
                assert store.get_leaves(epoch) == leaves
            assert int(store.get_meta("last_epoch") or b"0") >= last_stored
            with pytest.raises(DoubleSignRefused):
                store.record_signing(signed[0], b"\xee" * 32)
            with pytest.raises(DoubleSignRefused):
                store.record_signing(signed[0] - 1, make_state(signed[0] - 1, 1)[0].digest)
            start = signed[0] + 1


def test_encoded_leaves_match_full_leaves(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "n.sqlite") as store:
        state, leaves = make_state(2, 9)
        store.put_signed_state(state, leaves)
        assert store.get_encoded_leaves(2) == [(x.account, x.index, x.encoded) for x in leaves]
        assert store.get_encoded_leaves(3) == []


def test_migration_upgrades_an_existing_file_and_keeps_data(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import node.store as store_module

    path = tmp_path / "n.sqlite"
    state, leaves = make_state(3, 4)
    with SQLiteStore(path) as store:
        store.put_signed_state(state, leaves)
        store.record_signing(3, state.digest)
    extra = "CREATE TABLE governance_cache (key TEXT PRIMARY KEY, value BLOB NOT NULL);"
    monkeypatch.setattr(store_module, "MIGRATIONS", (*store_module.MIGRATIONS, extra))
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", len(store_module.MIGRATIONS))
    with SQLiteStore(path) as store:
        assert store.get_schema_version() == SCHEMA_VERSION + 1
        assert store.get_leaves(3) == leaves and store.get_last_signed() == (3, state.digest)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'governance_cache'").fetchone()
    conn.close()


def test_invalid_migration_rolls_back_and_keeps_the_old_version(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import node.store as store_module

    path = tmp_path / "n.sqlite"
    state, leaves = make_state(3, 4)
    with SQLiteStore(path) as store:
        store.put_signed_state(state, leaves)
    broken = "ALTER TABLE states ADD COLUMN note TEXT; INSERT INTO no_such_table VALUES (1);"
    monkeypatch.setattr(store_module, "MIGRATIONS", (*store_module.MIGRATIONS, broken))
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", len(store_module.MIGRATIONS))
    with pytest.raises(sqlite3.OperationalError):
        SQLiteStore(path)
    monkeypatch.undo()
    with SQLiteStore(path) as store:
        assert store.get_schema_version() == SCHEMA_VERSION
        assert store.get_signed_state(3) == state  # the half-applied step left no trace
    conn = sqlite3.connect(path)
    assert "note" not in [r[1] for r in conn.execute("PRAGMA table_info(states)")]
    conn.close()


def test_prune_leaves_keeps_states_and_recent_leaves(tmp_path: Path) -> None:
    from node.store import LeafPruner

    with SQLiteStore(tmp_path / "n.sqlite") as store:
        for epoch in range(1, 8):
            store.put_signed_state(*make_state(epoch, 3))
        store.record_signing(7, b"\x01" * 32)
        assert store.prune_leaves(0) == []
        assert store.prune_leaves(3, max_epochs=2) == [1, 2]
        assert store.prune_leaves(3) == [3, 4]
        assert store.prune_leaves(3) == []
        assert [len(store.get_leaves(e)) for e in range(1, 8)] == [0, 0, 0, 0, 3, 3, 3]
        assert [s.epoch for s in store.list_signed_states(0, 100)] == list(range(1, 8))
        assert store.get_last_signed() == (7, b"\x01" * 32)
        store.put_signed_state(*make_state(8, 3))
        pruner = LeafPruner(store, 3, 0.05).start()
        deadline = time.monotonic() + 10
        while store.get_leaves(5) and time.monotonic() < deadline:
            time.sleep(0.05)
        pruner.stop()
        assert store.get_leaves(5) == [] and len(store.get_leaves(6)) == 3


def test_account_failures_are_kept_with_their_epoch_capped_and_pruned(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import node.store as store_module
    from bridges.book_merge import AccountFailure

    monkeypatch.setattr(store_module, "MAX_STORED_FAILURES", 3)
    failed = [AccountFailure("0x" + f"{i:040x}", "positions[31337:2]",
                             "chain 31337 oracle.spot.BTC: updated at 5, older than 500s") for i in range(1, 6)]
    with SQLiteStore(tmp_path / "n.sqlite") as store:
        store.put_signed_state(*make_state(1, 3), failures=failed)
        state2, _ = make_state(2, 0)
        store.put_signed_state(state2, [], failures=failed[:1])  # every account failed: no leaf set at all
        for epoch in range(3, 6):
            store.put_signed_state(*make_state(epoch, 3))
        assert store.get_failure(1, (1).to_bytes(20, "big")) == (failed[0].field, failed[0].reason)
        assert store.get_failure(1, (3).to_bytes(20, "big")) is not None
        assert store.get_failure(1, (4).to_bytes(20, "big")) is None  # beyond the cap: not kept
        assert store.get_failure(3, (1).to_bytes(20, "big")) is None
        store.put_signed_state(*make_state(1, 3))  # replacing an epoch replaces its failures
        assert store.get_failure(1, (1).to_bytes(20, "big")) is None
        assert store.get_failure(2, (1).to_bytes(20, "big")) is not None
        store.prune_leaves(2)
        assert store.get_failure(2, (1).to_bytes(20, "big")) is None
