"""Chain adapter: one `ChainClient` per configured EVM chain (web3.py HTTP provider, synchronous).

Purpose: every read that feeds consensus is made at a pinned block HASH (EIP-1898
`{"blockHash": h, "requireCanonical": true}`), so a reorg makes the read fail instead of silently
reading another fork; after reading, `validate_pin` re-checks that `eth_getBlockByNumber(n).hash`
is still the pinned hash and raises `ReorgDetected` otherwise (the caller re-pins and re-reads,
see `read_at_pin`).

Invariants:
- A pin is the highest block with `timestamp <= target - lag` that is at least `confirmations`
  deep (`number <= head - confirmations`), and it is only returned once its successor is also
  confirmed and past the cutoff (otherwise `PinNotReady`): later blocks cannot change the answer, so
  honest nodes querying at different times pin the same block.
- RPC failures are retried a bounded number of times with capped exponential backoff, then raise
  `ChainUnavailable(chain_id, reason)`; a deterministic JSON-RPC error raises `RpcError` /
  `CallReverted` at once. No default value is ever returned in place of an answer.
- Thread-safe enough for `trio.to_thread`: no per-call mutable state except the health record,
  which is guarded by a lock. An `EventFollower` is single-owner: one thread drives one follower.

Persists nothing; the follower's position (`last_block`) is for the caller to store.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import function_abi_to_4byte_selector, get_abi_input_types, get_abi_output_types
from web3 import HTTPProvider

from bridges.errors import (
    CallReverted,
    ChainIdMismatch,
    ChainUnavailable,
    InvalidChainResponse,
    PinNotReady,
    ReorgDetected,
    ReorgTooDeep,
    RpcError,
)
from bridges.telemetry import get_telemetry

T = TypeVar("T")

# Bounds (declared where the thing is declared).
DEFAULT_TIMEOUT_S = 5.0
DEFAULT_MAX_ATTEMPTS = 4
DEFAULT_BACKOFF_S = 0.1
MAX_BACKOFF_S = 2.0
MAX_PIN_SEARCH_STEPS = 80  # binary search over <= 2^64 blocks
MAX_READ_ATTEMPTS = 4  # re-pin-and-re-read rounds after reorgs
# JSON-RPC error codes that signal a transient server condition (rate limit, overload).
TRANSIENT_RPC_CODES = frozenset({-32005, -32603, 429})
# "Resource not found" / "header not found": the block hash of a read is not (or no longer) known.
BLOCK_NOT_FOUND_CODES = frozenset({-32001, -32000})

MAX_BATCH = 100  # calls per JSON-RPC batch

HEALTH_OK = "ok"
HEALTH_UNAVAILABLE = "unavailable"


class _Transient(Exception):
    """A JSON-RPC error code that signals a transient server condition (internal: retried)."""


@dataclass(frozen=True)
class ChainConfig:
    """Static configuration of one chain (from the node's TOML)."""

    chain_id: int
    rpc_url: str
    lag_s: int = 0
    confirmations: int = 0
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff_s: float = DEFAULT_BACKOFF_S

    def __post_init__(self) -> None:
        if self.chain_id <= 0:
            raise ValueError(f"chain_id must be positive, got {self.chain_id}")
        if self.lag_s < 0 or self.confirmations < 0:
            raise ValueError(f"lag_s and confirmations must be >= 0 (chain {self.chain_id})")
        if not 1 <= self.max_attempts <= 20:
            raise ValueError(f"max_attempts must be in 1..20, got {self.max_attempts}")
        if not 0 < self.timeout_s <= 120:
            raise ValueError(f"timeout_s must be in (0, 120], got {self.timeout_s}")


@dataclass(frozen=True)
class Pin:
    """A pinned block: every consensus read of one epoch on one chain happens at `hash`."""

    chain_id: int
    number: int
    hash: bytes
    timestamp: int

    @property
    def hash_hex(self) -> str:
        return "0x" + self.hash.hex()


@dataclass(frozen=True)
class BlockHeader:
    number: int
    hash: bytes
    parent_hash: bytes
    timestamp: int
    base_fee: int | None = None


@dataclass(frozen=True)
class Health:
    """Health of one chain's RPC for metrics and `/readyz`."""

    chain_id: int
    state: str  # HEALTH_OK or HEALTH_UNAVAILABLE
    last_error: str | None
    consecutive_failures: int


@dataclass(frozen=True)
class LogEntry:
    block_number: int
    block_hash: bytes
    tx_hash: bytes
    log_index: int
    address: str
    topics: tuple[bytes, ...]
    data: bytes


def parse_quantity(value: object, field: str) -> int:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise InvalidChainResponse(f"{field}: expected a hex quantity, got {value!r}")
    return int(value, 16)


def parse_bytes(value: object, field: str, length: int | None = None) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise InvalidChainResponse(f"{field}: expected hex bytes, got {value!r}")
    raw = bytes.fromhex(value[2:])
    if length is not None and len(raw) != length:
        raise InvalidChainResponse(f"{field}: expected {length} bytes, got {len(raw)}")
    return raw


def parse_header(block: object) -> BlockHeader:
    if not isinstance(block, dict):
        raise InvalidChainResponse(f"block: expected an object, got {type(block).__name__}")
    base_fee = block.get("baseFeePerGas")
    return BlockHeader(
        number=parse_quantity(block.get("number"), "block.number"),
        hash=parse_bytes(block.get("hash"), "block.hash", 32),
        parent_hash=parse_bytes(block.get("parentHash"), "block.parentHash", 32),
        timestamp=parse_quantity(block.get("timestamp"), "block.timestamp"),
        base_fee=None if base_fee is None else parse_quantity(base_fee, "block.baseFeePerGas"),
    )


def parse_log(raw: object) -> LogEntry:
    if not isinstance(raw, dict):
        raise InvalidChainResponse("log: expected an object")
    return LogEntry(
        block_number=parse_quantity(raw.get("blockNumber"), "log.blockNumber"),
        block_hash=parse_bytes(raw.get("blockHash"), "log.blockHash", 32),
        tx_hash=parse_bytes(raw.get("transactionHash"), "log.transactionHash", 32),
        log_index=parse_quantity(raw.get("logIndex"), "log.logIndex"),
        address=str(raw.get("address")),
        topics=tuple(parse_bytes(t, "log.topics", 32) for t in raw.get("topics", [])),
        data=parse_bytes(raw.get("data"), "log.data"),
    )


def encode_function_call(fn_abi: Any, args: Sequence[object]) -> bytes:
    """Selector plus ABI-encoded arguments of one function ABI entry."""
    types = get_abi_input_types(fn_abi)
    return function_abi_to_4byte_selector(fn_abi) + abi_encode(types, list(args))


def decode_function_result(fn_abi: Any, data: bytes) -> tuple[Any, ...]:
    try:
        return tuple(abi_decode(get_abi_output_types(fn_abi), data))
    except Exception as exc:  # eth_abi raises several decoding error types
        raise InvalidChainResponse(f"{fn_abi.get('name')}: cannot decode return data: {exc}") from exc


def find_function_abi(abi: Sequence[dict[str, Any]], name: str) -> dict[str, Any]:
    matches = [e for e in abi if e.get("type") == "function" and e.get("name") == name]
    if len(matches) != 1:
        raise InvalidChainResponse(f"abi: expected exactly one function named {name!r}, found {len(matches)}")
    return matches[0]


class ChainClient:
    """Synchronous adapter for one chain; see the module docstring for the invariants."""

    def __init__(self, config: ChainConfig, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self.chain_id = config.chain_id
        self._sleep = sleep
        self._provider = HTTPProvider(
            config.rpc_url,
            request_kwargs={"timeout": config.timeout_s},
            exception_retry_configuration=None,
        )
        self._lock = threading.Lock()
        self._health = Health(config.chain_id, HEALTH_OK, None, 0)

    # --- transport -------------------------------------------------------------------------

    @property
    def health(self) -> Health:
        with self._lock:
            return self._health

    def _record(self, error: str | None) -> None:
        with self._lock:
            if error is None:
                self._health = Health(self.chain_id, HEALTH_OK, self._health.last_error, 0)
            else:
                n = self._health.consecutive_failures + 1
                self._health = Health(self.chain_id, HEALTH_UNAVAILABLE, error, n)

    def _parse_reply(self, method: str, reply: object) -> Any:
        """The result of one JSON-RPC reply; raises _Transient, CallReverted, RpcError or InvalidChainResponse."""
        error = reply.get("error") if isinstance(reply, dict) else None
        if error:
            code = int(error.get("code", 0)) if isinstance(error, dict) else 0
            message = str(error.get("message", error)) if isinstance(error, dict) else str(error)
            if code in TRANSIENT_RPC_CODES:
                raise _Transient(f"{method}: error {code}: {message[:200]}")
            data = error.get("data") if isinstance(error, dict) else None
            if code == 3 or "revert" in message.lower():
                raise CallReverted(self.chain_id, method, code, message, data)
            raise RpcError(self.chain_id, method, code, message, data)
        if not isinstance(reply, dict) or "result" not in reply:
            raise InvalidChainResponse(f"{method}: reply without result: {str(reply)[:200]}")
        return reply["result"]

    def _with_retries(self, label: str, attempt_once: Callable[[], T]) -> T:
        """Bounded retries with capped exponential backoff around one request (or one batch)."""
        last_reason = "no attempt made"
        for attempt in range(self.config.max_attempts):
            if attempt:
                self._sleep(min(MAX_BACKOFF_S, self.config.backoff_s * 2 ** (attempt - 1)))
            try:
                result = attempt_once()
            except (requests.RequestException, OSError, ValueError) as exc:
                last_reason = f"{label}: {type(exc).__name__}: {str(exc)[:200]}"
                continue
            except _Transient as exc:
                last_reason = str(exc)
                continue
            except (RpcError, InvalidChainResponse):
                self._record(None)  # the node answered: it is reachable
                raise
            self._record(None)
            return result
        self._record(last_reason)
        get_telemetry().chain_rpc_failed(self.chain_id)
        raise ChainUnavailable(self.chain_id, f"{last_reason} (after {self.config.max_attempts} attempts)")

    def rpc(self, method: str, params: Sequence[object]) -> Any:
        """One JSON-RPC call with bounded retries; raises ChainUnavailable, RpcError or CallReverted."""
        return self._with_retries(
            method, lambda: self._parse_reply(method, self._provider.make_request(method, list(params))))  # type: ignore[arg-type]

    def rpc_batch(self, calls: Sequence[tuple[str, Sequence[object]]]) -> list[Any]:
        """One JSON-RPC batch (at most MAX_BATCH calls), retried as a whole; results in call order."""
        if not 0 < len(calls) <= MAX_BATCH:
            raise ValueError(f"calls: batch of {len(calls)}, expected 1..{MAX_BATCH}")

        def attempt_once() -> list[Any]:
            replies = self._provider.make_batch_request([(m, list(p)) for m, p in calls])  # type: ignore[misc]
            if not isinstance(replies, list):
                self._parse_reply("batch", replies)  # a single error object for the whole batch
            if not isinstance(replies, list) or len(replies) != len(calls):
                raise InvalidChainResponse(f"batch: {len(calls)} calls, malformed reply")
            return [self._parse_reply(m, r) for (m, _p), r in zip(calls, replies, strict=True)]

        return self._with_retries(f"batch of {len(calls)} ({calls[0][0]})", attempt_once)

    # --- blocks ----------------------------------------------------------------------------

    def validate_chain_id(self) -> None:
        served = parse_quantity(self.rpc("eth_chainId", []), "eth_chainId")
        if served != self.chain_id:
            raise ChainIdMismatch(f"chain_id: configured {self.chain_id}, endpoint serves {served}")

    def get_head_number(self) -> int:
        return parse_quantity(self.rpc("eth_blockNumber", []), "eth_blockNumber")

    def get_block(self, number: int | str) -> BlockHeader:
        tag = hex(number) if isinstance(number, int) else number
        block = self.rpc("eth_getBlockByNumber", [tag, False])
        if block is None:
            raise RpcError(self.chain_id, "eth_getBlockByNumber", 0, f"block {number} not found")
        return parse_header(block)

    def get_blocks(self, numbers: Sequence[int]) -> list[BlockHeader | None]:
        """Headers of the canonical blocks at `numbers`, in order (None where the chain has no such block
        yet), read in JSON-RPC batches of at most MAX_BATCH."""
        out: list[BlockHeader | None] = []
        for k in range(0, len(numbers), MAX_BATCH):
            chunk = numbers[k:k + MAX_BATCH]
            replies = self.rpc_batch([("eth_getBlockByNumber", [hex(n), False]) for n in chunk])
            out.extend(None if raw is None else parse_header(raw) for raw in replies)
        return out

    def get_block_by_hash(self, block_hash: bytes) -> BlockHeader | None:
        block = self.rpc("eth_getBlockByHash", ["0x" + block_hash.hex(), False])
        return None if block is None else parse_header(block)

    def pin_block(self, target_timestamp: int, lag_s: int | None = None,
                  confirmations: int | None = None) -> Pin:
        """Highest block with timestamp <= target - lag, at least `confirmations` deep, and final."""
        lag = self.config.lag_s if lag_s is None else lag_s
        conf = self.config.confirmations if confirmations is None else confirmations
        cutoff = target_timestamp - lag
        max_number = self.get_head_number() - conf
        if max_number < 0:
            raise PinNotReady(f"chain {self.chain_id}: head is shallower than confirmations={conf}")
        genesis = self.get_block(0)
        if genesis.timestamp > cutoff:
            raise PinNotReady(f"chain {self.chain_id}: genesis timestamp {genesis.timestamp} > cutoff {cutoff}")
        lo, best = 0, genesis  # invariant: block lo has timestamp <= cutoff
        hi = max_number
        for _ in range(MAX_PIN_SEARCH_STEPS):
            if lo >= hi:
                break
            mid = (lo + hi + 1) // 2
            header = self.get_block(mid)
            if header.timestamp <= cutoff:
                lo, best = mid, header
            else:
                hi = mid - 1
        else:
            raise PinNotReady(f"chain {self.chain_id}: pin search did not converge")
        if best.number >= max_number:
            raise PinNotReady(
                f"chain {self.chain_id}: no confirmed block after cutoff {cutoff} yet (confirmed head {max_number})"
            )
        return Pin(self.chain_id, best.number, best.hash, best.timestamp)

    def validate_pin(self, pin: Pin) -> None:
        """Raise ReorgDetected unless the pinned hash is still canonical at its number."""
        if pin.chain_id != self.chain_id:
            raise ValueError(f"pin.chain_id {pin.chain_id} != client chain {self.chain_id}")
        block = self.rpc("eth_getBlockByNumber", [hex(pin.number), False])
        actual = None if block is None else parse_header(block).hash
        if actual != pin.hash:
            raise ReorgDetected(self.chain_id, pin.number, pin.hash_hex,
                                None if actual is None else "0x" + actual.hex())

    def _pinned_rpc(self, pin: Pin, method: str, params: list[object]) -> Any:
        """An RPC whose last parameter is the EIP-1898 block selector of `pin`."""
        selector = {"blockHash": pin.hash_hex, "requireCanonical": True}
        try:
            return self.rpc(method, [*params, selector])
        except CallReverted:
            raise
        except RpcError as exc:
            if exc.code in BLOCK_NOT_FOUND_CODES or "not found" in exc.message.lower() \
                    or "canonical" in exc.message.lower():
                self.validate_pin(pin)  # raises ReorgDetected when the hash fell out of the chain
            raise

    # --- pinned reads ----------------------------------------------------------------------

    def call(self, pin: Pin, to: str, data: bytes) -> bytes:
        result = self._pinned_rpc(pin, "eth_call", [{"to": to, "data": "0x" + data.hex()}])
        return parse_bytes(result, f"eth_call({to})")

    def call_function(self, pin: Pin, address: str, fn_abi: dict[str, Any],
                      args: Sequence[object] = ()) -> tuple[Any, ...]:
        """Call a view function at the pin and decode its outputs."""
        return decode_function_result(fn_abi, self.call(pin, address, encode_function_call(fn_abi, args)))

    def call_many(self, pin: Pin, calls: Sequence[tuple[str, bytes]]) -> list[bytes]:
        """Many eth_calls at the pin, sent as JSON-RPC batches of at most MAX_BATCH."""
        selector = {"blockHash": pin.hash_hex, "requireCanonical": True}
        out: list[bytes] = []
        for k in range(0, len(calls), MAX_BATCH):
            chunk = [("eth_call", [{"to": to, "data": "0x" + data.hex()}, selector]) for to, data in calls[k:k + MAX_BATCH]]
            try:
                results = self.rpc_batch(chunk)  # type: ignore[arg-type]
            except CallReverted:
                raise
            except RpcError as exc:
                if exc.code in BLOCK_NOT_FOUND_CODES or "not found" in exc.message.lower():
                    self.validate_pin(pin)
                raise
            out += [parse_bytes(r, "eth_call (batch)") for r in results]
        return out

    def call_function_many(self, pin: Pin, address: str, fn_abi: dict[str, Any],
                           args_list: Sequence[Sequence[object]]) -> list[tuple[Any, ...]]:
        """`call_function` for many argument tuples of one function, batched."""
        raw = self.call_many(pin, [(address, encode_function_call(fn_abi, args)) for args in args_list])
        return [decode_function_result(fn_abi, r) for r in raw]

    def get_balance(self, pin: Pin, address: str) -> int:
        return parse_quantity(self._pinned_rpc(pin, "eth_getBalance", [address]), "eth_getBalance")

    def get_storage_at(self, pin: Pin, address: str, slot: int) -> bytes:
        return parse_bytes(self._pinned_rpc(pin, "eth_getStorageAt", [address, hex(slot)]), "eth_getStorageAt")

    def read_at_pin(self, get_pin: Callable[[], Pin], read: Callable[[Pin], T],
                    max_attempts: int = MAX_READ_ATTEMPTS) -> tuple[Pin, T]:
        """Pin, read, re-check the pin; on a reorg re-pin and re-read (bounded)."""
        last: ReorgDetected | None = None
        for _ in range(max_attempts):
            pin = get_pin()
            try:
                result = read(pin)
                self.validate_pin(pin)
                return pin, result
            except ReorgDetected as exc:
                last = exc
        assert last is not None
        raise last

    # --- logs ------------------------------------------------------------------------------

    def get_logs(self, from_block: int, to_block: int, address: str | Sequence[str] | None = None,
                 topics: Sequence[object] | None = None) -> list[LogEntry]:
        query: dict[str, object] = {"fromBlock": hex(from_block), "toBlock": hex(to_block)}
        if address is not None:
            query["address"] = address if isinstance(address, str) else list(address)
        if topics is not None:
            query["topics"] = list(topics)
        raw = self.rpc("eth_getLogs", [query])
        if not isinstance(raw, list):
            raise InvalidChainResponse("eth_getLogs: expected a list")
        return [parse_log(x) for x in raw]


@dataclass(frozen=True)
class FollowBatch:
    """One step of an `EventFollower`: logs of confirmed blocks [from_block, to_block].

    `rewound_to` is set when a reorg was found: the caller must drop everything it derived from
    blocks above `rewound_to` before applying `logs`.
    """

    from_block: int
    to_block: int
    logs: tuple[LogEntry, ...]
    rewound_to: int | None


class EventFollower:
    """Follows logs of confirmed blocks, tracking block hashes to detect reorgs and rewind.

    Only blocks at least `confirmations` deep are processed. The follower keeps the last
    `history` processed headers; a reorg reaching below that raises `ReorgTooDeep`.
    """

    def __init__(self, client: ChainClient, *, address: str | Sequence[str] | None,
                 topics: Sequence[object] | None = None, start_block: int = 0,
                 confirmations: int | None = None, max_range: int = 64, history: int = 256) -> None:
        if not 1 <= max_range <= 10_000 or not 1 <= history <= 100_000:
            raise ValueError("max_range must be in 1..10000 and history in 1..100000")
        self.client = client
        self.address = address
        self.topics = topics
        self.confirmations = client.config.confirmations if confirmations is None else confirmations
        self.max_range = max_range
        self._next = start_block
        self._history: deque[BlockHeader] = deque(maxlen=history)

    @property
    def last_block(self) -> BlockHeader | None:
        return self._history[-1] if self._history else None

    def _rewind(self) -> int | None:
        """Pop non-canonical headers; returns the new last number if a rewind happened."""
        rewound = False
        while self._history:
            last = self._history[-1]
            if self.client.get_block(last.number).hash == last.hash:
                break
            self._history.pop()
            rewound = True
        if not rewound:
            return None
        if not self._history:
            raise ReorgTooDeep(f"chain {self.client.chain_id}: reorg deeper than the follower's history")
        self._next = self._history[-1].number + 1
        return self._history[-1].number

    def _fetch_headers(self, start: int, end: int) -> list[BlockHeader] | None:
        headers = [self.client.get_block(n) for n in range(start, end + 1)]
        parent = self.last_block.hash if self.last_block else None
        for h in headers:
            if parent is not None and h.parent_hash != parent:
                return None
            parent = h.hash
        return headers

    def poll(self, max_attempts: int = MAX_READ_ATTEMPTS) -> FollowBatch:
        """Process the next range of confirmed blocks (possibly empty)."""
        rewound_to: int | None = None
        for _ in range(max_attempts):
            r = self._rewind()
            rewound_to = r if r is not None else rewound_to
            safe = self.client.get_head_number() - self.confirmations
            start = self._next
            end = min(safe, start + self.max_range - 1)
            if end < start:
                return FollowBatch(start, start - 1, (), rewound_to)
            headers = self._fetch_headers(start, end)
            if headers is None:
                continue  # the chain moved under us; rewind and retry
            logs = self.client.get_logs(start, end, self.address, self.topics)
            by_number = {h.number: h.hash for h in headers}
            if any(by_number.get(log.block_number) != log.block_hash for log in logs):
                continue
            if self.client.get_block(end).hash != headers[-1].hash:
                continue
            self._history.extend(headers)
            self._next = end + 1
            logs.sort(key=lambda x: (x.block_number, x.log_index))
            return FollowBatch(start, end, tuple(logs), rewound_to)
        raise ReorgDetected(self.client.chain_id, self._next, "(following)", None)
