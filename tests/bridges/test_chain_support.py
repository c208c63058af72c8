"""Shared helpers of the chain-adapter tests: real anvil chains and raw RPC steering.

No tests here; imported by test_chain*.py, test_snapshot*.py, test_publisher*.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from bridges.anvil import AnvilChain, rpc_call, start_chains
from bridges.chain import ChainClient, ChainConfig


@contextmanager
def running_chains(*chain_ids: int) -> Iterator[list[AnvilChain]]:
    chains = start_chains(list(chain_ids))
    try:
        yield chains
    finally:
        for c in chains:
            c.stop()


def make_client(chain: AnvilChain, **overrides: object) -> ChainClient:
    fields: dict[str, object] = {"chain_id": chain.chain_id, "rpc_url": chain.rpc_url, "timeout_s": 2.0}
    fields.update(overrides)
    return ChainClient(ChainConfig(**fields))  # type: ignore[arg-type]


def mine_at(chain: AnvilChain, timestamp: int) -> None:
    """Mine one empty block with an exact timestamp."""
    rpc_call(chain.rpc_url, "evm_mine", [timestamp])


def get_genesis_timestamp(chain: AnvilChain) -> int:
    block = rpc_call(chain.rpc_url, "eth_getBlockByNumber", ["0x0", False])
    assert isinstance(block, dict)
    return int(block["timestamp"], 16)


def get_dev_accounts(chain: AnvilChain) -> list[str]:
    accounts = rpc_call(chain.rpc_url, "eth_accounts")
    assert isinstance(accounts, list)
    return [str(a) for a in accounts]


def wait_receipt(chain: AnvilChain, tx_hash: str, timeout_s: float = 20.0) -> dict:
    """Poll for a receipt (anvil's automine answers before large transactions are mined)."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        receipt = rpc_call(chain.rpc_url, "eth_getTransactionReceipt", [tx_hash])
        if isinstance(receipt, dict):
            return receipt
        assert time.monotonic() < deadline, f"no receipt for {tx_hash}"
        time.sleep(0.02)


def send_value(chain: AnvilChain, sender: str, to: str, wei: int) -> str:
    return str(rpc_call(chain.rpc_url, "eth_sendTransaction", [{"from": sender, "to": to, "value": hex(wei)}]))


def deploy_artifact(chain: AnvilChain, name: str, arg_types: list[str], args: list[object],
                    sender: str | None = None) -> str:
    """Deploy a committed artifact from a dev account; returns the contract address."""
    import json
    from pathlib import Path

    from eth_abi import encode

    artifact = json.loads((Path(__file__).resolve().parents[2] / "bridges/artifacts" / f"{name}.json").read_text())
    data = artifact["bytecode"] + encode(arg_types, args).hex()
    sender = sender or get_dev_accounts(chain)[0]
    tx = rpc_call(chain.rpc_url, "eth_sendTransaction", [{"from": sender, "data": data, "gas": hex(10_000_000)}])
    receipt = wait_receipt(chain, str(tx))
    assert receipt["status"] == "0x1", f"deploy of {name} failed"
    return str(receipt["contractAddress"])


# anvil's first dev account key (public test mnemonic; never used outside local chains)
DEV_KEY_0 = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
DEV_KEY_1 = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
