"""CollateralVault on two real anvil chains: deposits (own, for another account, for many), two-phase
withdrawals gated by a later signed state whose leaf approves the request within the approval window,
the minimum amount and the cap of open requests per account, paginated views. Liquidation flag and
withdrawal floor: test_contracts_vault_liquidation.py."""

from __future__ import annotations

from dataclasses import replace

import pytest
from web3.logs import DISCARD

from bridges.deploy import deposit_for_many, mint, mint_and_deposit, request_withdrawal, set_min_withdrawal
from bridges.errors import DeploymentError
from bridges.statecodec import MarginLeaf, withdrawal_id
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
    request_time = env.sender().w3.eth.get_block("latest")["timestamp"]
    # account, token, amount, request epoch 1, request time, OPEN, not a payout
    assert tuple(request[1:]) == (user.address, usdc, 400 * USDC, 1, request_time, 1, False)
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
    assert vault.functions.getRequest(rid).call()[6] == 2  # COMPLETED
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
        user.transact("CollateralVault", d.vault, "registerAsset", b"X".ljust(32, b"\0"), d.registry, 1)
    owner = env.sender()
    for raw in (b"", b"US\0DC", "US\u00d0C".encode(), b"US DC"):
        with pytest.raises(DeploymentError, match=r"InvalidKey\('symbol'"):
            owner.transact("CollateralVault", d.vault, "registerAsset", raw.ljust(32, b"\0"), d.registry, 1)
    with pytest.raises(DeploymentError, match="SymbolAlreadyRegistered"):
        owner.transact("CollateralVault", d.vault, "registerAsset", b"USDC".ljust(32, b"\0"), d.registry, 1)
    assert env.contract("CollateralVault").functions.assetCount().call() == 2


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


def test_invalid_deposit_without_allowance_bubbles_token_error(chains: list[ChainEnv]) -> None:
    env = chains[1]
    d = env.deployment
    user = env.sender(USER)
    env.sender().transact("TestToken", d.get_token("USDC"), "mint", user.address, 10 * USDC)
    with pytest.raises(DeploymentError, match="InsufficientAllowance"):
        user.transact("CollateralVault", d.vault, "deposit", d.get_token("USDC"), 10 * USDC)
    assert env.contract("CollateralVault").functions.accountCount().call() == 0


def test_deposit_for_and_deposit_for_many_credit_the_accounts(chains: list[ChainEnv]) -> None:
    env = chains[0]
    d = env.deployment
    payer, usdc = env.sender(OTHER), d.get_token("USDC")
    accounts = [env.sender(i).address for i in (USER, 6, 7)]
    mint(env.sender(), d, "USDC", payer.address, 1_000 * USDC)
    token = env.contract("TestToken", usdc).functions
    payer.transact("TestToken", usdc, "approve", d.vault, 10 * USDC)
    payer.transact("CollateralVault", d.vault, "depositFor", accounts[0], usdc, 10 * USDC)
    receipts = deposit_for_many(payer, d, "USDC", {accounts[0]: 5 * USDC, accounts[1]: 7 * USDC, accounts[2]: 1})
    vault = env.contract("CollateralVault")
    events = [e["args"] for e in vault.events.Deposited().process_receipt(receipts[0], errors=DISCARD)]  # + Transfer
    assert [(e["account"], e["amount"], e["balance"], e["sequence"]) for e in events] == [
        (accounts[0], 5 * USDC, 15 * USDC, 2 + 2), (accounts[1], 7 * USDC, 7 * USDC, 2 + 3), (accounts[2], 1, 1, 2 + 4)]
    assert [vault.functions.balanceOf(a, usdc).call() for a in accounts] == [15 * USDC, 7 * USDC, 1]
    assert vault.functions.getAccounts(0, 10).call() == accounts
    assert vault.functions.balanceOf(payer.address, usdc).call() == 0 and not vault.functions.isAccount(payer.address).call()
    assert token.balanceOf(payer.address).call() == (1_000 - 22) * USDC - 1
    assert token.balanceOf(d.vault).call() == 22 * USDC + 1


def test_invalid_deposits_refused(chains: list[ChainEnv]) -> None:
    env = chains[1]
    d = env.deployment
    payer, usdc = env.sender(OTHER), d.get_token("USDC")
    user = env.sender(USER).address
    mint(env.sender(), d, "USDC", payer.address, 1_000 * USDC)
    payer.transact("TestToken", usdc, "approve", d.vault, 1_000 * USDC)
    zero = "0x" + "00" * 20
    cases = [
        (("depositForMany", usdc, [user, user], [1]), "LengthMismatch"),
        (("depositForMany", usdc, [user] * 201, [1] * 201), "BatchTooLarge"),
        (("depositForMany", usdc, [user, zero], [1, 1]), r"ZeroAddress\('account'"),
        (("depositForMany", usdc, [user, user], [1, 0]), r"ZeroAmount\('amount'"),
        (("depositForMany", usdc, [], []), r"ZeroAmount\('amounts'"),
        (("depositForMany", d.registry, [user], [1]), "UnknownAsset"),
        (("depositFor", zero, usdc, 1), r"ZeroAddress\('account'"),
        (("depositFor", zero, d.registry, 1), "UnknownAsset"),
        (("depositFor", user, usdc, 0), "ZeroAmount"),
        (("deposit", usdc, 1_001 * USDC), "InsufficientAllowance"),
    ]
    for (function, *args), error in cases:
        with pytest.raises(DeploymentError, match=error):
            payer.transact("CollateralVault", d.vault, function, *args)
    assert env.contract("CollateralVault").functions.eventSequence().call() == 2  # the two asset registrations


def test_withdrawal_minimum_per_token(chains: list[ChainEnv]) -> None:
    env = chains[0]
    d = env.deployment
    user, owner, usdc = env.sender(USER), env.sender(), d.get_token("USDC")
    vault = env.contract("CollateralVault")
    assert vault.functions.minWithdrawal(usdc).call() == USDC  # deploy_all's default: 1 USDC
    mint_and_deposit(owner, d, user, "USDC", 100 * USDC)
    with pytest.raises(DeploymentError, match=rf"BelowMinimum\('{usdc.lower()}', {USDC - 1}, {USDC}\)"):
        request_withdrawal(user, d, "USDC", USDC - 1)
    request_withdrawal(user, d, "USDC", USDC)
    receipt = set_min_withdrawal(owner, d, "USDC", 5 * USDC)
    event = vault.events.MinWithdrawalSet().process_receipt(receipt)[0]["args"]
    assert (event["token"], event["amount"]) == (usdc, 5 * USDC)
    assert vault.functions.minWithdrawal(usdc).call() == 5 * USDC
    with pytest.raises(DeploymentError, match="BelowMinimum"):
        request_withdrawal(user, d, "USDC", 4 * USDC)
    request_withdrawal(user, d, "USDC", 5 * USDC)
    with pytest.raises(DeploymentError, match="NotOwner"):
        set_min_withdrawal(user, d, "USDC", 0)
    with pytest.raises(DeploymentError, match="UnknownAsset"):
        owner.transact("CollateralVault", d.vault, "setMinWithdrawal", d.registry, 1)


def test_open_requests_per_account_are_capped(chains: list[ChainEnv], group_key: GroupKey) -> None:
    env = chains[1]
    d = env.deployment
    user = env.sender(USER)
    mint_and_deposit(env.sender(), d, user, "USDC", 100 * USDC)
    mint_and_deposit(env.sender(), d, env.sender(OTHER), "USDC", 100 * USDC)
    vault = env.contract("CollateralVault")
    rids = [request_withdrawal(user, d, "USDC", USDC) for _ in range(8)]
    assert vault.functions.openRequestCountOf(user.address).call() == 8
    with pytest.raises(DeploymentError, match=rf"TooManyOpenRequests\('{user.address.lower()}', 8\)"):
        request_withdrawal(user, d, "USDC", USDC)
    request_withdrawal(env.sender(OTHER), d, "USDC", USDC)  # the cap is per account
    user.transact("CollateralVault", d.vault, "cancelWithdrawal", rids[0])
    assert vault.functions.openRequestCountOf(user.address).call() == 7
    rids.append(request_withdrawal(user, d, "USDC", USDC))
    state = make_signed_state(group_key, 1, [get_leaf(env, USER, (withdrawal_id(env.chain_id, d.vault, rids[1]),))])
    env.publish(state)
    complete(env, USER, rids[1], state)
    assert vault.functions.openRequestCountOf(user.address).call() == 7
    assert vault.functions.openRequestCount().call() == 8  # 7 of the user's, 1 of the other account


def test_approval_expires_after_the_window(chains: list[ChainEnv], group_key: GroupKey) -> None:
    env = chains[0]
    d = env.deployment
    user = env.sender(USER)
    vault = env.contract("CollateralVault")
    assert vault.functions.approvalWindow().call() == 8
    mint_and_deposit(env.sender(), d, user, "USDC", 100 * USDC)
    rid = request_withdrawal(user, d, "USDC", 10 * USDC)
    wid = withdrawal_id(env.chain_id, d.vault, rid)
    approving = make_signed_state(group_key, 1, [get_leaf(env, USER, (wid,))])
    env.publish(approving)
    for epoch in range(2, 9):  # latest 8: 1 + 8 > 8, the approval of epoch 1 is still usable
        env.publish(make_signed_state(group_key, epoch, [get_leaf(env, OTHER)]))
    leaf, proof = approving.get_leaf_args(user.address)
    vault.functions.completeWithdrawal(rid, 1, leaf, proof).call({"from": user.address})  # would succeed
    env.publish(make_signed_state(group_key, 9, [get_leaf(env, OTHER)]))
    with pytest.raises(DeploymentError, match=rf"ApprovalExpired\({rid}, 1, 9\)"):
        complete(env, USER, rid, approving)
    # a later state that approves again (the request is still open) completes it
    renewed = make_signed_state(group_key, 10, [get_leaf(env, USER, (wid,))])
    env.publish(renewed)
    complete(env, USER, rid, renewed)
    assert vault.functions.balanceOf(user.address, d.get_token("USDC")).call() == 90 * USDC
