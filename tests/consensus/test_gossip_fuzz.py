"""Fuzzed gossip bytes (hypothesis): the topic validator never raises, never accepts garbage and never
changes its peer bindings for a rejected message — at the envelope decoder, and behind a valid
member signature at every payload decoder."""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.consensus.validation import GossipValidator
from node.p2p.envelope import seal_envelope
from node.pb.clearing.gossip.v1 import gossip_pb2
from tests.consensus.cluster import KEYSET_ID, NETWORK_ID, operator_key
from tests.consensus.test_validation import KEYS, ORIGIN, WINDOW, heartbeat, now_epoch

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PAYLOAD_KINDS = [gossip_pb2.MESSAGE_KIND_PARTIAL_SIGNATURE, gossip_pb2.MESSAGE_KIND_SIGNED_STATE,
                 gossip_pb2.MESSAGE_KIND_EQUIVOCATION_EVIDENCE, gossip_pb2.MESSAGE_KIND_DKG,
                 gossip_pb2.MESSAGE_KIND_HEARTBEAT]


def bound_validator() -> GossipValidator:
    """A validator that accepts a real heartbeat and holds validator 1's peer binding (as the engine
    records it on delivery)."""
    v = GossipValidator(KEYS.vset, WINDOW, time.time)
    assert v.validate_gossip("f", ORIGIN[1], heartbeat(1, ORIGIN[1], now_epoch())) is None
    v.bind(KEYS.vset.operator_addresses[1], ORIGIN[1])
    return v


@FUZZ
@given(data=st.binary(max_size=4096))
def test_random_bytes_are_rejected_without_raising(data: bytes) -> None:
    v = bound_validator()
    before = dict(v.bindings)
    assert v.validate_gossip("f", ORIGIN[2], data) is not None
    assert v.bindings == before and v.pop_accepted(data) is None


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=1, max_value=255)),
                      min_size=1, max_size=8))
def test_mutated_valid_envelope_never_raises_and_never_changes_the_binding(flips: list[tuple[int, int]]) -> None:
    v = bound_validator()
    good = bytearray(heartbeat(1, ORIGIN[1], now_epoch()))
    for pos, xor in flips:
        good[pos % len(good)] ^= xor
    reason = v.validate_gossip("f", ORIGIN[3], bytes(good))
    if reason is None:  # a mutation may only pass if it decodes to a heartbeat validly signed by a member
        opened = v.pop_accepted(bytes(good))
        assert opened is not None and opened.kind == gossip_pb2.MESSAGE_KIND_HEARTBEAT
    assert v.bindings == {KEYS.vset.operator_addresses[1]: ORIGIN[1]}


@FUZZ
@given(kind=st.sampled_from(PAYLOAD_KINDS), payload=st.binary(max_size=2048), signer=st.integers(0, 3))
def test_member_signed_random_payloads_are_rejected_without_raising(kind: int, payload: bytes, signer: int) -> None:
    v = bound_validator()
    data = seal_envelope(kind, payload, signer, operator_key(signer), NETWORK_ID, KEYSET_ID)
    reason = v.validate_gossip("f", ORIGIN[signer], data)
    if kind in (gossip_pb2.MESSAGE_KIND_PARTIAL_SIGNATURE, gossip_pb2.MESSAGE_KIND_SIGNED_STATE,
                gossip_pb2.MESSAGE_KIND_EQUIVOCATION_EVIDENCE):
        assert reason is not None  # random bytes are never a valid BLS partial, group signature or evidence
    assert v.bindings == {KEYS.vset.operator_addresses[1]: ORIGIN[1]}
