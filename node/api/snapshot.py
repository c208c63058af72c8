"""Immutable per-epoch snapshots for the servers: the signed state and the Merkle tree of its leaves
(`bridges.merkle`, OpenZeppelin StandardMerkleTree layout; leaf hash keccak256(keccak256(encoded
leaf))) as the store keeps it (flat node array, no rehashing), loaded once per epoch and then only
read. A proof is served only for a leaf whose hash is the tree's leaf at its index.

`SnapshotCache` keeps the latest snapshot (swapped atomically by a polling thread) plus a bounded LRU
of older epochs loaded on demand, and wakes streams waiting for a newer epoch.

Which epoch is "latest": the newest signed state this node can SERVE, i.e. whose leaves it holds (or
that has no leaves). A node may store a peer's signed state before its own computation of the epoch
finishes (adoption, `node.consensus.engine`); the engine adds the node's own leaves once computed
(`_complete_leaves`, same digest hence same root). Until then that epoch is not served as latest:
`GetMargin` without an epoch answers from the newest epoch with leaves and says which
(`report.state.epoch`), instead of NOT_FOUND. The search goes down from the newest stored state to
the current latest, at most `MAX_LOOKBACK` epochs; when none of them has leaves and nothing is served
yet (a fresh node catching up old epochs), the newest state is served without leaves.

Invariants: a snapshot never changes after it is published; a snapshot whose rebuilt root differs
from `state.root` serves no proofs (`proofs_valid` False); a snapshot without leaves is never cached
(the leaves may arrive later). Nothing is persisted; the store is only read.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from bridges.merkle import MerkleTree, keccak256
from node.api.convert import state_to_pb
from node.ports import Store
from node.records import AccountLeaf, SignedState

LOG = logging.getLogger(__name__)
DEFAULT_POLL_S = 0.2
MAX_CACHED_EPOCHS = 4
MAX_LOOKBACK = 64  # epochs below the newest stored state searched for one with leaves


@dataclass(frozen=True)
class EpochSnapshot:
    state: SignedState
    tree: MerkleTree | None  # over the leaves in index order; None: this node holds no leaves of the epoch
    proofs_valid: bool
    state_pb: Any = None  # the state as an api_pb2.SignedState, built once (read-only by convention)

    @property
    def has_leaves(self) -> bool:
        return self.tree is not None

    @property
    def is_servable(self) -> bool:
        """Every account of the state can be answered: its leaves are here, or it has none."""
        return self.tree is not None or self.state.leaf_count == 0

    def get_proof(self, leaf: AccountLeaf) -> list[bytes]:
        """The proof of `leaf` (a record of this epoch), or [] when it is not the tree's leaf there."""
        tree = self.tree
        if tree is None or not self.proofs_valid or not 0 <= leaf.index < len(tree):
            return []
        if tree.get_leaf_hash(leaf.index) != keccak256(keccak256(leaf.encoded)):
            LOG.warning("leaf differs from the stored tree; serving no proof",
                        extra={"epoch": self.state.epoch, "index": leaf.index})
            return []
        return tree.get_proof(leaf.index)


def build_snapshot(store: Store, state: SignedState) -> EpochSnapshot:
    tree = store.get_leaf_tree(state.epoch)
    valid = tree is not None and len(tree) == state.leaf_count and tree.root == state.root
    if tree is not None and not valid:
        LOG.warning("stored Merkle root differs from the signed root; serving no proofs", extra={"epoch": state.epoch})
    return EpochSnapshot(state=state, tree=tree, proofs_valid=valid, state_pb=state_to_pb(state))


class SnapshotCache:
    """Latest snapshot (polled from the store) and an LRU of older ones; thread-safe."""

    def __init__(self, store: Store, poll_s: float = DEFAULT_POLL_S, max_cached: int = MAX_CACHED_EPOCHS) -> None:
        self.store = store
        self.poll_s = poll_s
        self.max_cached = max_cached
        self._latest: EpochSnapshot | None = None
        self._cache: OrderedDict[int, EpochSnapshot] = OrderedDict()
        self._cond = threading.Condition()
        self._load_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="snapshot-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.refresh()
            except Exception:  # keep serving the last good snapshot
                LOG.exception("snapshot refresh failed")

    def refresh(self) -> EpochSnapshot | None:
        """Serve the newest stored signed state whose leaves this node holds, if newer than the current."""
        state = self.store.get_latest_signed_state()
        current = self._latest
        if state is None or (current is not None and current.is_servable and current.state.epoch >= state.epoch):
            return current
        # a served fallback without leaves is looked at again: its leaves may have arrived since
        above = -1 if current is None else current.state.epoch - (0 if current.is_servable else 1)
        snap = self._find_servable(state, above)
        if snap is None and current is None:
            snap = build_snapshot(self.store, state)  # nothing servable yet: the newest state, no leaves
        with self._cond:
            latest = self._latest
            if snap is not None and (latest is None or snap.state.epoch > latest.state.epoch or (
                    snap.state.epoch == latest.state.epoch and snap.is_servable and not latest.is_servable)):
                self._latest = snap
                self._cond.notify_all()
            return self._latest

    def _find_servable(self, newest: SignedState, above: int) -> EpochSnapshot | None:
        """The snapshot of the newest epoch in (above, newest.epoch] with leaves (or none to hold), looking
        at most MAX_LOOKBACK epochs down; None when there is none."""
        low = max(above, newest.epoch - MAX_LOOKBACK)
        for epoch in range(newest.epoch, low, -1):
            state = newest if epoch == newest.epoch else self.store.get_signed_state(epoch)
            if state is None or (state.leaf_count > 0 and not self.store.has_leaves(epoch)):
                continue
            snap = self.get_epoch(epoch)
            if snap is not None and snap.is_servable:
                return snap
        return None

    def get_latest(self) -> EpochSnapshot | None:
        return self._latest

    def get_epoch(self, epoch: int) -> EpochSnapshot | None:
        """The snapshot of `epoch` (built outside the lock: a slow build never blocks other epochs)."""
        with self._load_lock:
            snap = self._cache.get(epoch)
            if snap is not None:
                self._cache.move_to_end(epoch)
                return snap
        state = self.store.get_signed_state(epoch)
        if state is None:
            return None
        snap = build_snapshot(self.store, state)
        if not snap.is_servable:
            return snap  # not cached: this node may store its own leaves of the epoch later
        with self._load_lock:
            snap = self._cache.setdefault(epoch, snap)
            while len(self._cache) > self.max_cached:
                self._cache.popitem(last=False)
        return snap

    def wait_for_newer(self, epoch: int, timeout: float) -> EpochSnapshot | None:
        """The latest snapshot once its epoch is > `epoch`, or None after `timeout` / on stop."""
        with self._cond:
            self._cond.wait_for(lambda: self._stop.is_set() or (
                self._latest is not None and self._latest.state.epoch > epoch), timeout=max(timeout, 0.0))
            latest = self._latest
        return latest if latest is not None and latest.state.epoch > epoch else None
