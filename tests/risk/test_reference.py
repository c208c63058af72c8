"""Reference engine against hand-derived values of RISK_SPEC.md, plus hypothesis properties."""

from __future__ import annotations

import math
from statistics import NormalDist

from hypothesis import given, settings
from hypothesis import strategies as st

from risk.instruments import Instrument, Market, Position
from risk.params import RRA1
from risk.reference import compute_account_risk
from risk.scenarios import compute_unit_pnl
from risk.whatif import parse_whatif, simulate_whatif
from tests.risk.helpers import SPEC_DOCUMENT, black, close, grid, linear_pnl, ncdf, option_pnl

MARKET = Market(spot={"BTC": 100000.0, "ETH": 3000.0},
                forwards={("BTC", 30.0): 100400.0, ("ETH", 30.0): 3010.0, ("BTC", 0.5): 100010.0,
                          ("ETH", 90.0): 3050.0},
                asset_prices={"USDC": 1.0, "BTC": 100000.0, "ETH": 3000.0})
FUT = Instrument("BTC", "future", 30.0)


def test_grid_order_matches_spec() -> None:
    g = RRA1.scenarios
    states = {"down": 0, "none": 1, "up": 2}
    assert len(g) == 23
    assert [(s.shock, states[s.vol], s.weight) for s in g] == grid()
    assert g[3 * (1 + 3) + 2].shock == 1 and g[3 * (1 + 3) + 2].vol == "up"


def test_long_future_scenario_table_by_hand() -> None:
    pnl = compute_unit_pnl(FUT, MARKET, RRA1)
    for s, (k, _, w) in enumerate(grid()):
        expected = w * (100400.0 * (1 + k * 0.15 / 3) - 100400.0)
        assert close(pnl[s], expected, 1e-15)
    assert close(pnl[0], -15060.0) and close(pnl[21], -0.35 * 0.30 * 100400.0)
    r = compute_account_risk([Position(FUT, 2.0)], {}, MARKET, RRA1)
    assert close(r.initial_margin, 30120.0) and r.worst_scenario == 0
    assert close(r.maintenance_margin, 0.8 * 30120.0)


def test_spec_example_field_by_field() -> None:
    out = simulate_whatif(parse_whatif(SPEC_DOCUMENT))
    f, s = 100400.0, 100000.0
    call = black(f, 110000.0, 30, 0.52, True)
    arrays = [option_pnl(f, 0.15, 110000.0, 30, 0.52, True, -1.0), linear_pnl(f, 0.15, -1.0),
              linear_pnl(s, 0.15, 0.5), linear_pnl(s, 0.15, 1.0)]
    joint = [sum(a[i] for a in arrays) for i in range(23)]
    loss = max(0.0, -min(joint))
    for i in range(23):
        assert close(out["risk_array"][i], joint[i])
    assert out["worst_scenario"] == joint.index(min(joint))
    assert close(out["joint_scan_loss"], loss) and close(out["separate_scan_loss"], loss)
    assert close(out["correlated_margin"], loss) and close(out["scan_loss_by_underlying"]["BTC"], loss)
    assert close(out["short_option_minimum"], 1000.0)
    assert close(out["initial_margin"], max(loss, 1000.0)) and close(out["maintenance_margin"], 0.8 * max(loss, 1000))
    assert close(out["collateral_value"], 30000.0) and close(out["collateral_value_after_haircut"], 27000.0)
    assert close(out["positions_mtm"], -call + s)
    assert close(out["equity"], 27000.0 - call + s)
    assert close(out["free_collateral"], out["equity"] - out["initial_margin"])
    assert close(out["health"], out["equity"] / out["maintenance_margin"]) and out["liquidatable"] is False
    iso_option = max(max(0.0, -min(arrays[0])), 1000.0)
    expected_iso = [iso_option, 15060.0, 7500.0, 15000.0]
    assert all(close(a, b) for a, b in zip(out["isolated_margins"], expected_iso, strict=True))
    assert close(out["capital_efficiency_ratio"], sum(expected_iso) / max(loss, 1000.0))
    t = 30 / 365
    d1 = (math.log(f / 110000.0) + 0.52**2 * t / 2) / (0.52 * math.sqrt(t))
    assert close(out["greeks"]["delta_by_underlying"]["BTC"], -ncdf(d1) - 1 + 0.5 + 1)
    assert close(out["greeks"]["dollar_delta"], -ncdf(d1) * f - f + 0.5 * s + s)
    pdf = math.exp(-d1 * d1 / 2) / math.sqrt(2 * math.pi)
    assert close(out["greeks"]["vega"], -f * pdf * math.sqrt(t) * 0.01)
    assert close(out["greeks"]["gamma"], -pdf / (f * 0.52 * math.sqrt(t)))
    assert close(out["greeks"]["theta"], f * pdf * 0.52 / (2 * math.sqrt(t)) / 365)
    sd = 0.60 * math.sqrt(2 / 365)
    losses = []
    for i in range(1, 1001):
        fac = math.exp(sd * NormalDist().inv_cdf((i - 0.5) / 1000) - sd * sd / 2)
        pnl = -(black(f * fac, 110000.0, 28, 0.52, True) - call) - (f * fac - f) + 1.5 * (s * fac - s)
        losses.append(-pnl)
    losses.sort(reverse=True)
    assert close(out["var99"], losses[9]) and close(out["es99"], sum(losses[:10]) / 10)
    assert out["liquidation"] == []


def test_correlation_offset_by_hand() -> None:
    positions = [Position(FUT, 1.0), Position(Instrument("ETH", "perp"), -30.0)]
    r = compute_account_risk(positions, {"USDC": 1e6}, MARKET, RRA1)
    assert close(r.scan_loss_by_underlying["BTC"], 15060.0) and close(r.scan_loss_by_underlying["ETH"], 18000.0)
    assert close(r.separate_scan_loss, 33060.0)
    assert close(r.joint_scan_loss, 2940.0) and r.worst_scenario == 18
    assert close(r.correlated_margin, 2940.0 + 0.3 * (33060.0 - 2940.0))
    assert close(r.initial_margin, 11976.0)
    assert r.var99 is None and r.es99 is None


def test_liquidation_plan_by_hand() -> None:
    positions = [Position(FUT, 1.0), Position(Instrument("BTC", "perp"), -1.0)]
    r = compute_account_risk(positions, {"USDC": 40.0}, MARKET, RRA1)
    assert close(r.initial_margin, 60.0) and close(r.equity, 40.0) and r.liquidatable
    steps = [(s.position, s.penalty, s.equity_after, s.initial_margin_after, s.maintenance_margin_after)
             for s in r.liquidation]
    expected = [(0, 500.0, -460.0, 15000.0, 12000.0), (1, 500.0, -960.0, 0.0, 0.0)]
    assert len(steps) == 2
    for got, want in zip(steps, expected, strict=True):
        assert got[0] == want[0] and all(close(a, b) for a, b in zip(got[1:], want[1:], strict=True))


def test_not_liquidatable_means_no_plan() -> None:
    r = compute_account_risk([Position(FUT, 1.0)], {"USDC": 12048.0}, MARKET, RRA1)
    assert not r.liquidatable and r.liquidation == ()
    r = compute_account_risk([Position(FUT, 1.0)], {"USDC": 12047.0}, MARKET, RRA1)
    assert r.liquidatable and [s.position for s in r.liquidation] == [0]
    assert close(r.liquidation[0].equity_after, 12047.0 - 500.0) and r.liquidation[0].initial_margin_after == 0.0


def test_empty_portfolio() -> None:
    r = compute_account_risk([], {"USDC": 5.0}, MARKET, RRA1)
    assert r.initial_margin == 0.0 and r.worst_scenario is None and r.capital_efficiency_ratio is None
    assert r.health is None and not r.liquidatable and r.equity == 5.0


def test_option_at_expiry_moves_with_intrinsic() -> None:
    inst = Instrument("BTC", "option", 0.5, 100000.0, "put", 0.6)
    pnl = compute_unit_pnl(inst, MARKET, RRA1)
    base = black(100010.0, 100000.0, 0.5, 0.6, False)
    for s, (k, _, w) in enumerate(grid()):  # look-ahead reaches expiry: intrinsic value
        assert close(pnl[s], w * (max(100000.0 - 100010.0 * (1 + k * 0.05), 0.0) - base))


INSTRUMENTS = [
    FUT, Instrument("BTC", "perp"), Instrument("BTC", "spot"), Instrument("ETH", "perp"),
    Instrument("ETH", "future", 30.0), Instrument("BTC", "option", 30.0, 95000.0, "put", 0.55),
    Instrument("BTC", "option", 0.5, 101000.0, "call", 0.7), Instrument("ETH", "option", 90.0, 3500.0, "call", 0.8),
    Instrument("ETH", "option", 30.0, 2800.0, "put", 0.75),
]
portfolios = st.lists(
    st.tuples(st.integers(0, len(INSTRUMENTS) - 1),
              st.floats(-5, 5, allow_nan=False).filter(lambda q: q == 0 or abs(q) > 1e-6)),
    min_size=0, max_size=6)


def build(entries: list[tuple[int, float]]) -> list[Position]:
    return [Position(INSTRUMENTS[i], q) for i, q in entries]


@settings(max_examples=60, deadline=None)
@given(portfolios, st.floats(0, 1e6))
def test_property_margins_ordered_and_non_negative(entries: list[tuple[int, float]], usdc: float) -> None:
    r = compute_account_risk(build(entries), {"USDC": usdc}, MARKET, RRA1, include_tail=False)
    assert r.initial_margin >= r.maintenance_margin >= 0.0
    assert r.joint_scan_loss >= 0.0 and r.separate_scan_loss >= 0.0
    assert all(v >= 0.0 for v in r.scan_loss_by_underlying.values())
    assert all(v >= 0.0 for v in r.isolated_margins)
    assert r.joint_scan_loss <= r.separate_scan_loss * (1 + 1e-12) + 1e-9
    assert r.joint_scan_loss - 1e-9 <= r.correlated_margin <= r.separate_scan_loss + 1e-9


@settings(max_examples=40, deadline=None)
@given(portfolios)
def test_property_position_and_opposite_net_to_zero(entries: list[tuple[int, float]]) -> None:
    positions = build(entries)
    paired = [x for p in positions for x in (p, Position(p.instrument, -p.quantity))]
    r = compute_account_risk(paired, {}, MARKET, RRA1, include_tail=False)
    assert r.joint_scan_loss == 0.0 and r.separate_scan_loss == 0.0 and r.worst_scenario is None
    assert all(v == 0.0 for v in r.scan_loss_by_underlying.values())
    # in any other order the sums cancel up to float rounding of the gross P&L (the spec's 1e-9)
    apart = positions + [Position(p.instrument, -p.quantity) for p in positions]
    r = compute_account_risk(apart, {}, MARKET, RRA1, include_tail=False)
    gross = sum(abs(p.quantity) * max(map(abs, compute_unit_pnl(p.instrument, MARKET, RRA1))) for p in apart)
    assert r.joint_scan_loss <= 1e-12 * max(gross, 1.0) and r.separate_scan_loss <= 1e-12 * max(gross, 1.0)


@settings(max_examples=40, deadline=None)
@given(portfolios)
def test_property_joint_never_exceeds_sum_of_underlyings(entries: list[tuple[int, float]]) -> None:
    positions = build(entries)
    r = compute_account_risk(positions, {}, MARKET, RRA1, include_tail=False)
    per_underlying = sum(
        compute_account_risk([p for p in positions if p.instrument.underlying == u], {}, MARKET, RRA1,
                             include_tail=False).initial_margin
        for u in ("BTC", "ETH"))
    assert r.initial_margin <= per_underlying * (1 + 1e-12) + 1e-9
    assert r.joint_scan_loss <= r.separate_scan_loss * (1 + 1e-12) + 1e-9
