"""Per-expiry terms of docs/risk_v2.md sections 2 and 4, reference form (`math`): static discount factors,
the scenario P&L of one expiry's options and its basis contingency.

For the options of one (underlying, expiry) e with `W_s = sum q V'_s` (scenario s), `mtm = sum q V` and
`U`, `D` the values after the basis moves (vol unchanged, current DTE):
- `d_pos = long_base exp(-tau (r long_mult + long_add))`,
  `d_neg = min(1 / disc, short_base / exp(-tau (r short_mult + short_add)))`, `disc = exp(-r tau)`;
- scenario P&L `g_s(weight_s (W_s D(W_s) - mtm))` with `D(W) = d_pos` if `W >= 0` else `d_neg`, and
  `g_s(y) = -|y|` for a skew scenario (each expiry counts its worse sign), `y` otherwise;
- basis `B_e = min(U - mtm, D - mtm, 0) (add + mult tau)` (each expiry its own worse side, <= 0).
With RRA-1's neutral discount (both bases 1, no rate terms) `D = 1` and the P&L is `weight (W - mtm)`.
Nothing is persisted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from risk.params import SKEW_MODES, RiskParams
from risk.pricing import compute_tau


@dataclass(frozen=True)
class DiscountFactors:
    positive: float  # applied to a shocked expiry value >= 0
    negative: float  # applied to a shocked expiry value < 0


def compute_discount_factors(days_to_expiry: float, rate: float, params: RiskParams) -> DiscountFactors:
    tau = compute_tau(days_to_expiry)
    positive = params.discount_long_base * math.exp(
        -tau * (rate * params.discount_long_rate_mult + params.discount_long_rate_add))
    scaled = params.discount_short_base / math.exp(
        -tau * (rate * params.discount_short_rate_mult + params.discount_short_rate_add))
    return DiscountFactors(positive, min(1.0 / math.exp(-rate * tau), scaled))


def compute_expiry_pnl(shocked: Sequence[float], mtm: float, factors: DiscountFactors,
                       params: RiskParams) -> list[float]:
    """Scenario P&L of one expiry's options from their summed shocked values `W_s` and MtM."""
    out = []
    for scenario, value in zip(params.scenarios, shocked, strict=True):
        discounted = value * (factors.positive if value >= 0.0 else factors.negative)
        y = scenario.weight * (discounted - mtm)
        out.append(-abs(y) if scenario.vol in SKEW_MODES else y)
    return out


def compute_basis_loss(up: float, down: float, mtm: float, days_to_expiry: float, params: RiskParams) -> float:
    """`B_e = min(U - mtm, D - mtm, 0) (add + mult tau)` (<= 0; 0 when both factors are 0)."""
    if (params.basis_add_factor, params.basis_mult_factor) == (0.0, 0.0):
        return 0.0
    worst = min(up - mtm, down - mtm, 0.0)
    return worst * (params.basis_add_factor + params.basis_mult_factor * compute_tau(days_to_expiry))
