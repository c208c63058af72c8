"""Session configuration, share encryption and message validation shared by the DKG and resharing.

A session is fixed by `SessionConfig` (dealers, recipients with their X25519 encryption keys, the
threshold of the key being made, the key-set epoch, a nonce and, for resharing, the previous key
set). Its id is a hash of all of that, so nodes with different views of the session reject each
other's messages. Shares travel sealed with ChaCha20-Poly1305 under a key derived (HKDF-SHA256) from
X25519 between the bundle's ephemeral key and the recipient's key; the associated data binds session
id, epoch, dealer and recipient index, so a ciphertext moved to another slot fails to open.

Parsing converts protobuf bundles into frozen, validated domain objects (`Deal`, `ResponseSet`,
`Reveal`) or raises `DkgMessageError` naming the field. Persists nothing.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from py_arkworks_bls12381 import G2Point

from node.crypto import bls, threshold
from node.crypto.errors import CryptoError, DkgError, ThresholdError
from node.pb.clearing.dkg.v1 import dkg_pb2

DST_SESSION = b"CLEARING-V1-DKG-SESSION"
DST_SHARE_KEY = b"CLEARING-V1-DKG-SHARE-KEY"
DST_SHARE_AD = b"CLEARING-V1-DKG-SHARE-AD"
SESSION_ID_SIZE = 32
X25519_KEY_SIZE = 32
NONCE_SIZE = 12
SCALAR_SIZE = 32
CIPHERTEXT_SIZE = SCALAR_SIZE + 16
MAX_NONCE_SIZE = 64
MAX_PACKET_BYTES = 1 << 20


class DkgMessageError(DkgError):
    """A DKG message was refused (wrong session, sender, phase or content); the machine is unchanged."""


@dataclass(frozen=True)
class Participant:
    """A share recipient: its index and its 32-byte X25519 encryption public key."""

    index: int
    encryption_public_key: bytes


@dataclass(frozen=True)
class PreviousKeySet:
    """The key set being reshared: its Feldman commitments (index 0 = group key) and threshold."""

    keyset_id: int
    commitments: tuple[bytes, ...]

    @property
    def threshold(self) -> int:
        return len(self.commitments)


@dataclass(frozen=True)
class SessionConfig:
    """Everything the participants of one session must agree on."""

    epoch: int
    threshold: int
    dealers: tuple[int, ...]
    recipients: tuple[Participant, ...]
    nonce: bytes = b""
    previous: PreviousKeySet | None = None
    session_id: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        validate_config(self)
        object.__setattr__(self, "session_id", compute_session_id(self))

    @property
    def recipient_indices(self) -> tuple[int, ...]:
        return tuple(p.index for p in self.recipients)

    def get_recipient(self, index: int) -> Participant:
        for participant in self.recipients:
            if participant.index == index:
                return participant
        raise DkgError(f"recipient_index: {index} is not a recipient of this session")


def validate_config(config: SessionConfig) -> None:
    """Raise DkgError naming the field when the session configuration is inconsistent."""
    if isinstance(config.epoch, bool) or not 0 < config.epoch < 1 << 63:
        raise DkgError(f"epoch: {config.epoch!r} must be a positive 63-bit integer")
    if len(config.nonce) > MAX_NONCE_SIZE:
        raise DkgError(f"nonce: {len(config.nonce)} bytes, at most {MAX_NONCE_SIZE}")
    recipients = config.recipient_indices
    for name, indices in (("dealers", config.dealers), ("recipients", recipients)):
        if len(set(indices)) != len(indices) or list(indices) != sorted(indices):
            raise DkgError(f"{name}: indices must be strictly increasing, got {list(indices)}")
        if not indices:
            raise DkgError(f"{name}: empty")
        try:
            for i in indices:
                threshold.validate_index(i, f"{name} index")
        except ThresholdError as exc:
            raise DkgError(str(exc)) from exc
    try:
        threshold.validate_parameters(len(recipients), config.threshold)
    except ThresholdError as exc:
        raise DkgError(str(exc)) from exc
    for p in config.recipients:
        if len(p.encryption_public_key) != X25519_KEY_SIZE:
            raise DkgError(f"recipients[{p.index}].encryption_public_key: expected {X25519_KEY_SIZE} bytes")
    previous = config.previous
    if previous is None:
        if config.dealers != recipients:
            raise DkgError("dealers: a fresh DKG needs dealers == recipients")
        return
    if config.epoch != previous.keyset_id + 1:
        raise DkgError(f"epoch: resharing key set {previous.keyset_id} must produce {previous.keyset_id + 1}")
    if len(config.dealers) < previous.threshold:
        raise DkgError(f"dealers: {len(config.dealers)} old holders, old threshold is {previous.threshold}")


def compute_session_id(config: SessionConfig) -> bytes:
    """SHA-256 over a canonical encoding of the whole configuration."""
    h = hashlib.sha256(DST_SESSION)
    h.update(config.epoch.to_bytes(8, "big") + config.threshold.to_bytes(4, "big"))
    h.update(len(config.nonce).to_bytes(2, "big") + config.nonce)
    h.update(len(config.dealers).to_bytes(4, "big"))
    for d in config.dealers:
        h.update(d.to_bytes(4, "big"))
    h.update(len(config.recipients).to_bytes(4, "big"))
    for p in config.recipients:
        h.update(p.index.to_bytes(4, "big") + p.encryption_public_key)
    if config.previous is not None:
        h.update(b"\x01" + config.previous.keyset_id.to_bytes(8, "big"))
        h.update(len(config.previous.commitments).to_bytes(4, "big") + b"".join(config.previous.commitments))
    else:
        h.update(b"\x00")
    return h.digest()


# --- share encryption ---


def compute_share_ad(session_id: bytes, epoch: int, dealer: int, recipient: int) -> bytes:
    """Associated data binding a sealed share to its session, epoch and (dealer, recipient) slot."""
    return (
        DST_SHARE_AD
        + session_id
        + epoch.to_bytes(8, "big")
        + dealer.to_bytes(4, "big")
        + recipient.to_bytes(4, "big")
    )


def _derive_key(shared: bytes, ad: bytes, ephemeral_pk: bytes, recipient_pk: bytes) -> bytes:
    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=DST_SHARE_KEY + ad + ephemeral_pk + recipient_pk
    )
    return hkdf.derive(shared)


def seal_share(
    ephemeral_sk: X25519PrivateKey, recipient_pk: bytes, ad: bytes, share: int
) -> tuple[bytes, bytes]:
    """(nonce, ciphertext) of the 32-byte share for the recipient's X25519 key."""
    ephemeral_pk = ephemeral_sk.public_key().public_bytes_raw()
    shared = ephemeral_sk.exchange(X25519PublicKey.from_public_bytes(recipient_pk))
    nonce = os.urandom(NONCE_SIZE)
    key = _derive_key(shared, ad, ephemeral_pk, recipient_pk)
    return nonce, ChaCha20Poly1305(key).encrypt(nonce, share.to_bytes(SCALAR_SIZE, "big"), ad)


def open_share(
    recipient_sk: X25519PrivateKey, ephemeral_pk: bytes, ad: bytes, nonce: bytes, ciphertext: bytes
) -> int:
    """The share sealed for this recipient; raises DkgError if it does not authenticate or decode."""
    recipient_pk = recipient_sk.public_key().public_bytes_raw()
    try:
        shared = recipient_sk.exchange(X25519PublicKey.from_public_bytes(ephemeral_pk))
        key = _derive_key(shared, ad, ephemeral_pk, recipient_pk)
        plain = ChaCha20Poly1305(key).decrypt(nonce, ciphertext, ad)
    except (InvalidTag, ValueError) as exc:
        raise DkgError(
            "ciphertext: share does not authenticate (tampered or not sealed for this recipient)"
        ) from exc
    return decode_scalar(plain, "share")


def encode_scalar(value: int) -> bytes:
    return value.to_bytes(SCALAR_SIZE, "big")


def decode_scalar(data: bytes, name: str) -> int:
    """A 32-byte big-endian scalar below the group order; raises DkgError naming `name`."""
    if len(data) != SCALAR_SIZE:
        raise DkgError(f"{name}: expected {SCALAR_SIZE} bytes")
    value = int.from_bytes(data, "big")
    if value >= bls.CURVE_ORDER:
        raise DkgError(f"{name}: not below the group order")
    return value


# --- parsed messages ---


@dataclass(frozen=True)
class SealedShare:
    nonce: bytes
    ciphertext: bytes


@dataclass(frozen=True, eq=False)
class Deal:
    """A validated deal bundle: decoded commitments and the sealed shares by recipient index."""

    dealer: int
    commitments: tuple[bytes, ...]
    points: tuple[G2Point, ...]
    ephemeral_public_key: bytes
    shares: Mapping[int, SealedShare]
    raw: bytes


@dataclass(frozen=True)
class ResponseSet:
    """A validated response bundle: the responder's verdict per dealer (True = complaint)."""

    responder: int
    complaints: frozenset[int]
    raw: bytes


@dataclass(frozen=True)
class Reveal:
    """A validated justification bundle: the shares a dealer revealed, by recipient index."""

    dealer: int
    shares: Mapping[int, int]
    raw: bytes


def _validate_header(config: SessionConfig, session_id: bytes, epoch: int, kind: str) -> None:
    if session_id != config.session_id:
        raise DkgMessageError(f"{kind}.session_id: {session_id.hex()[:16]} is not this session")
    if epoch != config.epoch:
        raise DkgMessageError(f"{kind}.epoch: {epoch} is not this session's epoch {config.epoch}")


def _validate_sender(sender: int, claimed: int, allowed: Sequence[int], kind: str, role: str) -> None:
    if claimed != sender:
        raise DkgMessageError(f"{kind}.{role}_index: claims {claimed} but the transport says sender {sender}")
    if claimed not in allowed:
        raise DkgMessageError(f"{kind}.{role}_index: {claimed} is not a {role} of this session")


def parse_deal(config: SessionConfig, sender: int, bundle: dkg_pb2.DealBundle) -> Deal:
    """Validate a DealBundle (header, sender, commitments, resharing constant term, share slots)."""
    _validate_header(config, bundle.session_id, bundle.epoch, "deal")
    _validate_sender(sender, bundle.dealer_index, config.dealers, "deal", "dealer")
    if len(bundle.commitments) != config.threshold:
        raise DkgMessageError(
            f"deal.commitments: {len(bundle.commitments)} given, threshold is {config.threshold}"
        )
    try:
        points = tuple(threshold.parse_commitments(list(bundle.commitments), "deal.commitments"))
    except CryptoError as exc:
        raise DkgMessageError(str(exc)) from exc
    if config.previous is not None:
        expected = threshold.public_share_from_commitments(config.previous.commitments, bundle.dealer_index)
        if bundle.commitments[0] != expected:
            raise DkgMessageError(
                f"deal.commitments[0]: dealer {bundle.dealer_index} does not commit to its old public share"
            )
    if len(bundle.ephemeral_public_key) != X25519_KEY_SIZE:
        raise DkgMessageError(f"deal.ephemeral_public_key: expected {X25519_KEY_SIZE} bytes")
    shares: dict[int, SealedShare] = {}
    for entry in bundle.shares:
        if entry.recipient_index not in config.recipient_indices or entry.recipient_index in shares:
            raise DkgMessageError(f"deal.shares.recipient_index: {entry.recipient_index} unknown or repeated")
        if len(entry.nonce) != NONCE_SIZE or len(entry.ciphertext) != CIPHERTEXT_SIZE:
            raise DkgMessageError(
                f"deal.shares[{entry.recipient_index}]: nonce or ciphertext has the wrong size"
            )
        shares[entry.recipient_index] = SealedShare(entry.nonce, entry.ciphertext)
    return Deal(
        dealer=bundle.dealer_index,
        commitments=tuple(bundle.commitments),
        points=points,
        ephemeral_public_key=bundle.ephemeral_public_key,
        shares=shares,
        raw=bundle.SerializeToString(deterministic=True),
    )


def parse_response(config: SessionConfig, sender: int, bundle: dkg_pb2.ResponseBundle) -> ResponseSet:
    """Validate a ResponseBundle; each dealer may appear once with SUCCESS or COMPLAINT."""
    _validate_header(config, bundle.session_id, bundle.epoch, "response")
    _validate_sender(sender, bundle.responder_index, config.recipient_indices, "response", "responder")
    seen: set[int] = set()
    complaints: set[int] = set()
    for entry in bundle.responses:
        if entry.dealer_index not in config.dealers or entry.dealer_index in seen:
            raise DkgMessageError(
                f"response.responses.dealer_index: {entry.dealer_index} unknown or repeated"
            )
        seen.add(entry.dealer_index)
        if entry.status == dkg_pb2.RESPONSE_STATUS_COMPLAINT:
            complaints.add(entry.dealer_index)
        elif entry.status != dkg_pb2.RESPONSE_STATUS_SUCCESS:
            raise DkgMessageError(f"response.responses[{entry.dealer_index}].status: unspecified")
    return ResponseSet(
        bundle.responder_index, frozenset(complaints), bundle.SerializeToString(deterministic=True)
    )


def parse_justification(config: SessionConfig, sender: int, bundle: dkg_pb2.JustificationBundle) -> Reveal:
    """Validate a JustificationBundle (shares are checked against commitments when the phase ends)."""
    _validate_header(config, bundle.session_id, bundle.epoch, "justification")
    _validate_sender(sender, bundle.dealer_index, config.dealers, "justification", "dealer")
    shares: dict[int, int] = {}
    for entry in bundle.justifications:
        if entry.recipient_index not in config.recipient_indices or entry.recipient_index in shares:
            raise DkgMessageError(
                f"justification.justifications.recipient_index: {entry.recipient_index} unknown or repeated"
            )
        try:
            shares[entry.recipient_index] = decode_scalar(
                entry.share, f"justification.share[{entry.recipient_index}]"
            )
        except DkgError as exc:
            raise DkgMessageError(str(exc)) from exc
    return Reveal(bundle.dealer_index, shares, bundle.SerializeToString(deterministic=True))


def build_deal(
    config: SessionConfig, dealer: int, coefficients: Sequence[int], share_for: Mapping[int, int]
) -> dkg_pb2.DealBundle:
    """A DealBundle with commitments to `coefficients` and `share_for[j]` sealed to each recipient j."""
    ephemeral = X25519PrivateKey.generate()
    bundle = dkg_pb2.DealBundle(
        session_id=config.session_id,
        epoch=config.epoch,
        dealer_index=dealer,
        commitments=list(threshold.compute_commitments(coefficients)),
        ephemeral_public_key=ephemeral.public_key().public_bytes_raw(),
    )
    for participant in config.recipients:
        ad = compute_share_ad(config.session_id, config.epoch, dealer, participant.index)
        nonce, ciphertext = seal_share(
            ephemeral, participant.encryption_public_key, ad, share_for[participant.index]
        )
        bundle.shares.add(recipient_index=participant.index, nonce=nonce, ciphertext=ciphertext)
    return bundle


# --- transport helpers ---


def parse_packet(data: bytes) -> dkg_pb2.DkgPacket:
    """Decode a DkgPacket from the wire; DkgMessageError if oversized, undecodable or empty."""
    if len(data) > MAX_PACKET_BYTES:
        raise DkgMessageError(f"packet: {len(data)} bytes, at most {MAX_PACKET_BYTES}")
    packet = dkg_pb2.DkgPacket()
    try:
        packet.ParseFromString(data)
    except Exception as exc:  # protobuf raises DecodeError, a plain Exception subclass
        raise DkgMessageError(f"packet: not a DkgPacket ({exc})") from exc
    if packet.WhichOneof("body") is None:
        raise DkgMessageError("packet.body: empty")
    return packet


def get_packet_sender(packet: dkg_pb2.DkgPacket) -> tuple[str, int]:
    """(role, index) the packet claims: ("dealer", i) for deals/justifications, ("recipient", j) else.

    The transport checks that the authenticated peer holds this role and index before calling
    `DkgMachine.process_packet(index, packet, now)`.
    """
    kind = packet.WhichOneof("body")
    if kind == "deal":
        return "dealer", packet.deal.dealer_index
    if kind == "justification":
        return "dealer", packet.justification.dealer_index
    if kind == "response":
        return "recipient", packet.response.responder_index
    raise DkgMessageError("packet.body: empty")


# --- encryption keys of participants ---


def generate_encryption_key() -> tuple[bytes, bytes]:
    """A fresh X25519 key pair (private 32 bytes for the keystore, public 32 bytes to register)."""
    key = X25519PrivateKey.generate()
    return key.private_bytes_raw(), key.public_key().public_bytes_raw()


def load_encryption_key(private: bytes) -> X25519PrivateKey:
    """The X25519 key from its 32 raw bytes (as stored in a keystore)."""
    if len(private) != X25519_KEY_SIZE:
        raise DkgError(f"encryption_key: expected {X25519_KEY_SIZE} bytes")
    return X25519PrivateKey.from_private_bytes(private)
