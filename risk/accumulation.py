"""Deterministic accumulation for the batch engine: sums whose order is fixed by the data alone.

A sum that reaches a signed leaf must not depend on the SIMD width, the thread count or the library
build. Sparse and dense matrix products (BLAS, scipy's compiled loops, which a build may contract into
FMA) and `np.sum` / `add.reduce` (pairwise and unrolled orders) give no such guarantee, so the batch
engine sums with this module only: elementwise products, then a sequential sum in CSR entry order,
`acc = p0; acc = acc + p1; ...`, each step one numpy ufunc call over many independent sums at once
(vectorised across sums, never within one sum). IEEE addition and multiplication are correctly rounded
on every CPU, so each sum is the same bits everywhere.

Layout: the entries of a block of CSR rows are cut into segments, the maximal runs of one key (the
underlying) inside a row; segments are ordered by length, longest first, so that in step j the segments
still adding are a prefix and the step is one contiguous slice operation; segments are taken a few
thousand at a time so that a step's products and sums stay in cache. Temporaries are the sums of one
block and the products of one step, so memory is bounded by the block size.
Nothing is persisted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

SEGMENTS_PER_PASS = 2048
"""Segments summed together step by step (keeps the step's products and sums in cache; any value gives the
same bits)."""


@dataclass(frozen=True)
class Segments:
    """Runs of equal key inside the rows of a CSR block, longest first (stable: ties keep entry order)."""

    start: np.ndarray  # int64 first entry of each segment (block-relative)
    row: np.ndarray  # int64 block-relative row of each segment
    key: np.ndarray  # key (underlying index) of each segment
    active: tuple[int, ...]  # active[j]: number of segments with more than j entries


def compute_segments(indptr: np.ndarray, keys: np.ndarray) -> Segments:
    """Segments of a CSR block with row pointers `indptr` (starting at 0) and one key per entry."""
    n = len(keys)
    indptr = np.asarray(indptr, dtype=np.int64)
    entry_row = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    is_start = np.empty(n, dtype=bool)
    is_start[:1] = True
    np.not_equal(keys[1:], keys[:-1], out=is_start[1:])
    is_start[1:] |= entry_row[1:] != entry_row[:-1]
    start = np.flatnonzero(is_start)
    length = np.diff(start, append=n)
    max_length = int(length.max()) if len(length) else 0
    descending = -length.astype(np.int16) if max_length < 2**15 else -length  # int16: numpy radix-sorts it
    start = np.take(start, np.argsort(descending, kind="stable"))
    longer = len(start) - np.cumsum(np.bincount(length, minlength=1))  # longer[j]: segments longer than j
    return Segments(start=start, row=np.take(entry_row, start), key=np.take(keys, start),
                    active=tuple(int(v) for v in longer[:max_length]))


def compute_segment_sums(table: np.ndarray, rows: np.ndarray, factor: np.ndarray, segments: Segments) -> np.ndarray:
    """(segments + 1, figures): per segment, the sum in entry order of `factor[e] * table[rows[e]]`; the last
    row is zero (the sum of no entry). Segments are taken `SEGMENTS_PER_PASS` at a time; in step j, the
    products of the j-th entries of the segments still adding (a prefix of the pass) are formed and added
    to that prefix of the sums."""
    n, width = len(segments.start), table.shape[1]
    acc = np.empty((n + 1, width))
    acc[n] = 0.0
    if n == 0:
        return acc
    step_major = np.concatenate([segments.start[:count] + j for j, count in enumerate(segments.active)])
    step_rows, step_factor = np.take(rows, step_major), np.take(factor, step_major)[:, None]
    offsets = np.concatenate([[0], np.cumsum(segments.active)]).tolist()
    step = np.empty((min(n, SEGMENTS_PER_PASS), width))
    for lo in range(0, n, SEGMENTS_PER_PASS):
        for j, count in enumerate(segments.active):
            hi = min(count, lo + SEGMENTS_PER_PASS)
            if hi <= lo:
                break
            products = acc[lo:hi] if j == 0 else step[:hi - lo]
            first = offsets[j] + lo
            np.take(table, step_rows[first:first + hi - lo], axis=0, out=products, mode="clip")
            np.multiply(products, step_factor[first:first + hi - lo], out=products)
            if j:
                np.add(acc[lo:hi], products, out=acc[lo:hi])
    return acc


def compute_ordered_sum(terms: Iterable[np.ndarray]) -> np.ndarray:
    """`((t0 + t1) + t2) + ...` elementwise over same-shaped float64 arrays, in the order given (new array)."""
    items = iter(terms)
    acc = np.array(next(items), dtype=np.float64, copy=True)
    for t in items:
        np.add(acc, t, out=acc)
    return acc
