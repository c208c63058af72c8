"""The per-leaf collateral rows: the counting sort over (chain, asset) blocks equals the stable argsort by leaf,
and a layout with a leaf twice in one block falls back to the argsort (same result)."""

import numpy as np

from node.pipeline import _stable_by_leaf


def _reference(leaf: np.ndarray) -> np.ndarray:
    keep = np.flatnonzero(leaf >= 0)
    return keep[np.argsort(leaf[keep], kind="stable")]


def _offsets(leaf: np.ndarray, n: int) -> np.ndarray:
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(leaf[leaf >= 0], minlength=n), out=offsets[1:])
    return offsets


def test_block_counting_sort_equals_the_stable_argsort() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        n = int(rng.integers(1, 400))
        leaf, chain, asset = [], [], []
        for c in (1, 2):
            for a in range(int(rng.integers(1, 4))):
                rows = rng.choice(n + 20, size=int(rng.integers(0, n)), replace=False) - 20  # -20..-1: no leaf
                rows = np.where(rows < 0, -1, rows % n)
                rows = np.concatenate([rows[rows < 0], np.unique(rows[rows >= 0])])
                rng.shuffle(rows)
                leaf.append(rows)
                chain.append(np.full(len(rows), c))
                asset.append(np.full(len(rows), a))
        lf, ch, ast = (np.concatenate(p).astype(np.int64) for p in (leaf, chain, asset))
        assert np.array_equal(_stable_by_leaf(lf, ch, ast, _offsets(lf, n)), _reference(lf))


def test_a_leaf_twice_in_one_block_falls_back() -> None:
    leaf = np.array([3, 1, 3, 0, -1, 1], dtype=np.int64)
    chain = np.array([1, 1, 1, 2, 2, 2], dtype=np.int64)
    asset = np.zeros(6, dtype=np.int64)
    assert np.array_equal(_stable_by_leaf(leaf, chain, asset, _offsets(leaf, 4)), _reference(leaf))
    empty = np.zeros(0, dtype=np.int64)
    assert len(_stable_by_leaf(empty, empty, empty, _offsets(empty, 0))) == 0
