"""Black-76 pricing and Greeks of linear (USD-settled) options on a forward, RISK_SPEC.md section 1.

Two forms of the same formulas: scalar functions on Python floats (`math`, used by the reference
engine and the what-if path) and `compute_black76_price_array` on numpy arrays (used by the batch
engine to price every instrument once per scenario). The array form reaches signed leaves, so it uses
only `risk.detmath` (exp, log, Phi built from IEEE basic operations: the same bits on every CPU) and
basic arithmetic; never numpy's transcendental ufuncs or scipy.special.

Invariants: `tau = days / 365`; when `tau <= 0` or `sigma <= 0` the value is the discounted intrinsic
value and every Greek except delta is zero (delta is that of the intrinsic payoff, 0 at the money);
vega is per 1 vol point (0.01), theta per calendar day. Nothing is persisted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from risk import detmath

DAYS_PER_YEAR = 365.0
_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@dataclass(frozen=True)
class Greeks:
    """Greeks per long unit: delta dV/dF, gamma d2V/dF2, vega per vol point, theta per calendar day."""

    delta: float
    gamma: float
    vega: float
    theta: float


def compute_tau(days: float) -> float:
    return days / DAYS_PER_YEAR


def compute_norm_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / _SQRT2)


def compute_norm_pdf(x: float) -> float:
    return _INV_SQRT_2PI * math.exp(-0.5 * x * x)


def is_degenerate(tau: float, sigma: float) -> bool:
    """True when the option is valued at its (discounted) intrinsic value."""
    return tau <= 0.0 or sigma <= 0.0


def compute_d1_d2(forward: float, strike: float, tau: float, sigma: float) -> tuple[float, float]:
    vol_sqrt = sigma * math.sqrt(tau)
    d1 = (math.log(forward / strike) + 0.5 * sigma * sigma * tau) / vol_sqrt
    return d1, d1 - vol_sqrt


def compute_black76_price(
    forward: float, strike: float, tau: float, sigma: float, is_call: bool, rate: float = 0.0
) -> float:
    """Black-76 value of one long unit (call `max(F-K,0)`, put `max(K-F,0)` at expiry)."""
    discount = math.exp(-rate * tau) if tau > 0.0 else 1.0
    if is_degenerate(tau, sigma):
        intrinsic = forward - strike if is_call else strike - forward
        return discount * max(intrinsic, 0.0)
    d1, d2 = compute_d1_d2(forward, strike, tau, sigma)
    if is_call:
        return discount * (forward * compute_norm_cdf(d1) - strike * compute_norm_cdf(d2))
    return discount * (strike * compute_norm_cdf(-d2) - forward * compute_norm_cdf(-d1))


def compute_black76_greeks(
    forward: float, strike: float, tau: float, sigma: float, is_call: bool, rate: float = 0.0
) -> Greeks:
    """Greeks of one long unit as defined in RISK_SPEC.md section 1."""
    discount = math.exp(-rate * tau) if tau > 0.0 else 1.0
    if is_degenerate(tau, sigma):
        in_the_money = forward > strike if is_call else forward < strike
        delta = (discount if is_call else -discount) if in_the_money else 0.0
        return Greeks(delta=delta, gamma=0.0, vega=0.0, theta=0.0)
    d1, _ = compute_d1_d2(forward, strike, tau, sigma)
    pdf = compute_norm_pdf(d1)
    sqrt_tau = math.sqrt(tau)
    delta = discount * compute_norm_cdf(d1) if is_call else -discount * compute_norm_cdf(-d1)
    value = compute_black76_price(forward, strike, tau, sigma, is_call, rate)
    return Greeks(
        delta=delta,
        gamma=discount * pdf / (forward * sigma * sqrt_tau),
        vega=discount * forward * pdf * sqrt_tau * 0.01,
        theta=(rate * value - discount * forward * pdf * sigma / (2.0 * sqrt_tau)) / DAYS_PER_YEAR,
    )


def compute_black76_price_array(
    forward: np.ndarray, strike: np.ndarray, tau: np.ndarray, sigma: np.ndarray, is_call: np.ndarray,
    rate: np.ndarray | float = 0.0,
) -> np.ndarray:
    """Vectorised `compute_black76_price` over broadcastable float64 arrays (same definitions; `rate` a
    scalar or an array broadcastable with the others), with `risk.detmath` for every transcendental:
    bit-identical on every CPU."""
    f, k, t, s, c = np.broadcast_arrays(
        np.asarray(forward, np.float64), np.asarray(strike, np.float64), np.asarray(tau, np.float64),
        np.asarray(sigma, np.float64), np.asarray(is_call, bool),
    )
    degenerate = (t <= 0.0) | (s <= 0.0)
    discount = np.where(t > 0.0, detmath.exp(-rate * np.where(t > 0.0, t, 0.0)), 1.0)
    safe_t = np.where(degenerate, 1.0, t)
    safe_s = np.where(degenerate, 1.0, s)
    vol_sqrt = safe_s * detmath.sqrt(safe_t)
    d1 = (detmath.log(f / k) + 0.5 * safe_s * safe_s * safe_t) / vol_sqrt
    d2 = d1 - vol_sqrt
    sign = np.where(c, 1.0, -1.0)  # put = -(F N(-d1) - K N(-d2)), the same bits as K N(-d2) - F N(-d1)
    value = sign * (f * detmath.norm_cdf(sign * d1) - k * detmath.norm_cdf(sign * d2))
    payoff = sign * (f - k)
    intrinsic = np.where(payoff > 0.0, payoff, 0.0)
    return discount * np.where(degenerate, intrinsic, value)
