"""`clearing_client.chain.Registry` and `clearing_client.formats` against a real registry on anvil
(the bridges fixtures: contracts deployed with a test group key): the group key read from chain, the
wait for an epoch (published, superseded by a later one, timeout), and the client's encodings and
digests equal to the contract's."""

from __future__ import annotations

import pytest

from bridges.statecodec import MarginLeaf, encode_margin_leaf
from clearing_client import PublicationError, Registry, read_group_key
from clearing_client import formats as f
from node.crypto import bls, threshold
from tests.bridges import conftest as bridge_fixtures
from tests.bridges.conftest import NETWORK_ID, ChainEnv, GroupKey, make_signed_state

# the bridges' fixtures (two anvil chains with the contracts deployed under a test group key)
group_key = bridge_fixtures.group_key
clearing_chains = bridge_fixtures.clearing_chains
chains = bridge_fixtures.chains

LEAVES = [MarginLeaf("0x" + f"{i:040x}", 1_000 * i - 3_000, 100 * i, 50 * i, int(i == 1)) for i in range(1, 6)]


def test_group_key_and_publication_waits(chains: list[ChainEnv], group_key: GroupKey) -> None:
    env = chains[0]
    registry = Registry(env.chain.rpc_url, env.deployment.registry)
    assert read_group_key(env.chain.rpc_url, env.deployment.registry) == group_key.public_key
    with pytest.raises(PublicationError, match="within"):
        registry.wait_for_epoch(1, timeout_s=0.5, poll_s=0.1)
    for epoch in (1, 3):  # epoch 2 superseded
        env.publish(make_signed_state(group_key, epoch, LEAVES))
    registry.wait_for_epoch(1, timeout_s=10)
    registry.wait_for_epoch(3, timeout_s=10)
    with pytest.raises(PublicationError, match="latest is 3"):
        registry.wait_for_epoch(2, timeout_s=10)
    state = make_signed_state(group_key, 3, LEAVES)
    assert registry.get_latest_epoch() == 3 and registry.is_state_root(3, state.root)
    assert not registry.is_state_root(2, state.root) and not registry.is_published(2)


def test_client_formats_equal_the_contract(chains: list[ChainEnv], group_key: GroupKey) -> None:
    env = chains[0]
    contract = env.contract("MarginStateRegistry")
    assert bytes(contract.functions.groupPublicKey().call()) == f.g2_to_eip2537(group_key.public_key)
    assert f.eip2537_to_g2(f.g2_to_eip2537(group_key.public_key)) == group_key.public_key
    state = make_signed_state(group_key, 4, LEAVES)
    digest = f.state_digest(NETWORK_ID, state.keyset_id, 4, state.inputs_digest, state.params_hash, state.root,
                            len(LEAVES))
    assert bytes(contract.functions.computeStateDigest(state.keyset_id, 4, state.inputs_digest, state.params_hash,
                                                       state.root, len(LEAVES)).call()) == digest
    partials = {i: threshold.partial_sign(group_key.shares[i], digest) for i in sorted(group_key.shares)[:3]}
    compressed = threshold.combine(partials, 3)
    assert f.g1_to_eip2537(compressed) == state.signature == bls.g1_to_eip2537(compressed)
    assert f.verify_bls(group_key.public_key, digest, compressed)
    assert not f.verify_bls(group_key.public_key, b"\x00" * 32, compressed)
    assert not f.verify_bls(group_key.public_key, digest, b"\x00" * 48)
    env.publish(state)
    for leaf in LEAVES:
        args, proof = state.get_leaf_args(leaf.account)
        encoded = encode_margin_leaf(leaf)
        assert f.process_proof(f.leaf_hash(encoded), proof) == state.root
        assert bytes(contract.functions.hashLeaf(args).call()) == f.leaf_hash(encoded)
        assert f.decode_leaf(encoded).as_abi_tuple() == args
        assert contract.functions.verifyLeaf(4, f.decode_leaf(encoded).as_abi_tuple(), proof).call()
