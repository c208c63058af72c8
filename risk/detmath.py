"""Deterministic elementary functions on float64 numpy arrays: `exp`, `log`, `power`, `norm_cdf`, `sqrt`.

Why: numpy's transcendental ufuncs have SIMD-specific implementations (SVML on AVX-512, others on AVX2 or
aarch64), scipy.special and `math` call the platform libm, and each of them may differ in the last bit
from one host or library build to the next; a margin leaf must be identical on every validator. Every
function here is built only from
- IEEE 754 basic operations: `+ - * /` and `sqrt`, correctly rounded on every conforming CPU whatever
  the vector width, and
- exact operations: comparisons, `np.where`, `np.abs`, `np.rint`, integer and bit operations,
each one a separate numpy ufunc call, so no compiler can contract `a*b + c` into an FMA and no SIMD path
or library version can change a result: the same inputs give the same bits on every x86-64 or aarch64
host. Constants are hexadecimal float literals (exact). The batch engine of the network (everything
that reaches a signed leaf) uses only these functions; the reference engine keeps `math` as an
independent oracle. A further function (risk model v2: skew, discounting with rates, floors) belongs
here, built the same way and with a dense accuracy test in `tests/risk/test_detmath.py`.

Methods (classic constructions, written here for numpy):
- `exp`: Cody-Waite reduction `x = k ln2 + r`, `|r| <= ln2/2`, with ln2 split into a 32-bit head (so
  `k * LN2_HI` is exact) and a tail; `exp(r)` from the Remez rational form `r coth(r/2) ~ 2 + P(r^2)`
  (fdlibm's coefficients); scaling by `2^k` as two multiplications by powers of two built from bits
  (the first exact, the second the only rounding, also into the subnormal range).
- `log`: `x = 2^k m` from the bits (subnormals pre-scaled by 2^54), `m` in `[sqrt(2)/2, sqrt(2))`,
  `f = m - 1` (exact), `log(1 + f) = 2 atanh(s)` with `s = f / (2 + f)` and a Remez polynomial in `s^2`
  (fdlibm's coefficients), `k ln2` added with the split constant.
- `power(x, y)`: `exp(y log x)` for `x >= 0`.
- `norm_cdf`: `Phi(x) = erfc(-x / sqrt 2) / 2` with fdlibm's four-piece rational approximations of
  erf/erfc; `|x| / sqrt 2` is carried as a double-double (Veltkamp split) and its low part applied to
  first order; in the tail the Gaussian factor is taken from `x` itself,
  `exp(-x^2/2) = exp(-z^2/2 - 9/16) exp((z - x)(z + x)/2 + R/S)` with `z` = `x` with its low 32 bits
  cleared, so that `-z^2/2 - 9/16` is exact and the tail keeps its relative accuracy.

Accuracy (ulp of the exact result, measured against mpmath in tests/risk/test_detmath.py): `exp` < 1 ulp
(<= 1 subnormal ulp below 2^-1022); `log` < 1 ulp; `norm_cdf` < 2.5 ulp (relative, also deep in the lower tail; mean
0.5 ulp) while the result is a normal number; `power` <= 1 + 1.5 |y ln x| ulp (the rounding of `y ln x`
is amplified by exp), <= 2 ulp on the vol-weight range `(30 / max(DTE, 1))^p`. Results in the subnormal range (below 2^-1022) keep their absolute accuracy only.
Special values follow C99: `exp(+-inf) = inf, 0`, overflow to inf, underflow to 0; `log(0) = -inf`,
`log(x < 0) = nan`, `log(inf) = inf`; `power(x, 0) = power(1, y) = 1`, `power(x < 0, y) = nan`;
`norm_cdf(-inf) = 0`, `norm_cdf(inf) = 1`; nan in, nan out.

`check_environment()` verifies the two things the construction assumes of the process (round to nearest
even, subnormals neither flushed nor treated as zero: a library built with -ffast-math can switch both
off for the whole process) and raises `FloatingPointEnvironmentError` otherwise. Nothing is persisted.
"""

from __future__ import annotations

import numpy as np

_H = float.fromhex

# exp: Cody-Waite split of ln2 (32-bit head), 1/ln2, Remez coefficients of r coth(r/2), thresholds
_LN2_HI = _H("0x1.62e42fee00000p-1")
_LN2_LO = _H("0x1.a39ef35793c76p-33")
_INV_LN2 = _H("0x1.71547652b82fep+0")
_P1, _P2, _P3, _P4, _P5 = (_H("0x1.555555555553ep-3"), _H("-0x1.6c16c16bebd93p-9"), _H("0x1.1566aaf25de2cp-14"),
                           _H("-0x1.bbd41c5d26bf1p-20"), _H("0x1.6376972bea4d0p-25"))
_EXP_MAX = _H("0x1.62e42fefa39efp+9")  # above: overflow to inf
_EXP_MIN = _H("-0x1.74910d52d3051p+9")  # below: underflow to 0

# log: Remez coefficients of (2 atanh(s) - 2s) / s in s^2
_LG1, _LG2, _LG3, _LG4, _LG5, _LG6, _LG7 = (
    _H("0x1.5555555555593p-1"), _H("0x1.999999997fa04p-2"), _H("0x1.2492494229359p-2"),
    _H("0x1.c71c51d8e78afp-3"), _H("0x1.7466496cb03dep-3"), _H("0x1.39a09d078c69fp-3"),
    _H("0x1.2f112df3e5244p-3"))
_SQRT2 = _H("0x1.6a09e667f3bcdp+0")
_MIN_NORMAL = _H("0x1p-1022")
_TWO54 = _H("0x1p+54")
_MANTISSA_BITS = (1 << 52) - 1
_EXPONENT_OF_ONE = 1023 << 52

# norm_cdf: fdlibm's erf/erfc rational approximations on [0, 0.84375), [0.84375, 1.25), [1.25, 1/0.35),
# [1/0.35, 28); each tuple is the polynomial's coefficients from degree 0 up.
_INV_SQRT2 = _H("0x1.6a09e667f3bcdp-1")
_INV_SQRT2_HEAD, _INV_SQRT2_TAIL = _H("0x1.6a09e60000000p-1"), _H("0x1.9fcef32422cbfp-27")  # 25-bit head + rest
_VELTKAMP = _H("0x1.0000002p+27")  # 2^27 + 1
_INV_SQRT_PI = _H("0x1.20dd750429b6dp-1")
_LN_SQRT_PI_MINUS_9_16 = _H("0x1.4341239e86f43p-7")
_ONE_MINUS_EXP_NEG = (1.0, -1 / 2, 1 / 6, -1 / 24, 1 / 120, -1 / 720)  # (1 - exp(-d)) / d, Taylor
_ERX = _H("0x1.b0ac160000000p-1")
_PP = tuple(map(_H, ("0x1.06eba8214db68p-3", "-0x1.4cd7d691cb913p-2", "-0x1.d2a51dbd7194fp-6",
                     "-0x1.7a291236668e4p-8", "-0x1.8ead6120016acp-16")))
_QQ = (1.0, *map(_H, ("0x1.97779cddadc09p-2", "0x1.0a54c5536cebap-4", "0x1.4d022c4d36b0fp-8",
                      "0x1.15dc9221c1a10p-13", "-0x1.09c4342a26120p-18")))
_PA = tuple(map(_H, ("-0x1.359b8bef77538p-9", "0x1.a8d00ad92b34dp-2", "-0x1.7d240fbb8c3f1p-2",
                     "0x1.45fca805120e4p-2", "-0x1.c63983d3e28ecp-4", "0x1.22a36599795ebp-5",
                     "-0x1.1bf380a96073fp-9")))
_QA = (1.0, *map(_H, ("0x1.b3e6618eee323p-4", "0x1.14af092eb6f33p-1", "0x1.2635cd99fe9a7p-4",
                      "0x1.02660e763351fp-3", "0x1.bedc26b51dd1cp-7", "0x1.88b545735151dp-7")))
_RA = tuple(map(_H, ("-0x1.43412600d6435p-7", "-0x1.63416e4ba7360p-1", "-0x1.51e0441b0e726p+3",
                     "-0x1.f300ae4cba38dp+5", "-0x1.44cb184282266p+7", "-0x1.7135cebccabb2p+7",
                     "-0x1.4526557e4d2f2p+6", "-0x1.3a0efc69ac25cp+3")))
_SA = (1.0, *map(_H, ("0x1.3a6b9bd707687p+4", "0x1.1350c526ae721p+7", "0x1.b290dd58a1a71p+8",
                      "0x1.42b1921ec2868p+9", "0x1.ad02157700314p+8", "0x1.b28a3ee48ae2cp+6",
                      "0x1.a47ef8e484a93p+2", "-0x1.eeff2ee749a62p-5")))
_RB = tuple(map(_H, ("-0x1.4341239e86f4ap-7", "-0x1.993ba70c285dep-1", "-0x1.1c209555f995ap+4",
                     "-0x1.4145d43c5ed98p+7", "-0x1.3ec881375f228p+9", "-0x1.004616a2e5992p+10",
                     "-0x1.e384e9bdc383fp+8")))
_SB = (1.0, *map(_H, ("0x1.e568b261d5190p+4", "0x1.45cae221b9f0ap+8", "0x1.802eb189d5118p+10",
                      "0x1.8ffb7688c246ap+11", "0x1.3f219cedf3be6p+11", "0x1.da874e79fe763p+8",
                      "-0x1.670e242712d62p+4")))
_ERF_SMALL, _ERF_MID, _ERFC_SPLIT, _ERFC_ZERO = 0.84375, 1.25, _H("0x1.6db6db6db6db7p+1"), 28.0
_HIGH_WORD_MASK = ~((1 << 32) - 1)


class FloatingPointEnvironmentError(RuntimeError):
    """The process does not round to nearest even or flushes subnormals: results would not be portable."""


def _array(x: np.ndarray | float) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _horner(t: np.ndarray, coefficients: tuple[float, ...]) -> np.ndarray:
    """`c0 + t (c1 + t (c2 + ...))`, one multiplication and one addition per step."""
    acc = np.full_like(t, coefficients[-1])
    for c in reversed(coefficients[:-1]):
        acc = acc * t + c
    return acc


def _pow2(k: np.ndarray) -> np.ndarray:
    """`2.0 ** k` for integer k in [-1022, 1023], built from the exponent bits (exact)."""
    return ((k + 1023) << 52).view(np.float64)


def sqrt(x: np.ndarray | float) -> np.ndarray:
    """Square root: IEEE 754 requires it correctly rounded, so numpy's is portable as it is."""
    return np.sqrt(_array(x))


def exp(x: np.ndarray | float) -> np.ndarray:
    """`e^x`, < 1 ulp (normal results); inf above 709.78, 0 below -745.13, nan for nan."""
    x = _array(x)
    inside = (x >= _EXP_MIN) & (x <= _EXP_MAX)  # false for nan
    xs = np.where(inside, x, 0.0)
    k = np.rint(xs * _INV_LN2)
    hi = xs - k * _LN2_HI
    lo = k * _LN2_LO
    r = hi - lo
    t = r * r
    c = r - t * _horner(t, (_P1, _P2, _P3, _P4, _P5))
    y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi)
    ki = k.astype(np.int64)
    k1 = ki >> 1
    scaled = (y * _pow2(k1)) * _pow2(ki - k1)
    out = np.where(inside, scaled, np.where(x > 0.0, np.inf, 0.0))
    return np.where(np.isnan(x), x, out)


def log(x: np.ndarray | float) -> np.ndarray:
    """Natural logarithm, < 1 ulp; -inf at 0, nan below 0, inf at inf, nan for nan."""
    x = _array(x)
    positive = (x > 0.0) & (x < np.inf)
    xs = np.where(positive, x, 1.0)
    subnormal = xs < _MIN_NORMAL
    xs = xs * np.where(subnormal, _TWO54, 1.0)  # exact
    bits = xs.view(np.int64)
    k = (bits >> 52) - np.where(subnormal, 1023 + 54, 1023)
    m = ((bits & _MANTISSA_BITS) | _EXPONENT_OF_ONE).view(np.float64)  # in [1, 2)
    above = m > _SQRT2
    m = np.where(above, m * 0.5, m)  # in [sqrt(2)/2, sqrt(2))
    dk = (k + above).astype(np.float64)
    f = m - 1.0
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    r = z * _horner(w, (_LG1, _LG3, _LG5, _LG7)) + w * _horner(w, (_LG2, _LG4, _LG6))
    hfsq = 0.5 * f * f
    core = dk * _LN2_HI - ((hfsq - (s * (hfsq + r) + dk * _LN2_LO)) - f)
    special = np.where(x == 0.0, -np.inf, np.where(x == np.inf, np.inf, np.nan))
    return np.where(positive, core, special)


def power(x: np.ndarray | float, y: np.ndarray | float) -> np.ndarray:
    """`x^y` for `x >= 0` (nan for `x < 0`): `exp(y log x)`, <= 1 + 1.5 |y ln x| ulp; `x^0 = 1^y = 1`."""
    x, y = np.broadcast_arrays(_array(x), _array(y))
    with np.errstate(invalid="ignore"):  # 0 * inf where y == 0 and x is 0 or inf: replaced by 1 below
        out = exp(y * log(x))
    return np.where((y == 0.0) | (x == 1.0), 1.0, out)


def _scaled_by_inv_sqrt2(ax: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`ax / sqrt 2` as `hi + lo` (lo ~ 2^-80 relative): Veltkamp split of `ax` times the 25-bit head of
    1/sqrt 2 (both products exact) plus `ax` times the tail. Needs `ax <= 2^900`."""
    hi = ax * _INV_SQRT2
    t = ax * _VELTKAMP
    big = t - (t - ax)
    small = ax - big
    lo = ((big * _INV_SQRT2_HEAD - hi) + small * _INV_SQRT2_HEAD) + ax * _INV_SQRT2_TAIL
    return hi, lo


def _upper_tail_small(a: np.ndarray) -> np.ndarray:
    """`erfc(a) / 2` for `0 <= a < 0.84375`: `erf(a) = a + a P(a^2)/Q(a^2)`."""
    z = a * a
    y = _horner(z, _PP) / _horner(z, _QQ)
    below_quarter = 0.5 * (1.0 - (a + a * y))
    above_quarter = 0.5 * (0.5 + ((0.5 - a) - a * y))  # 0.5 - a is exact there
    return np.where(a < 0.25, below_quarter, above_quarter)


def _upper_tail_mid(a: np.ndarray) -> np.ndarray:
    """`erfc(a) / 2` for `0.84375 <= a < 1.25`: `erfc(a) = (1 - erx) - P(a-1)/Q(a-1)`."""
    s = a - 1.0
    return 0.5 * ((1.0 - _ERX) - _horner(s, _PA) / _horner(s, _QA))


def _upper_tail_near(a: np.ndarray, a_lo: np.ndarray) -> np.ndarray:
    """`erfc(a + a_lo) / 2` for `0 <= a < 1.25`, to first order in `a_lo`: the derivative is
    `-exp(-a^2) / sqrt(pi)`."""
    small = a < _ERF_SMALL
    tail = np.empty_like(a)
    tail[small] = _upper_tail_small(a[small])
    tail[~small] = _upper_tail_mid(a[~small])
    return tail - a_lo * (exp(-(a * a)) * _INV_SQRT_PI)


def _upper_tail_far(a: np.ndarray, a_lo: np.ndarray, ax: np.ndarray) -> np.ndarray:
    """`erfc(a + a_lo) / 2` for `1.25 <= a < 28`, `a + a_lo = ax / sqrt 2`: `exp(-ax^2/2 - 9/16 + R/S) / a / 2`
    with `R/S` rational in `1/a^2`. The Gaussian factor is split at `z` (ax, low 32 bits cleared) so that
    it is exact in `ax`; the rest depends on `a` with `d ln / da = 2a (1 - exp(-d))`, `d = R/S - 9/16 +
    ln(sqrt(pi))` (|d| < 0.21: a short series is exact far beyond what the first-order term needs), which
    takes `a_lo` into the exponent."""
    s = 1.0 / (a * a)
    near = a < _ERFC_SPLIT
    ratio = np.where(near, _horner(s, _RA) / _horner(s, _SA), _horner(s, _RB) / _horner(s, _SB))
    d = ratio + _LN_SQRT_PI_MINUS_9_16
    slope = (a + a) * (d * _horner(d, _ONE_MINUS_EXP_NEG))  # 1 - exp(-d) = d (1 - d/2 + d^2/6 - ...)
    z = (ax.view(np.int64) & _HIGH_WORD_MASK).view(np.float64)
    head = exp(-(z * z * 0.5) - 0.5625)  # exact argument: z has 21 significant bits
    body = exp(((z - ax) * (z + ax) * 0.5 + ratio) + a_lo * slope)
    return head * body / a * 0.5


def norm_cdf(x: np.ndarray | float) -> np.ndarray:
    """Standard normal distribution function `Phi(x)`, < 2.5 ulp; 0 at -inf, 1 at inf, nan for nan."""
    x = _array(x)
    ax = np.abs(x)
    finite = ax * _INV_SQRT2 < _ERFC_ZERO  # beyond: the upper tail is below the subnormals (and nan)
    ax = np.where(finite, ax, 0.0)
    a, a_lo = _scaled_by_inv_sqrt2(ax)
    far = a >= _ERF_MID
    near = finite & ~far
    tail = np.zeros_like(ax)
    tail[near] = _upper_tail_near(a[near], a_lo[near])
    tail[far] = _upper_tail_far(a[far], a_lo[far], ax[far])
    out = np.where(x < 0.0, tail, 1.0 - tail)
    return np.where(np.isnan(x), x, out)


def check_environment() -> None:
    """Raise `FloatingPointEnvironmentError` unless numpy rounds to nearest even and keeps subnormals
    (on arrays long enough to take the vectorised loops and their scalar tails)."""
    n = 19
    one = np.ones(n)
    ulp = np.full(n, _H("0x1p-52"))
    ties = (one + ulp * 0.5, (one + ulp) + ulp * 0.5, -(one + ulp * 0.5))
    expected = (1.0, 1.0 + 2.0 * _H("0x1p-52"), -1.0)
    tiny = np.full(n, _MIN_NORMAL)
    denormal = np.full(n, _H("0x1p-1074"))
    ok = all(bool((t == e).all()) for t, e in zip(ties, expected, strict=True))
    ok = ok and bool(((tiny * 0.5) == _H("0x1p-1023")).all())  # not flushed to zero
    ok = ok and bool(((denormal * _TWO54) == _H("0x1p-1020")).all())  # not read as zero
    if not ok:
        raise FloatingPointEnvironmentError(
            "float64 arithmetic does not round to nearest even or flushes subnormals to zero "
            "(a library built with -ffast-math may have changed the FPU mode); refusing to compute margin")
