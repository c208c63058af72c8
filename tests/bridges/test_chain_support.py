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


def send_value(chain: AnvilChain, sender: str, to: str, wei: int) -> str:
    return str(rpc_call(chain.rpc_url, "eth_sendTransaction", [{"from": sender, "to": to, "value": hex(wei)}]))
