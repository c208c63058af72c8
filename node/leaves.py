"""One epoch's leaves as columns: `EpochLeaves` (signed leaf values, sparse approvals, unsigned detail).

Row i is leaf index i; accounts are strictly ascending 20-byte addresses, so an account is found by
binary search. Signed columns: equity (int64, may be negative), im, mm, flags (int64 >= 0) and
`approvals` (row -> approved withdrawal ids; rows without approvals absent). Unsigned detail
(`LeafDetail`): equity before withdrawals, risk array (n, S) int64, worst scenario int32 (-1: none)
and per-chain collateral rows (`CollateralRows`, CSR, token base units below 2^128). Leaf hashes and
the Merkle tree come from `bridges.statecodec` / `bridges.merkle` in bulk (the tree is built once,
on first use, and cached).

`EpochLeaves` is also a read-only `Sequence[AccountLeaf]`: item i is the row's record, built on
demand (encoded leaf from `statecodec`, detail as `AccountDetail` JSON), so code written for record
lists keeps working without a Python object per leaf on the hot path. `from_records` turns such a
list back into columns; a record the columns cannot reproduce byte for byte (amounts beyond int64,
an encoding or a detail of another form) is kept whole in `verbatim` (row -> record), so every
record round-trips exactly. Arrays are never mutated after construction. Persists nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import overload

import numpy as np

from bridges.errors import InvalidLeafValue
from bridges.merkle import MerkleTree, build_tree, keccak256
from bridges.statecodec import (
    MAX_APPROVED_WITHDRAWALS,
    MarginLeaf,
    compute_leaf_hashes_columnar,
    encode_margin_leaf,
    validate_leaf_columns,
)
from node.records import AccountDetail, AccountLeaf

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
UNITS_LIMIT = 2**128  # collateral amounts (token base units) are stored as two uint64 halves
_LOW = 2**64 - 1


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise InvalidLeafValue(message)


def _check_array(a: np.ndarray, dtype: type, shape: tuple[int, ...], name: str) -> None:
    if not (isinstance(a, np.ndarray) and a.dtype == dtype and a.shape == shape):
        raise InvalidLeafValue(f"{name}: expected {np.dtype(dtype).name} array of shape {shape}")


def as_account_keys(accounts: np.ndarray) -> np.ndarray:
    """(n,) 'S20' view of (n, 20) uint8 accounts; numpy orders it as unsigned byte strings."""
    return np.ascontiguousarray(accounts).view("S20").ravel()


@dataclass(frozen=True, eq=False)
class CollateralRows:
    """Per-account (chain id, asset, token base units) rows: account i owns rows offsets[i]:offsets[i+1];
    `asset` indexes `assets`; an amount is units_hi * 2^64 + units_lo."""

    offsets: np.ndarray  # (n + 1,) int64, offsets[0] == 0, non-decreasing
    chain_id: np.ndarray  # (m,) int64
    asset: np.ndarray  # (m,) int32
    units_lo: np.ndarray  # (m,) uint64
    units_hi: np.ndarray  # (m,) uint64
    assets: tuple[str, ...]

    def __post_init__(self) -> None:
        _require(isinstance(self.offsets, np.ndarray) and self.offsets.dtype == np.int64
                 and self.offsets.ndim == 1 and len(self.offsets) >= 1, "collateral.offsets: expected int64 (n + 1,)")
        m = int(self.offsets[-1])
        _require(int(self.offsets[0]) == 0 and bool(np.all(np.diff(self.offsets) >= 0)),
                 "collateral.offsets: must start at 0 and never decrease")
        _check_array(self.chain_id, np.int64, (m,), "collateral.chain_id")
        _check_array(self.asset, np.int32, (m,), "collateral.asset")
        _check_array(self.units_lo, np.uint64, (m,), "collateral.units_lo")
        _check_array(self.units_hi, np.uint64, (m,), "collateral.units_hi")
        _require(m == 0 or (int(self.asset.min()) >= 0 and int(self.asset.max()) < len(self.assets)),
                 "collateral.asset: index outside the asset table")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def get(self, row: int) -> tuple[tuple[int, str, int], ...]:
        lo, hi = int(self.offsets[row]), int(self.offsets[row + 1])
        return tuple((int(c), self.assets[a], (int(h) << 64) | int(low)) for c, a, low, h in zip(
            self.chain_id[lo:hi].tolist(), self.asset[lo:hi].tolist(), self.units_lo[lo:hi].tolist(),
            self.units_hi[lo:hi].tolist(), strict=True))

    @classmethod
    def empty(cls, n: int) -> CollateralRows:
        return cls.from_tuples([()] * n)

    @classmethod
    def from_tuples(cls, rows: Sequence[Sequence[tuple[int, str, int]]]) -> CollateralRows:
        """From one tuple of (chain id, asset, base units) per account (the per-object input path)."""
        counts = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        flat = list(itertools.chain.from_iterable(rows))
        assets = tuple(sorted({asset for _c, asset, _u in flat}))
        index = {a: i for i, a in enumerate(assets)}
        units = [u for _c, _a, u in flat]
        for i, u in enumerate(units):
            if not (isinstance(u, int) and 0 <= u < UNITS_LIMIT):
                raise InvalidLeafValue(f"collateral_by_chain[{i}]: {u!r} is not a base-unit amount below 2^128")
        try:
            lo, hi = np.array(units, dtype=np.uint64), np.zeros(len(units), dtype=np.uint64)
        except OverflowError:
            lo = np.array([u & _LOW for u in units], dtype=np.uint64)
            hi = np.array([u >> 64 for u in units], dtype=np.uint64)
        try:
            chain = np.array([c for c, _a, _u in flat], dtype=np.int64)
        except OverflowError as exc:
            raise InvalidLeafValue("collateral_by_chain: chain id outside int64") from exc
        return cls(offsets=np.concatenate(([0], np.cumsum(counts))).astype(np.int64), chain_id=chain,
                   asset=np.array([index[a] for _c, a, _u in flat], dtype=np.int32), units_lo=lo, units_hi=hi,
                   assets=assets)


@dataclass(frozen=True, eq=False)
class LeafDetail:
    """Unsigned per-row detail served by the API (never hashed)."""

    equity_before: np.ndarray  # (n,) int64 micro-USD, equity before approved withdrawals
    risk: np.ndarray  # (n, S) int64 micro-USD joint P&L per scenario
    worst: np.ndarray  # (n,) int32 worst scenario index, -1: none
    collateral: CollateralRows

    def validate(self, n: int) -> None:
        _check_array(self.equity_before, np.int64, (n,), "detail.equity_before")
        _require(isinstance(self.risk, np.ndarray) and self.risk.dtype == np.int64 and self.risk.ndim == 2
                 and self.risk.shape[0] == n, f"detail.risk: expected an int64 array of shape ({n}, S)")
        _check_array(self.worst, np.int32, (n,), "detail.worst")
        _require(len(self.collateral) == n, f"detail.collateral: {len(self.collateral)} rows, expected {n}")


@dataclass(frozen=True, eq=False)
class EpochLeaves(Sequence[AccountLeaf]):
    """All leaves of one epoch as columns (see the module docstring)."""

    epoch: int
    accounts: np.ndarray  # (n, 20) uint8, strictly ascending
    equity: np.ndarray  # (n,) int64 micro-USD, after approved withdrawals
    im: np.ndarray  # (n,) int64 >= 0
    mm: np.ndarray  # (n,) int64 >= 0
    flags: np.ndarray  # (n,) int64 >= 0, bit 0: liquidatable
    approvals: Mapping[int, tuple[bytes, ...]]
    detail: LeafDetail
    verbatim: Mapping[int, AccountLeaf] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_leaf_columns(self.accounts, self.equity, self.im, self.mm, self.flags, self.approvals)
        n = len(self.accounts)
        keys = as_account_keys(self.accounts)
        if n > 1:
            bad = np.flatnonzero(keys[1:] <= keys[:-1])
            _require(not len(bad), f"accounts[{int(bad[0]) + 1 if len(bad) else 0}]: not strictly ascending")
        self.detail.validate(n)
        for row, leaf in self.verbatim.items():
            _require(0 <= row < n and leaf.index == row and leaf.epoch == self.epoch
                     and leaf.account == self.accounts[row].tobytes() and row not in self.approvals,
                     f"verbatim[{row}]: does not match its row")

    # -- Sequence[AccountLeaf] ---------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.accounts)

    @overload
    def __getitem__(self, i: int) -> AccountLeaf: ...
    @overload
    def __getitem__(self, i: slice) -> list[AccountLeaf]: ...

    def __getitem__(self, i: int | slice) -> AccountLeaf | list[AccountLeaf]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"leaf index {i} outside 0..{n - 1}")
        row = i % n
        kept = self.verbatim.get(row)
        if kept is not None:
            return kept
        leaf = self.get_margin_leaf(row)
        detail = self.get_detail(row)
        return AccountLeaf(epoch=self.epoch, index=row, account=self.accounts[row].tobytes(), equity=leaf.equity,
                           im=leaf.im, mm=leaf.mm, flags=leaf.flags, approved_withdrawals=leaf.approved_withdrawals,
                           encoded=encode_margin_leaf(leaf), detail=b"" if detail is None else detail.to_json_bytes())

    def __iter__(self) -> Iterator[AccountLeaf]:
        return (self[i] for i in range(len(self)))

    # -- reads -------------------------------------------------------------------------------------
    def find(self, account: bytes) -> int | None:
        """Row of a 20-byte account (binary search), or None."""
        if len(account) != 20 or not len(self):
            return None
        keys = as_account_keys(self.accounts)
        row = int(np.searchsorted(keys, np.frombuffer(account, dtype="S20")[0]))
        return row if row < len(self) and self.accounts[row].tobytes() == account else None

    def get(self, account: bytes) -> AccountLeaf | None:
        """One account's record (the API's view), or None when it has no leaf."""
        row = self.find(account)
        return None if row is None else self[row]

    def get_margin_leaf(self, row: int) -> MarginLeaf:
        kept = self.verbatim.get(row)
        if kept is not None:
            return MarginLeaf("0x" + kept.account.hex(), kept.equity, kept.im, kept.mm, kept.flags,
                              kept.approved_withdrawals)
        return MarginLeaf("0x" + self.accounts[row].tobytes().hex(), int(self.equity[row]), int(self.im[row]),
                          int(self.mm[row]), int(self.flags[row]), tuple(self.approvals.get(row, ())))

    def get_detail(self, row: int) -> AccountDetail | None:
        kept = self.verbatim.get(row)
        if kept is not None:
            return AccountDetail.from_json_bytes(kept.detail)
        worst = int(self.detail.worst[row])
        return AccountDetail(account="0x" + self.accounts[row].tobytes().hex(),
                             equity_before_withdrawals=int(self.detail.equity_before[row]),
                             free_collateral=int(self.equity[row]) - int(self.im[row]),
                             risk_array=tuple(self.detail.risk[row].tolist()),
                             worst_scenario=None if worst < 0 else worst,
                             collateral_by_chain=self.detail.collateral.get(row))

    def compute_leaf_hashes(self) -> np.ndarray:
        """(n, 32) leaf hashes keccak256(keccak256(encoded leaf)) in row order."""
        hashes = compute_leaf_hashes_columnar(self.accounts, self.equity, self.im, self.mm, self.flags,
                                              self.approvals)
        if self.verbatim:
            hashes = hashes.copy()
            for row, leaf in self.verbatim.items():
                hashes[row] = np.frombuffer(keccak256(keccak256(leaf.encoded)), dtype=np.uint8)
        return hashes

    @cached_property
    def tree(self) -> MerkleTree:
        """The StandardMerkleTree over the leaf hashes (caller order = row order); built once."""
        return build_tree(self.compute_leaf_hashes())

    # -- from records --------------------------------------------------------------------------------
    @classmethod
    def from_records(cls, epoch: int, records: Sequence[AccountLeaf]) -> EpochLeaves:
        """Columns of `records` (index order, no gaps, ascending accounts); see the module docstring."""
        if isinstance(records, EpochLeaves):
            _require(records.epoch == epoch, f"leaves.epoch: {records.epoch} != state epoch {epoch}")
            return records
        n = len(records)
        accounts = np.zeros((n, 20), dtype=np.uint8)
        ints = np.zeros((5, n), dtype=np.int64)  # equity, im, mm, flags, equity before
        worst = np.full(n, -1, dtype=np.int32)
        risk_rows: list[tuple[int, ...]] = []
        collateral: list[tuple[tuple[int, str, int], ...]] = []
        approvals: dict[int, tuple[bytes, ...]] = {}
        verbatim: dict[int, AccountLeaf] = {}
        width: int | None = None
        for i, r in enumerate(records):
            _validate_record(i, r, epoch)
            accounts[i] = np.frombuffer(r.account, dtype=np.uint8)
            detail = _regular_detail(r, width)
            if detail is None:
                verbatim[i] = r
                risk_rows.append(())
                collateral.append(())
                continue
            width = len(detail.risk_array)
            ints[:, i] = (r.equity, r.im, r.mm, r.flags, detail.equity_before_withdrawals)
            worst[i] = -1 if detail.worst_scenario is None else detail.worst_scenario
            risk_rows.append(detail.risk_array)
            collateral.append(detail.collateral_by_chain)
            if r.approved_withdrawals:
                approvals[i] = tuple(r.approved_withdrawals)
        risk = np.zeros((n, width or 0), dtype=np.int64)
        for i, row_risk in enumerate(risk_rows):
            if row_risk:
                risk[i] = row_risk
        return cls(epoch=epoch, accounts=accounts, equity=ints[0].copy(), im=ints[1].copy(), mm=ints[2].copy(),
                   flags=ints[3].copy(), approvals=MappingProxyType(approvals),
                   detail=LeafDetail(ints[4].copy(), risk, worst, CollateralRows.from_tuples(collateral)),
                   verbatim=MappingProxyType(verbatim))


def _validate_record(i: int, r: AccountLeaf, epoch: int) -> None:
    _require(r.epoch == epoch, f"leaves[{i}].epoch: {r.epoch} != state epoch {epoch}")
    _require(r.index == i, f"leaves[{i}].index: {r.index}, expected {i} (leaves in index order, no gaps)")
    _require(isinstance(r.account, bytes) and len(r.account) == 20, f"leaves[{i}].account: expected 20 bytes")
    for j, wid in enumerate(r.approved_withdrawals):
        _require(isinstance(wid, bytes) and len(wid) == 32, f"leaves[{i}].approved_withdrawals[{j}]: not 32 bytes")


def _in_int64(*values: int) -> bool:
    return all(INT64_MIN <= v <= INT64_MAX for v in values)


def _regular_detail(r: AccountLeaf, width: int | None) -> AccountDetail | None:
    """The record's detail when the columns reproduce the record byte for byte, else None."""
    if not (_in_int64(r.equity, r.im, r.mm, r.flags) and min(r.im, r.mm, r.flags) >= 0
            and len(r.approved_withdrawals) <= MAX_APPROVED_WITHDRAWALS):
        return None
    leaf = MarginLeaf("0x" + r.account.hex(), r.equity, r.im, r.mm, r.flags, tuple(r.approved_withdrawals))
    if encode_margin_leaf(leaf) != r.encoded:
        return None
    d = AccountDetail.from_json_bytes(r.detail)
    if d is None or d.to_json_bytes() != r.detail or d.account != leaf.account \
            or d.free_collateral != r.equity - r.im or not _in_int64(d.equity_before_withdrawals, *d.risk_array) \
            or (width is not None and len(d.risk_array) != width) \
            or not (d.worst_scenario is None or 0 <= d.worst_scenario < 2**31) \
            or not all(_in_int64(c) and 0 <= u < UNITS_LIMIT for c, _a, u in d.collateral_by_chain):
        return None
    return d
