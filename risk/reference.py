"""Reference engine: one account at a time, written to read like RISK_SPEC.md (RRA-1) and docs/risk_v2.md.

This is the oracle the batch engine (`risk.batch`) is tested against. Plain Python floats and `math`;
no numpy. `compute_account_risk` returns every output field of the what-if document.
Per underlying u the risk array is (docs/risk_v2.md section 4)
    P&L_u,s = sum over futures, perps, spot of u:  q weight_s (F'_s - F)
            + sum over expiries e of u:             g_s(weight_s (W_e,s D_e(W_e,s) - mtm_e))
            + sum over risk-cancelling collateral:  weight_s (v (1 + m_s) - v)
with the basis contingency `B_u = sum_e B_e`; `L_u = -min(B_u, min_s P&L_u,s)`; the joint array and
basis are the sums over underlyings; `R = max(M_corr, SOM)`; `IM = f_IM R + C_MM + C_IM`,
`MM = factor R + C_MM`. With RRA-1 (no discounting, skew, basis or contingencies) this is RISK_SPEC.md
sections 2-3 exactly.
Invariants: inputs are validated first (`InvalidInput` naming the field); positions keep their input
order (isolated margins, liquidation indices). Nothing is persisted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from risk.contingencies import (
    Contingencies,
    compute_collateral_value,
    compute_contingencies,
    compute_im_factor,
)
from risk.errors import InvalidInput
from risk.expiry_terms import compute_basis_loss, compute_discount_factors, compute_expiry_pnl
from risk.instruments import (
    Market,
    Position,
    get_fixed_part,
    get_pricing_market,
    get_rate,
    get_reference_price,
    is_finite_number,
    is_option,
    validate_instrument,
    validate_market,
)
from risk.liquidation import LiquidationStep, compute_liquidation_plan
from risk.params import RiskParams, validate_params
from risk.pricing import compute_black76_greeks, compute_tau
from risk.scenarios import (
    compute_base_value,
    compute_basis_moves,
    compute_move,
    compute_option_value,
    compute_shocked_price,
    compute_shocked_values,
)
from risk.tail import compute_tail_metrics


@dataclass(frozen=True)
class Figures:
    """A position: per long unit its base value (V, or F for linear instruments), its unweighted value in
    every scenario and, for options, its values after the basis moves (up, down); and the position's own
    weighted P&L `q weight_s (V'_s - V)`."""

    base: float
    shocked: tuple[float, ...]
    pnl: tuple[float, ...]
    basis: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True)
class Requirement:
    """Scan, requirement and margins of one set of positions (and collateral)."""

    scan_loss_by_underlying: dict[str, float]
    separate_scan_loss: float
    joint_scan_loss: float
    basis_loss: float  # -B of the joint book (>= 0)
    correlated_margin: float
    short_option_minimum: float
    requirement: float  # R = max(M_corr, SOM)
    risk_array: tuple[float, ...]
    worst_scenario: int | None  # len(scenarios) when the basis contingency is the binding term
    contingencies: Contingencies
    im_factor: float
    initial_margin: float
    maintenance_margin: float


@dataclass(frozen=True)
class PortfolioGreeks:
    delta_by_underlying: dict[str, float]
    dollar_delta: float
    gamma: float
    vega: float
    theta: float


@dataclass(frozen=True)
class AccountRisk:
    """Every output field of the what-if document (None where the spec says null)."""

    initial_margin: float
    maintenance_margin: float
    equity: float
    free_collateral: float
    health: float | None
    liquidatable: bool
    requirement: Requirement
    isolated_margins: tuple[float, ...]
    capital_efficiency_ratio: float | None
    collateral_value: float
    collateral_value_after_haircut: float
    positions_mtm: float
    cash: float
    greeks: PortfolioGreeks
    var99: float | None
    es99: float | None
    liquidation: tuple[LiquidationStep, ...]

    @property
    def scan_loss_by_underlying(self) -> dict[str, float]:
        return self.requirement.scan_loss_by_underlying

    @property
    def separate_scan_loss(self) -> float:
        return self.requirement.separate_scan_loss

    @property
    def joint_scan_loss(self) -> float:
        return self.requirement.joint_scan_loss

    @property
    def correlated_margin(self) -> float:
        return self.requirement.correlated_margin

    @property
    def short_option_minimum(self) -> float:
        return self.requirement.short_option_minimum

    @property
    def risk_array(self) -> tuple[float, ...]:
        return self.requirement.risk_array

    @property
    def worst_scenario(self) -> int | None:
        return self.requirement.worst_scenario


def compute_scan_loss(array: Sequence[float], basis: float = 0.0) -> tuple[float, int | None]:
    """`L = -min(B, min_s P&L_s)` (>= 0 since B <= 0) and the worst scenario: the lowest s attaining the
    minimum, `len(array)` when B is below every P&L, None when L = 0."""
    lowest = min(array)
    loss = 0.0 - min(basis, lowest)
    if loss <= 0.0:
        return 0.0, None
    return loss, (len(array) if basis < lowest else list(array).index(lowest))


def get_correlation_credit(underlyings: set[str], params: RiskParams) -> float:
    """Credit of the group containing all of the portfolio's underlyings, else 0."""
    for members, credit in params.correlation_groups:
        if underlyings and underlyings <= set(members):
            return credit
    return 0.0


def compute_figures(pos: Position, market: Market, params: RiskParams) -> Figures:
    inst = pos.instrument
    base = compute_base_value(inst, market)
    shocked = tuple(compute_shocked_values(inst, market, params))
    pnl = tuple(pos.quantity * (s.weight * (v - base)) for s, v in zip(params.scenarios, shocked, strict=True))
    if not is_option(inst) or (params.basis_add_factor, params.basis_mult_factor) == (0.0, 0.0):
        return Figures(base, shocked, pnl)  # no basis contingency: its values are not needed
    forward, fixed = get_reference_price(market, inst), get_fixed_part(market, inst)
    up, down = (compute_option_value(inst, market, compute_shocked_price(forward, fixed, m))
                for m in compute_basis_moves(params, inst.underlying))
    return Figures(base, shocked, pnl, (up, down))


def _add(acc: list[float], values: Sequence[float]) -> None:
    for s, v in enumerate(values):
        acc[s] += v


def compute_underlying_arrays(
    positions: Sequence[Position], figures: Sequence[Figures], collateral: Mapping[str, float], market: Market,
    params: RiskParams,
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Per underlying: the risk array and the basis contingency B_u (section 4). Without expiry terms
    (RRA-1: no discounting, skew, basis or naked rates) an option's P&L is its own `q weight (V' - V)`,
    as for linear instruments (RISK_SPEC.md section 2)."""
    size = len(params.scenarios)
    per_expiry = params.has_expiry_terms()
    arrays: dict[str, list[float]] = {}
    basis: dict[str, float] = {}
    expiries: dict[tuple[str, float], list[tuple[float, Figures]]] = {}
    for pos, fig in zip(positions, figures, strict=True):
        u = pos.instrument.underlying
        arrays.setdefault(u, [0.0] * size)
        basis.setdefault(u, 0.0)
        if per_expiry and is_option(pos.instrument):
            expiries.setdefault((u, pos.instrument.days_to_expiry), []).append((pos.quantity, fig))
            continue
        _add(arrays[u], fig.pnl)
    for (u, days), members in sorted(expiries.items()):
        shocked = [sum(q * f.shocked[s] for q, f in members) for s in range(size)]
        mtm = sum(q * f.base for q, f in members)
        factors = compute_discount_factors(days, market.get_rate((u, days)), params)
        _add(arrays[u], compute_expiry_pnl(shocked, mtm, factors, params))
        up, down = (sum(q * f.basis[i] for q, f in members) for i in (0, 1))
        basis[u] += compute_basis_loss(up, down, mtm, days, params)
    for asset, balance in sorted(collateral.items()):
        cancels = params.get_risk_cancelling(asset)
        if cancels is None or balance == 0.0:
            continue
        value = compute_collateral_value(asset, balance, market)
        arrays.setdefault(cancels, [0.0] * size)
        basis.setdefault(cancels, 0.0)
        _add(arrays[cancels], [s.weight * (compute_shocked_price(value, 0.0, compute_move(params, cancels, s)) - value)
                               for s in params.scenarios])
    return arrays, basis


def compute_requirement(
    positions: Sequence[Position], figures: Sequence[Figures], collateral: Mapping[str, float], market: Market,
    params: RiskParams,
) -> Requirement:
    """Requirement and margins of the positions with the given collateral (`{}`: positions alone)."""
    arrays, basis = compute_underlying_arrays(positions, figures, collateral, market, params)
    joint = [0.0] * len(params.scenarios)
    joint_basis = 0.0
    for u in sorted(arrays):
        _add(joint, arrays[u])
        joint_basis += basis[u]
    losses = {u: compute_scan_loss(arrays[u], basis[u])[0] for u in sorted(arrays)}
    separate = sum(losses.values())
    joint_loss, worst = compute_scan_loss(joint, joint_basis)
    held = {p.instrument.underlying for p in positions if p.quantity != 0.0}
    held |= {params.get_risk_cancelling(a) for a, b in collateral.items() if b != 0.0} - {None}  # type: ignore[arg-type]
    credit = get_correlation_credit(held, params) if len(held) > 1 else 0.0
    correlated = joint_loss + (1.0 - credit) * (separate - joint_loss) if len(held) > 1 else joint_loss
    som = params.short_option_minimum_rate * sum(
        abs(p.quantity) * market.spot[p.instrument.underlying]
        for p in positions if is_option(p.instrument) and p.quantity < 0
    )
    requirement = max(correlated, som)
    cont = compute_contingencies(positions, collateral, market, params)
    f_im = compute_im_factor(market, params)
    return Requirement(
        scan_loss_by_underlying=losses, separate_scan_loss=separate, joint_scan_loss=joint_loss,
        basis_loss=0.0 - joint_basis, correlated_margin=correlated, short_option_minimum=som,
        requirement=requirement, risk_array=tuple(joint), worst_scenario=worst, contingencies=cont,
        im_factor=f_im, initial_margin=f_im * requirement + cont.maintenance + cont.initial,
        maintenance_margin=params.maintenance_factor * requirement + cont.maintenance,
    )


def compute_position_mtm(pos: Position, market: Market) -> float:
    """Option `q V`, spot `q S`, futures and perps 0 (marked at entry)."""
    inst = pos.instrument
    if inst.kind == "spot":
        return pos.quantity * market.spot[inst.underlying]
    if is_option(inst):
        return pos.quantity * compute_option_value(inst, market)
    return 0.0


def compute_portfolio_greeks(positions: Sequence[Position], market: Market) -> PortfolioGreeks:
    delta_by: dict[str, float] = {}
    dollar = gamma = vega = theta = 0.0
    for pos in positions:
        inst = pos.instrument
        forward = get_reference_price(market, inst)
        if is_option(inst):
            g = compute_black76_greeks(forward, inst.strike, compute_tau(inst.days_to_expiry), inst.vol,
                                       inst.right == "call", get_rate(market, inst))
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
    """(sum v, sum v (1 - h)) over the collateral assets, `v = b p / stable_price`."""
    gross = net = 0.0
    for asset, balance in sorted(collateral.items()):
        value = compute_collateral_value(asset, balance, market)
        gross += value
        net += value * (1.0 - params.get_haircut(asset))
    return gross, net


def validate_account(
    positions: Sequence[Position], collateral: Mapping[str, float], market: Market, params: RiskParams,
    cash: float = 0.0,
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
    if not is_finite_number(cash):
        raise InvalidInput("cash", "must be finite")


def compute_account_risk(
    positions: Sequence[Position], collateral: Mapping[str, float], market: Market, params: RiskParams,
    include_tail: bool = True, cash: float = 0.0,
) -> AccountRisk:
    """The full result for one account; `cash` (the stable, may be negative; with perp unrealised P&L and
    funding) adds to equity."""
    market = get_pricing_market(market, params.use_rates)
    validate_account(positions, collateral, market, params, cash)
    figures = [compute_figures(p, market, params) for p in positions]

    def requirement_of(subset: list[int], with_collateral: bool = True) -> Requirement:
        return compute_requirement([positions[i] for i in subset], [figures[i] for i in subset],
                                   collateral if with_collateral else {}, market, params)

    req = requirement_of(list(range(len(positions))))
    isolated = tuple(requirement_of([i], with_collateral=False).requirement for i in range(len(positions)))
    gross, net = compute_collateral_values(collateral, market, params)
    mtm = sum(compute_position_mtm(p, market) for p in positions)
    equity = net + mtm + cash
    im, mm = req.initial_margin, req.maintenance_margin
    penalties = [params.liquidation_penalty_rate * abs(p.quantity) * market.spot[p.instrument.underlying]
                 for p in positions]

    def margins_of(subset: list[int]) -> tuple[float, float]:
        r = requirement_of(subset)
        return r.initial_margin, r.maintenance_margin

    plan = compute_liquidation_plan(equity, im, mm, [p.quantity for p in positions], penalties, margins_of)
    var99, es99 = compute_tail_metrics(positions, market, params) if include_tail else (None, None)
    return AccountRisk(
        initial_margin=im, maintenance_margin=mm, equity=equity, free_collateral=equity - im,
        health=equity / mm if mm > 0.0 else None, liquidatable=equity < mm, requirement=req,
        isolated_margins=isolated, capital_efficiency_ratio=sum(isolated) / req.requirement if req.requirement > 0.0 else None,
        collateral_value=gross, collateral_value_after_haircut=net, positions_mtm=mtm, cash=cash,
        greeks=compute_portfolio_greeks(positions, market), var99=var99, es99=es99, liquidation=plan,
    )
