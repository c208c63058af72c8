"""Network transport for the crypto engineer's DKG state machine: DkgPackets over the validator gossip.

Each outgoing `clearing.dkg.v1.DkgPacket` travels as a `DkgMessage{session_id, sender_index,
type_name, body}` inside a SignedEnvelope of kind DKG, so the operator key of validator i
authenticates it and the receiving machine is told sender index i + 1 (this transport serves
sessions whose dealers and recipients are the validator set's share indices 1..n, i.e. a fresh DKG;
resharing to another set needs a sender-index map and is not wired). `session_id` is the first 8
bytes of `SessionConfig.session_id` (big-endian); messages of other sessions are ignored. Inbound
packets go through a bounded queue; the machine is ticked every `tick_s` so its phase deadlines fire;
the whole run is bounded by `timeout_s`. Persists nothing (the caller stores the resulting key set).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio
from google.protobuf.message import DecodeError

from node.crypto.dealing import DkgMessageError
from node.crypto.dkg import DkgMachine, DkgResult
from node.crypto.errors import DkgError
from node.pb.clearing.dkg.v1 import dkg_pb2
from node.pb.clearing.gossip.v1 import gossip_pb2

log = logging.getLogger(__name__)

MAX_INBOX = 4096
MAX_BODY_BYTES = 128 * 1024
PACKET_TYPE = dkg_pb2.DkgPacket.DESCRIPTOR.full_name


def get_session_number(machine: DkgMachine) -> int:
    return int.from_bytes(machine.config.session_id[:8], "big")


class DkgSession:
    """Drives one DkgMachine over the gossip; `offer` is called by the engine for DKG envelopes."""

    def __init__(self, machine: DkgMachine, own_index: int, seal: Callable[[int, bytes], bytes],
                 publish: Callable[[bytes], Awaitable[None]], now: Callable[[], float] = trio.current_time,
                 tick_s: float = 0.2) -> None:
        self.machine = machine
        self.own_index = own_index
        self.session = get_session_number(machine)
        self.seal, self.publish, self.now, self.tick_s = seal, publish, now, tick_s
        self._send, self._recv = trio.open_memory_channel[tuple[int, dkg_pb2.DkgPacket]](MAX_INBOX)
        self.refused: list[str] = []
        self.dropped = 0

    def offer(self, signer_index: int, msg: gossip_pb2.DkgMessage) -> bool:
        """Queue a validated DkgMessage of this session; False if it is not ours or cannot be parsed."""
        if msg.session_id != self.session or msg.type_name != PACKET_TYPE or len(msg.body) > MAX_BODY_BYTES:
            return False
        packet = dkg_pb2.DkgPacket()
        try:
            packet.ParseFromString(msg.body)
        except DecodeError:
            self.refused.append(f"validator {signer_index}: body is not a DkgPacket")
            return False
        try:
            self._send.send_nowait((signer_index + 1, packet))
        except trio.WouldBlock:
            self.dropped += 1
            return False
        return True

    async def _emit(self, packets: list[dkg_pb2.DkgPacket]) -> None:
        for packet in packets:
            msg = gossip_pb2.DkgMessage(session_id=self.session, sender_index=self.own_index, type_name=PACKET_TYPE,
                                        body=packet.SerializeToString())
            await self.publish(self.seal(gossip_pb2.MESSAGE_KIND_DKG, msg.SerializeToString()))

    async def run(self, timeout_s: float) -> DkgResult:
        """Run the machine to the end; raises DkgError if it fails or does not finish in time."""
        try:
            with trio.fail_after(timeout_s):
                await self._emit(self.machine.start(self.now()))
                while not self.machine.is_done:
                    with trio.move_on_after(self.tick_s):
                        sender, packet = await self._recv.receive()
                        try:
                            await self._emit(self.machine.process_packet(sender, packet, self.now()))
                        except DkgMessageError as exc:
                            self.refused.append(f"holder {sender}: {exc}")
                            log.warning("DKG packet refused", extra={"holder": sender, "reason": str(exc)})
                    await self._emit(self.machine.tick(self.now()))
        except trio.TooSlowError as exc:
            raise DkgError(f"session {self.session:#x}: not finished within {timeout_s}s "
                           f"(phase {self.machine.phase.value})") from exc
        if self.machine.result is None:
            raise DkgError(f"session {self.session:#x}: failed: {self.machine.failure}")
        return self.machine.result
