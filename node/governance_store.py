"""Persistence of the settled governance proposals: one SQLite file (WAL), `data_dir/governance.sqlite`.

`bridges.governance_chain.GovernanceChain` reads a proposal whose execution window closed more than
`SETTLED_DEPTH_BLOCKS` below the pin once; this store keeps those reads across restarts, so a restarted
node reads only the live proposals instead of the whole history. Each row is one proposal of one
deployment, keyed by (chain id, lowercase contract address, proposal id): a store opened for another
chain or contract sees none of it. A row holds the proposal and its votes (canonical JSON: ints,
bytes as hex, lowercase addresses, decoded back field by field to the same `ProposalRecord` /
`VoteRecord`), its SHA-256, and the anchor (number, hash) of the pin it was read at; the reader
re-checks the anchors against the chain and calls `drop_from` after a deep reorg.

Invariants: the file is created with mode 0600; the format version is `PRAGMA user_version`
(FORMAT_VERSION; bump it when a record field changes). A file of another version, one that is not an
SQLite database, or a row that does not decode (or whose digest differs) is refused with a WARNING
naming the reason, and the file is deleted and created again empty: the chain is the source of truth,
the reader reads those proposals again. Each save or drop is one transaction (never half-written); a
failing write is logged and the node continues with its in-memory cache. Thread-safe (one connection
per call).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bridges.governance_chain import SettledProposal
from governance.errors import GovernanceError
from governance.proposals import ProposalRecord, VoteRecord, normalize_address

FILE_NAME = "governance.sqlite"
FORMAT_VERSION = 1
SCHEMA = """CREATE TABLE settled (
    chain_id INTEGER NOT NULL, contract TEXT NOT NULL, proposal_id INTEGER NOT NULL,
    anchor_number INTEGER NOT NULL, anchor_hash BLOB NOT NULL, body TEXT NOT NULL, digest BLOB NOT NULL,
    PRIMARY KEY (chain_id, contract, proposal_id))"""
log = logging.getLogger(__name__)


class StoreRefused(Exception):
    """The file or one of its rows cannot be trusted (the message names the reason)."""


HEX_RE = re.compile(r"^(?:[0-9a-f]{2})*$")


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# field kind -> (encode, check of the stored value, decode)
KINDS: dict[str, tuple[Callable[[Any], Any], Callable[[object], bool], Callable[[Any], Any]]] = {
    "int": (lambda v: v, _is_int, lambda v: v),
    "int?": (lambda v: v, lambda v: v is None or _is_int(v), lambda v: v),
    "bool": (lambda v: v, lambda v: isinstance(v, bool), lambda v: v),
    "bytes": (lambda v: v.hex(), lambda v: isinstance(v, str) and HEX_RE.match(v) is not None, bytes.fromhex),
    "address": (lambda v: v, lambda v: isinstance(v, str) and v == v.lower(), normalize_address),
}
PROPOSAL_FIELDS = {"proposal_id": "int", "kind": "int", "proposer": "address", "payload": "bytes",
                   "created_block": "int", "end_block": "int", "activation_epoch": "int", "set_version": "int",
                   "set_size": "int", "executed": "bool", "resulting_set_version": "int", "end_timestamp": "int?",
                   "executed_block": "int", "executed_timestamp": "int?"}
VOTE_FIELDS = {"proposal_id": "int", "voter": "address", "choice": "int", "block_number": "int"}


def _encode_record(value: Any, kinds: dict[str, str]) -> dict[str, Any]:
    out = {}
    for field in dataclasses.fields(value):
        if field.name not in kinds:
            raise ValueError(f"{type(value).__name__}.{field.name}: no stored form (bump FORMAT_VERSION and add it)")
        out[field.name] = KINDS[kinds[field.name]][0](getattr(value, field.name))
    return out


def _decode_record(raw: object, kinds: dict[str, str], cls: Any, where: str) -> Any:
    if not isinstance(raw, dict) or set(raw) != set(kinds):
        raise StoreRefused(f"{where}: fields {sorted(raw) if isinstance(raw, dict) else raw!r}, "
                           f"expected {sorted(kinds)}")
    values = {}
    for name, kind in kinds.items():
        _, check, decode = KINDS[kind]
        if not check(raw[name]):
            raise StoreRefused(f"{where}.{name}: not a stored {kind}: {raw[name]!r}")
        try:
            values[name] = decode(raw[name])
        except (ValueError, GovernanceError) as exc:
            raise StoreRefused(f"{where}.{name}: {exc}") from exc
    return cls(**values)


def encode_entry(entry: SettledProposal) -> str:
    """Canonical JSON of the proposal and its votes (the anchor is stored in its own columns)."""
    body = {"proposal": _encode_record(entry.record, PROPOSAL_FIELDS),
            "votes": [_encode_record(v, VOTE_FIELDS) for v in entry.votes]}
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def decode_entry(body: str, anchor_number: int, anchor_hash: bytes) -> SettledProposal:
    try:
        raw = json.loads(body)
    except ValueError as exc:
        raise StoreRefused(f"body: not JSON: {exc}") from exc
    if not isinstance(raw, dict) or set(raw) != {"proposal", "votes"} or not isinstance(raw["votes"], list):
        raise StoreRefused("body: expected {proposal, votes[]}")
    record = _decode_record(raw["proposal"], PROPOSAL_FIELDS, ProposalRecord, "proposal")
    votes = tuple(_decode_record(v, VOTE_FIELDS, VoteRecord, f"votes[{i}]") for i, v in enumerate(raw["votes"]))
    if any(v.proposal_id != record.proposal_id for v in votes):
        raise StoreRefused(f"votes: a vote of another proposal under proposal {record.proposal_id}")
    if not _is_int(anchor_number) or not isinstance(anchor_hash, bytes) or len(anchor_hash) != 32:
        raise StoreRefused(f"anchor: not a (block number, 32-byte hash): {anchor_number!r}")
    return SettledProposal(record, votes, anchor_number, anchor_hash)


class GovernanceStore:
    """The settled proposals of the Governance contract `address` on chain `chain_id` (`SettledStore`)."""

    def __init__(self, path: str | Path, chain_id: int, address: str) -> None:
        self.path = Path(path)
        self.chain_id = chain_id
        self.address = normalize_address(address, "governance_address")
        try:
            self._open()
        except (StoreRefused, sqlite3.DatabaseError) as exc:
            self._rebuild(str(exc))

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One connection, one transaction: committed when the block ends, rolled back if it raises."""
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    def _open(self) -> None:
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=WAL")
            finally:
                db.close()
        with self._transaction() as db:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            tables = int(db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0])
            if version == 0 and tables == 0:  # a new file: schema and version in one transaction
                db.execute(SCHEMA)
                db.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
            elif version != FORMAT_VERSION:
                raise StoreRefused(f"format version {version}, this node reads version {FORMAT_VERSION}")

    def _rebuild(self, reason: str) -> None:
        """Refuse the file (WARNING with the reason), delete it and create it again empty."""
        log.warning("governance store refused, created again empty; settled proposals are read from the chain",
                    extra={"path": self.path.name, "reason": reason, "chain_id": self.chain_id})
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        self._open()

    def load(self) -> list[SettledProposal]:
        """This deployment's entries by proposal id; a damaged file is refused, rebuilt, and [] returned."""
        try:
            with self._transaction() as db:
                rows = db.execute("SELECT proposal_id, anchor_number, anchor_hash, body, digest FROM settled "
                                  "WHERE chain_id = ? AND contract = ? ORDER BY proposal_id",
                                  (self.chain_id, self.address)).fetchall()
            entries = []
            for pid, number, anchor_hash, body, digest in rows:
                if not isinstance(body, str) or hashlib.sha256(body.encode()).digest() != digest:
                    raise StoreRefused(f"proposal {pid}: digest mismatch")
                entry = decode_entry(body, number, anchor_hash)
                if entry.record.proposal_id != pid:
                    raise StoreRefused(f"proposal {pid}: row holds proposal {entry.record.proposal_id}")
                entries.append(entry)
        except (StoreRefused, sqlite3.DatabaseError) as exc:
            self._rebuild(str(exc))
            return []
        return entries

    def save(self, entries: Sequence[SettledProposal]) -> None:
        """Insert or replace `entries` in one transaction."""
        rows = []
        for e in entries:
            body = encode_entry(e)
            rows.append((self.chain_id, self.address, e.record.proposal_id, e.anchor_number, e.anchor_hash,
                         body, hashlib.sha256(body.encode()).digest()))
        try:
            with self._transaction() as db:
                db.executemany("INSERT OR REPLACE INTO settled VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        except sqlite3.Error as exc:
            log.warning("governance store: save failed, kept in memory only",
                        extra={"path": self.path.name, "reason": str(exc), "proposals": len(rows)})

    def drop_from(self, block_number: int) -> int:
        """Delete this deployment's entries anchored at or above `block_number`; returns how many."""
        try:
            with self._transaction() as db:
                cur = db.execute("DELETE FROM settled WHERE chain_id = ? AND contract = ? AND anchor_number >= ?",
                                 (self.chain_id, self.address, block_number))
                return int(cur.rowcount)
        except sqlite3.Error as exc:  # the reader re-checks the anchors after a restart
            log.warning("governance store: drop failed", extra={"path": self.path.name, "reason": str(exc)})
            return 0
