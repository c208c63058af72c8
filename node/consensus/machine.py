"""The epoch round as an explicit state machine with one transition table.

Phases of one epoch at one node (DESIGN.md, "One epoch"):

    WAITING --pinned--> COMPUTED --signed--> SIGNED --threshold--> AGGREGATED --persisted--> PERSISTED
    PERSISTED --published--> DONE
    WAITING --inputs_unavailable--> WAITING (retried until the epoch's deadline)
    WAITING --deadline--> EXPIRED is also a SKIPPED round when its inputs never came (`skip_reason`:
        overrun, deadline or inputs_unavailable; see `node.consensus.input_worker`)
    COMPUTED --sign_refused--> REFUSED (the store already signed another digest for this epoch)
    any of WAITING/COMPUTED/SIGNED --adopted--> PERSISTED (a valid group-signed state arrived by
        gossip or catch-up before this node aggregated one itself; it is stored, never signed)
    WAITING/COMPUTED/SIGNED --deadline--> EXPIRED
    AGGREGATED --aggregate_invalid--> EXPIRED (the combined signature does not verify: never persisted)

`Round` holds the mutable bookkeeping of one epoch (partials by digest, first envelope per signer);
its phase only changes through `process_event`, which consults `TRANSITIONS`. Nothing persisted here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from node.consensus.errors import TransitionError
from node.consensus.inputs import ComputedState


class Phase(enum.Enum):
    WAITING = "waiting"
    COMPUTED = "computed"
    SIGNED = "signed"
    AGGREGATED = "aggregated"
    PERSISTED = "persisted"
    DONE = "done"
    REFUSED = "refused"
    EXPIRED = "expired"


class Event(enum.Enum):
    PINNED = "pinned"
    INPUTS_UNAVAILABLE = "inputs_unavailable"
    SIGNED = "signed"
    SIGN_REFUSED = "sign_refused"
    THRESHOLD = "threshold"
    PERSISTED = "persisted"
    PUBLISHED = "published"
    ADOPTED = "adopted"
    DEADLINE = "deadline"
    AGGREGATE_INVALID = "aggregate_invalid"


TRANSITIONS: dict[tuple[Phase, Event], Phase] = {
    (Phase.WAITING, Event.PINNED): Phase.COMPUTED,
    (Phase.WAITING, Event.INPUTS_UNAVAILABLE): Phase.WAITING,
    (Phase.COMPUTED, Event.SIGNED): Phase.SIGNED,
    (Phase.COMPUTED, Event.SIGN_REFUSED): Phase.REFUSED,
    (Phase.SIGNED, Event.THRESHOLD): Phase.AGGREGATED,
    (Phase.AGGREGATED, Event.PERSISTED): Phase.PERSISTED,
    (Phase.PERSISTED, Event.PUBLISHED): Phase.DONE,
    (Phase.WAITING, Event.ADOPTED): Phase.PERSISTED,
    (Phase.COMPUTED, Event.ADOPTED): Phase.PERSISTED,
    (Phase.SIGNED, Event.ADOPTED): Phase.PERSISTED,
    (Phase.REFUSED, Event.ADOPTED): Phase.PERSISTED,
    (Phase.EXPIRED, Event.ADOPTED): Phase.PERSISTED,
    (Phase.WAITING, Event.DEADLINE): Phase.EXPIRED,
    (Phase.COMPUTED, Event.DEADLINE): Phase.EXPIRED,
    (Phase.SIGNED, Event.DEADLINE): Phase.EXPIRED,
    (Phase.AGGREGATED, Event.AGGREGATE_INVALID): Phase.EXPIRED,
    (Phase.REFUSED, Event.DEADLINE): Phase.REFUSED,
}

TERMINAL = frozenset({Phase.PERSISTED, Phase.DONE})
MAX_DIGESTS_PER_ROUND = 8  # distinct digests tracked per epoch; more are dropped (and alerted)


def is_allowed(phase: Phase, event: Event) -> bool:
    return (phase, event) in TRANSITIONS


@dataclass
class Round:
    """Bookkeeping of one epoch at this node."""

    epoch: int
    phase: Phase = Phase.WAITING
    computed: ComputedState | None = None
    digest: bytes | None = None  # the digest this node computed (and signed)
    keyset_id: int = 0  # the key set that signs this epoch (from the computed inputs)
    # (key set id, 8 bytes BE) + digest -> share index -> partial; see `engine.bucket`
    partials: dict[bytes, dict[int, bytes]] = field(default_factory=dict)
    first_envelope: dict[tuple[int, int], tuple[bytes, bytes]] = field(default_factory=dict)  # (key set, signer) -> (partial, env)
    started_at: float | None = None  # monotonic time the round started (T_e)
    pinned_at: float | None = None  # monotonic time the inputs were pinned
    signed_at: float | None = None  # monotonic time the signed state was persisted
    history: list[tuple[Phase, Event, Phase]] = field(default_factory=list)
    diverged: bool = False
    adopted_digest: bytes | None = None  # digest of a state adopted from gossip or catch-up
    skip_reason: str = ""  # why this node's computation of the epoch was skipped ("" if it was not)

    def process_event(self, event: Event) -> Phase:
        """Apply one event through the transition table; raises TransitionError if not allowed."""
        target = TRANSITIONS.get((self.phase, event))
        if target is None:
            raise TransitionError(f"epoch {self.epoch}: event {event.value} not allowed in phase {self.phase.value}")
        self.history.append((self.phase, event, target))
        self.phase = target
        return target

    def add_partial(self, digest: bytes, share_index: int, partial: bytes) -> bool:
        """Record a verified partial; False if the round already tracks too many digests."""
        if digest not in self.partials and len(self.partials) >= MAX_DIGESTS_PER_ROUND:
            return False
        self.partials.setdefault(digest, {})[share_index] = partial
        return True

    @property
    def is_finished(self) -> bool:
        return self.phase in TERMINAL
