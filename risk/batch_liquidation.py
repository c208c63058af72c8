"""LQ-1 liquidation plans inside the batch engine, vectorised over the liquidatable accounts.

Same rule as `risk.liquidation` (greedy close maximising `E' - IM'`, ties within tolerance to the
lowest original position index, stop at `E >= IM`). Accounts are processed in chunks of
`CHUNK_ACCOUNTS`, each padded to its widest account; one greedy step evaluates every candidate of every
account at once: the per-underlying sums of the open book are recomputed from scratch each step and a
candidate's book is that sum minus the candidate's own P&L array. A batch position is an (account,
instrument) entry with a non-zero net quantity; its index in a plan is the instrument's original column.
Sums over positions run in slot order (`risk.accumulation.compute_ordered_sum`), never through einsum,
BLAS or `np.sum`, so a plan is the same bits on every CPU. Nothing is persisted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from risk.accumulation import compute_ordered_sum
from risk.liquidation import TIE_TOLERANCE, LiquidationStep
from risk.params import RiskParams

if TYPE_CHECKING:
    import scipy.sparse as sp

    from risk.batch import PreparedPositions

CHUNK_ACCOUNTS = 4096
_PAD_INDEX = np.iinfo(np.int64).max


@dataclass(frozen=True)
class _Book:
    """Padded per-position arrays of a chunk of accounts (L accounts x n positions)."""

    pnl: np.ndarray  # (L, n, S)
    uid: np.ndarray  # (L, n), -1 for padding
    som: np.ndarray  # (L, n)
    penalty: np.ndarray  # (L, n)
    original: np.ndarray  # (L, n) original instrument index, _PAD_INDEX for padding


def _build_book(prep: PreparedPositions, positions: sp.csr_matrix, rows: np.ndarray) -> _Book:
    t = prep.table
    starts, ends = positions.indptr[rows].astype(np.int64), positions.indptr[rows + 1].astype(np.int64)
    counts = ends - starts
    width = max(1, int(counts.max()))
    owner = np.repeat(np.arange(len(rows)), counts)
    slot = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
    entries = np.repeat(starts, counts) + slot
    cols, q = positions.indices[entries], positions.data[entries]
    original = prep.original_column[cols]
    order = np.lexsort((original, q == 0.0, owner))  # per account: open positions by original index
    cols, q, original = cols[order], q[order], original[order]
    closed = q == 0.0
    size = t.risk.shape[1]
    book = _Book(np.zeros((len(rows), width, size)), np.full((len(rows), width), -1, dtype=np.int64),
                 np.zeros((len(rows), width)), np.zeros((len(rows), width)),
                 np.full((len(rows), width), _PAD_INDEX, dtype=np.int64))
    book.pnl[owner, slot] = q[:, None] * t.risk[cols]
    book.uid[owner, slot] = np.where(closed, -1, t.underlying_index[cols])
    book.som[owner, slot] = np.where(q < 0.0, -q * t.som[cols], 0.0)
    book.penalty[owner, slot] = np.abs(q) * t.penalty[cols]
    book.original[owner, slot] = np.where(closed, _PAD_INDEX, original)
    return book


def _candidate_requirements(book: _Book, is_open: np.ndarray, params: RiskParams) -> np.ndarray:
    """(L, n): R of each account's open book without candidate c."""
    n_accounts, width, size = book.pnl.shape
    joint = np.zeros((n_accounts, width, size))
    separate = np.zeros((n_accounts, width))
    presence = np.zeros((n_accounts, width, len(params.underlyings)), dtype=bool)
    for u in range(len(params.underlyings)):
        member = is_open & (book.uid == u)
        if not member.any():
            continue
        mine = np.where(member[:, :, None], book.pnl, 0.0)
        total = compute_ordered_sum(mine[:, p] for p in range(width))
        arr = total[:, None, :] - mine
        joint += arr
        lowest = arr.min(axis=2)
        separate += np.where(lowest < 0.0, -lowest, 0.0)
        presence[:, :, u] = (np.count_nonzero(member, axis=1)[:, None] - member) > 0
    lowest = joint.min(axis=2)
    joint_loss = np.where(lowest < 0.0, -lowest, 0.0)
    credit = np.zeros((n_accounts, width))
    for members, c in params.correlation_groups:
        outside = [i for i, u in enumerate(params.underlyings) if u not in members]
        credit = np.where(~presence[:, :, outside].any(axis=2), c, credit)
    several = np.count_nonzero(presence, axis=2) > 1
    correlated = np.where(several, joint_loss + (1.0 - credit) * (separate - joint_loss), joint_loss)
    som = np.where(is_open, book.som, 0.0)
    som_without = compute_ordered_sum(som[:, p] for p in range(width))[:, None] - som
    return np.where(correlated >= som_without, correlated, som_without)


def _choose(scores: np.ndarray, is_open: np.ndarray) -> np.ndarray:
    """Per account: the first open candidate within tolerance of the best score."""
    masked = np.where(is_open, scores, -np.inf)
    best = masked.max(axis=1)
    floor = best - TIE_TOLERANCE * np.maximum(np.abs(best), 1.0)
    return np.argmax(is_open & (masked >= floor[:, None]), axis=1)


@dataclass(frozen=True)
class LiquidationPlans:
    """LQ-1 plans of a batch as flat arrays, one entry per step, sorted by account then step."""

    account: np.ndarray  # int64 account row
    position: np.ndarray  # int64 original instrument index closed
    penalty: np.ndarray
    equity_after: np.ndarray
    initial_margin_after: np.ndarray
    maintenance_margin_after: np.ndarray

    def get_accounts(self) -> np.ndarray:
        return np.unique(self.account)

    def get_plan(self, account: int) -> tuple[LiquidationStep, ...]:
        lo, hi = np.searchsorted(self.account, [account, account + 1])
        return tuple(
            LiquidationStep(int(self.position[i]), float(self.penalty[i]), float(self.equity_after[i]),
                            float(self.initial_margin_after[i]), float(self.maintenance_margin_after[i]))
            for i in range(lo, hi)
        )


def empty_plans() -> LiquidationPlans:
    z = np.zeros(0)
    return LiquidationPlans(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), z, z, z, z)


def _plan_chunk(book: _Book, equity: np.ndarray, im: np.ndarray, params: RiskParams) -> list[np.ndarray]:
    """Greedy steps of a chunk as columns (lane, position, penalty, equity_after, im_after)."""
    is_open = book.uid >= 0
    equity, im = equity.copy(), im.copy()
    records: list[tuple[np.ndarray, ...]] = []
    lanes = np.flatnonzero(is_open.any(axis=1) & (equity < im))
    while len(lanes):
        sub = _Book(book.pnl[lanes], book.uid[lanes], book.som[lanes], book.penalty[lanes], book.original[lanes])
        after = _candidate_requirements(sub, is_open[lanes], params)
        scores = (equity[lanes, None] - sub.penalty) - after
        chosen = _choose(scores, is_open[lanes])
        pick = np.arange(len(lanes))
        penalty = sub.penalty[pick, chosen]
        equity[lanes] -= penalty
        im[lanes] = after[pick, chosen]
        is_open[lanes, chosen] = False
        records.append((lanes, sub.original[pick, chosen], penalty, equity[lanes], im[lanes]))
        lanes = lanes[is_open[lanes].any(axis=1) & (equity[lanes] < im[lanes])]
    if not records:
        return [np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)] + [np.zeros(0)] * 3
    return [np.concatenate(col) for col in zip(*records, strict=True)]


def compute_batch_liquidation_plans(
    prep: PreparedPositions, positions: sp.csr_matrix, out: dict[str, np.ndarray], rows: np.ndarray,
    params: RiskParams,
) -> LiquidationPlans:
    """LQ-1 plans of the liquidatable account rows (sorted ascending)."""
    columns: list[list[np.ndarray]] = [[] for _ in range(5)]
    for c0 in range(0, len(rows), CHUNK_ACCOUNTS):
        chunk = rows[c0:c0 + CHUNK_ACCOUNTS]
        book = _build_book(prep, positions, chunk)
        lane, position, penalty, equity, im = _plan_chunk(
            book, out["equity"][chunk], out["initial_margin"][chunk], params)
        for acc, values in zip(columns, (chunk[lane], position, penalty, equity, im), strict=True):
            acc.append(values)
    if not columns[0]:
        return empty_plans()
    account, position, penalty, equity, im = (np.concatenate(c) for c in columns)
    order = np.argsort(account, kind="stable")  # steps of one account keep their order
    im = im[order]
    return LiquidationPlans(account[order].astype(np.int64), position[order].astype(np.int64), penalty[order],
                            equity[order], im, params.maintenance_factor * im)
