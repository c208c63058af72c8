"""GossipValidator: every reason a gossiped envelope is rejected, and what it accepts."""

from __future__ import annotations

import time

from eth_hash.auto import keccak

from node.consensus.digest import state_to_proto
from node.consensus.inputs import FakeInputSource
from node.consensus.validation import GossipValidator
from node.crypto import threshold
from node.p2p.envelope import seal_envelope
from node.pb.clearing.gossip.v1 import gossip_pb2
from node.records import SignedState
from tests.consensus.cluster import KEYSET_ID, NETWORK_ID, operator_key
from tests.consensus.helpers import make_keys, make_window

KEYS = make_keys(4)
WINDOW = make_window(1.0)
ORIGIN = [bytes([i]) * 38 for i in range(4)]


def validator() -> GossipValidator:
    return GossipValidator(KEYS.vset, WINDOW, time.time)


def now_epoch() -> int:
    return WINDOW.get_current_epoch(time.time())


def seal(kind: int, msg, signer: int, key_of: int | None = None) -> bytes:
    return seal_envelope(kind, msg.SerializeToString(), signer, operator_key(signer if key_of is None else key_of),
                         NETWORK_ID, KEYSET_ID)


def partial(signer: int, epoch: int, digest: bytes, share_of: int | None = None) -> bytes:
    share = KEYS.shares[(signer if share_of is None else share_of) + 1]
    msg = gossip_pb2.PartialSignature(epoch=epoch, digest=digest, partial=threshold.partial_sign(share, digest),
                                      signer_index=signer)
    return seal(gossip_pb2.MESSAGE_KIND_PARTIAL_SIGNATURE, msg, signer)


def heartbeat(signer: int, peer: bytes, epoch: int, time_ms: int | None = None) -> bytes:
    msg = gossip_pb2.Heartbeat(validator_index=signer, peer_id=peer, epoch=epoch,
                               time_ms=int(time.time() * 1000) if time_ms is None else time_ms)
    return seal(gossip_pb2.MESSAGE_KIND_HEARTBEAT, msg, signer)


def test_valid_partial_and_heartbeat_accepted() -> None:
    v = validator()
    assert v.validate_gossip("f", ORIGIN[1], heartbeat(1, ORIGIN[1], now_epoch())) is None
    data = partial(1, now_epoch(), keccak(b"state"))
    assert v.validate_gossip("f", ORIGIN[1], data) is None
    assert v.pop_accepted(data).signer_index == 1


def test_invalid_partial_reported_as_misbehaviour() -> None:
    v = validator()
    seen = []
    v.on_misbehaviour = lambda reason, opened: seen.append((reason, opened.signer_index))
    assert v.validate_gossip("f", ORIGIN[1], partial(1, now_epoch(), keccak(b"s"), share_of=2)) == "invalid_partial"
    assert seen == [("invalid_partial", 1)]


def test_invalid_partial_out_of_window() -> None:
    v = validator()
    assert v.validate_gossip("f", ORIGIN[1], partial(1, now_epoch() - 50, keccak(b"s"))) == "out_of_window"
    assert v.validate_gossip("f", ORIGIN[1], partial(1, now_epoch() + 5, keccak(b"s"))) == "out_of_window"


def test_invalid_non_member_and_garbage() -> None:
    v = validator()
    msg = gossip_pb2.PartialSignature(epoch=now_epoch(), digest=b"d" * 32, partial=b"p" * 48, signer_index=1)
    assert v.validate_gossip("f", ORIGIN[1], seal(gossip_pb2.MESSAGE_KIND_PARTIAL_SIGNATURE, msg, 1, key_of=3)) == "not_member"
    assert v.validate_gossip("f", ORIGIN[1], b"\x01garbage") == "malformed"


def test_invalid_peer_binding() -> None:
    v = validator()
    assert v.validate_gossip("f", ORIGIN[2], heartbeat(1, ORIGIN[1], now_epoch())) == "peer_binding"
    v.bind(KEYS.vset.operator_addresses[1], ORIGIN[1])
    assert v.validate_gossip("f", ORIGIN[2], partial(1, now_epoch(), keccak(b"s"))) == "peer_binding"
    assert v.validate_gossip("f", ORIGIN[1], heartbeat(1, ORIGIN[1], now_epoch(), time_ms=1)) == "out_of_window"


def make_state(epoch: int, signature_from: str = "group") -> SignedState:
    computed = FakeInputSource().compute_epoch(epoch, 0)
    from node.consensus.digest import compute_state_digest

    digest = compute_state_digest(NETWORK_ID, KEYSET_ID, epoch, computed.inputs_digest, computed.params_hash,
                                  computed.root, 0)
    partials = {i: threshold.partial_sign(KEYS.shares[i], digest) for i in (1, 2, 3)}
    signature = threshold.combine(partials, 3) if signature_from == "group" else partials[1]
    return SignedState(NETWORK_ID, KEYSET_ID, epoch, computed.pins, computed.inputs_digest, computed.params_hash,
                       computed.root, 0, digest, signature, (0, 1, 2))


def test_signed_state_checked_against_group_key_and_fields() -> None:
    v = validator()
    good = state_to_proto(make_state(now_epoch()))
    assert v.validate_signed_state(good) is None
    assert v.validate_signed_state(state_to_proto(make_state(now_epoch(), "partial"))) == "invalid_signature"
    tampered = state_to_proto(make_state(now_epoch()))
    tampered.leaf_count = 7
    assert v.validate_signed_state(tampered) == "malformed"


def test_evidence_requires_two_conflicting_partials_of_the_accused() -> None:
    v, e = validator(), now_epoch()
    first, second = partial(1, e, keccak(b"a")), partial(1, e, keccak(b"b"))
    good = gossip_pb2.EquivocationEvidence(epoch=e, signer_index=1, first=first, second=second)
    assert v.validate_evidence(good) is None
    same = gossip_pb2.EquivocationEvidence(epoch=e, signer_index=1, first=first, second=first)
    assert v.validate_evidence(same) == "malformed"
    other = gossip_pb2.EquivocationEvidence(epoch=e, signer_index=2, first=first, second=second)
    assert v.validate_evidence(other) == "malformed"
