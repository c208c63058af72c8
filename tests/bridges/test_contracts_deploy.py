"""bridges.deploy: the wiring of a deployment on two chains and the Deployment JSON round trip."""

from __future__ import annotations

import json

import pytest

from bridges.deploy import (
    DEFAULT_MIN_WITHDRAWAL,
    Deployment,
    deploy_all,
    deploy_test_token,
    get_dev_key,
    register_asset,
)
from bridges.errors import DeploymentError, InvalidDeployment
from bridges.statecodec import bytes32_to_symbol
from tests.bridges.conftest import NETWORK_ID, ChainEnv, GroupKey


def test_deployments_are_wired_per_chain(chains: list[ChainEnv], group_key: GroupKey) -> None:
    assert [env.deployment.chain_id for env in chains] == [env.chain_id for env in chains]
    assert chains[0].chain_id != chains[1].chain_id
    for env in chains:
        d = env.deployment
        vault = env.contract("CollateralVault")
        assert vault.functions.registry().call() == d.registry
        assert vault.functions.owner().call() == d.deployer == env.sender().address
        assert env.contract("PositionLedger").functions.owner().call() == d.deployer
        assert env.contract("MarketOracle").functions.owner().call() == d.deployer
        registry = env.contract("MarginStateRegistry")
        assert registry.functions.networkId().call() == NETWORK_ID == d.network_id
        assert registry.functions.latestEpoch().call() == 0
        initial = registry.events.GroupKeyRotated().get_logs(from_block=d.start_block, to_block=d.start_block)
        assert [(e["args"]["newKeysetId"], e["args"]["groupKey"]) for e in initial] == \
            [(group_key.keyset_id, group_key.eip2537)]
        assets = vault.functions.getAssets(0, 10).call()
        assert {bytes32_to_symbol(a[0]): a[1] for a in assets} == dict(d.tokens)
        usdc = env.contract("TestToken", d.get_token("USDC"))
        assert usdc.functions.decimals().call() == 6 and usdc.functions.symbol().call() == "USDC"
        assert vault.functions.approvalWindow().call() == 8
        assert {s: vault.functions.minWithdrawal(t).call() for s, t in d.tokens} == \
            {s: DEFAULT_MIN_WITHDRAWAL[s] for s, _t in d.tokens}


def test_deployment_json_round_trip(chains: list[ChainEnv]) -> None:
    d = chains[1].deployment
    text = d.to_json()
    assert Deployment.from_json(text) == d
    lowered = json.loads(text)
    lowered["vault"] = lowered["vault"].lower()
    assert Deployment.from_json(json.dumps(lowered)) == d


def test_invalid_deployment_json_names_the_field(chains: list[ChainEnv]) -> None:
    data = json.loads(chains[0].deployment.to_json())
    with pytest.raises(InvalidDeployment, match="chain_id"):
        Deployment.from_json(json.dumps({**data, "chain_id": "31337"}))
    with pytest.raises(InvalidDeployment, match="registry"):
        Deployment.from_json(json.dumps({k: v for k, v in data.items() if k != "registry"}))
    with pytest.raises(InvalidDeployment, match="address"):
        Deployment.from_json(json.dumps({**data, "oracle": "0x1234"}))
    with pytest.raises(InvalidDeployment, match="tokens"):
        Deployment.from_json(json.dumps({**data, "tokens": ["USDC"]}))
    with pytest.raises(InvalidDeployment, match="deployment json"):
        Deployment.from_json("{not json")
    with pytest.raises(InvalidDeployment, match="DOGE"):
        chains[0].deployment.get_token("DOGE")


def test_added_collateral_token_is_registered(chains: list[ChainEnv]) -> None:
    env = chains[0]
    before = env.deployment
    after = deploy_test_token(env.sender(), before, "WBTC", "Test Wrapped Bitcoin", 8, 10**5)
    assert after.get_token("WBTC") != before.get_token("USDC")
    assert dict(after.tokens).keys() == {"USDC", "WETH", "WBTC"}
    vault = env.contract("CollateralVault")
    assert vault.functions.isAsset(after.get_token("WBTC")).call()
    assert vault.functions.assetCount().call() == 3
    with pytest.raises(DeploymentError, match="already registered"):
        register_asset(env.sender(), after, "WBTC", after.get_token("USDC"), 1)
    with pytest.raises(DeploymentError, match="AssetAlreadyRegistered"):
        register_asset(env.sender(), before, "USDC2", before.get_token("USDC"), 1)


def test_invalid_vault_settings_refused(chains: list[ChainEnv], group_key: GroupKey) -> None:
    env = chains[0]
    with pytest.raises(DeploymentError, match="InvalidApprovalWindow"):
        deploy_all(env.chain.rpc_url, get_dev_key(0), NETWORK_ID, 1, group_key.eip2537, approval_window=0)
    with pytest.raises(DeploymentError, match=r"min_withdrawal: no minimum for token\(s\) DOGE"):
        deploy_all(env.chain.rpc_url, get_dev_key(0), NETWORK_ID, 1, group_key.eip2537,
                   tokens=(("USDC", "Test USD Coin", 6), ("DOGE", "Test Doge", 8)))
