"""Margin-state builder: from merged chain inputs to the leaves, Merkle root and digest of one epoch.

`compute_margin_state(inputs, params, pins, network_id, keyset_id, epoch, params_hash)` runs the
risk batch, quantizes to integer micro-USD (`risk.quantize`), decides withdrawal approvals, and
hands arrays (accounts, equity, im, mm, flags, sparse approvals, detail) to `build_margin_state`,
which builds the columnar leaves (`node.leaves.EpochLeaves`: leaf hashes in bulk as
`bridges.statecodec` defines them), the StandardMerkleTree root (`bridges.merkle`) and the state
digest the validators sign. Other input paths call `build_margin_state` with their own arrays.

Withdrawal approvals (the rule that stops two withdrawals on two chains in one epoch from spending
the same free collateral): every open request of every chain is visited in the order
(request epoch, chain id, request id). A request is approved iff its account has a leaf, is not
liquidatable, the request predates this epoch (`request_epoch < epoch`, else the vault could not
accept this state for it), the account has fewer than `MAX_APPROVED_WITHDRAWALS` approvals, and
`equity - (already approved deductions) - deduction >= IM`, where the deduction is the request's
haircut value `ceil(units * price * (1 - haircut) * 1e6)` micro-USD (rounded up: never under-deduct).
The leaf's equity is the equity AFTER the approved deductions, so the signed state "still shows the
account above IM after the deduction".

Accounts whose inputs fail (merge failures from `bridges.snapshot`, risk `AccountError`s) get no
leaf: no proof can be made for them this epoch, so protocols cannot rely on a stale or partial value
and their withdrawals stay unapproved. They are listed in `MarginState.failures`.

Invariants: pure and deterministic (no clock, no randomness, no set iteration order; floats only
inside the risk engine and the documented rounding); identical inputs give identical bytes in every
process. No Python object per leaf on the way (`leaves` / `details` are views built on access).
Persists nothing; the node stores `get_account_leaves()` (the `EpochLeaves`) and the signed state.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Generic, TypeVar, overload

import numpy as np
import scipy.sparse as sp

from bridges.errors import InvalidLeafValue
from bridges.merkle import MerkleTree
from bridges.snapshot import AccountFailure, MarginInputs, PendingWithdrawal
from bridges.statecodec import (
    FLAG_LIQUIDATABLE,
    MAX_APPROVED_WITHDRAWALS,
    USD_SCALE,
    MarginLeaf,
    compute_inputs_digest,
    compute_state_digest,
)
from node.leaves import CollateralRows, EpochLeaves, LeafDetail, as_account_keys
from node.records import AccountDetail
from risk.batch import AccountError, BatchInput, BatchResult, compute_margin_batch
from risk.instruments import Instrument
from risk.params import RiskParams
from risk.quantize import quantize_usd, quantized

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


def _instrument_key(ins: Instrument) -> tuple[Any, ...]:
    return (ins.underlying, ins.kind, ins.days_to_expiry, ins.strike, ins.right, ins.vol)


def build_batch_input(inputs: MarginInputs) -> BatchInput:
    """Accounts in `inputs.accounts` order as rows; instruments and assets in a canonical order."""
    instruments = sorted({_instrument_key(p.instrument): p.instrument
                          for a in inputs.accounts for p in a.positions}.items())
    column = {key: i for i, (key, _ins) in enumerate(instruments)}
    assets = sorted({asset for a in inputs.accounts for asset, _units in a.collateral})
    asset_col = {asset: j for j, asset in enumerate(assets)}
    rows, cols, vals = [], [], []
    collateral = np.zeros((len(inputs.accounts), len(assets)), dtype=np.float64)
    for r, account in enumerate(inputs.accounts):
        for p in account.positions:
            rows.append(r)
            cols.append(column[_instrument_key(p.instrument)])
            vals.append(p.quantity)
        for asset, units in account.collateral:
            collateral[r, asset_col[asset]] = units
    positions = sp.csr_matrix((np.asarray(vals, dtype=np.float64), (np.asarray(rows, dtype=np.int64),
                               np.asarray(cols, dtype=np.int64))), shape=(len(inputs.accounts), len(instruments)))
    return BatchInput(instruments=[ins for _key, ins in instruments], market=inputs.market, positions=positions,
                      collateral=collateral, assets=assets)


def compute_withdrawal_deduction(w: PendingWithdrawal, inputs: MarginInputs, params: RiskParams) -> int | None:
    """Haircut value of a request in micro-USD, rounded up; None when the asset has no price."""
    price = inputs.market.asset_prices.get(w.asset)
    if price is None:
        return None
    return math.ceil(w.units * price * (1.0 - params.get_haircut(w.asset)) * USD_SCALE)


def _decide_withdrawals(inputs: MarginInputs, params: RiskParams, epoch: int, accounts: np.ndarray,
                        equity: np.ndarray, im: np.ndarray, liquidatable: np.ndarray
                        ) -> tuple[tuple[WithdrawalDecision, ...], dict[int, int], dict[int, tuple[bytes, ...]]]:
    """The approval rule of the module docstring over the leaf rows (`accounts` sorted (n, 20) bytes,
    int64 `equity`/`im`, bool `liquidatable`): (decisions in request order, row -> total approved
    deduction, row -> approved ids)."""
    keys = as_account_keys(accounts)
    approved_total: dict[int, int] = {}
    approved_ids: dict[int, list[bytes]] = {}
    decisions = []
    for w in inputs.withdrawals:  # sorted by (request epoch, chain id, request id)
        deduction = compute_withdrawal_deduction(w, inputs, params)
        key = bytes.fromhex(w.account[2:])
        row = int(np.searchsorted(keys, np.frombuffer(key, dtype="S20")[0])) if len(keys) else 0
        has_leaf = row < len(keys) and accounts[row].tobytes() == key
        used = approved_total.get(row, 0)
        if not has_leaf:
            reason = "account has no leaf this epoch"
        elif w.request_epoch >= epoch:
            reason = f"requested at epoch {w.request_epoch}, not before {epoch}"
        elif liquidatable[row]:
            reason = "account is liquidatable"
        elif deduction is None:
            reason = f"asset {w.asset} has no price"
        elif len(approved_ids.get(row, ())) >= MAX_APPROVED_WITHDRAWALS:
            reason = f"account already has {MAX_APPROVED_WITHDRAWALS} approvals"
        elif int(equity[row]) - used - deduction < int(im[row]):
            reason = f"equity {int(equity[row]) - used} - {deduction} < IM {int(im[row])}"
        else:
            reason = "approved"
            approved_total[row] = used + deduction
            approved_ids.setdefault(row, []).append(w.withdrawal_id)
        decisions.append(WithdrawalDecision(w.chain_id, w.request_id, w.account, w.withdrawal_id,
                                            deduction or 0, reason == "approved", reason))
    return tuple(decisions), approved_total, {row: tuple(ids) for row, ids in approved_ids.items()}


def _normalise_pins(pins: Sequence[Any]) -> tuple[tuple[int, int, bytes], ...]:
    out = []
    for p in pins:
        block_hash = getattr(p, "hash", None) or getattr(p, "block_hash", None)
        if not isinstance(block_hash, bytes) or len(block_hash) != 32:
            raise InvalidStateInput(f"pins: chain {getattr(p, 'chain_id', '?')} has no 32-byte block hash")
        out.append((int(p.chain_id), int(p.number), block_hash))
    return tuple(sorted(out))


def _exclude_unquantizable(result: BatchResult) -> BatchResult:
    """Accounts whose amounts cannot be micro-USD int64 (non-finite, |x| * 1e6 >= 2^63 - 1024) become
    per-account errors instead of aborting the whole epoch in `quantized`."""
    limit = float(2**63 - 1024) / USD_SCALE
    fields = {"equity": result.equity, "initial_margin": result.initial_margin,
              "maintenance_margin": result.maintenance_margin}
    bad: dict[int, str] = {}
    for name, values in [*fields.items(), ("risk_array", result.risk_array)]:
        v = values if values.ndim == 2 else values[:, None]
        rows = np.flatnonzero(result.ok & ~(np.isfinite(v) & (np.abs(v) < limit)).any(axis=1))
        for r in rows.tolist():
            bad.setdefault(r, name)
    if not bad:
        return result
    ok = result.ok.copy()
    ok[list(bad)] = False
    errors = tuple(sorted([*result.errors, *(AccountError(r, name, "not representable as int64 micro-USD")
                                            for r, name in bad.items())], key=lambda e: e.account))
    return dataclasses.replace(result, ok=ok, errors=errors)


def _collect_failures(inputs: MarginInputs, result: BatchResult) -> tuple[AccountFailure, ...]:
    failures = list(inputs.failures)
    for err in result.errors:
        account = inputs.accounts[err.account].account if err.account >= 0 else "(summary)"
        failures.append(AccountFailure(account, err.field, err.reason))
    return tuple(sorted(failures, key=lambda f: (f.account.lower(), f.field)))


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


def _account_array(inputs: MarginInputs) -> np.ndarray:
    try:
        raw = b"".join(bytes.fromhex(a.account[2:]) for a in inputs.accounts)
    except ValueError as exc:
        raise InvalidStateInput(f"inputs.accounts: not hex: {exc}") from exc
    if len(raw) != 20 * len(inputs.accounts):
        raise InvalidStateInput("inputs.accounts: every account must be 20 bytes")
    accounts = np.frombuffer(raw, dtype=np.uint8).reshape(len(inputs.accounts), 20)
    keys = as_account_keys(accounts)
    if len(keys) > 1 and not bool(np.all(keys[1:] > keys[:-1])):
        raise InvalidStateInput("inputs.accounts: not strictly sorted by address bytes")
    return accounts


def compute_margin_state(inputs: MarginInputs, params: RiskParams, pins: Sequence[Any], network_id: int,
                         keyset_id: int, epoch: int, params_hash: bytes) -> MarginState:
    """The margin state of `epoch`; see the module docstring for the rules."""
    norm_pins = _normalise_pins(pins)
    if inputs.pins and norm_pins != _normalise_pins(inputs.pins):
        raise InvalidStateInput("pins: differ from the pins the inputs were read at")
    if len(params_hash) != 32:
        raise InvalidStateInput(f"params_hash: expected 32 bytes, got {len(params_hash)}")
    all_accounts = _account_array(inputs)
    result = _exclude_unquantizable(compute_margin_batch(build_batch_input(inputs), params, threads=RISK_THREADS))
    q = quantized(result)
    ok = np.flatnonzero(result.ok)
    accounts = np.ascontiguousarray(all_accounts[ok])
    equity, im, mm = q.equity[ok], q.initial_margin[ok], q.maintenance_margin[ok]
    flags = (q.flags[ok] & FLAG_LIQUIDATABLE).astype(np.int64)
    decisions, deductions, approvals = _decide_withdrawals(inputs, params, epoch, accounts, equity, im, flags != 0)
    leaf_equity = equity.copy()
    for row, total in deductions.items():
        leaf_equity[row] -= total
    detail = LeafDetail(equity_before=equity, risk=quantize_usd(result.risk_array[ok], "risk_array"),
                        worst=result.worst_scenario[ok].astype(np.int32),
                        collateral=CollateralRows.from_tuples([inputs.accounts[r].collateral_by_chain
                                                               for r in ok.tolist()]))
    try:
        leaves = EpochLeaves(epoch=epoch, accounts=accounts, equity=leaf_equity, im=im, mm=mm, flags=flags,
                             approvals=MappingProxyType(approvals), detail=detail)
    except InvalidLeafValue as exc:
        raise InvalidStateInput(f"leaves: {exc}") from exc
    return build_margin_state(network_id=network_id, keyset_id=keyset_id, epoch=epoch, pins=norm_pins,
                              params_hash=params_hash, leaves=leaves, withdrawals=decisions,
                              failures=_collect_failures(inputs, result))
