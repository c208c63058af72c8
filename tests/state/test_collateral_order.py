"""The per-leaf collateral rows: the packed-key sort equals the stable argsort by leaf, for the merge's layout
((chain, asset) blocks, each leaf at most once per block, -1 for rows without a leaf) and for any other."""

import numpy as np

from node.pipeline import _stable_by_leaf


def _reference(leaf: np.ndarray) -> np.ndarray:
    keep = np.flatnonzero(leaf >= 0)
    return keep[np.argsort(leaf[keep], kind="stable")]


def test_packed_sort_equals_the_stable_argsort_on_block_layouts() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        n = int(rng.integers(1, 400))
        leaf = []
        for _chain in (1, 2):
            for _asset in range(int(rng.integers(1, 4))):
                rows = rng.choice(n + 20, size=int(rng.integers(0, n)), replace=False) - 20  # -20..-1: no leaf
                rows = np.where(rows < 0, -1, rows % n)
                rows = np.concatenate([rows[rows < 0], np.unique(rows[rows >= 0])])
                rng.shuffle(rows)
                leaf.append(rows)
        lf = np.concatenate(leaf).astype(np.int64)
        assert np.array_equal(_stable_by_leaf(lf), _reference(lf))


def test_repeated_leaves_keep_their_index_order() -> None:
    rng = np.random.default_rng(4)
    leaf = np.array([3, 1, 3, 0, -1, 1], dtype=np.int64)
    assert np.array_equal(_stable_by_leaf(leaf), _reference(leaf))
    many = rng.integers(-1, 50, size=5_000).astype(np.int64)
    assert np.array_equal(_stable_by_leaf(many), _reference(many))
    empty = np.zeros(0, dtype=np.int64)
    assert len(_stable_by_leaf(empty)) == 0
