"""Reference RRA-1 engine: one account at a time, written to read like RISK_SPEC.md sections 1-5.

This is the oracle the batch engine (`risk.batch`) is tested against. Plain Python floats and `math`;
no numpy. `compute_account_risk` returns every field of the spec's section 6 output.
Invariants: inputs are validated first (`InvalidInput` naming the field); r = 0 for every margin number;
positions keep their input order (isolated margins, liquidation indices). Nothing is persisted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from risk.errors import InvalidInput
from risk.instruments import (
    Market,
    Position,
    get_reference_price,
    is_finite_number,
    is_option,
    validate_instrument,
    validate_market,
)
from risk.liquidation import LiquidationStep, compute_liquidation_plan
from risk.params import RiskParams, validate_params
from risk.pricing import compute_black76_greeks, compute_black76_price, compute_tau
from risk.scenarios import compute_scenario_grid, compute_unit_pnl
from risk.tail import compute_tail_metrics


@dataclass(frozen=True)
class Requirement:
    """Section 3 for one set of positions."""

    scan_loss_by_underlying: dict[str, float]
    separate_scan_loss: float
    joint_scan_loss: float
    correlated_margin: float
    short_option_minimum: float
    requirement: float
    risk_array: tuple[float, ...]
    worst_scenario: int | None


@dataclass(frozen=True)
class PortfolioGreeks:
    delta_by_underlying: dict[str, float]
    dollar_delta: float
    gamma: float
    vega: float
    theta: float


@dataclass(frozen=True)
class AccountRisk:
    """Every output field of RISK_SPEC.md section 6 (None where the spec says null)."""

    initial_margin: float
    maintenance_margin: float
    equity: float
    free_collateral: float
    health: float | None
    liquidatable: bool
    scan_loss_by_underlying: dict[str, float]
    separate_scan_loss: float
    joint_scan_loss: float
    correlated_margin: float
    short_option_minimum: float
    risk_array: tuple[float, ...]
    worst_scenario: int | None
    isolated_margins: tuple[float, ...]
    capital_efficiency_ratio: float | None
    collateral_value: float
    collateral_value_after_haircut: float
    positions_mtm: float
    greeks: PortfolioGreeks
    var99: float | None
    es99: float | None
    liquidation: tuple[LiquidationStep, ...]


def compute_scan_loss(array: Sequence[float]) -> tuple[float, int | None]:
    """`L = max(0, -min_s P&L_s)` and the lowest s attaining the minimum (None when L = 0)."""
    lowest = min(array)
    loss = max(0.0, -lowest)
    return loss, (list(array).index(lowest) if loss > 0.0 else None)


def get_correlation_credit(underlyings: set[str], params: RiskParams) -> float:
    """Credit of the group containing all of the portfolio's underlyings, else 0."""
    for members, credit in params.correlation_groups:
        if underlyings and underlyings <= set(members):
            return credit
    return 0.0


def compute_requirement(
    positions: Sequence[Position], pnl: Sequence[Sequence[float]], market: Market, params: RiskParams,
    size: int,
) -> Requirement:
    """R of the positions, given each position's weighted P&L array `pnl[i] = q_i * unit_i`."""
    by_underlying: dict[str, list[float]] = {}
    joint = [0.0] * size
    for pos, arr in zip(positions, pnl, strict=True):
        acc = by_underlying.setdefault(pos.instrument.underlying, [0.0] * size)
        for s in range(size):
            acc[s] += arr[s]
    for u in sorted(by_underlying):
        for s in range(size):
            joint[s] += by_underlying[u][s]
    losses = {u: compute_scan_loss(a)[0] for u, a in sorted(by_underlying.items())}
    separate = sum(losses.values())
    joint_loss, worst = compute_scan_loss(joint)
    held = {p.instrument.underlying for p in positions if p.quantity != 0.0}
    credit = get_correlation_credit(held, params) if len(held) > 1 else 0.0
    correlated = joint_loss + (1.0 - credit) * (separate - joint_loss) if len(held) > 1 else joint_loss
    som = params.short_option_minimum_rate * sum(
        abs(p.quantity) * market.spot[p.instrument.underlying]
        for p in positions if is_option(p.instrument) and p.quantity < 0
    )
    return Requirement(losses, separate, joint_loss, correlated, som, max(correlated, som), tuple(joint), worst)


def compute_position_mtm(pos: Position, market: Market) -> float:
    """Option `q V`, spot `q S`, futures and perps 0 (marked at entry)."""
    inst = pos.instrument
    if inst.kind == "spot":
        return pos.quantity * market.spot[inst.underlying]
    if is_option(inst):
        forward = get_reference_price(market, inst)
        value = compute_black76_price(forward, inst.strike, compute_tau(inst.days_to_expiry), inst.vol,
                                      inst.right == "call")
        return pos.quantity * value
    return 0.0


def compute_portfolio_greeks(positions: Sequence[Position], market: Market) -> PortfolioGreeks:
    delta_by: dict[str, float] = {}
    dollar = gamma = vega = theta = 0.0
    for pos in positions:
        inst = pos.instrument
        forward = get_reference_price(market, inst)
        if is_option(inst):
            g = compute_black76_greeks(forward, inst.strike, compute_tau(inst.days_to_expiry), inst.vol,
                                       inst.right == "call")
            delta = g.delta
            gamma += pos.quantity * g.gamma
            vega += pos.quantity * g.vega
            theta += pos.quantity * g.theta
        else:
            delta = 1.0
        delta_by[inst.underlying] = delta_by.get(inst.underlying, 0.0) + pos.quantity * delta
        dollar += pos.quantity * delta * forward
    return PortfolioGreeks(dict(sorted(delta_by.items())), dollar, gamma, vega, theta)


def compute_collateral_values(
    collateral: Mapping[str, float], market: Market, params: RiskParams
) -> tuple[float, float]:
    """(sum b p, sum b p (1 - h)) over the collateral assets."""
    gross = net = 0.0
    for asset, balance in sorted(collateral.items()):
        value = balance * market.asset_prices[asset]
        gross += value
        net += value * (1.0 - params.get_haircut(asset))
    return gross, net


def validate_account(
    positions: Sequence[Position], collateral: Mapping[str, float], market: Market, params: RiskParams
) -> None:
    """Raise `InvalidInput` naming the first bad field of one account's inputs."""
    validate_params(params)
    validate_market(market, params)
    for i, pos in enumerate(positions):
        validate_instrument(pos.instrument, market, params, f"positions[{i}]")
        if not is_finite_number(pos.quantity):
            raise InvalidInput(f"positions[{i}].quantity", "must be finite")
    for asset, balance in collateral.items():
        if not is_finite_number(balance) or balance < 0:
            raise InvalidInput(f"collateral.{asset}", "balance must be finite and >= 0")
        if asset not in market.asset_prices:
            raise InvalidInput(f"collateral.{asset}", "unknown asset (no price in market.asset_prices)")


def compute_account_risk(
    positions: Sequence[Position], collateral: Mapping[str, float], market: Market, params: RiskParams,
    include_tail: bool = True,
) -> AccountRisk:
    """The full section 6 result for one account."""
    validate_account(positions, collateral, market, params)
    units = [compute_unit_pnl(p.instrument, market, params) for p in positions]
    pnl = [[p.quantity * x for x in unit] for p, unit in zip(positions, units, strict=True)]
    size = compute_scenario_grid(params).size
    req = compute_requirement(positions, pnl, market, params, size)

    def requirement_of(subset: list[int]) -> float:
        return compute_requirement(
            [positions[i] for i in subset], [pnl[i] for i in subset], market, params, size
        ).requirement

    isolated = tuple(requirement_of([i]) for i in range(len(positions)))
    gross, net = compute_collateral_values(collateral, market, params)
    mtm = sum(compute_position_mtm(p, market) for p in positions)
    equity = net + mtm
    im, mm = req.requirement, params.maintenance_factor * req.requirement
    penalties = [params.liquidation_penalty_rate * abs(p.quantity) * market.spot[p.instrument.underlying]
                 for p in positions]
    plan = compute_liquidation_plan(equity, im, mm, [p.quantity for p in positions], penalties,
                                    requirement_of, params.maintenance_factor)
    var99, es99 = compute_tail_metrics(positions, market, params) if include_tail else (None, None)
    return AccountRisk(
        initial_margin=im,
        maintenance_margin=mm,
        equity=equity,
        free_collateral=equity - im,
        health=equity / mm if mm > 0.0 else None,
        liquidatable=equity < mm,
        scan_loss_by_underlying=req.scan_loss_by_underlying,
        separate_scan_loss=req.separate_scan_loss,
        joint_scan_loss=req.joint_scan_loss,
        correlated_margin=req.correlated_margin,
        short_option_minimum=req.short_option_minimum,
        risk_array=req.risk_array,
        worst_scenario=req.worst_scenario,
        isolated_margins=isolated,
        capital_efficiency_ratio=sum(isolated) / im if im > 0.0 else None,
        collateral_value=gross,
        collateral_value_after_haircut=net,
        positions_mtm=mtm,
        greeks=compute_portfolio_greeks(positions, market),
        var99=var99,
        es99=es99,
        liquidation=plan,
    )

