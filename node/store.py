"""SQLite implementation of `node.ports.Store` (the node's embedded persistence).

Persists, in one database file (WAL journal, `synchronous=FULL`):
- `signing`: the single last-signed (epoch, digest) row: durable before `record_signing` returns,
  checked and written inside one `BEGIN IMMEDIATE` transaction, so two writers (even two processes)
  cannot both pass the check, and a node restarted after SIGKILL never signs twice;
- `states` (one row per epoch); an epoch's leaves as columns (`node.leaves.EpochLeaves`): one
  `leaf_sets` row (leaf count and the flat Merkle tree: nodes and leaf positions, so readers never
  rehash) and its `leaf_groups` rows (`node.leafblob`: row groups of columnar blobs keyed by their
  first account); `put_signed_state` writes a state and all its leaves in one transaction (all or
  nothing), and deleting a state deletes its leaves (foreign keys, cascading);
- `account_failures`: why accounts got no leaf in an epoch (at most MAX_STORED_FAILURES per epoch),
  written with the epoch's leaves;
- `evidence` (append-only, duplicates ignored) and `meta` (key -> bytes).
Retention: `prune_leaves(keep_epochs)` deletes the leaves and failures (not the states) of older epochs; the
node runs it periodically (`[node].keep_leaf_epochs`).

Invariants: reads return exactly what was written (bytes/ints round-trip; `detail` unchanged);
the schema version is `PRAGMA user_version`, and `MIGRATIONS[v]` upgrades v -> v+1 inside one
transaction (SQL statements separated by ";", none inside a statement, or a function of the
connection); a database newer than this code is refused (`StoreError`). Version 2 moved the per-row
`leaves` table of version 1 into the columnar tables (every old leaf kept exactly). Threads: one
writer connection behind a lock, one reader connection per reading thread (WAL lets readers run
while the writer commits; every read sees one committed snapshot).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from bridges.errors import InvalidLeafValue
from bridges.merkle import MerkleTree
from node import leafblob
from node.leaves import EpochLeaves
from node.ports import MAX_STORED_FAILURES, DoubleSignRefused, NodeError
from node.records import AccountLeaf, ChainPin, Evidence, SignedState

LOG = logging.getLogger(__name__)
BUSY_TIMEOUT_MS = 10_000
PAGE_SIZE = 65_536  # for new files: large pages write and read the leaf blobs about 3x faster
MAX_LIST_LIMIT = 10_000
WITHDRAWAL_ID_LEN = 32

Migration = str | Callable[[sqlite3.Connection], None]
LEAF_TABLES = """
    CREATE TABLE leaf_sets (
        epoch INTEGER PRIMARY KEY REFERENCES states(epoch) ON DELETE CASCADE,
        leaf_count INTEGER NOT NULL,
        tree_nodes BLOB NOT NULL,
        tree_index BLOB NOT NULL
    );
    CREATE TABLE leaf_groups (
        epoch INTEGER NOT NULL REFERENCES leaf_sets(epoch) ON DELETE CASCADE,
        first_account BLOB NOT NULL,
        first_row INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (epoch, first_account)
    );
"""


def _execute_script(conn: sqlite3.Connection, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def _migrate_leaves_to_columns(conn: sqlite3.Connection) -> None:
    """v1 -> v2: every epoch of the per-row `leaves` table becomes columnar leaves, then the table goes."""
    _execute_script(conn, LEAF_TABLES)
    epochs = [int(r[0]) for r in conn.execute("SELECT DISTINCT epoch FROM leaves ORDER BY epoch")]
    for epoch in epochs:
        rows = conn.execute(f"SELECT {V1_LEAF_COLUMNS} FROM leaves WHERE epoch = ? ORDER BY idx", (epoch,)).fetchall()
        try:
            leaves = EpochLeaves.from_records(epoch, [_v1_leaf_from_row(r) for r in rows])
        except InvalidLeafValue as exc:
            raise StoreError(f"migration to schema 2: epoch {epoch}: {exc}") from exc
        _insert_leaves(conn, leaves)
    conn.execute("DROP TABLE leaves")


MIGRATIONS: tuple[Migration, ...] = (
    # v0 -> v1: the initial schema.
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
    CREATE TABLE signing (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        epoch INTEGER NOT NULL,
        digest BLOB NOT NULL
    );
    CREATE TABLE states (
        epoch INTEGER PRIMARY KEY,
        network_id INTEGER NOT NULL,
        keyset_id INTEGER NOT NULL,
        pins TEXT NOT NULL,
        inputs_digest BLOB NOT NULL,
        params_hash BLOB NOT NULL,
        root BLOB NOT NULL,
        leaf_count INTEGER NOT NULL,
        digest BLOB NOT NULL,
        signature BLOB NOT NULL,
        signers TEXT NOT NULL
    );
    CREATE TABLE leaves (
        epoch INTEGER NOT NULL REFERENCES states(epoch) ON DELETE CASCADE,
        account BLOB NOT NULL,
        idx INTEGER NOT NULL,
        equity TEXT NOT NULL,
        im TEXT NOT NULL,
        mm TEXT NOT NULL,
        flags INTEGER NOT NULL,
        approved BLOB NOT NULL,
        encoded BLOB NOT NULL,
        detail BLOB NOT NULL,
        PRIMARY KEY (epoch, account)
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX leaves_by_index ON leaves (epoch, idx);
    CREATE TABLE evidence (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        epoch INTEGER NOT NULL,
        signer_index INTEGER NOT NULL,
        first BLOB NOT NULL,
        second BLOB NOT NULL,
        note TEXT NOT NULL,
        UNIQUE (kind, epoch, signer_index, first, second)
    );
    """,
    # v1 -> v2: columnar leaves (one transaction per epoch's leaves, a blob per row group).
    _migrate_leaves_to_columns,
    # v2 -> v3: why accounts got no leaf in an epoch (pruned with the leaves).
    """
    CREATE TABLE account_failures (
        epoch INTEGER NOT NULL REFERENCES states(epoch) ON DELETE CASCADE,
        account BLOB NOT NULL,
        field TEXT NOT NULL,
        reason TEXT NOT NULL,
        PRIMARY KEY (epoch, account)
    ) WITHOUT ROWID;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(NodeError):
    """The database cannot be opened, migrated or holds a value this code cannot read."""


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                           check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _pins_to_text(pins: Sequence[ChainPin]) -> str:
    return json.dumps([[p.chain_id, p.number, p.block_hash.hex()] for p in pins])


def _pins_from_text(text: str) -> tuple[ChainPin, ...]:
    return tuple(ChainPin(int(c), int(n), bytes.fromhex(h)) for c, n, h in json.loads(text))


def _state_from_row(row: sqlite3.Row | tuple) -> SignedState:
    (epoch, network_id, keyset_id, pins, inputs_digest, params_hash, root, leaf_count, digest,
     signature, signers) = row
    return SignedState(
        network_id=network_id, keyset_id=keyset_id, epoch=epoch, pins=_pins_from_text(pins),
        inputs_digest=bytes(inputs_digest), params_hash=bytes(params_hash), root=bytes(root),
        leaf_count=leaf_count, digest=bytes(digest), signature=bytes(signature),
        signers=tuple(int(s) for s in json.loads(signers)),
    )


def _v1_leaf_from_row(row: tuple) -> AccountLeaf:
    epoch, account, idx, equity, im, mm, flags, approved, encoded, detail = row
    approved = bytes(approved)
    ids = tuple(approved[i:i + WITHDRAWAL_ID_LEN] for i in range(0, len(approved), WITHDRAWAL_ID_LEN))
    return AccountLeaf(epoch=epoch, index=idx, account=bytes(account), equity=int(equity), im=int(im),
                       mm=int(mm), flags=flags, approved_withdrawals=ids, encoded=bytes(encoded),
                       detail=bytes(detail))


def _insert_leaves(conn: sqlite3.Connection, leaves: EpochLeaves) -> None:
    if not len(leaves):
        return
    tree = leaves.tree
    conn.execute("INSERT INTO leaf_sets (epoch, leaf_count, tree_nodes, tree_index) VALUES (?, ?, ?, ?)",
                 (leaves.epoch, len(leaves), tree.nodes.tobytes(), tree.tree_index.astype("<i8").tobytes()))
    conn.executemany("INSERT INTO leaf_groups (epoch, first_account, first_row, data) VALUES (?, ?, ?, ?)",
                     ((leaves.epoch, g.first_account, g.first_row, g.data) for g in leafblob.encode_groups(leaves)))


STATE_COLUMNS = ("epoch, network_id, keyset_id, pins, inputs_digest, params_hash, root, leaf_count, "
                 "digest, signature, signers")
V1_LEAF_COLUMNS = "epoch, account, idx, equity, im, mm, flags, approved, encoded, detail"


class SQLiteStore:
    """`Store` on one SQLite file; see the module docstring for the guarantees."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self._writer = _connect(self.path)
        try:
            self._writer.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # no effect on an existing file
            mode = self._writer.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{self.path}: journal_mode is {mode}, WAL required")
            self._migrate()
        except BaseException:
            self._writer.close()
            raise

    # -- lifecycle ---------------------------------------------------------------------------
    def _migrate(self) -> None:
        with self._write_lock:
            version = self._writer.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.path}: schema version {version} is newer than {SCHEMA_VERSION}")
            for target in range(version, SCHEMA_VERSION):
                self._writer.execute("BEGIN IMMEDIATE")
                try:
                    step = MIGRATIONS[target]
                    if isinstance(step, str):
                        _execute_script(self._writer, step)
                    else:
                        step(self._writer)
                    self._writer.execute(f"PRAGMA user_version = {target + 1}")
                    self._writer.execute("COMMIT")
                except BaseException:
                    self._writer.execute("ROLLBACK")
                    raise

    def get_schema_version(self) -> int:
        return int(self._reader().execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        with self._write_lock, self._readers_lock:
            if self._closed:
                return
            self._closed = True
            for conn in self._readers:
                conn.close()
            self._readers.clear()
            self._writer.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise StoreError(f"{self.path}: store is closed")
            conn = _connect(self.path)
            conn.execute("PRAGMA query_only = ON")
            with self._readers_lock:
                self._readers.append(conn)
            self._local.conn = conn
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock:
            if self._closed:
                raise StoreError(f"{self.path}: store is closed")
            self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield self._writer
            except BaseException:
                self._writer.execute("ROLLBACK")
                raise
            self._writer.execute("COMMIT")

    # -- signing record ------------------------------------------------------------------------
    def record_signing(self, epoch: int, digest: bytes) -> None:
        """Durably record that this node signs `digest` for `epoch`; refuse a second signature."""
        with self._transaction() as conn:
            row = conn.execute("SELECT epoch, digest FROM signing WHERE id = 1").fetchone()
            if row is not None:
                last_epoch, last_digest = int(row[0]), bytes(row[1])
                if epoch < last_epoch or (epoch == last_epoch and digest != last_digest):
                    raise DoubleSignRefused(f"epoch {epoch}: already signed epoch {last_epoch}")
            conn.execute("INSERT OR REPLACE INTO signing (id, epoch, digest) VALUES (1, ?, ?)",
                         (epoch, digest))

    def get_last_signed(self) -> tuple[int, bytes] | None:
        row = self._reader().execute("SELECT epoch, digest FROM signing WHERE id = 1").fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    # -- signed states and leaves ----------------------------------------------------------------
    def put_signed_state(self, state: SignedState, leaves: Sequence[AccountLeaf],
                         failures: Sequence[Any] = ()) -> None:
        """Write `state` and its leaves (an `EpochLeaves`, or records in index order with ascending
        accounts) in one transaction, replacing a previous copy of the epoch. The Merkle tree of the
        leaves is stored with them (built here unless `leaves.tree` was already built), and the first
        MAX_STORED_FAILURES `failures` (account "0x..", field, reason: why an account got no leaf)."""
        rows = [(state.epoch, bytes.fromhex(f.account.removeprefix("0x")), f.field, f.reason)
                for f in failures[:MAX_STORED_FAILURES]]
        try:
            columns = EpochLeaves.from_records(state.epoch, leaves)
        except InvalidLeafValue as exc:
            raise StoreError(f"leaves of epoch {state.epoch}: {exc}") from exc
        _ = columns.tree if len(columns) else None  # hash outside the writer lock
        with self._transaction() as conn:
            conn.execute("DELETE FROM states WHERE epoch = ?", (state.epoch,))
            conn.execute(
                f"INSERT INTO states ({STATE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (state.epoch, state.network_id, state.keyset_id, _pins_to_text(state.pins),
                 state.inputs_digest, state.params_hash, state.root, state.leaf_count, state.digest,
                 state.signature, json.dumps(list(state.signers))),
            )
            _insert_leaves(conn, columns)
            conn.executemany("INSERT OR REPLACE INTO account_failures (epoch, account, field, reason) "
                             "VALUES (?, ?, ?, ?)", rows)

    def get_signed_state(self, epoch: int) -> SignedState | None:
        row = self._reader().execute(f"SELECT {STATE_COLUMNS} FROM states WHERE epoch = ?", (epoch,)).fetchone()
        return None if row is None else _state_from_row(row)

    def get_latest_signed_state(self) -> SignedState | None:
        row = self._reader().execute(
            f"SELECT {STATE_COLUMNS} FROM states ORDER BY epoch DESC LIMIT 1").fetchone()
        return None if row is None else _state_from_row(row)

    def list_signed_states(self, from_epoch: int, limit: int) -> list[SignedState]:
        limit = max(0, min(limit, MAX_LIST_LIMIT))
        rows = self._reader().execute(
            f"SELECT {STATE_COLUMNS} FROM states WHERE epoch >= ? ORDER BY epoch LIMIT ?",
            (from_epoch, limit)).fetchall()
        return [_state_from_row(r) for r in rows]

    def get_leaf(self, epoch: int, account: bytes) -> AccountLeaf | None:
        """One account's leaf: the row group whose first account is the greatest <= `account` (index
        lookup), then a binary search inside that group's blob."""
        row = self._reader().execute(
            "SELECT first_row, data FROM leaf_groups WHERE epoch = ? AND first_account <= ? "
            "ORDER BY first_account DESC LIMIT 1", (epoch, account)).fetchone()
        if row is None:
            return None
        return leafblob.find_in_group(epoch, self._decode_group(row), account)

    def get_epoch_leaves(self, epoch: int) -> EpochLeaves | None:
        """All leaves of `epoch` as columns (None when the store holds none)."""
        rows = self._reader().execute(
            "SELECT first_row, data FROM leaf_groups WHERE epoch = ? ORDER BY first_row", (epoch,)).fetchall()
        if not rows:
            return None
        return leafblob.decode_epoch(epoch, [self._decode_group(r) for r in rows])

    def get_leaves(self, epoch: int) -> list[AccountLeaf]:
        """Every leaf of `epoch` as records in index order (builds one object per leaf: not for large
        epochs; use `get_epoch_leaves`)."""
        leaves = self.get_epoch_leaves(epoch)
        return [] if leaves is None else list(leaves)

    def get_failure(self, epoch: int, account: bytes) -> tuple[str, str] | None:
        """(field, reason) of why `account` got no leaf in `epoch`, if this node computed and kept it."""
        row = self._reader().execute("SELECT field, reason FROM account_failures WHERE epoch = ? AND account = ?",
                                     (epoch, account)).fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    def has_leaves(self, epoch: int) -> bool:
        return self._reader().execute("SELECT 1 FROM leaf_sets WHERE epoch = ?", (epoch,)).fetchone() is not None

    def get_leaf_tree(self, epoch: int) -> MerkleTree | None:
        """The stored Merkle tree of `epoch`'s leaves (leaf i = index i), or None without leaves."""
        row = self._reader().execute(
            "SELECT leaf_count, tree_nodes, tree_index FROM leaf_sets WHERE epoch = ?", (epoch,)).fetchone()
        if row is None:
            return None
        n, nodes, index = int(row[0]), bytes(row[1]), bytes(row[2])
        if len(nodes) != (2 * n - 1) * 32 or len(index) != 8 * n:
            raise StoreError(f"epoch {epoch}: stored Merkle tree does not match its {n} leaves")
        return MerkleTree(nodes=np.frombuffer(nodes, dtype=np.uint8).reshape(2 * n - 1, 32),
                          tree_index=np.frombuffer(index, dtype="<i8").astype(np.int64))

    def get_encoded_leaves(self, epoch: int) -> list[tuple[bytes, int, bytes]]:
        """(account, index, encoded) of every leaf of `epoch` in index order."""
        return [(x.account, x.index, x.encoded) for x in self.get_leaves(epoch)]

    def _decode_group(self, row: tuple) -> leafblob.Group:
        try:
            return leafblob.decode_group(int(row[0]), bytes(row[1]))
        except leafblob.LeafBlobError as exc:
            raise StoreError(f"{self.path}: {exc}") from exc

    def prune_leaves(self, keep_epochs: int, max_epochs: int = 16) -> list[int]:
        """Delete the leaves of epochs older than the newest `keep_epochs` signed states, at most
        `max_epochs` epochs per call, one transaction per epoch (short writer holds). Signed states,
        evidence and the signing record are kept. Returns the pruned epochs."""
        if keep_epochs <= 0:
            return []
        row = self._reader().execute("SELECT epoch FROM states ORDER BY epoch DESC LIMIT 1 OFFSET ?",
                                     (keep_epochs - 1,)).fetchone()
        if row is None:
            return []
        old = [int(r[0]) for r in self._reader().execute(
            "SELECT epoch FROM leaf_sets WHERE epoch < ? ORDER BY epoch LIMIT ?", (int(row[0]), max_epochs))]
        for epoch in old:
            with self._transaction() as conn:
                conn.execute("DELETE FROM leaf_sets WHERE epoch = ?", (epoch,))
        with self._transaction() as conn:  # also epochs in which every account failed (no leaf set)
            conn.execute("DELETE FROM account_failures WHERE epoch < ?", (int(row[0]),))
        return old

    # -- evidence and meta -------------------------------------------------------------------------
    def put_evidence(self, evidence: Evidence) -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO evidence (kind, epoch, signer_index, first, second, note) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (evidence.kind, evidence.epoch, evidence.signer_index, evidence.first, evidence.second,
                 evidence.note))

    def list_evidence(self, limit: int = 1000) -> list[Evidence]:
        limit = max(0, min(limit, MAX_LIST_LIMIT))
        rows = self._reader().execute(
            "SELECT kind, epoch, signer_index, first, second, note FROM evidence ORDER BY id LIMIT ?",
            (limit,)).fetchall()
        return [Evidence(kind=k, epoch=e, signer_index=s, first=bytes(f), second=bytes(c), note=n)
                for k, e, s, f, c, n in rows]

    def put_meta(self, key: str, value: bytes) -> None:
        with self._transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def get_meta(self, key: str) -> bytes | None:
        row = self._reader().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def check_integrity(self) -> str:
        """`PRAGMA integrity_check` result ("ok" when the file is sound)."""
        return str(self._reader().execute("PRAGMA integrity_check").fetchone()[0])


class LeafPruner:
    """Daemon thread running `store.prune_leaves(keep_epochs)` every `interval_s` until `stop()`."""

    def __init__(self, store: SQLiteStore, keep_epochs: int, interval_s: float) -> None:
        self.store = store
        self.keep_epochs = keep_epochs
        self.interval_s = interval_s
        self.pruned: list[int] = []  # last call's epochs (for tests and logs)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leaf-pruner", daemon=True)

    def start(self) -> LeafPruner:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.pruned = self.store.prune_leaves(self.keep_epochs)
            except Exception:  # a busy or closing store: try again next round
                LOG.exception("pruning leaves failed")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
