"""Batch engine for the network: every account of a market in one pass (numpy/scipy), any parameter set.

Construct a `BatchInput`:
    BatchInput(
        instruments=[Instrument(...), ...],       # the columns of `positions`, any order
        market=Market(spot={...}, forwards={(u, days): F}, asset_prices={...}),
        positions=scipy.sparse.csr_matrix(...),   # accounts x instruments, signed float quantities
        collateral=np.ndarray,                    # accounts x assets, float balances (>= 0)
        assets=["USDC", "BTC", ...],              # the columns of `collateral`
        cash=None,                                # optional per-account cash (stable units, may be < 0)
    )
and call `compute_margin_batch(inp, params) -> BatchResult`; `risk.quantize.quantized(result)` gives the
integer consensus view. Each instrument is priced once per scenario (`risk.instrument_table`, on
`risk.detmath`); instruments are sorted by group (underlying; in the expiry model (underlying, expiry)
then strike, calls before puts) so that an account's positions in one group are one run of its CSR row
(columns already in such an order are kept). A risk-cancelling collateral asset enters the grid of its
underlying as a book of its own (its value times a unit's P&L). The per-account sums and requirements are
`risk.batch_accounts`, so cost grows with the number of positions.
Rows are split into contiguous chunks computed in threads (numpy releases the GIL), each in blocks of
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

import dataclasses
import itertools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from risk import detmath
from risk.accumulation import compute_segment_sums, compute_segments
from risk.batch_accounts import BLOCK_ROWS, FLOAT_FIELDS, AccountContext, allocate, compute_rows
from risk.batch_accounts import make_context as make_account_context
from risk.batch_liquidation import LiquidationPlans, compute_batch_liquidation_plans, empty_plans
from risk.contingencies import compute_im_factor
from risk.errors import InvalidInput
from risk.instrument_table import InstrumentTable, compute_instrument_table, compute_oracle_rate
from risk.instruments import Instrument, Market, get_pricing_market, is_finite_number
from risk.params import RiskParams, validate_params

__all__ = ["BLOCK_ROWS", "AccountError", "BatchInput", "BatchResult", "compute_margin_batch", "flag_positions",
           "prepare_positions"]

MAX_THREADS = 8
MAX_ERRORS_DETAILED = 100_000
"""Bound on the number of `AccountError` entries built; further bad accounts share one summary entry."""


@dataclass(frozen=True)
class BatchInput:
    instruments: Sequence[Instrument]
    market: Market
    positions: sp.csr_matrix
    collateral: np.ndarray
    assets: Sequence[str]
    cash: np.ndarray | None = None  # per account, in the stable (cash, perp unrealised P&L and funding)


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
    worst_scenario: np.ndarray  # int32, -1 when the joint scan loss is 0, S when the basis term binds
    scan_loss_by_underlying: np.ndarray  # (accounts, U)
    separate_scan_loss: np.ndarray
    joint_scan_loss: np.ndarray
    correlated_margin: np.ndarray
    short_option_minimum: np.ndarray
    requirement: np.ndarray  # R = max(M_corr, SOM)
    isolated_margin_sum: np.ndarray
    capital_efficiency_ratio: np.ndarray  # NaN when R = 0
    positions_mtm: np.ndarray
    collateral_value: np.ndarray
    collateral_value_after_haircut: np.ndarray
    basis_loss: np.ndarray  # -B of the joint book (0 without a basis contingency)
    maintenance_contingency: np.ndarray  # C_MM
    initial_contingency: np.ndarray  # C_IM
    liquidation: LiquidationPlans = field(default_factory=empty_plans)  # LQ-1 steps of liquidatable accounts
    errors: tuple[AccountError, ...] = ()


@dataclass(frozen=True)
class PreparedPositions:
    """Positions with columns sorted by group, and the matching instrument table."""

    positions: sp.csr_matrix  # canonical, columns in sorted order, bad entries zeroed
    table: InstrumentTable  # in sorted column order
    original_column: np.ndarray  # sorted column -> original instrument index


@dataclass(frozen=True)
class CollateralTerms:
    """Per account: collateral value, value after the valuation haircut, the MM and IM charges (None when
    the parameter set charges nothing on collateral), and the accounts with a bad balance."""

    gross: np.ndarray
    net: np.ndarray
    mm: np.ndarray | None
    im: np.ndarray | None
    bad: dict[int, tuple[str, str]]
    values: dict[int, np.ndarray]  # asset column -> b p / stable (balances 0 where invalid)


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


def _column_order(table: InstrumentTable, instruments: Sequence[Instrument], params: RiskParams) -> np.ndarray:
    """Columns by group (invalid instruments last); in the expiry model the options of one group by strike,
    a call before the put of its strike. In the expiry model, the identity when the valid columns already
    have such an order (underlyings in index order, each option group contiguous and ordered)."""
    n_groups = len(table.groups.underlying)
    key = np.where(table.group < 0, n_groups, table.group)
    if not params.has_expiry_terms():
        return np.argsort(key, kind="stable")
    strike = np.array([x.strike for x in instruments], dtype=np.float64)
    is_put = np.array([x.right == "put" for x in instruments], dtype=bool)
    valid = table.group >= 0
    option_group = np.where(table.is_option, table.group, -1)[valid]
    if (not (np.diff(table.underlying_index[valid]) < 0).any() and _runs_are_contiguous(option_group)
            and _strike_pairs_adjacent(option_group, strike[valid], is_put[valid])):
        return np.arange(len(key))
    return np.lexsort((is_put, strike, key))


def _runs_are_contiguous(keys: np.ndarray) -> bool:
    """Every value of `keys` other than -1 occupies one contiguous run."""
    starts = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]
    starts = starts[starts >= 0]
    return len(np.unique(starts)) == len(starts)


def _strike_pairs_adjacent(group: np.ndarray, strike: np.ndarray, is_put: np.ndarray) -> bool:
    """Inside each option group, strikes ascend and a call comes right before the put of its strike."""
    inside = (group[1:] == group[:-1]) & (group[1:] >= 0)
    ascending = (strike[1:] > strike[:-1]) | ((strike[1:] == strike[:-1]) & ~is_put[:-1] & is_put[1:])
    return bool((ascending | ~inside).all())


def prepare_positions(inp: BatchInput, params: RiskParams) -> PreparedPositions:
    """Sort instrument columns by group (`_column_order`) and build the table."""
    table = compute_instrument_table(inp.instruments, inp.market, params)
    p = _canonical_positions(inp.positions, len(inp.instruments))
    order = _column_order(table, inp.instruments, params)
    if not np.array_equal(order, np.arange(len(order))):
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        p = sp.csr_matrix((p.data.copy(), inverse[p.indices].astype(p.indices.dtype), p.indptr.copy()),
                          shape=p.shape)
        p.sort_indices()
        table = table.take(order)
    return PreparedPositions(p, table, order)


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


def _charges_collateral(params: RiskParams) -> bool:
    return bool(params.mm_haircuts or params.im_haircuts or params.oracle_confidence_threshold > 0.0)


def compute_collateral_batch(inp: BatchInput, params: RiskParams) -> CollateralTerms:
    """Per account the collateral terms of docs/risk_v2.md section 5: value `b p / stable_price`, after
    the valuation haircut, MM and IM (haircut plus oracle) charges; sums in asset-name order."""
    c = np.asarray(inp.collateral, dtype=np.float64)
    n_accounts = inp.positions.shape[0]
    if c.shape != (n_accounts, len(inp.assets)):
        raise InvalidInput("collateral", f"shape {c.shape} != ({n_accounts}, {len(inp.assets)})")
    market = inp.market
    bad: dict[int, tuple[str, str]] = {}
    usable: dict[int, float] = {}
    for a, name in enumerate(inp.assets):  # errors in column order: the first bad column names the field
        col = c[:, a]
        price = market.asset_prices.get(name)
        for row in np.flatnonzero(~np.isfinite(col) | (col < 0)):
            bad.setdefault(int(row), (f"collateral.{name}", "balance must be finite and >= 0"))
        if price is not None and is_finite_number(price) and price > 0:
            usable[a] = float(price)
            continue
        for row in np.flatnonzero(col != 0):
            bad.setdefault(int(row), (f"collateral.{name}", "unknown asset (no valid price)"))
    gross, net = np.zeros(n_accounts), np.zeros(n_accounts)
    charged = _charges_collateral(params)
    mm, im = (np.zeros(n_accounts), np.zeros(n_accounts)) if charged else (None, None)
    spot_confidence = min(market.get_spot_confidence(u) for u in params.underlyings)
    values: dict[int, np.ndarray] = {}
    for a in sorted(usable, key=lambda j: inp.assets[j]):  # sums in asset-name order, like the reference
        col, name = c[:, a], inp.assets[a]
        value = np.where(np.isfinite(col) & (col >= 0), col, 0.0) * usable[a] / market.stable_price
        values[a] = value
        gross += value
        net += value * (1.0 - params.get_haircut(name))
        if mm is not None and im is not None:
            confidence = min(market.get_asset_confidence(name), spot_confidence)
            mm += value * params.get_mm_haircut(name)
            im += value * params.get_im_haircut(name) + value * float(compute_oracle_rate(confidence, params))
    return CollateralTerms(gross, net, mm, im, bad, values)


def _finish_accounts(out: dict[str, np.ndarray], coll: CollateralTerms, cash: np.ndarray | None,
                     bad: dict[int, tuple[str, str]]) -> np.ndarray:
    out["collateral_value"][:] = coll.gross
    out["collateral_value_after_haircut"][:] = coll.net
    equity = coll.net + out["positions_mtm"]
    if cash is not None:
        equity = equity + cash
    out["equity"][:] = equity
    out["free_collateral"][:] = equity - out["initial_margin"]
    mm = out["maintenance_margin"]
    with np.errstate(divide="ignore", invalid="ignore"):
        out["health"][:] = np.where(mm > 0.0, equity / mm, np.nan)
    ok = np.ones(len(equity), dtype=bool)
    rows = np.fromiter(bad.keys(), dtype=np.int64, count=len(bad))
    ok[rows] = False
    for name in (*FLOAT_FIELDS, "risk_array", "scan_loss_by_underlying"):
        out[name][rows] = np.nan
    out["worst_scenario"][rows] = -1
    return ok


def _check_cash(inp: BatchInput, bad: dict[int, tuple[str, str]]) -> np.ndarray | None:
    if inp.cash is None:
        return None
    cash = np.asarray(inp.cash, dtype=np.float64)
    if cash.shape != (inp.positions.shape[0],):
        raise InvalidInput("cash", f"shape {cash.shape} != ({inp.positions.shape[0]},)")
    for row in np.flatnonzero(~np.isfinite(cash)):
        bad.setdefault(int(row), ("cash", "must be finite"))
    return np.where(np.isfinite(cash), cash, 0.0)


def make_context(prep: PreparedPositions, coll: CollateralTerms, assets: Sequence[str], market: Market,
                 params: RiskParams) -> AccountContext:
    index_of = {u: i for i, u in enumerate(params.underlyings)}
    cancels = {a: params.get_risk_cancelling(assets[a]) for a in coll.values}
    books = tuple((index_of[u], values) for a, values in sorted(coll.values.items())
                  if (u := cancels[a]) is not None)
    return make_account_context(prep.table, params, compute_im_factor(market, params), coll.mm, coll.im, books)


def compute_margin_batch(inp: BatchInput, params: RiskParams, threads: int = 2,
                         phase_hook: Callable[[str], None] | None = None) -> BatchResult:
    """Margin of every account (RISK_SPEC.md sections 2-4, docs/risk_v2.md) plus LQ-1 plans of
    liquidatable accounts.

    Raises `InvalidParams` for a bad parameter set and `InvalidInput` only for structural mistakes
    (matrix shapes, wrong matrix type); bad accounts become `AccountError` entries. `phase_hook`, when
    given, is called with the name of each phase as it ends (`prepare`, `collateral`, `accounts`,
    `liquidation`); the engine itself keeps no clock.
    """
    hook = phase_hook or (lambda _name: None)
    detmath.check_environment()
    validate_params(params)
    inp = dataclasses.replace(inp, market=get_pricing_market(inp.market, params.use_rates))
    threads = min(max(1, threads), MAX_THREADS)
    coll = compute_collateral_batch(inp, params)
    prep = prepare_positions(inp, params)
    positions, bad = flag_positions(prep)
    hook("prepare")
    for row, err in coll.bad.items():
        bad.setdefault(row, err)
    cash = _check_cash(inp, bad)
    hook("collateral")
    n_accounts = positions.shape[0]
    out = allocate(n_accounts, len(params.scenarios), len(params.underlyings))
    ctx = make_context(prep, coll, inp.assets, inp.market, params)
    cuts = np.linspace(0, n_accounts, threads + 1).astype(np.int64)
    if threads == 1 or n_accounts < 2 * threads:
        compute_rows(ctx, positions, out, 0, n_accounts)
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            jobs = [pool.submit(compute_rows, ctx, positions, out, int(a), int(b)) for a, b in itertools.pairwise(cuts)]
            for job in jobs:
                job.result()
    ok = _finish_accounts(out, coll, cash, bad)
    liquidatable = ok & (out["equity"] < out["maintenance_margin"])
    hook("accounts")
    plans = compute_batch_liquidation_plans(ctx, prep, positions, out, np.flatnonzero(liquidatable), threads)
    hook("liquidation")
    errors = [AccountError(r, f, why) for r, (f, why) in sorted(bad.items())[:MAX_ERRORS_DETAILED]]
    if len(bad) > MAX_ERRORS_DETAILED:
        errors.append(AccountError(-1, "accounts", f"{len(bad) - MAX_ERRORS_DETAILED} more accounts in error"))
    fields = {name: out[name] for name in (*FLOAT_FIELDS, "risk_array", "scan_loss_by_underlying", "worst_scenario")}
    return BatchResult(underlyings=params.underlyings, ok=ok, liquidatable=liquidatable, liquidation=plans,
                       errors=tuple(errors), **fields)
