"""What the chains' registries hold, followed by a node: latest epoch, publications and their gas,
and the balance of the account that pays this node's publications.

`PublicationWatcher` polls every chain with a registry (one `bridges.publisher.RegistryReader`
each) in a daemon thread every `interval_s`: `latestEpoch` (reported to the process telemetry by the
reader: `clearing_chain_last_published_epoch`), the publisher's balance (`clearing_publisher_balance_wei`)
and the `StatePublished` events of new blocks with the gas of their transactions (for the web view).
It reads at the latest block: status for people, never a consensus input. The last `RESCAN_BLOCKS`
blocks are scanned again on every poll, so a publication moved by a shallow reorg is corrected.
Bounded: the first scan looks back at most `LOOKBACK_BLOCKS`, publications of the newest
`MAX_EPOCHS` epochs are kept. A chain that fails is retried at the next poll (the failure is
counted by the chain adapter). Nothing is persisted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from bridges.errors import BridgeError
from bridges.publisher import MAX_LOG_BLOCKS, Publication, RegistryReader
from bridges.telemetry import get_telemetry

LOG = logging.getLogger(__name__)
LOOKBACK_BLOCKS = 50_000
RESCAN_BLOCKS = 16
MAX_EPOCHS = 4_096
MIN_INTERVAL_S, MAX_INTERVAL_S = 1.0, 15.0


@dataclass
class ChainView:
    """What the watcher knows of one chain (read under the watcher's lock)."""

    chain_id: int
    registry: str
    latest_epoch: int | None = None
    balance_wei: int | None = None
    scanned_to: int | None = None  # last block whose events are in `publications`
    error: str = ""


class PublicationWatcher:
    def __init__(self, readers: Sequence[RegistryReader], publisher_address: str = "",
                 interval_s: float = 3.0) -> None:
        self.readers = list(readers)
        self.publisher_address = publisher_address
        self.interval_s = min(MAX_INTERVAL_S, max(MIN_INTERVAL_S, interval_s))
        self.views = {r.chain_id: ChainView(r.chain_id, r.registry) for r in self.readers}
        self._by_epoch: dict[int, dict[int, Publication]] = {}  # epoch -> chain id -> publication
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="publications", daemon=True)

    def start(self) -> PublicationWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.interval_s)

    def poll(self) -> None:
        """One pass over every chain (also callable directly, e.g. by tests)."""
        for reader in self.readers:
            try:
                self._poll_chain(reader)
            except (BridgeError, ValueError) as exc:
                with self._lock:
                    self.views[reader.chain_id].error = str(exc)[:300]
                LOG.info("registry read failed", extra={"chain_id": reader.chain_id, "reason": str(exc)[:300]})

    def _poll_chain(self, reader: RegistryReader) -> None:
        view = self.views[reader.chain_id]
        latest = reader.get_latest_epoch()
        balance = None
        if self.publisher_address:
            balance = reader.get_balance(self.publisher_address)
            get_telemetry().publisher_balance(reader.chain_id, balance)
        head = reader.client.get_head_number()
        start = max(0, head - LOOKBACK_BLOCKS + 1) if view.scanned_to is None else \
            max(0, view.scanned_to - RESCAN_BLOCKS + 1)
        found: list[Publication] = []
        for low in range(start, head + 1, MAX_LOG_BLOCKS):
            found += reader.get_publications(low, min(head, low + MAX_LOG_BLOCKS - 1))
        with self._lock:
            for chains in self._by_epoch.values():  # the rescanned blocks are replaced by what they hold now
                if reader.chain_id in chains and chains[reader.chain_id].block_number >= start:
                    del chains[reader.chain_id]
            for pub in found:
                self._by_epoch.setdefault(pub.epoch, {})[pub.chain_id] = pub
            for epoch in sorted(self._by_epoch)[:-MAX_EPOCHS]:
                del self._by_epoch[epoch]
            view.latest_epoch, view.balance_wei, view.scanned_to, view.error = latest, balance, head, ""

    def get_publications(self, epoch: int) -> dict[int, Publication]:
        with self._lock:
            return dict(self._by_epoch.get(epoch, {}))

    def get_views(self) -> list[ChainView]:
        with self._lock:
            return [ChainView(**vars(v)) for v in self.views.values()]


def build_watcher(chains: Sequence[object], publisher_address: str, interval_s: float) -> PublicationWatcher | None:
    """A watcher over the configured chains that have a registry (`node.config.ChainEndpoint`s), or None."""
    from bridges.chain import ChainClient, ChainConfig

    readers = [RegistryReader(ChainClient(ChainConfig(chain_id=c.chain_id, rpc_url=c.rpc_url,  # type: ignore[attr-defined]
                                                      timeout_s=2.0, max_attempts=2)), c.registry)  # type: ignore[attr-defined]
               for c in chains if getattr(c, "registry", "")]
    return PublicationWatcher(readers, publisher_address, interval_s) if readers else None
