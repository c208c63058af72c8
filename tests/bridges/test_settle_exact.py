"""`bridges.book_merge._settle` is exact: every position's settlement value equals the Python-integer
reference of docs/clearing.md section 2, `rint(q F / 1e8)` with ties to even (as `np.rint`) for futures and
`rint(q S / 1e8) + floor(-q (I - E) / 1e8)` for perps, on random and extreme int64 operands, including
values where the float64 computation of an earlier version rounded wrongly; a value of 2^62 or more is
reported in the out-of-range mask (its account fails; the epoch goes on)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bridges.book_merge import _settle

QTY = 10**8
INT64_MAX = 2**63 - 1
LIMIT = 2**62


def reference(kind: int, q: int, mark: int, index: int, entry: int) -> int:
    """docs/clearing.md section 2 with exact rationals: Python's round() of a Fraction rounds ties to even."""
    if kind == 0:
        return 0
    value = round(Fraction(q * mark, QTY))
    if kind == 2:
        value += (-q * (index - entry)) // QTY
    return value


def settle(rows: list[tuple[int, int, int, int, int]]) -> list[int | None]:
    """The settlement values, None for a position out of range (value 0 in the returned array)."""
    kind, q, mark, index, entry = (np.array([r[i] for r in rows], dtype=np.int64) for i in range(5))
    values, over = _settle(kind.astype(np.int8), q, mark, index, entry)
    assert not values[over].any()
    return [None if o else v for v, o in zip(values.tolist(), over.tolist(), strict=True)]


def expect(row: tuple[int, int, int, int, int]) -> int | None:
    value = reference(*row)
    return value if abs(value) < LIMIT else None


def float_version(kind: int, q: int, mark: int, index: int, entry: int) -> float:
    """The float64 computation this module used before."""
    value = np.rint(np.float64(q) * np.float64(mark) / 1e8)
    if kind == 2:
        value += np.floor(-(np.float64(q) * (np.float64(index) - np.float64(entry))) / 1e8)
    return float(value)


INT64 = st.integers(-INT64_MAX - 1, INT64_MAX)
# operand sizes met in practice and at the edges: small, realistic (1e8-scaled quantities, micro-USD prices)
QTYS = st.one_of(st.integers(-10**16, 10**16), st.integers(-1000, 1000).map(lambda k: k * QTY // 2), INT64)
MARKS = st.one_of(st.integers(1, 10**13), st.integers(1, INT64_MAX))
INDICES = st.one_of(st.integers(-10**12, 10**12), INT64)


@st.composite
def positions(draw: st.DrawFn) -> tuple[int, int, int, int, int]:
    return (draw(st.sampled_from((0, 1, 2))), draw(QTYS), draw(MARKS), draw(INDICES), draw(INDICES))


@settings(max_examples=400, deadline=None)
@given(rows=st.lists(positions(), max_size=40))
@example(rows=[(1, 5 * QTY // 2 + 1, 100_400_000_001, 0, 0)])
def test_settlement_equals_the_integer_reference(rows: list[tuple[int, int, int, int, int]]) -> None:
    assert settle(rows) == [expect(r) for r in rows]


@settings(max_examples=300, deadline=None)
@given(q=st.integers(-(2**40), 2**40), mark=st.integers(1, 2**40), index=st.integers(-(2**40), 2**40),
       entry=st.integers(-(2**40), 2**40), kind=st.sampled_from((1, 2)))
def test_settlement_of_realistic_sizes_is_exact(q: int, mark: int, index: int, entry: int, kind: int) -> None:
    assert settle([(kind, q, mark, index, entry)]) == [reference(kind, q, mark, index, entry)]


@pytest.mark.parametrize("kind, q, mark, index, entry", [
    # q mark = 10^16 (q mark = 2^53 + 1 is not a float64): 100,000.000001 USD times 0.9...9 units
    (1, 99_999_999, 100_000_000_001, 0, 0),
    # ties: q mark / 1e8 = k + 1/2 rounds to the even neighbour, on both signs
    (1, QTY // 2, 3, 0, 0), (1, QTY // 2, 5, 0, 0), (1, -QTY // 2, 3, 0, 0), (1, -QTY // 2, 5, 0, 0),
    # a tie float64 cannot see: q mark = 2 (2^60 + 1) 1e8 / 2 ... + 1/2
    (1, 3 * QTY // 2, 2**61 // 3, 0, 0),
    # funding: floor of a negative non-integer, and an index difference past int64 (|I|, |E| near 2^63)
    (2, 1, 100_000, 150_000_000 + 1, 1), (2, -3, 7, INT64_MAX // 2, -INT64_MAX // 2),
    (2, 1, 1, INT64_MAX, -INT64_MAX),
])
def test_settlement_where_float64_may_round_wrongly(kind: int, q: int, mark: int, index: int, entry: int) -> None:
    assert settle([(kind, q, mark, index, entry)]) == [reference(kind, q, mark, index, entry)]


@pytest.mark.parametrize("q, mark", [
    (250_000_000, 855_587_381_333),  # 2.5 units at 855,587.381333: a tie (..332.5) float64 rounds up, exact is even
    (5_259_231_880, 700_118_311_032),  # 52.5923188 units at 700,118.311032 (q F ~ 3.7e21, past 2^53)
    (9_534_038_490, 330_564_574_752),
])
def test_float64_rounded_wrongly_on_realistic_positions(q: int, mark: int) -> None:
    for kind, sign in ((1, 1), (1, -1), (2, 1), (2, -1)):
        row = (kind, sign * q, mark, 0, 0)
        assert float_version(*row) != reference(*row)
        assert settle([row]) == [reference(*row)]


def test_invalid_settlement_value_past_2_62_is_masked_and_the_others_computed() -> None:
    assert settle([(1, INT64_MAX, INT64_MAX, 0, 0), (1, QTY, 5, 0, 0)]) == [None, 5]
    # each term < 2^62, the sum is not
    assert settle([(2, 2 * QTY, 2**61 - 1, -(2**61), 2**61 - 1)]) == [None]
    # just inside: exact
    q = LIMIT // 10**6 * QTY // 10**4
    assert settle([(1, q, 10**10 - 1, 0, 0)]) == [reference(1, q, 10**10 - 1, 0, 0)]


def test_options_and_spot_settle_to_zero_and_empty_input() -> None:
    assert settle([(0, INT64_MAX, INT64_MAX, INT64_MAX, -INT64_MAX)]) == [0]
    assert settle([]) == []


@settings(max_examples=300, deadline=None)
@given(value=st.integers(2**59, 2**62 + 2**60), mark=st.integers(1, 2**62), sign=st.sampled_from((1, -1)),
       kind=st.sampled_from((1, 2)), index=st.integers(-(2**61), 2**61))
def test_settlement_at_the_int64_fast_path_border(value: int, mark: int, sign: int, kind: int, index: int) -> None:
    """Operands around the vectorised path's bounds (|value| and |mark| near 2^61, the limit 2^62)."""
    q = max(min(sign * value * QTY // mark, INT64_MAX), -INT64_MAX)
    row = (kind, q, mark, index, index // 3)
    assert settle([row]) == [expect(row)]
