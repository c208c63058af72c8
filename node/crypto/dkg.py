"""Dealerless joint-Feldman DKG (drand style) as an explicit state machine; also drives resharing.

Phases: DEAL (every dealer broadcasts commitments and sealed shares), RESPONSE (every recipient
broadcasts SUCCESS/COMPLAINT per dealer), JUSTIFICATION (a dealer with complaints reveals the
complained shares in clear; everyone checks them against its commitments), then FINISHED or FAILED.
The qualified set QUAL is every dealer whose deal arrived in time and whose complaints were all
answered with consistent shares. A fresh DKG sums the qualified polynomials; resharing (see
`reshare.py`) interpolates them at 0 with Lagrange weights over QUAL, which keeps the group key.

Invariants:
- the only transitions are those in `TRANSITIONS` (phase x event -> next phase, action); an event
  that is not in the table is refused with a `DkgMessageError` and leaves the machine unchanged;
  an action that raises `DkgError` moves the machine to FAILED with that operator-readable reason;
- no threads, sleeps or clocks inside: the caller passes `now` (seconds, any monotonic origin) to
  `start`, `process_packet` and `tick`; each phase ends when complete or at its deadline;
- transport-agnostic: `process_packet(sender_index, packet, now)` consumes one authenticated packet
  and every method returns the packets to broadcast; a machine never receives its own packets back
  (an identical re-delivery is ignored);
- honest nodes must receive each other's packets before the phase deadlines (synchrony assumption of
  joint-Feldman); broadcast consistency (one bundle per dealer) is the transport's job.
Persists nothing: the caller stores `DkgResult` (share in the keystore, `KeySet` in the store).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from py_arkworks_bls12381 import G2Point, Scalar

from node.crypto import bls, threshold
from node.crypto.dealing import (
    Deal,
    DkgMessageError,
    ResponseSet,
    Reveal,
    SessionConfig,
    build_deal,
    compute_share_ad,
    encode_scalar,
    open_share,
    parse_deal,
    parse_justification,
    parse_response,
)
from node.crypto.errors import DkgError
from node.pb.clearing.dkg.v1 import dkg_pb2

if TYPE_CHECKING:
    from node.crypto.dkg_bus import BusOutcome

LOG = logging.getLogger(__name__)


class Phase(enum.Enum):
    INIT = "init"
    DEAL = "deal"
    RESPONSE = "response"
    JUSTIFICATION = "justification"
    FINISHED = "finished"
    FAILED = "failed"


class Event(enum.Enum):
    START = "start"
    DEAL_RECEIVED = "deal_received"
    RESPONSE_RECEIVED = "response_received"
    JUSTIFICATION_RECEIVED = "justification_received"
    PHASE_COMPLETE = "phase_complete"
    TIMEOUT = "timeout"


@dataclass(frozen=True)
class DkgTimeouts:
    """Per-phase timeouts in seconds (bounded: each must lie in (0, 3600])."""

    deal: float = 10.0
    response: float = 10.0
    justification: float = 10.0

    def __post_init__(self) -> None:
        for name in ("deal", "response", "justification"):
            value = getattr(self, name)
            if not 0 < value <= 3600:
                raise DkgError(f"timeouts.{name}: {value} outside (0, 3600] seconds")

    def get(self, phase: Phase) -> float:
        return float(getattr(self, phase.value))


@dataclass(frozen=True)
class KeySet:
    """Public outcome of a session: group polynomial commitments ([0] is the group key)."""

    keyset_id: int
    session_id: bytes
    threshold: int
    holders: tuple[int, ...]
    commitments: tuple[bytes, ...]
    qualified: tuple[int, ...]

    @property
    def group_public_key(self) -> bytes:
        return self.commitments[0]

    def get_public_share(self, index: int) -> bytes:
        return threshold.public_share_from_commitments(self.commitments, index)

    def get_public_shares(self) -> dict[int, bytes]:
        return {i: self.get_public_share(i) for i in self.holders}

    def to_record(self, index: int = 0) -> dkg_pb2.KeySetRecord:
        return dkg_pb2.KeySetRecord(
            keyset_id=self.keyset_id,
            session_id=self.session_id,
            index=index,
            threshold=self.threshold,
            holders=list(self.holders),
            commitments=list(self.commitments),
            qualified=list(self.qualified),
        )

    @staticmethod
    def from_record(record: dkg_pb2.KeySetRecord) -> KeySet:
        keyset = KeySet(
            keyset_id=record.keyset_id,
            session_id=bytes(record.session_id),
            threshold=record.threshold,
            holders=tuple(record.holders),
            commitments=tuple(bytes(c) for c in record.commitments),
            qualified=tuple(record.qualified),
        )
        if len(keyset.commitments) != keyset.threshold:
            raise DkgError(f"commitments: {len(keyset.commitments)} entries, threshold is {keyset.threshold}")
        threshold.parse_commitments(keyset.commitments)
        return keyset


@dataclass(frozen=True)
class DkgResult:
    """A holder's outcome: the public key set and, for recipients, its index and secret share."""

    keyset: KeySet
    index: int | None
    share: int | None = field(repr=False)


@dataclass(frozen=True)
class DkgStatus:
    """Operator view of a machine: phase, deadline and what it has received so far."""

    epoch: int
    session_id: str
    phase: str
    deadline: float | None
    deals_from: tuple[int, ...]
    responses_from: tuple[int, ...]
    justifications_from: tuple[int, ...]
    complaints: dict[int, tuple[int, ...]]
    qualified: tuple[int, ...] | None
    failure: str | None


PacketList = list[dkg_pb2.DkgPacket]


class DkgMachine:
    """One participant of one DKG or resharing session (dealer, recipient or both)."""

    def __init__(
        self,
        config: SessionConfig,
        *,
        encryption_key: X25519PrivateKey | None,
        dealer_index: int | None,
        recipient_index: int | None,
        timeouts: DkgTimeouts | None = None,
        dealer_secret: int | None = None,
    ) -> None:
        if dealer_index is not None and dealer_index not in config.dealers:
            raise DkgError(f"dealer_index: {dealer_index} is not a dealer of this session")
        if recipient_index is not None:
            expected = config.get_recipient(recipient_index).encryption_public_key
            if encryption_key is None or encryption_key.public_key().public_bytes_raw() != expected:
                raise DkgError(f"encryption_key: does not match recipient {recipient_index}'s registered key")
        if (config.previous is not None) != (dealer_secret is not None) and dealer_index is not None:
            raise DkgError("dealer_secret: required exactly when resharing as a dealer")
        if config.previous is not None and dealer_index is not None and dealer_secret is not None:
            expected = threshold.public_share_from_commitments(config.previous.commitments, dealer_index)
            if not 0 < dealer_secret < bls.CURVE_ORDER or bls.public_key(dealer_secret) != expected:
                raise DkgError(
                    f"dealer_secret: old share of holder {dealer_index} does not match its public share "
                    f"in key set {config.previous.keyset_id}"
                )
        self.config = config
        self.timeouts = timeouts or DkgTimeouts()
        self.dealer_index = dealer_index
        self.recipient_index = recipient_index
        self._encryption_key = encryption_key
        self._dealer_secret = dealer_secret
        self._coefficients: tuple[int, ...] = ()
        self.phase = Phase.INIT
        self.deadline: float | None = None
        self.failure: str | None = None
        self.result: DkgResult | None = None
        self.deals: dict[int, Deal] = {}
        self.responses: dict[int, ResponseSet] = {}
        self.reveals: dict[int, Reveal] = {}
        self._received_shares: dict[int, int] = {}

    # --- public driving API ---

    def start(self, now: float) -> PacketList:
        """Begin the deal phase (broadcast this dealer's bundle)."""
        return self._fire(Event.START, now, None)

    def tick(self, now: float) -> PacketList:
        """Advance past the current phase if its deadline has passed."""
        if self.deadline is not None and now >= self.deadline and self.phase in _TIMED_PHASES:
            LOG.info("dkg phase timed out", extra={"epoch": self.config.epoch, "phase": self.phase.value})
            return self._fire(Event.TIMEOUT, now, None)
        return []

    def process_packet(self, sender_index: int, packet: dkg_pb2.DkgPacket, now: float) -> PacketList:
        """Consume one packet from `sender_index`; raises DkgMessageError if it is refused."""
        kind = packet.WhichOneof("body")
        if kind == "deal":
            return self._fire(Event.DEAL_RECEIVED, now, (sender_index, packet.deal))
        if kind == "response":
            return self._fire(Event.RESPONSE_RECEIVED, now, (sender_index, packet.response))
        if kind == "justification":
            return self._fire(Event.JUSTIFICATION_RECEIVED, now, (sender_index, packet.justification))
        raise DkgMessageError("packet.body: empty")

    def get_status(self) -> DkgStatus:
        """What an operator needs to see (`clearingd dkg status`)."""
        return DkgStatus(
            epoch=self.config.epoch,
            session_id=self.config.session_id.hex(),
            phase=self.phase.value,
            deadline=self.deadline,
            deals_from=tuple(sorted(self.deals)),
            responses_from=tuple(sorted(self.responses)),
            justifications_from=tuple(sorted(self.reveals)),
            complaints={d: tuple(sorted(self._get_accusers(d))) for d in sorted(self._get_accused_dealers())},
            qualified=self.result.keyset.qualified if self.result else None,
            failure=self.failure,
        )

    def get_received_shares(self) -> tuple[int, ...]:
        """The opened shares dealers sealed to this node (secrets: their weighted sum is the share), e.g. to
        register them for log redaction."""
        return tuple(self._received_shares.values())

    @property
    def is_done(self) -> bool:
        return self.phase in (Phase.FINISHED, Phase.FAILED)

    # --- transition engine ---

    def _fire(self, event: Event, now: float, payload: object) -> PacketList:
        entry = TRANSITIONS.get((self.phase, event))
        if entry is None:
            raise DkgMessageError(f"event {event.value} is not accepted in phase {self.phase.value}")
        next_phase, action = entry
        try:
            out = action(self, now, payload)
        except DkgMessageError:
            raise
        except DkgError as exc:
            self._fail(str(exc))
            return []
        if next_phase != self.phase:
            self._enter(next_phase, now)
        if self.phase in _TIMED_PHASES and self._is_phase_complete():
            out = out + self._fire(Event.PHASE_COMPLETE, now, None)
        return out

    def _enter(self, phase: Phase, now: float) -> None:
        LOG.info("dkg phase entered", extra={"epoch": self.config.epoch, "from_phase": self.phase.value,
                                             "phase": phase.value})
        self.phase = phase
        self.deadline = now + self.timeouts.get(phase) if phase in _TIMED_PHASES else None

    def _fail(self, reason: str) -> None:
        LOG.error("dkg failed", extra={"epoch": self.config.epoch, "phase": self.phase.value, "reason": reason})
        self.failure = f"phase {self.phase.value}: {reason}"
        self.phase = Phase.FAILED
        self.deadline = None

    def _is_phase_complete(self) -> bool:
        if self.phase == Phase.DEAL:
            return len(self.deals) == len(self.config.dealers)
        if self.phase == Phase.RESPONSE:
            return len(self.responses) == len(self.config.recipients)
        if self.phase == Phase.JUSTIFICATION:
            return all(d in self.reveals for d in self._get_accused_dealers())
        return False

    # --- storing actions ---

    def _store_deal(self, now: float, payload: object) -> PacketList:
        sender, bundle = cast(tuple[int, dkg_pb2.DealBundle], payload)
        deal = parse_deal(self.config, sender, bundle)
        self._store_once(self.deals, deal.dealer, deal, "deal")
        return []

    def _store_response(self, now: float, payload: object) -> PacketList:
        sender, bundle = cast(tuple[int, dkg_pb2.ResponseBundle], payload)
        response = parse_response(self.config, sender, bundle)
        self._store_once(self.responses, response.responder, response, "response")
        return []

    def _store_justification(self, now: float, payload: object) -> PacketList:
        sender, bundle = cast(tuple[int, dkg_pb2.JustificationBundle], payload)
        reveal = parse_justification(self.config, sender, bundle)
        self._store_once(self.reveals, reveal.dealer, reveal, "justification")
        return []

    @staticmethod
    def _store_once(table: dict, key: int, value: Deal | ResponseSet | Reveal, kind: str) -> None:
        existing = table.get(key)
        if existing is None:
            table[key] = value
        elif existing.raw != value.raw:
            raise DkgMessageError(f"{kind}: sender {key} already sent a different {kind} (equivocation)")

    # --- phase actions ---

    def _action_deal(self, now: float, payload: object) -> PacketList:
        if self.dealer_index is None:
            return []
        self._coefficients = self.compute_polynomial()
        share_for = {j: self.compute_dealt_share(j) for j in self.config.recipient_indices}
        bundle = build_deal(self.config, self.dealer_index, self._coefficients, share_for)
        try:
            self.deals[self.dealer_index] = parse_deal(self.config, self.dealer_index, bundle)
        except DkgMessageError as exc:  # only a faulty dealer gets here; the others will refuse it too
            LOG.error("dkg own deal is invalid", extra={"epoch": self.config.epoch, "reason": str(exc)})
        return [dkg_pb2.DkgPacket(deal=bundle)]

    def _action_respond(self, now: float, payload: object) -> PacketList:
        missing = sorted(set(self.config.dealers) - set(self.deals))
        if missing:
            LOG.warning("dkg dealers sent no deal: excluded", extra={"epoch": self.config.epoch, "dealers": missing})
        if self.recipient_index is None:
            return []
        complaints = self.compute_complaints()
        bundle = dkg_pb2.ResponseBundle(
            session_id=self.config.session_id, epoch=self.config.epoch, responder_index=self.recipient_index
        )
        for dealer in sorted(self.deals):
            status = (
                dkg_pb2.RESPONSE_STATUS_COMPLAINT if dealer in complaints else dkg_pb2.RESPONSE_STATUS_SUCCESS
            )
            bundle.responses.add(dealer_index=dealer, status=status)
        self.responses[self.recipient_index] = parse_response(self.config, self.recipient_index, bundle)
        return [dkg_pb2.DkgPacket(response=bundle)]

    def _action_justify(self, now: float, payload: object) -> PacketList:
        if self.dealer_index is None or self.dealer_index not in self._get_accused_dealers():
            return []
        accusers = self._get_accusers(self.dealer_index)
        bundle = dkg_pb2.JustificationBundle(
            session_id=self.config.session_id, epoch=self.config.epoch, dealer_index=self.dealer_index
        )
        for j in sorted(accusers):
            bundle.justifications.add(recipient_index=j, share=encode_scalar(self.compute_revealed_share(j)))
        LOG.info("dkg revealing shares for complaints", extra={"epoch": self.config.epoch, "accusers": sorted(accusers)})
        self.reveals[self.dealer_index] = parse_justification(self.config, self.dealer_index, bundle)
        return [dkg_pb2.DkgPacket(justification=bundle)]

    def _action_finish(self, now: float, payload: object) -> PacketList:
        qualified = self.compute_qualified()
        needed = self.config.previous.threshold if self.config.previous else self.config.threshold
        if len(qualified) < needed:
            raise DkgError(f"qualified: only dealers {list(qualified)} qualified, at least {needed} needed")
        weights = self._compute_weights(qualified)
        commitments = self._compute_group_commitments(qualified, weights)
        if self.config.previous is not None and commitments[0] != self.config.previous.commitments[0]:
            raise DkgError("commitments[0]: reshared group key differs from the previous key set's")
        keyset = KeySet(
            keyset_id=self.config.epoch,
            session_id=self.config.session_id,
            threshold=self.config.threshold,
            holders=self.config.recipient_indices,
            commitments=commitments,
            qualified=qualified,
        )
        share = None
        if self.recipient_index is not None:
            share = sum(weights[d] * self._received_shares[d] for d in qualified) % bls.CURVE_ORDER
            if bls.public_key(share) != keyset.get_public_share(self.recipient_index):
                raise DkgError(
                    f"share: final share of holder {self.recipient_index} does not match commitments"
                )
        self.result = DkgResult(keyset=keyset, index=self.recipient_index, share=share)
        LOG.info("dkg finished", extra={"epoch": self.config.epoch, "qualified": list(qualified)})
        return []

    # --- computations (overridable seams for misbehaviour tests) ---

    def compute_polynomial(self) -> tuple[int, ...]:
        """This dealer's fresh polynomial (constant term = old share when resharing)."""
        return threshold.generate_polynomial(self.config.threshold, self._dealer_secret)

    def compute_dealt_share(self, recipient: int) -> int:
        """The share this dealer seals for `recipient` (honest: f(recipient))."""
        return threshold.compute_polynomial_value(self._coefficients, recipient)

    def compute_revealed_share(self, recipient: int) -> int:
        """The share this dealer reveals to answer `recipient`'s complaint (honest: f(recipient))."""
        return threshold.compute_polynomial_value(self._coefficients, recipient)

    def compute_complaints(self) -> set[int]:
        """Dealers whose share for this recipient is missing, unopenable or inconsistent."""
        assert self.recipient_index is not None and self._encryption_key is not None
        complaints: set[int] = set()
        for dealer, deal in self.deals.items():
            share = self._open_and_check(deal)
            if share is None:
                complaints.add(dealer)
            else:
                self._received_shares[dealer] = share
        return complaints

    def compute_qualified(self) -> tuple[int, ...]:
        """Dealers with a deal and no unanswered or wrongly answered complaint."""
        qualified = []
        for dealer, deal in sorted(self.deals.items()):
            reason = self._get_disqualification(dealer, deal)
            if reason is None:
                qualified.append(dealer)
            else:
                LOG.warning("dkg dealer disqualified", extra={"epoch": self.config.epoch, "dealer": dealer, "reason": reason})
        return tuple(qualified)

    # --- helpers ---

    def _open_and_check(self, deal: Deal) -> int | None:
        assert self.recipient_index is not None and self._encryption_key is not None
        sealed = deal.shares.get(self.recipient_index)
        if sealed is None:
            LOG.warning("dkg dealer sent no share for this holder",
                        extra={"epoch": self.config.epoch, "dealer": deal.dealer, "holder": self.recipient_index})
            return None
        ad = compute_share_ad(self.config.session_id, self.config.epoch, deal.dealer, self.recipient_index)
        try:
            share = open_share(
                self._encryption_key, deal.ephemeral_public_key, ad, sealed.nonce, sealed.ciphertext
            )
        except DkgError as exc:
            LOG.warning("dkg share refused", extra={"epoch": self.config.epoch, "dealer": deal.dealer,
                                                    "holder": self.recipient_index, "reason": str(exc)})
            return None
        if not threshold.is_share_consistent(deal.points, self.recipient_index, share):
            LOG.warning("dkg share fails the Feldman check",
                        extra={"epoch": self.config.epoch, "dealer": deal.dealer, "holder": self.recipient_index})
            return None
        return share

    def _get_accusers(self, dealer: int) -> set[int]:
        return {r.responder for r in self.responses.values() if dealer in r.complaints}

    def _get_accused_dealers(self) -> set[int]:
        return {d for d in self.deals if self._get_accusers(d)}

    def _get_disqualification(self, dealer: int, deal: Deal) -> str | None:
        accusers = self._get_accusers(dealer)
        if not accusers:
            return None
        reveal = self.reveals.get(dealer)
        if reveal is None:
            return f"no justification for complaints from {sorted(accusers)}"
        for j in sorted(accusers):
            share = reveal.shares.get(j)
            if share is None:
                return f"justification lacks the share of {j}"
            if not threshold.is_share_consistent(deal.points, j, share):
                return f"revealed share of {j} fails the Feldman check"
            if j == self.recipient_index:
                self._received_shares[dealer] = share
        return None

    def _compute_weights(self, qualified: tuple[int, ...]) -> dict[int, int]:
        if self.config.previous is None:
            return dict.fromkeys(qualified, 1)
        return threshold.compute_lagrange_coefficients(list(qualified))

    def _compute_group_commitments(
        self, qualified: tuple[int, ...], weights: Mapping[int, int]
    ) -> tuple[bytes, ...]:
        scalars = [Scalar(weights[d]) for d in qualified]
        out = []
        for k in range(self.config.threshold):
            points = [self.deals[d].points[k] for d in qualified]
            out.append(G2Point.multiexp_unchecked(points, scalars).to_compressed_bytes())
        return tuple(out)


Action = Callable[[DkgMachine, float, object], PacketList]

_TIMED_PHASES = (Phase.DEAL, Phase.RESPONSE, Phase.JUSTIFICATION)

# The one transition table: (phase, event) -> (next phase, action). Packets of a later phase that
# arrive early are stored; packets of a phase that is over are refused (absent from the table).
TRANSITIONS: dict[tuple[Phase, Event], tuple[Phase, Action]] = {
    (Phase.INIT, Event.START): (Phase.DEAL, DkgMachine._action_deal),
    (Phase.INIT, Event.DEAL_RECEIVED): (Phase.INIT, DkgMachine._store_deal),
    (Phase.INIT, Event.RESPONSE_RECEIVED): (Phase.INIT, DkgMachine._store_response),
    (Phase.INIT, Event.JUSTIFICATION_RECEIVED): (Phase.INIT, DkgMachine._store_justification),
    (Phase.DEAL, Event.DEAL_RECEIVED): (Phase.DEAL, DkgMachine._store_deal),
    (Phase.DEAL, Event.RESPONSE_RECEIVED): (Phase.DEAL, DkgMachine._store_response),
    (Phase.DEAL, Event.JUSTIFICATION_RECEIVED): (Phase.DEAL, DkgMachine._store_justification),
    (Phase.DEAL, Event.PHASE_COMPLETE): (Phase.RESPONSE, DkgMachine._action_respond),
    (Phase.DEAL, Event.TIMEOUT): (Phase.RESPONSE, DkgMachine._action_respond),
    (Phase.RESPONSE, Event.RESPONSE_RECEIVED): (Phase.RESPONSE, DkgMachine._store_response),
    (Phase.RESPONSE, Event.JUSTIFICATION_RECEIVED): (Phase.RESPONSE, DkgMachine._store_justification),
    (Phase.RESPONSE, Event.PHASE_COMPLETE): (Phase.JUSTIFICATION, DkgMachine._action_justify),
    (Phase.RESPONSE, Event.TIMEOUT): (Phase.JUSTIFICATION, DkgMachine._action_justify),
    (Phase.JUSTIFICATION, Event.JUSTIFICATION_RECEIVED): (
        Phase.JUSTIFICATION,
        DkgMachine._store_justification,
    ),
    (Phase.JUSTIFICATION, Event.PHASE_COMPLETE): (Phase.FINISHED, DkgMachine._action_finish),
    (Phase.JUSTIFICATION, Event.TIMEOUT): (Phase.FINISHED, DkgMachine._action_finish),
}


def run_dkg_in_process(n: int, t: int, **kwargs: Any) -> BusOutcome:
    """Run a full DKG among n in-memory machines; see `node.crypto.dkg_bus.run_dkg_in_process`."""
    from node.crypto.dkg_bus import run_dkg_in_process as run_on_bus

    return run_on_bus(n, t, **kwargs)
