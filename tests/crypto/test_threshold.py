"""Threshold BLS: any t of n partials give the group signature, t - 1 cannot, py_ecc agrees."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from py_ecc.bls.hash_to_curve import hash_to_G1
from py_ecc.bls.point_compression import decompress_G1, decompress_G2
from py_ecc.optimized_bls12_381 import G2, pairing

from node.crypto import bls, threshold
from node.crypto.errors import InvalidEncodingError, ThresholdError

MSG = b"margin state root"


def oracle_verify(pk: bytes, msg: bytes, sig: bytes) -> bool:
    sig_point = decompress_G1(int.from_bytes(sig, "big"))
    pk_point = decompress_G2((int.from_bytes(pk[:48], "big"), int.from_bytes(pk[48:], "big")))
    return pairing(G2, sig_point) == pairing(pk_point, hash_to_G1(msg, bls.DST_SIG, hashlib.sha256))


@pytest.fixture(scope="module")
def sharing_5_of_7() -> tuple[bytes, dict[int, int], dict[int, bytes]]:
    return threshold.deal_trusted(7, 5, b"seed-7")


@pytest.fixture(scope="module")
def partials_5_of_7(sharing_5_of_7: tuple[bytes, dict[int, int], dict[int, bytes]]) -> dict[int, bytes]:
    _, shares, _ = sharing_5_of_7
    return {i: threshold.partial_sign(s, MSG) for i, s in shares.items()}


def test_every_t_subset_combines_to_the_same_group_signature(
    sharing_5_of_7: tuple[bytes, dict[int, int], dict[int, bytes]], partials_5_of_7: dict[int, bytes]
) -> None:
    group_pk, _, _ = sharing_5_of_7
    signatures = {
        threshold.combine({i: partials_5_of_7[i] for i in subset}, 5)
        for subset in itertools.combinations(range(1, 8), 5)
    }
    assert len(signatures) == 1
    (sig,) = signatures
    assert threshold.group_verify(group_pk, MSG, sig)
    assert oracle_verify(group_pk, MSG, sig)


def test_group_signature_equals_signature_with_interpolated_secret(
    sharing_5_of_7: tuple[bytes, dict[int, int], dict[int, bytes]], partials_5_of_7: dict[int, bytes]
) -> None:
    group_pk, shares, _ = sharing_5_of_7
    secret = threshold.compute_interpolated_secret({i: shares[i] for i in (2, 3, 5, 6, 7)})
    assert bls.public_key(secret) == group_pk
    assert threshold.combine(partials_5_of_7, 5) == bls.sign(secret, MSG)


def test_invalid_fewer_than_threshold_partials_refused(partials_5_of_7: dict[int, bytes]) -> None:
    with pytest.raises(ThresholdError, match="partials: 4 given, threshold needs 5"):
        threshold.combine({i: partials_5_of_7[i] for i in (1, 2, 3, 4)}, 5)


def test_invalid_t_minus_one_partials_interpolated_do_not_verify(
    sharing_5_of_7: tuple[bytes, dict[int, int], dict[int, bytes]], partials_5_of_7: dict[int, bytes]
) -> None:
    group_pk, _, _ = sharing_5_of_7
    for subset in itertools.combinations(range(1, 8), 4):
        forced = threshold.combine({i: partials_5_of_7[i] for i in subset}, 4)
        assert not threshold.group_verify(group_pk, MSG, forced)


def test_partial_verify_against_public_shares(
    sharing_5_of_7: tuple[bytes, dict[int, int], dict[int, bytes]], partials_5_of_7: dict[int, bytes]
) -> None:
    _, _, public_shares = sharing_5_of_7
    for i, partial in partials_5_of_7.items():
        assert threshold.partial_verify(public_shares[i], MSG, partial)
        assert not threshold.partial_verify(public_shares[i % 7 + 1], MSG, partial)
        assert not threshold.partial_verify(public_shares[i], b"other", partial)


def test_invalid_wrong_partial_breaks_group_signature(
    sharing_5_of_7: tuple[bytes, dict[int, int], dict[int, bytes]], partials_5_of_7: dict[int, bytes]
) -> None:
    group_pk, shares, _ = sharing_5_of_7
    bad = dict(partials_5_of_7)
    bad[1] = threshold.partial_sign(shares[1], b"other message")
    assert not threshold.group_verify(group_pk, MSG, threshold.combine(bad, 5))


def test_invalid_undecodable_partial_named() -> None:
    with pytest.raises(InvalidEncodingError, match=r"partials\[2\]"):
        threshold.combine({1: bls.sign(1, MSG), 2: b"\x00" * 48}, 2)


def test_public_shares_derive_from_commitments() -> None:
    coefficients = threshold.generate_polynomial(3)
    commitments = threshold.compute_commitments(coefficients)
    for i in range(1, 6):
        share = threshold.compute_polynomial_value(coefficients, i)
        assert threshold.public_share_from_commitments(commitments, i) == bls.public_key(share)
        points = threshold.parse_commitments(commitments)
        assert threshold.is_share_consistent(points, i, share)
        assert not threshold.is_share_consistent(points, i, (share + 1) % bls.CURVE_ORDER)


def test_lagrange_coefficients_reconstruct_constant() -> None:
    coefficients = (1234, 55, 66, 77)
    shares = {i: threshold.compute_polynomial_value(coefficients, i) for i in (3, 9, 10, 40)}
    assert threshold.compute_interpolated_secret(shares) == 1234


@pytest.mark.parametrize(("n", "t"), [(0, 1), (3, 0), (3, 4), (threshold.MAX_PARTIES + 1, 2)])
def test_invalid_parameters_refused(n: int, t: int) -> None:
    with pytest.raises(ThresholdError):
        threshold.deal_trusted(n, t, b"s")


def test_invalid_duplicate_or_zero_index_refused() -> None:
    with pytest.raises(ThresholdError, match="duplicates"):
        threshold.compute_lagrange_coefficients([1, 1, 2])
    with pytest.raises(ThresholdError, match="index: 0"):
        threshold.compute_lagrange_coefficients([0, 1])


def test_default_threshold_is_two_thirds_plus_one() -> None:
    assert [threshold.compute_default_threshold(n) for n in (1, 3, 4, 7, 16)] == [1, 3, 3, 5, 11]


def test_deal_trusted_is_deterministic_by_seed() -> None:
    assert threshold.deal_trusted(4, 3, b"a")[0] == threshold.deal_trusted(4, 3, b"a")[0]
    assert threshold.deal_trusted(4, 3, b"a")[0] != threshold.deal_trusted(4, 3, b"b")[0]


@settings(max_examples=25, deadline=None)
@given(data=st.data(), n=st.integers(min_value=1, max_value=9))
def test_any_threshold_subset_reconstructs_property(data: st.DataObject, n: int) -> None:
    t = data.draw(st.integers(min_value=1, max_value=n))
    secret = data.draw(st.integers(min_value=1, max_value=bls.CURVE_ORDER - 1))
    coefficients = (
        secret,
        *data.draw(st.lists(st.integers(0, bls.CURVE_ORDER - 1), min_size=t - 1, max_size=t - 1)),
    )
    indices = data.draw(st.lists(st.integers(1, 50), min_size=n, max_size=n, unique=True))
    shares = {i: threshold.compute_polynomial_value(coefficients, i) for i in indices}
    subset = data.draw(st.lists(st.sampled_from(indices), min_size=t, max_size=t, unique=True))
    assert threshold.compute_interpolated_secret({i: shares[i] for i in subset}) == secret
    if t > 1 and coefficients[-1] != 0:  # exact degree t - 1: t - 1 points never give f(0)
        fewer = {i: shares[i] for i in subset[: t - 1]}
        assert threshold.compute_interpolated_secret(fewer) != secret
