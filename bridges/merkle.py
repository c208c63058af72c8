"""Merkle tree compatible with OpenZeppelin's StandardMerkleTree (JS) and `MerkleProof.sol`, and the
batch keccak256 it is built with.

Layout (identical to `@openzeppelin/merkle-tree`): leaf hashes are sorted ascending, stored in
reverse order at the end of a flat array of 2n-1 nodes; node i has children 2i+1 and 2i+2; internal
nodes are keccak256 of the sorted pair; a proof lists the siblings from the leaf up. `get_proof(i)`
takes the index of the leaf in the caller's order (not the sorted order). A tree of zero leaves has
the all-zero root and no proofs. Leaf hashing (double keccak of the ABI encoding) is in
`bridges/statecodec.py`; this module only sees 32-byte hashes.

Speed: keccak256 is the native `bridges._keccak` (built by the editable install). The tree is built
one heap depth at a time with numpy (the children of a depth are one contiguous (m, 64) block; the
pair order comes from a vectorised comparison) and the batch keccak, in row chunks run on
`KECCAK_THREADS` threads (the native code and numpy's copies release the GIL); no Python loop per
node. Results do not depend on the thread count or the chunking. Persists nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from bridges import _keccak
from bridges.errors import EmptyTree, InvalidLeafValue

EMPTY_ROOT = bytes(32)
MAX_LEAVES = 10_000_000
KECCAK_THREADS = 2
CHUNK_ROWS = 32_768  # rows per task: large enough to amortise a task, small enough to stay in cache

Hasher = Callable[[bytes], bytes]
keccak256: Hasher = _keccak.keccak256
keccak256_batch = _keccak.keccak256_batch

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def make_keccak() -> Hasher:
    """The keccak256 function (native, stateless: shareable across threads)."""
    return keccak256


def _get_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=KECCAK_THREADS, thread_name_prefix="keccak")
        return _pool


def run_chunks(fn: Callable[[int, int], None], n: int) -> None:
    """fn(lo, hi) for consecutive row ranges covering 0..n, on up to `KECCAK_THREADS` threads; each call
    writes only its own rows. `fn` must not call `run_chunks` itself (the pool is shared)."""
    ranges = [(lo, min(n, lo + CHUNK_ROWS)) for lo in range(0, n, CHUNK_ROWS)]
    if len(ranges) <= 1 or KECCAK_THREADS < 2:
        for lo, hi in ranges:
            fn(lo, hi)
        return
    for future in [_get_pool().submit(fn, lo, hi) for lo, hi in ranges]:
        future.result()


def _digests(data: np.ndarray) -> np.ndarray:
    return np.frombuffer(keccak256_batch(data, len(data)), dtype=np.uint8).reshape(len(data), 32)


def keccak_batch(messages: np.ndarray) -> np.ndarray:
    """keccak256 of every row of a 2-D uint8 array of equal-length messages: an (N, 32) uint8 array."""
    if messages.ndim != 2 or messages.dtype != np.uint8:
        raise InvalidLeafValue(f"messages: expected a 2-D uint8 array, got {messages.dtype} {messages.shape}")
    data = np.ascontiguousarray(messages)
    out = np.empty((len(data), 32), dtype=np.uint8)

    def chunk(lo: int, hi: int) -> None:
        out[lo:hi] = _digests(data[lo:hi])

    run_chunks(chunk, len(data))
    return out


def hash_pair(a: bytes, b: bytes, keccak: Hasher = keccak256) -> bytes:
    return keccak(a + b) if a < b else keccak(b + a)


def _order_pairs(pairs: np.ndarray) -> np.ndarray:
    """Rows l || r of an (m, 64) uint8 array as min(l, r) || max(l, r) (unsigned big-endian order)."""
    words = pairs.view(">u8")  # (m, 8): l is words 0..3, r is words 4..7
    swap = words[:, 0] > words[:, 4]
    for k in range(1, 4):  # equal leading words (rare): the next word decides
        tied = np.flatnonzero((words[:, :k] == words[:, 4:4 + k]).all(axis=1))
        if not len(tied):
            break
        swap[tied] = words[tied, k] > words[tied, 4 + k]
    ordered = np.array(pairs, dtype=np.uint8, order="C")
    rows = np.flatnonzero(swap)
    ordered[rows, :32], ordered[rows, 32:] = pairs[rows, 32:], pairs[rows, :32]
    return ordered


def hash_sorted_pairs(pairs: np.ndarray) -> np.ndarray:
    """keccak256(min(l, r) || max(l, r)) of every row of an (m, 64) uint8 array of pairs l || r."""
    out = np.empty((len(pairs), 32), dtype=np.uint8)

    def chunk(lo: int, hi: int) -> None:
        out[lo:hi] = _digests(_order_pairs(pairs[lo:hi]))

    run_chunks(chunk, len(pairs))
    return out


def sorted_order(hashes: np.ndarray) -> np.ndarray:
    """The stable ascending order of (n, 32) uint8 rows as byte strings: one sort of unique uint64 keys (the
    first 40 bits of the row, then its index), then the few runs with an equal 40-bit prefix by all 32 bytes."""
    n = len(hashes)
    if n >= 2**24:
        raise InvalidLeafValue(f"leaf_hashes: {n} rows, the sort key holds at most 2^24")
    head = np.ascontiguousarray(hashes[:, :8]).view(">u8").ravel().astype(np.uint64)
    key = ((head >> np.uint64(24)) << np.uint64(24)) | np.arange(n, dtype=np.uint64)
    key.sort()
    order = (key & np.uint64(2**24 - 1)).astype(np.int64)
    prefix = key >> np.uint64(24)
    tied = np.flatnonzero(prefix[1:] == prefix[:-1])
    if len(tied):
        starts = tied[np.concatenate(([True], tied[1:] != tied[:-1] + 1))]
        ends = tied[np.concatenate((tied[1:] != tied[:-1] + 1, [True]))] + 2
        for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True):
            run = order[lo:hi].tolist()  # ascending original index
            order[lo:hi] = sorted(run, key=lambda j: (hashes[j].tobytes(), j))
    return order


@dataclass(frozen=True, eq=False)
class MerkleTree:
    """A built tree: `nodes` is the flat (2n-1, 32) uint8 node array (`nodes[0]` the root);
    `tree_index[i]` is where caller leaf i sits. Arrays are read-only."""

    nodes: np.ndarray
    tree_index: np.ndarray

    @property
    def root(self) -> bytes:
        return self.nodes[0].tobytes() if len(self.nodes) else EMPTY_ROOT

    def __len__(self) -> int:
        return len(self.tree_index)

    def get_leaf_hash(self, i: int) -> bytes:
        return self.nodes[self.tree_index[self._validate_index(i)]].tobytes()

    def get_leaf_hashes(self) -> np.ndarray:
        """(n, 32) leaf hashes in the caller's order."""
        return np.take(self.nodes, self.tree_index, axis=0)

    def get_proof(self, i: int) -> list[bytes]:
        """Sibling hashes from leaf i (caller order) up to the root, OpenZeppelin's proof format."""
        index = int(self.tree_index[self._validate_index(i)])
        siblings = []
        while index > 0:
            siblings.append(index + 1 if index % 2 else index - 1)
            index = (index - 1) // 2
        return [row.tobytes() for row in self.nodes[siblings]]

    def _validate_index(self, i: int) -> int:
        if not len(self.tree_index):
            raise EmptyTree("leaf index: the tree has no leaves")
        if not 0 <= i < len(self.tree_index):
            raise InvalidLeafValue(f"leaf index: {i} outside 0..{len(self.tree_index) - 1}")
        return i


def _read_only(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def build_tree(leaf_hashes: Sequence[bytes] | np.ndarray) -> MerkleTree:
    """The StandardMerkleTree over `leaf_hashes`: 32-byte hashes, or an (n, 32) uint8 array
    (duplicates allowed)."""
    if isinstance(leaf_hashes, np.ndarray):
        if leaf_hashes.ndim != 2 or leaf_hashes.shape[1:] != (32,) or leaf_hashes.dtype != np.uint8:
            raise InvalidLeafValue(f"leaf_hashes: expected an (n, 32) uint8 array, got {leaf_hashes.dtype} "
                                   f"{leaf_hashes.shape}")
        leaves = leaf_hashes
    else:
        for i, h in enumerate(leaf_hashes):
            if not isinstance(h, bytes) or len(h) != 32:
                raise InvalidLeafValue(f"leaf_hashes[{i}]: expected 32 bytes")
        leaves = np.frombuffer(b"".join(leaf_hashes), dtype=np.uint8).reshape(len(leaf_hashes), 32)
    n = len(leaves)
    if n > MAX_LEAVES:
        raise InvalidLeafValue(f"leaf_hashes: {n} leaves, at most {MAX_LEAVES}")
    if n == 0:
        empty = np.zeros((0, 32), dtype=np.uint8)
        return MerkleTree(nodes=_read_only(empty), tree_index=_read_only(np.zeros(0, dtype=np.int64)))
    order = sorted_order(leaves)  # stable, as OpenZeppelin's Array.sort
    size = 2 * n - 1
    nodes = np.empty((size, 32), dtype=np.uint8)
    nodes[n - 1:] = np.take(leaves, order[::-1], axis=0)
    tree_index = np.empty(n, dtype=np.int64)
    tree_index[order] = size - 1 - np.arange(n, dtype=np.int64)
    depth = (n - 1).bit_length()  # depth of the deepest internal node's children
    for d in range(depth - 1, -1, -1):  # heap depth d holds indices 2^d - 1 .. 2^(d+1) - 2
        lo, hi = 2**d - 1, min(2 ** (d + 1) - 2, n - 2)
        if lo > hi:
            continue
        # the children of nodes lo..hi are the contiguous nodes 2lo+1..2hi+2: one (count, 64) view
        nodes[lo:hi + 1] = hash_sorted_pairs(nodes[2 * lo + 1:2 * hi + 3].reshape(hi - lo + 1, 64))
    return MerkleTree(nodes=_read_only(nodes), tree_index=_read_only(tree_index))


def compute_root_from_proof(leaf_hash: bytes, proof: Sequence[bytes]) -> bytes:
    node = leaf_hash
    for sibling in proof:
        node = hash_pair(node, sibling)
    return node


def verify_proof(root: bytes, leaf_hash: bytes, proof: Sequence[bytes]) -> bool:
    """True when folding `proof` onto `leaf_hash` with sorted-pair keccak gives `root`."""
    return len(leaf_hash) == 32 and all(len(p) == 32 for p in proof) and \
        compute_root_from_proof(leaf_hash, proof) == root
