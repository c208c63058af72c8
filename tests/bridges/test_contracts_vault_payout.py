"""CollateralVault payouts and debt sweeps with PositionLedger.settleCash on a real anvil chain: the par
conversion for settlement assets of 18 and 2 decimals (whole micro-USD, rounded against the account), the
once-only wiring (ledger -> vault, vault -> ledger, settlement asset) and every refusal by its named error.
The full flow with signed states is tests/bridges/test_payout_flow.py."""

from __future__ import annotations

import pytest

from bridges import deploy
from bridges.deploy import KIND_PERP, ChainSender, Deployment, get_dev_key
from bridges.errors import DeploymentError
from bridges.statecodec import QTY_SCALE, USD_SCALE, withdrawal_id
from tests.bridges.conftest import NETWORK_ID, ChainEnv, GroupKey, make_signed_state
from tests.bridges.test_contracts_vault import get_leaf

PERP = 1
HOUSE, WINNER, LOSER, KEEPER = 5, 3, 4, 6


def settlement_chain(env: ChainEnv, group_key: GroupKey, decimals: int) -> tuple[Deployment, ChainSender]:
    """Fresh contracts on the session chain with a `decimals` settlement asset "SET"; the house is the venue;
    winner and loser each deposit 1,000 SET; the winner buys 1 BTC perp from the loser at 100,000 and sells it
    back at 100,000.5: ledger cash +500,000 / -500,000 micro-USD."""
    owner = env.sender()
    d = deploy.deploy_contracts(env.chain.rpc_url, get_dev_key(0), NETWORK_ID, group_key.keyset_id,
                                group_key.eip2537)
    d = deploy.deploy_test_token(owner, d, "SET", "Settlement", decimals, 1)
    deploy.set_settlement_asset(owner, d, "SET")
    deploy.register_instrument(owner, d, PERP, "BTC", KIND_PERP)
    deploy.set_venue(owner, d, env.sender(HOUSE).address)
    for index in (WINNER, LOSER):
        deploy.mint_and_deposit(owner, d, env.sender(index), "SET", 1_000 * 10**decimals)
    winner, loser = env.sender(WINNER).address, env.sender(LOSER).address
    deploy.record_trade(env.sender(HOUSE), d, loser, winner, PERP, QTY_SCALE, 100_000 * USD_SCALE)
    deploy.record_trade(env.sender(HOUSE), d, winner, loser, PERP, QTY_SCALE, 100_000 * USD_SCALE + 500_000)
    return d, owner


def cash(owner: ChainSender, d: Deployment, index_address: str) -> int:
    return int(owner.contract("PositionLedger", d.ledger).functions.cashOf(index_address).call())


def view(owner: ChainSender, d: Deployment, name: str, *args: object) -> int:
    return int(getattr(owner.contract("CollateralVault", d.vault).functions, name)(*args).call())


@pytest.mark.parametrize("decimals", [18, 2])
def test_sweep_and_payout_convert_at_par_in_whole_micro_usd(chains: list[ChainEnv], group_key: GroupKey,
                                                            decimals: int) -> None:
    env = chains[0]
    d, owner = settlement_chain(env, group_key, decimals)
    winner, loser = env.sender(WINNER), env.sender(LOSER)
    token = d.get_token("SET")
    assert (cash(owner, d, winner.address), cash(owner, d, loser.address)) == (500_000, -500_000)
    keeper = env.sender(KEEPER)
    if decimals == 18:
        # 1 micro-USD = 10^12 base units: 10^12 + 1 units sweeps 10^12 (whole micro-USD only), credit 1
        assert deploy.sweep_debt(keeper, d, loser.address, 10**12 + 1) == 10**12
        assert cash(owner, d, loser.address) == -499_999
        with pytest.raises(DeploymentError, match="ZeroAmount"):  # less than one micro-USD
            deploy.sweep_debt(keeper, d, loser.address, 10**12 - 1)
        assert deploy.sweep_debt(keeper, d, loser.address, 10**30) == 499_999 * 10**12  # capped at the debt
        assert view(owner, d, "toMicroCeil", 10**12 + 1) == 2  # a payout debits rounded up
        payout_units = 3 * 10**17  # 0.3 USD
    else:
        # 1 base unit = 10^4 micro-USD: a debt of 500,000 micro-USD is 50 units; asking 70 sweeps 50
        assert deploy.sweep_debt(keeper, d, loser.address, 70) == 50
        assert view(owner, d, "toMicroCeil", 7) == 70_000
        payout_units = 30
    assert cash(owner, d, loser.address) == 0
    with pytest.raises(DeploymentError, match="NoDebt"):
        deploy.sweep_debt(keeper, d, loser.address, 1)
    pool = view(owner, d, "payoutPool")
    assert pool == 500_000 * 10**decimals // USD_SCALE
    token_contract = owner.contract("TestToken", token)
    balances = sum(view(owner, d, "balanceOf", a, token) for a in (winner.address, loser.address))
    assert int(token_contract.functions.balanceOf(d.vault).call()) == balances + pool
    # payout of 0.3 USD, approved by a signed state of this registry, paid from the pool
    rid = deploy.request_payout(winner, d, payout_units)
    state = make_signed_state(group_key, 1, [get_leaf(env, WINNER, (withdrawal_id(env.chain_id, d.vault, rid),))])
    owner.transact("MarginStateRegistry", d.registry, "publishState", *state.publish_args())
    before = int(token_contract.functions.balanceOf(winner.address).call())
    winner.transact("CollateralVault", d.vault, "completeWithdrawal", rid, 1, *state.get_leaf_args(winner.address))
    assert int(token_contract.functions.balanceOf(winner.address).call()) - before == payout_units
    assert cash(owner, d, winner.address) == 500_000 - 300_000
    assert view(owner, d, "payoutPool") == pool - payout_units


def test_invalid_settlement_calls_are_refused_by_name(chains: list[ChainEnv], group_key: GroupKey) -> None:
    env = chains[0]
    d, owner = env.deployment, env.sender()
    ledger_v = owner.contract("PositionLedger", d.ledger).functions
    vault_v = owner.contract("CollateralVault", d.vault).functions
    assert ledger_v.vault().call() == d.vault and vault_v.ledger().call() == d.ledger  # deploy wired them
    assert vault_v.settlementAsset().call() == d.get_token("USDC") and vault_v.settlementDecimals().call() == 6
    # once only, owner only
    with pytest.raises(DeploymentError, match="VaultAlreadySet"):
        owner.transact("PositionLedger", d.ledger, "setVault", d.vault)
    with pytest.raises(DeploymentError, match="LedgerAlreadySet"):
        owner.transact("CollateralVault", d.vault, "setLedger", d.ledger)
    with pytest.raises(DeploymentError, match="SettlementAssetAlreadySet"):
        deploy.set_settlement_asset(owner, d, "WETH")
    with pytest.raises(DeploymentError, match="NotOwner"):
        env.sender(KEEPER).transact("PositionLedger", d.ledger, "setVault", d.vault)
    # only the vault settles cash, only for an account that traded
    with pytest.raises(DeploymentError, match="NotVault"):
        owner.transact("PositionLedger", d.ledger, "settleCash", env.sender(WINNER).address, 1)
    # a fresh, unwired pair: the vault refuses a ledger that does not name it; nothing settles before the wiring
    vault, _ = owner.deploy("CollateralVault", d.registry, 8, owner.address)
    ledger, _ = owner.deploy("PositionLedger", owner.address)
    fresh = Deployment(chain_id=env.chain_id, network_id=NETWORK_ID, keyset_id=1, registry=d.registry, vault=vault,
                       ledger=ledger, oracle=d.oracle, tokens=d.tokens, deployer=owner.address, start_block=0)
    with pytest.raises(DeploymentError, match="LedgerNotLinked"):
        owner.transact("CollateralVault", vault, "setLedger", ledger)
    with pytest.raises(DeploymentError, match="NotVault"):
        owner.transact("PositionLedger", ledger, "settleCash", owner.address, 1)
    with pytest.raises(DeploymentError, match="SettlementNotConfigured"):
        deploy.request_payout(env.sender(WINNER), fresh, 10**6)
    with pytest.raises(DeploymentError, match="SettlementNotConfigured"):
        deploy.sweep_debt(env.sender(KEEPER), fresh, env.sender(LOSER).address, 10**6)
    with pytest.raises(DeploymentError, match="UnknownAsset"):
        owner.transact("CollateralVault", vault, "setSettlementAsset", d.get_token("USDC"))
    # the ledger's own bounds (unreachable through the vault, which moves at most the debt or the cash):
    # an account that never traded, and a cash past int64
    owner.transact("PositionLedger", ledger, "setVault", owner.address)  # an EOA as "vault", to reach them
    with pytest.raises(DeploymentError, match="UnknownAccount"):
        owner.transact("PositionLedger", ledger, "settleCash", env.sender(KEEPER).address, 1)
    deploy.register_instrument(owner, fresh, PERP, "BTC", KIND_PERP)
    deploy.set_venue(owner, fresh, owner.address)
    deploy.record_trade(owner, fresh, env.sender(LOSER).address, env.sender(WINNER).address, PERP, QTY_SCALE,
                        100 * USD_SCALE)
    with pytest.raises(DeploymentError, match="CashOutOfRange"):
        owner.transact("PositionLedger", ledger, "settleCash", env.sender(WINNER).address, -(2**63 - 1))
    with pytest.raises(DeploymentError, match="CashOutOfRange"):
        owner.transact("PositionLedger", ledger, "settleCash", env.sender(WINNER).address, 2**200)
    owner.transact("PositionLedger", ledger, "settleCash", env.sender(LOSER).address, 2**63 - 1 - 100 * USD_SCALE)
    assert cash(owner, fresh, env.sender(LOSER).address) == 2**63 - 1  # the seller's +100 USD up to the bound
    # on the session deployment: no cash at all, no debt, a payout below the minimum or above the cash
    deploy.register_instrument(owner, d, PERP, "BTC", KIND_PERP)
    deploy.set_venue(owner, d, env.sender(HOUSE).address)
    deploy.record_trade(env.sender(HOUSE), d, env.sender(LOSER).address, env.sender(WINNER).address, PERP,
                        QTY_SCALE, 100 * USD_SCALE)
    with pytest.raises(DeploymentError, match="NoDebt"):
        deploy.sweep_debt(env.sender(KEEPER), d, env.sender(LOSER).address, 10**6)  # the seller is owed
    with pytest.raises(DeploymentError, match="ZeroAmount"):
        deploy.sweep_debt(env.sender(KEEPER), d, env.sender(WINNER).address, 10**6)  # owes, holds nothing
    with pytest.raises(DeploymentError, match="BelowMinimum"):
        deploy.request_payout(env.sender(LOSER), d, 10**6 - 1)
    with pytest.raises(DeploymentError, match="InsufficientCash"):
        deploy.request_payout(env.sender(LOSER), d, 100 * 10**6 + 1)
    with pytest.raises(DeploymentError, match="InsufficientCash"):
        deploy.request_payout(env.sender(KEEPER), d, 10**6)  # never traded: cash 0
