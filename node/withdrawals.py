"""Withdrawal approvals of one epoch: the rule that makes a cross-chain double withdrawal impossible.

Invariant (DESIGN.md, CollateralVault NatSpec): the sum of the withdrawals that can complete, on all
chains together, never exceeds the free collateral of a state that approved them. Rule:
- every signed state deducts EVERY open request of the account, on every chain, from the account's
  equity (the leaf's equity is after these deductions), approved or not;
- it approves the account's open requests that predate the epoch (`request_epoch < epoch`, else the vault
  could not accept this state for them) iff the account has a leaf, is not liquidatable, has at most
  `MAX_APPROVED_WITHDRAWALS` open requests, and `equity - (sum of ALL deductions) >= IM`; otherwise none.
Why this is enough: an approval from an older state e' covers requests that were open at e'; any of them
still open at a later state e is deducted there too, and one completed before e's pin already lowered e's
balances. So whatever mix of states the vaults of different chains accept, the completed total fits the
free collateral of the newest approving state. The vault adds an approval window and a liquidation floor
that never goes down (CollateralVault.sol).
A withdrawal's deduction is its haircut value `ceil(units * price * (1 - haircut) * 1e6)` micro-USD (rounded
up: never under-deduct), float64 basic operations only.
Payouts (a request to be paid ledger cash in the chain's settlement asset, docs/clearing.md section 1) are
deducted at par, exactly the micro-USD the vault will take from the ledger cash (`par`, an integer), and are
approved only under the rule above AND while the account's open payouts on that chain together fit its
ledger cash there at the pin (`sum par <= chain_cash`); otherwise that chain's payouts are not approved (the
account's other requests are decided as before). The vault checks again at completion that the cash covers
the payout and that its pool holds the tokens. Pure and vectorised; persists nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from bridges.book_merge import WithdrawalColumns
from bridges.statecodec import MAX_APPROVED_WITHDRAWALS, USD_SCALE


@dataclass(frozen=True)
class WithdrawalDecisions:
    deduction: np.ndarray  # int64 per request (micro-USD)
    approved: np.ndarray  # bool per request
    reasons: tuple[str, ...]  # per request: "approved" or why not
    total: np.ndarray  # int64 per account row: sum of the deductions of its open requests
    approved_ids: dict[int, tuple[bytes, ...]]  # row -> approved withdrawal ids in request order


def compute_deductions(w: WithdrawalColumns, prices: Mapping[str, float],
                       haircut: Callable[[str], float]) -> np.ndarray:
    """Deduction per request in micro-USD: a withdrawal's haircut value, rounded up (a request in an unpriced
    asset deducts 0; its account has no leaf, see bridges.book_merge), a payout's par value."""
    price = np.array([prices.get(a, 0.0) for a in w.asset], dtype=np.float64)
    keep = np.array([1.0 - haircut(a) for a in w.asset], dtype=np.float64)
    value = np.ceil(w.units * price * keep * float(USD_SCALE))
    return np.where(w.payout, w.par, value.astype(np.int64))


def decide_withdrawals(w: WithdrawalColumns, deduction: np.ndarray, epoch: int, ok: np.ndarray,
                       equity: np.ndarray, im: np.ndarray, liquidatable: np.ndarray) -> WithdrawalDecisions:
    n = len(ok)
    total = np.zeros(n, dtype=np.int64)
    count = np.zeros(n, dtype=np.int64)
    if len(w):
        np.add.at(total, w.row, deduction)
        np.add.at(count, w.row, 1)
    fits = equity - total >= im
    account_ok = ok & ~liquidatable & (count <= MAX_APPROVED_WITHDRAWALS) & fits
    payouts = _payouts_per_chain(w)
    payout_fits = ~w.payout | (payouts <= w.chain_cash)
    approved = account_ok[w.row] & (w.request_epoch < epoch) & payout_fits if len(w) else np.zeros(0, dtype=bool)
    reasons = []
    ids: dict[int, list[bytes]] = {}
    for k in range(len(w)):
        r = int(w.row[k])
        if approved[k]:
            reasons.append("approved")
            ids.setdefault(r, []).append(w.withdrawal_id[k])
        elif not ok[r]:
            reasons.append("account has no leaf this epoch")
        elif w.request_epoch[k] >= epoch:
            reasons.append(f"requested at epoch {int(w.request_epoch[k])}, not before {epoch}")
        elif liquidatable[r]:
            reasons.append("account is liquidatable")
        elif count[r] > MAX_APPROVED_WITHDRAWALS:
            reasons.append(f"account has {int(count[r])} open requests > {MAX_APPROVED_WITHDRAWALS}")
        elif not fits[r]:
            reasons.append(f"equity {int(equity[r])} - open requests {int(total[r])} < IM {int(im[r])}")
        else:
            reasons.append(f"open payouts {int(payouts[k])} on chain {int(w.chain_id[k])} > ledger cash "
                           f"{int(w.chain_cash[k])} there")
    return WithdrawalDecisions(deduction, approved, tuple(reasons), total,
                               {r: tuple(v) for r, v in ids.items()})


def _payouts_per_chain(w: WithdrawalColumns) -> np.ndarray:
    """Per request: the sum of the par values of its account's open payouts on its chain (int64)."""
    if not len(w):
        return np.zeros(0, dtype=np.int64)
    starts = np.ones(len(w), dtype=bool)  # the columns are sorted by (row, chain id): groups are runs
    starts[1:] = (w.row[1:] != w.row[:-1]) | (w.chain_id[1:] != w.chain_id[:-1])
    group = np.cumsum(starts) - 1
    sums = np.zeros(int(group[-1]) + 1, dtype=np.int64)
    np.add.at(sums, group, np.where(w.payout, w.par, 0))
    return sums[group]
