"""Batch engine == reference engine on random portfolios; per-account errors; determinism of the
quantized view across thread counts, repeated runs and processes; the quantization rule."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from risk.batch import BatchInput, compute_margin_batch
from risk.batch_tail import compute_tail_batch
from risk.errors import InvalidInput, QuantizationError
from risk.instruments import Instrument, Market, Position
from risk.params import RRA1, params_with_overrides
from risk.quantize import FLAG_ERROR, FLAG_LIQUIDATABLE, encode_quantized, quantize_usd, quantized
from risk.reference import compute_account_risk
from risk.tail import compute_tail_metrics

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ["USDC", "BTC", "ETH", "DOGE"]
SCALAR_FIELDS = ("initial_margin", "maintenance_margin", "equity", "free_collateral", "joint_scan_loss",
                 "separate_scan_loss", "correlated_margin", "short_option_minimum", "positions_mtm",
                 "collateral_value", "collateral_value_after_haircut")


def make_market() -> tuple[Market, list[Instrument]]:
    rng = np.random.default_rng(3)
    forwards = {}
    instruments = []
    for u, s in (("ETH", 3000.0), ("BTC", 100000.0)):  # deliberately not sorted by underlying
        for d in (0.0, 0.5, 1.0, 7.0, 30.0, 45.0):
            forwards[(u, d)] = s * (1 + 0.04 * d / 365)
            for k in (0.7, 0.9, 1.0, 1.1, 1.4):
                for right in ("call", "put"):
                    instruments.append(Instrument(u, "option", d, k * s, right, 0.3 + 0.6 * rng.random()))
            instruments.append(Instrument(u, "future", d))
        instruments += [Instrument(u, "perp"), Instrument(u, "spot")]
    return Market({"BTC": 100000.0, "ETH": 3000.0}, forwards,
                  {"USDC": 1.0, "BTC": 100000.0, "ETH": 3000.0, "DOGE": 0.1}), instruments


def make_input(n: int, seed: int) -> BatchInput:
    market, instruments = make_market()
    rng = np.random.default_rng(seed)
    rows, cols, vals = [], [], []
    for a in range(n):
        mode = a % 3  # BTC only, ETH only, both
        pool = [i for i, x in enumerate(instruments) if mode == 2 or x.underlying == ("BTC", "ETH")[mode]]
        for c in sorted(rng.choice(pool, int(rng.integers(0, 7)), replace=False)):
            rows.append(a)
            cols.append(c)
            vals.append(float(rng.normal() * (0.5 if instruments[c].underlying == "BTC" else 10)))
    positions = sp.csr_matrix((vals, (rows, cols)), shape=(n, len(instruments)))
    collateral = np.abs(rng.normal(size=(n, 4))) * np.array([30000.0, 0.1, 3.0, 1000.0])
    return BatchInput(instruments, market, positions, collateral, ASSETS)


def account_positions(inp: BatchInput, a: int) -> tuple[list[Position], list[int]]:
    p = inp.positions
    s0, s1 = p.indptr[a], p.indptr[a + 1]
    cols = [int(c) for c in p.indices[s0:s1]]
    return [Position(inp.instruments[c], float(q)) for c, q in zip(cols, p.data[s0:s1], strict=True)], cols


def close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(abs(b), 1.0)


@pytest.mark.parametrize("params", [RRA1, params_with_overrides(RRA1, {"correlation_groups": [],
                                                                       "price_scan_range": {"ETH": 0.3}})])
def test_batch_equals_reference_on_random_portfolios(params) -> None:
    inp = make_input(240, seed=1)
    res = compute_margin_batch(inp, params)
    assert res.ok.all() and res.errors == ()
    assert res.liquidatable.any() and (~res.liquidatable).any()
    for a in range(240):
        positions, cols = account_positions(inp, a)
        collateral = dict(zip(ASSETS, map(float, inp.collateral[a]), strict=True))
        ref = compute_account_risk(positions, collateral, inp.market, params, include_tail=False)
        for name in SCALAR_FIELDS:
            assert close(float(getattr(res, name)[a]), getattr(ref, name)), (a, name)
        assert np.allclose(res.risk_array[a], ref.risk_array, rtol=0, atol=1e-9 * max(1.0, max(map(abs, ref.risk_array))))
        assert (None if res.worst_scenario[a] < 0 else int(res.worst_scenario[a])) == ref.worst_scenario
        for u, loss in ref.scan_loss_by_underlying.items():
            assert close(float(res.scan_loss_by_underlying[a, res.underlyings.index(u)]), loss)
        assert close(float(res.isolated_margin_sum[a]), sum(ref.isolated_margins))
        if ref.capital_efficiency_ratio is None:
            assert np.isnan(res.capital_efficiency_ratio[a])
        else:
            assert close(float(res.capital_efficiency_ratio[a]), ref.capital_efficiency_ratio)
        assert bool(res.liquidatable[a]) == ref.liquidatable
        if ref.health is not None:
            assert close(float(res.health[a]), ref.health)
        plan = res.liquidation.get_plan(a)
        assert len(plan) == len(ref.liquidation), a
        for got, want in zip(plan, ref.liquidation, strict=True):
            assert got.position == cols[want.position]
            for name in ("penalty", "equity_after", "initial_margin_after", "maintenance_margin_after"):
                assert close(getattr(got, name), getattr(want, name)), (a, name)


def test_batch_tail_equals_reference() -> None:
    inp = make_input(60, seed=2)
    tail = compute_tail_batch(inp, RRA1)
    singles = 0
    for a in range(60):
        positions, _ = account_positions(inp, a)
        var, es = compute_tail_metrics(positions, inp.market, RRA1)
        if var is None:
            assert np.isnan(tail.var99[a]) and np.isnan(tail.es99[a])
            continue
        singles += 1
        assert close(float(tail.var99[a]), var) and close(float(tail.es99[a]), es)
    assert singles > 20


def test_invalid_accounts_become_errors_and_others_still_compute() -> None:
    inp = make_input(30, seed=4)
    clean = compute_margin_batch(inp, RRA1)
    positions = inp.positions.copy()
    positions.data[positions.indptr[3]] = np.nan  # account 3: NaN quantity
    collateral = inp.collateral.copy()
    collateral[5, 0] = -1.0  # account 5: negative balance
    collateral[7, 1] = np.inf  # account 7: non-finite balance
    assets = ["USDC", "BTC", "ETH", "SHIB"]  # column 3 has no price: accounts with a balance fail
    bad = BatchInput(inp.instruments, inp.market, positions, collateral, assets)
    res = compute_margin_batch(bad, RRA1)
    errors = {e.account: e for e in res.errors}
    assert errors[3].field.startswith("positions[") and "finite" in errors[3].reason
    assert errors[5].field == "collateral.USDC" and errors[7].field == "collateral.BTC"
    assert all(errors[a].field == "collateral.SHIB" for a in errors if a not in (3, 5, 7))
    assert set(errors) == {3, 5, 7} | set(np.flatnonzero(collateral[:, 3] != 0))
    assert not res.ok[list(errors)].any() and np.isnan(res.equity[list(errors)]).all()
    good = res.ok
    assert good.sum() == 30 - len(errors)
    assert np.array_equal(res.initial_margin[good], clean.initial_margin[good])
    q = quantized(res)
    assert (q.flags[list(errors)] == FLAG_ERROR).all() and (q.equity[list(errors)] == 0).all()


def test_invalid_instrument_fails_only_its_holders() -> None:
    inp = make_input(30, seed=5)
    instruments = list(inp.instruments)
    col = int(np.flatnonzero(inp.positions.getnnz(axis=0) > 0)[0])
    instruments[col] = Instrument("ETH", "option", 0.0, 2000.0, "call", -0.1)  # vol <= 0
    res = compute_margin_batch(BatchInput(instruments, inp.market, inp.positions, inp.collateral, ASSETS), RRA1)
    holders = set(np.flatnonzero(inp.positions[:, col].toarray()[:, 0] != 0))
    assert holders and {e.account for e in res.errors} == holders
    assert all(e.field == f"instruments[{col}].vol" for e in res.errors)
    assert res.ok.sum() == 30 - len(holders)


def test_invalid_structure_is_refused() -> None:
    inp = make_input(5, seed=6)
    with pytest.raises(InvalidInput) as info:
        compute_margin_batch(BatchInput(inp.instruments, inp.market, inp.positions, inp.collateral[:, :2], ASSETS),
                             RRA1)
    assert info.value.field == "collateral"
    with pytest.raises(InvalidInput):
        compute_margin_batch(BatchInput(inp.instruments[:-1], inp.market, inp.positions, inp.collateral, ASSETS),
                             RRA1)


def test_duplicate_entries_are_netted() -> None:
    inp = make_input(4, seed=7)
    dup = sp.csr_matrix((np.array([1.0, -0.25, 2.0]), np.array([5, 5, 7]), np.array([0, 2, 3, 3, 3])),
                        shape=inp.positions.shape)
    net = sp.csr_matrix((np.array([0.75, 2.0]), np.array([5, 7]), np.array([0, 1, 2, 2, 2])), shape=inp.positions.shape)
    a = compute_margin_batch(BatchInput(inp.instruments, inp.market, dup, inp.collateral, ASSETS), RRA1)
    b = compute_margin_batch(BatchInput(inp.instruments, inp.market, net, inp.collateral, ASSETS), RRA1)
    assert encode_quantized(quantized(a)) == encode_quantized(quantized(b))


def test_input_matrix_is_not_modified() -> None:
    inp = make_input(50, seed=8)
    before = (inp.positions.data.copy(), inp.positions.indices.copy(), inp.collateral.copy())
    compute_margin_batch(inp, RRA1)
    assert np.array_equal(before[0], inp.positions.data) and np.array_equal(before[1], inp.positions.indices)
    assert np.array_equal(before[2], inp.collateral)


def test_quantized_identical_across_threads_and_runs() -> None:
    inp = make_input(400, seed=9)
    blobs = {encode_quantized(quantized(compute_margin_batch(inp, RRA1, threads=t))) for t in (1, 2, 3, 1, 2)}
    assert len(blobs) == 1
    r1, r2 = compute_margin_batch(inp, RRA1, threads=1), compute_margin_batch(inp, RRA1, threads=2)
    assert r1.risk_array.tobytes() == r2.risk_array.tobytes()
    assert r1.isolated_margin_sum.tobytes() == r2.isolated_margin_sum.tobytes()


DIGEST_SCRIPT = """
import hashlib, sys
sys.path.insert(0, {root!r})
from tests.risk.test_batch import make_input
from risk.batch import compute_margin_batch
from risk.params import RRA1
from risk.quantize import encode_quantized, quantized
print(hashlib.sha256(encode_quantized(quantized(compute_margin_batch(make_input(400, seed=9), RRA1)))).hexdigest())
"""


def test_quantized_identical_across_processes() -> None:
    here = hashlib.sha256(encode_quantized(quantized(compute_margin_batch(make_input(400, seed=9), RRA1))))
    script = DIGEST_SCRIPT.format(root=str(ROOT))
    digests = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                              timeout=120).stdout.strip() for _ in range(2)}
    assert digests == {here.hexdigest()}


def test_quantize_rule() -> None:
    q = quantize_usd(np.array([0.0000005, 0.0000015, -0.0000025, 1.2345674, -3.0, 1e12]))
    assert q.dtype == np.int64
    assert q.tolist() == [0, 2, -2, 1234567, -3000000, 10**18]  # half to even
    with pytest.raises(QuantizationError):
        quantize_usd(np.array([1.0, np.nan]))
    with pytest.raises(QuantizationError):
        quantize_usd(np.array([1e13]))


def test_quantized_flags_follow_integers() -> None:
    inp = make_input(120, seed=10)
    res = compute_margin_batch(inp, RRA1)
    q = quantized(res)
    liq = (q.flags & FLAG_LIQUIDATABLE) != 0
    assert np.array_equal(liq, q.equity < q.maintenance_margin)
    assert np.array_equal(q.free_collateral, q.equity - q.initial_margin)
    assert np.array_equal(liq, res.liquidatable)  # no knife-edge account in this sample


ENTRY = st.tuples(st.integers(0, 135), st.floats(-20, 20, allow_nan=False, allow_infinity=False))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(ENTRY, max_size=5), min_size=1, max_size=4),
       st.lists(st.floats(0, 5e5), min_size=4, max_size=4))
def test_property_batch_equals_reference(accounts: list[list[tuple[int, float]]], usdc: list[float]) -> None:
    market, instruments = make_market()
    assert len(instruments) == 136
    rows, cols, vals = [], [], []
    for a, entries in enumerate(accounts):
        for c, q in dict(entries).items():  # one entry per instrument, like a netted ledger
            rows.append(a)
            cols.append(c)
            vals.append(q)
    n = len(accounts)
    positions = sp.csr_matrix((vals, (rows, cols)), shape=(n, len(instruments)))
    collateral = np.zeros((n, 4))
    collateral[:, 0] = usdc[:n]
    inp = BatchInput(instruments, market, positions, collateral, ASSETS)
    res = compute_margin_batch(inp, RRA1)
    for a in range(n):
        s0, s1 = positions.indptr[a], positions.indptr[a + 1]
        held = [(int(c), float(q)) for c, q in zip(positions.indices[s0:s1], positions.data[s0:s1], strict=True)
                if q != 0.0]
        ref = compute_account_risk([Position(instruments[c], q) for c, q in held], {"USDC": usdc[a]}, market,
                                   RRA1, include_tail=False)
        for name in SCALAR_FIELDS:
            assert close(float(getattr(res, name)[a]), getattr(ref, name)), (a, name)
        assert (None if res.worst_scenario[a] < 0 else int(res.worst_scenario[a])) == ref.worst_scenario
        assert [s.position for s in res.liquidation.get_plan(a)] == [held[s.position][0] for s in ref.liquidation]
