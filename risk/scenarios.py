"""The scenario list of a parameter set and one instrument's values in it, reference form (`math`).

A scenario (`risk.params.Scenario`) moves every price of underlying u by `m = shock * PSR_u / n`
(n = `price_steps`): the shocked forward is `(F - F_fixed) (1 + m) + F_fixed` (only the part of the
settlement average not yet fixed moves). Options are revalued at `DTE' = max(DTE - look_ahead, 0)` with
the scenario's vol: `none` sigma, `up` `max(vol_up_floor, sigma (1 + c_up w))`, `down`
`sigma max(0, 1 - c_down w)`, `linear`/`abs` sigma times the skew multiplier (docs/risk_v2.md section 3),
where `w = (T / max(DTE, floor)) ^ p` from the current DTE. For RRA-1 this is RISK_SPEC.md section 2:
the list is `compute_rra1_scenarios`, `s = 3 (k + n) + j`.
Values here are unweighted; `compute_unit_pnl` gives `weight * (V' - V)` per long unit (the per-position
form of a model without expiry terms). Nothing is persisted.
"""

from __future__ import annotations

import math

from risk.instruments import (
    Instrument,
    Market,
    get_fixed_part,
    get_rate,
    get_reference_price,
    is_option,
)
from risk.params import RiskParams, Scenario
from risk.pricing import compute_black76_price, compute_tau


def compute_move(params: RiskParams, underlying: str, scenario: Scenario) -> float:
    """Relative price move `m = shock * PSR_u / n` of a scenario."""
    return scenario.shock * params.get_psr(underlying) / params.price_steps


def compute_basis_moves(params: RiskParams, underlying: str) -> tuple[float, float]:
    """(up, down) moves of the basis contingency, in the same units as the scenario shocks."""
    psr, n = params.get_psr(underlying), params.price_steps
    return params.basis_shock_up * psr / n, params.basis_shock_down * psr / n


def compute_shocked_price(price: float, fixed: float, move: float) -> float:
    return (price - fixed) * (1.0 + move) + fixed


def compute_vol_weight(days_to_expiry: float, params: RiskParams) -> float:
    """`w = (T / max(DTE, floor)) ^ p`, `p` short below or at the threshold T, long above."""
    threshold = params.w_dte_threshold
    exponent = params.w_exponent_short if days_to_expiry <= threshold else params.w_exponent_long
    return (threshold / max(days_to_expiry, params.w_dte_floor)) ** exponent


def compute_vol_multipliers(days_to_expiry: float, params: RiskParams) -> tuple[float, float]:
    """(down, up) relative vol multipliers of an option with the given current DTE."""
    w = compute_vol_weight(days_to_expiry, params)
    return max(0.0, 1.0 - params.vol_down_coefficient * w), 1.0 + params.vol_up_coefficient * w


def compute_skew_multiplier(mode: str, strike: float, forward: float, days_to_expiry: float,
                            params: RiskParams) -> float:
    """`max(0, 1 + clamp(k cap / k*, -cap, cap))` with `k = ln(K/F)` (linear) or `|ln(K/F)|` (abs),
    `cap = slope sqrt(tau) + cap0` and `k* = max(k*_min, sqrt(tau) width (static + sqrt(tau) scale))`."""
    root = math.sqrt(compute_tau(days_to_expiry))
    if mode == "linear":
        cap = params.skew_linear_cap_slope * root + params.skew_linear_cap
    else:
        cap = params.skew_abs_cap_slope * root + params.skew_abs_cap
    k_star = max(params.skew_min_k_star,
                 root * params.skew_width_scale * (params.skew_vol_static + root * params.skew_vol_scale))
    k = math.log(strike / forward)
    if mode == "abs":
        k = abs(k)
    return max(0.0, 1.0 + max(-cap, min(cap, k * cap / k_star)))


def compute_scenario_vol(instrument: Instrument, scenario: Scenario, forward: float, params: RiskParams,
                         multipliers: tuple[float, float] | None = None) -> float:
    """The option's vol in the scenario; `multipliers` = `compute_vol_multipliers` of its DTE (computed
    when not given)."""
    sigma, days = instrument.vol, instrument.days_to_expiry
    if scenario.vol == "none":
        return sigma
    if scenario.vol in ("up", "down"):
        down, up = multipliers or compute_vol_multipliers(days, params)
        return max(params.vol_up_floor, sigma * up) if scenario.vol == "up" else sigma * down
    return sigma * compute_skew_multiplier(scenario.vol, instrument.strike, forward, days, params)


def compute_option_value(instrument: Instrument, market: Market, forward: float | None = None,
                         days: float | None = None, sigma: float | None = None) -> float:
    """V of one long unit at the given forward, DTE and vol (the instrument's own by default)."""
    return compute_black76_price(
        get_reference_price(market, instrument) if forward is None else forward, instrument.strike,
        compute_tau(instrument.days_to_expiry if days is None else days), instrument.vol if sigma is None else sigma,
        instrument.right == "call", get_rate(market, instrument))


def compute_look_ahead_days(days_to_expiry: float, params: RiskParams) -> float:
    return max(days_to_expiry - params.look_ahead_days, 0.0)


def compute_shocked_values(instrument: Instrument, market: Market, params: RiskParams) -> list[float]:
    """Per scenario, the unweighted value of one long unit after the scenario: V' for an option, the
    shocked reference price for futures, perps and spot."""
    forward = get_reference_price(market, instrument)
    fixed = get_fixed_part(market, instrument)
    multipliers = compute_vol_multipliers(instrument.days_to_expiry, params) if is_option(instrument) else None
    out: list[float] = []
    for scenario in params.scenarios:
        shocked = compute_shocked_price(forward, fixed, compute_move(params, instrument.underlying, scenario))
        if not is_option(instrument):
            out.append(shocked)
            continue
        sigma = compute_scenario_vol(instrument, scenario, forward, params, multipliers)
        out.append(compute_option_value(instrument, market, shocked,
                                        compute_look_ahead_days(instrument.days_to_expiry, params), sigma))
    return out


def compute_base_value(instrument: Instrument, market: Market) -> float:
    """The unshocked counterpart of `compute_shocked_values`: V for options, F for the others."""
    if is_option(instrument):
        return compute_option_value(instrument, market)
    return get_reference_price(market, instrument)


def compute_unit_pnl(instrument: Instrument, market: Market, params: RiskParams) -> list[float]:
    """Weighted P&L of one long unit in every scenario, `weight * (V' - V)` (no expiry terms)."""
    base = compute_base_value(instrument, market)
    shocked = compute_shocked_values(instrument, market, params)
    return [s.weight * (v - base) for s, v in zip(params.scenarios, shocked, strict=True)]
