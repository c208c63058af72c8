"""ES-1 tail metrics in batch, on request only (not part of consensus): VaR99 and ES99 per account.

Each instrument is revalued once under the N lognormal shocks of its underlying (instruments x N, per
long unit); an account's losses are a row block of `-(positions @ that)` computed in chunks of
`CHUNK_ROWS` rows (N columns each), and only accounts holding exactly one underlying get values (NaN
otherwise, and for accounts in error). Same definitions as `risk.tail` (options priced with their
expiry's rate). Not part of consensus (nothing
of it is signed), so it keeps scipy's `ndtri` and sparse products; its pricing is the batch's
(`risk.detmath`). Nothing is persisted.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.special import ndtri

from risk import detmath
from risk.batch import BatchInput, flag_positions, prepare_positions
from risk.instrument_table import InstrumentTable
from risk.instruments import get_pricing_market, get_rate
from risk.params import RiskParams, validate_params
from risk.pricing import DAYS_PER_YEAR, compute_black76_price_array
from risk.tail import compute_tail_count

CHUNK_ROWS = 20_000


@dataclass(frozen=True)
class TailResult:
    accounts: np.ndarray  # int64 rows evaluated
    var99: np.ndarray  # NaN unless the account holds exactly one underlying
    es99: np.ndarray


def compute_linear_tail(t: InstrumentTable, params: RiskParams) -> np.ndarray:
    """(instruments, N) `F' - F` per long unit under each shock of the instrument's underlying; zeros
    for invalid instruments. Options are overwritten with their repricing by the caller."""
    n = params.es_samples
    z = ndtri((np.arange(1, n + 1) - 0.5) / n)
    sigma = np.array([params.get_sigma_ref(u) for u in params.underlyings])
    s = sigma * np.sqrt(params.es_horizon_days / 365.0)
    factors = detmath.exp(s[:, None] * z[None, :] - 0.5 * s[:, None] * s[:, None])  # (U, N)
    uid = t.underlying_index
    f = t.reference_price
    out = np.zeros((len(uid), n))
    valid = uid >= 0
    shocked = f[valid, None] * factors[uid[valid]]
    out[valid] = shocked - f[valid, None]
    return out


def compute_tail_batch(inp: BatchInput, params: RiskParams, accounts: np.ndarray | None = None) -> TailResult:
    """VaR99/ES99 of the requested account rows (all when None)."""
    validate_params(params)
    inp = dataclasses.replace(inp, market=get_pricing_market(inp.market, params.use_rates))
    prep = prepare_positions(inp, params)
    positions, bad = flag_positions(prep)
    rows = np.arange(positions.shape[0]) if accounts is None else np.asarray(accounts, dtype=np.int64)
    table = compute_linear_tail(prep.table, params)
    options = np.flatnonzero(prep.table.is_option)
    if len(options):
        opt = [inp.instruments[int(prep.original_column[i])] for i in options]
        strike = np.array([x.strike for x in opt])
        vol = np.array([x.vol for x in opt])
        days = np.array([x.days_to_expiry for x in opt])
        is_call = np.array([x.right == "call" for x in opt])
        rate = np.array([get_rate(inp.market, x) for x in opt])
        f = prep.table.reference_price[options]
        base = compute_black76_price_array(f, strike, days / DAYS_PER_YEAR, vol, is_call, rate)
        shocked = f[:, None] + table[options]  # F * factor
        after = np.maximum(days - params.es_horizon_days, 0.0) / DAYS_PER_YEAR
        value = compute_black76_price_array(shocked, strike[:, None], after[:, None], vol[:, None],
                                            is_call[:, None], rate[:, None])
        table[options] = value - base[:, None]
    m = compute_tail_count(params)
    var = np.full(len(rows), np.nan)
    es = np.full(len(rows), np.nan)
    uid = prep.table.underlying_index
    for c0 in range(0, len(rows), CHUNK_ROWS):
        chunk = rows[c0:c0 + CHUNK_ROWS]
        sub = positions[chunk]
        held = sp.csr_matrix((np.abs(sub.data), sub.indices, sub.indptr), shape=sub.shape)
        count = np.zeros(len(chunk), dtype=np.int64)
        for u in range(len(params.underlyings)):
            count += (held @ (uid == u).astype(np.float64)) > 0.0
        single = (count == 1) & np.array([int(r) not in bad for r in chunk], dtype=bool)
        if not single.any():
            continue
        losses = -(sub[single] @ table)
        top = -np.partition(-losses, m - 1, axis=1)[:, :m]
        var[c0 + np.flatnonzero(single)] = top.min(axis=1)
        es[c0 + np.flatnonzero(single)] = top.sum(axis=1) / m
    return TailResult(rows, var, es)
