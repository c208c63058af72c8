"""The RRA-1 scenario grid (RISK_SPEC.md section 2) and per-unit scenario P&L of one instrument.

Scenario order: `s = 3 (k + n) + j` for the regular steps `k = -n..n` (n = `price_steps`) with
`j = 0` vol down, `1` none, `2` up; then `k = -extreme_k` and `k = +extreme_k` (vol none, weight
`extreme_weight`). A move in scenario s for underlying u is `m = k * PSR_u / n`; the shocked forward is
`F (1 + m)`. Options are revalued at `DTE' = max(DTE - look_ahead, 0)` with `sigma * mult`.
Invariants: the grid depends only on the parameters; P&L arrays are per long unit and already weighted.
Nothing is persisted.
"""

from __future__ import annotations

from dataclasses import dataclass

from risk.instruments import Instrument, Market, get_reference_price, is_option
from risk.params import RiskParams
from risk.pricing import compute_black76_price, compute_tau

VOL_DOWN, VOL_NONE, VOL_UP = 0, 1, 2


@dataclass(frozen=True)
class ScenarioGrid:
    """Per scenario s: the step k, the vol state and the P&L weight."""

    steps: tuple[int, ...]
    vol_states: tuple[int, ...]
    weights: tuple[float, ...]

    @property
    def size(self) -> int:
        return len(self.steps)


def compute_scenario_grid(params: RiskParams) -> ScenarioGrid:
    steps: list[int] = []
    states: list[int] = []
    weights: list[float] = []
    for k in range(-params.price_steps, params.price_steps + 1):
        for j in (VOL_DOWN, VOL_NONE, VOL_UP):
            steps.append(k)
            states.append(j)
            weights.append(1.0)
    for k in (-params.extreme_k, params.extreme_k):
        steps.append(k)
        states.append(VOL_NONE)
        weights.append(params.extreme_weight)
    return ScenarioGrid(tuple(steps), tuple(states), tuple(weights))


def compute_move(params: RiskParams, underlying: str, step: int) -> float:
    """Relative price move `m = k * PSR_u / n` of step k."""
    return step * params.get_psr(underlying) / params.price_steps


def compute_vol_weight(days_to_expiry: float, params: RiskParams) -> float:
    """`w = (T / max(DTE, 1)) ^ p`, `p` short below or at the threshold T, long above."""
    threshold = params.w_dte_threshold
    exponent = params.w_exponent_short if days_to_expiry <= threshold else params.w_exponent_long
    return (threshold / max(days_to_expiry, 1.0)) ** exponent


def compute_vol_multipliers(days_to_expiry: float, params: RiskParams) -> tuple[float, float, float]:
    """Relative vol multipliers (down, none, up) of an option with the given current DTE."""
    w = compute_vol_weight(days_to_expiry, params)
    return max(0.0, 1.0 - params.vol_down_coefficient * w), 1.0, 1.0 + params.vol_up_coefficient * w


def compute_look_ahead_days(days_to_expiry: float, params: RiskParams) -> float:
    return max(days_to_expiry - params.look_ahead_days, 0.0)


def compute_unit_pnl(instrument: Instrument, market: Market, params: RiskParams) -> list[float]:
    """Weighted P&L of one long unit in every scenario (the instrument's risk array per unit)."""
    grid = compute_scenario_grid(params)
    forward = get_reference_price(market, instrument)
    out: list[float] = []
    if not is_option(instrument):
        for k, w in zip(grid.steps, grid.weights, strict=True):
            shocked = forward * (1.0 + compute_move(params, instrument.underlying, k))
            out.append(w * (shocked - forward))
        return out
    is_call = instrument.right == "call"
    dte = instrument.days_to_expiry
    base = compute_black76_price(forward, instrument.strike, compute_tau(dte), instrument.vol, is_call)
    mults = compute_vol_multipliers(dte, params)
    tau_after = compute_tau(compute_look_ahead_days(dte, params))
    for k, j, w in zip(grid.steps, grid.vol_states, grid.weights, strict=True):
        shocked = forward * (1.0 + compute_move(params, instrument.underlying, k))
        value = compute_black76_price(shocked, instrument.strike, tau_after, instrument.vol * mults[j], is_call)
        out.append(w * (value - base))
    return out
