"""`bridges.merkle.sorted_order` (packed 40-bit prefix + index keys) is the stable byte-string order: rows that share
their first 1..8 bytes go through the tie runs; duplicates keep their index order."""

import random

import numpy as np

from bridges.merkle import sorted_order


def _reference(rows: list[bytes]) -> list[int]:
    return sorted(range(len(rows)), key=lambda i: (rows[i], i))


def test_prefix_ties_of_every_length() -> None:
    rng = random.Random(5)
    for _ in range(20):
        base = [rng.randbytes(32) for _ in range(4)]
        rows = [*base]
        for cut in range(1, 10):
            rows += [rng.choice(base)[:cut] + rng.randbytes(32 - cut) for _ in range(rng.randint(1, 4))]
        rows += [rng.choice(base) for _ in range(3)]  # exact duplicates
        rng.shuffle(rows)
        array = np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), 32)
        assert sorted_order(array).tolist() == _reference(rows)


def test_random_rows_match_the_byte_order() -> None:
    rng = np.random.default_rng(6)
    array = rng.integers(0, 256, size=(20_000, 32), dtype=np.uint8)
    array[::7, :5] = 0  # many rows tied in the first 40 bits
    rows = [r.tobytes() for r in array]
    assert sorted_order(array).tolist() == _reference(rows)
    assert sorted_order(np.zeros((0, 32), dtype=np.uint8)).tolist() == []
