"""The accounts phase of the batch engine: per-account sums of per-unit figures and the requirements.

Per block of CSR rows (`compute_rows`): each entry's row of figures (`compute_entry_table`) scaled by its
signed quantity is summed per (account, underlying) run in entry order (`risk.accumulation`; columns are
sorted by group, so a run is contiguous). In the expiry model an entry's row is the figure of the
position alone in its group (`InstrumentTable.single_long/short`), except for positions that share an
expiry group with another position of the account: they leave the run, and a second pass sums their raw
rows per (account, expiry) (`compute_shared_expiries`), applies
the per-expiry transform (static discounting, skew sign, basis contingency:
`risk.instrument_table.transform_expiry_values`, `compute_basis_array`) and nets their naked shorts per
strike. Each such expiry, and each risk-cancelling collateral holding (its value times the weighted P&L of
one unit of value moving with its underlying), is a book added to its (account, underlying) run, in group
order (collateral first, then expiries; collateral assets in column order). Per account the underlyings are
summed in index order; the scan losses, the correlated requirement, the contingencies and the margins follow
(docs/determinism.md lists every order).

Every operation is an IEEE basic or exact one, each its own numpy ufunc call, so the result is the same
bits on every CPU; with a per-position parameter set (RRA-1) the operations are those of the RRA-1 engine
one for one. Nothing is persisted.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from risk.accumulation import compute_segment_sums, compute_segments
from risk.instrument_table import (
    CONTINGENCY_COLUMNS,
    InstrumentTable,
    compute_basis_array,
    compute_linear_risk,
    transform_expiry_values,
)
from risk.params import RiskParams

BLOCK_ROWS = 16384
"""Accounts summed together in one pass of `risk.accumulation` (bounds the temporaries; any value gives
the same bits)."""
TRANSFORM_ROWS = 2048
"""Segments transformed together (cache-sized; any value gives the same bits)."""


@dataclass(frozen=True)
class Layout:
    """Columns of an entry row: S scenario figures, (expiry model) the basis contingency and the naked-short
    notional, then MtM, isolated, SOM, then (when charged) the contingency figures of `CONTINGENCY_COLUMNS`."""

    size: int
    expiry: bool
    contingency: bool

    @property
    def basis(self) -> int:
        return self.size

    @property
    def naked(self) -> int:
        return self.size + 1

    @property
    def mtm(self) -> int:
        return self.size + (2 if self.expiry else 0)

    @property
    def isolated(self) -> int:
        return self.mtm + 1

    @property
    def som(self) -> int:
        return self.mtm + 2

    @property
    def cont(self) -> int:
        return self.mtm + 3

    @property
    def width(self) -> int:
        return self.cont + (len(CONTINGENCY_COLUMNS) if self.contingency else 0)


@dataclass(frozen=True)
class AccountContext:
    """What the accounts phase needs besides the positions: the sorted table, its entry rows (and raw rows
    of the expiry model) and the per-account terms computed from the collateral (None when nothing)."""

    table: InstrumentTable
    entry_table: np.ndarray
    raw_table: np.ndarray  # expiry model: per unit V' (or F' - F), the basis values, the other columns, V
    layout: Layout
    params: RiskParams
    im_factor: float
    collateral_mm: np.ndarray | None  # per account row, or None when nothing is charged
    collateral_im: np.ndarray | None  # IM haircut charge plus the collateral oracle charge
    collateral_books: tuple[tuple[int, np.ndarray], ...] = ()  # (underlying, value per account row) per asset
    collateral_units: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # per underlying: one unit's row
    linear_group: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # per underlying

    def for_rows(self, rows: np.ndarray) -> AccountContext:
        """The context of accounts that are copies of the given account rows (LQ-1's virtual accounts)."""
        return dataclasses.replace(
            self, collateral_mm=None if self.collateral_mm is None else self.collateral_mm[rows],
            collateral_im=None if self.collateral_im is None else self.collateral_im[rows],
            collateral_books=tuple((u, values[rows]) for u, values in self.collateral_books))


def compute_collateral_units(table: InstrumentTable, params: RiskParams, layout: Layout) -> np.ndarray:
    """(underlyings, width) the row of one unit of value of a risk-cancelling collateral asset of each
    underlying: its weighted scenario P&L `w_s ((1 + m_s) - 1)`, nothing else."""
    psr = np.array([params.get_psr(u) for u in params.underlyings], dtype=np.float64)
    ones = np.ones(len(psr))
    units = np.zeros((len(psr), layout.width))
    units[:, :layout.size] = compute_linear_risk(ones, np.zeros(len(psr)), psr, params)
    return units


def make_context(table: InstrumentTable, params: RiskParams, im_factor: float, collateral_mm: np.ndarray | None,
                 collateral_im: np.ndarray | None,
                 collateral_books: tuple[tuple[int, np.ndarray], ...] = ()) -> AccountContext:
    layout = Layout(len(params.scenarios), params.has_expiry_terms(), table.contingency.shape[1] > 0)
    entry = compute_entry_table(table, layout)
    raw = np.zeros((0, 0))
    if layout.expiry:  # the entry table's rows with V' (or F' - F) and the basis values in front, V last
        base = np.where(table.is_option, table.mtm, 0.0)[:, None]
        front = np.hstack([table.risk, table.basis])
        raw = np.ascontiguousarray(np.hstack([np.vstack([front, front]), entry[:, layout.size + 2:],
                                              np.vstack([base, base])]))
    groups = table.groups
    linear_group = np.array([int(np.flatnonzero((groups.underlying == u) & ~groups.is_expiry)[0])
                             for u in range(len(params.underlyings))], dtype=np.int64)
    return AccountContext(table, entry, raw, layout, params, im_factor, collateral_mm, collateral_im,
                          collateral_books, compute_collateral_units(table, params, layout), linear_group)


def compute_entry_table(table: InstrumentTable, layout: Layout) -> np.ndarray:
    """Per-unit figures to scale by a position's signed quantity q and sum over an account's positions:
    row i for q >= 0 in instrument i, row n + i for q < 0; in the expiry model the scenario and basis
    columns are those of the position alone in its group (`InstrumentTable.single_long/short`). The
    isolated requirement and the SOM, naked and contingency figures of a short row are negated, so that
    `q * -x = |q| x`."""
    n = len(table.risk)
    zero = np.zeros((n, 1))
    if layout.expiry:
        naked = np.where(table.is_option, table.spot, 0.0)[:, None]  # alone at its strike: |q| S when short
        long_parts = [table.single_long, zero]  # the scenario P&L and the basis contingency
        short_parts = [table.single_short, -naked]
    else:
        long_parts, short_parts = [table.risk], [table.risk]
    long_parts += [table.mtm[:, None], table.isolated_long[:, None], zero]
    short_parts += [table.mtm[:, None], -table.isolated_short[:, None], -table.som[:, None]]
    if layout.contingency:
        long_parts.append(table.contingency)
        short_parts.append(-table.contingency)
    return np.ascontiguousarray(np.vstack([np.hstack(long_parts), np.hstack(short_parts)]))


def _naked_notional(ctx: AccountContext, columns: np.ndarray, quantity: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Per entry, `max(0, -net)` of its (group, strike), net = the call and put quantities at that strike
    (adjacent entries of one row); the second entry of a pair counts 0."""
    key = ctx.table.strike_key[columns]
    pair_next = np.zeros(len(key), dtype=bool)
    pair_next[:-1] = (key[:-1] == key[1:]) & (rows[:-1] == rows[1:]) & (key[:-1] >= 0)
    pair_prev = np.zeros(len(key), dtype=bool)
    pair_prev[1:] = pair_next[:-1]
    following = np.zeros(len(key))
    following[:-1] = quantity[1:]
    net = np.where(pair_next, quantity + following, quantity)
    return np.where((net < 0.0) & (key >= 0) & ~pair_prev, -net, 0.0)


def _in_shared_expiry(ctx: AccountContext, keys: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Per entry: it shares its expiry group with another entry of its row."""
    same = (keys[1:] == keys[:-1]) & (rows[1:] == rows[:-1])
    shared = np.zeros(len(keys), dtype=bool)
    shared[1:] |= same
    shared[:-1] |= same
    return shared & ctx.table.groups.is_expiry[keys]


@dataclass(frozen=True)
class Books:
    """Books added to the (account, underlying) runs: the (account, expiry) books of several positions and
    the risk-cancelling collateral holdings. Per book: row, underlying, group and a tie-breaking sequence
    (the order inside a run), and its figures as `factor * table[table_row]` in the entry table's columns
    (transformed scenario P&L, basis contingency, naked notional, then the sums of the other columns)."""

    row: np.ndarray
    underlying: np.ndarray
    group: np.ndarray
    sequence: np.ndarray
    table_row: np.ndarray
    factor: np.ndarray
    table: np.ndarray


def compute_shared_expiries(ctx: AccountContext, columns: np.ndarray, quantity: np.ndarray, rows: np.ndarray,
                            shared: np.ndarray, n_rows: int) -> Books:
    """Sum the raw rows of the shared entries per (row, expiry) in entry order, transform each book
    (`transform_expiry_values`, `compute_basis_array`, in cache-sized passes) and sum its naked notional."""
    lay, table, groups = ctx.layout, ctx.table, ctx.table.groups
    entries = np.flatnonzero(shared)
    sub_rows, sub_cols, sub_q = rows[entries], columns[entries], quantity[entries]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(sub_rows, minlength=n_rows))])
    segments = compute_segments(indptr, table.group[sub_cols])
    sub_table_rows = np.where(sub_q < 0.0, sub_cols + len(table.risk), sub_cols)
    raw = compute_segment_sums(ctx.raw_table, sub_table_rows, sub_q, segments)[:-1]
    size, base_column = lay.size, lay.width
    for lo in range(0, len(raw), TRANSFORM_ROWS):  # in place: the figures are raw[:, :width]
        part, g = raw[lo:lo + TRANSFORM_ROWS], segments.key[lo:lo + TRANSFORM_ROWS]
        base = part[:, base_column]
        part[:, size] = compute_basis_array(part[:, size], part[:, size + 1], base, groups.basis_factor[g])
        transform_expiry_values(part[:, :size], base, groups.discount_positive[g], groups.discount_negative[g],
                                ctx.params, out=part[:, :size])
    naked = _naked_notional(ctx, sub_cols, sub_q, sub_rows)
    raw[:, size + 1] = compute_segment_sums(table.spot[:, None], sub_cols, naked, segments)[:-1, 0]
    figures = raw[:, :base_column]
    n = len(figures)
    return Books(segments.row, groups.underlying[segments.key], segments.key, np.zeros(n, dtype=np.int64),
                 np.arange(n), np.ones(n), figures)


def compute_collateral_books(ctx: AccountContext, r0: int, r1: int) -> Books | None:
    """The risk-cancelling collateral books of rows r0..r1 (accounts holding a non-zero value): the value
    times its underlying's unit row (`AccountContext.collateral_units`)."""
    parts = []
    for sequence, (u, values) in enumerate(ctx.collateral_books):
        rows = np.flatnonzero(values[r0:r1] != 0.0)
        if len(rows):
            parts.append((rows, np.full(len(rows), u), np.full(len(rows), ctx.linear_group[u]),
                          np.full(len(rows), sequence), np.full(len(rows), u), values[r0 + rows]))
    if not parts:
        return None
    rows_, underlying_, group_, sequence_, table_row_, factor_ = (np.concatenate(column)
                                                                  for column in zip(*parts, strict=True))
    return Books(rows_, underlying_, group_, sequence_, table_row_, factor_, ctx.collateral_units)


def _merge_books(sums: np.ndarray, slot: np.ndarray, n_runs: int,
                 books: list[Books]) -> tuple[np.ndarray, np.ndarray, int]:
    """The (row, underlying) sums with the books added: per (row, underlying), its run of positions alone
    in their group, then its books in (group, sequence) order, summed in that order (`risk.accumulation`);
    a pair held only through books gets a run of its own. Returns (sums with a zero last row, the new slot
    array, the number of runs)."""
    n_u, n_rows = slot.shape
    run_target = slot.T.ravel()  # targets are (row, underlying) pairs, row-major
    has_run = np.flatnonzero(run_target < n_runs)
    targets, table_rows, factors = [has_run], [run_target[has_run]], [np.ones(len(has_run))]
    ranks, sequences = [np.full(len(has_run), -1)], [np.zeros(len(has_run), dtype=np.int64)]
    tables, offset = [sums[:n_runs]], n_runs
    for b in books:
        targets.append(b.row * n_u + b.underlying)
        table_rows.append(offset + b.table_row)
        factors.append(b.factor)
        ranks.append(b.group)  # after the run, in group order
        sequences.append(b.sequence)
        tables.append(b.table)
        offset += len(b.table)
    entry_target = np.concatenate(targets)
    sequence = np.concatenate(sequences)
    rank = np.concatenate(ranks) + 1  # 0 for the run
    n_sequences = int(sequence.max(initial=0)) + 1
    n_ranks = int(rank.max(initial=0)) + 1
    key = (entry_target * n_ranks + rank) * n_sequences + sequence  # unique: one entry per (target, rank, seq)
    order = np.argsort(key)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(entry_target, minlength=n_rows * n_u))])
    runs = compute_segments(indptr, np.zeros(len(order), dtype=np.int64))
    merged = compute_segment_sums(np.vstack(tables), np.concatenate(table_rows)[order],
                                  np.concatenate(factors)[order], runs)
    new_slot = np.full(n_rows * n_u, len(runs.start))
    new_slot[runs.row] = np.arange(len(runs.start))
    return merged, np.ascontiguousarray(new_slot.reshape(n_rows, n_u).T), len(runs.start)


def _choose_oracle(ctx: AccountContext, usums: np.ndarray) -> None:
    """Per (account, underlying): the oracle charge with the perp's confidence when a perp is held."""
    c = ctx.layout.cont
    held, alone, with_perp = c, c + 1, c + 2
    usums[:, alone] = np.where(usums[:, held] > 0.0, usums[:, with_perp], usums[:, alone])
    usums[:, with_perp] = 0.0


def sum_block(ctx: AccountContext, positions: sp.csr_matrix, out: dict[str, np.ndarray], presence: np.ndarray,
              lowest: np.ndarray, r0: int, r1: int) -> None:
    """Rows r0..r1: the sums per account (module docstring); fills the risk array, its first minimum
    (`worst_scenario`, then `lowest`: the value), the scan losses, MtM, SOM, isolated sum, the basis and
    contingency sums and `presence` (underlyings held).

    `positions` holds no explicit zeros and its columns are sorted by group, so an underlying is held
    iff the account has a run of it. Isolated sum: `sum_q>0 q iso_long + sum_q<0 |q| iso_short`.
    """
    lay, table = ctx.layout, ctx.table
    size, n_u, n = lay.size, len(ctx.params.underlyings), r1 - r0
    e0, e1 = int(positions.indptr[r0]), int(positions.indptr[r1])
    columns, quantity = positions.indices[e0:e1], positions.data[e0:e1]
    table_rows = np.where(quantity < 0.0, columns + len(table.risk), columns)
    indptr = positions.indptr[r0:r1 + 1] - e0
    shared: Books | None = None
    if lay.expiry:
        rows = np.repeat(np.arange(n), np.diff(indptr))
        in_shared = _in_shared_expiry(ctx, table.group[columns], rows)
        if in_shared.any():
            shared = compute_shared_expiries(ctx, columns, quantity, rows, in_shared, n)
            alone = np.flatnonzero(~in_shared)
            columns, quantity, table_rows = columns[alone], quantity[alone], table_rows[alone]
            indptr = np.concatenate([[0], np.cumsum(np.bincount(rows[alone], minlength=n))])
    segments = compute_segments(indptr, table.underlying_index[columns])
    sums = compute_segment_sums(ctx.entry_table, table_rows, quantity, segments)
    n_runs = len(segments.start)
    slot = np.full((n_u, n), n_runs)  # the row's run of each underlying, else the zero row
    slot[segments.key, segments.row] = np.arange(n_runs)
    books = [b for b in (shared, compute_collateral_books(ctx, r0, r1)) if b is not None]
    if books:
        sums, slot, n_runs = _merge_books(sums, slot, n_runs, books)
    if lay.contingency:
        _choose_oracle(ctx, sums)
    np.less(slot.T, n_runs, out=presence)
    run_lowest = sums[:, :size].min(axis=1)
    if lay.expiry:
        run_lowest = np.where(run_lowest <= sums[:, lay.basis], run_lowest, sums[:, lay.basis])
    run_loss = np.where(run_lowest < 0.0, -run_lowest, 0.0)
    total = np.take(sums, slot[0], axis=0)
    separate = out["separate_scan_loss"][r0:r1]
    separate[...] = 0.0
    for u in range(n_u):
        loss = np.take(run_loss, slot[u])
        out["scan_loss_by_underlying"][r0:r1, u] = loss
        separate += loss
        if u:
            total += np.take(sums, slot[u], axis=0)
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
        out["perp_notional"][r0:r1] = total[:, c]
        out["oracle"][r0:r1] = total[:, c + 1]


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
    initial = requirement if ctx.im_factor == 1.0 else ctx.im_factor * requirement  # the same bits when 1
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
        notional = out["perp_notional"][r0:r1]
        c_mm = c_mm + notional * params.perp_mm_rate
        c_im = c_im + notional * params.perp_im_rate
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
_WORK_FIELDS = ("naked_notional", "perp_notional", "oracle")


def allocate(n_accounts: int, n_scenarios: int, n_underlyings: int) -> dict[str, np.ndarray]:
    out = {name: np.zeros(n_accounts) for name in (*FLOAT_FIELDS, *_WORK_FIELDS)}
    out["risk_array"] = np.zeros((n_accounts, n_scenarios))
    out["scan_loss_by_underlying"] = np.zeros((n_accounts, n_underlyings))
    out["worst_scenario"] = np.zeros(n_accounts, dtype=np.int32)
    return out
