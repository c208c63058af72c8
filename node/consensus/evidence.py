"""Evidence of validator misbehaviour: deduplicated, queued (bounded), persisted, and gossiped.

`EvidenceBook.process(evidence, gossip)` is synchronous (callable from a topic validator); `run()`
drains the queue: `store.put_evidence` in a worker thread, then, for evidence this node detected
itself (equivocation), an `EquivocationEvidence` envelope on the gossip. One record per (kind,
epoch, signer); the dedup keys and the queue are bounded. Persists through the `Store`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from node.p2p.errors import EnvelopeError
from node.pb.clearing.gossip.v1 import gossip_pb2
from node.ports import Store
from node.records import Evidence

log = logging.getLogger(__name__)

MAX_EVIDENCE_QUEUE = 256
MAX_EVIDENCE_KEYS = 4096
KEY_EPOCHS_KEPT = 64  # on overflow, dedup keys older than this many epochs are forgotten


class EvidenceBook:
    def __init__(self, store: Store, seal: Callable[[int, bytes], bytes],
                 publish: Callable[[bytes], Awaitable[None]], count: Callable[[str], None]) -> None:
        self.store, self.seal, self.publish, self.count = store, seal, publish, count
        self._send, self._recv = trio.open_memory_channel[tuple[Evidence, bool]](MAX_EVIDENCE_QUEUE)
        self._seen: set[tuple[str, int, int]] = set()

    def process(self, evidence: Evidence, gossip: bool) -> None:
        """Queue new evidence (dropped, and counted, when the queue is full)."""
        key = (evidence.kind, evidence.epoch, evidence.signer_index)
        if key in self._seen:
            return
        self._seen.add(key)
        if len(self._seen) > MAX_EVIDENCE_KEYS:
            self._seen = {k for k in self._seen if k[1] >= evidence.epoch - KEY_EPOCHS_KEPT}
        try:
            self._send.send_nowait((evidence, gossip))
        except trio.WouldBlock:
            self.count("evidence_dropped")

    async def run(self) -> None:
        async for evidence, gossip in self._recv:
            await trio.to_thread.run_sync(self.store.put_evidence, evidence)
            self.count("evidence_recorded")
            log.warning("evidence recorded", extra={"kind": evidence.kind, "signer": evidence.signer_index,
                                                    "epoch": evidence.epoch})
            if gossip:
                msg = gossip_pb2.EquivocationEvidence(epoch=evidence.epoch, signer_index=evidence.signer_index,
                                                      first=evidence.first, second=evidence.second)
                try:
                    data = self.seal(gossip_pb2.MESSAGE_KIND_EQUIVOCATION_EVIDENCE, msg.SerializeToString())
                except EnvelopeError as exc:  # e.g. a joining node that is a member of no key set yet
                    log.info("evidence stored, not gossiped", extra={"reason": str(exc)})
                    continue
                await self.publish(data)
