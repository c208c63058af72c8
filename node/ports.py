"""Interfaces the node's components receive through their constructors (composition root in
`node/`), plus in-memory implementations for unit tests.

`Store` is the persistence seam: the embedded default is SQLite (WAL); `MemoryStore` here is the unit
test double. Invariants every implementation keeps:
- `put_signed_state` writes the state and its leaves in one transaction (all or nothing); leaves are
  an `EpochLeaves` (columns) or records in index order with ascending accounts, kept exactly;
- `record_signing(epoch, digest)` is durable before it returns and refuses an epoch <= the last signed
  one with a different digest (`DoubleSignRefused`), so a restarted node never signs twice;
- reads return exactly what was written.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

from bridges.errors import InvalidLeafValue
from bridges.merkle import MerkleTree
from node.leaves import EpochLeaves
from node.records import AccountLeaf, Evidence, SignedState

# Why accounts got no leaf (`bridges.book_merge.AccountFailure`: account "0x..", field, reason) is kept with
# an epoch's leaves for the API, for at most this many accounts per epoch (a mass failure keeps the first).
MAX_STORED_FAILURES = 10_000


class NodeError(Exception):
    """Base of the node's errors."""


class DoubleSignRefused(NodeError):
    """The signer was asked to sign an epoch it already signed (or an older one) with another digest."""


class Clock(Protocol):
    def now(self) -> float: ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class Store(Protocol):
    def record_signing(self, epoch: int, digest: bytes) -> None: ...
    def get_last_signed(self) -> tuple[int, bytes] | None: ...
    def put_signed_state(self, state: SignedState, leaves: Sequence[AccountLeaf],
                         failures: Sequence[Any] = ()) -> None: ...
    def get_failure(self, epoch: int, account: bytes) -> tuple[str, str] | None: ...
    def get_signed_state(self, epoch: int) -> SignedState | None: ...
    def get_latest_signed_state(self) -> SignedState | None: ...
    def list_signed_states(self, from_epoch: int, limit: int) -> list[SignedState]: ...
    def get_leaf(self, epoch: int, account: bytes) -> AccountLeaf | None: ...
    def get_leaves(self, epoch: int) -> list[AccountLeaf]: ...
    def get_epoch_leaves(self, epoch: int) -> EpochLeaves | None: ...
    def has_leaves(self, epoch: int) -> bool: ...
    def get_leaf_tree(self, epoch: int) -> MerkleTree | None: ...
    def put_evidence(self, evidence: Evidence) -> None: ...
    def list_evidence(self, limit: int = 1000) -> list[Evidence]: ...
    def put_meta(self, key: str, value: bytes) -> None: ...
    def get_meta(self, key: str) -> bytes | None: ...


class MemoryStore:
    """In-memory `Store` for unit tests (thread-safe, not durable)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: tuple[int, bytes] | None = None
        self._states: dict[int, SignedState] = {}
        self._leaves: dict[int, EpochLeaves] = {}
        self._failures: dict[int, dict[bytes, tuple[str, str]]] = {}
        self._evidence: list[Evidence] = []
        self._meta: dict[str, bytes] = {}

    def record_signing(self, epoch: int, digest: bytes) -> None:
        with self._lock:
            if self._last is not None:
                last_epoch, last_digest = self._last
                if epoch < last_epoch or (epoch == last_epoch and digest != last_digest):
                    raise DoubleSignRefused(f"epoch {epoch}: already signed epoch {last_epoch}")
            self._last = (epoch, digest)

    def get_last_signed(self) -> tuple[int, bytes] | None:
        return self._last

    def put_signed_state(self, state: SignedState, leaves: Sequence[AccountLeaf],
                         failures: Sequence[Any] = ()) -> None:
        try:
            columns = EpochLeaves.from_records(state.epoch, leaves)
        except InvalidLeafValue as exc:
            raise NodeError(f"leaves of epoch {state.epoch}: {exc}") from exc
        with self._lock:
            self._states[state.epoch] = state
            self._failures[state.epoch] = {bytes.fromhex(f.account.removeprefix("0x")): (f.field, f.reason)
                                           for f in failures[:MAX_STORED_FAILURES]}
            if len(columns):
                self._leaves[state.epoch] = columns
            else:
                self._leaves.pop(state.epoch, None)

    def get_signed_state(self, epoch: int) -> SignedState | None:
        return self._states.get(epoch)

    def get_latest_signed_state(self) -> SignedState | None:
        return self._states[max(self._states)] if self._states else None

    def list_signed_states(self, from_epoch: int, limit: int) -> list[SignedState]:
        return [self._states[e] for e in sorted(self._states) if e >= from_epoch][:limit]

    def get_leaf(self, epoch: int, account: bytes) -> AccountLeaf | None:
        leaves = self._leaves.get(epoch)
        return None if leaves is None else leaves.get(account)

    def get_leaves(self, epoch: int) -> list[AccountLeaf]:
        return list(self._leaves.get(epoch, ()))

    def get_failure(self, epoch: int, account: bytes) -> tuple[str, str] | None:
        return self._failures.get(epoch, {}).get(account)

    def get_epoch_leaves(self, epoch: int) -> EpochLeaves | None:
        return self._leaves.get(epoch)

    def has_leaves(self, epoch: int) -> bool:
        return epoch in self._leaves

    def get_leaf_tree(self, epoch: int) -> MerkleTree | None:
        leaves = self._leaves.get(epoch)
        return None if leaves is None else leaves.tree

    def put_evidence(self, evidence: Evidence) -> None:
        with self._lock:
            self._evidence.append(evidence)

    def list_evidence(self, limit: int = 1000) -> list[Evidence]:
        return self._evidence[:limit]

    def put_meta(self, key: str, value: bytes) -> None:
        self._meta[key] = value

    def get_meta(self, key: str) -> bytes | None:
        return self._meta.get(key)
