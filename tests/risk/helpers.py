"""Independent closed forms for the risk tests (written from RISK_SPEC.md, not from the code)."""

from __future__ import annotations

import math

SPEC_MARKET = {
    "spot": {"BTC": 100000.0, "ETH": 3000.0},
    "forwards": [{"underlying": "BTC", "days_to_expiry": 30, "price": 100400.0}],
    "asset_prices": {"USDC": 1.0, "BTC": 100000.0, "ETH": 3000.0},
}
SPEC_DOCUMENT = {
    "market": SPEC_MARKET,
    "positions": [
        {"kind": "option", "underlying": "BTC", "days_to_expiry": 30, "strike": 110000,
         "right": "call", "vol": 0.52, "quantity": -1},
        {"kind": "future", "underlying": "BTC", "days_to_expiry": 30, "quantity": -1},
        {"kind": "perp", "underlying": "BTC", "quantity": 0.5},
        {"kind": "spot", "underlying": "BTC", "quantity": 1},
    ],
    "collateral": {"USDC": 10000, "BTC": 0.2},
    "params": None,
}


def ncdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def black(f: float, k: float, days: float, v: float, call: bool) -> float:
    t = days / 365.0
    if t <= 0 or v <= 0:
        return max(f - k, 0.0) if call else max(k - f, 0.0)
    d1 = (math.log(f / k) + v * v * t / 2) / (v * math.sqrt(t))
    d2 = d1 - v * math.sqrt(t)
    return f * ncdf(d1) - k * ncdf(d2) if call else k * ncdf(-d2) - f * ncdf(-d1)


def grid() -> list[tuple[int, int, float]]:
    """(k, vol state 0 down / 1 none / 2 up, weight) in scenario order."""
    return [(k, j, 1.0) for k in range(-3, 4) for j in range(3)] + [(-6, 1, 0.35), (6, 1, 0.35)]


def vol_mult(dte: float, j: int) -> float:
    w = (30.0 / max(dte, 1.0)) ** (0.30 if dte <= 30 else 0.13)
    return (max(0.0, 1 - 0.25 * w), 1.0, 1 + 0.5 * w)[j]


def option_pnl(f: float, psr: float, k_strike: float, dte: float, vol: float, call: bool, q: float) -> list[float]:
    base = black(f, k_strike, dte, vol, call)
    return [w * q * (black(f * (1 + k * psr / 3), k_strike, max(dte - 1, 0), vol * vol_mult(dte, j), call) - base)
            for k, j, w in grid()]


def linear_pnl(f: float, psr: float, q: float) -> list[float]:
    return [w * q * (f * (1 + k * psr / 3) - f) for k, _, w in grid()]


def close(a: float, b: float, rel: float = 1e-9) -> bool:
    return abs(a - b) <= rel * max(abs(b), 1.0)


def make_bench_book(accounts: int, seed: int = 11, params=None):  # -> risk.batch.BatchInput
    """A realistic book: the benchmark's market (2,068 instruments, BTC and ETH) and `accounts` accounts of
    10 positions each (half on one underlying, half on both), some of them liquidatable. With a parameter
    set that has expiry terms (PM2), the benchmark's v2 market (rates, a settling expiry, confidences, perp
    marks, a depegged stable) and cash."""
    from bench.risk_bench import build_book
    from risk.params import RRA1

    return build_book(accounts, params or RRA1, seed=seed)
