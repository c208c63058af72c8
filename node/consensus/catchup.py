"""Catch-up of missed signed states over the libp2p request/response stream.

A node that was down asks one peer (`StateRequest{from_epoch, limit}` in a SignedEnvelope, so only
set members are served) for the signed states from its cursor on; the peer answers with a plain
`StateResponse` (the states authenticate themselves). Every returned state is checked before it is
stored: its digest must match its fields, its network id must be ours (any key set from the
configured one on: resharing keeps the group key, so a node that joined later can still fetch the
states of earlier key sets), and its group signature must verify under the group key. Bounded: at most `MAX_STATES_PER_RESPONSE` states per
answer, one request in flight. Persists nothing itself (the engine stores accepted states).
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from node.consensus.digest import state_from_proto, state_to_proto
from node.consensus.errors import InvalidStateError
from node.consensus.validation import GossipValidator
from node.crypto import threshold
from node.p2p.envelope import seal_envelope
from node.p2p.errors import CatchUpError, EnvelopeError
from node.pb.clearing.gossip.v1 import gossip_pb2
from node.ports import Store
from node.records import SignedState

MAX_STATES_PER_RESPONSE = 64


def build_state_request(from_epoch: int, limit: int, index: int, operator_key: bytes,
                        network_id: int, keyset_id: int) -> bytes:
    payload = gossip_pb2.StateRequest(from_epoch=from_epoch, limit=min(limit, MAX_STATES_PER_RESPONSE))
    return seal_envelope(gossip_pb2.MESSAGE_KIND_STATE_REQUEST, payload.SerializeToString(), index,
                         operator_key, network_id, keyset_id)


def compute_state_response(request: bytes, validator: GossipValidator, store: Store) -> bytes:
    """Answer a member's StateRequest from the store; raises EnvelopeError on a bad request."""
    opened = validator.open(request)
    if opened.kind != gossip_pb2.MESSAGE_KIND_STATE_REQUEST:
        raise EnvelopeError(f"kind: expected a state request, got kind {opened.kind}")
    req = opened.message
    limit = max(0, min(int(req.limit), MAX_STATES_PER_RESPONSE))  # type: ignore[attr-defined]
    states = store.list_signed_states(int(req.from_epoch), limit)  # type: ignore[attr-defined]
    return gossip_pb2.StateResponse(states=[state_to_proto(s) for s in states]).SerializeToString()


def parse_state_response(data: bytes, validator: GossipValidator) -> list[SignedState]:
    """Decode and verify every state of a response; raises CatchUpError naming the first bad one."""
    response = gossip_pb2.StateResponse()
    try:
        response.ParseFromString(data)
    except DecodeError as exc:
        raise CatchUpError(f"response: not a StateResponse ({exc})") from exc
    if len(response.states) > MAX_STATES_PER_RESPONSE:
        raise CatchUpError(f"response.states: {len(response.states)} exceeds {MAX_STATES_PER_RESPONSE}")
    vset = validator.vset
    states = []
    for i, msg in enumerate(response.states):
        try:
            state = state_from_proto(msg)
        except InvalidStateError as exc:
            raise CatchUpError(f"response.states[{i}]: {exc}") from exc
        if state.network_id != vset.network_id or state.keyset_id < vset.keyset_id:
            raise CatchUpError(f"response.states[{i}]: network/keyset {state.network_id}/{state.keyset_id}")
        if not threshold.group_verify(vset.group_key, state.digest, state.signature):
            raise CatchUpError(f"response.states[{i}].signature: does not verify under the group key")
        states.append(state)
    return states
