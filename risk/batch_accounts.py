"""The accounts phase of the batch engine: per-account sums of per-unit figures and the requirements.

Per block of CSR rows (`compute_rows`): each entry's row of figures (`compute_entry_table`) scaled by its
signed quantity is summed per segment (an account's run of one group: an underlying in the per-position
model, an (underlying, expiry) or an underlying's linear instruments in the expiry model) in entry order
(`risk.accumulation`). In the expiry model each expiry segment is then transformed (static discounting,
skew sign, basis contingency: `risk.instrument_table.transform_expiry_values`, `compute_basis_array`), the
naked shorts are netted per strike, and the segments of one underlying are summed in group order. Per
account the underlyings are summed in index order; the scan losses, the correlated requirement, the
contingencies and the margins follow (docs/determinism.md lists every order).

Every operation is an IEEE basic or exact one, each its own numpy ufunc call, so the result is the same
bits on every CPU; with a per-position parameter set (RRA-1) the operations are those of the RRA-1 engine
one for one. Nothing is persisted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from risk.accumulation import Segments, compute_segment_sums, compute_segments
from risk.instrument_table import (
    CONTINGENCY_COLUMNS,
    InstrumentTable,
    compute_basis_array,
    transform_expiry_values,
)
from risk.params import RiskParams

BLOCK_ROWS = 16384
"""Accounts summed together in one pass of `risk.accumulation` (bounds the temporaries; any value gives
the same bits)."""


@dataclass(frozen=True)
class Layout:
    """Columns of an entry row: S scenario figures, MtM, isolated, SOM, then (expiry model) basis up and
    down (the basis contingency after the transform) and the naked-short notional, then (when charged)
    the contingency figures of `CONTINGENCY_COLUMNS`."""

    size: int
    expiry: bool
    contingency: bool

    @property
    def mtm(self) -> int:
        return self.size

    @property
    def isolated(self) -> int:
        return self.size + 1

    @property
    def som(self) -> int:
        return self.size + 2

    @property
    def basis(self) -> int:
        return self.size + 3

    @property
    def naked(self) -> int:
        return self.size + 5

    @property
    def cont(self) -> int:
        return self.size + (6 if self.expiry else 3)

    @property
    def width(self) -> int:
        return self.cont + (len(CONTINGENCY_COLUMNS) if self.contingency else 0)


@dataclass(frozen=True)
class AccountContext:
    """What the accounts phase needs besides the positions: the sorted table, its entry rows and the
    per-account terms computed from the collateral (zeros when none)."""

    table: InstrumentTable
    entry_table: np.ndarray
    layout: Layout
    params: RiskParams
    im_factor: float
    collateral_mm: np.ndarray | None  # per account row, or None when nothing is charged
    collateral_im: np.ndarray | None  # IM haircut charge plus the collateral oracle charge


def make_layout(table: InstrumentTable, params: RiskParams) -> Layout:
    return Layout(len(params.scenarios), params.has_expiry_terms(), table.contingency.shape[1] > 0)


def compute_entry_table(table: InstrumentTable, layout: Layout) -> np.ndarray:
    """(2 x instruments, width) per-unit figures to scale by a position's signed quantity q and sum over an
    account's positions: row i for q >= 0 in instrument i, row n + i for q < 0. The isolated requirement
    and the SOM, naked and contingency figures of a short row are negated, so that `q * -x = |q| x`."""
    n = len(table.risk)
    zero = np.zeros((n, 1))
    long_parts = [table.risk, table.mtm[:, None], table.isolated_long[:, None], zero]
    short_parts = [table.risk, table.mtm[:, None], -table.isolated_short[:, None], -table.som[:, None]]
    if layout.expiry:
        long_parts += [table.basis, zero]
        short_parts += [table.basis, zero]
    if layout.contingency:
        long_parts.append(table.contingency)
        short_parts.append(-table.contingency)
    return np.ascontiguousarray(np.vstack([np.hstack(long_parts), np.hstack(short_parts)]))


def _naked_notional(ctx: AccountContext, columns: np.ndarray, quantity: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Per entry, `max(0, -net) S` of its (group, strike), net = the call and put quantities at that strike
    (adjacent entries of one row); the second entry of a pair counts 0."""
    key = ctx.table.strike_key[columns]
    pair_next = np.zeros(len(key), dtype=bool)
    pair_next[:-1] = (key[:-1] == key[1:]) & (rows[:-1] == rows[1:]) & (key[:-1] >= 0)
    pair_prev = np.zeros(len(key), dtype=bool)
    pair_prev[1:] = pair_next[:-1]
    following = np.zeros(len(key))
    following[:-1] = quantity[1:]
    net = np.where(pair_next, quantity + following, quantity)
    naked = np.where((net < 0.0) & (key >= 0) & ~pair_prev, -net, 0.0)
    return naked


def _transform_segments(ctx: AccountContext, sums: np.ndarray, segments: Segments) -> None:
    """In place: each expiry segment's scenario columns become its P&L, its basis column its contingency."""
    lay, groups = ctx.layout, ctx.table.groups
    expiry = np.flatnonzero(groups.is_expiry[segments.key])
    g = segments.key[expiry]
    mtm = sums[expiry, lay.mtm]
    sums[expiry, :lay.size] = transform_expiry_values(sums[expiry, :lay.size], mtm, groups.discount_positive[g],
                                                      groups.discount_negative[g], ctx.params)
    basis = np.zeros(len(sums))
    basis[expiry] = compute_basis_array(sums[expiry, lay.basis], sums[expiry, lay.basis + 1], mtm,
                                        groups.basis_factor[g])
    sums[:, lay.basis] = basis
    sums[:, lay.basis + 1] = 0.0


def _sum_per_underlying(ctx: AccountContext, sums: np.ndarray, segments: Segments,
                        n_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sums per (row, underlying) run with a zero last row, their row, their underlying): the transformed
    segments of one underlying added in group order."""
    under = ctx.table.groups.underlying[segments.key]
    order = np.lexsort((segments.key, segments.row))
    rows = segments.row[order]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n_rows))])
    runs = compute_segments(indptr, under[order])
    usums = compute_segment_sums(sums, order, np.ones(len(order)), runs)
    return usums, runs.row, runs.key


def _choose_oracle(ctx: AccountContext, usums: np.ndarray) -> None:
    """Per (account, underlying): the oracle charge with the perp's confidence when a perp is held."""
    c = ctx.layout.cont
    alone, with_perp, held = c + 2, c + 3, c + 4
    usums[:, alone] = np.where(usums[:, held] > 0.0, usums[:, with_perp], usums[:, alone])
    usums[:, with_perp] = 0.0


def sum_block(ctx: AccountContext, positions: sp.csr_matrix, out: dict[str, np.ndarray], presence: np.ndarray,
              lowest: np.ndarray, r0: int, r1: int) -> None:
    """Rows r0..r1: the sums per account (module docstring); fills the risk array, its first minimum
    (`worst_scenario`, then `lowest`: the value), the scan losses, MtM, SOM, isolated sum, the basis and
    contingency sums and `presence` (underlyings held).

    `positions` holds no explicit zeros and its columns are sorted by group, so an underlying is held
    iff the account has a segment of it. Isolated sum: `sum_q>0 q iso_long + sum_q<0 |q| iso_short`.
    """
    lay, table = ctx.layout, ctx.table
    size, n_u = lay.size, len(ctx.params.underlyings)
    e0, e1 = int(positions.indptr[r0]), int(positions.indptr[r1])
    columns, quantity = positions.indices[e0:e1], positions.data[e0:e1]
    table_rows = np.where(quantity < 0.0, columns + len(table.risk), columns)
    indptr = positions.indptr[r0:r1 + 1] - e0
    segments = compute_segments(indptr, table.group[columns])
    sums = compute_segment_sums(ctx.entry_table, table_rows, quantity, segments)
    n = r1 - r0
    if lay.expiry:
        _transform_segments(ctx, sums, segments)
        if ctx.params.naked_option_mm_rate or ctx.params.naked_option_im_rate:
            rows = np.repeat(np.arange(n), np.diff(indptr))
            naked = _naked_notional(ctx, columns, quantity, rows)
            sums[:, lay.naked] = compute_segment_sums(table.spot[:, None], columns, naked, segments)[:, 0]
        usums, urow, ukey = _sum_per_underlying(ctx, sums, segments, n)
    else:
        usums, urow, ukey = sums, segments.row, segments.key
    if lay.contingency:
        _choose_oracle(ctx, usums)
    n_runs = len(urow)
    slot = np.full((n_u, n), n_runs)  # the row's run of each underlying, else the zero row
    slot[ukey, urow] = np.arange(n_runs)
    np.less(slot.T, n_runs, out=presence)
    run_lowest = usums[:, :size].min(axis=1)
    if lay.expiry:
        run_lowest = np.where(run_lowest <= usums[:, lay.basis], run_lowest, usums[:, lay.basis])
    run_loss = np.where(run_lowest < 0.0, -run_lowest, 0.0)
    total = np.take(usums, slot[0], axis=0)
    separate = out["separate_scan_loss"][r0:r1]
    separate[...] = 0.0
    for u in range(n_u):
        loss = np.take(run_loss, slot[u])
        out["scan_loss_by_underlying"][r0:r1, u] = loss
        separate += loss
        if u:
            total += np.take(usums, slot[u], axis=0)
    joint = out["risk_array"][r0:r1]
    joint[...] = total[:, :size]
    worst = joint.argmin(axis=1)
    out["worst_scenario"][r0:r1] = worst
    np.take(joint.ravel(), np.arange(0, n * size, size) + worst, out=lowest)  # the minimum itself
    out["positions_mtm"][r0:r1] = total[:, lay.mtm]
    out["isolated_margin_sum"][r0:r1] = total[:, lay.isolated]
    out["short_option_minimum"][r0:r1] = total[:, lay.som]
    if lay.expiry:
        out["basis_loss"][r0:r1] = 0.0 - total[:, lay.basis]
        out["naked_notional"][r0:r1] = total[:, lay.naked]
    if lay.contingency:
        c = lay.cont
        out["perp_mm"][r0:r1] = total[:, c]
        out["perp_im"][r0:r1] = total[:, c + 1]
        out["oracle"][r0:r1] = total[:, c + 2]


def compute_requirements(ctx: AccountContext, out: dict[str, np.ndarray], presence: np.ndarray,
                         lowest: np.ndarray, r0: int, r1: int) -> None:
    """Rows r0..r1: worst scenario, joint and correlated scan loss, requirement, contingencies, IM, MM and
    the capital-efficiency ratio from the sums of `sum_block` (`lowest`: the risk array's minimum)."""
    params, lay = ctx.params, ctx.layout
    worst = out["worst_scenario"][r0:r1]
    if lay.expiry:
        basis = 0.0 - out["basis_loss"][r0:r1]
        binding = basis < lowest
        lowest = np.where(binding, basis, lowest)
        worst[...] = np.where(binding, lay.size, worst)
    joint_loss = np.where(lowest < 0.0, -lowest, 0.0)
    worst[...] = np.where(joint_loss > 0.0, worst, -1)
    several = np.count_nonzero(presence, axis=1) > 1
    credit = _credit_per_account(presence, params)
    separate = out["separate_scan_loss"][r0:r1]
    correlated = np.where(several, joint_loss + (1.0 - credit) * (separate - joint_loss), joint_loss)
    som = out["short_option_minimum"][r0:r1]
    requirement = np.where(correlated >= som, correlated, som)
    isolated = out["isolated_margin_sum"][r0:r1]
    out["joint_scan_loss"][r0:r1] = joint_loss
    out["correlated_margin"][r0:r1] = correlated
    out["requirement"][r0:r1] = requirement
    initial = ctx.im_factor * requirement
    maintenance = params.maintenance_factor * requirement
    c_mm, c_im = _contingencies(ctx, out, r0, r1)
    if c_mm is not None:
        out["maintenance_contingency"][r0:r1] = c_mm
        out["initial_contingency"][r0:r1] = c_im
        initial = (initial + c_mm) + c_im
        maintenance = maintenance + c_mm
    out["initial_margin"][r0:r1] = initial
    out["maintenance_margin"][r0:r1] = maintenance
    with np.errstate(divide="ignore", invalid="ignore"):
        out["capital_efficiency_ratio"][r0:r1] = np.where(requirement > 0.0, isolated / requirement, np.nan)


def _contingencies(ctx: AccountContext, out: dict[str, np.ndarray], r0: int,
                   r1: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(C_MM, C_IM) of rows r0..r1, or (None, None) when the parameter set charges none."""
    params, lay = ctx.params, ctx.layout
    naked = lay.expiry and bool(params.naked_option_mm_rate or params.naked_option_im_rate)
    if not (lay.contingency or naked or ctx.collateral_mm is not None):
        return None, None
    c_mm = np.zeros(r1 - r0)
    c_im = np.zeros(r1 - r0)
    if lay.contingency:
        c_mm = c_mm + out["perp_mm"][r0:r1]
        c_im = c_im + out["perp_im"][r0:r1]
    if naked:
        notional = out["naked_notional"][r0:r1]
        c_mm = c_mm + notional * params.naked_option_mm_rate
        c_im = c_im + notional * params.naked_option_im_rate
    if ctx.collateral_mm is not None and ctx.collateral_im is not None:
        c_mm = c_mm + ctx.collateral_mm[r0:r1]
        c_im = c_im + ctx.collateral_im[r0:r1]
    if lay.contingency:
        c_im = c_im + out["oracle"][r0:r1]
    return c_mm, c_im


def _credit_per_account(presence: np.ndarray, params: RiskParams) -> np.ndarray:
    """Credit of the correlation group containing every held underlying (0 when none does)."""
    credit = np.zeros(presence.shape[0])
    index_of = {u: i for i, u in enumerate(params.underlyings)}
    for members, c in params.correlation_groups:
        outside = [index_of[u] for u in params.underlyings if u not in members]
        inside = ~presence[:, outside].any(axis=1) if outside else np.ones(presence.shape[0], dtype=bool)
        credit = np.where(inside, c, credit)
    return credit


def compute_rows(ctx: AccountContext, positions: sp.csr_matrix, out: dict[str, np.ndarray], r0: int,
                 r1: int) -> None:
    """Fill rows r0..r1 of `out` (everything but collateral values and equity): the sums `BLOCK_ROWS` rows
    at a time, then the per-account requirements over the whole range."""
    presence = np.zeros((r1 - r0, len(ctx.params.underlyings)), dtype=bool)
    lowest = np.zeros(r1 - r0)
    for b0 in range(r0, r1, BLOCK_ROWS):
        b1 = min(b0 + BLOCK_ROWS, r1)
        sum_block(ctx, positions, out, presence[b0 - r0:b1 - r0], lowest[b0 - r0:b1 - r0], b0, b1)
    compute_requirements(ctx, out, presence, lowest, r0, r1)


FLOAT_FIELDS = (
    "equity", "initial_margin", "maintenance_margin", "free_collateral", "health", "separate_scan_loss",
    "joint_scan_loss", "correlated_margin", "short_option_minimum", "requirement", "isolated_margin_sum",
    "capital_efficiency_ratio", "positions_mtm", "collateral_value", "collateral_value_after_haircut",
    "basis_loss", "maintenance_contingency", "initial_contingency",
)
_WORK_FIELDS = ("naked_notional", "perp_mm", "perp_im", "oracle")


def allocate(n_accounts: int, n_scenarios: int, n_underlyings: int) -> dict[str, np.ndarray]:
    out = {name: np.zeros(n_accounts) for name in (*FLOAT_FIELDS, *_WORK_FIELDS)}
    out["risk_array"] = np.zeros((n_accounts, n_scenarios))
    out["scan_loss_by_underlying"] = np.zeros((n_accounts, n_underlyings))
    out["worst_scenario"] = np.zeros(n_accounts, dtype=np.int32)
    return out
