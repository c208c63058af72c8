"""Properties of the v2 terms (docs/risk_v2.md), with closed forms written from the spec, not the code
(`tests.risk.v2_closed_forms`):
- a calendar spread, a risk reversal and a covered call, random instances (sizes, strikes around the
  forward, expiries, vols, spot, rates, fixed parts, a delta-hedging future, collateral, stable price) under
  RRA-1, PM2 and mixed sets (each drawn from), get exactly the charge the new term implies (the basis
  contingency of each expiry, the skew scenarios' P&L, the risk-cancelling collateral in the grid and its
  MM/IM haircuts) and no other: the same book with the term switched off (a params override) differs by
  exactly that term; the contingency breakdown and the margins are the spec's closed forms; under RRA-1
  none of the terms exists; fixed books (two where the term binds) go through the same checks;
- over random books under RRA-1 and PM2: the IM surplus never exceeds the MM surplus, and the batch engine
  equals the reference within 1e-9 (the three properties above also check the batch engine)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from risk.batch import BatchInput, compute_margin_batch
from risk.instruments import Position
from risk.params import PM2, RRA1, RiskParams, params_with_overrides
from risk.reference import compute_account_risk
from risk.whatif import render_result
from tests.risk.helpers import close
from tests.risk.test_batch import ASSETS, SCALAR_FIELDS
from tests.risk.test_batch_v2 import PM2_WITH_RRA1_TERMS, make_market_v2
from tests.risk.v2_closed_forms import (
    Book,
    Expiry,
    Leg,
    basis_term,
    black76,
    hedge_units,
    im_factor,
    move,
    naked_units,
    priced,
    skew_pnl,
)

SKEW = ("linear", "abs")
PM2_SKEW = {name: getattr(PM2, name) for name in (
    "skew_linear_cap", "skew_linear_cap_slope", "skew_abs_cap", "skew_abs_cap_slope", "skew_min_k_star",
    "skew_width_scale", "skew_vol_static", "skew_vol_scale")}
SETS: dict[str, RiskParams] = {
    "rra1": RRA1,
    "pm2": PM2,
    "pm2_rra1_terms": PM2_WITH_RRA1_TERMS,  # look-ahead, SOM, correlation credit, an asymmetric basis shock
    # RRA-1's grid and look-ahead with one PM2 term each (basis moves +-0.9 * 0.15 / 3 = 4.5% for BTC)
    "rra1_basis": params_with_overrides(RRA1, {"basis_shock_up": 0.9, "basis_shock_down": -0.9,
                                               "basis_add_factor": 0.5, "basis_mult_factor": 2.0}),
    "rra1_skew": params_with_overrides(RRA1, {**PM2_SKEW, "scenarios": [
        *(dataclasses.asdict(s) for s in RRA1.scenarios),
        {"name": "linear", "shock": 0.0, "vol": "linear", "weight": 0.8},
        {"name": "abs", "shock": 0.0, "vol": "abs", "weight": 1.0}]}),
    "rra1_cover": params_with_overrides(RRA1, {"risk_cancelling": {"BTC": "BTC", "ETH": "ETH"},
                                               "mm_haircuts": {"BTC": 0.02, "ETH": 0.015},
                                               "im_haircuts": {"BTC": 0.01, "ETH": 0.005}}),
}
CONTINGENCY_KEYS = ("perp_mm", "perp_im", "naked_option_mm", "naked_option_im", "collateral_mm", "collateral_im",
                    "oracle_perp", "oracle_options", "oracle_collateral")

# fixed books: those of the first version of this file, and two where the new term binds
S, F30, F90 = 100000.0, 100400.0, 101200.0
EXPIRIES = (Expiry(30.0, F30, 0.04), Expiry(90.0, F90, 0.05))
CALENDAR = Book("pm2", "BTC", S, EXPIRIES, (Leg(0, 100000.0, "call", 0.5, 1.0), Leg(1, 100000.0, "call", 0.5, -1.0)))
RISK_REVERSAL = Book("pm2", "BTC", S, EXPIRIES[:1], (Leg(0, 115000.0, "call", 0.55, 2.0),
                                                      Leg(0, 85000.0, "put", 0.65, -2.0)))
COVERED_CALL = Book("pm2", "BTC", S, EXPIRIES[:1], (Leg(0, 110000.0, "call", 0.5, -1.0),), (("BTC", 1.0),))
# an ATM calendar 2 / 30 days: the basis binds (the grid moves both expiries together)
SHORT_CALENDAR = Book("pm2", "BTC", S, (Expiry(2.0, S), Expiry(30.0, S)),
                      (Leg(0, S, "call", 0.5, 1.0), Leg(1, S, "call", 0.5, -1.0)))
# short-dated high-vol wings, delta hedged with a future: the linear skew scenario binds
HEDGED_WINGS = Book("pm2", "BTC", S, (Expiry(16.0, S),), (Leg(0, 150000.0, "call", 2.0, -1.0),
                                                         Leg(0, 87500.0, "put", 1.5, 1.5)), hedge=0.644)


# ---------------------------------------------------------------------------------------------
# running both engines


def run(book: Book, params: RiskParams) -> dict[str, Any]:
    """The reference's output object (with the v2 keys) of the book; the batch engine checked against it."""
    positions, collateral, market = book.positions(), dict(book.collateral), book.market()
    out = render_result(compute_account_risk(positions, collateral, market, params, include_tail=False), params)
    assets = sorted({"USDC", book.underlying, *collateral})
    inp = BatchInput([p.instrument for p in positions], market,
                     sp.csr_matrix(([p.quantity for p in positions], ([0] * len(positions), range(len(positions)))),
                                   shape=(1, len(positions))),
                     np.array([[collateral.get(a, 0.0) for a in assets]]), assets)
    res = compute_margin_batch(inp, params, threads=1)
    assert res.ok[0] and res.errors == ()
    batch = {"maintenance": res.maintenance_contingency[0], "initial": res.initial_contingency[0]}
    for name in ("initial_margin", "maintenance_margin", "equity", "joint_scan_loss", "basis_loss", "requirement",
                 "short_option_minimum"):
        assert close(float(getattr(res, name)[0]), out[name]), name
    for name, value in batch.items():
        assert close(float(value), out["contingencies"][name]), name
    assert_arrays_equal(list(res.risk_array[0]), out["risk_array"])
    assert (None if res.worst_scenario[0] < 0 else int(res.worst_scenario[0])) == out["worst_scenario"]
    return out


def assert_arrays_equal(got: list[float], want: list[float]) -> None:
    assert len(got) == len(want)
    scale = max([1.0, *map(abs, want)])
    assert all(abs(a - b) <= 1e-9 * scale for a, b in zip(got, want, strict=True)), (got, want)


# ---------------------------------------------------------------------------------------------
# closed forms of the whole account


def collateral_values(book: Book) -> dict[str, float]:
    """`v_a = b_a p_a / p_stable` (USDC at 1, the underlying at spot)."""
    return {a: b * (book.spot if a == book.underlying else 1.0) / book.stable_price for a, b in book.collateral}


def expected_contingencies(params: RiskParams, book: Book) -> dict[str, float]:
    """Options and collateral only, every confidence 1: the naked shorts and the collateral haircuts."""
    naked = naked_units(book) * book.spot
    values = collateral_values(book)
    mm, im = dict(params.mm_haircuts), dict(params.im_haircuts)
    out = dict.fromkeys(CONTINGENCY_KEYS, 0.0)
    out.update(naked_option_mm=naked * params.naked_option_mm_rate, naked_option_im=naked * params.naked_option_im_rate,
               collateral_mm=sum(v * mm.get(a, 0.0) for a, v in values.items()),
               collateral_im=sum(v * im.get(a, 0.0) for a, v in values.items()))
    return out


def assert_contingencies(out: dict[str, Any], params: RiskParams, book: Book) -> None:
    want = expected_contingencies(params, book)
    got = out["contingencies"]
    for key in CONTINGENCY_KEYS:
        assert close(got[key], want[key]), key
    assert close(got["maintenance"], want["naked_option_mm"] + want["collateral_mm"])
    assert close(got["initial"], want["naked_option_im"] + want["collateral_im"])


def assert_margins(out: dict[str, Any], params: RiskParams, book: Book) -> None:
    """One underlying: `L = -min(B, min_s P&L_s)`, `R = max(L, SOM)`, `IM = f_IM R + C_MM + C_IM`,
    `MM = maintenance_factor R + C_MM`; equity = collateral after haircut + options' MtM."""
    scan = max(0.0, -min(-out["basis_loss"], min(out["risk_array"])))
    som = params.short_option_minimum_rate * sum(-g.quantity * book.spot for g in book.legs if g.quantity < 0)
    assert close(out["joint_scan_loss"], scan) and close(out["correlated_margin"], scan)
    assert close(out["short_option_minimum"], som)
    r = max(scan, som)
    assert close(out["requirement"], r)
    f = im_factor(params, book.stable_price)
    c = out["contingencies"]
    assert close(out["im_factor"], f)
    assert close(out["initial_margin"], f * r + c["maintenance"] + c["initial"])
    assert close(out["maintenance_margin"], params.maintenance_factor * r + c["maintenance"])
    haircuts = dict(params.haircuts)
    mtm = sum(g.quantity * black76(book.expiries[g.expiry].forward, g.strike, book.expiries[g.expiry].days, g.vol,
                                   g.right == "call", book.expiries[g.expiry].rate) for g in book.legs)
    held = sum(v * (1.0 - haircuts.get(a, params.default_haircut)) for a, v in collateral_values(book).items())
    assert close(out["equity"], held + mtm)


def assert_unchanged(on: dict[str, Any], off: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        assert close(on[key], off[key]), key


def note(text: str) -> None:
    """A Hypothesis event (shown by `--hypothesis-show-statistics`); nothing outside a property."""
    if currently_in_test_context():
        event(text)


def assert_worst(on: dict[str, Any], off: dict[str, Any], term_loss: float, term_names: set[str], book: Book) -> None:
    """The new term binds (worst scenario one of `term_names`) iff its loss is above the old scan loss."""
    if term_loss > off["joint_scan_loss"] * (1 + 1e-9) + 1e-9:
        assert on["worst_scenario_name"] in term_names
        note(f"{book.params}: the term binds")
    elif term_loss < off["joint_scan_loss"] * (1 - 1e-9) - 1e-9:
        assert on["worst_scenario_name"] == off["worst_scenario_name"]
        note(f"{book.params}: the term is charged, does not bind" if term_loss > 0.0 else f"{book.params}: no term")


# ---------------------------------------------------------------------------------------------
# random instances

VOL = st.floats(0.05, 2.0)
SIZE = st.floats(0.01, 50.0)
DAYS = st.floats(-5.0, 365.0).map(lambda d: max(d, 0.0))  # sometimes 0 (expiring: intrinsic values)


@st.composite
def expiry(draw: st.DrawFn, spot: float, days: float) -> Expiry:
    """A forward within a carry of -10%..+30% a year, a rate 0..30%, and in a third of the cases a fixed part
    of the settlement average (up to 90% of the forward)."""
    forward = spot * math.exp(draw(st.floats(-0.1, 0.3)) * days / 365.0)
    fixed = draw(st.one_of(st.just(0.0), st.just(0.0), st.floats(0.05, 0.9))) * forward
    return Expiry(days, forward, draw(st.floats(0.0, 0.3)), fixed)


SPOT = st.floats(50.0, 250_000.0)
UNDERLYING = st.sampled_from(("BTC", "ETH"))


@st.composite
def hedged(draw: st.DrawFn, book: Book) -> Book:
    """The book, in two thirds of the cases with a future hedging 0 to 120% of its delta."""
    ratio = draw(st.one_of(st.just(0.0), st.floats(0.0, 1.2), st.just(1.0)))
    return dataclasses.replace(book, hedge=ratio * hedge_units(book))


@st.composite
def calendars(draw: st.DrawFn, name: str) -> Book:
    """Near and far expiry, one strike around spot, one right; long one expiry, short the other, sizes apart;
    maybe delta hedged."""
    u, spot, near = draw(UNDERLYING), draw(SPOT), draw(DAYS.map(lambda d: d / 3.0))
    expiries = (draw(expiry(spot, near)), draw(expiry(spot, near + draw(st.floats(1.0, 400.0)))))
    strike, right = spot * draw(st.floats(0.6, 1.5)), draw(st.sampled_from(("call", "put")))
    size, sign = draw(SIZE), draw(st.sampled_from((1.0, -1.0)))
    legs = (Leg(0, strike, right, draw(VOL), sign * size),
            Leg(1, strike, right, draw(VOL), -sign * size * draw(st.floats(0.25, 4.0))))
    return draw(hedged(Book(name, u, spot, expiries, legs)))


@st.composite
def risk_reversals(draw: st.DrawFn, name: str) -> Book:
    """One expiry: a call at or above the forward, a put at or below it, opposite signs, sizes apart; maybe
    delta hedged."""
    u, spot = draw(UNDERLYING), draw(SPOT)
    e = draw(expiry(spot, draw(DAYS)))
    size, sign = draw(SIZE), draw(st.sampled_from((1.0, -1.0)))
    legs = (Leg(0, e.forward * draw(st.floats(1.0, 1.6)), "call", draw(VOL), sign * size),
            Leg(0, e.forward * draw(st.floats(0.5, 1.0)), "put", draw(VOL), -sign * size * draw(st.floats(0.25, 4.0))))
    return draw(hedged(Book(name, u, spot, (e,), legs)))


@st.composite
def covered_calls(draw: st.DrawFn, name: str) -> Book:
    """A short call around the forward, 0 to 150% of its size in the underlying as collateral, some USDC, the
    stable's price on both sides of PM2's peg threshold."""
    u, spot = draw(UNDERLYING), draw(SPOT)
    e = draw(expiry(spot, draw(DAYS)))
    size = draw(st.floats(0.01, 20.0))
    legs = (Leg(0, e.forward * draw(st.floats(0.7, 1.6)), "call", draw(VOL), -size),)
    cover = size * draw(st.one_of(st.just(0.0), st.just(1.0), st.floats(0.0, 1.5)))
    collateral = ((u, cover), ("USDC", draw(st.floats(0.0, 1e6))))
    return Book(name, u, spot, (e,), legs, tuple(sorted(collateral)), draw(st.floats(0.95, 1.02)))


# ---------------------------------------------------------------------------------------------
# the three books


def check_calendar(book: Book) -> None:
    """The basis contingency of each expiry (docs/risk_v2.md section 4) and the naked short; nothing else."""
    params = SETS[book.params]
    model = priced(book, params)  # the closed forms at the rates the set prices with
    on = run(book, params)
    off = run(book, params_with_overrides(params, {"basis_add_factor": 0.0, "basis_mult_factor": 0.0}))
    basis = basis_term(params, model)  # each expiry its own worse side, no netting across expiries
    assert close(on["basis_loss"], -basis) and off["basis_loss"] == 0.0
    if params.basis_add_factor == params.basis_mult_factor == 0.0:
        assert on["basis_loss"] == 0.0
    assert_arrays_equal(on["risk_array"], off["risk_array"])
    assert on["contingencies"] == off["contingencies"]
    assert_unchanged(on, off, ("equity", "positions_mtm", "short_option_minimum"))
    assert close(on["joint_scan_loss"], max(off["joint_scan_loss"], -basis))
    for i, leg in enumerate(book.legs):  # a position alone pays its own expiry's basis
        assert close(on["isolated_margins"][i], max(off["isolated_margins"][i], -basis_term(params, model, [leg])))
    assert on["isolated_margins"][len(book.legs):] == off["isolated_margins"][len(book.legs):]  # the hedge
    assert_worst(on, off, -basis, {"basis"}, book)
    assert_contingencies(on, params, book)  # PM2: the short leg is naked (expiries never net)
    assert_margins(on, params, model)


def check_risk_reversal(book: Book) -> None:
    """The skew scenarios' P&L (sections 3-4: per expiry its worse sign) and the naked short; nothing else."""
    params = SETS[book.params]
    model = priced(book, params)  # the closed forms at the rates the set prices with
    names = [s.name for s in params.scenarios if s.vol in SKEW]
    on = run(book, params)
    off = run(book, params_with_overrides(params, {"scenarios": [dataclasses.asdict(s) for s in params.scenarios
                                                         if s.vol not in SKEW]}))
    skew = skew_pnl(params, model)
    assert sorted(skew) == sorted(names)
    if not names:  # RRA-1: no skew scenario
        assert not set(SKEW) & set(on["scenario_pnl"])
    for n in names:
        assert close(on["scenario_pnl"][n], skew[n]), n
    others = {k: v for k, v in on["scenario_pnl"].items() if k not in names}
    assert list(others) == list(off["scenario_pnl"])
    assert_arrays_equal(list(others.values()), list(off["scenario_pnl"].values()))
    assert on["contingencies"] == off["contingencies"]
    assert_unchanged(on, off, ("basis_loss", "equity", "positions_mtm", "short_option_minimum"))
    skew_loss = -min(skew.values(), default=0.0)
    assert close(on["joint_scan_loss"], max(off["joint_scan_loss"], skew_loss))
    for i, leg in enumerate(book.legs):  # a position alone: its own skew loss
        alone = -min(skew_pnl(params, model, [leg]).values(), default=0.0)
        assert close(on["isolated_margins"][i], max(off["isolated_margins"][i], alone))
    assert on["isolated_margins"][len(book.legs):] == off["isolated_margins"][len(book.legs):]  # the hedge
    assert_worst(on, off, skew_loss, set(names), book)
    assert_contingencies(on, params, book)  # PM2: the short leg is naked unless both strikes are the forward
    assert_margins(on, params, model)


def check_covered_call(book: Book) -> None:
    """The risk-cancelling collateral in the grid (`v (1 + m_s) - v`, weighted) and its MM and IM haircuts
    (section 5), the naked short; nothing else."""
    params, u = SETS[book.params], book.underlying
    model = priced(book, params)  # the closed forms at the rates the set prices with
    on = run(book, params)
    outside = run(book, params_with_overrides(params, {"risk_cancelling": {u: None}}))
    unhaircut = run(book, params_with_overrides(params, {"mm_haircuts": {u: None}, "im_haircuts": {u: None}}))
    value = collateral_values(book)[u]
    cancels = dict(params.risk_cancelling).get(u) == u
    grid = [s.weight * value * move(params, u, s.shock) if cancels else 0.0 for s in params.scenarios]
    assert_arrays_equal(on["risk_array"], [a + g for a, g in zip(outside["risk_array"], grid, strict=True)])
    assert_arrays_equal(on["risk_array"], unhaircut["risk_array"])
    assert on["contingencies"] == outside["contingencies"]
    c, plain = on["contingencies"], unhaircut["contingencies"]
    assert close(c["collateral_mm"], value * dict(params.mm_haircuts).get(u, 0.0)) and plain["collateral_mm"] == 0.0
    assert close(c["collateral_im"], value * dict(params.im_haircuts).get(u, 0.0)) and plain["collateral_im"] == 0.0
    others = ("naked_option_mm", "naked_option_im", "oracle_options", "oracle_collateral")
    assert [c[k] for k in others] == [plain[k] for k in others]
    for other in (outside, unhaircut):
        assert_unchanged(on, other, ("basis_loss", "equity", "positions_mtm", "short_option_minimum"))
        assert on["isolated_margins"] == other["isolated_margins"]  # a position alone holds no collateral
    assert_contingencies(on, params, book)
    assert_margins(on, params, model)
    note(f"{book.params}: the collateral " + ("lowers" if on["joint_scan_loss"] < outside["joint_scan_loss"] else
                                               "does not lower") + " the scan loss")
    if not cancels:  # RRA-1: the collateral stays out of the grid, its valuation haircut is all it gets
        book_alone = dataclasses.replace(book, collateral=())
        assert on["risk_array"] == run(book_alone, params)["risk_array"]


CHECKS = {"calendar": check_calendar, "risk_reversal": check_risk_reversal, "covered_call": check_covered_call}
STRATEGIES = {"calendar": calendars, "risk_reversal": risk_reversals, "covered_call": covered_calls}
TERM_SETS = {"calendar": ("rra1", "pm2", "pm2_rra1_terms", "rra1_basis"),
             "risk_reversal": ("rra1", "pm2", "pm2_rra1_terms", "rra1_skew"),
             "covered_call": ("rra1", "pm2", "pm2_rra1_terms", "rra1_cover")}


@pytest.mark.parametrize(("book", "name"), [(b, n) for b, sets in TERM_SETS.items() for n in sets])
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_property_each_book_gets_the_charge_of_its_new_term_and_no_other(book: str, name: str,
                                                                         data: st.DataObject) -> None:
    """Random calendars, risk reversals and covered calls under each parameter set (every set drawn from,
    rather than one `sampled_from` that may skip a set in a short run)."""
    CHECKS[book](data.draw(STRATEGIES[book](name), label=book))


FIXED_BOOKS = [  # (kind, book, the worst scenario under PM2 when the new term binds)
    ("calendar", CALENDAR, None), ("calendar", SHORT_CALENDAR, "basis"), ("risk_reversal", RISK_REVERSAL, None),
    ("risk_reversal", HEDGED_WINGS, "linear"), ("covered_call", COVERED_CALL, None)]


@pytest.mark.parametrize("name", ["pm2", "rra1"])
@pytest.mark.parametrize(("kind", "book", "binds"), FIXED_BOOKS)
def test_fixed_books_get_the_charge_of_their_new_term_and_no_other(kind: str, book: Book, binds: str | None,
                                                                   name: str) -> None:
    """Fixed books through the same checks: under PM2 each term is charged (and binds where noted), under
    RRA-1 none is."""
    example = dataclasses.replace(book, params=name)
    CHECKS[kind](example)
    out = run(example, SETS[name])
    charged = {"calendar": out["basis_loss"], "risk_reversal": -out["scenario_pnl"].get("linear", 0.0),
               "covered_call": out["contingencies"]["collateral_mm"]}[kind]
    assert charged > 0.0 if name == "pm2" else charged == 0.0
    if name == "pm2" and binds:
        assert out["worst_scenario_name"] == binds


PARAM_SETS = {name: SETS[name] for name in ("rra1", "pm2", "pm2_rra1_terms")}
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
