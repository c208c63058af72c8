"""A byzantine validator for the process tests: `python -m tests.consensus.byzantine_node --config F`.

It runs the real node with an engine that misbehaves by epoch (epoch mod 3):
0: gossips a partial made with the wrong key (valid envelope, invalid BLS partial);
1: equivocates: a valid partial over a bogus digest, then the real partial;
2: gossips garbage bytes, then the real partial.
It never calls `record_signing` for what it sends. Test-only; nothing here ships in the node.
"""

from __future__ import annotations

import os
import sys

from eth_hash.auto import keccak

from node.consensus.engine import EpochEngine, bucket
from node.consensus.machine import Event, Round
from node.crypto import threshold
from node.pb.clearing.gossip.v1 import gossip_pb2
from node.validator import main


class ByzantineEngine(EpochEngine):
    def _partial_envelope(self, epoch: int, digest: bytes, partial: bytes) -> bytes:
        payload = gossip_pb2.PartialSignature(epoch=epoch, digest=digest, partial=partial,
                                              signer_index=self.index).SerializeToString()
        return self._seal(gossip_pb2.MESSAGE_KIND_PARTIAL_SIGNATURE, payload)

    async def send_partial(self, rnd: Round, digest: bytes) -> None:
        assert self.transport is not None
        assert self.index is not None and self.secrets.share_sk is not None
        real = threshold.partial_sign(self.secrets.share_sk, digest)
        mode = rnd.epoch % 3
        if mode == 0:
            wrong = threshold.partial_sign(self.secrets.share_sk + 1, digest)
            await self.transport.publish(self._partial_envelope(rnd.epoch, digest, wrong))
        elif mode == 1:
            bogus = keccak(b"bogus" + digest)
            bogus_partial = threshold.partial_sign(self.secrets.share_sk, bogus)
            await self.transport.publish(self._partial_envelope(rnd.epoch, bogus, bogus_partial))
            await self.transport.publish(self._partial_envelope(rnd.epoch, digest, real))
        else:
            await self.transport.publish(os.urandom(200))
            await self.transport.publish(self._partial_envelope(rnd.epoch, digest, real))
        rnd.add_partial(bucket(rnd.keyset_id, digest), self.index + 1, real)
        rnd.process_event(Event.SIGNED)
        self.count("byzantine_rounds")


if __name__ == "__main__":
    sys.exit(main(engine_factory=ByzantineEngine))
