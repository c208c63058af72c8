"""BLS12-381 min-sig signatures (signatures in G1, public keys in G2) and their EIP-2537 encodings.

Scheme: signature = sk * H(m) with H the RFC 9380 hash-to-G1 suite BLS12381G1_XMD:SHA-256_SSWU_RO_
under the project tag `DST_SIG`; verification is e(sig, g2) == e(H(m), pk). Encodings are the ZCash
compressed ones (48-byte G1, 96-byte G2), byte-identical to py_ecc's for the same suite.

Invariants:
- every point decoded from bytes is on the curve, in the prime-order subgroup and not the identity
  (`parse_signature` / `parse_public_key` raise `InvalidEncodingError` / `InvalidPointError` naming
  the field); `verify` returns False for any invalid input instead of raising;
- secret keys are integers 1 <= sk < CURVE_ORDER;
- `hash_to_field` / `expand_message_xmd` are the exact steps the on-chain verifier replays
  (two field elements, each mapped with the MAP_FP_TO_G1 precompile, then added), and
  `hash_to_g1(m) == map_fp_to_g1(u0) + map_fp_to_g1(u1)` holds (tests check it).

Persists nothing.
"""

from __future__ import annotations

import hashlib

from py_arkworks_bls12381 import GT, G1Point, G2Point, Scalar

from node.crypto.errors import InvalidEncodingError, InvalidPointError, InvalidScalarError

DST_SIG = b"CLEARING-V1-BLS-SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_"

FIELD_MODULUS = int(
    "1a0111ea397fe69a4b1ba7b6434bacd764774b84f38512bf6730d2a0f6b0f6241eabfffeb153ffffb9feffffffffaaab", 16
)
CURVE_ORDER = int("73eda753299d7d483339d80809a1d80553bda402fffe5bfeffffffff00000001", 16)

G1_COMPRESSED_SIZE = 48
G2_COMPRESSED_SIZE = 96
FP_SIZE = 48
EIP2537_FP_SIZE = 64
EIP2537_G1_SIZE = 128
EIP2537_G2_SIZE = 256

_SHA256_B_IN_BYTES = 32
_SHA256_S_IN_BYTES = 64
_HASH_TO_FIELD_L = 64  # ceil((ceil(log2(p)) + k) / 8) with k = 128
_MAX_DST_SIZE = 255
_MAX_XMD_LEN = 255 * _SHA256_B_IN_BYTES
_EIP2537_PAD = bytes(EIP2537_FP_SIZE - FP_SIZE)


# --- RFC 9380 building blocks (kept in Python so the on-chain port has a readable reference) ---


def expand_message_xmd(msg: bytes, dst: bytes, len_in_bytes: int) -> bytes:
    """RFC 9380 section 5.3.1 with SHA-256: `len_in_bytes` uniform bytes from msg under dst."""
    if len(dst) > _MAX_DST_SIZE:
        raise InvalidEncodingError(f"dst: {len(dst)} bytes, at most {_MAX_DST_SIZE}")
    if not 0 < len_in_bytes <= _MAX_XMD_LEN:
        raise InvalidEncodingError(f"len_in_bytes: {len_in_bytes} outside 1..{_MAX_XMD_LEN}")
    ell = -(-len_in_bytes // _SHA256_B_IN_BYTES)
    dst_prime = dst + bytes([len(dst)])
    z_pad = bytes(_SHA256_S_IN_BYTES)
    l_i_b_str = len_in_bytes.to_bytes(2, "big")
    b_0 = hashlib.sha256(z_pad + msg + l_i_b_str + b"\x00" + dst_prime).digest()
    b_i = hashlib.sha256(b_0 + b"\x01" + dst_prime).digest()
    out = [b_i]
    for i in range(2, ell + 1):
        mixed = bytes(x ^ y for x, y in zip(b_0, b_i, strict=True))
        b_i = hashlib.sha256(mixed + bytes([i]) + dst_prime).digest()
        out.append(b_i)
    return b"".join(out)[:len_in_bytes]


def hash_to_field(msg: bytes, count: int = 2, dst: bytes = DST_SIG) -> tuple[int, ...]:
    """RFC 9380 section 5.2 for Fp (m = 1, L = 64): `count` field elements reduced mod p."""
    if not 1 <= count <= 8:
        raise InvalidEncodingError(f"count: {count} outside 1..8")
    uniform = expand_message_xmd(msg, dst, count * _HASH_TO_FIELD_L)
    return tuple(
        int.from_bytes(uniform[i * _HASH_TO_FIELD_L : (i + 1) * _HASH_TO_FIELD_L], "big") % FIELD_MODULUS
        for i in range(count)
    )


def map_fp_to_g1(u: int) -> G1Point:
    """SSWU map plus isogeny plus cofactor clearing of one field element (EIP-2537 MAP_FP_TO_G1)."""
    if not 0 <= u < FIELD_MODULUS:
        raise InvalidEncodingError("u: field element must satisfy 0 <= u < p")
    return G1Point.map_from_fp_be(u.to_bytes(FP_SIZE, "big"))


def hash_to_g1(msg: bytes, dst: bytes = DST_SIG) -> G1Point:
    """RFC 9380 hash_to_curve for BLS12381G1_XMD:SHA-256_SSWU_RO_ under dst."""
    if len(dst) > _MAX_DST_SIZE:
        raise InvalidEncodingError(f"dst: {len(dst)} bytes, at most {_MAX_DST_SIZE}")
    return G1Point.hash_to_curve(bytes(msg), bytes(dst))


def hash_to_g1_reference(msg: bytes, dst: bytes = DST_SIG) -> G1Point:
    """The same point computed step by step as the contract does: map(u0) + map(u1)."""
    u0, u1 = hash_to_field(msg, 2, dst)
    return map_fp_to_g1(u0) + map_fp_to_g1(u1)


# --- scalars and points ---


def validate_secret_key(sk: int) -> Scalar:
    """The secret as a Scalar; raises InvalidScalarError unless 1 <= sk < r."""
    if isinstance(sk, bool) or not isinstance(sk, int) or not 0 < sk < CURVE_ORDER:
        raise InvalidScalarError("sk: secret key must be an integer with 1 <= sk < curve order")
    return Scalar(sk)


def parse_signature(sig: bytes, field: str = "signature") -> G1Point:
    """Decode a 48-byte compressed G1 signature; raise naming `field` if it is not a valid subgroup point."""
    return _parse_g1(sig, field)


def parse_public_key(pk: bytes, field: str = "public_key") -> G2Point:
    """Decode a 96-byte compressed G2 public key; raise naming `field` if it is not a valid subgroup point."""
    return _parse_g2(pk, field)


def _parse_g1(data: bytes, field: str) -> G1Point:
    if not isinstance(data, bytes | bytearray) or len(data) != G1_COMPRESSED_SIZE:
        raise InvalidEncodingError(f"{field}: expected {G1_COMPRESSED_SIZE} bytes of compressed G1")
    try:
        point = G1Point.from_compressed_bytes_unchecked(bytes(data))
    except ValueError as exc:
        raise InvalidEncodingError(f"{field}: not a compressed G1 point on the curve ({exc})") from exc
    if point == G1Point.identity():
        raise InvalidPointError(f"{field}: point at infinity is not allowed")
    if not point.is_in_subgroup():
        raise InvalidPointError(f"{field}: G1 point is not in the prime-order subgroup")
    return point


def _parse_g2(data: bytes, field: str) -> G2Point:
    if not isinstance(data, bytes | bytearray) or len(data) != G2_COMPRESSED_SIZE:
        raise InvalidEncodingError(f"{field}: expected {G2_COMPRESSED_SIZE} bytes of compressed G2")
    try:
        point = G2Point.from_compressed_bytes_unchecked(bytes(data))
    except ValueError as exc:
        raise InvalidEncodingError(f"{field}: not a compressed G2 point on the curve ({exc})") from exc
    if point == G2Point.identity():
        raise InvalidPointError(f"{field}: point at infinity is not allowed")
    if not point.is_in_subgroup():
        raise InvalidPointError(f"{field}: G2 point is not in the prime-order subgroup")
    return point


# --- single-key scheme ---


def public_key(sk: int) -> bytes:
    """96-byte compressed G2 public key sk * g2."""
    return (G2Point() * validate_secret_key(sk)).to_compressed_bytes()


def sign(sk: int, msg: bytes, dst: bytes = DST_SIG) -> bytes:
    """48-byte compressed G1 signature sk * H(msg)."""
    return (hash_to_g1(msg, dst) * validate_secret_key(sk)).to_compressed_bytes()


def is_valid_pairing(sig: G1Point, msg: bytes, pk: G2Point, dst: bytes = DST_SIG) -> bool:
    """Pairing equation e(sig, g2) == e(H(msg), pk) on decoded points."""
    return bool(GT.pairing_check([sig, -hash_to_g1(msg, dst)], [G2Point(), pk]))


def verify(pk: bytes, msg: bytes, sig: bytes, dst: bytes = DST_SIG) -> bool:
    """True iff sig is a valid signature of msg under pk; False for any invalid encoding or point."""
    try:
        sig_point = parse_signature(sig)
        pk_point = parse_public_key(pk)
    except (InvalidEncodingError, InvalidPointError):
        return False
    return is_valid_pairing(sig_point, msg, pk_point, dst)


# --- EIP-2537 encodings (uncompressed, each Fp padded to 64 bytes) ---


def fp_to_eip2537(u: int) -> bytes:
    """One field element as the 64-byte EIP-2537 encoding (16 zero bytes + 48 big-endian)."""
    if not 0 <= u < FIELD_MODULUS:
        raise InvalidEncodingError("u: field element must satisfy 0 <= u < p")
    return _EIP2537_PAD + u.to_bytes(FP_SIZE, "big")


def _pad_coordinates(xy: bytes) -> bytes:
    return b"".join(_EIP2537_PAD + xy[i : i + FP_SIZE] for i in range(0, len(xy), FP_SIZE))


def g1_point_to_eip2537(point: G1Point) -> bytes:
    """128-byte x || y of a G1 point (the identity encodes as 128 zero bytes)."""
    return _pad_coordinates(point.to_xy_bytes_be())


def g2_point_to_eip2537(point: G2Point) -> bytes:
    """256-byte x.c0 || x.c1 || y.c0 || y.c1 of a G2 point."""
    return _pad_coordinates(point.to_xy_bytes_be())


def g1_to_eip2537(sig48: bytes) -> bytes:
    """Compressed G1 signature (48) -> EIP-2537 G1 (128)."""
    return g1_point_to_eip2537(parse_signature(sig48, "sig48"))


def g2_to_eip2537(pk96: bytes) -> bytes:
    """Compressed G2 public key (96) -> EIP-2537 G2 (256)."""
    return g2_point_to_eip2537(parse_public_key(pk96, "pk96"))


def hash_to_g1_eip2537(msg: bytes, dst: bytes = DST_SIG) -> bytes:
    """H(msg) as the 128-byte EIP-2537 G1 encoding, for comparing with on-chain hash-to-curve."""
    return g1_point_to_eip2537(hash_to_g1(msg, dst))


def _unpad_coordinates(data: bytes, field: str) -> bytes:
    parts = [data[i : i + EIP2537_FP_SIZE] for i in range(0, len(data), EIP2537_FP_SIZE)]
    if any(part[: len(_EIP2537_PAD)] != _EIP2537_PAD for part in parts):
        raise InvalidEncodingError(f"{field}: every EIP-2537 field element must start with 16 zero bytes")
    return b"".join(part[len(_EIP2537_PAD) :] for part in parts)


def eip2537_to_g1(data: bytes, field: str = "g1") -> bytes:
    """EIP-2537 G1 (128) -> compressed (48); rejects off-curve, non-subgroup and identity points."""
    if len(data) != EIP2537_G1_SIZE:
        raise InvalidEncodingError(f"{field}: expected {EIP2537_G1_SIZE} bytes of EIP-2537 G1")
    xy = _unpad_coordinates(data, field)
    try:
        point = G1Point.from_xy_bytes_be(xy)
    except ValueError as exc:
        raise InvalidPointError(f"{field}: {exc}") from exc
    return _parse_g1(point.to_compressed_bytes(), field).to_compressed_bytes()


def eip2537_to_g2(data: bytes, field: str = "g2") -> bytes:
    """EIP-2537 G2 (256) -> compressed (96); rejects off-curve, non-subgroup and identity points."""
    if len(data) != EIP2537_G2_SIZE:
        raise InvalidEncodingError(f"{field}: expected {EIP2537_G2_SIZE} bytes of EIP-2537 G2")
    xy = _unpad_coordinates(data, field)
    try:
        point = G2Point.from_xy_bytes_be(xy)
    except ValueError as exc:
        raise InvalidPointError(f"{field}: {exc}") from exc
    return _parse_g2(point.to_compressed_bytes(), field).to_compressed_bytes()


# --- on-chain verification input ---

EIP2537_PAIRING_PAIR_SIZE = EIP2537_G1_SIZE + EIP2537_G2_SIZE


def compute_pairing_input_eip2537(pk96: bytes, msg: bytes, sig48: bytes, dst: bytes = DST_SIG) -> bytes:
    """768-byte input of the EIP-2537 pairing precompile (0x0f) that returns 1 iff sig verifies.

    Pairs (sig, -g2) and (H(msg), pk): e(sig, -g2) * e(H(msg), pk) == 1, the check the registry
    contract performs (with H(msg) computed on-chain by MAP_FP_TO_G1 and G1ADD).
    """
    sig_point = parse_signature(sig48, "sig48")
    pk_point = parse_public_key(pk96, "pk96")
    return (
        g1_point_to_eip2537(sig_point)
        + g2_point_to_eip2537(-G2Point())
        + g1_point_to_eip2537(hash_to_g1(msg, dst))
        + g2_point_to_eip2537(pk_point)
    )
