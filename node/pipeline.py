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

from bridges.book_merge import ColumnarInputs
from bridges.merkle import build_tree, make_keccak
from bridges.snapshot import AccountFailure
from bridges.statecodec import (
    FLAG_LIQUIDATABLE,
    MarginLeaf,
    compute_inputs_digest,
    compute_state_digest,
    encode_margin_leaf,
)
from node.state import AccountDetail, MarginState, WithdrawalDecision
from node.withdrawals import compute_deductions, decide_withdrawals
from risk.batch import BatchInput, compute_margin_batch
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
    risk_array = quantize_usd(np.where(ok[:, None], engine.risk_array, 0.0), "risk_array")
    state = build_margin_state(
        network_id=network_id, keyset_id=keyset_id, epoch=epoch, pins=inputs.pins, params_hash=params_hash,
        rows=rows, accounts=inputs.accounts, equity=leaf_equity, im=q.initial_margin, mm=q.maintenance_margin,
        flags=flags, approvals=decisions.approved_ids, equity_before=equity, risk_array=risk_array,
        worst_scenario=result.worst_scenario, collateral=inputs.collateral_detail, assets=inputs.assets,
        withdrawals=(w, decisions), failures=_failures(inputs, result, ok))
    hook("leaves")
    return state


def _masked(result: object, keep: np.ndarray) -> object:
    """The batch result with rows outside `keep` zeroed and marked not ok (so quantization cannot fail)."""
    import dataclasses

    fields = {}
    for name in ("equity", "initial_margin", "maintenance_margin"):
        fields[name] = np.where(keep, getattr(result, name), 0.0)
    fields["risk_array"] = np.where(keep[:, None], result.risk_array, 0.0)  # type: ignore[attr-defined]
    fields["ok"] = keep
    return dataclasses.replace(result, **fields)  # type: ignore[type-var]


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


def build_margin_state(*, network_id: int, keyset_id: int, epoch: int, pins: tuple[tuple[int, int, bytes], ...],
                       params_hash: bytes, rows: np.ndarray, accounts: np.ndarray, equity: np.ndarray,
                       im: np.ndarray, mm: np.ndarray, flags: np.ndarray, approvals: dict[int, tuple[bytes, ...]],
                       equity_before: np.ndarray, risk_array: np.ndarray, worst_scenario: np.ndarray,
                       collateral: object, assets: tuple[str, ...], withdrawals: tuple[object, object],
                       failures: tuple[AccountFailure, ...]) -> MarginState:
    """Leaves (rows in address order), tree and digest (per-leaf objects: replaced by the columnar builder)."""
    detail = collateral
    by_row: dict[int, list[tuple[int, str, int]]] = {}
    for r, c, a, (hi, lo) in zip(detail.row.tolist(), detail.chain_id.tolist(), detail.asset.tolist(),  # type: ignore[attr-defined]
                                 detail.base.tolist(), strict=True):  # type: ignore[attr-defined]
        by_row.setdefault(r, []).append((c, assets[a], (hi << 64) | lo))
    leaves, details = [], []
    for r in rows.tolist():
        account = "0x" + accounts[r].tobytes().hex()
        leaves.append(MarginLeaf(account, int(equity[r]), int(im[r]), int(mm[r]), int(flags[r]),
                                 approvals.get(r, ())))
        worst = int(worst_scenario[r])
        details.append(AccountDetail(account, int(equity_before[r]), int(equity[r]) - int(im[r]),
                                     tuple(risk_array[r].tolist()), None if worst < 0 else worst,
                                     tuple(sorted(by_row.get(r, ())))))
    keccak = make_keccak()
    tree = build_tree([keccak(keccak(encode_margin_leaf(leaf))) for leaf in leaves])
    inputs_digest = compute_inputs_digest(pins)
    digest = compute_state_digest(network_id, keyset_id, epoch, inputs_digest, params_hash, tree.root, len(leaves))
    w, decisions = withdrawals
    out = tuple(
        WithdrawalDecision(int(w.chain_id[k]), int(w.request_id[k]), "0x" + accounts[int(w.row[k])].tobytes().hex(),  # type: ignore[attr-defined]
                           w.withdrawal_id[k], int(decisions.deduction[k]), bool(decisions.approved[k]),  # type: ignore[attr-defined]
                           decisions.reasons[k])  # type: ignore[attr-defined]
        for k in range(len(w)))  # type: ignore[arg-type]
    return MarginState(network_id=network_id, keyset_id=keyset_id, epoch=epoch, pins=pins,
                       inputs_digest=inputs_digest, params_hash=params_hash, root=tree.root, leaf_count=len(leaves),
                       digest=digest, leaves=tuple(leaves), details=tuple(details), withdrawals=out,
                       failures=failures, tree=tree)
