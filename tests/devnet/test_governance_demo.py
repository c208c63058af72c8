"""Governance in the running network.

Fast part: `node.governance_source` against a real anvil chain and a freshly deployed Governance
contract (schedule at pins before/during/after voting, cache, failures that stall the epoch).
Slow part: `clearingd devnet --governance-demo` end to end (two chains, four validator processes): a
parameter set voted on chain switches every validator's signed state at the activation epoch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from bridges.anvil import AnvilChain, rpc_call, start_chains
from bridges.artifacts import get_bytecode
from bridges.chain import ChainClient, ChainConfig, Pin
from bridges.governance_chain import GovernanceChain, deploy_governance, get_dev_key, load_governance_abi
from governance.params import compute_params_hash
from governance.proposals import ProposalKind, VoteChoice
from node.consensus.errors import InputsUnavailable
from node.devnet.governance_demo import DEMO_OVERRIDES, build_demo_params, run_governance_demo
from node.devnet.runner import DevnetOptions
from node.governance_source import (
    GovernanceScheduleSource,
    GovernanceSourceError,
    build_governance_genesis,
    get_epoch_clock_seconds,
)
from risk.params import RRA1

EPOCH_SECONDS = 3_600  # every block of the fast tests falls in epoch 0
ACTIVATION = 5
VOTING_BLOCKS = 4


@dataclass
class Chain:
    anvil: AnvilChain
    gov: GovernanceChain
    keys: list[bytes]
    validators: tuple[str, ...]
    genesis_time: int

    def pin(self) -> Pin:
        return self.gov.get_pin_at_head(0)

    def mine(self, blocks: int) -> None:
        rpc_call(self.anvil.rpc_url, "anvil_mine", [hex(blocks)])

    def source(self, **kwargs: Any) -> GovernanceScheduleSource:
        genesis = build_governance_genesis(kwargs.pop("validators", self.validators), kwargs.pop("threshold", 3),
                                           float(self.genesis_time), float(EPOCH_SECONDS))
        return GovernanceScheduleSource(self.gov, genesis, **kwargs)


@pytest.fixture(scope="module")
def chain() -> Iterator[Chain]:
    anvil = start_chains([31_451])[0]
    try:
        client = ChainClient(ChainConfig(chain_id=anvil.chain_id, rpc_url=anvil.rpc_url))
        keys = [get_dev_key(i) for i in range(4)]
        validators = tuple(Account.from_key(k).address.lower() for k in keys)
        address = deploy_governance(client, keys[0], load_governance_abi(), get_bytecode("Governance"), validators, 3)
        gov = GovernanceChain(client, address, load_governance_abi())
        yield Chain(anvil, gov, keys, validators, client.get_block("latest").timestamp)
    finally:
        anvil.stop()


def test_schedule_follows_the_pin_before_during_and_after_voting(chain: Chain) -> None:
    payload, new_hash, genesis_hash = build_demo_params()
    source = chain.source()
    before = chain.pin()
    pid, _ = chain.gov.propose(chain.keys[0], ProposalKind.PARAMETER_SET, payload, VOTING_BLOCKS, ACTIVATION)
    for key in chain.keys[:3]:
        chain.gov.vote(key, pid, VoteChoice.YES)
    during = chain.pin()
    chain.mine(VOTING_BLOCKS + 1)
    after = chain.pin()

    assert source(before).versions[-1].params_hash == genesis_hash
    assert len(source(before).versions) == 1
    assert len(source(during).versions) == 1  # still voting: nothing scheduled yet
    schedule = source(after)
    assert [v.activation_epoch for v in schedule.versions] == [0, ACTIVATION]
    assert schedule.get_active_params_hash(ACTIVATION - 1) == genesis_hash == compute_params_hash(RRA1)
    assert schedule.get_active_params_hash(ACTIVATION) == new_hash
    assert dict(schedule.get_active_params(ACTIVATION).price_scan_range) == DEMO_OVERRIDES["price_scan_range"]
    # what was read at an old pin does not change once the chain moved on
    assert len(source(before).versions) == 1


def test_cache_is_per_pin_and_bounded(chain: Chain) -> None:
    source = chain.source(max_cached=2)
    pins = []
    for _ in range(3):
        pins.append(chain.pin())
        chain.mine(1)
    source(pins[0])
    source(pins[0])
    assert source.reads == 1
    source(pins[1])
    source(pins[2])  # evicts pins[0]
    assert source.reads == 3
    source(pins[2])
    assert source.reads == 3
    source(pins[0])
    assert source.reads == 4


def test_invalid_chain_unreachable_stalls_the_epoch(chain: Chain) -> None:
    pin = chain.pin()
    dead = ChainClient(ChainConfig(chain_id=chain.anvil.chain_id, rpc_url="http://127.0.0.1:9",
                                   timeout_s=0.5, max_attempts=1))
    genesis = build_governance_genesis(chain.validators, 3, float(chain.genesis_time), float(EPOCH_SECONDS))
    source = GovernanceScheduleSource(GovernanceChain(dead, chain.gov.address, load_governance_abi()), genesis)
    with pytest.raises(GovernanceSourceError) as info:
        source(pin)
    assert isinstance(info.value, InputsUnavailable)
    assert f"home block {pin.number}" in str(info.value)
    assert source.reads == 0


def test_invalid_unknown_pin_hash_stalls_the_epoch(chain: Chain) -> None:
    pin = chain.pin()
    forged = Pin(pin.chain_id, pin.number, bytes(32), pin.timestamp)
    with pytest.raises(GovernanceSourceError):
        chain.source()(forged)


def test_invalid_missing_or_foreign_home_pin(chain: Chain) -> None:
    pin = chain.pin()
    with pytest.raises(GovernanceSourceError, match="no home-chain pin"):
        chain.source()(None)
    with pytest.raises(GovernanceSourceError, match="chain 1"):
        chain.source()(Pin(1, pin.number, pin.hash, pin.timestamp))


def test_invalid_genesis_set_differs_from_the_contract(chain: Chain) -> None:
    other = (*chain.validators[:3], Account.from_key(get_dev_key(7)).address.lower())
    with pytest.raises(GovernanceSourceError, match=r"governance\.address"):
        chain.source(validators=other)(chain.pin())
    with pytest.raises(GovernanceSourceError, match="threshold 4"):
        chain.source(threshold=4)(chain.pin())


def test_invalid_fractional_clock_is_refused_naming_the_field() -> None:
    assert get_epoch_clock_seconds(1_700_000_000.0, 3.0) == (1_700_000_000, 3)
    with pytest.raises(ValueError, match="epoch_period_s"):
        get_epoch_clock_seconds(1_700_000_000.0, 2.5)
    with pytest.raises(ValueError, match="genesis_time"):
        get_epoch_clock_seconds(1_700_000_000.5, 3.0)


# --- the devnet with the governance demo ---------------------------------------------------------


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory) -> dict:
    home: Path = tmp_path_factory.mktemp("govdemo")
    lines: list[str] = []
    result = run_governance_demo(DevnetOptions(home=home, epoch_period_s=3.0), lines.append)
    assert result, "\n".join(lines)
    return result


def split_epochs(summary: dict) -> tuple[list[str], list[str]]:
    activation = summary["governance"]["activation_epoch"]
    epochs = sorted(summary["params_hash_by_epoch"], key=int)
    return [e for e in epochs if int(e) < activation], [e for e in epochs if int(e) >= activation]


@pytest.mark.slow
def test_proposal_approved_by_three_operator_votes_and_scheduled(summary: dict) -> None:
    g = summary["governance"]
    _, new_hash, genesis_hash = build_demo_params()
    assert g["status"] == "approved"
    assert g["votes"]["yes"] == 3 and g["votes"]["no"] == 0 and g["votes"]["abstain"] == 0 and g["votes"]["n"] == 4
    assert len(set(g["votes"]["voters"])) == 3
    assert g["params_hash"] == "0x" + new_hash.hex() and g["genesis_params_hash"] == "0x" + genesis_hash.hex()
    assert [(v["activation_epoch"], v["params_hash"]) for v in g["schedule"]] == [
        (0, g["genesis_params_hash"]), (g["activation_epoch"], g["params_hash"])]
    assert g["activation_epoch"] > g["proposed_after_epoch"] + 1
    assert g["cli_agrees"] is True


@pytest.mark.slow
def test_every_epoch_signed_by_all_validators_with_one_hash(summary: dict) -> None:
    epochs = sorted(int(e) for e in summary["params_hash_by_epoch"])
    assert epochs == list(range(summary["first_epoch"], summary["last_epoch"] + 1))
    for e in map(str, epochs):
        assert summary["identical_by_epoch"][e] is True
        hashes = summary["params_hash_at_validators"][e]
        assert len(hashes) == 4 and None not in hashes and len(set(hashes)) == 1
        assert hashes[0] == summary["params_hash_by_epoch"][e]
    assert summary["epochs_signed"] == summary["epochs_observed"] == len(epochs)


@pytest.mark.slow
def test_before_activation_genesis_hash_and_unchanged_margin(summary: dict) -> None:
    before, _ = split_epochs(summary)
    g = summary["governance"]
    assert len(before) >= 3 and any(int(e) > g["proposed_after_epoch"] for e in before)  # incl. voting epochs
    assert all(summary["params_hash_by_epoch"][e] == g["genesis_params_hash"] for e in before)
    first = summary["im_by_epoch"][before[0]]
    for e in before:
        im = summary["im_by_epoch"][e]
        assert im["hedged"] == first["hedged"] == 6_000.0  # 10 ETH x 3,000 x ETH scan range 0.20
        assert im["unhedged"] == first["unhedged"]
        assert abs(im["fragile"] - first["fragile"]) < 1.0  # only the put's time decay moves it


@pytest.mark.slow
def test_from_activation_new_hash_at_every_validator_and_margin_rises(summary: dict) -> None:
    before, after = split_epochs(summary)
    g = summary["governance"]
    assert len(after) >= 3 and int(after[0]) == g["activation_epoch"]
    assert all(summary["params_hash_by_epoch"][e] == g["params_hash"] for e in after)
    pre = summary["im_by_epoch"][before[-1]]
    for e in after:
        im = summary["im_by_epoch"][e]
        assert im["hedged"] == 7_500.0  # 10 ETH x 3,000 x ETH scan range 0.25
        assert im["unhedged"] > pre["unhedged"] + 5_000  # BTC 1 x 100,000 x +0.10 of scan range, less credit
        assert im["fragile"] > pre["fragile"] * 1.5


@pytest.mark.slow
def test_margin_after_activation_published_and_proven_on_both_chains(summary: dict) -> None:
    assert summary["checked_epoch"] >= summary["governance"]["activation_epoch"]
    assert summary["proof_verified_on_chain"] is True
    assert summary["accounts"]["hedged"]["initial_margin"] == 7_500.0
    assert all(n >= summary["epochs_observed"] - 1 for n in summary["published"].values())


def test_invalid_config_fractional_epoch_with_governance(tmp_path: Path) -> None:
    from node.config import ConfigError, ValidatorSecrets, build_validator_config, load_config

    secrets = ValidatorSecrets(share_sk=1, operator_key=bytes(32), p2p_seed=bytes(32))
    overrides = {"governance.rpc_url": "http://127.0.0.1:8545", "governance.address": "0x" + "11" * 20,
                 "consensus.genesis_time": "1700000000", "consensus.epoch_period_s": "2.5",
                 "validator_set.operators": "0x" + "22" * 20, "validator_set.public_shares": "0x" + "33" * 96}
    with pytest.raises(ConfigError, match=r"consensus\.epoch_period_s"):
        build_validator_config(load_config(tmp_path, env={}, overrides=overrides), secrets)
    overrides["consensus.epoch_period_s"] = "3"
    config = build_validator_config(load_config(tmp_path, env={}, overrides=overrides), secrets)
    assert config.governance_address == "0x" + "11" * 20
