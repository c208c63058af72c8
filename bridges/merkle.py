"""Merkle tree compatible with OpenZeppelin's StandardMerkleTree (JS) and `MerkleProof.sol`.

Layout (identical to `@openzeppelin/merkle-tree`): leaf hashes are sorted ascending, stored in
reverse order at the end of a flat array of 2n-1 nodes; node i has children 2i+1 and 2i+2; internal
nodes are keccak256 of the sorted pair; a proof lists the siblings from the leaf up. `get_proof(i)`
takes the index of the leaf in the caller's order (not the sorted order). A tree of zero leaves has
the all-zero root and no proofs. Leaf hashing (double keccak of the ABI encoding) is in
`bridges/statecodec.py`; this module only sees 32-byte hashes.

Speed: keccak goes through pycryptodome's C state with a reused buffer (about 4x fewer Python
overheads than `eth_hash`); if that private interface ever changes, it falls back to `eth_hash`.
A hasher is created per tree, so building trees in several threads is safe. Persists nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from eth_hash.auto import keccak as _eth_keccak

from bridges.errors import EmptyTree, InvalidLeafValue

EMPTY_ROOT = bytes(32)
MAX_LEAVES = 10_000_000

Hasher = Callable[[bytes], bytes]


def make_keccak() -> Hasher:
    """A keccak256 function with its own reusable state (not shareable across threads)."""
    try:
        # private but stable pycryptodome interface; verified against eth_hash below before use
        from Crypto.Hash.keccak import _raw_keccak_lib as lib  # type: ignore[attr-defined]
        from Crypto.Util._raw_api import (  # type: ignore[attr-defined]
            VoidPointer,
            c_size_t,
            c_ubyte,
            create_string_buffer,
            get_raw_buffer,
        )

        holder = VoidPointer()
        if lib.keccak_init(holder.address_of(), c_size_t(64), c_ubyte(24)) != 0:
            return _eth_keccak
        state, out = holder.get(), create_string_buffer(32)  # type: ignore[call-arg]
        reset, absorb, digest = lib.keccak_reset, lib.keccak_absorb, lib.keccak_digest

        def fast_keccak(data: bytes) -> bytes:
            reset(state)
            absorb(state, data, len(data))
            digest(state, out, 32, 1)
            return get_raw_buffer(out)

        fast_keccak._keep_alive = (holder, lib)  # type: ignore[attr-defined]
        if fast_keccak(b"abc") != _eth_keccak(b"abc"):
            return _eth_keccak
        return fast_keccak
    except (ImportError, AttributeError, TypeError):
        return _eth_keccak


def hash_pair(a: bytes, b: bytes, keccak: Hasher = _eth_keccak) -> bytes:
    return keccak(a + b) if a < b else keccak(b + a)


@dataclass(frozen=True)
class MerkleTree:
    """A built tree: `nodes[0]` is the root; `tree_index[i]` is where caller leaf i sits."""

    nodes: tuple[bytes, ...]
    tree_index: tuple[int, ...]

    @property
    def root(self) -> bytes:
        return self.nodes[0] if self.nodes else EMPTY_ROOT

    def __len__(self) -> int:
        return len(self.tree_index)

    def get_leaf_hash(self, i: int) -> bytes:
        return self.nodes[self.tree_index[self._validate_index(i)]]

    def get_proof(self, i: int) -> list[bytes]:
        """Sibling hashes from leaf i (caller order) up to the root, OpenZeppelin's proof format."""
        index = self.tree_index[self._validate_index(i)]
        proof = []
        while index > 0:
            proof.append(self.nodes[index + 1 if index % 2 else index - 1])
            index = (index - 1) // 2
        return proof

    def _validate_index(self, i: int) -> int:
        if not self.tree_index:
            raise EmptyTree("leaf index: the tree has no leaves")
        if not 0 <= i < len(self.tree_index):
            raise InvalidLeafValue(f"leaf index: {i} outside 0..{len(self.tree_index) - 1}")
        return i


def build_tree(leaf_hashes: Sequence[bytes]) -> MerkleTree:
    """The StandardMerkleTree over `leaf_hashes` (32-byte leaf hashes, duplicates allowed)."""
    n = len(leaf_hashes)
    if n > MAX_LEAVES:
        raise InvalidLeafValue(f"leaf_hashes: {n} leaves, at most {MAX_LEAVES}")
    for i, h in enumerate(leaf_hashes):
        if not isinstance(h, bytes) or len(h) != 32:
            raise InvalidLeafValue(f"leaf_hashes[{i}]: expected 32 bytes")
    if n == 0:
        return MerkleTree(nodes=(), tree_index=())
    order = sorted(range(n), key=leaf_hashes.__getitem__)
    size = 2 * n - 1
    nodes: list[bytes] = [b""] * (n - 1) + [leaf_hashes[j] for j in reversed(order)]
    tree_index = [0] * n
    for sorted_pos, j in enumerate(order):
        tree_index[j] = size - 1 - sorted_pos
    keccak = make_keccak()
    for i in range(n - 2, -1, -1):
        a, b = nodes[2 * i + 1], nodes[2 * i + 2]
        nodes[i] = keccak(a + b) if a < b else keccak(b + a)
    return MerkleTree(nodes=tuple(nodes), tree_index=tuple(tree_index))


def compute_root_from_proof(leaf_hash: bytes, proof: Sequence[bytes]) -> bytes:
    node = leaf_hash
    for sibling in proof:
        node = hash_pair(node, sibling)
    return node


def verify_proof(root: bytes, leaf_hash: bytes, proof: Sequence[bytes]) -> bool:
    """True when folding `proof` onto `leaf_hash` with sorted-pair keccak gives `root`."""
    return len(leaf_hash) == 32 and all(len(p) == 32 for p in proof) and \
        compute_root_from_proof(leaf_hash, proof) == root
