"""Collateral values and the contingencies of docs/risk_v2.md section 5, reference form (one account).

- Collateral: `v_a = b_a p_a / stable_price`; equity counts `v_a (1 - h_a)` (`haircuts`, RRA-1's
  valuation haircut); the MM contingency charges `v_a mm_a`, the IM contingency `v_a im_a` on top.
- Perps: `|q| S_u` times `perp_mm_rate` (MM) and `perp_im_rate` (IM).
- Naked short options: per (underlying, expiry, strike), calls and puts net: `naked = max(0, -sum q)`;
  charged `naked S_u` times `naked_option_mm_rate` / `naked_option_im_rate`.
- Oracle (IM only): `OC(c, N) = (1 - c) margin N` when `c < threshold`, else 0, with
  `c_port(u) = min(spot confidence, perp confidence if a perp of u is held)`: on each perp
  `OC(c_port, |q| S_u)`, on each expiry `OC(min(c_port, c_e), sum |q| S_u)` over its options, on each
  collateral asset `OC(min(c_a, c_spot), v_a)` with `c_spot` the lowest spot confidence of the model's
  underlyings (PM2: the manager's spot).
RRA-1 has every rate, haircut and the threshold at 0, so every contingency is 0. Nothing is persisted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from risk.instruments import Market, Position, get_expiry, is_option
from risk.params import RiskParams


@dataclass(frozen=True)
class Contingencies:
    """Charges added to the requirements (all >= 0, USD)."""

    perp_mm: float = 0.0
    perp_im: float = 0.0
    naked_option_mm: float = 0.0
    naked_option_im: float = 0.0
    collateral_mm: float = 0.0
    collateral_im: float = 0.0
    oracle_perp: float = 0.0
    oracle_options: float = 0.0
    oracle_collateral: float = 0.0

    @property
    def maintenance(self) -> float:
        """C_MM: charged in MM and in IM."""
        return self.perp_mm + self.naked_option_mm + self.collateral_mm

    @property
    def initial(self) -> float:
        """C_IM: charged in IM on top of C_MM."""
        return self.perp_im + self.naked_option_im + self.collateral_im + self.oracle

    @property
    def oracle(self) -> float:
        return self.oracle_perp + self.oracle_options + self.oracle_collateral


def has_contingencies(params: RiskParams) -> bool:
    """False when every rate, haircut and the oracle threshold are 0 (RRA-1): every charge is 0."""
    rates = (params.perp_mm_rate, params.perp_im_rate, params.naked_option_mm_rate, params.naked_option_im_rate,
             params.oracle_confidence_threshold)
    return any(rates) or any(v for _, v in params.mm_haircuts) or any(v for _, v in params.im_haircuts)


def compute_collateral_value(asset: str, balance: float, market: Market) -> float:
    """`v_a = b_a p_a / stable_price` (the stable's own units)."""
    return balance * market.asset_prices[asset] / market.stable_price


def compute_oracle_charge(confidence: float, notional: float, params: RiskParams) -> float:
    """`OC(c, N)`: `(1 - c) margin N` when `c` is below the threshold, else 0."""
    if confidence < params.oracle_confidence_threshold:
        return (1.0 - confidence) * params.oracle_confidence_margin * notional
    return 0.0


def compute_portfolio_confidence(held_perps: set[str], market: Market, underlying: str) -> float:
    """`c_port(u)`: spot confidence, lowered to the perp's when a perp of u is held."""
    spot = market.get_spot_confidence(underlying)
    return min(spot, market.get_perp_confidence(underlying)) if underlying in held_perps else spot


def compute_naked_shorts(positions: Sequence[Position]) -> dict[str, float]:
    """Per underlying, the sum over (expiry, strike) of `max(0, -sum q)` of its options."""
    net: dict[tuple[str, float, float], float] = {}
    for p in positions:
        if is_option(p.instrument):
            key = (p.instrument.underlying, p.instrument.days_to_expiry, p.instrument.strike)
            net[key] = net.get(key, 0.0) + p.quantity
    out: dict[str, float] = {}
    for (u, _, _), q in sorted(net.items()):
        out[u] = out.get(u, 0.0) + (-q if q < 0.0 else 0.0)
    return out


def _position_terms(positions: Sequence[Position], market: Market, params: RiskParams) -> dict[str, float]:
    terms = {"perp_mm": 0.0, "perp_im": 0.0, "naked_option_mm": 0.0, "naked_option_im": 0.0,
             "oracle_perp": 0.0, "oracle_options": 0.0}
    expiry_notional: dict[tuple[str, float], float] = {}
    held_perps = {p.instrument.underlying for p in positions if p.instrument.kind == "perp" and p.quantity != 0.0}
    for p in positions:
        inst, spot = p.instrument, market.spot[p.instrument.underlying]
        if inst.kind == "perp":
            notional = abs(p.quantity) * spot
            terms["perp_mm"] += notional * params.perp_mm_rate
            terms["perp_im"] += notional * params.perp_im_rate
            c_port = compute_portfolio_confidence(held_perps, market, inst.underlying)
            terms["oracle_perp"] += compute_oracle_charge(c_port, notional, params)
        elif is_option(inst):
            key = get_expiry(inst)
            expiry_notional[key] = expiry_notional.get(key, 0.0) + abs(p.quantity) * spot
    for u, naked in sorted(compute_naked_shorts(positions).items()):
        terms["naked_option_mm"] += naked * market.spot[u] * params.naked_option_mm_rate
        terms["naked_option_im"] += naked * market.spot[u] * params.naked_option_im_rate
    for key, notional in sorted(expiry_notional.items()):
        c_port = compute_portfolio_confidence(held_perps, market, key[0])
        confidence = min(c_port, market.get_expiry_confidence(key))
        terms["oracle_options"] += compute_oracle_charge(confidence, notional, params)
    return terms


def compute_contingencies(positions: Sequence[Position], collateral: Mapping[str, float], market: Market,
                          params: RiskParams) -> Contingencies:
    """Every contingency of the positions and the collateral (pass `{}` for positions alone)."""
    if not has_contingencies(params):
        return Contingencies()
    terms = _position_terms(positions, market, params)
    spot_confidence = min(market.get_spot_confidence(u) for u in params.underlyings)
    mm = im = oracle = 0.0
    for asset, balance in sorted(collateral.items()):
        value = compute_collateral_value(asset, balance, market)
        mm += value * params.get_mm_haircut(asset)
        im += value * params.get_im_haircut(asset)
        confidence = min(market.get_asset_confidence(asset), spot_confidence)
        oracle += compute_oracle_charge(confidence, value, params)
    return Contingencies(collateral_mm=mm, collateral_im=im, oracle_collateral=oracle, **terms)


def compute_im_factor(market: Market, params: RiskParams) -> float:
    """`f_IM = im_factor + (threshold - stable) peg_factor` when the stable is below the threshold."""
    if market.stable_price < params.peg_loss_threshold:
        return params.im_factor + (params.peg_loss_threshold - market.stable_price) * params.peg_loss_factor
    return params.im_factor
