"""Reading a `ChainBook` from a chain: the cold path (views at a pin) and the incremental path (logs).

- `read_chain_book(client, contracts, pin)`: every view of the vault, ledger and oracle at the pinned
  block hash (paginated, JSON-RPC batches), into a fresh book whose block is the pin. Used once at start,
  after a reorg deeper than the book's history, and every K epochs to check the incremental book.
- `BookSync(client, contracts).advance(pin)`: moves the book from its last block to `pin` with the logs of
  the three contracts in (last, pin]: the headers of that range must chain by parent hash from the book's
  block to the pinned hash, every log's block hash must be the header's, no log may lie past the pin, and
  the pin must still be canonical after the read. A reorg that replaced blocks the book already applied is
  rolled back with the book's undo records (its recorded blocks are checked newest first) and re-applied;
  one deeper than the history rebuilds the book with the cold path. Any other inconsistency (a sequence
  gap, a log that does not decode, a hash that does not chain) raises, so the epoch stalls with a named
  error instead of signing a guess; the book is left at its last good block.

Counts (`SyncStats`): RPC calls and response bytes of the last advance, for the benchmark and metrics.
Blocking (web3 HTTP); one `BookSync` is driven by one thread at a time. Persists nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from eth_utils import to_checksum_address

from bridges.artifacts import get_abi
from bridges.book import (
    KIND_NAMES,
    RIGHT_NAMES,
    AssetInfo,
    BookRollbackTooDeep,
    ChainBook,
    Event,
    InstrumentInfo,
    OpenRequest,
    confidence_key,
    is_printable_key,
    parse_symbol,
)
from bridges.chain import MAX_BATCH, BlockHeader, ChainClient, Pin, find_function_abi
from bridges.errors import InvalidChainValue, ReorgDetected, ReorgTooDeep, SnapshotTooLarge
from bridges.events import CONTRACT_NAMES, EventDecoder

log = logging.getLogger(__name__)

PAGE_SIZE = 500  # the contracts' MAX_PAGE
PACKED_ACCOUNTS = 200  # PositionLedger.MAX_PACKED_ACCOUNTS
_PACKED_POSITION = np.dtype([("id", ">u8"), ("qty", ">i8"), ("entry", ">i8")])
MAX_ENTRIES = 10_000_000  # per paginated view
MAX_LOG_RANGE = 2_000  # blocks per eth_getLogs request
MAX_ADVANCE_BLOCKS = 50_000  # a longer gap is closed with the cold path
DECIMALS_ABI = {"type": "function", "name": "decimals", "inputs": [], "stateMutability": "view",
                "outputs": [{"name": "", "type": "uint8"}]}
REQUEST_OPEN = 1


class LogPastPin(InvalidChainValue):
    """eth_getLogs returned a log of a block after the pin."""


class HashChainBroken(InvalidChainValue):
    """The headers of an advance do not chain from the book's block to the pinned hash."""


@dataclass
class SyncStats:
    rpc_calls: int = 0
    logs: int = 0
    blocks: int = 0
    cold: bool = False
    rolled_back_to: int | None = None
    seconds: float = 0.0


class _Views:
    """Pinned view calls of one contract (ABI from the committed artifact), counting calls."""

    def __init__(self, client: ChainClient, pin: Pin, address: str, contract: str, stats: SyncStats) -> None:
        self.client, self.pin, self.address, self.contract = client, pin, to_checksum_address(address), contract
        self.abi = get_abi(contract)
        self.stats = stats

    def call(self, name: str, *args: object) -> tuple[Any, ...]:
        self.stats.rpc_calls += 1
        return self.client.call_function(self.pin, self.address, find_function_abi(self.abi, name), args)

    def call_many(self, name: str, args_list: Sequence[Sequence[object]]) -> list[tuple[Any, ...]]:
        self.stats.rpc_calls += -(-len(args_list) // MAX_BATCH)
        return self.client.call_function_many(self.pin, self.address, find_function_abi(self.abi, name), args_list)

    def pages(self, count: int, name: str) -> list[tuple[Any, ...]]:
        """Every page of `name(offset, limit)`; each part of a page must have the expected length."""
        if count > MAX_ENTRIES:
            raise SnapshotTooLarge(f"chain {self.pin.chain_id} {self.contract}.{name}: {count} > {MAX_ENTRIES}")
        offsets = list(range(0, count, PAGE_SIZE))
        out = self.call_many(name, [(o, PAGE_SIZE) for o in offsets])
        for offset, page in zip(offsets, out, strict=True):
            expected = min(PAGE_SIZE, count - offset)
            if any(len(part) != expected for part in page):
                raise InvalidChainValue(f"chain {self.pin.chain_id} {self.contract}.{name}: page at {offset} "
                                        f"has {[len(p) for p in page]} entries, expected {expected}")
        return out


def _read_ledger(book: ChainBook, ledger: _Views) -> None:
    cid = book.chain_id
    for page in ledger.pages(int(ledger.call("instrumentCount")[0]), "getInstruments"):
        for iid, underlying, kind, strike, expiry, right in page[0]:
            where = f"chain {cid} ledger.instrument[{iid}]"
            if kind not in KIND_NAMES or right not in RIGHT_NAMES:
                raise InvalidChainValue(f"{where}: kind {kind} / right {right} unknown")
            book.add_instrument(InstrumentInfo(int(iid), parse_symbol(underlying, f"{where}.underlying"),
                                               KIND_NAMES[kind], int(strike), int(expiry), RIGHT_NAMES[right]))
    for page in ledger.pages(len(book.instrument_ids), "getFundingIndices"):
        for iid, index in zip(*page, strict=True):
            if index:
                book.set_funding(int(iid), int(index))
    count = int(ledger.call("accountCount")[0])
    if count > MAX_ENTRIES:
        raise SnapshotTooLarge(f"chain {cid} PositionLedger.accounts: {count} > {MAX_ENTRIES}")
    offsets = list(range(0, count, PACKED_ACCOUNTS))
    pages = [blob for (blob,) in ledger.call_many("getPositionsPacked", [(o, PACKED_ACCOUNTS) for o in offsets])]
    rows, ids, qty, entry = [], [], [], []
    for offset, blob in zip(offsets, pages, strict=True):
        expected = min(PACKED_ACCOUNTS, count - offset)
        parsed = _parse_packed(blob, f"chain {cid} ledger.getPositionsPacked({offset})")
        while len(parsed) < expected:  # a page cut short by the position bound: ask from where it stopped
            more = ledger.call("getPositionsPacked", offset + len(parsed), expected - len(parsed))[0]
            part = _parse_packed(more, f"chain {cid} ledger.getPositionsPacked({offset + len(parsed)})")
            if not part:
                raise InvalidChainValue(f"chain {cid} ledger.getPositionsPacked({offset + len(parsed)}): empty page")
            parsed += part
        if len(parsed) != expected:
            raise InvalidChainValue(f"chain {cid} ledger.getPositionsPacked({offset}): {len(parsed)} accounts, "
                                    f"expected {expected}")
        for account, cash, (pid, pq, pe) in parsed:
            row = book.get_row(account)
            if cash:
                book.set_cash(row, cash)
            live = pq != 0
            rows.append(np.full(int(live.sum()), row, dtype=np.int64))
            ids.append(pid[live])
            qty.append(pq[live])
            entry.append(pe[live])
    if rows:
        book.load_positions(np.concatenate(rows), np.concatenate(ids), np.concatenate(qty), np.concatenate(entry))
    book.sequences["ledger"] = int(ledger.call("eventSequence")[0])


def _parse_packed(blob: bytes, where: str) -> list[tuple[bytes, int, tuple[np.ndarray, ...]]]:
    """`getPositionsPacked` -> [(account, cash, (ids, quantities, entries))]; refuses a malformed blob."""
    out: list[tuple[bytes, int, tuple[np.ndarray, ...]]] = []
    pos = 0
    while pos < len(blob):
        if pos + 32 > len(blob):
            raise InvalidChainValue(f"{where}: truncated at byte {pos}")
        account = bytes(blob[pos:pos + 20])
        cash = int.from_bytes(blob[pos + 20:pos + 28], "big", signed=True)
        n = int.from_bytes(blob[pos + 28:pos + 32], "big")
        pos += 32
        if pos + 24 * n > len(blob):
            raise InvalidChainValue(f"{where}: truncated positions of 0x{account.hex()}")
        packed = np.frombuffer(blob, dtype=_PACKED_POSITION, count=n, offset=pos)
        out.append((account, cash, (packed["id"], packed["qty"].astype(np.int64), packed["entry"].astype(np.int64))))
        pos += 24 * n
    return out


def _read_vault(book: ChainBook, client: ChainClient, pin: Pin, vault: _Views) -> None:
    cid = book.chain_id
    for page in vault.pages(int(vault.call("assetCount")[0]), "getAssets"):
        for symbol, token in page[0]:
            vault.stats.rpc_calls += 1
            decimals = int(client.call_function(pin, to_checksum_address(token), DECIMALS_ABI)[0])
            minimum = int(vault.call("minWithdrawal", to_checksum_address(token))[0])
            if decimals > 36:
                raise InvalidChainValue(f"chain {cid} vault.asset {token}.decimals: {decimals} > 36")
            book.add_asset(AssetInfo(parse_symbol(symbol, f"chain {cid} vault.asset"), to_checksum_address(token),
                                     decimals, int(minimum)))
    tokens = [a.token for a in book.assets]
    for accounts, balances, _locked in vault.pages(int(vault.call("accountCount")[0]), "getBalancesPage"):
        for account, row_balances in zip(accounts, balances, strict=True):
            if any(row_balances):
                row = book.get_row(bytes.fromhex(account[2:]))
                for token, amount in zip(tokens, row_balances, strict=True):
                    if amount:
                        book.set_balance(row, token, int(amount))
    for page in vault.pages(int(vault.call("openRequestCount")[0]), "getOpenRequests"):
        for rid, account, token, amount, epoch, request_time, status, payout in page[0]:
            if status != REQUEST_OPEN or token.lower() not in book.asset_of:
                raise InvalidChainValue(f"chain {cid} vault.request[{rid}]: status {status}, token {token}")
            book.open_request(OpenRequest(int(rid), book.get_row(bytes.fromhex(account[2:])),
                                          book.asset_of[token.lower()], int(amount), int(epoch), int(request_time),
                                          bool(payout)))
    book.sequences["vault"] = int(vault.call("eventSequence")[0])


def _read_oracle(book: ChainBook, oracle: _Views) -> None:
    n_spot, n_fwd, n_vol, n_asset = (int(x) for x in oracle.call("counts"))
    tables = (("spots", n_spot, "getSpots"), ("forwards", n_fwd, "getForwards"), ("vols", n_vol, "getVols"),
              ("asset_prices", n_asset, "getAssetPrices"))
    for table, count, view in tables:
        for keys, quotes in oracle.pages(count, view):
            for key, (value, at) in zip(keys, quotes, strict=True):
                if table == "vols":
                    book.set_quote(table, int(key), value, at)
                    continue
                raw = key[0] if table == "forwards" else key
                if not is_printable_key(raw):
                    book.ignored_keys.add(f"{table}:{raw.hex()}")
                    continue
                symbol = raw.rstrip(b"\0").decode("ascii")
                book.set_quote(table, (symbol, int(key[1])) if table == "forwards" else symbol, value, at)
    _read_inputs(book, oracle)
    book.sequences["oracle"] = int(oracle.call("eventSequence")[0])


def _read_inputs(book: ChainBook, oracle: _Views) -> None:
    """The risk model v2 tables: confidences ((kind, key, expiry) keys) and per-expiry rates."""
    n_conf, n_rate = (int(x) for x in oracle.call("inputCounts"))
    for keys, quotes in oracle.pages(n_conf, "getConfidences"):
        for (kind, raw, expiry), (value, at) in zip(keys, quotes, strict=True):
            try:
                book.set_quote("confidences", confidence_key(kind, raw, expiry), value, at)
            except InvalidChainValue:
                book.ignored_keys.add(f"confidences:{raw.hex()}")
    for keys, quotes in oracle.pages(n_rate, "getRates"):
        for (raw, expiry), (value, at) in zip(keys, quotes, strict=True):
            if not is_printable_key(raw):
                book.ignored_keys.add(f"rates:{raw.hex()}")
                continue
            book.set_quote("rates", (raw.rstrip(b"\0").decode("ascii"), int(expiry)), value, at)


def read_oracle_tables(client: ChainClient, contracts: Mapping[str, str], pin: Pin) -> ChainBook:
    """A book holding only the oracle's tables at `pin` (the cold path's reads of the oracle; for tools that
    show what a publisher wrote). The caller re-checks the pin afterwards."""
    if pin.chain_id != client.chain_id:
        raise InvalidChainValue(f"pin.chain_id: {pin.chain_id} read through the client of chain {client.chain_id}")
    book = ChainBook(pin.chain_id, {k: to_checksum_address(v) for k, v in contracts.items()})
    _read_oracle(book, _Views(client, pin, contracts["oracle"], "MarketOracle", SyncStats()))
    book.block_number, book.block_hash = pin.number, pin.hash
    return book


def read_chain_book(client: ChainClient, contracts: Mapping[str, str], pin: Pin, history: int = 256,
                    stats: SyncStats | None = None) -> ChainBook:
    """Every input of one chain at `pin` as a fresh book (the caller re-checks the pin afterwards)."""
    if pin.chain_id != client.chain_id:
        raise InvalidChainValue(f"pin.chain_id: {pin.chain_id} read through the client of chain {client.chain_id}")
    stats = stats if stats is not None else SyncStats()
    book = ChainBook(pin.chain_id, {k: to_checksum_address(v) for k, v in contracts.items()}, history)
    views = {role: _Views(client, pin, book.contracts[role], name, stats) for role, name in CONTRACT_NAMES.items()}
    _read_vault(book, client, pin, views["vault"])
    _read_ledger(book, views["ledger"])
    _read_oracle(book, views["oracle"])
    book.positions.flush()
    book.block_number, book.block_hash = pin.number, pin.hash
    return book


def contracts_of(deployment: Any) -> dict[str, str]:
    """The three clearing contract addresses of a deployment-like object or mapping."""
    if isinstance(deployment, Mapping):
        return {role: str(deployment[role]) for role in CONTRACT_NAMES}
    return {role: str(getattr(deployment, role)) for role in CONTRACT_NAMES}


class BookSync:
    """Keeps one chain's book at the epoch's pin; see the module docstring."""

    def __init__(self, client: ChainClient, contracts: Mapping[str, str], book: ChainBook | None = None,
                 history: int = 256) -> None:
        self.client = client
        self.contracts = contracts_of(contracts)
        self.decoder = EventDecoder(client.chain_id, self.contracts)
        self.book = book
        self.history = history
        self.stats = SyncStats()
        self._reported_keys: set[str] = set()

    def cold_read(self, pin: Pin) -> ChainBook:
        stats = SyncStats(cold=True)
        book = read_chain_book(self.client, self.contracts, pin, self.history, stats)
        stats.rpc_calls += 1
        self.client.validate_pin(pin)
        self.stats = stats
        return book

    def advance(self, pin: Pin) -> ChainBook:
        """The book at `pin` (built cold if there is none or the gap is too long)."""
        started = time.perf_counter()
        if self.book is None or self.book.block_number is None \
                or pin.number - self.book.block_number > MAX_ADVANCE_BLOCKS:
            self.book = self.cold_read(pin)
        else:
            self.stats = SyncStats()
            try:
                self._advance(self.book, pin)
            except (ReorgTooDeep, BookRollbackTooDeep) as exc:
                log.warning("rebuilding the book from the views",
                            extra={"chain_id": self.client.chain_id, "reason": str(exc)})
                self.book = self.cold_read(pin)
        self.stats.seconds = time.perf_counter() - started
        self._report_ignored(self.book)
        return self.book

    def _report_ignored(self, book: ChainBook) -> None:
        """Log each oracle key the book leaves out (not printable ASCII: no instrument can use it) once."""
        for key in sorted(book.ignored_keys - self._reported_keys):
            log.warning("oracle value under a key that is not printable ASCII ignored",
                        extra={"chain_id": book.chain_id, "key": key})
        self._reported_keys |= book.ignored_keys

    # --- incremental path -------------------------------------------------------------------------

    def _headers(self, start: int, end: int) -> list[BlockHeader]:
        numbers = list(range(start, end + 1))
        headers = self.client.get_blocks(numbers)
        self.stats.rpc_calls += -(-len(numbers) // MAX_BATCH)  # one per JSON-RPC batch
        out: list[BlockHeader] = []
        for n, header in zip(numbers, headers, strict=True):
            if header is None:
                raise ReorgDetected(self.client.chain_id, n, "(advance)", None)
            out.append(header)
        return out

    def _canonical_hash(self, number: int) -> bytes:
        self.stats.rpc_calls += 1
        return self.client.get_block(number).hash

    def _rewind(self, book: ChainBook) -> None:
        """Roll the book back to its newest recorded block that is still canonical."""
        assert book.block_number is not None
        if self._canonical_hash(book.block_number) == book.block_hash:
            return
        for number, block_hash in reversed(book.applied_blocks()[:-1]):
            if self._canonical_hash(number) == block_hash:
                book.rollback_to(number)
                self.stats.rolled_back_to = number
                log.warning("reorg: book rolled back", extra={"chain_id": book.chain_id, "block": number})
                return
        raise ReorgTooDeep(f"chain {book.chain_id}: reorg below the book's oldest recorded block")

    def _advance(self, book: ChainBook, pin: Pin) -> None:
        self._rewind(book)
        assert book.block_number is not None and book.block_hash is not None
        if pin.number < book.block_number:  # an older epoch again (a retry or a re-read): roll back, then forward
            recorded = [n for n, _h in book.applied_blocks() if n <= pin.number]
            if not recorded:
                raise BookRollbackTooDeep(f"chain {pin.chain_id}: pin {pin.number} is behind the book's history")
            book.rollback_to(recorded[-1])
            self.stats.rolled_back_to = recorded[-1]
            if book.block_number == pin.number:
                if book.block_hash != pin.hash:
                    raise ReorgDetected(pin.chain_id, pin.number, pin.hash_hex, "0x" + book.block_hash.hex())
                return
        if pin.number == book.block_number:
            if pin.hash != book.block_hash:
                raise ReorgDetected(pin.chain_id, pin.number, pin.hash_hex, "0x" + book.block_hash.hex())
            return
        start = book.block_number + 1
        headers = self._headers(start, pin.number)
        parent = book.block_hash
        for h in headers:
            if h.parent_hash != parent:
                raise HashChainBroken(f"chain {pin.chain_id}: block {h.number} does not chain onto "
                                      f"{'0x' + parent.hex()}")
            parent = h.hash
        if parent != pin.hash:
            raise ReorgDetected(pin.chain_id, pin.number, pin.hash_hex, "0x" + parent.hex())
        by_number = {h.number: h.hash for h in headers}
        logs = []
        for lo in range(start, pin.number + 1, MAX_LOG_RANGE):
            self.stats.rpc_calls += 1
            logs += self.client.get_logs(lo, min(pin.number, lo + MAX_LOG_RANGE - 1), self.decoder.addresses)
        for entry in logs:
            if entry.block_number > pin.number:
                raise LogPastPin(f"chain {pin.chain_id}: log in block {entry.block_number} past the pin {pin.number}")
            if by_number.get(entry.block_number) != entry.block_hash:
                raise ReorgDetected(pin.chain_id, entry.block_number, "0x" + entry.block_hash.hex(), "(log)")
        self.stats.rpc_calls += 1
        self.client.validate_pin(pin)
        logs.sort(key=lambda x: (x.block_number, x.log_index))
        events_by_block: dict[int, list[Event]] = {}
        for event in self.decoder.decode_many(logs):
            events_by_block.setdefault(event.block_number, []).append(event)
        decimals = self._new_decimals(pin, events_by_block)
        for number in sorted(events_by_block):
            book.apply_block(number, by_number[number], events_by_block[number], decimals)
        book.advance_to(pin.number, pin.hash)
        self.stats.logs, self.stats.blocks = len(logs), len(headers)

    def _new_decimals(self, pin: Pin, events: Mapping[int, list[Event]]) -> dict[str, int]:
        out = {}
        for batch in events.values():
            for e in batch:
                if e.contract == "vault" and e.name == "AssetRegistered":
                    self.stats.rpc_calls += 1
                    token = to_checksum_address(e.args["token"])
                    out[token.lower()] = int(self.client.call_function(pin, token, DECIMALS_ABI)[0])
        return out


def read_books(clients: Sequence[ChainClient], deployments: Mapping[int, Any], pins: Sequence[Pin]) -> list[ChainBook]:
    """Cold books of several chains at their pins (each pin re-checked after its read), by chain id."""
    by_chain = {p.chain_id: p for p in pins}
    return [BookSync(c, contracts_of(deployments[c.chain_id])).cold_read(by_chain[c.chain_id])
            for c in sorted(clients, key=lambda c: c.chain_id)]
