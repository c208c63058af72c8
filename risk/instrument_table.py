"""Per-instrument figures of the batch engine: every instrument priced once per scenario.

`compute_instrument_table` turns the market's instruments into dense float64 arrays (numpy, vectorised
Black-76). Two layouts, chosen by the parameter set (`RiskParams.has_expiry_terms`):
- per-position model (RRA-1): `risk` is the weighted scenario P&L per long unit, `weight (V' - V)` or
  `weight (F' - F)`, and an instrument's group is its underlying;
- expiry model (static discounting, skew, basis or naked-short terms): options carry their unweighted
  shocked values `V'` in `risk` (the per-expiry transform of docs/risk_v2.md section 4 needs the sums
  `W_e,s` first) and their values after the basis moves in `basis`; futures, perps and spot carry their
  unweighted `F' - F`. Groups are (underlying, expiry) for options and one linear
  group per underlying (`GroupTable`). `single_long`/`single_short` hold the figures of a position alone
  in its group (the transform of a one-position book is linear in q on each side), which the accounts
  phase uses for every position that is alone in its group and for linear instruments.
Every transcendental (prices, vol weights, skew, discount factors) comes from `risk.detmath` and every
other operation is an IEEE basic or exact one, so the table is the same bits on every CPU.
Invariants: an instrument that fails validation keeps all-zero arrays, `underlying_index == -1` and an
entry in `errors`; the formulas are those of `risk.scenarios` / `risk.expiry_terms` / `risk.reference`.
Nothing is persisted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from risk import detmath
from risk.errors import InvalidInput
from risk.instruments import (
    Instrument,
    Market,
    get_fixed_part,
    get_rate,
    get_reference_price,
    is_dated,
    validate_instrument,
)
from risk.params import SKEW_MODES, RiskParams
from risk.pricing import DAYS_PER_YEAR, compute_black76_price_array

CONTINGENCY_COLUMNS = ("perp_notional", "oracle_alone", "oracle_with_perp")
"""Per-unit contingency figures (scaled by |q|): `S` of a perp (its notional, charged at the perp rates;
> 0 marks a perp held), the oracle charge of the position when the account holds no perp of its
underlying and when it does."""


@dataclass(frozen=True)
class InstrumentError:
    instrument: int
    field: str
    reason: str


@dataclass(frozen=True)
class GroupTable:
    """Per group (the segment key of the accounts phase): its underlying and the per-expiry constants."""

    underlying: np.ndarray  # int32 underlying index
    is_expiry: np.ndarray  # bool: an (underlying, expiry) group of options
    discount_positive: np.ndarray  # D for a shocked expiry value >= 0 (1 for linear groups)
    discount_negative: np.ndarray
    basis_factor: np.ndarray  # add + mult tau (0 for linear groups)


@dataclass(frozen=True)
class InstrumentTable:
    """Arrays indexed by instrument (the column order of the positions matrix)."""

    underlying_index: np.ndarray  # int32 index into params.underlyings, -1 when invalid
    is_option: np.ndarray  # bool
    reference_price: np.ndarray  # F: forward (options, futures), perp mark (perps) or spot
    spot: np.ndarray  # S of the underlying
    risk: np.ndarray  # (instruments, S) see the module docstring
    mtm: np.ndarray  # MtM of one long unit: V for options, S for spot, 0 for futures and perps
    isolated_long: np.ndarray  # R_i of one long unit
    isolated_short: np.ndarray  # R_i of one short unit
    som: np.ndarray  # SOM per short unit: rate * S for options, else 0
    penalty: np.ndarray  # LQ-1 penalty per unit: rate * S
    group: np.ndarray  # int32 group id (underlying index in the per-position model), -1 when invalid
    strike_key: np.ndarray  # int64 (group, strike) id of options (naked shorts pair call and put), -1 others
    basis: np.ndarray  # (instruments, 2) option values after the basis moves up, down (expiry model)
    single_long: np.ndarray  # (instruments, S + 1) expiry model: P&L and basis of a long unit alone in its group
    single_short: np.ndarray  # of a short unit, negated (`q * row`); linear instruments: their weighted P&L
    contingency: np.ndarray  # (instruments, len(CONTINGENCY_COLUMNS)) or (instruments, 0) when unused
    groups: GroupTable
    errors: tuple[InstrumentError, ...]

    def take(self, order: np.ndarray) -> InstrumentTable:
        """The table with its rows in `order` (groups and errors unchanged)."""
        fields = {name: getattr(self, name)[order] for name in (
            "underlying_index", "is_option", "reference_price", "spot", "risk", "mtm", "isolated_long",
            "isolated_short", "som", "penalty", "group", "strike_key", "basis", "single_long", "single_short",
            "contingency")}
        return InstrumentTable(**fields, groups=self.groups, errors=self.errors)


def uses_contingency_columns(params: RiskParams) -> bool:
    """Perp or oracle contingencies are charged (naked shorts have their own pass)."""
    return (params.perp_mm_rate, params.perp_im_rate, params.oracle_confidence_threshold) != (0.0, 0.0, 0.0)


def _validate_all(
    instruments: Sequence[Instrument], market: Market, params: RiskParams
) -> tuple[np.ndarray, list[InstrumentError]]:
    valid = np.ones(len(instruments), dtype=bool)
    errors: list[InstrumentError] = []
    for i, inst in enumerate(instruments):
        try:
            validate_instrument(inst, market, params, f"instruments[{i}]")
        except InvalidInput as exc:
            valid[i] = False
            errors.append(InstrumentError(i, exc.field, exc.reason))
    return valid, errors


def _where_max(a: np.ndarray, b: np.ndarray | float) -> np.ndarray:
    return np.where(a >= b, a, b)


def _where_min(a: np.ndarray, b: np.ndarray | float) -> np.ndarray:
    return np.where(a <= b, a, b)


def compute_vol_weight_array(days: np.ndarray, params: RiskParams) -> np.ndarray:
    """`risk.scenarios.compute_vol_weight` over an array of current DTEs: `(T / max(DTE, floor)) ^ p`."""
    threshold, floor = params.w_dte_threshold, params.w_dte_floor
    exponent = np.where(days <= threshold, params.w_exponent_short, params.w_exponent_long)
    return detmath.power(threshold / np.where(days > floor, days, floor), exponent)


def compute_skew_multiplier_array(mode: str, strike: np.ndarray, forward: np.ndarray, days: np.ndarray,
                                  params: RiskParams) -> np.ndarray:
    """`risk.scenarios.compute_skew_multiplier` over arrays."""
    root = detmath.sqrt(days / DAYS_PER_YEAR)
    if mode == "linear":
        cap = params.skew_linear_cap_slope * root + params.skew_linear_cap
    else:
        cap = params.skew_abs_cap_slope * root + params.skew_abs_cap
    width = root * params.skew_width_scale * (params.skew_vol_static + root * params.skew_vol_scale)
    k_star = _where_max(width, params.skew_min_k_star)
    k = detmath.log(strike / forward)
    if mode == "abs":
        k = np.abs(k)
    clamped = _where_min(_where_max(k * cap / k_star, -cap), cap)
    return _where_max(1.0 + clamped, 0.0)


def compute_scenario_vols(vol: np.ndarray, strike: np.ndarray, forward: np.ndarray, days: np.ndarray,
                          params: RiskParams) -> np.ndarray:
    """(n, S) the vol of each option in each scenario (docs/risk_v2.md section 3)."""
    w = compute_vol_weight_array(days, params)
    down = 1.0 - params.vol_down_coefficient * w
    by_mode = {"none": vol, "down": vol * np.where(down > 0.0, down, 0.0)}
    up = vol * (1.0 + params.vol_up_coefficient * w)
    by_mode["up"] = np.where(up >= params.vol_up_floor, up, params.vol_up_floor)
    for mode in SKEW_MODES:
        if any(s.vol == mode for s in params.scenarios):
            by_mode[mode] = vol * compute_skew_multiplier_array(mode, strike, forward, days, params)
    return np.stack([by_mode[s.vol] for s in params.scenarios], axis=1)


def compute_shocked_prices(price: np.ndarray, fixed: np.ndarray, move: np.ndarray) -> np.ndarray:
    """`(F - F_fixed) (1 + m) + F_fixed` (`F (1 + m)` bit for bit when nothing is fixed)."""
    if not fixed.any():
        return price * (1.0 + move)
    return (price - fixed) * (1.0 + move) + fixed


def compute_moves(psr: np.ndarray, params: RiskParams) -> np.ndarray:
    """(n, S) relative move `shock * PSR_u / n` of each instrument's underlying in each scenario."""
    shocks = np.array([s.shock for s in params.scenarios], dtype=np.float64)
    return shocks[None, :] * psr[:, None] / params.price_steps


@dataclass(frozen=True)
class _Options:
    """Inputs of the options among the instruments (1-d arrays in instrument order)."""

    forward: np.ndarray
    fixed: np.ndarray
    strike: np.ndarray
    days: np.ndarray
    vol: np.ndarray
    is_call: np.ndarray
    rate: np.ndarray
    psr: np.ndarray


def compute_option_values(o: _Options, params: RiskParams) -> tuple[np.ndarray, np.ndarray]:
    """(unweighted value per long unit in each scenario (n, S), current value (n,))."""
    base = compute_black76_price_array(o.forward, o.strike, o.days / DAYS_PER_YEAR, o.vol, o.is_call, o.rate)
    shocked = compute_shocked_prices(o.forward[:, None], o.fixed[:, None], compute_moves(o.psr, params))
    aged = o.days - params.look_ahead_days
    tau_after = np.where(aged > 0.0, aged, 0.0) / DAYS_PER_YEAR
    sigma = compute_scenario_vols(o.vol, o.strike, o.forward, o.days, params)
    value = compute_black76_price_array(shocked, o.strike[:, None], tau_after[:, None], sigma, o.is_call[:, None],
                                        o.rate[:, None])
    return value, base


def compute_basis_values(o: _Options, params: RiskParams) -> np.ndarray:
    """(n, 2) option values after the basis moves up and down (vol unchanged, current DTE)."""
    shocks = np.array([params.basis_shock_up, params.basis_shock_down], dtype=np.float64)
    move = shocks[None, :] * o.psr[:, None] / params.price_steps
    shocked = compute_shocked_prices(o.forward[:, None], o.fixed[:, None], move)
    return compute_black76_price_array(shocked, o.strike[:, None], (o.days / DAYS_PER_YEAR)[:, None],
                                       o.vol[:, None], o.is_call[:, None], o.rate[:, None])


def compute_linear_risk(price: np.ndarray, fixed: np.ndarray, psr: np.ndarray, params: RiskParams,
                        weighted: bool = True) -> np.ndarray:
    """Scenario P&L `w_s (F' - F)` (unweighted: `F' - F`) per long unit of futures, perps and spot (and of one
    unit of value of a risk-cancelling collateral asset: F = 1)."""
    shocked = compute_shocked_prices(price[:, None], fixed[:, None], compute_moves(psr, params))
    if not weighted:
        return shocked - price[:, None]
    weights = np.array([s.weight for s in params.scenarios], dtype=np.float64)
    return weights[None, :] * (shocked - price[:, None])


def compute_discount_arrays(days: np.ndarray, rate: np.ndarray, params: RiskParams) -> tuple[np.ndarray, np.ndarray]:
    """`risk.expiry_terms.compute_discount_factors` over arrays: (d_pos, d_neg)."""
    tau = days / DAYS_PER_YEAR
    positive = params.discount_long_base * detmath.exp(
        -tau * (rate * params.discount_long_rate_mult + params.discount_long_rate_add))
    scaled = params.discount_short_base / detmath.exp(
        -tau * (rate * params.discount_short_rate_mult + params.discount_short_rate_add))
    return positive, _where_min(1.0 / detmath.exp(-rate * tau), scaled)


def transform_expiry_values(shocked: np.ndarray, mtm: np.ndarray, positive: np.ndarray, negative: np.ndarray,
                            params: RiskParams, out: np.ndarray | None = None) -> np.ndarray:
    """(m, S) scenario P&L `g_s(weight_s (W D(W) - mtm))` of m expiry books from their summed shocked
    values W (m, S), MtM (m,) and discount factors (m,) (`risk.expiry_terms.compute_expiry_pnl`); into `out`
    (may be `shocked` itself) when given. A linear book (its F' - F summed, mtm 0, both factors 1) comes
    out as `weight_s W` (its skew columns are 0)."""
    weights = np.array([s.weight for s in params.scenarios], dtype=np.float64)
    factor = np.where(shocked < 0.0, negative[:, None], positive[:, None])
    y = np.multiply(shocked, factor, out=out)
    np.subtract(y, mtm[:, None], out=y)
    np.multiply(y, weights[None, :], out=y)
    skew = [i for i, s in enumerate(params.scenarios) if s.vol in SKEW_MODES]
    for i in skew:
        y[:, i] = -np.abs(y[:, i])
    return y


def compute_basis_array(up: np.ndarray, down: np.ndarray, mtm: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """`min(U - mtm, D - mtm, 0) * factor` (<= 0) per expiry book."""
    worst = _where_min(_where_min(up - mtm, down - mtm), 0.0)
    return worst * factor


def compute_oracle_rate(confidence: np.ndarray | float, params: RiskParams) -> np.ndarray:
    """`OC(c, 1)`: `(1 - c) margin` when `c` is below the threshold, else 0."""
    c = np.asarray(confidence, dtype=np.float64)
    return np.where(c < params.oracle_confidence_threshold, (1.0 - c) * params.oracle_confidence_margin, 0.0)


def compute_groups(uid: np.ndarray, days: np.ndarray, option: np.ndarray, rate: np.ndarray, params: RiskParams,
                   expiry_model: bool) -> tuple[np.ndarray, GroupTable]:
    """Group id of every instrument (-1 when invalid) and the per-group constants: one group per
    underlying, or in the expiry model one linear group per underlying followed by its expiries."""
    n_u = len(params.underlyings)
    if not expiry_model:
        ones = np.ones(n_u)
        return uid.copy(), GroupTable(np.arange(n_u, dtype=np.int32), np.zeros(n_u, dtype=bool), ones, ones,
                                      np.zeros(n_u))
    keys = sorted({(int(u), 1, float(d)) if o else (int(u), 0, 0.0)
                   for u, d, o in zip(uid.tolist(), days.tolist(), option.tolist(), strict=True) if u >= 0}
                  | {(u, 0, 0.0) for u in range(n_u)})
    index = {k: i for i, k in enumerate(keys)}
    group = np.array([index[(int(u), 1, float(d)) if o else (int(u), 0, 0.0)] if u >= 0 else -1
                      for u, d, o in zip(uid.tolist(), days.tolist(), option.tolist(), strict=True)], dtype=np.int32)
    is_expiry = np.array([k[1] == 1 for k in keys], dtype=bool)
    g_days = np.array([k[2] for k in keys], dtype=np.float64)
    g_rate = np.zeros(len(keys))
    for i, g in enumerate(group.tolist()):
        if g >= 0 and is_expiry[g]:
            g_rate[g] = rate[i]
    positive, negative = compute_discount_arrays(g_days, g_rate, params)
    factor = params.basis_add_factor + params.basis_mult_factor * (g_days / DAYS_PER_YEAR)
    return group, GroupTable(np.array([k[0] for k in keys], dtype=np.int32), is_expiry,
                             np.where(is_expiry, positive, 1.0), np.where(is_expiry, negative, 1.0),
                             np.where(is_expiry, factor, 0.0))


def compute_contingency_rates(kind: np.ndarray, uid: np.ndarray, spot: np.ndarray, instruments: Sequence[Instrument],
                              market: Market, params: RiskParams) -> np.ndarray:
    """(n, len(CONTINGENCY_COLUMNS)) per-unit contingency figures (see `CONTINGENCY_COLUMNS`)."""
    out = np.zeros((len(kind), len(CONTINGENCY_COLUMNS)))
    perp = kind == "perp"
    option = kind == "option"
    names = params.underlyings
    c_spot = np.array([market.get_spot_confidence(names[u]) if u >= 0 else 1.0 for u in uid.tolist()])
    c_perp = np.array([market.get_perp_confidence(names[u]) if u >= 0 else 1.0 for u in uid.tolist()])
    c_expiry = np.array([market.get_expiry_confidence((names[u], float(x.days_to_expiry))) if o and u >= 0 else 1.0
                         for x, u, o in zip(instruments, uid.tolist(), option.tolist(), strict=True)])
    with_perp = _where_min(c_spot, c_perp)
    out[:, 0] = np.where(perp, spot, 0.0)
    alone = compute_oracle_rate(_where_min(c_spot, c_expiry), params) * spot
    held = compute_oracle_rate(_where_min(with_perp, c_expiry), params) * spot
    perp_rate = compute_oracle_rate(with_perp, params) * spot
    out[:, 1] = np.where(option, alone, np.where(perp, perp_rate, 0.0))
    out[:, 2] = np.where(option, held, np.where(perp, perp_rate, 0.0))
    return out


def _isolated_linear(risk: np.ndarray, som: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lowest, highest = risk.min(axis=1, initial=0.0), risk.max(axis=1, initial=0.0)
    return np.where(lowest < 0.0, -lowest, 0.0), np.where(highest > som, highest, som)


def compute_single_rows(values: np.ndarray, base: np.ndarray, basis: np.ndarray, group: np.ndarray,
                        groups: GroupTable, params: RiskParams) -> tuple[np.ndarray, np.ndarray]:
    """(n, S + 1) per-unit figures of options alone in their expiry: the transformed scenario P&L and the
    basis contingency, for a long row and a short row scaled so that `q * row` is the position's own figure
    (`transform_expiry_values` and `compute_basis_array` of the one-position book `q V'`)."""
    out = []
    for sign in (1.0, -1.0):
        pnl = transform_expiry_values(sign * values, sign * base, groups.discount_positive[group],
                                      groups.discount_negative[group], params)
        worst = compute_basis_array(sign * basis[:, 0], sign * basis[:, 1], sign * base, groups.basis_factor[group])
        out.append(sign * np.hstack([pnl, worst[:, None]]))  # a short row: q * (-x) = |q| x
    return out[0], out[1]


def _isolated_options(single_long: np.ndarray, single_short: np.ndarray, som: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """R of one long and one short option unit alone (their P&L and basis are the single rows)."""
    out = []
    for figures in (single_long, -single_short):
        lowest = figures.min(axis=1, initial=0.0)
        out.append(np.where(lowest < 0.0, -lowest, 0.0))
    return out[0], np.where(out[1] >= som, out[1], som)


def compute_instrument_table(
    instruments: Sequence[Instrument], market: Market, params: RiskParams
) -> InstrumentTable:
    n = len(instruments)
    expiry_model = params.has_expiry_terms()
    valid, errors = _validate_all(instruments, market, params)
    index_of = {u: i for i, u in enumerate(params.underlyings)}
    kind = np.array([x.kind for x in instruments], dtype=object)
    pairs = list(zip(instruments, valid.tolist(), strict=True))
    uid = np.array([index_of[x.underlying] if ok else -1 for x, ok in pairs], dtype=np.int32)
    spot = np.array([market.spot[x.underlying] if ok else 0.0 for x, ok in pairs], dtype=np.float64)
    ref = np.array([get_reference_price(market, x) if ok else 0.0 for x, ok in pairs], dtype=np.float64)
    fixed = np.array([get_fixed_part(market, x) if ok and is_dated(x) else 0.0 for x, ok in pairs])
    rate = np.array([get_rate(market, x) if ok and is_dated(x) else 0.0 for x, ok in pairs])
    days = np.array([x.days_to_expiry if ok and is_dated(x) else 0.0 for x, ok in pairs], dtype=np.float64)
    psr = np.array([params.get_psr(x.underlying) if ok else 0.0 for x, ok in pairs], dtype=np.float64)
    option = (kind == "option") & valid
    linear = valid & ~option
    group, groups = compute_groups(uid, days, option, rate, params, expiry_model)
    risk = np.zeros((n, len(params.scenarios)), dtype=np.float64)
    mtm = np.zeros(n, dtype=np.float64)
    basis = np.zeros((n, 2), dtype=np.float64)
    if option.any():
        chosen = [x for x, o in zip(instruments, option.tolist(), strict=True) if o]
        opts = _Options(ref[option], fixed[option], np.array([x.strike for x in chosen], dtype=np.float64),
                        days[option], np.array([x.vol for x in chosen], dtype=np.float64),
                        np.array([x.right == "call" for x in chosen], dtype=bool), rate[option], psr[option])
        values, mtm[option] = compute_option_values(opts, params)
        if expiry_model:
            risk[option] = values
            basis[option] = compute_basis_values(opts, params)
        else:
            weights = np.array([s.weight for s in params.scenarios], dtype=np.float64)
            risk[option] = weights[None, :] * (values - mtm[option][:, None])
    if linear.any():
        risk[linear] = compute_linear_risk(ref[linear], fixed[linear], psr[linear], params, weighted=not expiry_model)
    is_spot = (kind == "spot") & valid
    mtm[is_spot] = spot[is_spot]
    som = np.where(option, params.short_option_minimum_rate * spot, 0.0)
    weighted = risk
    if expiry_model:  # linear rows are unweighted there (the per-expiry transform weights every book)
        weights = np.array([s.weight for s in params.scenarios], dtype=np.float64)
        weighted = np.where(option[:, None], 0.0, weights[None, :] * risk)
    isolated_long, isolated_short = _isolated_linear(weighted, som)
    single_long = np.hstack([weighted, np.zeros((n, 1))]) if expiry_model else np.zeros((n, 0))
    single_short = single_long.copy()
    if expiry_model and option.any():
        single_long[option], single_short[option] = compute_single_rows(
            risk[option], mtm[option], basis[option], group[option], groups, params)
        isolated_long[option], isolated_short[option] = _isolated_options(
            single_long[option], single_short[option], som[option])
    strike_key = np.full(n, -1, dtype=np.int64)
    if expiry_model and option.any():
        strikes = np.array([x.strike for x in instruments], dtype=np.float64)
        _, inverse = np.unique(np.stack([group[option].astype(np.float64), strikes[option]], axis=1), axis=0,
                               return_inverse=True)
        strike_key[option] = inverse.ravel()
    contingency = (compute_contingency_rates(np.where(valid, kind, ""), uid, spot, instruments, market, params)
                   if uses_contingency_columns(params) else np.zeros((n, 0)))
    return InstrumentTable(
        underlying_index=uid, is_option=option, reference_price=ref, spot=spot, risk=risk, mtm=mtm,
        isolated_long=isolated_long, isolated_short=isolated_short, som=som,
        penalty=params.liquidation_penalty_rate * spot, group=group, strike_key=strike_key, basis=basis,
        single_long=single_long, single_short=single_short, contingency=contingency, groups=groups,
        errors=tuple(errors),
    )
