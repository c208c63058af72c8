"""The proposal lifecycle as an explicit state machine with ONE transition table.

    PENDING --payload refused-----------> INVALID   (parameter set fails to decode/validate, bad change)
    PENDING --voting closed, cast < q---> EXPIRED   (q = ceil(2n/3), n = set size at creation)
    PENDING --voting closed, yes < q----> REJECTED
    PENDING --voting closed, yes >= q---> APPROVED
    APPROVED --activation refused-------> INVALID   (activation epoch not in the future, or not after
                                                     the latest scheduled version; for a validator-set
                                                     change: not beyond its execution epoch + margin)
    APPROVED --execution missed---------> EXPIRED   (validator-set change: a later-approved change was
                                                     executed first, so this one can never execute)

INVALID, EXPIRED and REJECTED are terminal; APPROVED is terminal unless its activation is refused or
(validator-set change not executed yet) its execution is missed.
Every status carries an operator-readable reason. Nothing is persisted.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from governance.errors import IllegalTransition


class ProposalStatus(enum.Enum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    INVALID = "invalid"


class LifecycleEvent(enum.Enum):
    PAYLOAD_REFUSED = "payload_refused"
    QUORUM_MISSED = "quorum_missed"
    APPROVAL_MISSED = "approval_missed"
    APPROVAL_REACHED = "approval_reached"
    ACTIVATION_REFUSED = "activation_refused"
    EXECUTION_MISSED = "execution_missed"


TRANSITIONS: dict[tuple[ProposalStatus, LifecycleEvent], ProposalStatus] = {
    (ProposalStatus.PENDING, LifecycleEvent.PAYLOAD_REFUSED): ProposalStatus.INVALID,
    (ProposalStatus.PENDING, LifecycleEvent.QUORUM_MISSED): ProposalStatus.EXPIRED,
    (ProposalStatus.PENDING, LifecycleEvent.APPROVAL_MISSED): ProposalStatus.REJECTED,
    (ProposalStatus.PENDING, LifecycleEvent.APPROVAL_REACHED): ProposalStatus.APPROVED,
    (ProposalStatus.APPROVED, LifecycleEvent.ACTIVATION_REFUSED): ProposalStatus.INVALID,
    (ProposalStatus.APPROVED, LifecycleEvent.EXECUTION_MISSED): ProposalStatus.EXPIRED,
}


@dataclass(frozen=True)
class Lifecycle:
    """A proposal's status and the reason for it (empty while pending)."""

    status: ProposalStatus = ProposalStatus.PENDING
    reason: str = "voting open"


def process_event(current: Lifecycle, event: LifecycleEvent, reason: str) -> Lifecycle:
    """Apply one event through the transition table; raises IllegalTransition if not allowed."""
    nxt = TRANSITIONS.get((current.status, event))
    if nxt is None:
        raise IllegalTransition(f"{event.value} not allowed in status {current.status.value}")
    return Lifecycle(nxt, reason)
