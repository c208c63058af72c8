"""Independent closed forms of the v2 terms for the property tests, written from docs/risk_v2.md (sections
3-5), not from the code: Black-76 with discounting, the shocked forward, the static discount factors, the
skew multiplier, the basis contingency of one expiry, the skew scenario P&L of one expiry, the naked-short
units and the IM factor. A parameter set is read only as data (its field values); nothing here calls the
engine. Plus `Book`, a small account description that builds the engine's inputs."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

from risk.instruments import Instrument, Market, Position
from risk.params import RiskParams


@dataclass(frozen=True)
class Expiry:
    """One expiry of the book's underlying: forward, rate and the fixed part of the settlement average."""

    days: float
    forward: float
    rate: float = 0.0
    fixed: float = 0.0


@dataclass(frozen=True)
class Leg:
    """One option position; `expiry` indexes `Book.expiries`."""

    expiry: int
    strike: float
    right: str
    vol: float
    quantity: float


@dataclass(frozen=True)
class Book:
    """One account on one underlying: its expiries, option legs, collateral balances and the stable's price."""

    params: str  # the key of the parameter set in the test's table
    underlying: str
    spot: float
    expiries: tuple[Expiry, ...]
    legs: tuple[Leg, ...]
    collateral: tuple[tuple[str, float], ...] = ()
    stable_price: float = 1.0
    hedge: float = 0.0  # a future of the first expiry (a delta hedge): linear, in no v2 term

    def market(self) -> Market:
        u = self.underlying
        keys = [(u, e.days) for e in self.expiries]
        return Market(
            spot={u: self.spot}, forwards={k: e.forward for k, e in zip(keys, self.expiries, strict=True)},
            asset_prices={"USDC": 1.0, u: self.spot},
            rates={k: e.rate for k, e in zip(keys, self.expiries, strict=True)},
            forward_fixed={k: e.fixed for k, e in zip(keys, self.expiries, strict=True) if e.fixed > 0.0},
            stable_price=self.stable_price)

    def positions(self) -> list[Position]:
        out = [Position(Instrument(self.underlying, "option", self.expiries[g.expiry].days, g.strike, g.right, g.vol),
                        g.quantity) for g in self.legs]
        if self.hedge != 0.0:
            out.append(Position(Instrument(self.underlying, "future", self.expiries[0].days), self.hedge))
        return out


def ncdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def priced(book: Book, params: RiskParams) -> Book:
    """`book` as the engines price it under `params`: its rates, or every rate 0 when `use_rates` is 0
    (RRA-1 prices at r = 0, whatever the market publishes)."""
    if params.use_rates:
        return book
    return dataclasses.replace(book, expiries=tuple(dataclasses.replace(e, rate=0.0) for e in book.expiries))


def black76(f: float, k: float, days: float, vol: float, call: bool, rate: float) -> float:
    """`e^{-r tau} [F N(d1) - K N(d2)]` (put `e^{-r tau} [K N(-d2) - F N(-d1)]`), `tau = days / 365`;
    the discounted intrinsic value when `tau` or `vol` is 0."""
    tau = days / 365.0
    discount = math.exp(-rate * tau)
    if tau <= 0.0 or vol <= 0.0:
        return discount * max(f - k if call else k - f, 0.0)
    d1 = (math.log(f / k) + 0.5 * vol * vol * tau) / (vol * math.sqrt(tau))
    d2 = d1 - vol * math.sqrt(tau)
    return discount * (f * ncdf(d1) - k * ncdf(d2) if call else k * ncdf(-d2) - f * ncdf(-d1))


def hedge_units(book: Book) -> float:
    """The futures (first expiry) that offset the options' sensitivity to a common relative move of every
    forward (central difference, 1e-4)."""
    total = 0.0
    for g in book.legs:
        f = book.expiries[g.expiry].forward
        total -= g.quantity * (leg_value(book, g, forward=f * 1.0001) - leg_value(book, g, forward=f * 0.9999)) / (
            0.0002 * book.expiries[0].forward)
    return total


def move(params: RiskParams, underlying: str, shock: float) -> float:
    """Relative move of a shock: `shock * PSR_u / price_steps`."""
    return shock * dict(params.price_scan_range)[underlying] / params.price_steps


def shocked_forward(e: Expiry, m: float) -> float:
    """`F' = (F - F_fixed)(1 + m) + F_fixed`: only the part not yet fixed moves."""
    return (e.forward - e.fixed) * (1.0 + m) + e.fixed


def leg_value(book: Book, g: Leg, forward: float | None = None, days: float | None = None,
              vol: float | None = None) -> float:
    """One long unit of the leg, at its own forward, DTE and vol unless given."""
    e = book.expiries[g.expiry]
    return black76(e.forward if forward is None else forward, g.strike, e.days if days is None else days,
                   g.vol if vol is None else vol, g.right == "call", e.rate)


def discount_factors(params: RiskParams, e: Expiry) -> tuple[float, float]:
    """(d_pos, d_neg): `long_base e^{-tau (r long_mult + long_add)}`,
    `min(e^{r tau}, short_base / e^{-tau (r short_mult + short_add)})`."""
    p, tau = params, e.days / 365.0
    d_pos = p.discount_long_base * math.exp(-tau * (e.rate * p.discount_long_rate_mult + p.discount_long_rate_add))
    d_neg = min(math.exp(e.rate * tau),
                p.discount_short_base / math.exp(-tau * (e.rate * p.discount_short_rate_mult
                                                         + p.discount_short_rate_add)))
    return d_pos, d_neg


def skew_multiplier(params: RiskParams, mode: str, strike: float, e: Expiry) -> float:
    """`max(0, 1 + clamp(k cap / k*, -cap, cap))`, `k = ln(K/F)` (abs: `|ln(K/F)|`), `cap = slope sqrt(tau) + cap`,
    `k* = max(k*_min, sqrt(tau) width (static + sqrt(tau) scale))` with the current `tau`."""
    p, root = params, math.sqrt(e.days / 365.0)
    cap = (p.skew_linear_cap_slope * root + p.skew_linear_cap if mode == "linear"
           else p.skew_abs_cap_slope * root + p.skew_abs_cap)
    k_star = max(p.skew_min_k_star, root * p.skew_width_scale * (p.skew_vol_static + root * p.skew_vol_scale))
    k = math.log(strike / e.forward)
    k = abs(k) if mode == "abs" else k
    return max(0.0, 1.0 + max(-cap, min(cap, k * cap / k_star)))


def expiry_legs(book: Book, index: int, legs: Sequence[Leg] | None = None) -> list[Leg]:
    return [g for g in (book.legs if legs is None else legs) if g.expiry == index]


def expiry_mtm(book: Book, legs: Sequence[Leg]) -> float:
    return sum(g.quantity * leg_value(book, g) for g in legs)


def basis_term(params: RiskParams, book: Book, legs: Sequence[Leg] | None = None) -> float:
    """`B = sum_e min(U_e - mtm_e, D_e - mtm_e, 0) (add + mult tau_e)` (<= 0): each expiry's options after
    the basis moves (vol unchanged, current DTE), each expiry its own worse side."""
    total = 0.0
    for i, e in enumerate(book.expiries):
        members = expiry_legs(book, i, legs)
        if not members:
            continue
        mtm = expiry_mtm(book, members)
        up, down = (sum(g.quantity * leg_value(book, g, forward=shocked_forward(e, move(params, book.underlying, s)))
                        for g in members) for s in (params.basis_shock_up, params.basis_shock_down))
        total += min(up - mtm, down - mtm, 0.0) * (params.basis_add_factor + params.basis_mult_factor * e.days / 365.0)
    return total


def skew_pnl(params: RiskParams, book: Book, legs: Sequence[Leg] | None = None) -> dict[str, float]:
    """Each skew scenario's P&L: per expiry `-|weight (W D(W) - mtm)|` with `W = sum q V'` (forward
    unshocked, DTE' = DTE - look-ahead, vol times the skew multiplier), summed over the expiries."""
    out: dict[str, float] = {}
    for s in params.scenarios:
        if s.vol not in ("linear", "abs"):
            continue
        out[s.name] = 0.0
        for i, e in enumerate(book.expiries):
            members = expiry_legs(book, i, legs)
            if not members:
                continue
            dte = max(e.days - params.look_ahead_days, 0.0)
            w = sum(g.quantity * leg_value(book, g, days=dte, vol=g.vol * skew_multiplier(params, s.vol, g.strike, e))
                    for g in members)
            d_pos, d_neg = discount_factors(params, e)
            out[s.name] += -abs(s.weight * (w * (d_pos if w >= 0.0 else d_neg) - expiry_mtm(book, members)))
    return out


def naked_units(book: Book) -> float:
    """`sum max(0, -sum q)` over (expiry, strike), calls and puts netted."""
    net: dict[tuple[float, float], float] = {}
    for g in book.legs:
        key = (book.expiries[g.expiry].days, g.strike)
        net[key] = net.get(key, 0.0) + g.quantity
    return sum(max(0.0, -q) for q in net.values())


def im_factor(params: RiskParams, stable_price: float) -> float:
    """`im_factor + (peg_threshold - p_stable) peg_factor` below the threshold, else `im_factor`."""
    if stable_price < params.peg_loss_threshold:
        return params.im_factor + (params.peg_loss_threshold - stable_price) * params.peg_loss_factor
    return params.im_factor
