"""ES-1 tail metrics (RISK_SPEC.md section 5), reference form: VaR99 and ES99 of a single-underlying
portfolio over N equiprobable lognormal shocks of horizon h days; None for any other portfolio.

Invariants: `z_i = Phi^-1((i - 0.5) / N)`; `s = sigma_ref sqrt(h / 365)`; `F'_i = F exp(s z_i - s^2/2)`
for every forward, perp mark and spot; vol unchanged; options aged h days (priced with their expiry's rate); `m = ceil(N (1 - confidence))` computed
in exact integer arithmetic on the 1e-9 fixed-point confidence. Nothing is persisted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

from risk.instruments import Market, Position, get_rate, get_reference_price, is_option
from risk.params import FIXED_SCALE, RiskParams
from risk.pricing import compute_black76_price, compute_tau


def compute_tail_count(params: RiskParams) -> int:
    """`m = ceil(N (1 - confidence))`, at least 1 and at most N, without float rounding."""
    conf = round(params.es_confidence * FIXED_SCALE)
    m = -(-params.es_samples * (FIXED_SCALE - conf) // FIXED_SCALE)
    return min(max(m, 1), params.es_samples)


def compute_shock_factors(params: RiskParams, underlying: str) -> list[float]:
    """The N multiplicative forward shocks `exp(s z_i - s^2 / 2)`."""
    n = params.es_samples
    s = params.get_sigma_ref(underlying) * math.sqrt(params.es_horizon_days / 365.0)
    dist = NormalDist()
    return [math.exp(s * dist.inv_cdf((i - 0.5) / n) - 0.5 * s * s) for i in range(1, n + 1)]


def compute_tail_from_losses(losses: Sequence[float], params: RiskParams) -> tuple[float, float]:
    """(VaR, ES) from the N scenario losses."""
    m = compute_tail_count(params)
    worst = sorted(losses, reverse=True)[:m]
    return worst[m - 1], sum(worst) / m


def compute_tail_metrics(
    positions: Sequence[Position], market: Market, params: RiskParams
) -> tuple[float | None, float | None]:
    """(VaR99, ES99) of the portfolio, or (None, None) unless exactly one underlying is held."""
    held = {p.instrument.underlying for p in positions if p.quantity != 0.0}
    if len(held) != 1:
        return None, None
    factors = compute_shock_factors(params, held.pop())
    losses = [0.0] * len(factors)
    for pos in positions:
        inst = pos.instrument
        forward = get_reference_price(market, inst)
        if not is_option(inst):
            for i, f in enumerate(factors):
                losses[i] -= pos.quantity * (forward * f - forward)
            continue
        is_call, rate = inst.right == "call", get_rate(market, inst)
        base = compute_black76_price(forward, inst.strike, compute_tau(inst.days_to_expiry), inst.vol, is_call, rate)
        tau_after = compute_tau(max(inst.days_to_expiry - params.es_horizon_days, 0.0))
        for i, f in enumerate(factors):
            value = compute_black76_price(forward * f, inst.strike, tau_after, inst.vol, is_call, rate)
            losses[i] -= pos.quantity * (value - base)
    return compute_tail_from_losses(losses, params)
