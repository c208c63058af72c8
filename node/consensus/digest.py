"""State digest and the conversions between `SignedState` records and their gossip protobufs.

The digest is exactly what `MarginStateRegistry.computeStateDigest` computes on chain:
keccak256(abi.encodePacked(DST_STATE (bytes32), networkId uint64, keysetId uint32, epoch uint64,
inputsDigest, paramsHash, root (bytes32 each), leafCount uint64)). The inputs digest commits to
(chain id uint64, block number uint64, block hash bytes32) of every pin, sorted by chain id, under
its own domain tag. Pure functions; nothing persisted.
"""

from __future__ import annotations

from collections.abc import Sequence

from eth_hash.auto import keccak

from node.consensus.errors import InvalidStateError
from node.pb.clearing.gossip.v1 import gossip_pb2
from node.records import ChainPin, SignedState

DST_STATE = b"CLEARING-V1-STATE".ljust(32, b"\x00")
DST_INPUTS = b"CLEARING-V1-INPUTS".ljust(32, b"\x00")
MAX_PINS = 64
MAX_SIGNERS = 1024


def compute_inputs_digest(pins: Sequence[ChainPin]) -> bytes:
    """keccak256(DST_INPUTS || (chain_id u64, number u64, hash bytes32)* sorted by chain id)."""
    body = b"".join(p.chain_id.to_bytes(8, "big") + p.number.to_bytes(8, "big") + p.block_hash
                    for p in sorted(pins, key=lambda p: p.chain_id))
    return keccak(DST_INPUTS + body)


def compute_state_digest(network_id: int, keyset_id: int, epoch: int, inputs_digest: bytes,
                         params_hash: bytes, root: bytes, leaf_count: int) -> bytes:
    """The 32-byte message the validators threshold-sign for one epoch (matches the registry)."""
    return keccak(DST_STATE + network_id.to_bytes(8, "big") + keyset_id.to_bytes(4, "big")
                  + epoch.to_bytes(8, "big") + inputs_digest + params_hash + root
                  + leaf_count.to_bytes(8, "big"))


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
