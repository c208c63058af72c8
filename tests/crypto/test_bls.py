"""BLS min-sig against the independent py_ecc oracle, EIP-2537 encodings and invalid inputs."""

from __future__ import annotations

import hashlib

import pytest
from py_ecc.bls.hash import expand_message_xmd as oracle_expand
from py_ecc.bls.hash_to_curve import hash_to_field_FQ, hash_to_G1
from py_ecc.bls.point_compression import compress_G1, compress_G2, decompress_G1, decompress_G2
from py_ecc.optimized_bls12_381 import FQ, G2, multiply, neg, normalize, pairing

from node.crypto import bls
from node.crypto.errors import InvalidEncodingError, InvalidPointError, InvalidScalarError

MESSAGES = [b"", b"abc", b"margin state epoch 7", bytes(range(256)) * 3]
SECRETS = [1, 2, 0x1234_5678_9ABC_DEF0, bls.CURVE_ORDER - 1]


def oracle_sign(sk: int, msg: bytes) -> bytes:
    point = multiply(hash_to_G1(msg, bls.DST_SIG, hashlib.sha256), sk)
    return compress_G1(point).to_bytes(48, "big")


def oracle_public_key(sk: int) -> bytes:
    z1, z2 = compress_G2(multiply(G2, sk))
    return z1.to_bytes(48, "big") + z2.to_bytes(48, "big")


def oracle_verify(pk: bytes, msg: bytes, sig: bytes) -> bool:
    sig_point = decompress_G1(int.from_bytes(sig, "big"))
    pk_point = decompress_G2((int.from_bytes(pk[:48], "big"), int.from_bytes(pk[48:], "big")))
    h = hash_to_G1(msg, bls.DST_SIG, hashlib.sha256)
    return pairing(G2, sig_point) == pairing(pk_point, h)


def _non_subgroup_g1_xy() -> tuple[int, int]:
    x = 1
    while True:
        rhs = (x**3 + 4) % bls.FIELD_MODULUS
        y = pow(rhs, (bls.FIELD_MODULUS + 1) // 4, bls.FIELD_MODULUS)
        if y * y % bls.FIELD_MODULUS == rhs:
            return x, y
        x += 1


@pytest.mark.parametrize("length", [1, 32, 64, 128, 200])
def test_expand_message_xmd_matches_oracle(length: int) -> None:
    for msg in MESSAGES:
        assert bls.expand_message_xmd(msg, bls.DST_SIG, length) == oracle_expand(
            msg, bls.DST_SIG, length, hashlib.sha256
        )


def test_hash_to_field_matches_oracle() -> None:
    for msg in MESSAGES:
        ours = bls.hash_to_field(msg, 2, bls.DST_SIG)
        theirs = hash_to_field_FQ(msg, 2, bls.DST_SIG, hashlib.sha256)
        assert ours == tuple(int(u[0]) if isinstance(u, tuple) else int(u) for u in theirs)


def test_hash_to_g1_matches_oracle_and_reference_path() -> None:
    for msg in MESSAGES:
        ours = bls.hash_to_g1(msg)
        theirs = compress_G1(hash_to_G1(msg, bls.DST_SIG, hashlib.sha256)).to_bytes(48, "big")
        assert ours.to_compressed_bytes() == theirs
        assert bls.hash_to_g1_reference(msg) == ours


def test_hash_to_g1_eip2537_is_oracle_affine_coordinates() -> None:
    msg = b"contract hash-to-curve vector"
    x, y = normalize(hash_to_G1(msg, bls.DST_SIG, hashlib.sha256))
    expected = bytes(16) + int(x).to_bytes(48, "big") + bytes(16) + int(y).to_bytes(48, "big")
    assert bls.hash_to_g1_eip2537(msg) == expected


def test_hash_to_g1_depends_on_dst() -> None:
    assert bls.hash_to_g1(b"m") != bls.hash_to_g1(b"m", b"OTHER-TAG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_")


@pytest.mark.parametrize("sk", SECRETS)
def test_sign_and_public_key_are_byte_identical_to_oracle(sk: int) -> None:
    msg = b"margin state"
    assert bls.public_key(sk) == oracle_public_key(sk)
    assert bls.sign(sk, msg) == oracle_sign(sk, msg)


def test_cross_verification_with_oracle() -> None:
    sk = 0xC0FFEE
    msg = b"cross verify"
    sig = bls.sign(sk, msg)
    pk = bls.public_key(sk)
    assert oracle_verify(pk, msg, sig)
    assert bls.verify(pk, msg, oracle_sign(sk, msg))
    assert not oracle_verify(pk, b"other", sig)


def test_verify_accepts_own_signature_and_rejects_other_message_or_key() -> None:
    sig = bls.sign(7, b"a")
    assert bls.verify(bls.public_key(7), b"a", sig)
    assert not bls.verify(bls.public_key(7), b"b", sig)
    assert not bls.verify(bls.public_key(8), b"a", sig)


def test_g2_to_eip2537_layout_matches_oracle() -> None:
    sk = 99
    x, y = normalize(multiply(G2, sk))
    parts = [x.coeffs[0], x.coeffs[1], y.coeffs[0], y.coeffs[1]]
    expected = b"".join(bytes(16) + int(c).to_bytes(48, "big") for c in parts)
    encoded = bls.g2_to_eip2537(bls.public_key(sk))
    assert encoded == expected
    assert bls.eip2537_to_g2(encoded) == bls.public_key(sk)


def test_g1_to_eip2537_round_trip() -> None:
    sig = bls.sign(5, b"x")
    encoded = bls.g1_to_eip2537(sig)
    assert len(encoded) == 128
    assert encoded[:16] == bytes(16) and encoded[64:80] == bytes(16)
    assert bls.eip2537_to_g1(encoded) == sig


def test_map_fp_to_g1_sum_is_hash() -> None:
    u0, u1 = bls.hash_to_field(b"abc")
    assert (bls.map_fp_to_g1(u0) + bls.map_fp_to_g1(u1)).to_compressed_bytes() == bls.hash_to_g1(
        b"abc"
    ).to_compressed_bytes()
    assert bls.fp_to_eip2537(u0) == bytes(16) + u0.to_bytes(48, "big")


def test_invalid_signature_not_in_subgroup_is_refused() -> None:
    x, y = _non_subgroup_g1_xy()
    compressed = compress_G1((FQ(x), FQ(y), FQ(1))).to_bytes(48, "big")
    with pytest.raises(InvalidPointError, match=r"signature: .*subgroup"):
        bls.parse_signature(compressed)
    assert not bls.verify(bls.public_key(3), b"m", compressed)
    eip = bytes(16) + x.to_bytes(48, "big") + bytes(16) + y.to_bytes(48, "big")
    with pytest.raises(InvalidPointError, match="g1"):
        bls.eip2537_to_g1(eip)


def test_invalid_signature_encodings_are_refused() -> None:
    with pytest.raises(InvalidEncodingError, match="signature: expected 48"):
        bls.parse_signature(b"\x00" * 47)
    with pytest.raises(InvalidEncodingError, match="signature: not a compressed"):
        bls.parse_signature(b"\x00" * 48)
    infinity = bytes([0xC0]) + bytes(47)
    with pytest.raises(InvalidPointError, match="infinity"):
        bls.parse_signature(infinity)
    assert not bls.verify(bls.public_key(3), b"m", infinity)
    assert not bls.verify(bls.public_key(3), b"m", b"junk")


def test_invalid_public_key_encodings_are_refused() -> None:
    with pytest.raises(InvalidEncodingError, match="public_key: expected 96"):
        bls.parse_public_key(b"\x01" * 95)
    infinity = bytes([0xC0]) + bytes(95)
    with pytest.raises(InvalidPointError, match="public_key: point at infinity"):
        bls.parse_public_key(infinity)
    assert not bls.verify(infinity, b"m", bls.sign(3, b"m"))


def test_invalid_eip2537_padding_is_refused() -> None:
    encoded = bytearray(bls.g1_to_eip2537(bls.sign(5, b"x")))
    encoded[0] = 1
    with pytest.raises(InvalidEncodingError, match="16 zero bytes"):
        bls.eip2537_to_g1(bytes(encoded))


@pytest.mark.parametrize("sk", [0, -1, bls.CURVE_ORDER, True])
def test_invalid_secret_key_is_refused(sk: int) -> None:
    with pytest.raises(InvalidScalarError, match="sk:"):
        bls.sign(sk, b"m")


def test_invalid_dst_too_long_is_refused() -> None:
    with pytest.raises(InvalidEncodingError, match="dst:"):
        bls.hash_to_g1(b"m", b"x" * 256)


def test_negated_signature_fails() -> None:
    sig = bls.sign(11, b"m")
    point = decompress_G1(int.from_bytes(sig, "big"))
    negated = compress_G1(neg(point)).to_bytes(48, "big")
    assert not bls.verify(bls.public_key(11), b"m", negated)
