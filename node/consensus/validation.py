"""Checks every gossiped envelope must pass before it is delivered or forwarded.

`GossipValidator.validate_gossip(forwarder, origin, data)` returns None (accept) or a short reason
(reject; the host lowers the forwarder's score by reason). It checks, in order: the envelope
(version, kind, network/keyset, operator-key signature of a set member), the epoch window of
heartbeats, partials and signed states, the peer binding (a heartbeat must name its own origin
peer; any other message from an operator whose heartbeat we know must come from that bound peer), and
the content: a partial must verify under the signer's BLS public share in the key set its envelope
names, a signed state's digest must match its fields and its signature must verify under the group
key (one group key for every key set of the network: resharing keeps it). Messages from signers
whose heartbeat has not arrived yet are accepted here and parked by the engine until the binding is
known. Several key sets can be live at once during a validator-set change (`node.consensus.keyring`):
`sets` maps key-set id -> ValidatorSet; envelopes of a key set this node does not know are dropped
as "unknown_keyset" (no penalty). Accepted messages are kept in a bounded cache so the engine does
not verify them twice. Holds the bindings (operator address -> peer id) in memory; persists nothing.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from node.consensus.digest import state_from_proto
from node.consensus.errors import InvalidStateError
from node.crypto import threshold
from node.p2p.envelope import OpenedEnvelope, open_envelope_in
from node.p2p.errors import EnvelopeError, NotMemberError, UnknownKeysetError
from node.pb.clearing.gossip.v1 import gossip_pb2

ACCEPTED_CACHE_SIZE = 4096
MAX_HEARTBEAT_SKEW_MS = 120_000
KINDS_WITH_EPOCH = (gossip_pb2.MESSAGE_KIND_HEARTBEAT, gossip_pb2.MESSAGE_KIND_PARTIAL_SIGNATURE,
                    gossip_pb2.MESSAGE_KIND_SIGNED_STATE, gossip_pb2.MESSAGE_KIND_EQUIVOCATION_EVIDENCE)


@dataclass(frozen=True)
class ValidatorSet:
    """One key set's validators: index i (0-based) holds BLS share index i + 1.

    `public_shares` is empty for a pending set (members known from governance, reshare not done)."""

    network_id: int
    keyset_id: int
    operator_addresses: tuple[bytes, ...]  # 20 bytes each
    public_shares: tuple[bytes, ...]  # 96 bytes each (compressed G2)
    threshold: int
    group_key: bytes  # 96 bytes (compressed G2)

    def __post_init__(self) -> None:
        if self.public_shares and len(self.operator_addresses) != len(self.public_shares):
            raise ValueError(f"public_shares: {len(self.public_shares)} for {len(self.operator_addresses)} operators")
        if not 1 <= self.threshold <= len(self.operator_addresses):
            raise ValueError(f"threshold: {self.threshold} outside 1..{len(self.operator_addresses)}")

    @property
    def n(self) -> int:
        return len(self.operator_addresses)


@dataclass(frozen=True)
class EpochWindow:
    """Accept epochs in [current - past, current + future]; `current` is computed from the wall clock."""

    genesis_time: float
    period_s: float
    past: int = 8
    future: int = 1

    def get_current_epoch(self, now: float) -> int:
        return max(0, math.floor((now - self.genesis_time) / self.period_s))

    def get_epoch_start(self, epoch: int) -> float:
        return self.genesis_time + epoch * self.period_s

    def is_inside(self, epoch: int, now: float) -> bool:
        current = self.get_current_epoch(now)
        return current - self.past <= epoch <= current + self.future


class GossipValidator:
    """Stateless checks plus the peer bindings learned from heartbeats."""

    def __init__(self, vset: ValidatorSet, window: EpochWindow, now: Callable[[], float],
                 sets: dict[int, ValidatorSet] | None = None) -> None:
        self.vset = vset  # the genesis (configured) set: network id and group key of every key set
        self.sets = sets if sets is not None else {vset.keyset_id: vset}  # shared with the engine's key ring
        self.window = window
        self.now = now
        self.bindings: dict[bytes, bytes] = {}  # operator address -> peer id bytes
        self._accepted: OrderedDict[bytes, OpenedEnvelope] = OrderedDict()
        # Called with (reason, envelope) for validly enveloped but invalid content (evidence).
        self.on_misbehaviour: Callable[[str, OpenedEnvelope], None] | None = None

    def open(self, data: bytes) -> OpenedEnvelope:
        return open_envelope_in(data, self.get_operators, self.vset.network_id)

    def get_operators(self, keyset_id: int) -> tuple[bytes, ...] | None:
        vset = self.sets.get(keyset_id)
        return None if vset is None else vset.operator_addresses

    def get_signer_address(self, opened: OpenedEnvelope) -> bytes:
        """The operator address of an opened envelope's signer (its key set is known: it opened)."""
        return self.sets[opened.keyset_id].operator_addresses[opened.signer_index]

    def bind(self, address: bytes, peer: bytes) -> None:
        self.bindings[address] = peer

    def pop_accepted(self, data: bytes) -> OpenedEnvelope | None:
        return self._accepted.pop(hashlib.sha256(data).digest(), None)

    def validate_gossip(self, forwarder: str, origin: bytes, data: bytes) -> str | None:
        try:
            opened = self.open(data)
        except UnknownKeysetError:
            return "unknown_keyset"
        except NotMemberError:
            return "not_member"
        except EnvelopeError:
            return "malformed"
        reason = self.validate_opened(origin, opened)
        if reason is None:
            self._accepted[hashlib.sha256(data).digest()] = opened
            while len(self._accepted) > ACCEPTED_CACHE_SIZE:
                self._accepted.popitem(last=False)
        return reason

    def validate_opened(self, origin: bytes, opened: OpenedEnvelope) -> str | None:
        msg = opened.message
        if opened.kind in KINDS_WITH_EPOCH and not self.window.is_inside(msg.epoch, self.now()):  # type: ignore[attr-defined]
            return "out_of_window"
        if opened.kind == gossip_pb2.MESSAGE_KIND_HEARTBEAT:
            return self._validate_heartbeat(origin, opened)
        bound = self.bindings.get(self.get_signer_address(opened))
        if bound is not None and bound != origin:
            return "peer_binding"
        if opened.kind == gossip_pb2.MESSAGE_KIND_PARTIAL_SIGNATURE:
            return self._validate_partial(opened)
        if opened.kind == gossip_pb2.MESSAGE_KIND_SIGNED_STATE:
            return self.validate_signed_state(msg)  # type: ignore[arg-type]
        if opened.kind == gossip_pb2.MESSAGE_KIND_EQUIVOCATION_EVIDENCE:
            return self.validate_evidence(msg)  # type: ignore[arg-type]
        if opened.kind == gossip_pb2.MESSAGE_KIND_DKG:
            return None if msg.sender_index == opened.signer_index else "malformed"  # type: ignore[attr-defined]
        return "malformed"  # requests and responses travel on the catch-up stream, never on gossip

    def _validate_heartbeat(self, origin: bytes, opened: OpenedEnvelope) -> str | None:
        hb = opened.message
        if hb.validator_index != opened.signer_index or hb.peer_id != origin:  # type: ignore[attr-defined]
            return "peer_binding"
        if abs(hb.time_ms - int(self.now() * 1000)) > MAX_HEARTBEAT_SKEW_MS:  # type: ignore[attr-defined]
            return "out_of_window"
        return None

    def _validate_partial(self, opened: OpenedEnvelope) -> str | None:
        p = opened.message
        if p.signer_index != opened.signer_index or len(p.digest) != 32 or len(p.partial) != 48:  # type: ignore[attr-defined]
            return "malformed"
        shares = self.sets[opened.keyset_id].public_shares
        if not shares:
            return "unknown_keyset"  # members known, public shares not yet (this node's reshare still runs)
        if not threshold.partial_verify(shares[p.signer_index], p.digest, p.partial):  # type: ignore[attr-defined]
            if self.on_misbehaviour is not None:
                self.on_misbehaviour("invalid_partial", opened)
            return "invalid_partial"
        return None

    def validate_signed_state(self, msg: gossip_pb2.SignedStateMsg) -> str | None:
        try:
            state = state_from_proto(msg)
        except InvalidStateError:
            return "malformed"
        if state.network_id != self.vset.network_id or state.keyset_id < self.vset.keyset_id:
            return "not_member"
        if not threshold.group_verify(self.vset.group_key, state.digest, state.signature):
            return "invalid_signature"
        return None

    def validate_evidence(self, msg: gossip_pb2.EquivocationEvidence) -> str | None:
        """Both envelopes signed by the accused signer, same epoch, conflicting partials."""
        try:
            first, second = self.open(msg.first), self.open(msg.second)
        except EnvelopeError:
            return "malformed"
        kinds = {first.kind, second.kind}
        if kinds != {gossip_pb2.MESSAGE_KIND_PARTIAL_SIGNATURE} or first.signer_index != msg.signer_index \
                or second.signer_index != msg.signer_index or first.keyset_id != second.keyset_id:
            return "malformed"
        a, b = first.message, second.message
        if a.epoch != msg.epoch or b.epoch != msg.epoch or (a.digest, a.partial) == (b.digest, b.partial):  # type: ignore[attr-defined]
            return "malformed"
        return None
