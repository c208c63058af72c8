"""CollateralVault on two real anvil chains: deposits, two-phase withdrawals gated by a later signed
state whose leaf approves the request, liquidation flag, paginated views."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bridges.deploy import mint_and_deposit, request_withdrawal
from bridges.errors import DeploymentError
from bridges.statecodec import FLAG_LIQUIDATABLE, MarginLeaf, withdrawal_id
from tests.bridges.conftest import ChainEnv, GroupKey, SignedState, make_signed_state

USDC = 10**6
ETH = 10**18
USER = 3
OTHER = 4


def get_leaf(env: ChainEnv, index: int, approved: tuple[bytes, ...] = (), flags: int = 0) -> MarginLeaf:
    return MarginLeaf(env.sender(index).address, 5_000 * USDC, 1_000 * USDC, 700 * USDC, flags, approved)


def complete(env: ChainEnv, user: int, request_id: int, state: SignedState, account: str | None = None) -> dict:
    leaf, proof = state.get_leaf_args(account or env.sender(user).address)
    return env.sender(user).transact("CollateralVault", env.deployment.vault, "completeWithdrawal",
                                     request_id, state.epoch, leaf, proof)


def test_deposits_of_one_address_visible_on_both_chains(chains: list[ChainEnv]) -> None:
    env_a, env_b = chains
    user_a, user_b = env_a.sender(USER), env_b.sender(USER)
    assert user_a.address == user_b.address
    mint_and_deposit(env_a.sender(), env_a.deployment, user_a, "USDC", 10_000 * USDC)
    mint_and_deposit(env_b.sender(), env_b.deployment, user_b, "USDC", 2_500 * USDC)
    mint_and_deposit(env_b.sender(), env_b.deployment, user_b, "WETH", ETH // 2)
    for env, usdc, weth in ((env_a, 10_000 * USDC, 0), (env_b, 2_500 * USDC, ETH // 2)):
        vault = env.contract("CollateralVault")
        d = env.deployment
        assert vault.functions.balanceOf(user_a.address, d.get_token("USDC")).call() == usdc
        assert vault.functions.balanceOf(user_a.address, d.get_token("WETH")).call() == weth
        assert vault.functions.accountCount().call() == 1
        assert vault.functions.getAccounts(0, 10).call() == [user_a.address]
        assets = vault.functions.getAssets(0, 10).call()
        assert [(bytes(a[0]).rstrip(b"\0").decode(), a[1]) for a in assets] == list(d.tokens)
        page, balances, locked = vault.functions.getBalancesPage(0, 10).call()
        assert page == [user_a.address]
        assert balances == [[usdc, weth]] and locked == [[0, 0]]


def test_withdrawal_needs_later_approving_state_and_completes_once(chains: list[ChainEnv],
                                                                 group_key: GroupKey) -> None:
    env = chains[0]
    d = env.deployment
    user = env.sender(USER)
    usdc = d.get_token("USDC")
    mint_and_deposit(env.sender(), d, user, "USDC", 1_000 * USDC)
    env.publish(make_signed_state(group_key, 1, [get_leaf(env, USER)]))
    rid = request_withdrawal(user, d, "USDC", 400 * USDC)
    vault = env.contract("CollateralVault")
    request = vault.functions.getRequest(rid).call()
    assert tuple(request[1:]) == (user.address, usdc, 400 * USDC, 1, 1)  # account, token, amount, epoch 1, OPEN
    assert vault.functions.lockedOf(user.address, usdc).call() == 400 * USDC
    assert vault.functions.openRequestCount().call() == 1
    wid = withdrawal_id(env.chain_id, d.vault, rid)
    assert vault.functions.withdrawalId(rid).call() == wid

    # the state of the request's own epoch cannot approve it, even with the id
    same_epoch = make_signed_state(group_key, 1, [get_leaf(env, USER, (wid,))])
    with pytest.raises(DeploymentError, match="StateNotLater"):
        complete(env, USER, rid, same_epoch)
    # a later state that does not approve it
    not_approving = make_signed_state(group_key, 2, [get_leaf(env, USER), get_leaf(env, OTHER, (wid,))])
    env.publish(not_approving)
    with pytest.raises(DeploymentError, match="WithdrawalNotApproved"):
        complete(env, USER, rid, not_approving)
    # another account's leaf that carries the id does not help
    with pytest.raises(DeploymentError, match="LeafAccountMismatch"):
        complete(env, USER, rid, not_approving, account=env.sender(OTHER).address)
    # an approving leaf that was never published: under epoch 3 (not retained: the registry names it),
    # and under the published epoch 2
    unpublished = make_signed_state(group_key, 3, [get_leaf(env, USER, (wid,))])
    with pytest.raises(DeploymentError, match=r"EpochNotRetained\(3,\)"):
        complete(env, USER, rid, unpublished)
    with pytest.raises(DeploymentError, match="InvalidLeafProof"):
        complete(env, USER, rid, replace(unpublished, epoch=2))
    # published: completes once, funds move, not twice
    env.publish(unpublished)
    before = env.contract("TestToken", usdc).functions.balanceOf(user.address).call()
    complete(env, OTHER, rid, unpublished, account=user.address)  # anyone may submit; funds go to the owner
    assert env.contract("TestToken", usdc).functions.balanceOf(user.address).call() == before + 400 * USDC
    assert vault.functions.balanceOf(user.address, usdc).call() == 600 * USDC
    assert vault.functions.lockedOf(user.address, usdc).call() == 0
    assert vault.functions.getRequest(rid).call()[5] == 2  # COMPLETED
    assert vault.functions.openRequestCount().call() == 0
    with pytest.raises(DeploymentError, match="RequestNotOpen"):
        complete(env, USER, rid, unpublished)


def test_approval_is_bound_to_chain_and_vault(chains: list[ChainEnv], group_key: GroupKey) -> None:
    env_a, env_b = chains
    for env in chains:
        mint_and_deposit(env.sender(), env.deployment, env.sender(USER), "USDC", 100 * USDC)
    rid_a = request_withdrawal(env_a.sender(USER), env_a.deployment, "USDC", 10 * USDC)
    rid_b = request_withdrawal(env_b.sender(USER), env_b.deployment, "USDC", 10 * USDC)
    assert rid_a == rid_b == 1
    # the validators approve chain A's request only; the same state is published on both chains
    state = make_signed_state(group_key, 1, [get_leaf(env_a, USER, (withdrawal_id(env_a.chain_id,
                                                                                  env_a.deployment.vault, rid_a),))])
    env_a.publish(state)
    env_b.publish(state)
    with pytest.raises(DeploymentError, match="WithdrawalNotApproved"):
        complete(env_b, USER, rid_b, state)
    complete(env_a, USER, rid_a, state)


def test_invalid_requests_refused(chains: list[ChainEnv]) -> None:
    env = chains[1]
    d = env.deployment
    user = env.sender(USER)
    mint_and_deposit(env.sender(), d, user, "USDC", 100 * USDC)
    with pytest.raises(DeploymentError, match="InsufficientFreeBalance"):
        request_withdrawal(user, d, "USDC", 101 * USDC)
    request_withdrawal(user, d, "USDC", 60 * USDC)
    with pytest.raises(DeploymentError, match="InsufficientFreeBalance"):
        request_withdrawal(user, d, "USDC", 41 * USDC)  # 60 already locked
    with pytest.raises(DeploymentError, match="ZeroAmount"):
        request_withdrawal(user, d, "USDC", 0)
    with pytest.raises(DeploymentError, match="UnknownAsset"):
        user.transact("CollateralVault", d.vault, "requestWithdrawal", d.registry, 1)
    with pytest.raises(DeploymentError, match="NotOwner"):
        user.transact("CollateralVault", d.vault, "registerAsset", b"X".ljust(32, b"\0"), d.registry)


def test_cancel_unlocks_and_only_the_requester_may_cancel(chains: list[ChainEnv]) -> None:
    env = chains[0]
    d = env.deployment
    user = env.sender(USER)
    mint_and_deposit(env.sender(), d, user, "WETH", ETH)
    rids = [request_withdrawal(user, d, "WETH", ETH // 4) for _ in range(3)]
    vault = env.contract("CollateralVault")
    with pytest.raises(DeploymentError, match="NotRequestOwner"):
        env.sender(OTHER).transact("CollateralVault", d.vault, "cancelWithdrawal", rids[1])
    user.transact("CollateralVault", d.vault, "cancelWithdrawal", rids[1])
    assert vault.functions.lockedOf(user.address, d.get_token("WETH")).call() == ETH // 2
    assert sorted(r[0] for r in vault.functions.getOpenRequests(0, 10).call()) == [rids[0], rids[2]]
    assert [r[0] for r in vault.functions.getOpenRequests(1, 10).call()] != []
    assert vault.functions.getOpenRequests(2, 10).call() == []
    with pytest.raises(DeploymentError, match="RequestNotOpen"):
        user.transact("CollateralVault", d.vault, "cancelWithdrawal", rids[1])


def test_liquidation_flag_freezes_requests_until_cleared(chains: list[ChainEnv], group_key: GroupKey) -> None:
    env = chains[0]
    d = env.deployment
    user = env.sender(USER)
    mint_and_deposit(env.sender(), d, user, "USDC", 100 * USDC)
    rid = request_withdrawal(user, d, "USDC", 10 * USDC)
    wid = withdrawal_id(env.chain_id, d.vault, rid)
    healthy = make_signed_state(group_key, 1, [get_leaf(env, USER), get_leaf(env, OTHER)])
    env.publish(healthy)
    leaf, proof = healthy.get_leaf_args(user.address)
    with pytest.raises(DeploymentError, match="NotLiquidatable"):
        env.sender(OTHER).transact("CollateralVault", d.vault, "flagLiquidation", user.address, 1, leaf, proof)
    flagged = make_signed_state(group_key, 2, [get_leaf(env, USER, (wid,), FLAG_LIQUIDATABLE)])
    env.publish(flagged)
    leaf, proof = flagged.get_leaf_args(user.address)
    receipt = env.sender(OTHER).transact("CollateralVault", d.vault, "flagLiquidation", user.address, 2, leaf, proof)
    vault = env.contract("CollateralVault")
    assert vault.events.LiquidationFlagged().process_receipt(receipt)[0]["args"]["account"] == user.address
    assert vault.functions.frozenAtEpoch(user.address).call() == 2
    with pytest.raises(DeploymentError, match="AccountFrozen"):
        request_withdrawal(user, d, "USDC", 1 * USDC)
    # an approval in the flagging state itself is not enough: a later state must approve
    with pytest.raises(DeploymentError, match="StateNotLater"):
        complete(env, USER, rid, flagged)
    recovered = make_signed_state(group_key, 3, [get_leaf(env, USER, (wid,))])
    env.publish(recovered)
    leaf, proof = recovered.get_leaf_args(user.address)
    with pytest.raises(DeploymentError, match="StaleLiquidationState"):  # the flagging state cannot clear
        env.sender(OTHER).transact("CollateralVault", d.vault, "clearLiquidation", user.address, 2,
                                   *flagged.get_leaf_args(user.address))
    env.sender(OTHER).transact("CollateralVault", d.vault, "clearLiquidation", user.address, 3, leaf, proof)
    assert vault.functions.frozenAtEpoch(user.address).call() == 0
    # the stale liquidatable leaf of epoch 2 cannot freeze the account again
    with pytest.raises(DeploymentError, match="StaleLiquidationState"):
        env.sender(OTHER).transact("CollateralVault", d.vault, "flagLiquidation", user.address, 2,
                                   *flagged.get_leaf_args(user.address))
    with pytest.raises(DeploymentError, match="NotFrozen"):
        env.sender(OTHER).transact("CollateralVault", d.vault, "clearLiquidation", user.address, 3, leaf, proof)
    complete(env, USER, rid, recovered)
    request_withdrawal(user, d, "USDC", 1 * USDC)


def test_invalid_deposit_without_allowance_bubbles_token_error(chains: list[ChainEnv]) -> None:
    env = chains[1]
    d = env.deployment
    user = env.sender(USER)
    env.sender().transact("TestToken", d.get_token("USDC"), "mint", user.address, 10 * USDC)
    with pytest.raises(DeploymentError, match="InsufficientAllowance"):
        user.transact("CollateralVault", d.vault, "deposit", d.get_token("USDC"), 10 * USDC)
    assert env.contract("CollateralVault").functions.accountCount().call() == 0
