"""Publisher: submits a threshold-signed margin state to `MarginStateRegistry` on one chain, and
`RegistryReader`: the registry's reads (latest epoch, roots, leaf proofs, publications with their gas,
an account's balance) that the publisher, the metrics and the web view share.

Purpose: the epoch's designated publisher calls `Publisher.publish(submission)` once per chain.
Telemetry (`bridges.telemetry`), where it happens: the registry's latest epoch on every read of it,
the gas of every mined publish transaction of this node, and the paying account's balance after it.

Invariants:
- One in-flight transaction per chain and publisher (a lock; a second caller waits at most
  `lock_timeout_s`, then gets `PublishInFlight`). The nonce is the account's *pending* nonce.
- EIP-1559 fees: `max_fee = min(2 * base_fee + tip, fee_cap)`; if `base_fee + tip > fee_cap` the
  publish is refused with `FeeCapExceeded` (never sent with a fee that cannot be included).
- Idempotent: if the registry already holds this epoch with this root, the result is
  `already_published` (nothing sent); a different root or a later epoch raises `EpochSuperseded`.
  A lost send reply is harmless: the signed transaction hash is known before sending and
  "already known" replies are accepted.
- Every wait is bounded (`receipt_timeout_s`); a refusal by the contract raises `PublishReverted`
  naming the contract error (e.g. `InvalidSignature`), never a silent failure.

Persists nothing; the caller records the returned `PublishResult`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import decode as abi_decode
from eth_account import Account
from eth_utils import (
    event_abi_to_log_topic,
    function_abi_to_4byte_selector,
    get_abi_input_types,
    to_checksum_address,
)

from bridges.artifacts import get_abi
from bridges.chain import (
    ChainClient,
    decode_function_result,
    encode_function_call,
    find_function_abi,
    parse_quantity,
)
from bridges.errors import (
    BridgeError,
    CallReverted,
    EpochSuperseded,
    FeeCapExceeded,
    PublishInFlight,
    PublishReverted,
    ReceiptTimeout,
    RpcError,
)
from bridges.statecodec import LEAF_ABI_TYPES
from bridges.telemetry import get_telemetry

REGISTRY_CONTRACT = "MarginStateRegistry"
STATUS_PUBLISHED = "published"
STATUS_ALREADY_PUBLISHED = "already_published"

DEFAULT_GAS_LIMIT_CAP = 1_000_000
DEFAULT_RECEIPT_TIMEOUT_S = 60.0
DEFAULT_POLL_INTERVAL_S = 0.1
DEFAULT_LOCK_TIMEOUT_S = 120.0
GAS_ESTIMATE_MARGIN_PCT = 25
EIP2537_G1_SIZE = 128
MAX_LOG_BLOCKS = 10_000  # blocks per eth_getLogs query of `RegistryReader.get_publications`


@dataclass(frozen=True)
class StateSubmission:
    """The fields `publishState` takes; `signature` is the group signature in EIP-2537 G1 form (128 bytes)."""

    epoch: int
    keyset_id: int
    inputs_digest: bytes
    params_hash: bytes
    root: bytes
    leaf_count: int
    signature: bytes

    def __post_init__(self) -> None:
        for name in ("inputs_digest", "params_hash", "root"):
            if len(getattr(self, name)) != 32:
                raise ValueError(f"{name}: expected 32 bytes, got {len(getattr(self, name))}")
        if len(self.signature) != EIP2537_G1_SIZE:
            raise ValueError(f"signature: expected {EIP2537_G1_SIZE} bytes (EIP-2537 G1), got {len(self.signature)}")
        if not 0 < self.epoch < 2**64 or not 0 <= self.keyset_id < 2**32 or not 0 <= self.leaf_count < 2**64:
            raise ValueError("epoch/keyset_id/leaf_count out of range (uint64/uint32/uint64, epoch > 0)")


@dataclass(frozen=True)
class PublishResult:
    chain_id: int
    epoch: int
    status: str  # STATUS_PUBLISHED or STATUS_ALREADY_PUBLISHED
    tx_hash: bytes | None
    gas_used: int
    block_number: int | None


@dataclass(frozen=True)
class FeePolicy:
    """EIP-1559 fee policy; all values in wei."""

    fee_cap: int
    priority_fee: int | None = None  # None: ask the node (eth_maxPriorityFeePerGas)


def compute_fees(base_fee: int, tip: int, policy: FeePolicy, chain_id: int) -> tuple[int, int]:
    """(max_fee_per_gas, max_priority_fee_per_gas) or FeeCapExceeded."""
    if base_fee + tip > policy.fee_cap:
        raise FeeCapExceeded(f"chain {chain_id}: base fee {base_fee} + tip {tip} > fee cap {policy.fee_cap} wei")
    return min(2 * base_fee + tip, policy.fee_cap), tip


@dataclass(frozen=True)
class Publication:
    """One `StatePublished` event of a registry, with the gas its transaction used."""

    chain_id: int
    epoch: int
    keyset_id: int
    root: bytes
    tx_hash: bytes
    block_number: int
    gas_used: int
    sender: str


class RegistryReader:
    """Reads of one chain's `MarginStateRegistry` (at the latest block: status, not consensus input)."""

    def __init__(self, client: ChainClient, registry_address: str) -> None:
        self.client = client
        self.chain_id = client.chain_id
        self.registry = to_checksum_address(registry_address)
        abi: list[Any] = get_abi(REGISTRY_CONTRACT)
        self.abi = abi
        self._fn = {name: find_function_abi(abi, name) for name in ("latestEpoch", "isStateRoot", "verifyLeaf")}
        event = next(e for e in abi if e.get("type") == "event" and e.get("name") == "StatePublished")
        self._published_topic = "0x" + event_abi_to_log_topic(event).hex()

    def _view(self, name: str, args: Sequence[object]) -> tuple[Any, ...]:
        data = encode_function_call(self._fn[name], args)
        raw = self.client.rpc("eth_call", [{"to": self.registry, "data": "0x" + data.hex()}, "latest"])
        return decode_function_result(self._fn[name], bytes.fromhex(str(raw)[2:]))

    def get_latest_epoch(self) -> int:
        latest = int(self._view("latestEpoch", [])[0])
        get_telemetry().registry_epoch(self.chain_id, latest)
        return latest

    def is_state_root(self, epoch: int, root: bytes) -> bool:
        return bool(self._view("isStateRoot", [epoch, root])[0])

    def verify_leaf(self, epoch: int, encoded_leaf: bytes, proof: Sequence[bytes]) -> bool:
        """`verifyLeaf(epoch, leaf, proof)`: the leaf (its `abi.encode` bytes) is in the state the registry holds."""
        leaf = abi_decode(list(LEAF_ABI_TYPES), encoded_leaf)
        return bool(self._view("verifyLeaf", [epoch, tuple(leaf), list(proof)])[0])

    def get_balance(self, address: str) -> int:
        return parse_quantity(self.client.rpc("eth_getBalance", [to_checksum_address(address), "latest"]),
                              "eth_getBalance")

    def get_publications(self, from_block: int, to_block: int) -> list[Publication]:
        """`StatePublished` events in [from_block, to_block] (at most MAX_LOG_BLOCKS blocks) with their gas."""
        if not 0 <= from_block <= to_block or to_block - from_block >= MAX_LOG_BLOCKS:
            raise ValueError(f"from_block/to_block: need 0 <= {from_block} <= {to_block} < from_block + {MAX_LOG_BLOCKS}")
        out = []
        for entry in self.client.get_logs(from_block, to_block, self.registry, [self._published_topic]):
            receipt = self.client.rpc("eth_getTransactionReceipt", ["0x" + entry.tx_hash.hex()])
            if not isinstance(receipt, dict) or len(entry.topics) < 3:
                continue  # the block was reorged away between the two reads: the next scan sees it again
            root = entry.data[32:64]
            out.append(Publication(self.chain_id, int.from_bytes(entry.topics[1], "big"),
                                   int.from_bytes(entry.topics[2], "big"), root, entry.tx_hash, entry.block_number,
                                   parse_quantity(receipt.get("gasUsed"), "receipt.gasUsed"),
                                   to_checksum_address(str(receipt.get("from")))))
        return out


class Publisher:
    """Sends `publishState` transactions from one local key to one chain's registry."""

    def __init__(self, client: ChainClient, registry_address: str, private_key: bytes | str,
                 fees: FeePolicy, *, gas_limit_cap: int = DEFAULT_GAS_LIMIT_CAP,
                 receipt_timeout_s: float = DEFAULT_RECEIPT_TIMEOUT_S,
                 poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
                 lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
                 sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.reader = RegistryReader(client, registry_address)
        self.registry = self.reader.registry
        self._account = Account.from_key(private_key)
        self.sender = self._account.address
        self.fees = fees
        self.gas_limit_cap = gas_limit_cap
        self.receipt_timeout_s = receipt_timeout_s
        self.poll_interval_s = poll_interval_s
        self.lock_timeout_s = lock_timeout_s
        self._sleep = sleep
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._publish_fn = find_function_abi(self.reader.abi, "publishState")
        self._errors = {function_abi_to_4byte_selector(e): e for e in self.reader.abi if e.get("type") == "error"}

    # --- reads -----------------------------------------------------------------------------

    def get_latest_epoch(self) -> int:
        return self.reader.get_latest_epoch()

    def is_published(self, sub: StateSubmission) -> bool:
        """True if the registry holds `sub.root` for `sub.epoch`; EpochSuperseded if it holds something else."""
        latest = self.get_latest_epoch()
        if latest < sub.epoch:
            return False
        if self.reader.is_state_root(sub.epoch, sub.root):
            return True
        raise EpochSuperseded(
            f"chain {self.client.chain_id}: registry latest epoch {latest} >= {sub.epoch} without root 0x{sub.root.hex()}"
        )

    def describe_revert(self, data: object) -> str:
        """Name and arguments of a contract custom error from revert data, for error messages."""
        if not isinstance(data, str) or len(data) < 10:
            return f"revert data {data!r}"
        raw = bytes.fromhex(data[2:])
        abi = self._errors.get(raw[:4])
        if abi is None:
            return f"unknown error 0x{raw[:4].hex()}"
        try:
            args = abi_decode(get_abi_input_types(abi), raw[4:])
        except Exception:
            args = ("<undecodable>",)
        return f"{abi['name']}{tuple(a.hex() if isinstance(a, bytes) else a for a in args)}"

    # --- publishing ------------------------------------------------------------------------

    def publish(self, sub: StateSubmission) -> PublishResult:
        if not self._lock.acquire(timeout=self.lock_timeout_s):
            raise PublishInFlight(f"chain {self.client.chain_id}: a publish is still in flight (epoch {sub.epoch})")
        try:
            return self._publish_locked(sub)
        finally:
            self._lock.release()

    def _publish_locked(self, sub: StateSubmission) -> PublishResult:
        cid = self.client.chain_id
        if self.is_published(sub):
            return PublishResult(cid, sub.epoch, STATUS_ALREADY_PUBLISHED, None, 0, None)
        data = encode_function_call(self._publish_fn, [
            sub.epoch, sub.keyset_id, sub.inputs_digest, sub.params_hash, sub.root, sub.leaf_count, sub.signature,
        ])
        call = {"from": self.sender, "to": self.registry, "data": "0x" + data.hex()}
        try:
            estimate = int(str(self.client.rpc("eth_estimateGas", [call, "latest"])), 16)
        except CallReverted as exc:
            raise PublishReverted(
                f"chain {cid} epoch {sub.epoch}: registry refused the state: {self.describe_revert(exc.data)}"
            ) from exc
        gas = min(self.gas_limit_cap, estimate * (100 + GAS_ESTIMATE_MARGIN_PCT) // 100)
        if estimate > self.gas_limit_cap:
            raise PublishReverted(f"chain {cid} epoch {sub.epoch}: gas estimate {estimate} > cap {self.gas_limit_cap}")
        base_fee = self.client.get_block("latest").base_fee or 0
        tip = self.fees.priority_fee
        if tip is None:
            tip = int(str(self.client.rpc("eth_maxPriorityFeePerGas", [])), 16)
        max_fee, tip = compute_fees(base_fee, tip, self.fees, cid)
        nonce = int(str(self.client.rpc("eth_getTransactionCount", [self.sender, "pending"])), 16)
        signed = Account.sign_transaction({
            "type": 2, "chainId": cid, "nonce": nonce, "to": self.registry, "value": 0, "data": data,
            "gas": gas, "maxFeePerGas": max_fee, "maxPriorityFeePerGas": tip,
        }, self._account.key)
        tx_hash = bytes(signed.hash)
        self._send(signed.raw_transaction, tx_hash, sub.epoch)
        receipt = self._wait_receipt(tx_hash, sub)
        if receipt is None:  # someone else's transaction landed the same state first
            return PublishResult(cid, sub.epoch, STATUS_ALREADY_PUBLISHED, tx_hash, 0, None)
        gas_used = int(receipt["gasUsed"], 16)
        block_number = int(receipt["blockNumber"], 16)
        self._report_spent(gas_used)
        if int(receipt["status"], 16) != 1:
            if self.is_published(sub):
                return PublishResult(cid, sub.epoch, STATUS_ALREADY_PUBLISHED, tx_hash, gas_used, block_number)
            raise PublishReverted(f"chain {cid} epoch {sub.epoch}: transaction 0x{tx_hash.hex()} reverted")
        return PublishResult(cid, sub.epoch, STATUS_PUBLISHED, tx_hash, gas_used, block_number)

    def _report_spent(self, gas_used: int) -> None:
        """Telemetry of a mined transaction: its gas, and the paying account's balance after it."""
        telemetry = get_telemetry()
        telemetry.publish_mined(self.client.chain_id, gas_used)
        with contextlib.suppress(BridgeError):  # the publication succeeded; the next read refreshes the balance
            telemetry.publisher_balance(self.client.chain_id, self.reader.get_balance(self.sender))

    def _send(self, raw: bytes, tx_hash: bytes, epoch: int) -> None:
        try:
            self.client.rpc("eth_sendRawTransaction", ["0x" + bytes(raw).hex()])
        except RpcError as exc:
            if "already known" in exc.message.lower() or "already imported" in exc.message.lower():
                return  # an earlier attempt of the same signed transaction got through
            if self.client.rpc("eth_getTransactionByHash", ["0x" + tx_hash.hex()]) is not None:
                return  # e.g. "nonce too low" because a lost-reply attempt was already mined
            raise PublishReverted(
                f"chain {self.client.chain_id} epoch {epoch}: send of 0x{tx_hash.hex()} refused: {exc.message}"
            ) from exc

    def _wait_receipt(self, tx_hash: bytes, sub: StateSubmission) -> dict[str, Any] | None:
        deadline = self._monotonic() + self.receipt_timeout_s
        while True:
            receipt = self.client.rpc("eth_getTransactionReceipt", ["0x" + tx_hash.hex()])
            if isinstance(receipt, dict):
                return receipt
            if self._monotonic() >= deadline:
                if self.is_published(sub):
                    return None
                raise ReceiptTimeout(
                    f"chain {self.client.chain_id} epoch {sub.epoch}: no receipt for 0x{tx_hash.hex()} "
                    f"within {self.receipt_timeout_s}s"
                )
            self._sleep(self.poll_interval_s)
