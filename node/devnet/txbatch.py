"""Many transactions from one key without a round trip each: consecutive nonces, sent at once, receipts after.

`ChainSender` (bridges.deploy) waits for every receipt before the next send, so one transaction costs at
least one mined block: too slow for a devnet that seeds thousands of accounts or moves every mark each
epoch on chains that mine once a second. `TxBatch` signs locally with explicit nonces, gas (estimated
against the latest block, +20%, capped at `MAX_GAS_PER_TX`) and fees (EIP-1559 from the latest base fee),
`send()` sends the queued ones in JSON-RPC batches, `wait()` sends what is left and collects every receipt
(batched too); a refused send, a revert or a missing receipt raises `DeploymentError` naming the step. One `TxBatch` per key and thread at a time (the nonces are its own).
Persists nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import requests
from eth_abi import encode as abi_encode
from eth_typing import HexStr
from eth_utils import function_abi_to_4byte_selector, get_abi_input_types, to_checksum_address
from hexbytes import HexBytes
from web3.exceptions import ContractCustomError, ContractLogicError, Web3RPCError

from bridges.artifacts import get_abi
from bridges.chain import find_function_abi
from bridges.deploy import GAS_MARGIN_PCT, MAX_GAS_PER_TX, ChainSender, decode_revert
from bridges.errors import DeploymentError

PRIORITY_FEE_WEI = 10**9
RECEIPT_TIMEOUT_S = 120.0
POLL_S = 0.02
RPC_TIMEOUT_S = 120.0
RPC_BATCH = 500  # calls per JSON-RPC batch


class TxBatch:
    """See the module docstring; `add` signs one call, `wait` sends the queued ones and returns every receipt
    in send order."""

    def __init__(self, sender: ChainSender, max_gas_per_tx: int = MAX_GAS_PER_TX) -> None:
        self.sender = sender
        self.url = str(sender.w3.provider.endpoint_uri)  # type: ignore[attr-defined]
        self.session = requests.Session()
        self.max_gas_per_tx = max_gas_per_tx
        self.nonce = int(sender.w3.eth.get_transaction_count(sender.address, "pending"))
        base_fee = int(sender.w3.eth.get_block("latest").get("baseFeePerGas", 0))
        self.max_fee = 2 * base_fee + PRIORITY_FEE_WEI
        self.queued: list[tuple[str, str]] = []  # (step, raw transaction hex), signed, not sent
        self.sent: list[tuple[str, str]] = []  # (step, transaction hash), sent, receipt not seen
        self._encoders: dict[tuple[str, str], tuple[bytes, list[str]]] = {}

    def __len__(self) -> int:
        return len(self.queued)

    def _encoder(self, contract: str, function: str) -> tuple[bytes, list[str]]:
        key = (contract, function)
        if key not in self._encoders:
            fn_abi: Any = find_function_abi(get_abi(contract), function)
            self._encoders[key] = (function_abi_to_4byte_selector(fn_abi), list(get_abi_input_types(fn_abi)))
        return self._encoders[key]

    def add(self, contract: str, address: str, function: str, *args: object, gas: int | None = None) -> None:
        step = f"{contract}.{function}"
        selector, types = self._encoder(contract, function)
        to = to_checksum_address(address)
        data = HexStr("0x" + (selector + abi_encode(types, list(args))).hex())
        if gas is None:
            try:
                gas = int(self.sender.w3.eth.estimate_gas({"from": self.sender.address, "to": to, "data": data}))
            except ContractCustomError as exc:
                raw = exc.data if isinstance(exc.data, str) else ""
                raise DeploymentError(f"{step}: reverted {decode_revert(get_abi(contract), HexBytes(raw))}") from exc
            except (ContractLogicError, Web3RPCError, ValueError) as exc:
                raise DeploymentError(f"{step}: {exc}") from exc
            gas = gas * (100 + GAS_MARGIN_PCT) // 100
        if gas > self.max_gas_per_tx:
            raise DeploymentError(f"{step}: needs {gas} gas, more than {self.max_gas_per_tx}; send a smaller batch")
        tx = {"type": 2, "to": to, "data": data, "value": 0, "nonce": self.nonce, "gas": gas,
              "chainId": self.sender.chain_id, "maxFeePerGas": self.max_fee, "maxPriorityFeePerGas": PRIORITY_FEE_WEI}
        self.queued.append((step, "0x" + bytes(self.sender.account.sign_transaction(tx).raw_transaction).hex()))
        self.nonce += 1

    def _batch(self, calls: list[tuple[str, list[object]]]) -> list[dict[str, Any]]:
        body = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)]
        reply = self.session.post(self.url, json=body, timeout=RPC_TIMEOUT_S)
        reply.raise_for_status()
        out = sorted(reply.json(), key=lambda r: r["id"])
        if len(out) != len(calls):
            raise DeploymentError(f"{calls[0][0]}: {len(calls)} calls, {len(out)} replies")
        return out

    def send(self) -> None:
        """Send the queued transactions (JSON-RPC batches); raises DeploymentError on a refused one."""
        queued, self.queued = self.queued, []
        for k in range(0, len(queued), RPC_BATCH):
            chunk = queued[k:k + RPC_BATCH]
            for (step, _raw), r in zip(chunk, self._batch([("eth_sendRawTransaction", [raw]) for _s, raw in chunk]),
                                       strict=True):
                if "error" in r:
                    raise DeploymentError(f"{step}: send failed: {r['error']}")
                self.sent.append((step, str(r["result"])))

    def wait(self, mine: Callable[[], None] | None = None, timeout_s: float = RECEIPT_TIMEOUT_S) -> list[dict[str, Any]]:
        """`send()` what is queued, `mine()` if the chain mines on demand, then every receipt of the sent
        transactions in send order; raises DeploymentError on a revert or a timeout."""
        self.send()
        sent, self.sent = self.sent, []
        if mine is not None and sent:
            mine()
        receipts: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout_s
        while len(receipts) < len(sent):
            missing = [h for _s, h in sent if h not in receipts][:RPC_BATCH]
            for h, r in zip(missing, self._batch([("eth_getTransactionReceipt", [h]) for h in missing]), strict=True):
                if r.get("result"):
                    receipts[h] = r["result"]
            if len(receipts) < len(sent):
                if time.monotonic() > deadline:
                    raise DeploymentError(f"{len(sent) - len(receipts)} transactions without a receipt "
                                          f"within {timeout_s}s")
                time.sleep(POLL_S)
        for step, h in sent:
            if int(str(receipts[h]["status"]), 16) != 1:
                raise DeploymentError(f"{step}: transaction {h} reverted")
        return [receipts[h] for _s, h in sent]
