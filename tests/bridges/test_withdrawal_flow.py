"""Full cross-chain withdrawal flow on two real anvil chains.

Deposit on both chains, request a withdrawal on both in the same epoch, pin and read both chains,
build the state with `compute_margin_state`, threshold-sign it (3 of 4 shares), publish it on both
chains with the Publisher, complete the approved withdrawal; the other one (same free collateral)
fails, and completes only after a later state that shows enough margin.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from bridges import deploy
from bridges.errors import DeploymentError
from bridges.publisher import STATUS_PUBLISHED, FeePolicy, Publisher, StateSubmission
from bridges.snapshot import read_epoch_inputs
from bridges.statecodec import withdrawal_id
from node.crypto import bls, threshold
from node.state import MarginState, compute_margin_state
from risk.params import RRA1
from tests.bridges.test_chain_support import (
    DAY,
    INSTR_PERP,
    KEYSET_ID,
    NETWORK_ID,
    USER_INDEX,
    get_sender,
    make_client,
    pin_all,
    running_chains,
    setup_clearing,
)

USDC = 10**6
QTY = 10**8
PARAMS_HASH = b"\x99" * 32
GROUP_PK, SHARES, _PUBLIC_SHARES = threshold.deal_trusted(4, 3, b"withdrawal-flow")


def sign_state(state: MarginState) -> bytes:
    """Partials from validators 2, 3, 4 combined into the group signature (EIP-2537 G1)."""
    partials = {i: threshold.partial_sign(SHARES[i], state.digest) for i in (2, 3, 4)}
    signature = threshold.combine(partials, 3)
    assert threshold.group_verify(GROUP_PK, state.digest, signature)
    return bls.g1_to_eip2537(signature)


def build_and_publish(chains: list[Any], deployments: list[Any], publishers: list[Publisher],
                      epoch: int) -> MarginState:
    clients = [make_client(c) for c in chains]
    epoch_time, pins = pin_all(chains, clients)
    inputs = read_epoch_inputs(clients, {d.chain_id: d for d in deployments}, chains[0].chain_id, epoch_time)
    assert inputs.pins == tuple(pins)
    state = compute_margin_state(inputs, RRA1, inputs.pins, NETWORK_ID, KEYSET_ID, epoch, PARAMS_HASH)
    sub = StateSubmission(epoch, KEYSET_ID, state.inputs_digest, PARAMS_HASH, state.root, state.leaf_count,
                          sign_state(state))
    for pub in publishers:
        result = pub.publish(sub)
        assert result.status == STATUS_PUBLISHED and result.gas_used > 0
    return state


def complete(user: Any, deployment: Any, request_id: int, state: MarginState) -> dict[str, Any]:
    leaf = state.leaves[state.get_index(user.address)]
    return user.transact("CollateralVault", deployment.vault, "completeWithdrawal", request_id, state.epoch,
                         leaf.to_abi_tuple(), state.get_proof(user.address))


def token_balance(sender: Any, deployment: Any, holder: str) -> int:
    token = sender.contract("TestToken", deployment.get_token("USDC"))
    return int(token.functions.balanceOf(holder).call())


def test_two_withdrawals_on_two_chains_cannot_spend_the_same_free_collateral() -> None:
    with running_chains(31337, 31338) as chains:
        group_key = bls.g2_to_eip2537(GROUP_PK)
        expiry = int(time.time()) + 30 * DAY
        deployments = [setup_clearing(c, group_key, expiry, home=(i == 0)) for i, c in enumerate(chains)]
        owners = [deploy.ChainSender(c.rpc_url, deploy.get_dev_key(0)) for c in chains]
        users = [get_sender(c, USER_INDEX) for c in chains]
        publishers = [Publisher(make_client(c), d.registry, deploy.get_dev_key(1), FeePolicy(fee_cap=10**12))
                      for c, d in zip(chains, deployments, strict=True)]
        da, db = deployments
        # 20,000 USDC on A, 10,000 on B, long 1 BTC perp on A: equity 30,000, IM 15,000, free 15,000
        deploy.mint_and_deposit(owners[0], da, users[0], "USDC", 20_000 * USDC)
        deploy.mint_and_deposit(owners[1], db, users[1], "USDC", 10_000 * USDC)
        deploy.record_trade(owners[0], da, users[0].address, INSTR_PERP, QTY, 100_000 * USDC)
        rid_a = deploy.request_withdrawal(users[0], da, "USDC", 10_000 * USDC)
        rid_b = deploy.request_withdrawal(users[1], db, "USDC", 10_000 * USDC)

        # no later signed state yet: nothing can complete
        with pytest.raises(DeploymentError, match="StateNotLater"):
            users[0].transact("CollateralVault", da.vault, "completeWithdrawal", rid_a, 0,
                              (users[0].address, 0, 0, 0, 0, []), [])

        state1 = build_and_publish(chains, deployments, publishers, epoch=1)
        leaf = state1.leaves[state1.get_index(users[0].address)]
        assert leaf.approved_withdrawals == (withdrawal_id(31337, da.vault, rid_a),)
        assert (leaf.equity, leaf.im) == (20_000 * USDC, 15_000 * USDC)
        before = token_balance(users[0], da, users[0].address)
        complete(users[0], da, rid_a, state1)
        assert token_balance(users[0], da, users[0].address) - before == 10_000 * USDC
        with pytest.raises(DeploymentError, match="WithdrawalNotApproved"):
            complete(users[1], db, rid_b, state1)

        # a later state that shows enough margin after the deduction approves the second request
        deploy.mint_and_deposit(owners[1], db, users[1], "USDC", 6_000 * USDC)
        state2 = build_and_publish(chains, deployments, publishers, epoch=2)
        leaf2 = state2.leaves[state2.get_index(users[1].address)]
        assert leaf2.approved_withdrawals == (withdrawal_id(31338, db.vault, rid_b),)
        assert leaf2.equity == (10_000 + 16_000 - 10_000) * USDC >= leaf2.im
        before_b = token_balance(users[1], db, users[1].address)
        complete(users[1], db, rid_b, state2)
        assert token_balance(users[1], db, users[1].address) - before_b == 10_000 * USDC
        with pytest.raises(DeploymentError, match="RequestNotOpen"):
            complete(users[0], da, rid_a, state2)
