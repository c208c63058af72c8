"""Shared fixtures: two real anvil chains (distinct chain ids) with every clearing contract deployed
and wired, a (t, n) threshold group key, and helpers to sign and publish margin states.

`clearing_chains` (session) starts and deploys once; `chains` (function) wraps it in anvil
`evm_snapshot`/`evm_revert`, so each test starts from the freshly deployed state. `env.sender(i)`
signs with anvil dev account i (0 is the owner of every contract).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from web3.exceptions import ContractCustomError

from bridges.anvil import AnvilChain, rpc_call, start_chains
from bridges.artifacts import get_abi
from bridges.deploy import ChainSender, Deployment, decode_revert, deploy_all, get_dev_key
from bridges.merkle import MerkleTree, build_tree
from bridges.statecodec import MarginLeaf, compute_leaf_hashes, compute_state_digest
from node.crypto import bls, threshold

NETWORK_ID = 7
KEYSET_ID = 1
CHAIN_IDS = (31337, 31338)
GROUP_N, GROUP_T = 4, 3
OWNER_INDEX = 0


@dataclass(frozen=True)
class GroupKey:
    """A trusted-dealer (t, n) sharing (tests only); signatures are t partials combined (Lagrange)."""

    keyset_id: int
    n: int
    t: int
    public_key: bytes  # compressed G2 (96 bytes)
    shares: dict[int, int]

    @property
    def eip2537(self) -> bytes:
        return bls.g2_to_eip2537(self.public_key)

    def sign(self, message: bytes, signers: Sequence[int] | None = None) -> bytes:
        """Group signature (EIP-2537 G1, 128 bytes) combined from the partials of `signers`."""
        chosen = list(signers) if signers is not None else sorted(self.shares)[: self.t]
        partials = {i: threshold.partial_sign(self.shares[i], message) for i in chosen}
        return bls.g1_to_eip2537(threshold.combine(partials, self.t))


def make_group_key(seed: bytes, keyset_id: int = KEYSET_ID, n: int = GROUP_N, t: int = GROUP_T) -> GroupKey:
    public_key, shares, _ = threshold.deal_trusted(n, t, seed)
    return GroupKey(keyset_id=keyset_id, n=n, t=t, public_key=public_key, shares=shares)


@dataclass(frozen=True)
class SignedState:
    epoch: int
    keyset_id: int
    inputs_digest: bytes
    params_hash: bytes
    leaves: tuple[MarginLeaf, ...]
    tree: MerkleTree
    signature: bytes

    @property
    def root(self) -> bytes:
        return self.tree.root

    def publish_args(self) -> tuple[Any, ...]:
        return (self.epoch, self.keyset_id, self.inputs_digest, self.params_hash, self.root,
                len(self.leaves), self.signature)

    def get_leaf_args(self, account: str) -> tuple[tuple[Any, ...], list[bytes]]:
        """(leaf struct tuple, proof) of `account` for contract calls."""
        for i, leaf in enumerate(self.leaves):
            if leaf.account.lower() == account.lower():
                return leaf.to_abi_tuple(), self.tree.get_proof(i)
        raise KeyError(account)


def make_signed_state(group: GroupKey, epoch: int, leaves: Sequence[MarginLeaf],
                      network_id: int = NETWORK_ID, keyset_id: int | None = None,
                      inputs_digest: bytes = b"\x11" * 32, params_hash: bytes = b"\x22" * 32) -> SignedState:
    keyset = group.keyset_id if keyset_id is None else keyset_id
    tree = build_tree(compute_leaf_hashes(leaves))
    digest = compute_state_digest(network_id, keyset, epoch, inputs_digest, params_hash, tree.root, len(leaves))
    return SignedState(epoch, keyset, inputs_digest, params_hash, tuple(leaves), tree, group.sign(digest))


@dataclass(frozen=True)
class ChainEnv:
    """One running chain with the clearing contracts deployed by dev account 0 (the owner)."""

    chain: AnvilChain
    deployment: Deployment

    @property
    def chain_id(self) -> int:
        return self.chain.chain_id

    def sender(self, index: int = OWNER_INDEX) -> ChainSender:
        return ChainSender(self.chain.rpc_url, get_dev_key(index))

    def contract(self, name: str, address: str | None = None) -> Any:
        default = {"MarginStateRegistry": self.deployment.registry, "CollateralVault": self.deployment.vault,
                   "PositionLedger": self.deployment.ledger, "MarketOracle": self.deployment.oracle}
        return self.sender().contract(name, address or default[name])

    def publish(self, state: SignedState) -> dict[str, Any]:
        return self.sender().transact("MarginStateRegistry", self.deployment.registry, "publishState",
                                      *state.publish_args())


def get_revert_name(exc: ContractCustomError, contracts: Sequence[str] = ("MarginStateRegistry", "CollateralVault",
                                                                       "PositionLedger", "MarketOracle")) -> str:
    """Name of the custom error in a reverted `.call()` (searched in the ABIs of `contracts`)."""
    data = bytes.fromhex(str(exc.data).removeprefix("0x"))
    for name in contracts:
        decoded = decode_revert(get_abi(name), data)
        if not decoded.startswith("0x"):
            return decoded.split("(")[0]
    return decoded


@pytest.fixture(scope="session")
def group_key() -> GroupKey:
    return make_group_key(b"clearing-tests-group-key")


@pytest.fixture(scope="session")
def clearing_chains(group_key: GroupKey) -> Iterator[list[ChainEnv]]:
    chains = start_chains(list(CHAIN_IDS))
    try:
        envs = [ChainEnv(c, deploy_all(c.rpc_url, get_dev_key(OWNER_INDEX), NETWORK_ID, group_key.keyset_id,
                                       group_key.eip2537)) for c in chains]
        yield envs
    finally:
        for c in chains:
            c.stop()


@pytest.fixture()
def chains(clearing_chains: list[ChainEnv]) -> Iterator[list[ChainEnv]]:
    """The session chains, reverted to the freshly deployed state after the test."""
    snapshots = [rpc_call(env.chain.rpc_url, "evm_snapshot") for env in clearing_chains]
    try:
        yield clearing_chains
    finally:
        for env, snap in zip(clearing_chains, snapshots, strict=True):
            rpc_call(env.chain.rpc_url, "evm_revert", [snap])
