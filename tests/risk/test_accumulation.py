"""risk.accumulation: segment sums equal a plain left-to-right Python sum bit for bit; duplicates are netted
in input order; the batch result does not depend on the block size."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import risk.accumulation
import risk.batch
import risk.batch_accounts
from risk.accumulation import compute_ordered_sum, compute_segment_sums, compute_segments
from risk.batch import compute_margin_batch
from risk.params import PM2, RRA1, RiskParams
from risk.quantize import encode_quantized, quantized
from tests.risk.test_batch import make_input
from tests.risk.test_batch_v2 import make_input_v2


def random_block(seed: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR row pointers and per-entry keys (non-decreasing inside each row), with empty rows and long runs."""
    rng = np.random.default_rng(seed)
    counts = rng.choice([0, 1, 2, 5, 9, 40], size=rows)
    keys = np.concatenate([np.sort(rng.integers(0, 3, c)) for c in counts] or [np.zeros(0, dtype=np.int64)])
    return np.concatenate([[0], np.cumsum(counts)]), keys


@pytest.mark.parametrize("seed", range(5))
def test_segment_sums_equal_sequential_python_sums(seed: int) -> None:
    indptr, keys = random_block(seed, 300)
    rng = np.random.default_rng(100 + seed)
    table = rng.normal(size=(50, 7)) * 10.0 ** rng.integers(-8, 8, size=(50, 1))
    rows = rng.integers(0, 50, len(keys))
    factor = rng.normal(size=len(keys)) * 1e3
    segments = compute_segments(indptr, keys)
    sums = compute_segment_sums(table, rows, factor, segments)
    assert sums.shape == (len(segments.start) + 1, 7) and not sums[-1].any()
    expected = {}
    for r in range(len(indptr) - 1):
        for e in range(indptr[r], indptr[r + 1]):
            key = (r, int(keys[e]))
            product = [float(factor[e]) * float(v) for v in table[rows[e]]]
            expected[key] = product if key not in expected else [a + b for a, b in zip(expected[key], product, strict=True)]
    got = {(int(r), int(k)): sums[i].tolist() for i, (r, k) in enumerate(zip(segments.row, segments.key, strict=True))}
    assert got == expected  # exact equality: same order, same roundings


def test_empty_block() -> None:
    segments = compute_segments(np.zeros(4, dtype=np.int64), np.zeros(0, dtype=np.int64))
    assert len(segments.start) == 0 and segments.active == ()
    assert compute_segment_sums(np.ones((3, 2)), np.zeros(0, dtype=np.int64), np.zeros(0), segments).tolist() == [[0.0, 0.0]]


def test_ordered_sum_is_left_to_right() -> None:
    terms = [np.array([1e16]), np.array([1.0]), np.array([1.0]), np.array([-1e16])]
    assert compute_ordered_sum(terms).tolist() == [0.0]  # (1e16 + 1) + 1 rounds each time
    assert compute_ordered_sum(reversed(terms)).tolist() == [0.0]
    assert compute_ordered_sum([np.array([1.0]), np.array([1e16]), np.array([-1e16]), np.array([1.0])]).tolist() == [1.0]


@pytest.mark.parametrize("params", [RRA1, PM2], ids=["rra1", "pm2"])
def test_batch_bits_do_not_depend_on_block_sizes(monkeypatch: pytest.MonkeyPatch, params: RiskParams) -> None:
    inp = make_input(300, seed=12) if params is RRA1 else make_input_v2(300, seed=12)
    reference = compute_margin_batch(inp, params, threads=1)
    assert reference.liquidatable.any()
    for block, per_pass, threads in ((1, 1, 1), (7, 3, 2), (64, 5, 3), (300, 2048, 2)):
        monkeypatch.setattr(risk.batch_accounts, "BLOCK_ROWS", block)
        monkeypatch.setattr(risk.accumulation, "SEGMENTS_PER_PASS", per_pass)
        result = compute_margin_batch(inp, params, threads=threads)
        assert encode_quantized(quantized(result)) == encode_quantized(quantized(reference))
        for name in ("risk_array", "scan_loss_by_underlying", "isolated_margin_sum", "positions_mtm",
                     "short_option_minimum", "worst_scenario", "basis_loss", "initial_contingency"):
            assert getattr(result, name).tobytes() == getattr(reference, name).tobytes(), (block, name)
        assert result.liquidation.equity_after.tobytes() == reference.liquidation.equity_after.tobytes()


def test_duplicates_are_netted_left_to_right_in_input_order() -> None:
    rng = np.random.default_rng(13)
    rows, cols = rng.integers(0, 40, 2000), rng.integers(0, 20, 2000)
    values = rng.normal(size=2000) * 10.0 ** rng.integers(-8, 8, 2000)
    order = np.argsort(rows, kind="stable")  # rows grouped, columns unsorted, many duplicates
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=40))])
    matrix = sp.csr_matrix((values[order], cols[order], indptr), shape=(40, 20))
    assert not matrix.has_canonical_format
    netted = risk.batch._net_duplicates(matrix)
    expected: dict[tuple[int, int], float] = {}
    for r, c, v in zip(rows[order].tolist(), cols[order].tolist(), values[order].tolist(), strict=True):
        expected[(r, c)] = v if (r, c) not in expected else expected[(r, c)] + v
    assert netted.has_canonical_format
    got = {(r, int(c)): float(v) for r in range(40)
           for c, v in zip(netted.indices[netted.indptr[r]:netted.indptr[r + 1]],
                           netted.data[netted.indptr[r]:netted.indptr[r + 1]], strict=True)}
    assert got == expected
