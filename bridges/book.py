"""The chain book: one chain's clearing state (vault, ledger, oracle) as columns, moved by events.

Purpose: a `ChainBook` holds everything the margin computation reads from one chain at one block:
accounts, collateral balances, open withdrawal and payout requests, instruments, positions with their perp funding
entries, settlement cash, funding indices and oracle quotes (spots, forwards, vols, asset prices and the
risk model v2 inputs: confidences per (kind, symbol, expiry), kinds spot/perp/expiry/asset, 1e9 fixed point,
and per-expiry rates, 1e9 fixed point). It is built once from the contracts'
paginated views at a pinned block (`bridges.book_reader.read_chain_book`, the cold path) and then moved
forward block by block with the contracts' events (`apply_block`), so each epoch costs what changed.

Layout (columnar, for a million accounts): accounts get a local row in first-seen order (append-only);
instruments a local column in registration order; positions live in `PositionTable` (sorted int64 keys
`row << 20 | column` with int64 quantity and funding-entry arrays, plus a small pending dict merged on
`flush`); cash, per-asset balances and their float units are dicts/arrays indexed by row.

Invariants:
- Every event that carries `sequence` must be exactly the contract's previous sequence + 1, else
  `EventSequenceGap` (the book never guesses over a missed log). Events carry absolute values (the new
  position, cash, balance), so applying one is an assignment, never an increment.
- Applying a block records undo entries; the last `history` applied blocks can be rolled back
  (`rollback_to`) after a reorg and re-applied from the new chain.
- `apply_block` takes runs of consecutive `TradeRecorded` events and of consecutive oracle quote events in
  bulk (array assignments, one undo record per run) and everything else event by event (`_apply_event`).
  The event-by-event path is the reference: tests hold the two together (`bulk_apply = False` selects it),
  and a run the bulk path refuses is re-applied through it, so every error is the one it raises.
- Quantities, funding entries and cash are bounded to int64 by the contracts; a value outside raises
  `InvalidChainValue` naming the field. Balances are exact Python ints (uint256 token base units); their
  float `units` (amount / 10**decimals, correctly rounded) are kept next to them for the merge.
- Oracle keys that are not printable ASCII are kept out of the book (listed in `ignored_keys`): a value no
  instrument can use never halts the epoch.
- `content_hash()` covers every field the margin computation reads plus the event sequences and is
  independent of row order, so an incremental book and a cold read at the same block compare equal.
Persists nothing itself (`to_bytes`/`from_bytes` give the blob the node stores; blob version 2, a version 1
blob predates the confidence and rate tables and is refused with `BookFormatOutdated` so the node re-reads).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bridges.errors import BridgeError, InvalidChainValue

COL_BITS = 20  # instrument columns per chain < 2^20
MAX_COLUMNS = 1 << COL_BITS
INT64_MAX = 2**63 - 1
DEFAULT_HISTORY = 256  # applied blocks that can be rolled back
KIND_NAMES = {1: "option", 2: "future", 3: "perp", 4: "spot"}
RIGHT_NAMES = {0: "", 1: "call", 2: "put"}
CONTRACTS = ("vault", "ledger", "oracle")
CONFIDENCE_KINDS = {1: "spot", 2: "perp", 3: "expiry", 4: "asset"}
BLOB_VERSION = 2


class EventSequenceGap(BridgeError):
    """A contract's event sequence jumped or went back: a log is missing or duplicated."""


class BookFormatOutdated(InvalidChainValue):
    """A stored blob of an older format (the chain must be read again)."""


class BookRollbackTooDeep(BridgeError):
    """A rollback below the oldest undo record was asked for (the cold path must rebuild the book)."""


class _SlowPath(Exception):
    """A run of events the bulk path leaves to the event-by-event path (internal to `apply_block`)."""


@dataclass(frozen=True)
class InstrumentInfo:
    id: int
    underlying: str
    kind: str  # option, future, perp, spot
    strike: int  # micro-USD (options)
    expiry: int  # unix seconds (options, futures)
    right: str  # call, put or ""


@dataclass(frozen=True)
class AssetInfo:
    symbol: str
    token: str  # checksummed
    decimals: int
    min_withdrawal: int = 0


@dataclass(frozen=True)
class OpenRequest:
    request_id: int
    row: int  # account row
    asset: int  # asset index
    amount: int  # token base units
    request_epoch: int
    request_time: int  # block timestamp of the request
    payout: bool = False  # a payout of ledger cash in the settlement asset (CollateralVault.requestPayout)


@dataclass(frozen=True)
class Event:
    """One decoded contract event: which contract, the event name and its arguments by name."""

    contract: str  # vault | ledger | oracle
    name: str
    args: Mapping[str, Any]
    block_number: int = 0
    log_index: int = 0


def is_printable_key(raw: bytes) -> bool:
    """bytes32 key = 1..32 printable ASCII bytes (0x21..0x7e), left-aligned, zero-padded."""
    body = raw.rstrip(b"\0")
    return len(body) > 0 and all(0x21 <= b <= 0x7E for b in body)


def parse_symbol(raw: bytes | str, where: str) -> str:
    """A symbol from a bytes32 key, or InvalidChainValue naming `where`."""
    if isinstance(raw, str):
        return raw
    if len(raw) != 32 or not is_printable_key(raw):
        raise InvalidChainValue(f"{where}: key {raw.hex()} is not printable ASCII")
    return raw.rstrip(b"\0").decode("ascii")


def check_int64(value: int, where: str) -> int:
    if not -INT64_MAX <= int(value) <= INT64_MAX:
        raise InvalidChainValue(f"{where}: {value} is outside int64")
    return int(value)


class PositionTable:
    """(row, column) -> (quantity 1e8, funding entry micro-USD), as sorted int64 arrays + pending dict."""

    def __init__(self) -> None:
        self.keys = np.zeros(0, dtype=np.int64)
        self.qty = np.zeros(0, dtype=np.int64)
        self.entry = np.zeros(0, dtype=np.int64)
        self._pending: dict[int, tuple[int, int] | None] = {}

    @staticmethod
    def key(row: int, col: int) -> int:
        return (row << COL_BITS) | col

    def get(self, key: int) -> tuple[int, int] | None:
        if key in self._pending:
            return self._pending[key]
        i = int(self.keys.searchsorted(key))
        if i < len(self.keys) and int(self.keys[i]) == key:
            return int(self.qty[i]), int(self.entry[i])
        return None

    def set(self, key: int, value: tuple[int, int] | None) -> None:
        """Set (or with None remove) one entry; visible at once, merged into the arrays on `flush`."""
        self._pending[key] = value

    def flush(self) -> None:
        if not self._pending:
            return
        items = sorted(self._pending.items())
        self._pending = {}
        keys = np.fromiter((k for k, _ in items), dtype=np.int64, count=len(items))
        present = np.array([v is not None for _, v in items], dtype=bool)
        qty = np.array([v[0] if v else 0 for _, v in items], dtype=np.int64)
        entry = np.array([v[1] if v else 0 for _, v in items], dtype=np.int64)
        self.assign(keys, present, qty, entry)

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(present, quantity, entry) of sorted unique `keys` (pending entries flushed first)."""
        self.flush()
        at = np.searchsorted(self.keys, keys)
        found = np.zeros(len(keys), dtype=bool)
        if len(self.keys):
            inside = at < len(self.keys)
            found[inside] = self.keys[at[inside]] == keys[inside]
        where = at[found]
        qty = np.zeros(len(keys), dtype=np.int64)
        entry = np.zeros(len(keys), dtype=np.int64)
        qty[found], entry[found] = self.qty[where], self.entry[where]
        return found, qty, entry

    def assign(self, keys: np.ndarray, present: np.ndarray, qty: np.ndarray, entry: np.ndarray) -> None:
        """Set sorted unique `keys` to (qty, entry) where `present`, remove them elsewhere (pending entries
        must have been flushed: they would be applied after these)."""
        at = np.searchsorted(self.keys, keys)
        found = (at < len(self.keys)) & (self.keys[np.minimum(at, len(self.keys) - 1)] == keys) \
            if len(self.keys) else np.zeros(len(keys), dtype=bool)
        upd = found & present
        self.qty[at[upd]] = qty[upd]
        self.entry[at[upd]] = entry[upd]
        drop = found & ~present
        if drop.any():
            keep = np.ones(len(self.keys), dtype=bool)
            keep[at[drop]] = False
            self.keys, self.qty, self.entry = self.keys[keep], self.qty[keep], self.entry[keep]
        add = ~found & present
        if add.any():
            where = np.searchsorted(self.keys, keys[add])
            self.keys = np.insert(self.keys, where, keys[add])
            self.qty = np.insert(self.qty, where, qty[add])
            self.entry = np.insert(self.entry, where, entry[add])

    def __len__(self) -> int:
        self.flush()
        return len(self.keys)


@dataclass
class _Undo:
    number: int
    hash: bytes
    ops: list[tuple[Any, ...]] = field(default_factory=list)


class ChainBook:
    """One chain's clearing state at one block; see the module docstring."""

    def __init__(self, chain_id: int, contracts: Mapping[str, str], history: int = DEFAULT_HISTORY) -> None:
        self.chain_id = chain_id
        self.contracts = {name: contracts[name] for name in CONTRACTS}
        self.block_number: int | None = None
        self.block_hash: bytes | None = None
        self.sequences = dict.fromkeys(CONTRACTS, 0)
        # accounts
        self.row_of: dict[bytes, int] = {}
        self.addresses: list[bytes] = []
        self.rows_removed = 0  # counts rows taken back by rollbacks (row -> address caches check it)
        # ledger
        self.instruments: dict[int, InstrumentInfo] = {}
        self.col_of: dict[int, int] = {}
        self.instrument_ids: list[int] = []
        self.funding: dict[int, int] = {}
        self.cash: dict[int, int] = {}
        self.positions = PositionTable()
        # vault
        self.assets: list[AssetInfo] = []
        self.asset_of: dict[str, int] = {}  # token (lowercase hex) -> index
        self.balances: dict[tuple[int, int], int] = {}
        self.requests: dict[int, OpenRequest] = {}
        # oracle: key -> (value, updatedAt)
        self.spots: dict[str, tuple[int, int]] = {}
        self.forwards: dict[tuple[str, int], tuple[int, int]] = {}
        self.vols: dict[int, tuple[int, int]] = {}
        self.asset_prices: dict[str, tuple[int, int]] = {}
        self.confidences: dict[tuple[str, str, int], tuple[int, int]] = {}  # (kind, symbol, expiry)
        self.rates: dict[tuple[str, int], tuple[int, int]] = {}  # (underlying, expiry)
        self.ignored_keys: set[str] = set()
        # cached columns for the merge, kept in step with the dicts above through dirty sets
        self._units = np.zeros((0, 0), dtype=np.float64)
        self._base = np.zeros((0, 0, 2), dtype=np.uint64)  # exact balances as (high, low) 64-bit words
        self._dirty_units: set[tuple[int, int]] = set()
        self._cash = np.zeros(0, dtype=np.int64)
        self._dirty_cash: set[int] = set()
        self._history: deque[_Undo] = deque(maxlen=history)
        self._undo: _Undo | None = None
        self.bulk_apply = True  # False: every event through `_apply_event` (the reference path, for tests)

    # --- accounts ---------------------------------------------------------------------------------

    def get_row(self, address: bytes | str) -> int:
        """Row of an account, created on first sight (recorded for undo while a block is applied)."""
        raw = address if isinstance(address, bytes) else bytes.fromhex(address[2:] if address[:2] in ("0x", "0X") else address)
        if len(raw) != 20:
            raise InvalidChainValue(f"chain {self.chain_id} account: {raw.hex()} is not 20 bytes")
        row = self.row_of.get(raw)
        if row is None:
            row = len(self.addresses)
            self.row_of[raw] = row
            self.addresses.append(raw)
            self._record(("account",))
        return row

    def address_array(self) -> np.ndarray:
        """(rows, 20) uint8 of the account addresses in row order."""
        if not self.addresses:
            return np.zeros((0, 20), dtype=np.uint8)
        return np.frombuffer(b"".join(self.addresses), dtype=np.uint8).reshape(-1, 20)

    # --- setters used by the cold path and by events ---------------------------------------------

    def _record(self, op: tuple[Any, ...]) -> None:
        if self._undo is not None:
            self._undo.ops.append(op)

    def add_instrument(self, info: InstrumentInfo) -> None:
        if info.id in self.instruments:
            raise InvalidChainValue(f"chain {self.chain_id} ledger.instrument[{info.id}]: registered twice")
        if len(self.instrument_ids) >= MAX_COLUMNS:
            raise InvalidChainValue(f"chain {self.chain_id} ledger.instruments: more than {MAX_COLUMNS}")
        self.instruments[info.id] = info
        self.col_of[info.id] = len(self.instrument_ids)
        self.instrument_ids.append(info.id)
        self._record(("instrument", info.id))

    def set_position(self, row: int, instrument_id: int, quantity: int, entry: int) -> None:
        col = self.col_of.get(instrument_id)
        if col is None:
            raise InvalidChainValue(f"chain {self.chain_id} ledger.position: unknown instrument {instrument_id}")
        key = PositionTable.key(row, col)
        quantity, entry = int(quantity), int(entry)
        if not (-INT64_MAX <= quantity <= INT64_MAX and -INT64_MAX <= entry <= INT64_MAX):  # name it only then
            where = f"chain {self.chain_id} ledger.position[{self.addresses[row].hex()}:{instrument_id}]"
            check_int64(quantity, where + ".quantity")
            check_int64(entry, where + ".fundingEntry")
        self._record(("position", key, self.positions.get(key)))
        self.positions.set(key, (quantity, entry))

    def load_positions(self, rows: np.ndarray, instrument_ids: np.ndarray, quantity: np.ndarray,
                       entry: np.ndarray) -> None:
        """Bulk load of a cold read (a book with no positions yet and no undo history): int64 columns."""
        if len(self.positions) or self._undo is not None:
            raise InvalidChainValue(f"chain {self.chain_id}: bulk position load into a book that has positions")
        known_ids = np.array(sorted(self.col_of), dtype=np.uint64)
        known_cols = np.array([self.col_of[i] for i in sorted(self.col_of)], dtype=np.int64)
        ids = np.asarray(instrument_ids, dtype=np.uint64)
        at = np.searchsorted(known_ids, ids)
        hit = np.zeros(len(ids), dtype=bool)
        inside = at < len(known_ids)
        hit[inside] = known_ids[at[inside]] == ids[inside]
        if not hit.all():
            bad = int(ids[np.flatnonzero(~hit)[0]])
            raise InvalidChainValue(f"chain {self.chain_id} ledger.position: unknown instrument {bad}")
        cols = known_cols[at]
        keys = (np.asarray(rows, dtype=np.int64) << COL_BITS) | cols
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        if len(keys) > 1 and not (keys[1:] > keys[:-1]).all():
            raise InvalidChainValue(f"chain {self.chain_id} ledger.positions: an instrument listed twice for an account")
        self.positions.keys = keys
        self.positions.qty = np.asarray(quantity, dtype=np.int64)[order]
        self.positions.entry = np.asarray(entry, dtype=np.int64)[order]

    def set_cash(self, row: int, cash: int) -> None:
        cash = int(cash)
        if not -INT64_MAX <= cash <= INT64_MAX:
            check_int64(cash, f"chain {self.chain_id} ledger.cash[{self.addresses[row].hex()}]")
        self._record(("cash", row, self.cash.get(row)))
        self._dirty_cash.add(row)
        if cash:
            self.cash[row] = cash
        else:
            self.cash.pop(row, None)

    def set_funding(self, instrument_id: int, index: int) -> None:
        info = self.instruments.get(instrument_id)
        if info is None or info.kind != "perp":
            raise InvalidChainValue(f"chain {self.chain_id} ledger.funding[{instrument_id}]: not a perp")
        index = check_int64(index, f"chain {self.chain_id} ledger.funding[{instrument_id}]")
        self._record(("funding", instrument_id, self.funding.get(instrument_id)))
        self.funding[instrument_id] = index

    def add_asset(self, info: AssetInfo) -> None:
        token = info.token.lower()
        if token in self.asset_of or any(a.symbol == info.symbol for a in self.assets):
            raise InvalidChainValue(f"chain {self.chain_id} vault.asset {info.symbol}: registered twice")
        self.asset_of[token] = len(self.assets)
        self.assets.append(info)
        self._record(("asset", token))

    def set_min_withdrawal(self, token: str, amount: int) -> None:
        a = self._asset_index(token)
        self._record(("min_withdrawal", a, self.assets[a]))
        old = self.assets[a]
        self.assets[a] = AssetInfo(old.symbol, old.token, old.decimals, int(amount))

    def _asset_index(self, token: str) -> int:
        a = self.asset_of.get(token.lower())
        if a is None:
            raise InvalidChainValue(f"chain {self.chain_id} vault: unknown token {token}")
        return a

    def set_balance(self, row: int, token: str, balance: int) -> None:
        a = self._asset_index(token)
        if not 0 <= balance < 2**128:
            raise InvalidChainValue(f"chain {self.chain_id} vault.balance[{self.addresses[row].hex()}]: "
                                    f"{balance} outside 0..2^128")
        self._record(("balance", (row, a), self.balances.get((row, a))))
        self._dirty_units.add((row, a))
        if balance:
            self.balances[(row, a)] = int(balance)
        else:
            self.balances.pop((row, a), None)

    def open_request(self, req: OpenRequest) -> None:
        if req.request_id in self.requests:
            raise InvalidChainValue(f"chain {self.chain_id} vault.request[{req.request_id}]: opened twice")
        self._record(("request", req.request_id, None))
        self.requests[req.request_id] = req

    def close_request(self, request_id: int) -> None:
        old = self.requests.pop(request_id, None)
        if old is None:
            raise InvalidChainValue(f"chain {self.chain_id} vault.request[{request_id}]: not open")
        self._record(("request", request_id, old))

    def set_quote(self, table: str, key: Any, value: int, at: int) -> None:
        target = getattr(self, table)
        self._record(("quote", table, key, target.get(key)))
        target[key] = (int(value), int(at))

    # --- events -----------------------------------------------------------------------------------

    def apply_block(self, number: int, block_hash: bytes, events: Iterable[Event],
                    decimals: Mapping[str, int] | None = None) -> None:
        """Apply one block's events (in log order) and record how to undo them.

        `decimals` gives token decimals (lowercase token -> decimals) for assets registered in the block.
        A failure leaves the book unchanged (the partial block is undone before the error propagates).
        """
        if self.block_number is not None and number <= self.block_number:
            raise InvalidChainValue(f"chain {self.chain_id}: block {number} is not after {self.block_number}")
        events = list(events)
        decimals = decimals or {}
        self._undo = _Undo(number, block_hash, [("block", self.block_number, self.block_hash)])
        try:
            try:
                self._apply_runs(events, decimals)
            except _SlowPath:  # something in the block the bulk path does not take: event by event
                partial, self._undo = self._undo, _Undo(number, block_hash, [("block", self.block_number,
                                                                               self.block_hash)])
                self._revert(partial)
                for event in events:
                    self._apply_event(event, decimals)
        except Exception:
            undo, self._undo = self._undo, None
            self._revert(undo)
            raise
        self.block_number, self.block_hash = number, block_hash
        undo, self._undo = self._undo, None
        self._history.append(undo)
        self.positions.flush()

    def advance_to(self, number: int, block_hash: bytes) -> None:
        """Move the book's block to `number` over blocks that carried no events (recorded for undo)."""
        if self.block_number is not None and number < self.block_number:
            raise InvalidChainValue(f"chain {self.chain_id}: block {number} is before {self.block_number}")
        if number == self.block_number:
            if block_hash != self.block_hash:
                raise InvalidChainValue(f"chain {self.chain_id}: block {number} hash changed")
            return
        self._history.append(_Undo(number, block_hash, [("block", self.block_number, self.block_hash)]))
        self.block_number, self.block_hash = number, block_hash

    def _check_sequence(self, event: Event) -> None:
        if "sequence" not in event.args:
            return
        expected = self.sequences[event.contract] + 1
        got = int(event.args["sequence"])
        if got != expected:
            raise EventSequenceGap(f"chain {self.chain_id} {event.contract}.{event.name} at block "
                                   f"{event.block_number}: sequence {got}, expected {expected}")
        self._record(("sequence", event.contract, expected - 1))
        self.sequences[event.contract] = got

    def _apply_event(self, event: Event, decimals: Mapping[str, int]) -> None:
        self._check_sequence(event)
        handler = _HANDLERS.get((event.contract, event.name))
        if handler is not None:
            handler(self, event.args, decimals)

    # --- events in bulk: the same assignments per run of trades or quotes, checked before any is made ---

    def _apply_runs(self, events: list[Event], decimals: Mapping[str, int]) -> None:
        """Apply a block as runs: consecutive `TradeRecorded` events and consecutive oracle quote events
        each in one bulk step (`_apply_trades`, `_apply_quotes`), anything else through `_apply_event`.
        Raises `_SlowPath` (before or after partial changes, all recorded for undo) when a run holds
        something only the event-by-event path handles or reports: a sequence gap, an unknown instrument, a
        value outside int64, a malformed argument."""
        i, n = 0, len(events)
        while i < n:
            kind = _run_kind(events[i])
            j = i + 1
            if kind is not None:
                while j < n and _run_kind(events[j]) == kind:
                    j += 1
            if kind == "trades" and self.bulk_apply:
                self._apply_trades(events[i:j])
            elif kind == "quotes" and self.bulk_apply:
                self._apply_quotes(events[i:j])
            else:
                for event in events[i:j]:
                    self._apply_event(event, decimals)
            i = j

    def _take_sequences(self, contract: str, run: list[Event]) -> None:
        """Check that the run's sequences continue the contract's without a gap, and take them."""
        start = self.sequences[contract]
        if [e.args.get("sequence") for e in run] != list(range(start + 1, start + 1 + len(run))):
            raise _SlowPath
        self._record(("sequence", contract, start))
        self.sequences[contract] = start + len(run)

    def _apply_trades(self, run: list[Event]) -> None:
        """`_on_trade` for each event of the run, as array assignments (last write per key wins)."""
        try:
            accounts = [_address(e.args["account"]) for e in run]
            cols = [self.col_of.get(int(e.args["instrumentId"])) for e in run]
            qty = np.array([e.args["position"] for e in run], dtype=np.int64)
            entry = np.array([e.args["fundingEntry"] for e in run], dtype=np.int64)
            cash = np.array([e.args["cash"] for e in run], dtype=np.int64)
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise _SlowPath from exc
        if None in cols or any(len(a) != 20 for a in accounts) \
                or any(int(v.min(initial=0)) < -INT64_MAX for v in (qty, entry, cash)):
            raise _SlowPath
        self._take_sequences("ledger", run)
        rows = np.fromiter((self.get_row(a) for a in accounts), dtype=np.int64, count=len(run))
        keys = (rows << COL_BITS) | np.array(cols, dtype=np.int64)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        last = np.ones(len(keys), dtype=bool)  # the last event of each key in log order
        last[:-1] = sorted_keys[1:] != sorted_keys[:-1]
        unique, pick = sorted_keys[last], order[last]
        self._record(("positions", unique, *self.positions.lookup(unique)))
        self.positions.assign(unique, np.ones(len(unique), dtype=bool), qty[pick], entry[pick])
        new_cash = dict(zip(rows.tolist(), cash.tolist(), strict=True))  # last write per row wins
        self._record(("cash_many", [(r, self.cash.get(r)) for r in new_cash]))
        self._dirty_cash.update(new_cash)
        for r, c in new_cash.items():
            if c:
                self.cash[r] = c
            else:
                self.cash.pop(r, None)

    def _apply_quotes(self, run: list[Event]) -> None:
        """The oracle's `*Set` handlers for each event of the run; one undo record of the first old values."""
        self._take_sequences("oracle", run)
        old: dict[tuple[str, Any], tuple[int, int] | None] = {}
        self._record(("quotes", old))
        try:
            for e in run:
                table, key_of, field_name = _QUOTES[e.name]
                a = e.args
                try:
                    key = key_of(a)
                except InvalidChainValue:
                    self.ignored_keys.add(f"{table}:{_raw_key(a)}")
                    continue
                target = getattr(self, table)
                if (table, key) not in old:
                    old[(table, key)] = target.get(key)
                target[key] = (int(a[field_name]), int(a["updatedAt"]))
        except Exception as exc:  # the event-by-event path names it
            raise _SlowPath from exc

    # --- undo -------------------------------------------------------------------------------------

    def applied_blocks(self) -> list[tuple[int, bytes]]:
        """(number, hash) of the blocks that can be rolled back to, oldest first."""
        return [(u.number, u.hash) for u in self._history]

    def rollback_to(self, number: int) -> None:
        """Undo every applied block above `number` (which must be the last block or a recorded one)."""
        while self.block_number is not None and self.block_number > number:
            if not self._history or self._history[-1].number != self.block_number:
                raise BookRollbackTooDeep(f"chain {self.chain_id}: cannot roll back below {self.block_number}")
            self._revert(self._history.pop())
        if self.block_number != number:
            raise BookRollbackTooDeep(f"chain {self.chain_id}: block {number} is not a recorded block")

    def _revert(self, undo: _Undo) -> None:
        for op in reversed(undo.ops):
            kind = op[0]
            if kind == "block":
                self.block_number, self.block_hash = op[1], op[2]
            elif kind == "sequence":
                self.sequences[op[1]] = op[2]
            elif kind == "account":
                self.row_of.pop(self.addresses.pop())
                self.rows_removed += 1
            elif kind == "instrument":
                self.instruments.pop(op[1])
                self.col_of.pop(op[1])
                self.instrument_ids.pop()
            elif kind == "position":
                self.positions.set(op[1], op[2])
            elif kind == "positions":
                self.positions.flush()  # later single-entry undos first: they were applied after this one
                self.positions.assign(*op[1:])
            elif kind == "cash_many":
                for row, value in op[1]:
                    self._dirty_cash.add(row)
                    if value is None:
                        self.cash.pop(row, None)
                    else:
                        self.cash[row] = value
            elif kind == "quotes":
                for (table, key), value in op[1].items():
                    target = getattr(self, table)
                    if value is None:
                        target.pop(key, None)
                    else:
                        target[key] = value
            elif kind in ("cash", "funding"):
                target = self.cash if kind == "cash" else self.funding
                if kind == "cash":
                    self._dirty_cash.add(op[1])
                if op[2] is None:
                    target.pop(op[1], None)
                else:
                    target[op[1]] = op[2]
            elif kind == "asset":
                self.asset_of.pop(op[1])
                self.assets.pop()
            elif kind == "min_withdrawal":
                self.assets[op[1]] = op[2]
            elif kind == "balance":
                self._dirty_units.add(op[1])
                if op[2] is None:
                    self.balances.pop(op[1], None)
                else:
                    self.balances[op[1]] = op[2]
            elif kind == "request":
                if op[2] is None:
                    self.requests.pop(op[1], None)
                else:
                    self.requests[op[1]] = op[2]
            elif kind == "quote":
                target = getattr(self, op[1])
                if op[3] is None:
                    target.pop(op[2], None)
                else:
                    target[op[2]] = op[3]
        self.positions.flush()

    # --- columns for the merge ----------------------------------------------------------------------

    def balance_columns(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, assets) float64 balances in asset units (amount / 10**decimals, correctly rounded) and
        (rows, assets, 2) uint64 exact base units as (high, low) 64-bit words. Kept in step with the
        balances through a dirty set; rebuilt in bulk when most of it changed (a cold read, a restore)."""
        rows, n_assets = len(self.addresses), len(self.assets)
        if self._units.shape[1] != n_assets or len(self._dirty_units) > max(1024, len(self.balances) // 4):
            self._units, self._base = self._bulk_units(max(rows, 1024))
            self._dirty_units = set()
        elif self._units.shape[0] < rows:
            size = max(rows, 2 * self._units.shape[0])
            units = np.zeros((size, n_assets), dtype=np.float64)
            base = np.zeros((size, n_assets, 2), dtype=np.uint64)
            units[:self._units.shape[0]] = self._units
            base[:self._units.shape[0]] = self._base
            self._units, self._base = units, base
        mask = 2**64 - 1
        for r, a in self._dirty_units:
            if r < rows and a < n_assets:
                value = self.balances.get((r, a), 0)
                self._units[r, a] = value / 10 ** self.assets[a].decimals
                self._base[r, a, 0], self._base[r, a, 1] = value >> 64, value & mask
        self._dirty_units = set()
        return self._units[:rows], self._base[:rows]

    def _bulk_units(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        n, n_assets = len(self.balances), len(self.assets)
        units = np.zeros((size, n_assets), dtype=np.float64)
        base = np.zeros((size, n_assets, 2), dtype=np.uint64)
        if not n:
            return units, base
        rows = np.fromiter((k[0] for k in self.balances), dtype=np.int64, count=n)
        cols = np.fromiter((k[1] for k in self.balances), dtype=np.int64, count=n)
        small = [v if v < 2**53 else -1 for v in self.balances.values()]
        amounts = np.array(small, dtype=np.int64)
        scale = np.array([10.0 ** a.decimals for a in self.assets])  # exact for decimals <= 22
        exact = (amounts >= 0) & (scale[cols] < 2.0**73)
        # both operands exact in float64, so the one IEEE division is the correctly rounded quotient
        units[rows[exact], cols[exact]] = amounts[exact].astype(np.float64) / scale[cols[exact]]
        base[rows[exact], cols[exact], 1] = amounts[exact].astype(np.uint64)
        mask = 2**64 - 1
        for i in np.flatnonzero(~exact).tolist():  # the rare huge amounts: Python's exact division
            r, a = int(rows[i]), int(cols[i])
            value = self.balances[(r, a)]
            units[r, a] = value / 10 ** self.assets[a].decimals
            base[r, a, 0], base[r, a, 1] = value >> 64, value & mask
        return units, base

    def cash_array(self) -> np.ndarray:
        """(rows,) int64 settlement cash in micro-USD (kept in step like `balance_columns`)."""
        rows = len(self.addresses)
        if len(self._dirty_cash) > max(1024, len(self.cash) // 4):
            self._cash = np.zeros(max(rows, 1024), dtype=np.int64)
            if self.cash:
                keys = np.fromiter(self.cash.keys(), dtype=np.int64, count=len(self.cash))
                self._cash[keys] = np.fromiter(self.cash.values(), dtype=np.int64, count=len(self.cash))
            self._dirty_cash = set()
        elif self._cash.shape[0] < rows:
            grown = np.zeros(max(rows, 2 * self._cash.shape[0]), dtype=np.int64)
            grown[:self._cash.shape[0]] = self._cash
            self._cash = grown
        for r in self._dirty_cash:
            if r < rows:
                self._cash[r] = self.cash.get(r, 0)
        self._dirty_cash = set()
        return self._cash[:rows]

    # --- hashing and persistence ------------------------------------------------------------------

    def content_hash(self) -> bytes:
        """sha256 over a canonical, row-order-independent encoding of the book (see module docstring)."""
        self.positions.flush()
        h = hashlib.sha256()
        h.update(json.dumps({
            "chain": self.chain_id, "contracts": {k: v.lower() for k, v in self.contracts.items()},
            "block": [self.block_number, None if self.block_hash is None else self.block_hash.hex()],
            "sequences": self.sequences,
            "instruments": [[i.id, i.underlying, i.kind, i.strike, i.expiry, i.right]
                            for i in sorted(self.instruments.values(), key=lambda x: x.id)],
            "funding": sorted(self.funding.items()),
            "assets": sorted([a.symbol, a.token.lower(), a.decimals, a.min_withdrawal] for a in self.assets),
            "spots": sorted(self.spots.items()), "forwards": sorted([list(k), v] for k, v in self.forwards.items()),
            "vols": sorted(self.vols.items()), "asset_prices": sorted(self.asset_prices.items()),
            "confidences": sorted([list(k), v] for k, v in self.confidences.items()),
            "rates": sorted([list(k), v] for k, v in self.rates.items()),
        }, sort_keys=True).encode())
        addr = self.address_array()
        cash = sorted((self.addresses[r], c) for r, c in self.cash.items())
        h.update(b"".join(a + c.to_bytes(8, "big", signed=True) for a, c in cash))
        balances = sorted((self.addresses[r], self.assets[a].symbol, v) for (r, a), v in self.balances.items())
        h.update(b"".join(a + s.encode() + b"\0" + v.to_bytes(32, "big") for a, s, v in balances))
        requests = sorted((r.request_id, self.addresses[r.row], self.assets[r.asset].symbol, r.amount,
                           r.request_epoch, r.request_time, r.payout) for r in self.requests.values())
        h.update(json.dumps([[i, a.hex(), s, str(m), e, t, *_payout_tag(p)]
                             for i, a, s, m, e, t, p in requests]).encode())
        live = self.positions.qty != 0
        if live.any():
            rows = (self.positions.keys[live] >> COL_BITS).astype(np.int64)
            cols = (self.positions.keys[live] & (MAX_COLUMNS - 1)).astype(np.int64)
            ids = np.asarray(self.instrument_ids, dtype=np.uint64)[cols]
            rec = np.zeros(len(rows), dtype=[("a", "S20"), ("i", ">u8"), ("q", ">i8"), ("e", ">i8")])
            rec["a"] = addr[rows].view("S20").ravel()
            rec["i"], rec["q"], rec["e"] = ids, self.positions.qty[live], self.positions.entry[live]
            rec.sort(order=["a", "i"])
            h.update(rec.tobytes())
        return h.digest()

    def to_bytes(self) -> bytes:
        """A self-contained blob of the book (no undo history): JSON header + numpy arrays."""
        self.positions.flush()
        header = {
            "version": BLOB_VERSION, "chain": self.chain_id, "contracts": self.contracts,
            "block": [self.block_number, None if self.block_hash is None else self.block_hash.hex()],
            "sequences": self.sequences,
            "instruments": [[i.id, i.underlying, i.kind, i.strike, i.expiry, i.right]
                            for i in (self.instruments[x] for x in self.instrument_ids)],
            "funding": [[k, v] for k, v in self.funding.items()],
            "cash": [[k, v] for k, v in self.cash.items()],
            "assets": [[a.symbol, a.token, a.decimals, a.min_withdrawal] for a in self.assets],
            "balances": [[r, a, str(v)] for (r, a), v in self.balances.items()],
            "requests": [[q.request_id, q.row, q.asset, str(q.amount), q.request_epoch, q.request_time,
                          *_payout_tag(q.payout)] for q in self.requests.values()],
            "spots": [[k, *v] for k, v in self.spots.items()],
            "forwards": [[k[0], k[1], *v] for k, v in self.forwards.items()],
            "vols": [[k, *v] for k, v in self.vols.items()],
            "asset_prices": [[k, *v] for k, v in self.asset_prices.items()],
            "confidences": [[*k, *v] for k, v in self.confidences.items()],
            "rates": [[*k, *v] for k, v in self.rates.items()],
            "ignored_keys": sorted(self.ignored_keys),
        }
        buf = io.BytesIO()
        np.savez(buf, addresses=self.address_array(), keys=self.positions.keys, qty=self.positions.qty,
                 entry=self.positions.entry)
        head = json.dumps(header, separators=(",", ":")).encode()
        return len(head).to_bytes(8, "big") + head + buf.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes, history: int = DEFAULT_HISTORY) -> ChainBook:
        n = int.from_bytes(blob[:8], "big")
        header = json.loads(blob[8:8 + n])
        if header.get("version") == 1:
            raise BookFormatOutdated("book blob: version 1 has no confidence and rate tables; read the chain again")
        if header.get("version") != BLOB_VERSION:
            raise InvalidChainValue(f"book blob: version {header.get('version')} unknown")
        arrays = np.load(io.BytesIO(blob[8 + n:]), allow_pickle=False)
        book = cls(int(header["chain"]), header["contracts"], history)
        number, block_hash = header["block"]
        book.block_number = number
        book.block_hash = None if block_hash is None else bytes.fromhex(block_hash)
        book.sequences = {k: int(v) for k, v in header["sequences"].items()}
        book.addresses = [bytes(row) for row in arrays["addresses"]]
        book.row_of = {a: i for i, a in enumerate(book.addresses)}
        for iid, u, kind, strike, expiry, right in header["instruments"]:
            book.add_instrument(InstrumentInfo(iid, u, kind, strike, expiry, right))
        book.funding = {int(k): int(v) for k, v in header["funding"]}
        book.cash = {int(k): int(v) for k, v in header["cash"]}
        book._dirty_cash = set(book.cash)
        for symbol, token, dec, minimum in header["assets"]:
            book.add_asset(AssetInfo(symbol, token, dec, minimum))
        book.balances = {(int(r), int(a)): int(v) for r, a, v in header["balances"]}
        book._dirty_units = set(book.balances)
        book.requests = {int(i): OpenRequest(int(i), int(r), int(a), int(m), int(e), int(t), bool(rest))
                         for i, r, a, m, e, t, *rest in header["requests"]}
        book.spots = {k: (p, t) for k, p, t in header["spots"]}
        book.forwards = {(u, e): (p, t) for u, e, p, t in header["forwards"]}
        book.vols = {int(k): (p, t) for k, p, t in header["vols"]}
        book.asset_prices = {k: (p, t) for k, p, t in header["asset_prices"]}
        book.confidences = {(kind, k, int(e)): (c, t) for kind, k, e, c, t in header["confidences"]}
        book.rates = {(u, int(e)): (r, t) for u, e, r, t in header["rates"]}
        book.ignored_keys = set(header["ignored_keys"])
        book.positions.keys = arrays["keys"].astype(np.int64)
        book.positions.qty = arrays["qty"].astype(np.int64)
        book.positions.entry = arrays["entry"].astype(np.int64)
        return book


def _payout_tag(payout: bool) -> list[int]:
    """A payout request's rows end in 1; a withdrawal's stay as before payouts existed (same hash, same blob)."""
    return [1] if payout else []


# --- event handlers (contract, event name) -> assignment of the absolute values it carries ------------


def _address(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return bytes.fromhex(str(value)[2:])


def _on_instrument(book: ChainBook, a: Mapping[str, Any], _d: Mapping[str, int]) -> None:
    where = f"chain {book.chain_id} ledger.instrument[{a['id']}]"
    kind, right = int(a["kind"]), int(a["right"])
    if kind not in KIND_NAMES or right not in RIGHT_NAMES:
        raise InvalidChainValue(f"{where}: kind {kind} / right {right} unknown")
    book.add_instrument(InstrumentInfo(int(a["id"]), parse_symbol(a["underlying"], f"{where}.underlying"),
                                       KIND_NAMES[kind], int(a["strike"]), int(a["expiry"]), RIGHT_NAMES[right]))


def _on_trade(book: ChainBook, a: Mapping[str, Any], _d: Mapping[str, int]) -> None:
    row = book.get_row(_address(a["account"]))
    book.set_position(row, int(a["instrumentId"]), int(a["position"]), int(a["fundingEntry"]))
    book.set_cash(row, int(a["cash"]))


def _on_funding(book: ChainBook, a: Mapping[str, Any], _d: Mapping[str, int]) -> None:
    book.set_funding(int(a["instrumentId"]), int(a["index"]))


def _on_asset(book: ChainBook, a: Mapping[str, Any], decimals: Mapping[str, int]) -> None:
    token = str(a["token"])
    if token.lower() not in decimals:
        raise InvalidChainValue(f"chain {book.chain_id} vault.asset {token}: decimals not read")
    dec = int(decimals[token.lower()])
    if dec > 36:
        raise InvalidChainValue(f"chain {book.chain_id} vault.asset {token}.decimals: {dec} > 36")
    book.add_asset(AssetInfo(parse_symbol(a["symbol"], f"chain {book.chain_id} vault.asset"), token, dec,
                             int(a.get("minWithdrawal", 0))))


def _on_min_withdrawal(book: ChainBook, a: Mapping[str, Any], _d: Mapping[str, int]) -> None:
    book.set_min_withdrawal(str(a["token"]), int(a["amount"]))


def _on_balance(book: ChainBook, a: Mapping[str, Any], _d: Mapping[str, int]) -> None:
    book.set_balance(book.get_row(_address(a["account"])), str(a["token"]), int(a["balance"]))


def _on_requested(book: ChainBook, a: Mapping[str, Any], _d: Mapping[str, int]) -> None:
    row = book.get_row(_address(a["account"]))
    book.open_request(OpenRequest(int(a["requestId"]), row, book._asset_index(str(a["token"])), int(a["amount"]),
                                  int(a["requestEpoch"]), int(a["requestTime"])))


def _on_completed(book: ChainBook, a: Mapping[str, Any], d: Mapping[str, int]) -> None:
    book.close_request(int(a["requestId"]))
    _on_balance(book, a, d)


def _on_cash_settled(book: ChainBook, a: Mapping[str, Any], _d: Mapping[str, int]) -> None:
    book.set_cash(book.get_row(_address(a["account"])), int(a["cash"]))


def _on_payout_requested(book: ChainBook, a: Mapping[str, Any], _d: Mapping[str, int]) -> None:
    row = book.get_row(_address(a["account"]))
    book.open_request(OpenRequest(int(a["requestId"]), row, book._asset_index(str(a["token"])), int(a["amount"]),
                                  int(a["requestEpoch"]), int(a["requestTime"]), payout=True))


def _on_cancelled(book: ChainBook, a: Mapping[str, Any], _d: Mapping[str, int]) -> None:
    book.close_request(int(a["requestId"]))


def _quote(table: str, key_of: Any, value: str = "price") -> Any:
    def handler(book: ChainBook, a: Mapping[str, Any], _d: Mapping[str, int]) -> None:
        try:
            key = key_of(a)
        except InvalidChainValue:
            book.ignored_keys.add(f"{table}:{_raw_key(a)}")
            return
        book.set_quote(table, key, int(a[value]), int(a["updatedAt"]))
    return handler


def confidence_key(kind: int, raw: bytes | str, expiry: int) -> tuple[str, str, int]:
    """(kind name, symbol, expiry) of a confidence, or InvalidChainValue (unknown kind, bad key)."""
    name = CONFIDENCE_KINDS.get(int(kind))
    if name is None:
        raise InvalidChainValue(f"oracle.confidence: kind {kind} unknown")
    return name, parse_symbol(raw, f"oracle.confidence.{name}"), int(expiry)


def _raw_key(a: Mapping[str, Any]) -> str:
    for name in ("underlying", "asset", "key"):
        if name in a:
            value = a[name]
            return value.hex() if isinstance(value, bytes) else str(value)
    return "?"


# (table, key of the event's arguments, value field) of the oracle's quote events, for the bulk path
_QUOTES: dict[str, tuple[str, Any, str]] = {
    "SpotSet": ("spots", lambda a: parse_symbol(a["underlying"], "oracle.spot"), "price"),
    "ForwardSet": ("forwards", lambda a: (parse_symbol(a["underlying"], "oracle.forward"), int(a["expiry"])), "price"),
    "VolSet": ("vols", lambda a: int(a["instrumentId"]), "vol"),
    "AssetPriceSet": ("asset_prices", lambda a: parse_symbol(a["asset"], "oracle.asset"), "price"),
    "ConfidenceSet": ("confidences", lambda a: confidence_key(a["kind"], a["key"], a["expiry"]), "confidence"),
    "RateSet": ("rates", lambda a: (parse_symbol(a["underlying"], "oracle.rate"), int(a["expiry"])), "rate"),
}


def _run_kind(event: Event) -> str | None:
    if event.contract == "ledger":
        return "trades" if event.name == "TradeRecorded" else None
    return "quotes" if event.contract == "oracle" and event.name in _QUOTES else None


_HANDLERS = {
    ("ledger", "InstrumentRegistered"): _on_instrument,
    ("ledger", "TradeRecorded"): _on_trade,
    ("ledger", "FundingIndexSet"): _on_funding,
    ("ledger", "CashSettled"): _on_cash_settled,
    ("vault", "AssetRegistered"): _on_asset,
    ("vault", "MinWithdrawalSet"): _on_min_withdrawal,
    ("vault", "Deposited"): _on_balance,
    ("vault", "WithdrawalRequested"): _on_requested,
    ("vault", "WithdrawalCompleted"): _on_completed,
    ("vault", "WithdrawalCancelled"): _on_cancelled,
    ("vault", "DebtSwept"): _on_balance,  # the debtor's new settlement-asset balance
    ("vault", "PayoutRequested"): _on_payout_requested,
    ("vault", "PayoutCompleted"): _on_cancelled,  # closes the request; the cash moves by CashSettled
    **{("oracle", name): _quote(table, key_of, value) for name, (table, key_of, value) in _QUOTES.items()},
}
