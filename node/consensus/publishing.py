"""The `StatePublisher` port and the round-robin designated-publisher schedule with timed fallback.

Epoch e's designated publisher is validator `e mod n`; validator i publishes at
`rank(i, e) * fallback_s` after the state is signed, where rank = (i - e) mod n, and only if the
state is not yet published by then (the port's `is_published`). So a dead publisher is replaced
by the next one after `fallback_s`. `ChainPublishers` adapts `bridges.publisher.Publisher` (one per
chain). Nothing persisted here (the chains are the record).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from node.records import SignedState

log = logging.getLogger(__name__)


class StatePublisher(Protocol):
    def is_published(self, state: SignedState) -> bool: ...
    def publish(self, state: SignedState) -> None: ...


def compute_publish_rank(index: int, epoch: int, n: int) -> int:
    """0 for the designated publisher of `epoch`, 1 for the first fallback, ..."""
    return (index - epoch) % n


def compute_publish_delay(index: int, epoch: int, n: int, fallback_s: float) -> float:
    return compute_publish_rank(index, epoch, n) * fallback_s


class NullPublisher:
    """Publishes nowhere; records what it was asked to publish (tests, nodes without a publisher key)."""

    def __init__(self) -> None:
        self.published: list[int] = []

    def is_published(self, state: SignedState) -> bool:
        return state.epoch in self.published

    def publish(self, state: SignedState) -> None:
        self.published.append(state.epoch)


class ChainPublishers:
    """Publishes a signed state to every chain's registry through `bridges.publisher.Publisher`s."""

    def __init__(self, publishers: Sequence[object]) -> None:
        self.publishers = list(publishers)

    @staticmethod
    def _submission(state: SignedState):
        from bridges.publisher import StateSubmission
        from node.crypto.bls import g1_to_eip2537

        return StateSubmission(epoch=state.epoch, keyset_id=state.keyset_id,
                               inputs_digest=state.inputs_digest, params_hash=state.params_hash,
                               root=state.root, leaf_count=state.leaf_count,
                               signature=g1_to_eip2537(state.signature))

    def is_published(self, state: SignedState) -> bool:
        sub = self._submission(state)
        return all(p.is_published(sub) for p in self.publishers)  # type: ignore[attr-defined]

    def publish(self, state: SignedState) -> None:
        sub = self._submission(state)
        for p in self.publishers:
            p.publish(sub)  # type: ignore[attr-defined]
