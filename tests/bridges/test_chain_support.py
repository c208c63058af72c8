"""Shared helpers of the chain-adapter tests: real anvil chains and raw RPC steering.

No tests here; imported by test_chain*.py, test_snapshot*.py, test_publisher*.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

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
    """Transfer and wait until mined (anvil's automine may answer before the block exists)."""
    tx = str(rpc_call(chain.rpc_url, "eth_sendTransaction", [{"from": sender, "to": to, "value": hex(wei)}]))
    wait_receipt(chain, tx)
    return tx


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


# --- a two-chain clearing setup through bridges.deploy (shared by snapshot and withdrawal tests) ---

NETWORK_ID = 7
KEYSET_ID = 1
DAY = 86_400
TOKENS = (("USDC", "Test USD Coin", 6), ("ETH", "Test Ether", 18))
INSTR_FUTURE, INSTR_CALL, INSTR_PERP = 1, 2, 3
USER_INDEX = 5


def setup_clearing(chain: AnvilChain, group_key: bytes, expiry: int, home: bool) -> object:
    """Deploy everything on `chain`, register three BTC instruments, venue and oracle publisher =
    dev account 0; the home chain gets spots, the forward and asset prices; every chain a vol."""
    from bridges import deploy

    owner_key = deploy.get_dev_key(0)
    d = deploy.deploy_all(chain.rpc_url, owner_key, NETWORK_ID, KEYSET_ID, group_key, tokens=TOKENS)
    owner = deploy.ChainSender(chain.rpc_url, owner_key)
    deploy.register_instrument(owner, d, INSTR_FUTURE, "BTC", deploy.KIND_FUTURE, expiry=expiry)
    deploy.register_instrument(owner, d, INSTR_CALL, "BTC", deploy.KIND_OPTION, strike=110_000 * 10**6,
                               expiry=expiry, right=deploy.RIGHT_CALL)
    deploy.register_instrument(owner, d, INSTR_PERP, "BTC", deploy.KIND_PERP)
    deploy.set_venue(owner, d, owner.address)
    deploy.set_publisher(owner, d, owner.address)
    if home:
        deploy.set_market(owner, d, spots={"BTC": 100_000 * 10**6, "ETH": 3_000 * 10**6},
                          forwards={("BTC", expiry): 100_400 * 10**6},
                          asset_prices={"USDC": 10**6, "ETH": 3_000 * 10**6})
    deploy.set_market(owner, d, vols={INSTR_CALL: 520_000})
    return d


def set_up_two_chains(chains: list[AnvilChain], group_key: bytes, expiry: int, user_usdc: int
                      ) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
    """`setup_clearing` on every chain (the first is home), the house (dev account 0) with 100M USDC and the
    user (USER_INDEX) with `user_usdc` base units of USDC on each chain, and a publisher per chain paid by
    dev account 1: (deployments, owners, users, publishers)."""
    from bridges import deploy
    from bridges.publisher import FeePolicy, Publisher

    deployments: list[Any] = [setup_clearing(c, group_key, expiry, home=(i == 0)) for i, c in enumerate(chains)]
    owners = [deploy.ChainSender(c.rpc_url, deploy.get_dev_key(0)) for c in chains]
    users = [get_sender(c, USER_INDEX) for c in chains]
    publishers = [Publisher(make_client(c), d.registry, deploy.get_dev_key(1), FeePolicy(fee_cap=10**12))
                  for c, d in zip(chains, deployments, strict=True)]
    for owner, d, u in zip(owners, deployments, users, strict=True):
        deploy.mint_and_deposit(owner, d, owner, "USDC", 10**14)
        deploy.mint_and_deposit(owner, d, u, "USDC", user_usdc)
    return deployments, owners, users, publishers


def get_sender(chain: AnvilChain, index: int) -> object:
    from bridges import deploy

    return deploy.ChainSender(chain.rpc_url, deploy.get_dev_key(index))


def pin_all(chains: list[AnvilChain], clients: list[ChainClient]) -> tuple[int, list[object]]:
    """Epoch time T = the latest head timestamp; one later block per chain; pins at T (lag 0, depth 0)."""
    heads = [int(str(rpc_call(c.rpc_url, "eth_getBlockByNumber", ["latest", False])["timestamp"]), 16)  # type: ignore[index]
             for c in chains]
    epoch_time = max(heads)
    for c in chains:
        mine_at(c, epoch_time + 1)
    return epoch_time, [cl.pin_block(epoch_time, lag_s=0, confirmations=0) for cl in clients]
