"""The epoch round's transition table."""

from __future__ import annotations

import pytest

from node.consensus.errors import TransitionError
from node.consensus.machine import MAX_DIGESTS_PER_ROUND, TRANSITIONS, Event, Phase, Round


def test_happy_path_reaches_done() -> None:
    rnd = Round(epoch=5)
    for event in (Event.INPUTS_UNAVAILABLE, Event.PINNED, Event.SIGNED, Event.THRESHOLD, Event.PERSISTED,
                  Event.PUBLISHED):
        rnd.process_event(event)
    assert rnd.phase == Phase.DONE and rnd.is_finished
    assert [h[1] for h in rnd.history][-1] == Event.PUBLISHED


def test_adoption_finishes_a_waiting_or_refused_round() -> None:
    for path in ([], [Event.PINNED], [Event.PINNED, Event.SIGN_REFUSED], [Event.DEADLINE]):
        rnd = Round(epoch=1)
        for event in path:
            rnd.process_event(event)
        assert rnd.process_event(Event.ADOPTED) == Phase.PERSISTED


@pytest.mark.parametrize(("path", "event"), [
    ([], Event.SIGNED),  # never sign before computing
    ([Event.PINNED, Event.SIGN_REFUSED], Event.SIGNED),  # a refused round never signs
    ([Event.PINNED, Event.SIGNED, Event.THRESHOLD], Event.ADOPTED),  # own aggregate in flight
    ([Event.PINNED, Event.SIGNED, Event.THRESHOLD], Event.DEADLINE),
    ([Event.PINNED, Event.SIGNED, Event.THRESHOLD, Event.PERSISTED], Event.ADOPTED),
])
def test_invalid_transition_refused(path: list[Event], event: Event) -> None:
    rnd = Round(epoch=2)
    for step in path:
        rnd.process_event(step)
    before = rnd.phase
    with pytest.raises(TransitionError, match=f"event {event.value} not allowed"):
        rnd.process_event(event)
    assert rnd.phase == before


def test_every_phase_but_done_has_an_exit_and_signing_needs_a_computed_digest() -> None:
    sources = {phase for phase, _ in TRANSITIONS}
    assert set(Phase) - sources == {Phase.DONE}
    assert [p for (p, e) in TRANSITIONS if e == Event.SIGNED] == [Phase.COMPUTED]


def test_digests_per_round_are_bounded() -> None:
    rnd = Round(epoch=3)
    for i in range(MAX_DIGESTS_PER_ROUND):
        assert rnd.add_partial(bytes([i]) * 32, 1, b"p")
    assert not rnd.add_partial(b"\xff" * 32, 1, b"p")
    assert rnd.add_partial(b"\x00" * 32, 2, b"q")
