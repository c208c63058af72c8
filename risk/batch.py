"""Batch RRA-1 engine for the network: every account of a market in one pass (numpy/scipy).

Construct a `BatchInput`:
    BatchInput(
        instruments=[Instrument(...), ...],       # the columns of `positions`, any order
        market=Market(spot={...}, forwards={(u, days): F}, asset_prices={...}),
        positions=scipy.sparse.csr_matrix(...),   # accounts x instruments, signed float quantities
        collateral=np.ndarray,                    # accounts x assets, float balances (>= 0)
        assets=["USDC", "BTC", ...],              # the columns of `collateral`
    )
and call `compute_margin_batch(inp, params) -> BatchResult`; `risk.quantize.quantized(result)` gives the
integer consensus view. Each instrument is priced once per scenario (`risk.instrument_table`, on
`risk.detmath`); instruments are sorted by underlying so that an account's positions in one underlying
are one run of its CSR row. Per (account, underlying) run, the per-unit figures (scenario P&L, MtM,
isolated requirement, SOM) scaled by the quantity are summed in entry order (`risk.accumulation`), then
per account over the underlyings in index order, so cost grows with the number of positions. Rows are
split into contiguous chunks computed in threads (numpy releases the GIL), each in blocks of
`BLOCK_ROWS`; every row is computed by one chunk with the same operations in the same order.

Numeric determinism (docs/determinism.md): everything that reaches a signed leaf (equity, IM, MM, the
liquidatable flag, the risk array and worst scenario) uses only IEEE basic operations, exact operations
and `risk.detmath`, each a separate numpy ufunc call; no BLAS, no sparse product, no `np.sum`, no libm.
The result is the same bits for any thread count, block size, SIMD width or library build;
`detmath.check_environment` refuses a process whose FPU mode was changed.

Invariants: duplicate (account, instrument) entries are summed first, left to right in input order (a
position is the net quantity of an account in an instrument); a bad account (non-finite quantity,
position in an invalid instrument, negative or non-finite balance, balance in an asset without a valid
price) gets an `AccountError`, NaN amounts and no flags, and the other accounts are unaffected. Nothing
is persisted.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from risk import detmath
from risk.accumulation import compute_segment_sums, compute_segments
from risk.batch_liquidation import LiquidationPlans, compute_batch_liquidation_plans, empty_plans
from risk.errors import InvalidInput
from risk.instrument_table import InstrumentTable, compute_instrument_table
from risk.instruments import Instrument, Market, is_finite_number
from risk.params import RiskParams, validate_params
from risk.scenarios import compute_scenario_grid

MAX_THREADS = 8
BLOCK_ROWS = 16384
"""Accounts summed together in one pass of `risk.accumulation` (bounds the temporaries; any value gives
the same bits)."""
MAX_ERRORS_DETAILED = 100_000
"""Bound on the number of `AccountError` entries built; further bad accounts share one summary entry."""


@dataclass(frozen=True)
class BatchInput:
    instruments: Sequence[Instrument]
    market: Market
    positions: sp.csr_matrix
    collateral: np.ndarray
    assets: Sequence[str]


@dataclass(frozen=True)
class AccountError:
    account: int  # row index, or -1 for the summary entry beyond MAX_ERRORS_DETAILED
    field: str
    reason: str


@dataclass(frozen=True)
class BatchResult:
    """Per-account arrays (row i = account i); amounts in USD float64, NaN for accounts in error."""

    underlyings: tuple[str, ...]  # columns of scan_loss_by_underlying
    ok: np.ndarray
    equity: np.ndarray
    initial_margin: np.ndarray
    maintenance_margin: np.ndarray
    free_collateral: np.ndarray
    health: np.ndarray  # E / MM, NaN when MM = 0
    liquidatable: np.ndarray  # bool, E < MM
    risk_array: np.ndarray  # (accounts, S) joint P&L
    worst_scenario: np.ndarray  # int32, -1 when the joint scan loss is 0
    scan_loss_by_underlying: np.ndarray  # (accounts, U)
    separate_scan_loss: np.ndarray
    joint_scan_loss: np.ndarray
    correlated_margin: np.ndarray
    short_option_minimum: np.ndarray
    isolated_margin_sum: np.ndarray
    capital_efficiency_ratio: np.ndarray  # NaN when R = 0
    positions_mtm: np.ndarray
    collateral_value: np.ndarray
    collateral_value_after_haircut: np.ndarray
    liquidation: LiquidationPlans = field(default_factory=empty_plans)  # LQ-1 steps of liquidatable accounts
    errors: tuple[AccountError, ...] = ()


@dataclass(frozen=True)
class PreparedPositions:
    """Positions with columns sorted by underlying and the matching instrument table."""

    positions: sp.csr_matrix  # canonical, columns in sorted order, bad entries zeroed
    table: InstrumentTable  # in sorted column order
    original_column: np.ndarray  # sorted column -> original instrument index
    blocks: tuple[tuple[int, int], ...]  # column range per underlying index


_FLOAT_FIELDS = (
    "equity", "initial_margin", "maintenance_margin", "free_collateral", "health", "separate_scan_loss",
    "joint_scan_loss", "correlated_margin", "short_option_minimum", "isolated_margin_sum",
    "capital_efficiency_ratio", "positions_mtm", "collateral_value", "collateral_value_after_haircut",
)


def _take_table(table: InstrumentTable, order: np.ndarray) -> InstrumentTable:
    return InstrumentTable(
        underlying_index=table.underlying_index[order], is_option=table.is_option[order],
        reference_price=table.reference_price[order], spot=table.spot[order], risk=table.risk[order],
        mtm=table.mtm[order], isolated_long=table.isolated_long[order],
        isolated_short=table.isolated_short[order], som=table.som[order], penalty=table.penalty[order],
        errors=table.errors,
    )


def _canonical_positions(positions: sp.csr_matrix, n_instruments: int) -> sp.csr_matrix:
    if not sp.issparse(positions) or positions.format != "csr":
        raise InvalidInput("positions", "expected a scipy.sparse CSR matrix")
    if positions.shape[1] != n_instruments:
        raise InvalidInput("positions", f"{positions.shape[1]} columns for {n_instruments} instruments")
    p = positions
    if p.dtype != np.float64:
        p = p.astype(np.float64)
    if not p.has_canonical_format:
        p = _net_duplicates(p)
    return p


def _net_duplicates(p: sp.csr_matrix) -> sp.csr_matrix:
    """Sort each row by column and net duplicate entries left to right in input order (scipy's
    `sum_duplicates` sorts with an unstable sort, so its order of addition depends on the C++ library)."""
    rows = np.repeat(np.arange(p.shape[0]), np.diff(p.indptr))
    order = np.lexsort((p.indices, rows))  # stable: duplicates keep their input order
    columns, quantity = p.indices[order], p.data[order]
    runs = compute_segments(p.indptr, columns)  # one run per (row, column)
    net = compute_segment_sums(np.ones((1, 1)), np.zeros(len(quantity), dtype=np.int64), quantity, runs)[:-1, 0]
    by_start = np.argsort(runs.start, kind="stable")
    indptr = np.concatenate([[0], np.cumsum(np.bincount(runs.row, minlength=p.shape[0]))])
    return sp.csr_matrix((net[by_start], columns[runs.start[by_start]], indptr), shape=p.shape)


def prepare_positions(inp: BatchInput, params: RiskParams) -> PreparedPositions:
    """Sort instrument columns by underlying (invalid instruments last) and build the table."""
    table = compute_instrument_table(inp.instruments, inp.market, params)
    p = _canonical_positions(inp.positions, len(inp.instruments))
    n_u = len(params.underlyings)
    key = np.where(table.underlying_index < 0, n_u, table.underlying_index)
    order = np.argsort(key, kind="stable")
    if not np.array_equal(order, np.arange(len(order))):
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        p = sp.csr_matrix((p.data.copy(), inverse[p.indices].astype(p.indices.dtype), p.indptr.copy()),
                          shape=p.shape)
        p.sort_indices()
        table = _take_table(table, order)
    bounds = np.searchsorted(key[order], np.arange(n_u + 1), side="left")
    blocks = tuple((int(bounds[u]), int(bounds[u + 1])) for u in range(n_u))
    return PreparedPositions(p, table, order, blocks)


def _row_of(indptr: np.ndarray, entries: np.ndarray) -> np.ndarray:
    return np.searchsorted(indptr, entries, side="right") - 1


def flag_positions(prep: PreparedPositions) -> tuple[sp.csr_matrix, dict[int, tuple[str, str]]]:
    """Find accounts with non-finite quantities or positions in invalid instruments; drop those entries
    and explicit zeros (so that a stored entry always is an open position)."""
    p = prep.positions
    bad_rows: dict[int, tuple[str, str]] = {}
    nonfinite = ~np.isfinite(p.data)
    invalid_col = (prep.table.underlying_index[p.indices] < 0 if prep.table.errors
                   else np.zeros(len(p.data), dtype=bool))
    held_invalid = invalid_col & (p.data != 0.0)
    errors_by_col = {e.instrument: e for e in prep.table.errors}
    for entry in np.flatnonzero(held_invalid & ~nonfinite)[::-1]:
        err = errors_by_col[int(prep.original_column[p.indices[entry]])]
        bad_rows[int(_row_of(p.indptr, np.array([entry]))[0])] = (err.field, err.reason)
    for entry in np.flatnonzero(nonfinite)[::-1]:
        col = int(prep.original_column[p.indices[entry]])
        bad_rows[int(_row_of(p.indptr, np.array([entry]))[0])] = (f"positions[{col}]", "quantity must be finite")
    drop = nonfinite | invalid_col | (p.data == 0.0)
    if not drop.any():
        return p, bad_rows
    clean = sp.csr_matrix((np.where(drop, 0.0, p.data), p.indices.copy(), p.indptr.copy()), shape=p.shape)
    clean.eliminate_zeros()
    return clean, bad_rows


def compute_collateral_batch(
    inp: BatchInput, params: RiskParams
) -> tuple[np.ndarray, np.ndarray, dict[int, tuple[str, str]]]:
    """(gross value, value after haircut, bad rows) of the accounts x assets balances."""
    c = np.asarray(inp.collateral, dtype=np.float64)
    n_accounts = inp.positions.shape[0]
    if c.shape != (n_accounts, len(inp.assets)):
        raise InvalidInput("collateral", f"shape {c.shape} != ({n_accounts}, {len(inp.assets)})")
    bad: dict[int, tuple[str, str]] = {}
    usable: dict[int, float] = {}
    for a, name in enumerate(inp.assets):  # errors in column order: the first bad column names the field
        col = c[:, a]
        price = inp.market.asset_prices.get(name)
        for row in np.flatnonzero(~np.isfinite(col) | (col < 0)):
            bad.setdefault(int(row), (f"collateral.{name}", "balance must be finite and >= 0"))
        if price is not None and is_finite_number(price) and price > 0:
            usable[a] = float(price)
            continue
        for row in np.flatnonzero(col != 0):
            bad.setdefault(int(row), (f"collateral.{name}", "unknown asset (no valid price)"))
    gross = np.zeros(n_accounts)
    net = np.zeros(n_accounts)
    for a in sorted(usable, key=lambda j: inp.assets[j]):  # sums in asset-name order, like the reference
        col = c[:, a]
        value = np.where(np.isfinite(col) & (col >= 0), col, 0.0) * usable[a]
        gross += value
        net += value * (1.0 - params.get_haircut(inp.assets[a]))
    return gross, net, bad


def _credit_per_account(presence: np.ndarray, params: RiskParams) -> np.ndarray:
    """Credit of the correlation group containing every held underlying (0 when none does)."""
    credit = np.zeros(presence.shape[0])
    index_of = {u: i for i, u in enumerate(params.underlyings)}
    for members, c in params.correlation_groups:
        outside = [index_of[u] for u in params.underlyings if u not in members]
        inside = ~presence[:, outside].any(axis=1) if outside else np.ones(presence.shape[0], dtype=bool)
        credit = np.where(inside, c, credit)
    return credit


def compute_entry_table(table: InstrumentTable) -> np.ndarray:
    """(2 x instruments, S + 3) per-unit figures to scale by a position's signed quantity q and sum over an
    account's positions: row i for q >= 0 in instrument i, row n + i for q < 0. Columns: the scenario P&L
    and the MtM of a long unit, then the isolated requirement (of a long unit; of a short unit negated,
    so that `q * -x = |q| x`) and the SOM rate (short rows only, negated)."""
    long_rows = np.hstack([table.risk, table.mtm[:, None], table.isolated_long[:, None],
                           np.zeros((len(table.risk), 1))])
    short_rows = np.hstack([table.risk, table.mtm[:, None], -table.isolated_short[:, None],
                            -table.som[:, None]])
    return np.ascontiguousarray(np.vstack([long_rows, short_rows]))


def _compute_rows(prep: PreparedPositions, positions: sp.csr_matrix, entry_table: np.ndarray,
                  out: dict[str, np.ndarray], r0: int, r1: int, params: RiskParams) -> None:
    """Fill rows r0..r1 of `out` (everything but collateral-dependent fields): the sums `BLOCK_ROWS` rows at
    a time, then the per-account requirement over the whole range."""
    presence = np.zeros((r1 - r0, len(prep.blocks)), dtype=bool)
    lowest = np.zeros(r1 - r0)
    for b0 in range(r0, r1, BLOCK_ROWS):
        b1 = min(b0 + BLOCK_ROWS, r1)
        _sum_block(prep, positions, entry_table, out, presence[b0 - r0:b1 - r0], lowest[b0 - r0:b1 - r0], b0, b1)
    _compute_requirements(out, presence, lowest, r0, r1, params)


def _sum_block(prep: PreparedPositions, positions: sp.csr_matrix, entry_table: np.ndarray,
               out: dict[str, np.ndarray], presence: np.ndarray, lowest: np.ndarray, r0: int, r1: int) -> None:
    """Rows r0..r1: per (account, underlying) sums of `compute_entry_table` rows in entry order
    (`risk.accumulation`), then per account the sum over underlyings in index order; fills the risk array,
    its first minimum (`worst_scenario`, then `lowest`: the value), the scan losses, MtM, SOM, isolated
    sum and `presence` (underlyings held).

    `positions` holds no explicit zeros and its columns are sorted by underlying, so an underlying is held
    iff the account has a segment of it. Isolated sum: `sum_q>0 q iso_long + sum_q<0 |q| iso_short`.
    """
    size = prep.table.risk.shape[1]
    e0, e1 = int(positions.indptr[r0]), int(positions.indptr[r1])
    columns, quantity = positions.indices[e0:e1], positions.data[e0:e1]
    table_rows = np.where(quantity < 0.0, columns + len(prep.table.risk), columns)
    segments = compute_segments(positions.indptr[r0:r1 + 1] - e0, prep.table.underlying_index[columns])
    sums = compute_segment_sums(entry_table, table_rows, quantity, segments)
    n, n_segments = r1 - r0, len(segments.start)
    slot = np.full((len(prep.blocks), n), n_segments)  # the row's segment of each underlying, else the zero row
    slot[segments.key, segments.row] = np.arange(n_segments)
    np.less(slot.T, n_segments, out=presence)
    segment_lowest = sums[:, :size].min(axis=1)
    segment_loss = np.where(segment_lowest < 0.0, -segment_lowest, 0.0)
    total = np.take(sums, slot[0], axis=0)
    separate = out["separate_scan_loss"][r0:r1]
    separate[...] = 0.0
    for u in range(len(prep.blocks)):
        loss = np.take(segment_loss, slot[u])
        out["scan_loss_by_underlying"][r0:r1, u] = loss
        separate += loss
        if u:
            total += np.take(sums, slot[u], axis=0)
    joint = out["risk_array"][r0:r1]
    joint[...] = total[:, :size]
    worst = joint.argmin(axis=1)
    out["worst_scenario"][r0:r1] = worst
    np.take(joint.ravel(), np.arange(0, n * size, size) + worst, out=lowest)  # the minimum itself
    out["positions_mtm"][r0:r1] = total[:, size]
    out["isolated_margin_sum"][r0:r1] = total[:, size + 1]
    out["short_option_minimum"][r0:r1] = total[:, size + 2]


def _compute_requirements(out: dict[str, np.ndarray], presence: np.ndarray, lowest: np.ndarray, r0: int,
                          r1: int, params: RiskParams) -> None:
    """Rows r0..r1: worst scenario, joint and correlated scan loss, IM, MM and the capital-efficiency ratio
    from the sums of `_sum_block` (`lowest`: the risk array's minimum, at `worst_scenario`)."""
    joint_loss = np.where(lowest < 0.0, -lowest, 0.0)
    worst = out["worst_scenario"][r0:r1]
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
    out["initial_margin"][r0:r1] = requirement
    out["maintenance_margin"][r0:r1] = params.maintenance_factor * requirement
    with np.errstate(divide="ignore", invalid="ignore"):
        out["capital_efficiency_ratio"][r0:r1] = np.where(requirement > 0.0, isolated / requirement, np.nan)


def _allocate(n_accounts: int, n_scenarios: int, n_underlyings: int) -> dict[str, np.ndarray]:
    out = {name: np.zeros(n_accounts) for name in _FLOAT_FIELDS}
    out["risk_array"] = np.zeros((n_accounts, n_scenarios))
    out["scan_loss_by_underlying"] = np.zeros((n_accounts, n_underlyings))
    out["worst_scenario"] = np.zeros(n_accounts, dtype=np.int32)
    return out


def _finish_accounts(out: dict[str, np.ndarray], gross: np.ndarray, net: np.ndarray,
                     bad: dict[int, tuple[str, str]]) -> np.ndarray:
    out["collateral_value"][:] = gross
    out["collateral_value_after_haircut"][:] = net
    equity = net + out["positions_mtm"]
    out["equity"][:] = equity
    out["free_collateral"][:] = equity - out["initial_margin"]
    mm = out["maintenance_margin"]
    with np.errstate(divide="ignore", invalid="ignore"):
        out["health"][:] = np.where(mm > 0.0, equity / mm, np.nan)
    ok = np.ones(len(equity), dtype=bool)
    rows = np.fromiter(bad.keys(), dtype=np.int64, count=len(bad))
    ok[rows] = False
    for name in (*_FLOAT_FIELDS, "risk_array", "scan_loss_by_underlying"):
        out[name][rows] = np.nan
    out["worst_scenario"][rows] = -1
    return ok


def compute_margin_batch(inp: BatchInput, params: RiskParams, threads: int = 2,
                         phase_hook: Callable[[str], None] | None = None) -> BatchResult:
    """Margin of every account (RISK_SPEC.md sections 2-4) plus LQ-1 plans of liquidatable accounts.

    Raises `InvalidParams` for a bad parameter set and `InvalidInput` only for structural mistakes
    (matrix shapes, wrong matrix type); bad accounts become `AccountError` entries. `phase_hook`, when
    given, is called with the name of each phase as it ends (`prepare`, `collateral`, `accounts`,
    `liquidation`); the engine itself keeps no clock.
    """
    hook = phase_hook or (lambda _name: None)
    detmath.check_environment()
    validate_params(params)
    threads = min(max(1, threads), MAX_THREADS)
    prep = prepare_positions(inp, params)
    positions, bad = flag_positions(prep)
    hook("prepare")
    gross, net, bad_collateral = compute_collateral_batch(inp, params)
    for row, err in bad_collateral.items():
        bad.setdefault(row, err)
    hook("collateral")
    n_accounts = positions.shape[0]
    out = _allocate(n_accounts, compute_scenario_grid(params).size, len(params.underlyings))
    cuts = np.linspace(0, n_accounts, threads + 1).astype(np.int64)
    entry_table = compute_entry_table(prep.table)
    if threads == 1 or n_accounts < 2 * threads:
        _compute_rows(prep, positions, entry_table, out, 0, n_accounts, params)
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            jobs = [pool.submit(_compute_rows, prep, positions, entry_table, out, int(a), int(b), params)
                    for a, b in itertools.pairwise(cuts)]
            for job in jobs:
                job.result()
    ok = _finish_accounts(out, gross, net, bad)
    liquidatable = ok & (out["equity"] < out["maintenance_margin"])
    hook("accounts")
    plans = compute_batch_liquidation_plans(prep, positions, out, np.flatnonzero(liquidatable), params)
    hook("liquidation")
    errors = [AccountError(r, f, why) for r, (f, why) in sorted(bad.items())[:MAX_ERRORS_DETAILED]]
    if len(bad) > MAX_ERRORS_DETAILED:
        errors.append(AccountError(-1, "accounts", f"{len(bad) - MAX_ERRORS_DETAILED} more accounts in error"))
    return BatchResult(underlyings=params.underlyings, ok=ok, liquidatable=liquidatable, liquidation=plans,
                       errors=tuple(errors), **out)
