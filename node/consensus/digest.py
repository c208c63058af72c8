"""State digest and the conversions between `SignedState` records and their gossip protobufs.

Both digests are `bridges.statecodec`'s (the one encoding shared with node.state and the contracts):
the state digest is exactly what `MarginStateRegistry.computeStateDigest` computes on chain, the
inputs digest commits to (chain id, block number, block hash) of every pin. Pure functions; nothing
persisted.
"""

from __future__ import annotations

from collections.abc import Sequence

from bridges import statecodec
from node.consensus.errors import InvalidStateError
from node.pb.clearing.gossip.v1 import gossip_pb2
from node.records import ChainPin, SignedState

MAX_PINS = 64
MAX_SIGNERS = 1024


def compute_inputs_digest(pins: Sequence[ChainPin]) -> bytes:
    """`bridges.statecodec.compute_inputs_digest` over the pins (count-prefixed, sorted by chain id)."""
    return statecodec.compute_inputs_digest([(p.chain_id, p.number, p.block_hash) for p in pins])


def compute_state_digest(network_id: int, keyset_id: int, epoch: int, inputs_digest: bytes,
                         params_hash: bytes, root: bytes, leaf_count: int) -> bytes:
    """The 32-byte message the validators threshold-sign (`bridges.statecodec`, matches the registry)."""
    return statecodec.compute_state_digest(network_id, keyset_id, epoch, inputs_digest, params_hash, root,
                                           leaf_count)


def validate_state_fields(state: SignedState) -> None:
    """Raise InvalidStateError unless sizes hold and the digests match the fields."""
    for name in ("inputs_digest", "params_hash", "root", "digest"):
        if len(getattr(state, name)) != 32:
            raise InvalidStateError(f"{name}: expected 32 bytes, got {len(getattr(state, name))}")
    if len(state.signature) != 48:
        raise InvalidStateError(f"signature: expected 48 bytes, got {len(state.signature)}")
    if not state.pins or len(state.pins) > MAX_PINS:
        raise InvalidStateError(f"pins: expected 1..{MAX_PINS}, got {len(state.pins)}")
    if any(len(p.block_hash) != 32 for p in state.pins):
        raise InvalidStateError("pins: every block_hash must be 32 bytes")
    if compute_inputs_digest(state.pins) != state.inputs_digest:
        raise InvalidStateError(f"inputs_digest: does not match the pins of epoch {state.epoch}")
    digest = compute_state_digest(state.network_id, state.keyset_id, state.epoch, state.inputs_digest,
                                  state.params_hash, state.root, state.leaf_count)
    if digest != state.digest:
        raise InvalidStateError(f"digest: does not match the fields of epoch {state.epoch}")


def pins_to_proto(pins: Sequence[ChainPin]) -> list[gossip_pb2.ChainHeight]:
    return [gossip_pb2.ChainHeight(chain_id=p.chain_id, number=p.number, block_hash=p.block_hash)
            for p in pins]


def state_to_proto(state: SignedState) -> gossip_pb2.SignedStateMsg:
    return gossip_pb2.SignedStateMsg(
        network_id=state.network_id, keyset_id=state.keyset_id, epoch=state.epoch,
        pins=pins_to_proto(state.pins), inputs_digest=state.inputs_digest,
        params_hash=state.params_hash, root=state.root, leaf_count=state.leaf_count,
        digest=state.digest, signature=state.signature, signers=list(state.signers))


def state_from_proto(msg: gossip_pb2.SignedStateMsg) -> SignedState:
    """Parse at the edge: a SignedState whose fields are validated (not its signature)."""
    if len(msg.signers) > MAX_SIGNERS:
        raise InvalidStateError(f"signers: {len(msg.signers)} exceeds {MAX_SIGNERS}")
    state = SignedState(
        network_id=msg.network_id, keyset_id=msg.keyset_id, epoch=msg.epoch,
        pins=tuple(ChainPin(p.chain_id, p.number, bytes(p.block_hash)) for p in msg.pins),
        inputs_digest=bytes(msg.inputs_digest), params_hash=bytes(msg.params_hash), root=bytes(msg.root),
        leaf_count=msg.leaf_count, digest=bytes(msg.digest), signature=bytes(msg.signature),
        signers=tuple(msg.signers))
    validate_state_fields(state)
    return state
