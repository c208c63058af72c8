"""The epoch pipeline after the chain books: columnar inputs -> risk batch -> integers -> margin state.

`compute_epoch_state(inputs, params, network_id, keyset_id, epoch, params_hash, hook)`:
1. risk batch (`risk.batch.compute_margin_batch`) over every known account, rows in address order;
2. integers (`risk.quantize`): engine equity, IM, MM in micro-USD; the account's equity adds the settlement
   vector of `bridges.book_merge` (cash, futures/perp marks, unrealised funding) as an exact int64 sum;
3. withdrawals (`node.withdrawals`): every open request deducted, approvals all-or-nothing per account;
4. leaves for the accounts that are present and ok: `abi.encode(account, equity after deductions, IM, MM,
   flags, approved ids)`, flags bit 0 iff leaf equity < MM (in the leaf's own integers), then the
   OpenZeppelin tree and the digest the validators sign (`node.state`).
`hook(stage)` is called as each stage ends (`risk`, `settle`, `leaves`) for the benchmark and metrics.
Pure and deterministic (no clock: the hook measures); persists nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bridges.book_merge import AccountFailure, CollateralDetail, ColumnarInputs
from bridges.statecodec import FLAG_LIQUIDATABLE
from node.leaves import CollateralRows, EpochLeaves, LeafDetail
from node.state import MarginState, WithdrawalDecision, build_margin_state
from node.withdrawals import compute_deductions, decide_withdrawals
from risk.batch import BatchInput, BatchResult, compute_margin_batch
from risk.params import RiskParams
from risk.quantize import quantize_usd, quantized

RISK_THREADS = 2  # the batch is bit-identical for any thread count
_INT64_LIMIT = 2**62


def _no_hook(_stage: str) -> None:
    return None


def compute_epoch_state(inputs: ColumnarInputs, params: RiskParams, network_id: int, keyset_id: int, epoch: int,
                        params_hash: bytes, hook: Callable[[str], None] = _no_hook) -> MarginState:
    batch = BatchInput(instruments=list(inputs.instruments), market=inputs.market, positions=inputs.positions,
                       collateral=inputs.collateral, assets=list(inputs.assets))
    result = compute_margin_batch(batch, params, threads=RISK_THREADS)
    hook("risk")
    ok = inputs.ok & inputs.present & result.ok
    limit = float(_INT64_LIMIT) / 1e6
    for values in (result.equity, result.initial_margin, result.maintenance_margin):
        ok &= np.isfinite(values) & (np.abs(values) < limit)
    if result.risk_array.size:  # one account's unrepresentable scenario P&L fails that account, not the epoch
        ok &= (result.risk_array.max(axis=1) < limit) & (result.risk_array.min(axis=1) > -limit)  # NaN fails both
    safe = result.ok & ok
    engine = result if safe.all() else _masked(result, safe)
    q = quantized(engine)
    equity = q.equity + np.where(ok, inputs.settlement, 0)
    ok &= np.abs(equity) < _INT64_LIMIT
    liquidatable = ok & (equity < q.maintenance_margin)
    w = inputs.withdrawals
    deduction = compute_deductions(w, inputs.market.asset_prices, params.get_haircut)
    decisions = decide_withdrawals(w, deduction, epoch, ok, equity, q.initial_margin, liquidatable)
    leaf_equity = equity - decisions.total
    flags = np.where(leaf_equity < q.maintenance_margin, FLAG_LIQUIDATABLE, 0).astype(np.int64)
    hook("settle")
    rows = np.flatnonzero(ok)
    leaf_of = np.full(len(ok), -1, dtype=np.int64)
    leaf_of[rows] = np.arange(len(rows), dtype=np.int64)
    every = len(rows) == len(ok)  # the usual case: no copy of the (accounts x scenarios) array
    risk_array = quantize_usd(engine.risk_array if every else engine.risk_array[rows], "risk_array")  # type: ignore[attr-defined]
    detail = LeafDetail(equity_before=equity[rows], risk=risk_array,
                        worst=result.worst_scenario[rows].astype(np.int32),
                        collateral=_collateral_rows(inputs.collateral_detail, leaf_of, len(rows), inputs.assets))
    accounts = inputs.accounts if every else np.take(inputs.accounts, rows, axis=0)
    leaves = EpochLeaves(epoch=epoch, accounts=np.ascontiguousarray(accounts), equity=leaf_equity[rows],
                         im=q.initial_margin[rows], mm=q.maintenance_margin[rows], flags=flags[rows],
                         approvals={int(leaf_of[r]): ids for r, ids in decisions.approved_ids.items() if leaf_of[r] >= 0},
                         detail=detail)
    names = ["0x" + inputs.accounts[int(r)].tobytes().hex() for r in w.row.tolist()]
    decided = tuple(WithdrawalDecision(int(w.chain_id[k]), int(w.request_id[k]), names[k], w.withdrawal_id[k],
                                       int(decisions.deduction[k]), bool(decisions.approved[k]), decisions.reasons[k])
                    for k in range(len(w)))
    state = build_margin_state(network_id=network_id, keyset_id=keyset_id, epoch=epoch, pins=inputs.pins,
                               params_hash=params_hash, leaves=leaves, withdrawals=decided,
                               failures=_failures(inputs, result, ok))
    hook("leaves")
    return state


def _collateral_rows(c: CollateralDetail, leaf_of: np.ndarray, n: int, assets: tuple[str, ...]) -> CollateralRows:
    """Per-leaf (chain, asset, exact base units) rows in CSR form, ordered by (leaf, chain, asset symbol): the
    detail comes in (chain, symbol) blocks, so a stable sort by leaf keeps that order within each leaf."""
    leaf = leaf_of[c.row] if len(c.row) else np.zeros(0, dtype=np.int64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(leaf[leaf >= 0], minlength=n), out=offsets[1:])
    order = _stable_by_leaf(leaf)
    base = np.take(c.base, order, axis=0)  # (m, 2) uint64 (high, low): one gather of whole rows
    return CollateralRows(offsets=offsets, chain_id=c.chain_id.take(order).astype(np.int64, copy=False),
                          asset=c.asset.take(order).astype(np.int32, copy=False),
                          units_lo=np.ascontiguousarray(base[:, 1], dtype=np.uint64),
                          units_hi=np.ascontiguousarray(base[:, 0], dtype=np.uint64), assets=tuple(assets))


def _stable_by_leaf(leaf: np.ndarray) -> np.ndarray:
    """Indices of the entries with `leaf >= 0`, stably sorted by leaf: one sort of the unique int64 keys
    (leaf << 32 | index), so equal leaves keep their index order."""
    if len(leaf) >= 2**32 or (len(leaf) and int(leaf.max()) >= 2**31):
        keep = np.flatnonzero(leaf >= 0)
        return keep[np.argsort(leaf[keep], kind="stable")]
    keep = np.flatnonzero(leaf >= 0)
    key = (leaf[keep] << 32) | keep
    key.sort()
    return key & 0xFFFFFFFF


def _masked(result: BatchResult, keep: np.ndarray) -> BatchResult:
    """The batch result with rows outside `keep` zeroed and marked not ok (so quantization cannot fail)."""
    import dataclasses

    fields = {}
    for name in ("equity", "initial_margin", "maintenance_margin"):
        fields[name] = np.where(keep, getattr(result, name), 0.0)
    fields["risk_array"] = np.where(keep[:, None], result.risk_array, 0.0)
    fields["ok"] = keep
    return dataclasses.replace(result, **fields)  # type: ignore[arg-type]


def _failures(inputs: ColumnarInputs, result: object, ok: np.ndarray) -> tuple[AccountFailure, ...]:
    """Present accounts without a leaf and why (chain-side reasons first, then the engine's)."""
    out: dict[int, AccountFailure] = {}

    def name(row: int) -> str:
        return "0x" + inputs.accounts[row].tobytes().hex()

    for row, fld, reason in zip(inputs.failures.rows.tolist(), inputs.failures.fields, inputs.failures.reasons,
                                strict=True):
        if inputs.present[row]:
            out[row] = AccountFailure(name(row), fld, reason)
    for err in result.errors:  # type: ignore[attr-defined]
        if err.account >= 0 and inputs.present[err.account] and err.account not in out:
            out[err.account] = AccountFailure(name(err.account), err.field, err.reason)
    for row in np.flatnonzero(inputs.present & ~ok).tolist():
        out.setdefault(row, AccountFailure(name(row), "amounts", "not representable as int64 micro-USD"))
    return tuple(out[r] for r in sorted(out))

