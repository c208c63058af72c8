"""Fixtures: one real anvil chain per test module and a freshly deployed Governance contract per test
(four dev-key validators, threshold 3, compiled from source by `solc_helper`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from eth_account import Account

from bridges.anvil import AnvilChain, rpc_call, start_chains
from bridges.chain import ChainClient, ChainConfig
from bridges.governance_chain import GovernanceChain, deploy_governance, get_dev_key
from governance.proposals import EpochClock, GovernanceGenesis
from tests.governance.solc_helper import compile_governance

EPOCH_SECONDS = 3_600  # long epochs: the test's blocks all fall in epoch 0 of the chain's clock


@dataclass
class Deployed:
    chain: AnvilChain
    gov: GovernanceChain
    keys: list[bytes]  # keys[0..3] validators, keys[4..] outsiders
    validators: tuple[str, ...]
    genesis: GovernanceGenesis

    def mine(self, blocks: int) -> None:
        rpc_call(self.chain.rpc_url, "anvil_mine", [hex(blocks)])


@pytest.fixture(scope="module")
def anvil_chain() -> Iterator[AnvilChain]:
    chain = start_chains([31_401])[0]
    try:
        yield chain
    finally:
        chain.stop()


@pytest.fixture
def deployed(anvil_chain: AnvilChain) -> Deployed:
    abi, bytecode = compile_governance()
    client = ChainClient(ChainConfig(chain_id=anvil_chain.chain_id, rpc_url=anvil_chain.rpc_url))
    keys = [get_dev_key(i) for i in range(6)]
    validators = tuple(Account.from_key(k).address.lower() for k in keys[:4])
    address = deploy_governance(client, keys[0], abi, bytecode, validators, 3)
    gov = GovernanceChain(client, address, abi)
    deploy_ts = client.get_block("latest").timestamp
    genesis = GovernanceGenesis(validators, 3, EpochClock(deploy_ts, EPOCH_SECONDS))
    return Deployed(anvil_chain, gov, keys, validators, genesis)
