"""Margin-state builder: from merged chain inputs to the leaves, Merkle root and digest of one epoch.

`compute_margin_state(inputs, params, pins, network_id, keyset_id, epoch, params_hash)` runs the
risk batch, quantizes to integer micro-USD (`risk.quantize`), decides withdrawal approvals, builds
the leaves (`bridges.statecodec`), the StandardMerkleTree root (`bridges.merkle`) and the state
digest the validators sign.

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
process. Persists nothing; the node stores `get_account_leaves()` and the signed state.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from bridges.merkle import MerkleTree, build_tree, make_keccak
from bridges.snapshot import AccountFailure, AccountInputs, MarginInputs, PendingWithdrawal
from bridges.statecodec import (
    FLAG_LIQUIDATABLE,
    MAX_APPROVED_WITHDRAWALS,
    USD_SCALE,
    MarginLeaf,
    compute_inputs_digest,
    compute_state_digest,
    encode_margin_leaf,
)
from node.records import AccountLeaf
from risk.batch import AccountError, BatchInput, BatchResult, compute_margin_batch
from risk.instruments import Instrument
from risk.params import RiskParams
from risk.quantize import QuantizedBatch, quantize_usd, quantized

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


@dataclass(frozen=True)
class AccountDetail:
    """Unsigned per-account detail for the gRPC API (micro-USD integers)."""

    account: str
    equity_before_withdrawals: int
    free_collateral: int  # leaf equity - IM
    risk_array: tuple[int, ...]  # joint P&L per scenario, micro-USD
    worst_scenario: int | None
    collateral_by_chain: tuple[tuple[int, str, int], ...]  # (chain id, asset, token base units)

    def to_json_bytes(self) -> bytes:
        return json.dumps({
            "account": self.account, "equity_before_withdrawals": self.equity_before_withdrawals,
            "free_collateral": self.free_collateral, "risk_array": list(self.risk_array),
            "worst_scenario": self.worst_scenario,
            "collateral_by_chain": [list(row) for row in self.collateral_by_chain],
        }, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class MarginState:
    """One epoch's computed state: the digest inputs, leaves sorted by account, and detail."""

    network_id: int
    keyset_id: int
    epoch: int
    pins: tuple[tuple[int, int, bytes], ...]  # (chain id, block number, block hash), by chain id
    inputs_digest: bytes
    params_hash: bytes
    root: bytes
    leaf_count: int
    digest: bytes
    leaves: tuple[MarginLeaf, ...]
    details: tuple[AccountDetail, ...]  # parallel to `leaves`
    withdrawals: tuple[WithdrawalDecision, ...]
    failures: tuple[AccountFailure, ...]
    tree: MerkleTree

    def get_index(self, account: str) -> int:
        """Leaf index of `account` (any hex case); KeyError if it has no leaf."""
        key = bytes.fromhex(account[2:])
        lo, hi = 0, len(self.leaves)
        while lo < hi:
            mid = (lo + hi) // 2
            if bytes.fromhex(self.leaves[mid].account[2:]) < key:
                lo = mid + 1
            else:
                hi = mid
        if lo == len(self.leaves) or bytes.fromhex(self.leaves[lo].account[2:]) != key:
            raise KeyError(f"account {account} has no leaf in epoch {self.epoch}")
        return lo

    def get_proof(self, account: str) -> list[bytes]:
        return self.tree.get_proof(self.get_index(account))

    def get_account_leaves(self) -> tuple[AccountLeaf, ...]:
        """The node's persisted records of every leaf (encoded leaf + JSON detail)."""
        return tuple(
            AccountLeaf(epoch=self.epoch, index=i, account=bytes.fromhex(leaf.account[2:]), equity=leaf.equity,
                        im=leaf.im, mm=leaf.mm, flags=leaf.flags, approved_withdrawals=leaf.approved_withdrawals,
                        encoded=encode_margin_leaf(leaf), detail=self.details[i].to_json_bytes())
            for i, leaf in enumerate(self.leaves)
        )


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


def _decide_withdrawals(inputs: MarginInputs, params: RiskParams, epoch: int, equity: dict[str, int],
                        im: dict[str, int], liquidatable: dict[str, bool]
                        ) -> tuple[tuple[WithdrawalDecision, ...], dict[str, int], dict[str, list[bytes]]]:
    approved_total: dict[str, int] = {}
    approved_ids: dict[str, list[bytes]] = {}
    decisions = []
    for w in inputs.withdrawals:  # sorted by (request epoch, chain id, request id)
        deduction = compute_withdrawal_deduction(w, inputs, params)
        used = approved_total.get(w.account, 0)
        if w.account not in equity:
            reason = "account has no leaf this epoch"
        elif w.request_epoch >= epoch:
            reason = f"requested at epoch {w.request_epoch}, not before {epoch}"
        elif liquidatable[w.account]:
            reason = "account is liquidatable"
        elif deduction is None:
            reason = f"asset {w.asset} has no price"
        elif len(approved_ids.get(w.account, ())) >= MAX_APPROVED_WITHDRAWALS:
            reason = f"account already has {MAX_APPROVED_WITHDRAWALS} approvals"
        elif equity[w.account] - used - deduction < im[w.account]:
            reason = f"equity {equity[w.account] - used} - {deduction} < IM {im[w.account]}"
        else:
            reason = "approved"
            approved_total[w.account] = used + deduction
            approved_ids.setdefault(w.account, []).append(w.withdrawal_id)
        decisions.append(WithdrawalDecision(w.chain_id, w.request_id, w.account, w.withdrawal_id,
                                            deduction or 0, reason == "approved", reason))
    return tuple(decisions), approved_total, approved_ids


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


def _build_leaves(inputs: MarginInputs, result: BatchResult, q: QuantizedBatch, ok_rows: list[int],
                  equity: dict[str, int], approved_total: dict[str, int], approved_ids: dict[str, list[bytes]]
                  ) -> tuple[list[MarginLeaf], list[AccountDetail]]:
    risk_q = quantize_usd(result.risk_array[ok_rows], "risk_array").tolist()
    im, mm = q.initial_margin[ok_rows].tolist(), q.maintenance_margin[ok_rows].tolist()
    flags = (q.flags[ok_rows] & FLAG_LIQUIDATABLE).tolist()
    worst = result.worst_scenario[ok_rows].tolist()
    leaves, details = [], []
    for i, r in enumerate(ok_rows):
        acc: AccountInputs = inputs.accounts[r]
        leaf_equity = equity[acc.account] - approved_total.get(acc.account, 0)
        leaves.append(MarginLeaf(acc.account, leaf_equity, im[i], mm[i], flags[i],
                                 tuple(approved_ids.get(acc.account, ()))))
        details.append(AccountDetail(acc.account, equity[acc.account], leaf_equity - im[i], tuple(risk_q[i]),
                                     None if worst[i] < 0 else worst[i], acc.collateral_by_chain))
    return leaves, details


def compute_margin_state(inputs: MarginInputs, params: RiskParams, pins: Sequence[Any], network_id: int,
                         keyset_id: int, epoch: int, params_hash: bytes) -> MarginState:
    """The margin state of `epoch`; see the module docstring for the rules."""
    norm_pins = _normalise_pins(pins)
    if inputs.pins and norm_pins != _normalise_pins(inputs.pins):
        raise InvalidStateInput("pins: differ from the pins the inputs were read at")
    if len(params_hash) != 32:
        raise InvalidStateInput(f"params_hash: expected 32 bytes, got {len(params_hash)}")
    keys = [bytes.fromhex(a.account[2:]) for a in inputs.accounts]
    if any(a >= b for a, b in itertools.pairwise(keys)):
        raise InvalidStateInput("inputs.accounts: not strictly sorted by address bytes")
    result = _exclude_unquantizable(compute_margin_batch(build_batch_input(inputs), params, threads=RISK_THREADS))
    q = quantized(result)
    ok_rows = np.flatnonzero(result.ok).tolist()
    names = [inputs.accounts[r].account for r in ok_rows]
    equity = dict(zip(names, q.equity[ok_rows].tolist(), strict=True))
    im = dict(zip(names, q.initial_margin[ok_rows].tolist(), strict=True))
    liq = dict(zip(names, ((q.flags[ok_rows] & FLAG_LIQUIDATABLE) != 0).tolist(), strict=True))
    decisions, approved_total, approved_ids = _decide_withdrawals(inputs, params, epoch, equity, im, liq)
    leaves, details = _build_leaves(inputs, result, q, ok_rows, equity, approved_total, approved_ids)
    keccak = make_keccak()  # statecodec's leaf hash, with a per-call-cheap hasher (same bytes; tests compare)
    tree = build_tree([keccak(keccak(encode_margin_leaf(leaf))) for leaf in leaves])
    inputs_digest = compute_inputs_digest(norm_pins)
    digest = compute_state_digest(network_id, keyset_id, epoch, inputs_digest, params_hash, tree.root, len(leaves))
    return MarginState(network_id=network_id, keyset_id=keyset_id, epoch=epoch, pins=norm_pins,
                       inputs_digest=inputs_digest, params_hash=params_hash, root=tree.root,
                       leaf_count=len(leaves), digest=digest, leaves=tuple(leaves), details=tuple(details),
                       withdrawals=decisions, failures=_collect_failures(inputs, result), tree=tree)
