"""The merge's position matrix: the books' positions as one canonical CSR matrix, rows in address order.

Each book's positions are sorted by (local row, local column) (`bridges.book.PositionTable`) and `rows_of` maps
a local row to its global row (address order), so every entry's place in the CSR arrays follows from counts per
row: one scatter per book, no sort of the entries. The books' column ranges are disjoint and ascend in chain-id
order (a column belongs to one chain). The result equals scipy's COO -> CSR conversion of the same entries (same
`indptr`, `indices`, `data`). Pure; persists nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from bridges.statecodec import QTY_SCALE


@dataclass(frozen=True)
class BookEntries:
    """One book's live positions in valid columns, in the book's key order."""

    local_row: np.ndarray  # int64, non-decreasing
    column: np.ndarray  # int64 global column
    qty: np.ndarray  # int64 quantity (1e8 fixed point)
    rows_of: np.ndarray  # int64 local row -> global row (unique)


def build_position_matrix(books: Sequence[BookEntries], n: int, n_columns: int) -> sp.csr_matrix:
    """(n, n_columns) float64 quantities in units, canonical (sorted columns, no duplicates). The books come
    in chain-id order, so their global column ranges ascend and a row's entries are placed book after book.
    Each entry goes to `start[global row] + its index inside its local row`, with `start` the next free slot
    of the global row (one scatter per book, no sort unless a book's columns do not ascend)."""
    local_counts = [np.bincount(e.local_row, minlength=len(e.rows_of)) for e in books]
    counts = np.zeros(n, dtype=np.int64)
    for e, c in zip(books, local_counts, strict=True):
        counts[e.rows_of] += c  # rows_of is unique: no repeats
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    nnz = int(indptr[-1])
    index_dtype = np.int32 if max(nnz, n, n_columns) < 2**31 else np.int64
    data = np.empty(nnz, dtype=np.float64)
    indices = np.empty(nnz, dtype=index_dtype)
    start = indptr[:-1].copy()
    for e, c in zip(books, local_counts, strict=True):
        local_start = np.zeros(len(c), dtype=np.int64)
        np.cumsum(c[:-1], out=local_start[1:])
        dest = (start[e.rows_of] - local_start)[e.local_row]
        dest += np.arange(len(dest), dtype=np.int64)
        data[dest] = e.qty.astype(np.float64) / float(QTY_SCALE)
        indices[dest] = e.column
        start[e.rows_of] += c
    out = sp.csr_matrix((data, indices, indptr), shape=(n, n_columns), copy=False)
    out.sort_indices()  # a check only when every book's columns ascend with its local columns (the usual case)
    return out
