"""Black-76 against independent closed forms (math.erf written out here) and Greeks against central
finite differences of the pricer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from risk.pricing import compute_black76_greeks, compute_black76_price, compute_black76_price_array


def ncdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def black_by_hand(f: float, k: float, t: float, v: float, call: bool, r: float = 0.0) -> float:
    d1 = (math.log(f / k) + v * v * t / 2) / (v * math.sqrt(t))
    d2 = d1 - v * math.sqrt(t)
    if call:
        return math.exp(-r * t) * (f * ncdf(d1) - k * ncdf(d2))
    return math.exp(-r * t) * (k * ncdf(-d2) - f * ncdf(-d1))


def close(a: float, b: float, rel: float = 1e-12) -> bool:
    return abs(a - b) <= rel * max(abs(b), 1.0)


CASES = [(100.0, 100.0, 0.5, 0.2, 0.0), (100400.0, 110000.0, 30 / 365, 0.52, 0.0),
         (3000.0, 2500.0, 2.0, 0.8, 0.05), (50.0, 80.0, 0.01, 1.5, 0.03)]


@pytest.mark.parametrize(("f", "k", "t", "v", "r"), CASES)
def test_price_matches_hand_formula(f: float, k: float, t: float, v: float, r: float) -> None:
    for call in (True, False):
        assert close(compute_black76_price(f, k, t, v, call, r), black_by_hand(f, k, t, v, call, r))


@pytest.mark.parametrize(("f", "k", "t", "v", "r"), CASES)
def test_put_call_parity(f: float, k: float, t: float, v: float, r: float) -> None:
    c = compute_black76_price(f, k, t, v, True, r)
    p = compute_black76_price(f, k, t, v, False, r)
    assert close(c - p, math.exp(-r * t) * (f - k), 1e-10)


def test_textbook_value_atm() -> None:
    # ATM Black-76 with r = 0: C = F (2 N(v sqrt(t) / 2) - 1); F=100, v=0.2, t=1 -> 7.965567455405804
    expected = 100.0 * (2.0 * ncdf(0.1) - 1.0)
    assert abs(expected - 7.965567455405804) < 1e-12
    assert close(compute_black76_price(100.0, 100.0, 1.0, 0.2, True), expected)
    # Hull's example (Black's model): F=20, K=20, r=9%, vol 25%, 4 months -> put 1.12
    assert round(compute_black76_price(20.0, 20.0, 4 / 12, 0.25, False, 0.09), 2) == 1.12


@pytest.mark.parametrize("t", [0.0, -1.0])
def test_expired_option_is_intrinsic(t: float) -> None:
    assert compute_black76_price(120.0, 100.0, t, 0.5, True) == 20.0
    assert compute_black76_price(120.0, 100.0, t, 0.5, False) == 0.0
    assert compute_black76_price(80.0, 100.0, t, 0.5, False) == 20.0


def test_zero_vol_is_discounted_intrinsic() -> None:
    assert close(compute_black76_price(120.0, 100.0, 1.0, 0.0, True, 0.05), math.exp(-0.05) * 20.0)
    assert compute_black76_price(80.0, 100.0, 1.0, 0.0, True, 0.05) == 0.0


def test_array_pricer_matches_scalar() -> None:
    rng = np.random.default_rng(1)
    f = rng.uniform(50, 150, 200)
    k = rng.uniform(50, 150, 200)
    t = np.concatenate([rng.uniform(0, 2, 190), np.zeros(10)])
    v = np.concatenate([rng.uniform(0.05, 1.5, 195), np.zeros(5)])
    c = rng.random(200) < 0.5
    arr = compute_black76_price_array(f, k, t, v, c, 0.02)
    for i in range(200):
        assert close(float(arr[i]), compute_black76_price(f[i], k[i], t[i], v[i], bool(c[i]), 0.02), 1e-12)


@pytest.mark.parametrize(("f", "k", "t", "v", "r"), CASES)
def test_greeks_match_finite_differences(f: float, k: float, t: float, v: float, r: float) -> None:
    for call in (True, False):
        g = compute_black76_greeks(f, k, t, v, call, r)

        def price(ff: float = f, tt: float = t, vv: float = v, call: bool = call) -> float:
            return compute_black76_price(ff, k, tt, vv, call, r)

        h = f * 1e-4
        delta = (price(ff=f + h) - price(ff=f - h)) / (2 * h)
        gamma = (price(ff=f + h) - 2 * price() + price(ff=f - h)) / (h * h)
        vega = (price(vv=v + 1e-5) - price(vv=v - 1e-5)) / 2e-5 * 0.01
        dt = min(1e-5, t / 10)
        theta = -(price(tt=t + dt) - price(tt=t - dt)) / (2 * dt) / 365.0
        assert abs(g.delta - delta) <= 1e-6 * max(1.0, abs(delta))
        assert abs(g.gamma - gamma) <= 1e-4 * max(abs(gamma), 1e-9) + 1e-9
        assert abs(g.vega - vega) <= 1e-6 * max(1.0, abs(vega))
        assert abs(g.theta - theta) <= 1e-5 * max(1.0, abs(theta))


def test_greeks_of_expired_option() -> None:
    g = compute_black76_greeks(120.0, 100.0, 0.0, 0.5, True)
    assert (g.delta, g.gamma, g.vega, g.theta) == (1.0, 0.0, 0.0, 0.0)
    g = compute_black76_greeks(120.0, 100.0, 0.0, 0.5, False)
    assert (g.delta, g.gamma, g.vega, g.theta) == (0.0, 0.0, 0.0, 0.0)
