"""LQ-1 liquidation plans inside the batch engine, vectorised over the liquidatable accounts.

Same rule as `risk.liquidation` (greedy close maximising `E' - IM'`, ties within tolerance to the
lowest original position index, stop at `E >= IM`). Accounts are processed in chunks of
`CHUNK_ACCOUNTS`. In one greedy step every candidate of every account still liquidating becomes a
virtual account: the account's open book without that position (its collateral charges and its
risk-cancelling collateral stay); the virtual accounts go through the accounts phase itself
(`risk.batch_accounts.compute_rows`, in `threads` ranges), so `IM'` and `MM'` are computed exactly as an
account's margins are, with every term of the parameter set. A batch position is an (account,
instrument) entry with a non-zero net quantity; its index in a plan is the instrument's original column.
Every sum runs in a fixed order (`risk.accumulation`), so a plan is the same bits on every CPU. Nothing is
persisted.
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from risk.batch_accounts import AccountContext, allocate, compute_rows
from risk.liquidation import TIE_TOLERANCE, LiquidationStep

if TYPE_CHECKING:
    from risk.batch import PreparedPositions

CHUNK_ACCOUNTS = 4096


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


@dataclass
class _Chunk:
    """The entries of a chunk of accounts (CSR of the chunk) and the greedy state."""

    indptr: np.ndarray  # chunk-relative
    columns: np.ndarray  # sorted columns of each account's entries
    quantity: np.ndarray
    original: np.ndarray  # original instrument index per entry
    penalty: np.ndarray  # per entry
    is_open: np.ndarray  # bool per entry
    equity: np.ndarray  # per account
    im: np.ndarray
    mm: np.ndarray


def _has_open(chunk: _Chunk) -> np.ndarray:
    """Per account of the chunk: an open position remains."""
    owner = np.repeat(np.arange(len(chunk.equity)), np.diff(chunk.indptr))
    return np.bincount(owner[chunk.is_open], minlength=len(chunk.equity)) > 0


def _virtual_book(chunk: _Chunk, lanes: np.ndarray, n_columns: int) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """CSR of every (lane, open candidate) book without that candidate, the lane and the candidate entry of
    each virtual row (rows ordered by lane, then candidate entry)."""
    owner = np.repeat(np.arange(len(chunk.equity)), np.diff(chunk.indptr))
    active = np.zeros(len(chunk.equity), dtype=bool)
    active[lanes] = True
    open_entries = np.flatnonzero(chunk.is_open & active[owner])  # grouped by lane, in entry order
    lane_of_open = owner[open_entries]
    n_open = np.bincount(lane_of_open, minlength=len(chunk.equity))
    first_open = np.concatenate([[0], np.cumsum(n_open)])[:-1]
    removed = open_entries  # one virtual row per open position
    lane_of = owner[removed]
    width = n_open[lane_of]  # entries of the book before the removal
    row_start = np.concatenate([[0], np.cumsum(width)])
    flat = np.repeat(first_open[lane_of] - row_start[:-1], width) + np.arange(row_start[-1])
    entries = open_entries[flat]
    keep = entries != np.repeat(removed, width)
    indptr = np.concatenate([[0], np.cumsum(width - 1)])
    kept = entries[keep]
    book = sp.csr_matrix((chunk.quantity[kept], chunk.columns[kept], indptr), shape=(len(removed), n_columns))
    return book, lane_of, removed


def _margins(ctx: AccountContext, book: sp.csr_matrix, lane_rows: np.ndarray,
             threads: int) -> tuple[np.ndarray, np.ndarray]:
    """(IM, MM) of the virtual accounts, in `threads` contiguous ranges (each row is computed alone, so
    the bits do not depend on the split); `lane_rows` maps each to its account row (collateral charges)."""
    n = book.shape[0]
    out = allocate(n, ctx.layout.size, len(ctx.params.underlyings))
    virtual = ctx.for_rows(lane_rows)
    cuts = np.linspace(0, n, threads + 1).astype(np.int64)
    if threads == 1 or n < 2 * threads:
        compute_rows(virtual, book, out, 0, n)
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for job in [pool.submit(compute_rows, virtual, book, out, int(a), int(b)) for a, b in itertools.pairwise(cuts)]:
                job.result()
    return out["initial_margin"], out["maintenance_margin"]


def _plan_chunk(ctx: AccountContext, chunk: _Chunk, rows: np.ndarray, n_columns: int,
                threads: int) -> list[np.ndarray]:
    """Greedy steps of a chunk as columns (lane, original position, penalty, equity_after, im_after, mm_after)."""
    records: list[tuple[np.ndarray, ...]] = []
    lanes = np.flatnonzero(_has_open(chunk) & (chunk.equity < chunk.im))
    while len(lanes):
        book, lane_of, removed = _virtual_book(chunk, lanes, n_columns)
        im_after, mm_after = _margins(ctx, book, rows[lane_of], threads)
        scores = (chunk.equity[lane_of] - chunk.penalty[removed]) - im_after
        best = np.full(len(chunk.equity), -np.inf)
        np.maximum.at(best, lane_of, scores)
        floor = best - TIE_TOLERANCE * np.maximum(np.abs(best), 1.0)
        within = scores >= floor[lane_of]
        rank = np.where(within, chunk.original[removed], np.iinfo(np.int64).max)
        first = np.full(len(chunk.equity), np.iinfo(np.int64).max)
        np.minimum.at(first, lane_of, rank)
        chosen = np.flatnonzero(within & (rank == first[lane_of]))  # one virtual row per lane (originals unique)
        lane, entry = lane_of[chosen], removed[chosen]
        chunk.equity[lane] -= chunk.penalty[entry]
        chunk.im[lane] = im_after[chosen]
        chunk.mm[lane] = mm_after[chosen]
        chunk.is_open[entry] = False
        records.append((lane, chunk.original[entry], chunk.penalty[entry], chunk.equity[lane], chunk.im[lane],
                        chunk.mm[lane]))
        lanes = lanes[_has_open(chunk)[lanes] & (chunk.equity[lanes] < chunk.im[lanes])]
    if not records:
        return [np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)] + [np.zeros(0)] * 4
    return [np.concatenate(col) for col in zip(*records, strict=True)]


def _make_chunk(prep: PreparedPositions, positions: sp.csr_matrix, out: dict[str, np.ndarray],
                rows: np.ndarray) -> _Chunk:
    starts, ends = positions.indptr[rows].astype(np.int64), positions.indptr[rows + 1].astype(np.int64)
    counts = ends - starts
    owner_start = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    entries = np.arange(len(owner_start)) + owner_start
    columns, quantity = positions.indices[entries].astype(np.int64), positions.data[entries]
    original = prep.original_column[columns]
    return _Chunk(indptr=np.concatenate([[0], np.cumsum(counts)]), columns=columns, quantity=quantity,
                  original=original,
                  penalty=np.abs(quantity) * prep.table.penalty[columns], is_open=np.ones(len(columns), dtype=bool),
                  equity=out["equity"][rows].copy(), im=out["initial_margin"][rows].copy(),
                  mm=out["maintenance_margin"][rows].copy())


def compute_batch_liquidation_plans(ctx: AccountContext, prep: PreparedPositions, positions: sp.csr_matrix,
                                    out: dict[str, np.ndarray], rows: np.ndarray, threads: int = 1) -> LiquidationPlans:
    """LQ-1 plans of the liquidatable account rows (sorted ascending)."""
    columns: list[list[np.ndarray]] = [[] for _ in range(6)]
    for c0 in range(0, len(rows), CHUNK_ACCOUNTS):
        chunk_rows = rows[c0:c0 + CHUNK_ACCOUNTS]
        chunk = _make_chunk(prep, positions, out, chunk_rows)
        lane, position, penalty, equity, im, mm = _plan_chunk(ctx, chunk, chunk_rows, positions.shape[1], threads)
        for acc, values in zip(columns, (chunk_rows[lane], position, penalty, equity, im, mm), strict=True):
            acc.append(values)
    if not columns[0]:
        return empty_plans()
    account, position, penalty, equity, im, mm = (np.concatenate(c) for c in columns)
    order = np.argsort(account, kind="stable")  # steps of one account keep their order
    return LiquidationPlans(account[order].astype(np.int64), position[order].astype(np.int64), penalty[order],
                            equity[order], im[order], mm[order])
