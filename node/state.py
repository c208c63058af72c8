"""The margin state of one epoch: columnar leaves, Merkle root and the digest the validators sign.

`build_margin_state(...)` takes the columnar leaves (`node.leaves.EpochLeaves`: leaf hashes in bulk as
`bridges.statecodec` defines them) that `node.pipeline.compute_epoch_state` builds from the risk batch,
the settlement vector and the withdrawal decisions (`node.withdrawals`), and adds the StandardMerkleTree
(`bridges.merkle`) and the state digest. `MarginState` serves leaves, details and proofs by account.

Accounts whose inputs fail (chain-side failures from `bridges.book_merge`, risk `AccountError`s) get no
leaf: no proof can be made for them this epoch, so protocols cannot rely on a stale or partial value
and their withdrawals stay unapproved. They are listed in `MarginState.failures`.

Invariants: pure and deterministic (no clock, no randomness, no set iteration order; floats only
inside the risk engine and the documented rounding); identical inputs give identical bytes in every
process. No Python object per leaf on the way (`leaves` / `details` are views built on access).
Persists nothing; the node stores `get_account_leaves()` (the `EpochLeaves`) and the signed state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar, overload

from bridges.book_merge import AccountFailure
from bridges.merkle import MerkleTree
from bridges.statecodec import (
    MarginLeaf,
    compute_inputs_digest,
    compute_state_digest,
)
from node.leaves import EpochLeaves
from node.records import AccountDetail

RISK_THREADS = 2  # the batch is bit-identical for any thread count


class MarginStateError(Exception):
    """Base of errors of the margin-state builder."""


class InvalidStateInput(MarginStateError):
    """The builder's arguments are inconsistent; the message names the offending field."""


@dataclass(frozen=True)
class WithdrawalDecision:
    chain_id: int
    request_id: int
    account: str
    withdrawal_id: bytes
    deduction: int  # micro-USD haircut value (0 when not evaluated)
    approved: bool
    reason: str  # "approved" or why not


T = TypeVar("T")


class RowView(Sequence[T], Generic[T]):
    """A read-only sequence whose item i is built on access (compares equal to any equal sequence)."""

    def __init__(self, n: int, get: Callable[[int], T]) -> None:
        self._n, self._get = n, get

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, i: int) -> T: ...
    @overload
    def __getitem__(self, i: slice) -> list[T]: ...

    def __getitem__(self, i: int | slice) -> T | list[T]:
        if isinstance(i, slice):
            return [self._get(j) for j in range(*i.indices(self._n))]
        if not -self._n <= i < self._n:
            raise IndexError(f"index {i} outside 0..{self._n - 1}")
        return self._get(i % self._n)

    def __iter__(self) -> Iterator[T]:
        return (self._get(i) for i in range(self._n))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and len(other) == self._n and all(a == b for a, b in zip(self, other,
                                                                                                      strict=True))

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class MarginState:
    """One epoch's computed state: the digest inputs, the columnar leaves (sorted by account) and detail."""

    network_id: int
    keyset_id: int
    epoch: int
    pins: tuple[tuple[int, int, bytes], ...]  # (chain id, block number, block hash), by chain id
    inputs_digest: bytes
    params_hash: bytes
    root: bytes
    leaf_count: int
    digest: bytes
    epoch_leaves: EpochLeaves
    withdrawals: tuple[WithdrawalDecision, ...]
    failures: tuple[AccountFailure, ...]
    tree: MerkleTree

    @property
    def leaves(self) -> RowView[MarginLeaf]:
        """The signed leaves in index order (objects built on access)."""
        return RowView(self.leaf_count, self.epoch_leaves.get_margin_leaf)

    @property
    def details(self) -> RowView[AccountDetail]:
        """The unsigned detail, parallel to `leaves` (objects built on access)."""
        return RowView(self.leaf_count, self.epoch_leaves.get_detail)  # type: ignore[arg-type]

    def get_index(self, account: str) -> int:
        """Leaf index of `account` (any hex case); KeyError if it has no leaf."""
        row = self.epoch_leaves.find(bytes.fromhex(account[2:]))
        if row is None:
            raise KeyError(f"account {account} has no leaf in epoch {self.epoch}")
        return row

    def get_proof(self, account: str) -> list[bytes]:
        return self.tree.get_proof(self.get_index(account))

    def get_account_leaves(self) -> EpochLeaves:
        """The node's persisted records of every leaf (columns; a sequence of `AccountLeaf` views)."""
        return self.epoch_leaves


def build_margin_state(*, network_id: int, keyset_id: int, epoch: int, pins: tuple[tuple[int, int, bytes], ...],
                       params_hash: bytes, leaves: EpochLeaves, withdrawals: tuple[WithdrawalDecision, ...] = (),
                       failures: tuple[AccountFailure, ...] = ()) -> MarginState:
    """The state of columnar `leaves` (built by the caller from arrays): Merkle tree, root, digest.
    `pins` are normalised (chain id, block number, block hash) sorted by chain id."""
    if leaves.epoch != epoch:
        raise InvalidStateInput(f"leaves.epoch: {leaves.epoch} != {epoch}")
    tree = leaves.tree
    inputs_digest = compute_inputs_digest(pins)
    digest = compute_state_digest(network_id, keyset_id, epoch, inputs_digest, params_hash, tree.root, len(leaves))
    return MarginState(network_id=network_id, keyset_id=keyset_id, epoch=epoch, pins=pins,
                       inputs_digest=inputs_digest, params_hash=params_hash, root=tree.root,
                       leaf_count=len(leaves), digest=digest, epoch_leaves=leaves, withdrawals=withdrawals,
                       failures=failures, tree=tree)
