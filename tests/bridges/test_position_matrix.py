"""`bridges.position_matrix.build_position_matrix` equals scipy's COO -> CSR conversion of the same entries
(indptr, indices and data bit for bit) over randomized books: accounts on one chain only, rows without
positions, columns that do not ascend with the local columns, invalid columns left out, empty books."""

import numpy as np
import scipy.sparse as sp

from bridges.position_matrix import BookEntries, build_position_matrix
from bridges.statecodec import QTY_SCALE


def _random_books(rng: np.random.Generator) -> tuple[list[BookEntries], int, int]:
    n = int(rng.integers(1, 300))
    books, first_col = [], 0
    for _ in range(int(rng.integers(1, 4))):
        nb = int(rng.integers(0, n + 1))
        rows_of = rng.choice(n, size=nb, replace=False).astype(np.int64)
        width = int(rng.integers(1, 40))
        local_cols = rng.permutation(width) + first_col  # local column -> global column, any order
        keys = np.unique(rng.integers(0, max(nb, 1) * width, size=int(rng.integers(0, 4 * nb + 1))))
        if nb == 0:
            keys = keys[:0]
        local_row, local_col = keys // width, keys % width
        keep = rng.random(len(keys)) < 0.9  # columns that cannot be valued are left out by the merge
        qty = rng.integers(-10**12, 10**12, size=len(keys)).astype(np.int64)
        qty[qty == 0] = 1
        books.append(BookEntries(local_row[keep].astype(np.int64), local_cols[local_col[keep]].astype(np.int64),
                                 qty[keep], rows_of))
        first_col += width
    return books, n, first_col


def _reference(books: list[BookEntries], n: int, n_columns: int) -> sp.csr_matrix:
    rows = np.concatenate([b.rows_of[b.local_row] for b in books])
    cols = np.concatenate([b.column for b in books])
    vals = np.concatenate([b.qty.astype(np.float64) / float(QTY_SCALE) for b in books])
    out = sp.csr_matrix((vals, (rows, cols)), shape=(n, n_columns))
    out.sort_indices()
    return out


def test_equals_the_coo_conversion() -> None:
    rng = np.random.default_rng(11)
    for _ in range(200):
        books, n, n_columns = _random_books(rng)
        got, want = build_position_matrix(books, n, n_columns), _reference(books, n, n_columns)
        assert got.shape == want.shape and got.has_canonical_format
        assert np.array_equal(got.indptr, want.indptr)
        assert np.array_equal(got.indices, want.indices)
        assert np.array_equal(got.data, want.data)


def test_no_books_gives_an_empty_matrix() -> None:
    got = build_position_matrix([], 5, 3)
    assert got.shape == (5, 3) and got.nnz == 0 and got.dtype == np.float64
