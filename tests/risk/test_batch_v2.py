"""The batch engine with every v2 term (docs/risk_v2.md) equals the reference engine within 1e-9 on random
books (margins, risk arrays, basis, contingencies, worst scenario, LQ-1 plans) under PM2, PM2 with RRA-1's
look-ahead/correlation/SOM, and RRA-1 with contingencies in its per-position model; the quantized view is
identical across thread counts and processes."""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from risk.batch import BatchInput, compute_margin_batch
from risk.instruments import Market
from risk.params import PM2, RRA1, RiskParams, params_with_overrides
from risk.quantize import encode_quantized, quantized
from risk.reference import compute_account_risk
from tests.risk.test_batch import ASSETS, SCALAR_FIELDS, account_positions, close, make_market

ROOT = Path(__file__).resolve().parents[2]
PM2_WITH_RRA1_TERMS = params_with_overrides(PM2, {
    "look_ahead_days": 1.0, "short_option_minimum_rate": 0.01, "correlation_groups": [{"members": ["BTC", "ETH"],
                                                                                        "credit": 0.5}],
    "haircuts": {"DOGE": 0.5}, "mm_haircuts": {"DOGE": 0.3}, "im_haircuts": {"DOGE": 0.2},
    "price_scan_range": {"ETH": 0.8}, "basis_shock_up": 0.04})
RRA1_WITH_CONTINGENCIES = params_with_overrides(RRA1, {
    "perp_mm_rate": 0.02, "perp_im_rate": 0.01, "mm_haircuts": {"BTC": 0.02}, "im_haircuts": {"BTC": 0.01},
    "oracle_confidence_threshold": 0.6, "oracle_confidence_margin": 1.0, "risk_cancelling": {"ETH": "ETH"},
    "vol_up_floor": 0.7, "im_factor": 1.2})
PARAMS = {"pm2": PM2, "pm2_rra1_terms": PM2_WITH_RRA1_TERMS, "rra1_contingencies": RRA1_WITH_CONTINGENCIES}


def make_market_v2() -> tuple[Market, list]:
    """`make_market` with every v2 input: rates, a fixed forward part, confidences on both sides of the
    oracle threshold, perp marks, a stable below the peg threshold."""
    market, instruments = make_market()
    keys = list(market.forwards)
    market = dataclasses.replace(
        market, rates={k: 0.01 * i for i, k in enumerate(keys)},
        forward_fixed={k: 0.4 * f for k, f in market.forwards.items() if k[1] == 0.5},
        expiry_confidence={k: (0.3 if k[1] == 7.0 else 0.9) for k in keys},
        spot_confidence={"BTC": 0.95, "ETH": 0.8}, perp_marks={"BTC": 100_100.0, "ETH": 2_990.0},
        perp_confidence={"BTC": 0.2}, asset_confidence={"DOGE": 0.5}, stable_price=0.985)
    return market, instruments


def make_input_v2(n: int, seed: int) -> BatchInput:
    """Random books on the v2 market: 0-7 positions per account (BTC only, ETH only, both), collateral in
    every asset, some cash (negative for a third of the accounts)."""
    market, instruments = make_market_v2()
    rng = np.random.default_rng(seed)
    rows, cols, vals = [], [], []
    for a in range(n):
        mode = a % 3
        pool = [i for i, x in enumerate(instruments) if mode == 2 or x.underlying == ("BTC", "ETH")[mode]]
        for c in sorted(rng.choice(pool, int(rng.integers(0, 8)), replace=False)):
            rows.append(a)
            cols.append(c)
            vals.append(float(rng.normal() * (0.5 if instruments[c].underlying == "BTC" else 10)))
    positions = sp.csr_matrix((vals, (rows, cols)), shape=(n, len(instruments)))
    collateral = np.abs(rng.normal(size=(n, 4))) * np.array([30000.0, 0.1, 3.0, 1000.0])
    cash = rng.normal(size=n) * 20000.0 - np.where(np.arange(n) % 3 == 0, 15000.0, 0.0)
    return BatchInput(instruments, market, positions, collateral, ASSETS, cash)


def assert_account_matches(res, inp: BatchInput, a: int, params: RiskParams) -> None:  # type: ignore[no-untyped-def]
    positions, cols = account_positions(inp, a)
    collateral = dict(zip(ASSETS, map(float, inp.collateral[a]), strict=True))
    ref = compute_account_risk(positions, collateral, inp.market, params, include_tail=False,
                               cash=float(inp.cash[a]) if inp.cash is not None else 0.0)
    for name in SCALAR_FIELDS:
        assert close(float(getattr(res, name)[a]), getattr(ref, name)), (a, name)
    req = ref.requirement
    assert close(float(res.basis_loss[a]), req.basis_loss), a
    assert close(float(res.requirement[a]), req.requirement), a
    assert close(float(res.maintenance_contingency[a]), req.contingencies.maintenance), a
    assert close(float(res.initial_contingency[a]), req.contingencies.initial), a
    assert close(float(res.isolated_margin_sum[a]), sum(ref.isolated_margins)), a
    scale = max(1.0, max(map(abs, ref.risk_array)))
    assert np.allclose(res.risk_array[a], ref.risk_array, rtol=0, atol=1e-9 * scale), a
    assert (None if res.worst_scenario[a] < 0 else int(res.worst_scenario[a])) == ref.worst_scenario, a
    for u, loss in ref.scan_loss_by_underlying.items():
        assert close(float(res.scan_loss_by_underlying[a, res.underlyings.index(u)]), loss), (a, u)
    assert bool(res.liquidatable[a]) == ref.liquidatable
    plan = res.liquidation.get_plan(a)
    assert len(plan) == len(ref.liquidation), a
    for got, want in zip(plan, ref.liquidation, strict=True):
        assert got.position == cols[want.position]
        for name in ("penalty", "equity_after", "initial_margin_after", "maintenance_margin_after"):
            assert close(getattr(got, name), getattr(want, name)), (a, name)


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_batch_equals_reference_with_every_v2_term(name: str) -> None:
    params = PARAMS[name]
    inp = make_input_v2(240, seed=21)
    res = compute_margin_batch(inp, params, threads=2)
    assert res.ok.all() and res.errors == ()
    assert res.liquidatable.any() and (~res.liquidatable).any() and len(res.liquidation.account) > 0
    assert (res.initial_contingency > 0).any()
    if params.has_expiry_terms():
        assert (res.basis_loss > 0).any()
    for a in range(240):
        assert_account_matches(res, inp, a, params)


def test_risk_cancelling_collateral_is_in_the_grid_of_its_underlying() -> None:
    """An account holding only BTC collateral: under PM2 (BTC risk-cancelling) its grid moves with BTC."""
    market, instruments = make_market_v2()
    inp = BatchInput(instruments, market, sp.csr_matrix((1, len(instruments))), np.array([[0.0, 2.0, 0.0, 0.0]]),
                     ASSETS)
    res = compute_margin_batch(inp, PM2)
    value = 2.0 * 100000.0 / market.stable_price
    moves = [s.shock for s in PM2.scenarios]
    expected = [s.weight * (value * (1.0 + m) - value) for s, m in zip(PM2.scenarios, moves, strict=True)]
    assert np.allclose(res.risk_array[0], expected, rtol=1e-12)
    assert_account_matches(res, inp, 0, PM2)
    plain = compute_margin_batch(inp, RRA1)
    assert not plain.risk_array[0].any() and plain.initial_margin[0] == 0.0  # RRA-1: collateral not in the grid


def test_quantized_v2_identical_across_threads_and_processes() -> None:
    script = ("import hashlib, sys; sys.path.insert(0, {root!r}); from tests.risk.test_batch_v2 import make_input_v2; "
              "from risk.batch import compute_margin_batch; from risk.params import PM2; "
              "from risk.quantize import encode_quantized, quantized; "
              "r = compute_margin_batch(make_input_v2(400, seed=9), PM2, threads={threads}); "
              "print(hashlib.sha256(encode_quantized(quantized(r)) + r.risk_array.tobytes()).hexdigest())")
    inp = make_input_v2(400, seed=9)
    here = {hashlib.sha256(encode_quantized(quantized(r)) + r.risk_array.tobytes()).hexdigest()
            for r in (compute_margin_batch(inp, PM2, threads=t) for t in (1, 2, 3))}
    there = {subprocess.run([sys.executable, "-c", script.format(root=str(ROOT), threads=t)], capture_output=True,
                            text=True, check=True, timeout=120).stdout.strip() for t in (1, 2)}
    assert len(here) == 1 and there == here


def test_batch_tail_equals_reference_on_the_v2_market() -> None:
    """ES-1 on request: options priced with their expiry's rate, perps on their mark, as the reference."""
    from risk.batch_tail import compute_tail_batch
    from risk.tail import compute_tail_metrics

    inp = make_input_v2(60, seed=3)
    tail = compute_tail_batch(inp, PM2)
    singles = 0
    for a in range(60):
        positions, _ = account_positions(inp, a)
        var, es = compute_tail_metrics(positions, inp.market, PM2)
        if var is None:
            assert np.isnan(tail.var99[a]) and np.isnan(tail.es99[a])
            continue
        singles += 1
        assert close(float(tail.var99[a]), var) and close(float(tail.es99[a]), es), a
    assert singles > 20
