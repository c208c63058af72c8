"""Signed gossip envelopes: operator-key (secp256k1) signatures over payload bytes, domain-separated.

The signed message is keccak256(DOMAIN || kind || network_id || keyset_id || payload) with the three
integers as 8-byte big-endian values; the payload bytes are hashed exactly as carried, so a receiver
never re-serialises before checking. The signature is 65 bytes (r || s || v) and is checked by
recovering the public key and comparing its Ethereum address with the validator set's operator
address for `signer_index`. Pure functions; nothing persisted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import coincurve
from eth_hash.auto import keccak
from google.protobuf.message import DecodeError

from node.p2p.errors import EnvelopeError, NotMemberError, UnknownKeysetError
from node.pb.clearing.gossip.v1 import gossip_pb2

ENVELOPE_VERSION = 1
DOMAIN = b"CLEARING-V1-GOSSIP"
MAX_ENVELOPE_BYTES = 256 * 1024  # the largest gossiped message (a StateResponse travels on a stream)
SIGNATURE_SIZE = 65

KIND_PAYLOAD: dict[int, type] = {
    gossip_pb2.MESSAGE_KIND_HEARTBEAT: gossip_pb2.Heartbeat,
    gossip_pb2.MESSAGE_KIND_PARTIAL_SIGNATURE: gossip_pb2.PartialSignature,
    gossip_pb2.MESSAGE_KIND_SIGNED_STATE: gossip_pb2.SignedStateMsg,
    gossip_pb2.MESSAGE_KIND_DKG: gossip_pb2.DkgMessage,
    gossip_pb2.MESSAGE_KIND_EQUIVOCATION_EVIDENCE: gossip_pb2.EquivocationEvidence,
    gossip_pb2.MESSAGE_KIND_STATE_REQUEST: gossip_pb2.StateRequest,
    gossip_pb2.MESSAGE_KIND_STATE_RESPONSE: gossip_pb2.StateResponse,
}


@dataclass(frozen=True)
class OpenedEnvelope:
    """A verified envelope: who signed it, what kind, the raw payload and its decoded message."""

    kind: int
    signer_index: int
    payload: bytes
    message: object  # the decoded payload protobuf of `kind`
    raw: bytes  # the serialized envelope exactly as received
    keyset_id: int = 0  # the key set the signer is a member of (signer_index is its position there)


def compute_signing_hash(kind: int, network_id: int, keyset_id: int, payload: bytes) -> bytes:
    """The 32-byte hash the operator key signs for one envelope."""
    return keccak(DOMAIN + kind.to_bytes(8, "big") + network_id.to_bytes(8, "big")
                  + keyset_id.to_bytes(8, "big") + payload)


def compute_address(public_key: coincurve.PublicKey) -> bytes:
    """Ethereum address (20 bytes) of a secp256k1 public key."""
    return keccak(public_key.format(compressed=False)[1:])[-20:]


def get_operator_address(operator_key: bytes) -> bytes:
    """Ethereum address of a 32-byte operator private key."""
    return compute_address(coincurve.PrivateKey(operator_key).public_key)


def seal_envelope(kind: int, payload: bytes, signer_index: int, operator_key: bytes,
                  network_id: int, keyset_id: int) -> bytes:
    """Sign `payload` (already serialized) and return the serialized SignedEnvelope."""
    if kind not in KIND_PAYLOAD:
        raise EnvelopeError(f"kind: unknown message kind {kind}")
    digest = compute_signing_hash(kind, network_id, keyset_id, payload)
    signature = coincurve.PrivateKey(operator_key).sign_recoverable(digest, hasher=None)
    env = gossip_pb2.SignedEnvelope(version=ENVELOPE_VERSION, kind=kind, payload=payload,  # type: ignore[arg-type]
                                    signer_index=signer_index, signature=signature,
                                    network_id=network_id, keyset_id=keyset_id)
    data = env.SerializeToString()
    if len(data) > MAX_ENVELOPE_BYTES:
        raise EnvelopeError(f"payload: envelope of {len(data)} bytes exceeds {MAX_ENVELOPE_BYTES}")
    return data


def recover_signer_address(env: gossip_pb2.SignedEnvelope) -> bytes:
    """Address that signed the envelope; raises EnvelopeError if the signature is not recoverable."""
    if len(env.signature) != SIGNATURE_SIZE:
        raise EnvelopeError(f"signature: expected {SIGNATURE_SIZE} bytes, got {len(env.signature)}")
    digest = compute_signing_hash(env.kind, env.network_id, env.keyset_id, env.payload)
    try:
        public_key = coincurve.PublicKey.from_signature_and_message(env.signature, digest, hasher=None)
    except Exception as exc:  # coincurve raises ValueError/Exception on bad signatures
        raise EnvelopeError(f"signature: not a valid recoverable signature ({exc})") from exc
    return compute_address(public_key)


def open_envelope(data: bytes, operator_addresses: tuple[bytes, ...], network_id: int,
                  keyset_id: int) -> OpenedEnvelope:
    """Parse and verify a serialized envelope against one validator set; raises EnvelopeError."""
    def get_operators(k: int) -> tuple[bytes, ...] | None:
        return operator_addresses if k == keyset_id else None

    return open_envelope_in(data, get_operators, network_id)


def open_envelope_in(data: bytes, get_operators: Callable[[int], tuple[bytes, ...] | None],
                     network_id: int) -> OpenedEnvelope:
    """Parse and verify an envelope against the members of the key set it names.

    `get_operators(keyset_id)` gives that key set's operator addresses, or None for a key set this
    node does not know (UnknownKeysetError: not the sender's fault, the receiver may lag behind).
    """
    if len(data) > MAX_ENVELOPE_BYTES:
        raise EnvelopeError(f"envelope: {len(data)} bytes exceeds {MAX_ENVELOPE_BYTES}")
    env = gossip_pb2.SignedEnvelope()
    try:
        env.ParseFromString(data)
    except DecodeError as exc:
        raise EnvelopeError(f"envelope: not a SignedEnvelope ({exc})") from exc
    if env.version != ENVELOPE_VERSION:
        raise EnvelopeError(f"version: unsupported envelope version {env.version}")
    payload_type = KIND_PAYLOAD.get(env.kind)
    if payload_type is None:
        raise EnvelopeError(f"kind: unknown message kind {env.kind}")
    if env.network_id != network_id:
        raise NotMemberError(f"network_id: envelope for network {env.network_id}, expected {network_id}")
    operator_addresses = get_operators(env.keyset_id)
    if operator_addresses is None:
        raise UnknownKeysetError(f"keyset_id: {env.keyset_id} is not a key set this node knows")
    if env.signer_index >= len(operator_addresses):
        raise NotMemberError(f"signer_index: {env.signer_index} is not in a set of {len(operator_addresses)}")
    if recover_signer_address(env) != operator_addresses[env.signer_index]:
        raise NotMemberError(f"signature: not signed by the operator key of validator {env.signer_index}")
    message = payload_type()
    try:
        message.ParseFromString(env.payload)
    except DecodeError as exc:
        raise EnvelopeError(f"payload: not a {payload_type.__name__} ({exc})") from exc
    return OpenedEnvelope(kind=env.kind, signer_index=env.signer_index, payload=env.payload,
                          message=message, raw=data, keyset_id=env.keyset_id)
