"""Full cross-chain withdrawal flow on two real anvil chains.

Deposit on both chains, buy a perp from the house (matched trade: the cash paid offsets the position's
mark value), request a withdrawal on both chains, pin and read both chains, build the state with
`compute_margin_state`, threshold-sign it (3 of 4 shares), publish it on both chains with the
Publisher. The approval rule (CollateralVault NatSpec): every state deducts EVERY open request of
the account on every chain from its equity and approves all of them or none; so two requests that
together spend the same free collateral are never approved, and an approval given by an earlier state
is already deducted in every later state while its request stays open.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from bridges import deploy
from bridges.book_merge import AccountIndex, merge_books
from bridges.book_reader import read_books
from bridges.errors import DeploymentError
from bridges.publisher import STATUS_PUBLISHED, FeePolicy, Publisher, StateSubmission
from bridges.statecodec import withdrawal_id
from node.crypto import bls, threshold
from node.pipeline import compute_epoch_state
from node.state import MarginState
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
                      epoch: int, times: list[int] | None = None) -> MarginState:
    """Pin both chains, build the state from their books, sign it and publish it on both chains
    (`times` receives the epoch time the state was computed for)."""
    clients = [make_client(c) for c in chains]
    epoch_time, pins = pin_all(chains, clients)
    if times is not None:
        times.append(epoch_time)
    books = read_books(clients, {d.chain_id: d for d in deployments}, pins)
    inputs = merge_books(books, AccountIndex(), chains[0].chain_id, epoch_time)
    assert inputs.pins == tuple((p.chain_id, p.number, p.hash) for p in pins)
    state = compute_epoch_state(inputs, RRA1, NETWORK_ID, KEYSET_ID, epoch, PARAMS_HASH)
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


def get_leaf(state: MarginState, account: str) -> Any:
    return state.leaves[state.get_index(account)]


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
        user = users[0].address
        # the house (dev account 0, the venue) sells 1 BTC perp at the mark 100,000 to the user:
        # user cash -100,000 USD + position worth 100,000. 20,000 USDC on A, 10,000 on B:
        # equity 30,000, IM 15,000, free 15,000
        deploy.mint_and_deposit(owners[0], da, owners[0], "USDC", 10_000_000 * USDC)
        deploy.mint_and_deposit(owners[0], da, users[0], "USDC", 20_000 * USDC)
        deploy.mint_and_deposit(owners[1], db, users[1], "USDC", 10_000 * USDC)
        deploy.record_trade(owners[0], da, owners[0].address, user, INSTR_PERP, QTY, 100_000 * USDC)
        rid_a = deploy.request_withdrawal(users[0], da, "USDC", 10_000 * USDC)
        rid_b = deploy.request_withdrawal(users[1], db, "USDC", 10_000 * USDC)
        wid_a = withdrawal_id(31337, da.vault, rid_a)

        # no later signed state yet: nothing can complete
        with pytest.raises(DeploymentError, match="StateNotLater"):
            users[0].transact("CollateralVault", da.vault, "completeWithdrawal", rid_a, 0,
                              (user, 0, 0, 0, 0, []), [])

        # both requests together would leave 10,000 < IM: neither is approved
        state1 = build_and_publish(chains, deployments, publishers, epoch=1)
        leaf1 = get_leaf(state1, user)
        assert (leaf1.equity, leaf1.im, leaf1.approved_withdrawals) == (10_000 * USDC, 15_000 * USDC, ())
        with pytest.raises(DeploymentError, match="WithdrawalNotApproved"):
            complete(users[0], da, rid_a, state1)
        with pytest.raises(DeploymentError, match="WithdrawalNotApproved"):
            complete(users[1], db, rid_b, state1)

        # without B's request, A's alone keeps the account above IM
        users[1].transact("CollateralVault", db.vault, "cancelWithdrawal", rid_b)
        state2 = build_and_publish(chains, deployments, publishers, epoch=2)
        assert (get_leaf(state2, user).equity, get_leaf(state2, user).approved_withdrawals) == \
            (20_000 * USDC, (wid_a,))

        # a new request on B while A's approved request is still open: the next state deducts both
        rid_b2 = deploy.request_withdrawal(users[1], db, "USDC", 10_000 * USDC)
        state3 = build_and_publish(chains, deployments, publishers, epoch=3)
        assert (get_leaf(state3, user).equity, get_leaf(state3, user).approved_withdrawals) == (10_000 * USDC, ())
        before = token_balance(users[0], da, user)
        complete(users[0], da, rid_a, state2)  # the approval of epoch 2 is still within the window
        assert token_balance(users[0], da, user) - before == 10_000 * USDC
        with pytest.raises(DeploymentError, match="WithdrawalNotApproved"):
            complete(users[1], db, rid_b2, state3)

        # a later state that shows enough margin after the deduction approves the second request
        deploy.mint_and_deposit(owners[1], db, users[1], "USDC", 6_000 * USDC)
        state4 = build_and_publish(chains, deployments, publishers, epoch=4)
        leaf4 = get_leaf(state4, user)
        assert leaf4.approved_withdrawals == (withdrawal_id(31338, db.vault, rid_b2),)
        assert leaf4.equity == (10_000 + 16_000 - 10_000) * USDC >= leaf4.im
        before_b = token_balance(users[1], db, user)
        complete(users[1], db, rid_b2, state4)
        assert token_balance(users[1], db, user) - before_b == 10_000 * USDC
        with pytest.raises(DeploymentError, match="RequestNotOpen"):
            complete(users[0], da, rid_a, state4)
