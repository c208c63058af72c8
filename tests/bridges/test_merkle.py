"""bridges.merkle against OpenZeppelin's StandardMerkleTree: a published vector, a line-by-line port of
the JS library as the reference, proof verification and its refusals, the native keccak (single and
batched) against eth_hash."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
from eth_abi import encode
from eth_hash.auto import keccak

from bridges import merkle
from bridges.errors import EmptyTree, InvalidLeafValue
from bridges.merkle import (
    EMPTY_ROOT,
    build_tree,
    hash_pair,
    hash_sorted_pairs,
    keccak256,
    keccak_batch,
    make_keccak,
    sorted_order,
    verify_proof,
)


def reference_tree(leaf_hashes: list[bytes]) -> tuple[list[bytes], list[int]]:
    """Port of @openzeppelin/merkle-tree (core.ts makeMerkleTree + StandardMerkleTree.of)."""
    order = sorted(range(len(leaf_hashes)), key=lambda i: leaf_hashes[i])  # stable, like Array.sort
    leaves = [leaf_hashes[i] for i in order]
    tree: list[bytes] = [b""] * (2 * len(leaves) - 1)
    for i, leaf in enumerate(leaves):
        tree[len(tree) - 1 - i] = leaf
    for i in range(len(tree) - 1 - len(leaves), -1, -1):
        tree[i] = hash_pair(tree[2 * i + 1], tree[2 * i + 2])
    tree_index = [0] * len(leaves)
    for leaf_index, value_index in enumerate(order):
        tree_index[value_index] = len(tree) - 1 - leaf_index
    return tree, tree_index


def reference_proof(tree: list[bytes], index: int) -> list[bytes]:
    proof = []
    while index > 0:
        proof.append(tree[index - (-1) ** (index % 2)])
        index = (index - 1) // 2
    return proof


def test_openzeppelin_readme_vector() -> None:
    values = [("0x1111111111111111111111111111111111111111", 5 * 10**18),
              ("0x2222222222222222222222222222222222222222", 25 * 10**17)]
    hashes = [keccak(keccak(encode(["address", "uint256"], list(v)))) for v in values]
    tree = build_tree(hashes)
    assert tree.root.hex() == "d4dee0beab2d53f2cc83e567171bd2820e49898130a22622b10ead383e90bd77"
    for i, h in enumerate(hashes):
        assert verify_proof(tree.root, h, tree.get_proof(i))


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33, 100])
def test_matches_reference_port(n: int) -> None:
    rng = random.Random(n)
    hashes = [rng.randbytes(32) for _ in range(n)]
    tree = build_tree(hashes)
    ref, ref_index = reference_tree(hashes)
    assert tree.root == ref[0]
    assert list(tree.tree_index) == ref_index
    for i, h in enumerate(hashes):
        proof = tree.get_proof(i)
        assert proof == reference_proof(ref, ref_index[i])
        assert tree.get_leaf_hash(i) == h
        assert verify_proof(tree.root, h, proof)


def test_single_leaf_and_duplicates() -> None:
    h = os.urandom(32)
    single = build_tree([h])
    assert single.root == h and single.get_proof(0) == []
    dup = build_tree([h, h, os.urandom(32)])
    assert all(verify_proof(dup.root, dup.get_leaf_hash(i), dup.get_proof(i)) for i in range(3))


def test_invalid_proofs_refused() -> None:
    hashes = [os.urandom(32) for _ in range(20)]
    tree = build_tree(hashes)
    proof = tree.get_proof(5)
    assert not verify_proof(tree.root, hashes[6], proof)  # another leaf with this proof
    assert not verify_proof(tree.root, os.urandom(32), proof)
    assert not verify_proof(tree.root, hashes[5], proof[:-1])  # truncated
    tampered = list(proof)
    tampered[1] = bytes(32)
    assert not verify_proof(tree.root, hashes[5], tampered)
    assert not verify_proof(os.urandom(32), hashes[5], proof)
    assert not verify_proof(tree.root, hashes[5][:31], proof)


def test_invalid_inputs_raise() -> None:
    empty = build_tree([])
    assert empty.root == EMPTY_ROOT and len(empty) == 0
    with pytest.raises(EmptyTree):
        empty.get_proof(0)
    tree = build_tree([os.urandom(32) for _ in range(3)])
    with pytest.raises(InvalidLeafValue, match="leaf index"):
        tree.get_proof(3)
    with pytest.raises(InvalidLeafValue, match=r"leaf_hashes\[1\]"):
        build_tree([os.urandom(32), b"short"])


def test_fast_keccak_equals_eth_hash() -> None:
    k = make_keccak()
    for size in (0, 1, 31, 32, 64, 135, 136, 137, 1000):
        data = os.urandom(size)
        assert k(data) == keccak(data)


def test_hundred_thousand_leaves() -> None:
    rng = random.Random(7)
    hashes = [rng.randbytes(32) for _ in range(100_000)]
    tree = build_tree(hashes)
    assert len(tree.nodes) == 2 * 100_000 - 1
    for i in range(0, 100_000, 4_999):
        proof = tree.get_proof(i)
        assert len(proof) in (16, 17)
        assert verify_proof(tree.root, hashes[i], proof)


@pytest.mark.parametrize("length", [0, 1, 31, 32, 64, 135, 136, 137, 192, 224, 271, 272, 273, 1000])
def test_native_keccak_equals_eth_hash(length: int) -> None:
    rng = random.Random(length)
    messages = [rng.randbytes(length) for _ in range(40)]
    assert [keccak256(m) for m in messages] == [keccak(m) for m in messages]
    batch = merkle.keccak256_batch(b"".join(messages), len(messages))
    assert [batch[32 * i:32 * i + 32] for i in range(len(messages))] == [keccak(m) for m in messages]
    array = np.frombuffer(b"".join(messages), dtype=np.uint8).reshape(len(messages), length)
    assert keccak_batch(array).tobytes() == batch


def test_native_keccak_every_length_up_to_three_blocks() -> None:
    rng = random.Random(1)
    for length in range(0, 3 * 136 + 2):
        data = rng.randbytes(length)
        assert keccak256(data) == keccak(data), length
    big = rng.randbytes(100_000)  # hashed with the GIL released
    assert keccak256(big) == keccak(big)
    assert keccak256(memoryview(big)[5:1005]) == keccak(big[5:1005])


def test_batch_keccak_split_over_threads_equals_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    messages = rng.integers(0, 256, size=(merkle.CHUNK_ROWS * 2 + 3, 64), dtype=np.uint8)
    threaded = keccak_batch(messages)
    monkeypatch.setattr(merkle, "KECCAK_THREADS", 1)
    assert np.array_equal(keccak_batch(messages), threaded)
    assert threaded[7].tobytes() == keccak(messages[7].tobytes())


def test_invalid_batch_keccak_arguments() -> None:
    assert merkle.keccak256_batch(b"", 0) == b""
    assert merkle.keccak256_batch(b"", 3) == keccak(b"") * 3  # three empty messages
    with pytest.raises(ValueError, match="count"):
        merkle.keccak256_batch(b"abcde", 2)
    with pytest.raises(ValueError, match="count"):
        merkle.keccak256_batch(b"abc", 0)
    with pytest.raises(ValueError, match="count"):
        merkle.keccak256_batch(b"abc", -1)
    with pytest.raises(InvalidLeafValue, match="messages"):
        keccak_batch(np.zeros((2, 3), dtype=np.int64))


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 8, 1000, 4097])
def test_array_tree_root_and_every_proof_equal_reference(n: int) -> None:
    rng = random.Random(1000 + n)
    hashes = [rng.randbytes(32) for _ in range(n)]
    if n >= 8:  # duplicates and hashes differing only in the last byte or only in a trailing zero
        hashes[3] = hashes[1]
        hashes[5] = hashes[4][:31] + bytes([hashes[4][31] ^ 1])
        hashes[6] = hashes[4][:31] + b"\x00"
    from_bytes = build_tree(hashes)
    from_array = build_tree(np.frombuffer(b"".join(hashes), dtype=np.uint8).reshape(n, 32))
    if n == 0:
        assert from_bytes.root == from_array.root == EMPTY_ROOT
        return
    ref, ref_index = reference_tree(hashes)
    for tree in (from_bytes, from_array):
        assert tree.root == ref[0]
        assert tree.tree_index.tolist() == ref_index
        assert [row.tobytes() for row in tree.nodes] == ref
        assert tree.get_leaf_hashes().tobytes() == b"".join(hashes)
        for i in range(n):
            assert tree.get_proof(i) == reference_proof(ref, ref_index[i])


def test_invalid_array_leaves_raise() -> None:
    with pytest.raises(InvalidLeafValue, match="leaf_hashes"):
        build_tree(np.zeros((3, 31), dtype=np.uint8))
    with pytest.raises(InvalidLeafValue, match="leaf_hashes"):
        build_tree(np.zeros((3, 32), dtype=np.int8))


def test_sorted_order_and_pair_hashing_with_shared_prefixes() -> None:
    """Rows equal in their first 8, 16 or 24 bytes (or in all 32) take the slow paths; results must
    still be the full byte-string order and hash_pair's sorted pair."""
    rng = random.Random(77)
    base = [rng.randbytes(32) for _ in range(6)]
    rows = [*base]
    for cut in (8, 16, 24, 31):
        rows += [base[0][:cut] + rng.randbytes(32 - cut) for _ in range(3)]
    rows += [base[2], base[2], base[0][:8] + base[3][8:]]
    rng.shuffle(rows)
    array = np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), 32)
    assert sorted_order(array).tolist() == sorted(range(len(rows)), key=lambda i: (rows[i], i))
    pairs = [(a, b) for a in rows[:12] for b in rows[:12]]
    got = hash_sorted_pairs(np.frombuffer(b"".join(a + b for a, b in pairs), dtype=np.uint8).reshape(-1, 64))
    assert [row.tobytes() for row in got] == [hash_pair(a, b) for a, b in pairs]
