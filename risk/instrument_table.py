"""Per-instrument risk arrays of the batch engine: every instrument priced once per scenario.

`compute_instrument_table` turns the market's instruments into dense float64 arrays (numpy, vectorised
Black-76): the weighted scenario P&L per long unit (instruments x S), the MtM per unit, the isolated
requirement per long and per short unit, the short-option-minimum and liquidation-penalty rates per unit.
Every transcendental (prices, vol weights) comes from `risk.detmath` and every other operation is an
IEEE basic or exact one, so the table is the same bits on every CPU.
Invariants: an instrument that fails validation keeps all-zero arrays, `underlying_index == -1` and an
entry in `errors`; the formulas are those of `risk.scenarios` / `risk.reference`. Nothing is persisted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from risk import detmath
from risk.errors import InvalidInput
from risk.instruments import Instrument, Market, get_reference_price, validate_instrument
from risk.params import RiskParams
from risk.pricing import DAYS_PER_YEAR, compute_black76_price_array
from risk.scenarios import compute_scenario_grid


@dataclass(frozen=True)
class InstrumentError:
    instrument: int
    field: str
    reason: str


@dataclass(frozen=True)
class InstrumentTable:
    """Arrays indexed by instrument (the column order of the positions matrix)."""

    underlying_index: np.ndarray  # int32 index into params.underlyings, -1 when invalid
    is_option: np.ndarray  # bool
    reference_price: np.ndarray  # F: forward (options, futures) or spot (perps, spot)
    spot: np.ndarray  # S of the underlying
    risk: np.ndarray  # (instruments, S) weighted P&L of one long unit per scenario
    mtm: np.ndarray  # MtM of one long unit: V for options, S for spot, 0 for futures and perps
    isolated_long: np.ndarray  # R_i of one long unit
    isolated_short: np.ndarray  # R_i of one short unit
    som: np.ndarray  # SOM per short unit: rate * S for options, else 0
    penalty: np.ndarray  # LQ-1 penalty per unit: rate * S
    errors: tuple[InstrumentError, ...]


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


def compute_vol_weight_array(days: np.ndarray, params: RiskParams) -> np.ndarray:
    """`risk.scenarios.compute_vol_weight` over an array of current DTEs: `(T / max(DTE, 1)) ^ p`."""
    threshold = params.w_dte_threshold
    exponent = np.where(days <= threshold, params.w_exponent_short, params.w_exponent_long)
    return detmath.power(threshold / np.where(days > 1.0, days, 1.0), exponent)


def compute_option_risk(
    forward: np.ndarray, strike: np.ndarray, days: np.ndarray, vol: np.ndarray, is_call: np.ndarray,
    psr: np.ndarray, params: RiskParams,
) -> tuple[np.ndarray, np.ndarray]:
    """(weighted scenario P&L per long unit (n, S), current value per unit (n,)) of options."""
    grid = compute_scenario_grid(params)
    steps = np.asarray(grid.steps, dtype=np.float64)
    states = np.asarray(grid.vol_states, dtype=np.int64)
    weights = np.asarray(grid.weights, dtype=np.float64)
    base = compute_black76_price_array(forward, strike, days / DAYS_PER_YEAR, vol, is_call)
    w = compute_vol_weight_array(days, params)
    down = 1.0 - params.vol_down_coefficient * w
    mults = np.stack([np.where(down > 0.0, down, 0.0), np.ones_like(w), 1.0 + params.vol_up_coefficient * w],
                     axis=1)
    move = steps[None, :] * psr[:, None] / params.price_steps
    shocked = forward[:, None] * (1.0 + move)
    aged = days - params.look_ahead_days
    tau_after = np.where(aged > 0.0, aged, 0.0) / DAYS_PER_YEAR
    value = compute_black76_price_array(shocked, strike[:, None], tau_after[:, None],
                                        vol[:, None] * mults[:, states], is_call[:, None])
    return weights[None, :] * (value - base[:, None]), base


def compute_linear_risk(forward: np.ndarray, psr: np.ndarray, params: RiskParams) -> np.ndarray:
    """Weighted scenario P&L `w_s (F' - F)` per long unit of futures, perps and spot."""
    grid = compute_scenario_grid(params)
    steps = np.asarray(grid.steps, dtype=np.float64)
    weights = np.asarray(grid.weights, dtype=np.float64)
    move = steps[None, :] * psr[:, None] / params.price_steps
    return weights[None, :] * (forward[:, None] * (1.0 + move) - forward[:, None])


def compute_instrument_table(
    instruments: Sequence[Instrument], market: Market, params: RiskParams
) -> InstrumentTable:
    n = len(instruments)
    size = compute_scenario_grid(params).size
    valid, errors = _validate_all(instruments, market, params)
    index_of = {u: i for i, u in enumerate(params.underlyings)}
    uid = np.array([index_of[x.underlying] if ok else -1 for x, ok in zip(instruments, valid, strict=True)],
                   dtype=np.int32)
    spot = np.array([market.spot[x.underlying] if ok else 0.0 for x, ok in zip(instruments, valid, strict=True)],
                    dtype=np.float64)
    ref = np.array([get_reference_price(market, x) if ok else 0.0 for x, ok in zip(instruments, valid, strict=True)],
                   dtype=np.float64)
    psr = np.array([params.get_psr(x.underlying) if ok else 0.0 for x, ok in zip(instruments, valid, strict=True)],
                   dtype=np.float64)
    option = np.array([x.kind == "option" for x in instruments], dtype=bool) & valid
    linear = valid & ~option
    risk = np.zeros((n, size), dtype=np.float64)
    mtm = np.zeros(n, dtype=np.float64)
    if option.any():
        opts = [x for x, o in zip(instruments, option, strict=True) if o]
        risk[option], mtm[option] = compute_option_risk(
            ref[option], np.array([x.strike for x in opts], dtype=np.float64),
            np.array([x.days_to_expiry for x in opts], dtype=np.float64),
            np.array([x.vol for x in opts], dtype=np.float64),
            np.array([x.right == "call" for x in opts], dtype=bool), psr[option], params)
    if linear.any():
        risk[linear] = compute_linear_risk(ref[linear], psr[linear], params)
    is_spot = np.array([x.kind == "spot" for x in instruments], dtype=bool) & valid
    mtm[is_spot] = spot[is_spot]
    som = np.where(option, params.short_option_minimum_rate * spot, 0.0)
    lowest, highest = risk.min(axis=1, initial=0.0), risk.max(axis=1, initial=0.0)
    isolated_long = np.where(lowest < 0.0, -lowest, 0.0)
    isolated_short = np.where(highest > som, highest, som)
    return InstrumentTable(
        underlying_index=uid, is_option=option, reference_price=ref, spot=spot, risk=risk, mtm=mtm,
        isolated_long=isolated_long, isolated_short=isolated_short, som=som,
        penalty=params.liquidation_penalty_rate * spot, errors=tuple(errors),
    )
