"""In-memory bus that drives DKG / resharing machines in one process, with misbehaviour hooks.

Used by tests, the benchmark and the devnet bootstrap (which then stores each holder's result).
Time is virtual: packets are delivered in FIFO order at the current instant; when nothing is in
flight the clock jumps to the earliest deadline and every machine is ticked. A `Misbehaviour` turns a
participant into a faulty one (silent, wrong shares, tampered ciphertexts, false complaints,
withheld or wrong justifications). Bounded: at most `MAX_DELIVERIES` packets per run.

Persists nothing; returns the per-holder results and failure reasons.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from node.crypto import bls
from node.crypto.dealing import DkgMessageError, Participant, SessionConfig
from node.crypto.dkg import DkgMachine, DkgResult, DkgTimeouts, Phase
from node.crypto.errors import DkgError
from node.pb.clearing.dkg.v1 import dkg_pb2

MAX_DELIVERIES = 200_000
MAX_ROUNDS = 64


@dataclass(frozen=True)
class Misbehaviour:
    """How a participant deviates from the protocol (all off = honest)."""

    silent: bool = False
    # deals f(j) + 1 to these recipients and, when they complain, reveals the same wrong value
    wrong_share_for: frozenset[int] = frozenset()
    tamper_ciphertext_for: frozenset[int] = frozenset()
    false_complaints_against: frozenset[int] = frozenset()
    wrong_secret: bool = False  # deals a polynomial whose constant term is not its (old) secret
    withhold_justification: bool = False
    wrong_justification: bool = False


class FaultyMachine(DkgMachine):
    """A DkgMachine that follows a Misbehaviour (for tests and fault drills only)."""

    def __init__(self, *args: object, misbehaviour: Misbehaviour, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.misbehaviour = misbehaviour

    def compute_polynomial(self) -> tuple[int, ...]:
        coefficients = super().compute_polynomial()
        if self.misbehaviour.wrong_secret:
            return ((coefficients[0] + 1) % bls.CURVE_ORDER, *coefficients[1:])
        return coefficients

    def compute_dealt_share(self, recipient: int) -> int:
        share = super().compute_dealt_share(recipient)
        if recipient in self.misbehaviour.wrong_share_for:
            return (share + 1) % bls.CURVE_ORDER
        return share

    def compute_revealed_share(self, recipient: int) -> int:
        share = super().compute_revealed_share(recipient)
        if recipient in self.misbehaviour.wrong_share_for or self.misbehaviour.wrong_justification:
            return (share + 1) % bls.CURVE_ORDER
        return share

    def compute_complaints(self) -> set[int]:
        honest = super().compute_complaints()
        return honest | (set(self.misbehaviour.false_complaints_against) & set(self.deals))


def _apply_outgoing(misbehaviour: Misbehaviour | None, packet: dkg_pb2.DkgPacket) -> dkg_pb2.DkgPacket | None:
    if misbehaviour is None:
        return packet
    if misbehaviour.silent:
        return None
    kind = packet.WhichOneof("body")
    if kind == "justification" and misbehaviour.withhold_justification:
        return None
    if kind == "deal" and misbehaviour.tamper_ciphertext_for:
        tampered = dkg_pb2.DkgPacket()
        tampered.CopyFrom(packet)
        for entry in tampered.deal.shares:
            if entry.recipient_index in misbehaviour.tamper_ciphertext_for:
                entry.ciphertext = bytes([entry.ciphertext[0] ^ 1]) + entry.ciphertext[1:]
        return tampered
    return packet


@dataclass
class BusNode:
    """One process on the bus: its machine and its identities in the dealer / recipient roles."""

    name: str
    machine: DkgMachine
    misbehaviour: Misbehaviour | None = None


@dataclass
class BusOutcome:
    """What a run produced: results by node name, failures by node name, refused packets, virtual time."""

    results: dict[str, DkgResult] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)
    virtual_seconds: float = 0.0
    deliveries: int = 0


def _sender_index(node: BusNode, packet: dkg_pb2.DkgPacket) -> int:
    kind = packet.WhichOneof("body")
    index = node.machine.recipient_index if kind == "response" else node.machine.dealer_index
    if index is None:
        raise DkgError(f"{node.name}: emitted a {kind} without holding that role")
    return index


def run_bus(nodes: Sequence[BusNode], now: float = 0.0) -> BusOutcome:
    """Start every machine and deliver packets until all are FINISHED or FAILED."""
    outcome = BusOutcome()
    queue: collections.deque[tuple[BusNode, dkg_pb2.DkgPacket]] = collections.deque()

    def emit(node: BusNode, packets: list[dkg_pb2.DkgPacket]) -> None:
        for packet in packets:
            sent = _apply_outgoing(node.misbehaviour, packet)
            if sent is not None:
                queue.append((node, sent))

    start = now
    for node in nodes:
        emit(node, node.machine.start(now))
    for _ in range(MAX_ROUNDS):
        while queue:
            sender, packet = queue.popleft()
            outcome.deliveries += 1
            if outcome.deliveries > MAX_DELIVERIES:
                raise DkgError(f"bus: more than {MAX_DELIVERIES} deliveries")
            index = _sender_index(sender, packet)
            for node in nodes:
                if node is sender or node.machine.is_done:
                    continue
                try:
                    emit(node, node.machine.process_packet(index, packet, now))
                except DkgMessageError as exc:
                    outcome.refused.append(
                        f"{node.name} refused {packet.WhichOneof('body')} from {sender.name}: {exc}"
                    )
        pending = [
            n.machine.deadline for n in nodes if not n.machine.is_done and n.machine.deadline is not None
        ]
        if not pending:
            break
        now = max(now, min(pending))
        for node in nodes:
            emit(node, node.machine.tick(now))
    for node in nodes:
        if node.machine.phase == Phase.FINISHED and node.machine.result is not None:
            outcome.results[node.name] = node.machine.result
        else:
            outcome.failures[node.name] = node.machine.failure or f"stuck in phase {node.machine.phase.value}"
    outcome.virtual_seconds = now - start
    return outcome


def make_encryption_keys(indices: Sequence[int]) -> dict[int, X25519PrivateKey]:
    """Fresh X25519 encryption keys by index."""
    return {i: X25519PrivateKey.generate() for i in indices}


def make_participants(keys: Mapping[int, X25519PrivateKey]) -> tuple[Participant, ...]:
    """Participants (index, encryption public key) sorted by index."""
    return tuple(Participant(i, keys[i].public_key().public_bytes_raw()) for i in sorted(keys))


def _make_machine(
    config: SessionConfig,
    misbehaviour: Misbehaviour | None,
    **kwargs: object,
) -> DkgMachine:
    if misbehaviour is None:
        return DkgMachine(config, **kwargs)  # type: ignore[arg-type]
    return FaultyMachine(config, misbehaviour=misbehaviour, **kwargs)


def run_dkg_in_process(
    n: int,
    t: int,
    *,
    epoch: int = 1,
    nonce: bytes = b"in-process",
    misbehaviour: Mapping[int, Misbehaviour] | None = None,
    timeouts: DkgTimeouts | None = None,
) -> BusOutcome:
    """A full dealerless DKG among holders 1..n (threshold t); results keyed by str(index)."""
    misbehaviour = misbehaviour or {}
    keys = make_encryption_keys(range(1, n + 1))
    config = SessionConfig(
        epoch=epoch,
        threshold=t,
        dealers=tuple(range(1, n + 1)),
        recipients=make_participants(keys),
        nonce=nonce,
    )
    nodes = [
        BusNode(
            name=str(i),
            machine=_make_machine(
                config,
                misbehaviour.get(i),
                encryption_key=keys[i],
                dealer_index=i,
                recipient_index=i,
                timeouts=timeouts,
            ),
            misbehaviour=misbehaviour.get(i),
        )
        for i in range(1, n + 1)
    ]
    return run_bus(nodes)
