"""Merge of several chains' books into the columnar inputs of one epoch's margin computation.

`AccountIndex` gives every EVM address seen on any chain one global id (append-only) and keeps the ids
in address order incrementally, so a new account costs a sorted insert, not a sort of the whole book.
`merge_books(books, index, home_chain_id, epoch_time, ...)` returns `ColumnarInputs`: one row per known
account IN ADDRESS ORDER (the leaf order), a CSR position matrix over the instrument columns of every
chain (one column per (chain id, instrument id), sorted; built anew every epoch by `bridges.position_matrix`,
nothing of it is kept between epochs), per-asset collateral units summed over chains in chain-id order, the
settlement vector, the open withdrawal requests as arrays and the per-account failures. No Python object is
made per account or position. The address-ordered account array is cached in the index until a new id.

Marks (documented choice, unchanged): spot, forwards and collateral asset prices come from the HOME
chain's oracle; each option's implied vol from the oracle of the chain whose ledger defines it. The risk
model v2 inputs come from the home oracle too: confidences (spot, perp, expiry, asset; 1e9 fixed point in
[0, 1e9]) and per-expiry rates (1e9 fixed point in [0, MAX_RATE]); a missing one takes the Market's neutral
value (confidence 1, rate 0). A stale or out-of-range RATE is left out with its reason and fails the
accounts holding options or futures of its expiry (the neutral rate never stands in for a stale one). A
stale or out-of-range CONFIDENCE is taken as 0, the most conservative value (the full oracle charge
where the parameter set has one; nothing under RRA-1), and noted under `degraded.<key>` in the issues:
failing accounts instead would let one stale value (a spot confidence enters every collateral charge)
stop the margin of nearly every account, even on a network whose model never charges confidences.

Settlement (RISK_SPEC section 4, equity): realised cash lives in each chain's `PositionLedger` (premiums,
futures and perp entry prices, realised funding: `cash`). The risk engine values options (q V) and spot
(q S) and marks futures and perps at 0, so the merge adds, per account, in integer micro-USD:
`cash + sum_futures rint(q F) + sum_perps [rint(q S) + floor(-q (I - E))]` with q in units, F the
forward of the future's expiry, S the spot, I the perp's funding index and E the position's funding
entry (exact integer arithmetic: rint ties to even, floor for funding; vectorised in int64 with Python
integers only for positions too large for that; then summed as int64).
A position whose mark is missing fails its account (below), so no account is settled on a guess.

Expiry: an option or future whose expiry is at or before the epoch time is settled, not margined: the
home oracle's forward for (underlying, expiry) updated at or after the expiry is its settlement price P,
and the position adds `rint(q P)` (future) or `rint(q max(P - K, 0))` / `rint(q max(K - P, 0))` (call /
put) to the settlement vector, with no risk column. Until that price is published the position fails its
account (the holder is not margined on a guess; the publisher's final mark unblocks it).

Failures: an instrument column that cannot be valued (unknown underlying spot, expired without a
settlement price, missing forward,
missing/stale/zero vol) fails every account holding a non-zero position in it; a balance in an asset
without a valid home price fails its account; each failure names chain and field. Failed accounts keep
their row (arrays stay aligned) and get `ok = False`.
Invariants: deterministic for equal books whatever their row orders; pure (persists nothing).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from bridges.book import COL_BITS, MAX_COLUMNS, ChainBook, InstrumentInfo
from bridges.errors import InvalidChainValue
from bridges.position_matrix import BookEntries, build_position_matrix
from bridges.statecodec import PRICE_SCALE, QTY_SCALE, USD_SCALE, VOL_SCALE, withdrawal_id
from risk.instruments import MAX_RATE, Instrument, Market

SECONDS_PER_DAY = 86_400
CONFIDENCE_SCALE = 10**9
RATE_SCALE = 10**9
MAX_RATE_RAW = int(MAX_RATE) * RATE_SCALE
MAX_PRICE_RAW = 10**15
"""Largest spot, forward, asset or settlement price accepted from an oracle, in micro-USD (1e9 USD a unit).
The oracle stores up to 2^192; a larger quote is invalid and fails the accounts that need it, so one
publisher's absurd value can never overflow the epoch's integer columns and halt it."""


class AccountIndex:
    """Global account ids (append-only) and their address order, maintained incrementally with sorted
    numpy keys (no Python object per account)."""

    def __init__(self) -> None:
        self._addresses = np.zeros((0, 20), dtype=np.uint8)
        self._count = 0
        self._keys = np.zeros(0, dtype="S20")  # addresses in ascending order
        self.order = np.zeros(0, dtype=np.int64)  # gids in address order (parallel to _keys)
        self._local: dict[int, tuple[ChainBook, int, np.ndarray]] = {}  # chain id -> (book, rows_removed, gids)
        self._ordered: np.ndarray | None = None  # addresses in address order (read-only), None after a change

    def __len__(self) -> int:
        return self._count

    @property
    def addresses(self) -> np.ndarray:
        return self._addresses[:self._count]

    def lookup(self, addresses: np.ndarray) -> np.ndarray:
        """gid of each (k, 20) address, new ones added (in the given order, duplicates once)."""
        keys = np.ascontiguousarray(addresses).view("S20").ravel()
        at = np.searchsorted(self._keys, keys)
        found = np.zeros(len(keys), dtype=bool)
        inside = at < len(self._keys)
        found[inside] = self._keys[at[inside]] == keys[inside]
        out = np.empty(len(keys), dtype=np.int64)
        out[found] = self.order[at[found]]
        if not found.all():
            missing = np.flatnonzero(~found)
            new_keys, first, inverse = np.unique(keys[missing], return_index=True, return_inverse=True)
            by_arrival = np.argsort(first, kind="stable")  # ids in first-seen order
            gid_of_unique = np.empty(len(new_keys), dtype=np.int64)
            gid_of_unique[by_arrival] = self._count + np.arange(len(new_keys), dtype=np.int64)
            self._append(np.ascontiguousarray(addresses)[missing[first[by_arrival]]])
            where = np.searchsorted(self._keys, new_keys)
            self._keys = np.insert(self._keys, where, new_keys)
            self.order = np.insert(self.order, where, gid_of_unique)
            self._ordered = None
            out[missing] = gid_of_unique[inverse.ravel()]
        return out

    def _append(self, block: np.ndarray) -> None:
        if self._count + len(block) > len(self._addresses):
            grown = np.zeros((max(self._count + len(block), 2 * len(self._addresses)), 20), dtype=np.uint8)
            grown[:self._count] = self._addresses[:self._count]
            self._addresses = grown
        self._addresses[self._count:self._count + len(block)] = block
        self._count += len(block)

    def map_book(self, book: ChainBook) -> np.ndarray:
        """local row -> gid for `book` (new addresses get ids); cached per chain while the book object is the
        same and no row was rolled back."""
        entry = self._local.get(book.chain_id)
        cached = np.zeros(0, dtype=np.int64)
        if entry is not None and entry[0] is book and entry[1] == book.rows_removed:
            cached = entry[2]
        n = len(book.addresses)
        if len(cached) < n:
            tail = book.addresses[len(cached):n]
            block = np.frombuffer(b"".join(tail), dtype=np.uint8).reshape(-1, 20)
            cached = np.concatenate([cached, self.lookup(block)])
        self._local[book.chain_id] = (book, book.rows_removed, cached)
        return cached

    def ordered_addresses(self) -> np.ndarray:
        """(N, 20) uint8 addresses in address order (the leaf order); read-only, rebuilt only after new ids."""
        if self._ordered is None or len(self._ordered) != self._count:
            ordered = np.take(self.addresses, self.order, axis=0)
            ordered.flags.writeable = False
            self._ordered = ordered
        return self._ordered

    def ranks(self) -> np.ndarray:
        """gid -> position in address order."""
        rank = np.empty(self._count, dtype=np.int64)
        rank[self.order] = np.arange(self._count, dtype=np.int64)
        return rank


@dataclass(frozen=True)
class AccountFailure:
    """Why one account's margin cannot be computed this epoch (it gets no leaf)."""

    account: str
    field: str
    reason: str


@dataclass(frozen=True)
class AccountFailures:
    rows: np.ndarray  # int64, sorted, unique
    fields: tuple[str, ...]
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class WithdrawalColumns:
    """Open requests of every chain; sorted by (row, chain id, request id)."""

    row: np.ndarray  # int64 account row
    chain_id: np.ndarray  # int64
    request_id: np.ndarray  # int64
    asset: tuple[str, ...]
    amount: tuple[int, ...]  # token base units
    units: np.ndarray  # float64 amount / 10**decimals
    request_epoch: np.ndarray  # int64
    withdrawal_id: tuple[bytes, ...]
    payout: np.ndarray  # bool: a payout of ledger cash (CollateralVault.requestPayout), else a withdrawal
    par: np.ndarray  # int64 micro-USD at par of a payout, ceil(amount * 1e6 / 10**decimals) (0 for withdrawals)
    chain_cash: np.ndarray  # int64 ledger cash of the request's account on the request's chain (micro-USD)

    def __len__(self) -> int:
        return len(self.row)


@dataclass(frozen=True)
class CollateralDetail:
    """Per (row, chain, asset) non-zero balances in exact base units (high, low 64-bit words), in blocks of
    one (chain, asset) each, ordered by chain id then asset symbol."""

    row: np.ndarray
    chain_id: np.ndarray
    asset: np.ndarray  # int32 index into `ColumnarInputs.assets`
    base: np.ndarray  # (n, 2) uint64


@dataclass(frozen=True)
class ColumnarInputs:
    epoch_time: int
    home_chain_id: int
    pins: tuple[tuple[int, int, bytes], ...]  # (chain id, block number, block hash) by chain id
    market: Market
    accounts: np.ndarray  # (N, 20) uint8, ascending
    present: np.ndarray  # bool: the account holds a position, collateral or cash
    ok: np.ndarray  # bool: not failed
    instruments: tuple[Instrument, ...]  # the columns of `positions`
    positions: sp.csr_matrix  # (N, columns) float64 quantities in units
    assets: tuple[str, ...]
    collateral: np.ndarray  # (N, assets) float64 units
    settlement: np.ndarray  # (N,) int64 micro-USD
    withdrawals: WithdrawalColumns
    collateral_detail: CollateralDetail
    failures: AccountFailures


@dataclass(frozen=True)
class _Column:
    instrument: Instrument | None
    reason: str  # why the column cannot be valued ("" when it can)
    mark: int  # micro-USD forward (futures), spot (perps), settlement value per unit (settled); 0 otherwise
    funding: int  # perp funding index
    settled: bool = False  # expired and settled: valued at `mark` per unit, no risk column


def _quote_ok(at: int, epoch_time: int, max_age_s: int | None) -> bool:
    return max_age_s is None or epoch_time - at <= max_age_s


def build_market(home: ChainBook, epoch_time: int, max_age_s: int | None
                 ) -> tuple[Market, dict[str, str], dict[tuple[str, int], int], dict[str, int]]:
    """Market from the home chain's valid quotes; the reason each invalid key was left out; raw forward
    and spot prices in micro-USD (for settlement)."""
    cid = home.chain_id
    issues: dict[str, str] = {}
    spot: dict[str, float] = {}
    spot_raw: dict[str, int] = {}
    for sym, (price, at) in sorted(home.spots.items()):
        if not _quote_ok(at, epoch_time, max_age_s):
            issues[f"spot.{sym}"] = f"chain {cid} oracle.spot.{sym}: updated at {at}, older than {max_age_s}s"
        elif price <= 0:
            issues[f"spot.{sym}"] = f"chain {cid} oracle.spot.{sym}: price {price} <= 0"
        elif price > MAX_PRICE_RAW:
            issues[f"spot.{sym}"] = f"chain {cid} oracle.spot.{sym}: price {price} above {MAX_PRICE_RAW}"
        else:
            spot[sym], spot_raw[sym] = price / PRICE_SCALE, price
    forwards: dict[tuple[str, float], float] = {}
    fwd_raw: dict[tuple[str, int], int] = {}
    for (sym, expiry), (price, at) in sorted(home.forwards.items()):
        key = f"forward.{sym}.{expiry}"
        if expiry <= epoch_time:
            continue  # an expired forward is not a market input (instruments at it fail on their own)
        if not _quote_ok(at, epoch_time, max_age_s):
            issues[key] = f"chain {cid} oracle.{key}: updated at {at}, older than {max_age_s}s"
        elif price <= 0:
            issues[key] = f"chain {cid} oracle.{key}: price 0"
        elif price > MAX_PRICE_RAW:
            issues[key] = f"chain {cid} oracle.{key}: price {price} above {MAX_PRICE_RAW}"
        else:
            forwards[(sym, (expiry - epoch_time) / SECONDS_PER_DAY)] = price / PRICE_SCALE
            fwd_raw[(sym, expiry)] = price
    prices: dict[str, float] = {}
    for sym, (price, at) in sorted(home.asset_prices.items()):
        if not _quote_ok(at, epoch_time, max_age_s):
            issues[f"asset.{sym}"] = f"chain {cid} oracle.asset.{sym}: updated at {at}, older than {max_age_s}s"
        elif price <= 0:
            issues[f"asset.{sym}"] = f"chain {cid} oracle.asset.{sym}: price {price} <= 0"
        elif price > MAX_PRICE_RAW:
            issues[f"asset.{sym}"] = f"chain {cid} oracle.asset.{sym}: price {price} above {MAX_PRICE_RAW}"
        else:
            prices[sym] = price / PRICE_SCALE
    v2 = _v2_inputs(home, epoch_time, max_age_s, issues)
    market = Market(spot=spot, forwards=forwards, asset_prices=prices, rates=v2["rates"],
                    expiry_confidence=v2["expiry_confidence"], spot_confidence=v2["spot_confidence"],
                    perp_confidence=v2["perp_confidence"], asset_confidence=v2["asset_confidence"])
    return market, issues, fwd_raw, spot_raw


def _v2_inputs(home: ChainBook, epoch_time: int, max_age_s: int | None, issues: dict[str, str]
               ) -> dict[str, dict[Any, float]]:
    """Confidences and rates of the home oracle as Market fields (see the module docstring); each invalid
    one is recorded in `issues` under `confidence.<kind>.<symbol>[.<expiry>]` or `rate.<u>.<expiry>`."""
    out: dict[str, dict[Any, float]] = {"spot_confidence": {}, "perp_confidence": {}, "expiry_confidence": {},
                                        "asset_confidence": {}, "rates": {}}
    quotes = [(f"{kind}_confidence", f"confidence.{kind}.{sym}", sym, expiry, v, at, CONFIDENCE_SCALE)
              for (kind, sym, expiry), (v, at) in home.confidences.items()]
    quotes += [("rates", "rate." + sym, sym, expiry, v, at, MAX_RATE_RAW) for (sym, expiry), (v, at) in home.rates.items()]
    for target, name, sym, expiry, value, at, limit in sorted(quotes):
        dated = target in ("expiry_confidence", "rates")
        key = f"{name}.{expiry}" if dated else name
        if dated and expiry <= epoch_time:
            continue  # an expired expiry is not a market input
        where = (sym, (expiry - epoch_time) / SECONDS_PER_DAY) if dated else sym
        if not _quote_ok(at, epoch_time, max_age_s):
            issue = f"chain {home.chain_id} oracle.{key}: updated at {at}, older than {max_age_s}s"
        elif not 0 <= value <= limit:
            issue = f"chain {home.chain_id} oracle.{key}: {value} outside [0, {limit}] (1e9 fixed point)"
        else:
            out[target][where] = value / (RATE_SCALE if target == "rates" else CONFIDENCE_SCALE)
            continue
        if target == "rates":
            issues[key] = issue  # fails the accounts that need the rate
        else:
            out[target][where] = 0.0  # the most conservative confidence: full oracle charge, no failure
            issues["degraded." + key] = issue
    return out


def _v2_issue(issues: Mapping[str, str], inst: InstrumentInfo) -> str:
    """The reason a v2 input the instrument's margin needs was left out, or ""."""
    if inst.kind in ("option", "future"):
        return issues.get(f"rate.{inst.underlying}.{inst.expiry}", "")
    return ""


def get_settlement_prices(home: ChainBook) -> dict[tuple[str, int], int]:
    """Expiry settlement prices in micro-USD: the home oracle's forward for (underlying, expiry) when it
    was updated at or after the expiry (the publisher's final mark; a correction is a later update) and is at
    most `MAX_PRICE_RAW` (a larger one counts as not published)."""
    return {key: price for key, (price, at) in home.forwards.items() if at >= key[1] and 0 < price <= MAX_PRICE_RAW}


def _settled_column(inst: InstrumentInfo, where: str, epoch_time: int, settle_raw: Mapping[tuple[str, int], int]) -> _Column:
    """An expired option or future: valued at its settlement price (no risk column), or failing its
    holders until the settlement price is published."""
    price = settle_raw.get((inst.underlying, inst.expiry))
    if price is None:
        return _Column(None, f"{where}.expiry: {inst.expiry} is not after the epoch time {epoch_time} and no "
                             f"settlement price (forward.{inst.underlying}.{inst.expiry} updated at or after "
                             f"the expiry) is published", 0, 0)
    if inst.kind == "future":
        return _Column(None, "", price, 0, settled=True)
    payoff = max(price - inst.strike, 0) if inst.right == "call" else max(inst.strike - price, 0)
    return _Column(None, "", payoff, 0, settled=True)


def _column(book: ChainBook, iid: int, epoch_time: int, market: Market, issues: Mapping[str, str],
            fwd_raw: Mapping[tuple[str, int], int], spot_raw: Mapping[str, int], max_age_s: int | None,
            settle_raw: Mapping[tuple[str, int], int]) -> _Column:
    inst = book.instruments[iid]
    where = f"chain {book.chain_id} ledger.instrument[{iid}]"
    if inst.kind in ("option", "future") and inst.expiry <= epoch_time:
        return _settled_column(inst, where, epoch_time, settle_raw)
    if inst.underlying not in market.spot:
        reason = issues.get(f"spot.{inst.underlying}", f"{where}.underlying: no spot for {inst.underlying}")
        return _Column(None, reason, 0, 0)
    days, mark = 0.0, spot_raw[inst.underlying]
    if inst.kind in ("option", "future"):
        days = (inst.expiry - epoch_time) / SECONDS_PER_DAY
        if (inst.underlying, inst.expiry) not in fwd_raw:
            reason = issues.get(f"forward.{inst.underlying}.{inst.expiry}",
                                f"{where}: no forward for {inst.underlying} at expiry {inst.expiry}")
            return _Column(None, reason, 0, 0)
        mark = fwd_raw[(inst.underlying, inst.expiry)]
    reason = _v2_issue(issues, inst)
    if reason:
        return _Column(None, reason, 0, 0)
    vol = 0.0
    if inst.kind == "option":
        raw_vol, at = book.vols.get(iid, (0, 0))
        if raw_vol > 0 and not _quote_ok(at, epoch_time, max_age_s):
            return _Column(None, f"chain {book.chain_id} oracle.vol.{iid}: updated at {at}, older than "
                                 f"{max_age_s}s", 0, 0)
        if raw_vol <= 0:
            return _Column(None, f"chain {book.chain_id} oracle.vol[{iid}]: vol {raw_vol} <= 0 or missing", 0, 0)
        vol = raw_vol / VOL_SCALE
    instrument = Instrument(underlying=inst.underlying, kind=inst.kind, days_to_expiry=days,
                            strike=inst.strike / PRICE_SCALE, right=inst.right, vol=vol)
    return _Column(instrument, "", mark if inst.kind in ("future", "perp") else 0, book.funding.get(iid, 0))


def _collateral_issue(symbol: str, market: Market, issues: Mapping[str, str]) -> str:
    """Why a balance in `symbol` cannot be valued and charged (no price, or a v2 input left out), or ""."""
    if symbol not in market.asset_prices:
        return issues.get(f"asset.{symbol}", f"home oracle.asset.{symbol}: no price")
    return ""


_SCALE = int(QTY_SCALE)  # 1e8: quantities are in 1e8 units
_FAST = 2**61  # |operand| and |estimated value| below this: the split products below stay inside int64
_SETTLE_LIMIT = 2**62  # a position's settlement value must stay below this (sums of positions stay in int64)


def _div_scale(q: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact (floor(q m / 1e8), (q m) mod 1e8) as int64 for |q| < 2^63, |m| < 2^61 whose |q m / 1e8| < 2^61.

    q = qh 1e8 + ql and m = mh 1e8 + ml (floor division, 0 <= ql, ml < 1e8) give
    q m = 1e8 (qh m + ql mh) + ql ml, and ql ml < 1e16 = 1e8 th + tl; so q m / 1e8 = (qh m + ql mh + th) + tl / 1e8
    with 0 <= tl < 1e8. Every product is inside int64 under the bounds: |qh m| <= |q m| / 1e8 + |m|, |ql mh| < |m|.
    """
    qh, ql = np.divmod(q, _SCALE)
    mh, ml = np.divmod(m, _SCALE)
    th, tl = np.divmod(ql * ml, _SCALE)
    return qh * m + ql * mh + th, tl


def _rint_scaled(q: np.ndarray, m: np.ndarray) -> np.ndarray:
    """rint(q m / 1e8), ties to even (as np.rint), exact; bounds as `_div_scale`."""
    whole, rest = _div_scale(q, m)
    up = (2 * rest > _SCALE) | ((2 * rest == _SCALE) & (whole % 2 == 1))
    return whole + up


def _settle_exact(kind: int, q: int, mark: int, index: int, entry: int) -> int:
    """One position's settlement value with Python integers (the reference, and the path of the rare
    positions outside the vectorised bounds)."""
    if kind == 0:
        return 0
    prod = q * mark
    whole, rest = divmod(prod, _SCALE)
    value = whole + (1 if 2 * rest > _SCALE or (2 * rest == _SCALE and whole % 2) else 0)
    if kind == 2:
        value += (-q * (index - entry)) // _SCALE
    return value


def _settle(kind: np.ndarray, qty: np.ndarray, mark: np.ndarray, index: np.ndarray, entry: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """Per position settlement value in micro-USD, exact (docs/clearing.md section 2): `rint(q mark / 1e8)`
    (ties to even) for futures (kind 1) and settled expiries, plus `floor(-q (index - entry) / 1e8)` for perps
    (kind 2); 0 for options and spot. Vectorised in int64 (`_div_scale`); the positions whose operands or
    value are too large for that (a float estimate above 2^61) are computed with Python integers. Returns the
    values and the mask of positions whose value has magnitude 2^62 or more (value 0 there): their accounts
    fail (a venue's absurd position must not halt the epoch)."""
    kind, q = np.asarray(kind), np.asarray(qty, dtype=np.int64)
    mark, index, entry = (np.asarray(a, dtype=np.int64) for a in (mark, index, entry))
    if not len(q):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
    perp = kind == 2
    qf, mf = np.abs(q.astype(np.float64)), np.abs(mark.astype(np.float64))  # float: abs(-2^63) stays positive
    big = (mf >= _FAST) | (qf * mf >= _FAST * float(_SCALE))
    # every row is computed in int64 below; the `big` ones may wrap there and are recomputed exactly after
    out = _rint_scaled(q, mark)
    if perp.any():
        diff = np.where(perp, index, 0) - np.where(perp, entry, 0)  # inside int64 where not `big`
        big |= perp & ((np.abs(index.astype(np.float64)) >= _FAST // 2) | (np.abs(entry.astype(np.float64)) >= _FAST // 2)
                       | (qf * np.abs(diff.astype(np.float64)) >= _FAST * float(_SCALE)))
        out += _div_scale(q, -diff)[0]  # floor(q (E - I) / 1e8), 0 where not a perp
    out[kind == 0] = 0
    big &= kind != 0
    rows = np.flatnonzero(big)
    for r, k, qi, mi, ii, ei in zip(rows.tolist(), kind[rows].tolist(), q[rows].tolist(), mark[rows].tolist(),
                                    index[rows].tolist(), entry[rows].tolist(), strict=True):
        exact = _settle_exact(k, qi, mi, ii, ei)
        out[r] = exact if -_SETTLE_LIMIT < exact < _SETTLE_LIMIT else _SETTLE_LIMIT
    # a fast value can reach 2^62 only through the sum of two terms (each below 2^62: no int64 wrap)
    over = (out >= _SETTLE_LIMIT) | (out <= -_SETTLE_LIMIT)
    out[over] = 0
    return out, over


def _live_positions(book: ChainBook) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """keys, quantities and funding entries of the book's non-zero positions (no copy when all are)."""
    p = book.positions
    p.flush()
    live = p.qty != 0
    if live.all():
        return p.keys, p.qty, p.entry
    return p.keys[live], p.qty[live], p.entry[live]


def merge_books(books: Sequence[ChainBook], index: AccountIndex, home_chain_id: int, epoch_time: int,
                max_quote_age_s: int | None = None) -> ColumnarInputs:
    by_chain = {b.chain_id: b for b in books}
    if len(by_chain) != len(books):
        raise InvalidChainValue("books: two books of one chain")
    if home_chain_id not in by_chain:
        raise InvalidChainValue(f"home_chain_id: no book of home chain {home_chain_id}")
    ordered = [by_chain[c] for c in sorted(by_chain)]
    market, issues, fwd_raw, spot_raw = build_market(by_chain[home_chain_id], epoch_time, max_quote_age_s)
    settle_raw = get_settlement_prices(by_chain[home_chain_id])
    local = [index.map_book(b) for b in ordered]
    rank = index.ranks()
    n = len(index)
    fail_rows: dict[int, tuple[str, str]] = {}
    present = np.zeros(n, dtype=bool)
    settlement = np.zeros(n, dtype=np.int64)
    magnitude = np.zeros(n, dtype=np.float64)  # sum of |terms| per account: a bound on the int64 sum
    # instrument columns: (chain id, instrument id) in sorted order
    columns: list[Instrument] = []
    entries: list[BookEntries] = []
    for book, to_gid in zip(ordered, local, strict=True):
        ids = sorted(book.instrument_ids)
        info = [_column(book, iid, epoch_time, market, issues, fwd_raw, spot_raw, max_quote_age_s, settle_raw)
                for iid in ids]
        local_col = np.array([book.col_of[i] for i in ids], dtype=np.int64)
        global_col = np.full(max(len(book.instrument_ids), 1), -1, dtype=np.int64)
        kind = np.zeros(max(len(book.instrument_ids), 1), dtype=np.int8)  # 1 future, 2 perp
        mark = np.zeros(len(kind), dtype=np.int64)
        funding = np.zeros(len(kind), dtype=np.int64)
        bad_reason: dict[int, str] = {}
        settled = np.zeros(len(kind), dtype=bool)
        for lc, col in zip(local_col.tolist(), info, strict=True):
            if col.settled:
                settled[lc], kind[lc], mark[lc] = True, 1, col.mark  # valued like a future at `mark`
                continue
            if col.instrument is None:
                bad_reason[lc] = col.reason
                continue
            global_col[lc] = len(columns)
            columns.append(col.instrument)
            kind[lc] = {"future": 1, "perp": 2}.get(col.instrument.kind, 0)
            mark[lc], funding[lc] = col.mark, col.funding
        keys, qty, entry = _live_positions(book)
        local_row, cols = keys >> COL_BITS, keys & (MAX_COLUMNS - 1)
        rows_of = rank[to_gid]
        held = np.zeros(len(rows_of), dtype=bool)
        held[local_row] = True
        present[rows_of[held]] = True
        bad = ((global_col < 0) & ~settled)[cols]
        for r, c in zip(rows_of[local_row[bad]].tolist(), cols[bad].tolist(), strict=True):
            iid = book.instrument_ids[c]
            fail_rows.setdefault(r, (f"positions[{book.chain_id}:{iid}]", bad_reason[c]))
        good = (global_col >= 0)[cols]
        if good.all():
            entries.append(BookEntries(local_row, global_col[cols], qty, rows_of))
        else:
            entries.append(BookEntries(local_row[good], global_col[cols[good]], qty[good], rows_of))
        linear = np.flatnonzero(kind[cols] != 0)  # futures, perps and settled expiries at the mark (never bad)
        value, over = _settle(kind[cols[linear]], qty[linear], mark[cols[linear]], funding[cols[linear]], entry[linear])
        linear_rows = rows_of[local_row[linear]]
        for r, c in zip(linear_rows[over].tolist(), cols[linear[over]].tolist(), strict=True):
            iid = book.instrument_ids[c]
            fail_rows.setdefault(r, (f"positions[{book.chain_id}:{iid}]", f"chain {book.chain_id} settlement value "
                                     f"of the position at or above 2^62 micro-USD in magnitude"))
        np.add.at(settlement, linear_rows, value)
        magnitude += np.bincount(linear_rows, weights=np.abs(value.astype(np.float64)), minlength=n)
        cash = book.cash_array()
        settlement[rows_of[: len(cash)]] += cash  # one row per account of this book: no repeats
        magnitude[rows_of[: len(cash)]] += np.abs(cash.astype(np.float64))
        present[rows_of[np.flatnonzero(cash)]] = True
    for r in np.flatnonzero(magnitude >= _SETTLE_LIMIT).tolist():  # the int64 sum could wrap: fail, never guess
        fail_rows.setdefault(r, ("settlement", "the account's settlement terms sum to 2^62 micro-USD or more"))
    positions = build_position_matrix(entries, n, len(columns))
    assets = tuple(sorted({a.symbol for b in ordered for a in b.assets}))
    asset_idx = {a: i for i, a in enumerate(assets)}
    collateral = np.zeros((n, len(assets)), dtype=np.float64)
    detail_rows: list[np.ndarray] = []
    detail_chain: list[np.ndarray] = []
    detail_asset: list[np.ndarray] = []
    detail_base: list[np.ndarray] = []
    for book, to_gid in zip(ordered, local, strict=True):  # float sums in chain-id order
        units, base = book.balance_columns()
        for a, asset in sorted(enumerate(book.assets), key=lambda x: x[1].symbol):  # detail: (chain, symbol)
            held = np.flatnonzero(units[:, a] != 0)
            rows = rank[to_gid[held]]
            collateral[rows, asset_idx[asset.symbol]] += units[held, a]
            present[rows] = True
            reason = _collateral_issue(asset.symbol, market, issues)
            if reason:
                for r in rows.tolist():
                    fail_rows.setdefault(r, (f"collateral.{asset.symbol}", reason))
            detail_rows.append(rows)
            detail_chain.append(np.full(len(rows), book.chain_id, dtype=np.int64))
            detail_asset.append(np.full(len(rows), asset_idx[asset.symbol], dtype=np.int32))
            detail_base.append(np.take(base[:, a], held, axis=0))

    def joined(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    detail = CollateralDetail(joined(detail_rows), joined(detail_chain),
                              np.concatenate(detail_asset) if detail_asset else np.zeros(0, np.int32),
                              np.concatenate(detail_base) if detail_base else np.zeros((0, 2), np.uint64))
    withdrawals = _withdrawals(ordered, local, rank)
    ok = np.ones(n, dtype=bool)
    failed = sorted(fail_rows)
    ok[failed] = False
    failures = AccountFailures(np.asarray(failed, dtype=np.int64), tuple(fail_rows[r][0] for r in failed),
                               tuple(fail_rows[r][1] for r in failed))
    pins = tuple((b.chain_id, int(b.block_number or 0), b.block_hash or bytes(32)) for b in ordered)
    return ColumnarInputs(epoch_time=epoch_time, home_chain_id=home_chain_id, pins=pins, market=market,
                          accounts=index.ordered_addresses(), present=present, ok=ok,
                          instruments=tuple(columns), positions=positions, assets=assets,
                          collateral=collateral, settlement=settlement, withdrawals=withdrawals,
                          collateral_detail=detail, failures=failures)


_MAX_PAR = 2**62  # a payout's par value is capped here (the vault bounds it to the account's int64 cash anyway)


def _withdrawals(books: Sequence[ChainBook], local: Sequence[np.ndarray], rank: np.ndarray) -> WithdrawalColumns:
    rows: list[tuple[int, int, int, str, int, float, int, bytes, bool, int, int]] = []
    for book, to_gid in zip(books, local, strict=True):
        for req in book.requests.values():
            asset = book.assets[req.asset]
            par = min(-(-req.amount * USD_SCALE // 10**asset.decimals), _MAX_PAR) if req.payout else 0
            rows.append((int(rank[to_gid[req.row]]), book.chain_id, req.request_id, asset.symbol, req.amount,
                         req.amount / 10**asset.decimals, req.request_epoch,
                         withdrawal_id(book.chain_id, book.contracts["vault"], req.request_id),
                         req.payout, par, book.cash.get(req.row, 0)))
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    return WithdrawalColumns(
        row=np.array([r[0] for r in rows], dtype=np.int64), chain_id=np.array([r[1] for r in rows], dtype=np.int64),
        request_id=np.array([r[2] for r in rows], dtype=np.int64), asset=tuple(r[3] for r in rows),
        amount=tuple(r[4] for r in rows), units=np.array([r[5] for r in rows], dtype=np.float64),
        request_epoch=np.array([r[6] for r in rows], dtype=np.int64), withdrawal_id=tuple(r[7] for r in rows),
        payout=np.array([r[8] for r in rows], dtype=bool), par=np.array([r[9] for r in rows], dtype=np.int64),
        chain_cash=np.array([r[10] for r in rows], dtype=np.int64))
