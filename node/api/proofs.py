"""Merkle proofs for served leaves, OpenZeppelin StandardMerkleTree layout over leaves in the
state's leaf order (`AccountLeaf.index`).

leaf hash = keccak256(keccak256(encoded)); parent = keccak256(min(a, b) || max(a, b)); the tree is
the flat array of OpenZeppelin (`tree[n - 1 - i]` holds leaf position i, node k has children
2k+1, 2k+2), so a proof verifies with `MerkleProof.verify(proof, root, leafHash)` on chain.
Invariant: `compute_root(tree) == SignedState.root` for states built by the state module with the
same layout; `verify_proof` is the independent closed form used by tests and clients.
Nothing is persisted; a tree is rebuilt from the store's leaves when an epoch is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence

from Crypto.Hash import keccak


def compute_keccak(data: bytes) -> bytes:
    return keccak.new(data=data, digest_bits=256).digest()


def compute_leaf_hash(encoded: bytes) -> bytes:
    return compute_keccak(compute_keccak(encoded))


def compute_pair_hash(a: bytes, b: bytes) -> bytes:
    return compute_keccak(a + b if a <= b else b + a)


def compute_tree(leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """The OpenZeppelin flat tree array for leaf hashes in leaf order (empty list for no leaves)."""
    n = len(leaf_hashes)
    if n == 0:
        return []
    tree: list[bytes] = [b""] * (2 * n - 1)
    for i, h in enumerate(leaf_hashes):
        tree[len(tree) - 1 - i] = h
    for k in range(len(tree) - 1 - n, -1, -1):
        tree[k] = compute_pair_hash(tree[2 * k + 1], tree[2 * k + 2])
    return tree


def compute_root(tree: Sequence[bytes]) -> bytes:
    return tree[0] if tree else b"\x00" * 32


def get_proof(tree: Sequence[bytes], position: int) -> list[bytes]:
    """Sibling hashes from leaf `position` up to the root."""
    n = (len(tree) + 1) // 2
    if not 0 <= position < n:
        raise IndexError(f"leaf position {position} outside 0..{n - 1}")
    k = len(tree) - 1 - position
    proof: list[bytes] = []
    while k > 0:
        sibling = k - 1 if k % 2 == 0 else k + 1
        proof.append(tree[sibling])
        k = (k - 1) // 2
    return proof


def verify_proof(root: bytes, encoded_leaf: bytes, proof: Sequence[bytes]) -> bool:
    """OpenZeppelin `MerkleProof.verify` in Python."""
    h = compute_leaf_hash(encoded_leaf)
    for sibling in proof:
        h = compute_pair_hash(h, sibling)
    return h == root
