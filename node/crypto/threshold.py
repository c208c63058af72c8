"""Threshold BLS over BLS12-381: Shamir shares, Feldman commitments, partial signatures, combination.

A (t, n) sharing is a polynomial f of degree t - 1 over the scalar field with f(0) the group secret;
holder i (1 <= i <= n) keeps f(i). Feldman commitments are C_k = a_k * g2 (compressed G2), so the
group key is C_0 and holder i's public share is sum_k C_k * i^k. Partial signatures are plain min-sig
signatures with the share; any t of them combine by Lagrange interpolation at 0 (one multiexp).

Invariants: indices are 1..MAX_PARTIES; 1 <= t <= n; `combine` refuses fewer than t partials and
never verifies them (callers check each with `partial_verify` first, or verify the result with
`group_verify`). `deal_trusted` is a trusted dealer for tests and benchmarks only; nodes obtain their
shares from the DKG. Persists nothing.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping, Sequence

from py_arkworks_bls12381 import G1Point, G2Point, Scalar

from node.crypto import bls
from node.crypto.errors import InvalidScalarError, ThresholdError

MAX_PARTIES = 1024
MAX_THRESHOLD = MAX_PARTIES


def validate_parameters(n: int, t: int) -> None:
    """Raise ThresholdError unless 1 <= t <= n <= MAX_PARTIES."""
    if not 1 <= n <= MAX_PARTIES:
        raise ThresholdError(f"n: {n} outside 1..{MAX_PARTIES}")
    if not 1 <= t <= n:
        raise ThresholdError(f"threshold: {t} outside 1..n={n}")


def validate_index(index: int, field: str = "index") -> None:
    """Raise ThresholdError unless index is a share index 1..MAX_PARTIES."""
    if isinstance(index, bool) or not isinstance(index, int) or not 1 <= index <= MAX_PARTIES:
        raise ThresholdError(f"{field}: {index!r} outside 1..{MAX_PARTIES}")


def compute_default_threshold(n: int) -> int:
    """The network's threshold t = floor(2n/3) + 1 (capped at n)."""
    return min(n, 2 * n // 3 + 1)


# --- polynomials and commitments ---


def generate_polynomial(t: int, secret: int | None = None) -> tuple[int, ...]:
    """Random coefficients a_0..a_{t-1} (a_0 = secret when given) from the OS CSPRNG."""
    if not 1 <= t <= MAX_THRESHOLD:
        raise ThresholdError(f"threshold: {t} outside 1..{MAX_THRESHOLD}")
    head = secret if secret is not None else 1 + secrets.randbelow(bls.CURVE_ORDER - 1)
    if not 0 < head < bls.CURVE_ORDER:
        raise InvalidScalarError("secret: must satisfy 1 <= secret < curve order")
    return (head, *(secrets.randbelow(bls.CURVE_ORDER) for _ in range(t - 1)))


def compute_polynomial_value(coefficients: Sequence[int], x: int) -> int:
    """f(x) mod r by Horner's rule."""
    acc = 0
    for coefficient in reversed(coefficients):
        acc = (acc * x + coefficient) % bls.CURVE_ORDER
    return acc


def compute_commitments(coefficients: Sequence[int]) -> tuple[bytes, ...]:
    """Feldman commitments a_k * g2 as compressed G2 points."""
    generator = G2Point()
    return tuple((generator * Scalar(a % bls.CURVE_ORDER)).to_compressed_bytes() for a in coefficients)


def parse_commitments(commitments: Sequence[bytes], field: str = "commitments") -> list[G2Point]:
    """Decode commitments; every entry must be a subgroup G2 point (C_k may not be the identity)."""
    if not 1 <= len(commitments) <= MAX_THRESHOLD:
        raise ThresholdError(f"{field}: {len(commitments)} entries outside 1..{MAX_THRESHOLD}")
    return [bls.parse_public_key(c, f"{field}[{k}]") for k, c in enumerate(commitments)]


def compute_commitment_value(points: Sequence[G2Point], index: int) -> G2Point:
    """sum_k points[k] * index^k (the public image of f(index))."""
    powers = []
    power = 1
    for _ in points:
        powers.append(Scalar(power))
        power = power * index % bls.CURVE_ORDER
    return G2Point.multiexp_unchecked(list(points), powers)


def public_share_from_commitments(commitments: Sequence[bytes], index: int) -> bytes:
    """Holder `index`'s public share (96-byte G2) from the group's Feldman commitments."""
    validate_index(index)
    return compute_commitment_value(parse_commitments(commitments), index).to_compressed_bytes()


def is_share_consistent(points: Sequence[G2Point], index: int, share: int) -> bool:
    """Feldman check: share * g2 == sum_k C_k * index^k."""
    if not 0 <= share < bls.CURVE_ORDER:
        return False
    return G2Point() * Scalar(share) == compute_commitment_value(points, index)


# --- Lagrange interpolation ---


def compute_lagrange_coefficients(indices: Sequence[int]) -> dict[int, int]:
    """lambda_i = prod_{j != i} j / (j - i) mod r for interpolation at 0 over `indices`."""
    if len(set(indices)) != len(indices):
        raise ThresholdError(f"indices: duplicates in {sorted(indices)}")
    for i in indices:
        validate_index(i)
    out: dict[int, int] = {}
    for i in indices:
        numerator = 1
        denominator = 1
        for j in indices:
            if j != i:
                numerator = numerator * j % bls.CURVE_ORDER
                denominator = denominator * (j - i) % bls.CURVE_ORDER
        out[i] = numerator * pow(denominator, -1, bls.CURVE_ORDER) % bls.CURVE_ORDER
    return out


def compute_interpolated_secret(shares: Mapping[int, int]) -> int:
    """f(0) from share values (test helper for checking sharings; nodes never reconstruct)."""
    lambdas = compute_lagrange_coefficients(list(shares))
    return sum(lambdas[i] * v for i, v in shares.items()) % bls.CURVE_ORDER


# --- signing ---


def partial_sign(share_sk: int, msg: bytes, dst: bytes = bls.DST_SIG) -> bytes:
    """Partial signature (48-byte G1) of msg with one share."""
    return bls.sign(share_sk, msg, dst)


def partial_verify(pub_share: bytes, msg: bytes, partial: bytes, dst: bytes = bls.DST_SIG) -> bool:
    """True iff partial is the signature of msg by the holder of pub_share; False on bad encodings."""
    return bls.verify(pub_share, msg, partial, dst)


def combine(partials: Mapping[int, bytes], threshold: int) -> bytes:
    """Group signature from at least `threshold` partials keyed by holder index.

    Uses the `threshold` lowest indices (so the result does not depend on arrival order); the
    partials are not verified here. Raises ThresholdError on too few partials or a bad index and
    InvalidEncodingError/InvalidPointError (naming `partials[i]`) on an undecodable partial.
    """
    if not 1 <= threshold <= MAX_THRESHOLD:
        raise ThresholdError(f"threshold: {threshold} outside 1..{MAX_THRESHOLD}")
    if len(partials) < threshold:
        raise ThresholdError(f"partials: {len(partials)} given, threshold needs {threshold}")
    chosen = sorted(partials)[:threshold]
    lambdas = compute_lagrange_coefficients(chosen)
    points: list[G1Point] = [bls.parse_signature(partials[i], f"partials[{i}]") for i in chosen]
    scalars = [Scalar(lambdas[i]) for i in chosen]
    return G1Point.multiexp_unchecked(points, scalars).to_compressed_bytes()


def group_verify(group_pk: bytes, msg: bytes, sig: bytes, dst: bytes = bls.DST_SIG) -> bool:
    """True iff sig is the group signature of msg under the group public key."""
    return bls.verify(group_pk, msg, sig, dst)


# --- trusted dealer: tests and benchmarks only ---


def _seeded_scalar(seed: bytes, counter: int) -> int:
    digest = hashlib.sha512(b"CLEARING-V1-TRUSTED-DEAL" + seed + counter.to_bytes(4, "big")).digest()
    return int.from_bytes(digest, "big") % (bls.CURVE_ORDER - 1) + 1


def deal_trusted(n: int, t: int, seed: bytes) -> tuple[bytes, dict[int, int], dict[int, bytes]]:
    """FOR TESTS AND BENCHMARKS ONLY: deterministic trusted-dealer (t, n) sharing from seed.

    Returns (group_pk, shares by index, public shares by index). The dealer knows the secret, which
    is exactly what the DKG avoids; never use this for a network key.
    """
    validate_parameters(n, t)
    coefficients = tuple(_seeded_scalar(seed, k) for k in range(t))
    commitments = compute_commitments(coefficients)
    points = parse_commitments(commitments)
    shares = {i: compute_polynomial_value(coefficients, i) for i in range(1, n + 1)}
    public_shares = {i: compute_commitment_value(points, i).to_compressed_bytes() for i in shares}
    return commitments[0], shares, public_shares
