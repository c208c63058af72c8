"""The registry on one chain, as the client needs it: the group key (the trust anchor for local
verification), whether an epoch is published, and waiting until it is (web3.py over JSON-RPC).

`REGISTRY_ABI` is the part of `IMarginRegistry` used here (a test keeps it equal to the committed
ABI in `bridges/artifacts/IMarginRegistry.json`). Bounded: every wait has a timeout. Persists nothing.
"""

from __future__ import annotations

import time
from typing import Any

from eth_utils import to_checksum_address
from web3 import Web3

from clearing_client.formats import eip2537_to_g2


def _view(name: str, inputs: list[tuple[str, str]], output: str) -> dict[str, Any]:
    return {"type": "function", "name": name, "stateMutability": "view",
            "inputs": [{"internalType": t, "name": n, "type": t} for n, t in inputs],
            "outputs": [{"internalType": output, "name": "", "type": output}]}


REGISTRY_ABI = [
    _view("latestEpoch", [], "uint64"),
    _view("networkId", [], "uint64"),
    _view("isRetained", [("epoch", "uint64")], "bool"),
    _view("isStateRoot", [("epoch", "uint64"), ("root", "bytes32")], "bool"),
    _view("groupPublicKey", [], "bytes"),
]


class PublicationError(Exception):
    """An epoch is not (and will not be) published on the chain, or the wait timed out."""


class Registry:
    """One chain's `IMarginRegistry` (read-only)."""

    def __init__(self, rpc_url: str, address: str, request_timeout_s: float = 10.0) -> None:
        w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": request_timeout_s}))
        self.contract = w3.eth.contract(address=to_checksum_address(address), abi=REGISTRY_ABI)
        self.rpc_url = rpc_url

    def get_group_key(self) -> bytes:
        """The current group public key, 96-byte compressed G2 (from its EIP-2537 encoding on chain)."""
        return eip2537_to_g2(bytes(self.contract.functions.groupPublicKey().call()))

    def get_latest_epoch(self) -> int:
        return int(self.contract.functions.latestEpoch().call())

    def is_published(self, epoch: int) -> bool:
        return bool(self.contract.functions.isRetained(epoch).call())

    def is_state_root(self, epoch: int, root: bytes) -> bool:
        return bool(self.contract.functions.isStateRoot(epoch, root).call())

    def wait_for_epoch(self, epoch: int, timeout_s: float = 60.0, poll_s: float = 0.5) -> None:
        """Return once `epoch` is published (retained) here; PublicationError when a later epoch was
        published instead (publishers may skip an epoch) or after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.is_published(epoch):
                return
            latest = self.get_latest_epoch()
            if latest > epoch:
                raise PublicationError(f"epoch {epoch} not published at {self.rpc_url}: latest is {latest}")
            if time.monotonic() >= deadline:
                raise PublicationError(f"epoch {epoch} not published at {self.rpc_url} within {timeout_s} s "
                                       f"(latest {latest})")
            time.sleep(poll_s)


def read_group_key(rpc_url: str, registry: str) -> bytes:
    """The group key a registry verifies with: pass it as `ClearingClient(group_public_key=...)`."""
    return Registry(rpc_url, registry).get_group_key()
