"""Properties of the v2 terms (docs/risk_v2.md), with closed forms written from the spec, not the code:
- over random books under RRA-1 and PM2: the IM surplus never exceeds the MM surplus, and the batch engine
  equals the reference within 1e-9;
- a calendar spread, a risk reversal and a covered call get exactly the charges the new terms imply
  (basis contingency per expiry, skew scenarios, naked-short and collateral contingencies, the collateral
  inside the grid) and no other; under RRA-1 none of them."""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from risk.batch import BatchInput, compute_margin_batch
from risk.instruments import Instrument, Market, Position
from risk.params import PM2, RRA1
from risk.reference import compute_account_risk
from risk.whatif import render_result
from tests.risk.helpers import black, close
from tests.risk.test_batch import ASSETS, SCALAR_FIELDS
from tests.risk.test_batch_v2 import PM2_WITH_RRA1_TERMS, make_market_v2

S, F30, F90 = 100000.0, 100400.0, 101200.0
MARKET = Market(spot={"BTC": S, "ETH": 3000.0}, forwards={("BTC", 30.0): F30, ("BTC", 90.0): F90},
                asset_prices={"USDC": 1.0, "BTC": S}, rates={("BTC", 30.0): 0.04, ("BTC", 90.0): 0.05})
PARAM_SETS = {"rra1": RRA1, "pm2": PM2, "pm2_rra1_terms": PM2_WITH_RRA1_TERMS}


def value(f: float, k: float, days: float, vol: float, call: bool, rate: float) -> float:
    """Black-76 with discounting `e^{-r tau}` (RISK_SPEC.md section 1)."""
    return math.exp(-rate * days / 365.0) * black(f, k, days, vol, call)


def up_vol(days: float, vol: float) -> float:
    """PM2 deploy: `max(0.40, vol (1 + 0.5 (30 / max(DTE, 1))^p))`, p = 0.3 up to 30 days, else 0.13."""
    return max(0.40, vol * (1 + 0.5 * (30 / max(days, 1.0)) ** (0.3 if days <= 30 else 0.13)))


def risk_of(positions: list[Position], collateral: dict[str, float], params) -> dict:  # type: ignore[no-untyped-def]
    return render_result(compute_account_risk(positions, collateral, MARKET, params), params)


def test_calendar_spread_gets_the_basis_contingency_of_each_expiry() -> None:
    long_near = Position(Instrument("BTC", "option", 30.0, 100000.0, "call", 0.5), 1.0)
    short_far = Position(Instrument("BTC", "option", 90.0, 100000.0, "call", 0.5), -1.0)
    out = risk_of([long_near, short_far], {}, PM2)
    expected_basis = 0.0
    for pos, f, days, rate in ((long_near, F30, 30.0, 0.04), (short_far, F90, 90.0, 0.05)):
        q = pos.quantity
        base = q * value(f, 100000.0, days, 0.5, True, rate)
        up = q * value(f * 1.045, 100000.0, days, 0.5, True, rate) - base
        down = q * value(f * 0.955, 100000.0, days, 0.5, True, rate) - base
        expected_basis += min(up, down, 0.0) * (0.5 + 2.0 * days / 365.0)  # each expiry its own worse side
    assert close(out["basis_loss"], -expected_basis) and out["basis_loss"] > 0
    c = out["contingencies"]
    assert close(c["naked_option_mm"], S * 0.003) and close(c["naked_option_im"], S * 0.002)  # the far short
    assert [k for k, v in c.items() if v != 0.0] == ["naked_option_mm", "naked_option_im", "maintenance", "initial"]
    scan = max(0.0, -min(out["risk_array"]))
    assert close(out["requirement"], max(scan, out["basis_loss"]))
    assert close(out["initial_margin"], out["requirement"] + S * 0.005)
    assert close(out["maintenance_margin"], 0.8 * out["requirement"] + S * 0.003)
    rra1 = risk_of([long_near, short_far], {}, RRA1)
    assert rra1["basis_loss"] == 0.0 and rra1["contingencies"]["initial"] == 0.0
    assert close(rra1["initial_margin"], rra1["requirement"])


def test_risk_reversal_gets_the_skew_scenarios() -> None:
    call = Position(Instrument("BTC", "option", 30.0, 115000.0, "call", 0.55), 2.0)
    put = Position(Instrument("BTC", "option", 30.0, 85000.0, "put", 0.65), -2.0)
    out = risk_of([call, put], {}, PM2)
    tau = 30.0 / 365.0
    root = math.sqrt(tau)
    k_star = max(0.01, root * 4.0 * (0.6 + root * 0.0))
    mtm = 2.0 * value(F30, 115000.0, 30.0, 0.55, True, 0.04) - 2.0 * value(F30, 85000.0, 30.0, 0.65, False, 0.04)
    d_pos = 1.05 * math.exp(-tau * 0.16)
    d_neg = min(math.exp(0.04 * tau), 0.95 / math.exp(-tau * 0.16))
    for name, mode in (("linear", lambda k: k), ("abs", abs)):
        cap = -0.1 * root + 0.25
        shocked = 0.0
        for q, strike, vol, is_call in ((2.0, 115000.0, 0.55, True), (-2.0, 85000.0, 0.65, False)):
            k = mode(math.log(strike / F30))
            mult = max(0.0, 1.0 + max(-cap, min(cap, k * cap / k_star)))
            shocked += q * value(F30, strike, 30.0, vol * mult, is_call, 0.04)
        y = shocked * (d_pos if shocked >= 0 else d_neg) - mtm
        assert close(out["scenario_pnl"][name], -abs(y)), name
    assert out["scenario_pnl"]["linear"] != out["scenario_pnl"]["abs"]
    c = out["contingencies"]
    assert close(c["naked_option_mm"], 2.0 * S * 0.003)  # the short put is alone at its strike
    assert [k for k, v in c.items() if v != 0.0] == ["naked_option_mm", "naked_option_im", "maintenance", "initial"]
    assert "linear" not in risk_of([call, put], {}, RRA1)["scenario_pnl"]


def test_covered_call_holds_its_collateral_inside_the_grid() -> None:
    short_call = Position(Instrument("BTC", "option", 30.0, 110000.0, "call", 0.5), -1.0)
    out = risk_of([short_call], {"BTC": 1.0}, PM2)
    v = 1.0 * S  # stable price 1
    option = value(F30, 110000.0, 30.0, 0.5, True, 0.04)
    tau = 30.0 / 365.0
    d_neg = min(math.exp(0.04 * tau), 0.95 / math.exp(-tau * 0.16))
    for name, x in (("0.82 up", 0.82), ("1.18 up", 1.18)):
        shocked = -value(F30 * x, 110000.0, 30.0, up_vol(30.0, 0.5), True, 0.04)
        expected = (shocked * d_neg + option) + v * (x - 1.0)
        assert close(out["scenario_pnl"][name], expected), name
    c = out["contingencies"]
    assert close(c["collateral_mm"], v * 0.02) and close(c["collateral_im"], v * 0.01)
    assert close(c["naked_option_mm"], S * 0.003)
    assert [k for k, v in c.items() if v != 0.0] == [
        "naked_option_mm", "naked_option_im", "collateral_mm", "collateral_im", "maintenance", "initial"]
    assert close(out["equity"], v - option) and out["collateral_value_after_haircut"] == v
    alone = risk_of([short_call], {}, PM2)
    shock = {sc.name: sc.shock for sc in PM2.scenarios}
    assert out["worst_scenario_name"] == "0.82 up" and shock[alone["worst_scenario_name"]] > 0  # down vs up moves
    rra1 = risk_of([short_call], {"BTC": 1.0}, RRA1)
    assert rra1["risk_array"] == risk_of([short_call], {}, RRA1)["risk_array"]  # RRA-1: not in the grid
    assert close(rra1["equity"], 0.85 * v - value(F30, 110000.0, 30.0, 0.5, True, 0.04))


ENTRY = st.tuples(st.integers(0, 135), st.floats(-20, 20, allow_nan=False, allow_infinity=False))


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(sorted(PARAM_SETS)), st.lists(st.lists(ENTRY, max_size=6), min_size=1, max_size=4),
       st.lists(st.floats(0, 5e5), min_size=4, max_size=4), st.lists(st.floats(-1e5, 1e5), min_size=4, max_size=4),
       st.floats(0, 3))
def test_property_im_surplus_below_mm_surplus_and_batch_equals_reference(
        name: str, accounts: list[list[tuple[int, float]]], usdc: list[float], cash: list[float], btc: float) -> None:
    params = PARAM_SETS[name]
    market, instruments = make_market_v2()
    rows, cols, vals = [], [], []
    for a, entries in enumerate(accounts):
        for c, q in dict(entries).items():
            rows.append(a)
            cols.append(c)
            vals.append(q)
    n = len(accounts)
    positions = sp.csr_matrix((vals, (rows, cols)), shape=(n, len(instruments)))
    collateral = np.zeros((n, 4))
    collateral[:, 0], collateral[:, 1] = usdc[:n], btc
    res = compute_margin_batch(BatchInput(instruments, market, positions, collateral, ASSETS, np.array(cash[:n])), params)
    assert (res.free_collateral <= res.equity - res.maintenance_margin).all()  # IM surplus <= MM surplus
    for a in range(n):
        s0, s1 = positions.indptr[a], positions.indptr[a + 1]
        held = [(int(c), float(q)) for c, q in zip(positions.indices[s0:s1], positions.data[s0:s1], strict=True)
                if q != 0.0]
        ref = compute_account_risk([Position(instruments[c], q) for c, q in held], {"USDC": usdc[a], "BTC": btc},
                                   market, params, include_tail=False, cash=cash[a])
        assert ref.free_collateral <= ref.equity - ref.maintenance_margin
        for field in SCALAR_FIELDS:
            assert close(float(getattr(res, field)[a]), getattr(ref, field)), (name, a, field)
        scale = max(1.0, max(map(abs, ref.risk_array)))
        assert np.allclose(res.risk_array[a], ref.risk_array, rtol=0, atol=1e-9 * scale)
        assert (None if res.worst_scenario[a] < 0 else int(res.worst_scenario[a])) == ref.worst_scenario
        assert [s.position for s in res.liquidation.get_plan(a)] == [held[s.position][0] for s in ref.liquidation]
