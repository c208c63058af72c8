"""Resharing a key set to a new validator set over the validator gossip (live, node-driven).

A `ResharePlan` (from governance: old key set, old and new operator addresses, new threshold) fixes a
64-bit session number known before any key exchange. Old holders deal (old share index = position in
`old_members` + 1), new members receive (new index = position in `new_members` + 1); a continuing
validator does both with one `DkgMachine` (`node.crypto.reshare`).

Protocol on the wire (every message a `DkgMessage` of this session inside a SignedEnvelope of kind DKG):
- recipients announce their X25519 encryption key (`ENCRYPTION_KEY_TYPE`, body = 32 raw bytes), sealed
  under the NEW key-set id with signer index new_index - 1, re-sent every `announce_interval_s`; the key
  is derived from the operator key (HKDF, salt = session number), so a restarted node announces the same
  key; a second, different key from one recipient is refused;
- once all n' keys are known every node builds the same `SessionConfig` (hence the same session id)
  and starts its machine; `DkgPacket`s that arrived earlier are buffered (bounded) and replayed;
- deals and justifications travel under the OLD key-set id (signer = old index - 1), responses under
  the NEW key-set id (signer = new index - 1); a packet sealed under the other key set is refused.

Invariants: the engine authenticates every envelope against the member list of its key-set id before
calling `offer`; the group key is unchanged and the new key-set id is the old one + 1 (checked by the
machine); everything is bounded (inbox, early buffer, body size, refusal log, phase deadlines, overall
`timeout_s`). Persists nothing: the caller stores the resulting `DkgResult`.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eth_hash.auto import keccak
from google.protobuf.message import DecodeError

from node.crypto import bls, threshold
from node.crypto.dealing import DkgMessageError, Participant
from node.crypto.dkg import DkgMachine, DkgResult, DkgTimeouts, KeySet
from node.crypto.errors import DkgError, ThresholdError
from node.crypto.reshare import make_reshare_config, make_reshare_machine
from node.p2p.envelope import get_operator_address
from node.pb.clearing.dkg.v1 import dkg_pb2
from node.pb.clearing.gossip.v1 import gossip_pb2

log = logging.getLogger(__name__)

DST_RESHARE_SESSION = b"CLEARING-V1-RESHARE"
DST_ENCRYPTION_KEY = b"CLEARING-V1-RESHARE-ENC"
PACKET_TYPE = dkg_pb2.DkgPacket.DESCRIPTOR.full_name
ENCRYPTION_KEY_TYPE = "clearing.reshare.v1.EncryptionKey"
ADDRESS_SIZE = 20
KEY_SIZE = 32
MAX_INBOX = 4096
MAX_EARLY_PACKETS = 1024
MAX_BODY_BYTES = 128 * 1024
MAX_REFUSED = 256
MAX_INT64 = (1 << 63) - 1
DEFAULT_TIMEOUTS = DkgTimeouts(deal=10, response=10, justification=10)

_OLD_SET_PACKETS = ("deal", "justification")  # sealed under the old key-set id; "response" under the new


@dataclass(frozen=True)
class ResharePlan:
    """One resharing attempt: who deals (old members), who receives (new members), at what threshold."""

    network_id: int
    proposal_id: int
    attempt: int
    old_keyset: KeySet
    old_members: tuple[bytes, ...]
    new_members: tuple[bytes, ...]
    new_threshold: int

    def __post_init__(self) -> None:
        for name in ("network_id", "proposal_id", "attempt"):
            value = getattr(self, name)
            if isinstance(value, bool) or not 0 <= value <= MAX_INT64:
                raise DkgError(f"{name}: {value!r} must be a non-negative 63-bit integer")
        for name in ("old_members", "new_members"):
            members = getattr(self, name)
            if len(set(members)) != len(members) or {len(m) for m in members} != {ADDRESS_SIZE}:
                raise DkgError(f"{name}: need distinct {ADDRESS_SIZE}-byte operator addresses")
        if self.old_keyset.holders != tuple(range(1, len(self.old_members) + 1)):
            raise DkgError(f"old_members: {len(self.old_members)} members, key set "
                           f"{self.old_keyset.keyset_id} has holders {list(self.old_keyset.holders)}")
        try:
            threshold.validate_parameters(len(self.new_members), self.new_threshold)
        except ThresholdError as exc:
            raise DkgError(f"new_threshold: {exc}") from exc

    @property
    def new_keyset_id(self) -> int:
        return self.old_keyset.keyset_id + 1


def get_session_number(plan: ResharePlan) -> int:
    """64-bit session number of a plan (same on every node; changes with the attempt counter)."""
    numbers = (plan.network_id, plan.proposal_id, plan.attempt, plan.old_keyset.keyset_id, plan.new_threshold)
    data = DST_RESHARE_SESSION + b"".join(v.to_bytes(8, "big") for v in numbers)
    for members in (plan.old_members, plan.new_members):
        data += len(members).to_bytes(4, "big") + b"".join(members)
    return int.from_bytes(keccak(data)[:8], "big")


def compute_encryption_key(operator_key: bytes, session: int) -> X25519PrivateKey:
    """This recipient's X25519 key for one session, derived from its operator key."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=session.to_bytes(8, "big"),
                info=DST_ENCRYPTION_KEY)
    return X25519PrivateKey.from_private_bytes(hkdf.derive(operator_key))


def _get_position(members: tuple[bytes, ...], address: bytes) -> int | None:
    return members.index(address) + 1 if address in members else None


class ReshareSession:
    """Drives one resharing machine over the gossip; `offer` is called by the engine for DKG envelopes."""

    def __init__(self, plan: ResharePlan, *, operator_key: bytes, old_share: int | None,
                 seal: Callable[[int, int, int, bytes], bytes], publish: Callable[[bytes], Awaitable[None]],
                 timeouts: DkgTimeouts = DEFAULT_TIMEOUTS,
                 now: Callable[[], float] = trio.current_time, tick_s: float = 0.2,
                 announce_interval_s: float = 1.0) -> None:
        self.plan = plan
        self.session = get_session_number(plan)
        address = get_operator_address(operator_key)
        self.old_index = _get_position(plan.old_members, address)
        self.new_index = _get_position(plan.new_members, address)
        if self.old_index is None and self.new_index is None:
            raise DkgError(f"operator_key: 0x{address.hex()} is in neither the old nor the new validator set")
        self._old: DkgResult | None = None
        if self.old_index is not None:
            expected = plan.old_keyset.get_public_share(self.old_index)
            if (old_share is None or not 0 < old_share < bls.CURVE_ORDER
                    or bls.public_key(old_share) != expected):
                raise DkgError(f"old_share: missing or does not match public share {self.old_index} of key set "
                               f"{plan.old_keyset.keyset_id}")
            self._old = DkgResult(keyset=plan.old_keyset, index=self.old_index, share=old_share)
        self._encryption_key: X25519PrivateKey | None = None
        self.keys: dict[int, bytes] = {}
        if self.new_index is not None:
            self._encryption_key = compute_encryption_key(operator_key, self.session)
            self.keys[self.new_index] = self._encryption_key.public_key().public_bytes_raw()
        self.seal, self.publish, self.now, self.tick_s = seal, publish, now, tick_s
        self.timeouts, self.announce_interval_s = timeouts, announce_interval_s
        self.machine: DkgMachine | None = None
        self._send, self._recv = trio.open_memory_channel[tuple[int, dkg_pb2.DkgPacket]](MAX_INBOX)
        self._early: deque[tuple[int, dkg_pb2.DkgPacket]] = deque()
        self.refused: list[str] = []
        self.dropped = 0
        self.replayed = 0  # packets that arrived before all keys were known (buffered, then replayed)

    # --- inbound ---

    def offer(self, keyset_id: int, signer_index0: int, msg: gossip_pb2.DkgMessage) -> bool:
        """Take an authenticated DkgMessage of this session; False if it is not ours or is refused."""
        if msg.session_id != self.session:
            return False
        where = f"signer {signer_index0} of key set {keyset_id}"
        if len(msg.body) > MAX_BODY_BYTES:
            return self._refuse(f"{where}: body of {len(msg.body)} bytes exceeds {MAX_BODY_BYTES}")
        if msg.sender_index != signer_index0:
            return self._refuse(f"{where}: sender_index {msg.sender_index} differs from the envelope signer")
        if msg.type_name == ENCRYPTION_KEY_TYPE:
            return self._offer_key(keyset_id, signer_index0, msg.body, where)
        if msg.type_name != PACKET_TYPE:
            return self._refuse(f"{where}: type_name {msg.type_name!r} is not part of a reshare")
        packet = dkg_pb2.DkgPacket()
        try:
            packet.ParseFromString(msg.body)
        except DecodeError:
            return self._refuse(f"{where}: body is not a DkgPacket")
        kind = packet.WhichOneof("body")
        if kind is None:
            return self._refuse(f"{where}: packet.body is empty")
        old_set = kind in _OLD_SET_PACKETS
        expected = self.plan.old_keyset.keyset_id if old_set else self.plan.new_keyset_id
        members = self.plan.old_members if old_set else self.plan.new_members
        if keyset_id != expected or signer_index0 >= len(members):
            return self._refuse(f"{where}: a {kind} packet must be sealed by a member of key set {expected}")
        try:
            self._send.send_nowait((signer_index0 + 1, packet))
        except trio.WouldBlock:
            self.dropped += 1
            return False
        return True

    def _offer_key(self, keyset_id: int, signer_index0: int, body: bytes, where: str) -> bool:
        if keyset_id != self.plan.new_keyset_id or signer_index0 >= len(self.plan.new_members):
            return self._refuse(f"{where}: encryption keys are announced by members of key set "
                                f"{self.plan.new_keyset_id}")
        if len(body) != KEY_SIZE:
            return self._refuse(f"{where}: encryption key of {len(body)} bytes, expected {KEY_SIZE}")
        known = self.keys.get(signer_index0 + 1)
        if known is None:
            self.keys[signer_index0 + 1] = bytes(body)
        elif known != body:
            return self._refuse(f"{where}: a second, different encryption key for recipient "
                                f"{signer_index0 + 1}")
        return True

    def _refuse(self, reason: str) -> bool:
        log.warning("reshare message refused", extra={"session": f"{self.session:#x}", "reason": reason})
        if len(self.refused) < MAX_REFUSED:
            self.refused.append(reason)
        return False

    # --- outbound ---

    async def _announce(self) -> None:
        assert self.new_index is not None
        msg = gossip_pb2.DkgMessage(session_id=self.session, sender_index=self.new_index - 1,
                                    type_name=ENCRYPTION_KEY_TYPE, body=self.keys[self.new_index])
        await self.publish(self.seal(self.plan.new_keyset_id, self.new_index - 1, gossip_pb2.MESSAGE_KIND_DKG,
                                     msg.SerializeToString()))

    async def _emit(self, packets: list[dkg_pb2.DkgPacket]) -> None:
        for packet in packets:
            if packet.WhichOneof("body") in _OLD_SET_PACKETS:
                keyset_id, index = self.plan.old_keyset.keyset_id, self.old_index
            else:
                keyset_id, index = self.plan.new_keyset_id, self.new_index
            assert index is not None  # a machine only emits packets of its own roles
            msg = gossip_pb2.DkgMessage(session_id=self.session, sender_index=index - 1,
                                        type_name=PACKET_TYPE, body=packet.SerializeToString())
            payload = msg.SerializeToString()
            await self.publish(self.seal(keyset_id, index - 1, gossip_pb2.MESSAGE_KIND_DKG, payload))

    # --- driving ---

    def _build_machine(self) -> DkgMachine:
        recipients = [Participant(j, self.keys[j]) for j in range(1, len(self.plan.new_members) + 1)]
        nonce = self.session.to_bytes(8, "big") + self.plan.attempt.to_bytes(8, "big")
        config = make_reshare_config(self.plan.old_keyset, self.plan.old_keyset.holders, recipients,
                                     self.plan.new_threshold, nonce)
        return make_reshare_machine(config, old=self._old, new_index=self.new_index,
                                    encryption_key=self._encryption_key, timeouts=self.timeouts)

    async def _process(self, sender: int, packet: dkg_pb2.DkgPacket) -> None:
        if self.machine is None:
            if len(self._early) >= MAX_EARLY_PACKETS:
                self.dropped += 1
            else:
                self._early.append((sender, packet))
            return
        try:
            await self._emit(self.machine.process_packet(sender, packet, self.now()))
        except DkgMessageError as exc:
            self._refuse(f"{packet.WhichOneof('body')} from holder {sender}: {exc}")

    async def _step(self) -> None:
        """One loop turn: announce when due, start the machine once all keys are known, tick it."""
        if self.machine is None and len(self.keys) == len(self.plan.new_members):
            self.machine = self._build_machine()
            log.info("reshare starting: every encryption key known", extra={"session": f"{self.session:#x}", "keys": len(self.keys)})
            await self._emit(self.machine.start(self.now()))
            self.replayed = len(self._early)
            while self._early:
                await self._process(*self._early.popleft())
        if self.machine is not None:
            await self._emit(self.machine.tick(self.now()))

    async def run(self, timeout_s: float) -> DkgResult:
        """Run the reshare to the end; raises DkgError if it fails or does not finish in time."""
        next_announce = self.now()
        try:
            with trio.fail_after(timeout_s):
                while self.machine is None or not self.machine.is_done:
                    if self.new_index is not None and self.now() >= next_announce:
                        await self._announce()
                        next_announce = self.now() + self.announce_interval_s
                    await self._step()
                    if self.machine is not None and self.machine.is_done:
                        break
                    with trio.move_on_after(self.tick_s):
                        await self._process(*await self._recv.receive())
        except trio.TooSlowError as exc:
            phase = self.machine.phase.value if self.machine else f"waiting for keys ({len(self.keys)} known)"
            raise DkgError(f"reshare {self.session:#x}: not finished within {timeout_s}s ({phase})") from exc
        assert self.machine is not None
        if self.machine.result is None:
            raise DkgError(f"reshare {self.session:#x}: failed: {self.machine.failure}")
        return self.machine.result
