"""Signed gossip envelopes: round trip, domain separation, and every rejection path."""

from __future__ import annotations

import pytest

from node.p2p.envelope import (
    MAX_ENVELOPE_BYTES,
    get_operator_address,
    open_envelope,
    open_envelope_in,
    seal_envelope,
)
from node.p2p.errors import EnvelopeError, NotMemberError, UnknownKeysetError
from node.pb.clearing.gossip.v1 import gossip_pb2

KEYS = [bytes([i + 1]) * 32 for i in range(3)]
ADDRESSES = tuple(get_operator_address(k) for k in KEYS)
PARTIAL = gossip_pb2.MESSAGE_KIND_PARTIAL_SIGNATURE


def make_payload(epoch: int = 5) -> bytes:
    return gossip_pb2.PartialSignature(epoch=epoch, digest=b"d" * 32, partial=b"p" * 48, signer_index=1).SerializeToString()


def test_round_trip_keeps_payload_bytes() -> None:
    payload = make_payload()
    data = seal_envelope(PARTIAL, payload, 1, KEYS[1], 7, 1)
    opened = open_envelope(data, ADDRESSES, 7, 1)
    assert (opened.kind, opened.signer_index, opened.payload, opened.raw) == (PARTIAL, 1, payload, data)
    assert opened.message.epoch == 5


def test_invalid_tampered_payload() -> None:
    env = gossip_pb2.SignedEnvelope.FromString(seal_envelope(PARTIAL, make_payload(), 1, KEYS[1], 7, 1))
    env.payload = make_payload(epoch=6)
    with pytest.raises(NotMemberError, match="signature"):
        open_envelope(env.SerializeToString(), ADDRESSES, 7, 1)


def test_invalid_kind_swap_breaks_signature() -> None:
    env = gossip_pb2.SignedEnvelope.FromString(seal_envelope(PARTIAL, make_payload(), 1, KEYS[1], 7, 1))
    env.kind = gossip_pb2.MESSAGE_KIND_SIGNED_STATE
    with pytest.raises(EnvelopeError):
        open_envelope(env.SerializeToString(), ADDRESSES, 7, 1)


def test_invalid_signer_claims_other_index() -> None:
    data = seal_envelope(PARTIAL, make_payload(), 2, KEYS[1], 7, 1)
    with pytest.raises(NotMemberError, match="validator 2"):
        open_envelope(data, ADDRESSES, 7, 1)


def test_invalid_non_member_index() -> None:
    data = seal_envelope(PARTIAL, make_payload(), 3, bytes([9]) * 32, 7, 1)
    with pytest.raises(NotMemberError, match="signer_index"):
        open_envelope(data, ADDRESSES, 7, 1)


@pytest.mark.parametrize(("network_id", "keyset_id", "field"), [(8, 1, "network_id"), (7, 2, "keyset_id")])
def test_invalid_other_network_or_keyset(network_id: int, keyset_id: int, field: str) -> None:
    data = seal_envelope(PARTIAL, make_payload(), 1, KEYS[1], network_id, keyset_id)
    with pytest.raises(NotMemberError, match=f"^{field}: "):
        open_envelope(data, ADDRESSES, 7, 1)


def test_invalid_unknown_keyset_is_its_own_error() -> None:
    """A key set the receiver does not know (yet) is not the sender's fault: no penalty reason."""
    data = seal_envelope(PARTIAL, make_payload(), 1, KEYS[1], 7, 2)
    with pytest.raises(UnknownKeysetError):
        open_envelope(data, ADDRESSES, 7, 1)


def test_open_envelope_in_checks_the_named_keyset() -> None:
    sets = {1: ADDRESSES, 2: ADDRESSES[1:] + ADDRESSES[:1]}  # operator 1 is index 0 of key set 2
    opened = open_envelope_in(seal_envelope(PARTIAL, make_payload(), 0, KEYS[1], 7, 2), sets.get, 7)
    assert (opened.keyset_id, opened.signer_index) == (2, 0)
    with pytest.raises(NotMemberError, match="signature"):  # index 0 of key set 1 is another operator
        open_envelope_in(seal_envelope(PARTIAL, make_payload(), 0, KEYS[1], 7, 1), sets.get, 7)


def test_invalid_version_garbage_and_size() -> None:
    env = gossip_pb2.SignedEnvelope.FromString(seal_envelope(PARTIAL, make_payload(), 1, KEYS[1], 7, 1))
    env.version = 2
    with pytest.raises(EnvelopeError, match="version"):
        open_envelope(env.SerializeToString(), ADDRESSES, 7, 1)
    with pytest.raises(EnvelopeError, match="envelope"):
        open_envelope(b"\xff\x00garbage", ADDRESSES, 7, 1)
    with pytest.raises(EnvelopeError, match="exceeds"):
        open_envelope(b"\x00" * (MAX_ENVELOPE_BYTES + 1), ADDRESSES, 7, 1)
    with pytest.raises(EnvelopeError, match="kind"):
        seal_envelope(99, b"", 1, KEYS[1], 7, 1)


def test_invalid_short_signature() -> None:
    env = gossip_pb2.SignedEnvelope.FromString(seal_envelope(PARTIAL, make_payload(), 1, KEYS[1], 7, 1))
    env.signature = env.signature[:64]
    with pytest.raises(EnvelopeError, match="signature"):
        open_envelope(env.SerializeToString(), ADDRESSES, 7, 1)
