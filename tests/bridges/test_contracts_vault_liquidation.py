"""CollateralVault liquidation hook on a real anvil chain: flag and clear accept only the latest
published state; a flag freezes requests and raises the withdrawal floor, which clearing never
lowers. The regression tests reproduce the adversarial review's findings."""

from __future__ import annotations

from typing import Any

import pytest

from bridges.deploy import mint_and_deposit, request_withdrawal
from bridges.errors import DeploymentError
from bridges.statecodec import FLAG_LIQUIDATABLE, withdrawal_id
from tests.bridges.conftest import ChainEnv, GroupKey, SignedState, make_signed_state
from tests.bridges.test_contracts_vault import OTHER, USDC, USER, complete, get_leaf


def call_hook(env: ChainEnv, function: str, account: str, state: SignedState) -> dict[str, Any]:
    """flagLiquidation / clearLiquidation of `account` with its leaf in `state`, sent by a third party."""
    leaf, proof = state.get_leaf_args(account)
    return env.sender(OTHER).transact("CollateralVault", env.deployment.vault, function, account, state.epoch,
                                      leaf, proof)


def publish(env: ChainEnv, group_key: GroupKey, epoch: int, flags: int = 0,
            approved: tuple[bytes, ...] = ()) -> SignedState:
    """Publish a state of `epoch` whose USER leaf carries `flags` and `approved` (OTHER is healthy)."""
    state = make_signed_state(group_key, epoch, [get_leaf(env, USER, approved, flags), get_leaf(env, OTHER)])
    env.publish(state)
    return state


def test_liquidation_flag_freezes_requests_until_cleared(chains: list[ChainEnv], group_key: GroupKey) -> None:
    env = chains[0]
    d = env.deployment
    user = env.sender(USER)
    mint_and_deposit(env.sender(), d, user, "USDC", 100 * USDC)
    rid = request_withdrawal(user, d, "USDC", 10 * USDC)
    wid = withdrawal_id(env.chain_id, d.vault, rid)
    healthy = publish(env, group_key, 1)
    with pytest.raises(DeploymentError, match="NotLiquidatable"):
        call_hook(env, "flagLiquidation", user.address, healthy)
    flagged = publish(env, group_key, 2, FLAG_LIQUIDATABLE, (wid,))
    receipt = call_hook(env, "flagLiquidation", user.address, flagged)
    vault = env.contract("CollateralVault")
    event = vault.events.LiquidationFlagged().process_receipt(receipt)[0]["args"]
    assert (event["account"], event["epoch"], event["flaggedBy"]) == (user.address, 2, env.sender(OTHER).address)
    assert vault.functions.frozenAtEpoch(user.address).call() == 2
    assert vault.functions.withdrawalFloorEpoch(user.address).call() == 2
    with pytest.raises(DeploymentError, match="AccountFrozen"):
        request_withdrawal(user, d, "USDC", 1 * USDC)
    # an approval in the flagging state itself is not enough: a later state must approve
    with pytest.raises(DeploymentError, match=r"StateNotLater\(1, 2, 2\)"):
        complete(env, USER, rid, flagged)
    recovered = publish(env, group_key, 3, 0, (wid,))
    with pytest.raises(DeploymentError, match="StaleLiquidationState"):  # the flagging state cannot clear
        call_hook(env, "clearLiquidation", user.address, flagged)
    call_hook(env, "clearLiquidation", user.address, recovered)
    assert vault.functions.frozenAtEpoch(user.address).call() == 0
    assert vault.functions.liquidationStatusEpoch(user.address).call() == 3
    # the liquidatable leaf of epoch 2 cannot freeze the account again
    with pytest.raises(DeploymentError, match="StaleLiquidationState"):
        call_hook(env, "flagLiquidation", user.address, flagged)
    with pytest.raises(DeploymentError, match="NotFrozen"):
        call_hook(env, "clearLiquidation", user.address, recovered)
    complete(env, USER, rid, recovered)
    request_withdrawal(user, d, "USDC", 1 * USDC)


def test_flag_and_clear_accept_only_the_latest_state(chains: list[ChainEnv], group_key: GroupKey) -> None:
    env = chains[1]
    user = env.sender(USER).address
    first = publish(env, group_key, 1, FLAG_LIQUIDATABLE)
    second = publish(env, group_key, 2, FLAG_LIQUIDATABLE)
    with pytest.raises(DeploymentError, match=r"StateNotLatest\(1, 2\)"):
        call_hook(env, "flagLiquidation", user, first)
    call_hook(env, "flagLiquidation", user, second)
    healthy = publish(env, group_key, 3)
    publish(env, group_key, 4, FLAG_LIQUIDATABLE)
    with pytest.raises(DeploymentError, match=r"StateNotLatest\(3, 4\)"):
        call_hook(env, "clearLiquidation", user, healthy)
    with pytest.raises(DeploymentError, match="StillLiquidatable"):
        call_hook(env, "clearLiquidation", user, make_signed_state(group_key, 4, [get_leaf(env, USER, (), 1),
                                                                                  get_leaf(env, OTHER)]))
    latest = publish(env, group_key, 5)
    call_hook(env, "clearLiquidation", user, latest)
    vault = env.contract("CollateralVault").functions
    assert (vault.frozenAtEpoch(user).call(), vault.withdrawalFloorEpoch(user).call()) == (0, 2)


def test_clear_liquidation_does_not_revive_old_approvals(chains: list[ChainEnv], group_key: GroupKey) -> None:
    """Review reproduction: a withdrawal approved by a healthy state, then the account is flagged and
    cleared; the pre-flag approval used to complete after the clear (the freeze epoch was reset to 0)."""
    env = chains[0]
    d = env.deployment
    user = env.sender(USER)
    mint_and_deposit(env.sender(), d, user, "USDC", 100 * USDC)
    rid = request_withdrawal(user, d, "USDC", 40 * USDC)
    wid = withdrawal_id(env.chain_id, d.vault, rid)
    approving = publish(env, group_key, 1, 0, (wid,))  # healthy, approves the request
    flagged = publish(env, group_key, 2, FLAG_LIQUIDATABLE)
    call_hook(env, "flagLiquidation", user.address, flagged)
    cleared = publish(env, group_key, 3)  # healthy again, no approval
    call_hook(env, "clearLiquidation", user.address, cleared)
    vault = env.contract("CollateralVault").functions
    assert vault.frozenAtEpoch(user.address).call() == 0
    assert vault.withdrawalFloorEpoch(user.address).call() == 2  # clearing never lowers the floor
    with pytest.raises(DeploymentError, match=rf"StateNotLater\({rid}, 1, 2\)"):
        complete(env, USER, rid, approving)
    # only an approval of a state after the flag completes it
    renewed = publish(env, group_key, 4, 0, (wid,))
    complete(env, USER, rid, renewed)
    assert vault.balanceOf(user.address, d.get_token("USDC")).call() == 60 * USDC


def test_stale_leaf_cannot_freeze_healthy_account(chains: list[ChainEnv], group_key: GroupKey) -> None:
    """Review reproduction: a liquidatable leaf of an older retained epoch froze an account that the
    latest state shows healthy (flagLiquidation accepted any retained epoch)."""
    env = chains[1]
    d = env.deployment
    user = env.sender(USER)
    mint_and_deposit(env.sender(), d, user, "USDC", 100 * USDC)
    stale = publish(env, group_key, 1, FLAG_LIQUIDATABLE)
    publish(env, group_key, 2)  # the account recovered
    with pytest.raises(DeploymentError, match=r"StateNotLatest\(1, 2\)"):
        call_hook(env, "flagLiquidation", user.address, stale)
    vault = env.contract("CollateralVault").functions
    assert (vault.frozenAtEpoch(user.address).call(), vault.withdrawalFloorEpoch(user.address).call()) == (0, 0)
    request_withdrawal(user, d, "USDC", 10 * USDC)
