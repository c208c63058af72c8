"""`clearingd gov ...` and `clearingd params show` as subprocesses against a real anvil chain."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from eth_account import Account

from bridges.anvil import rpc_call
from bridges.governance_chain import GovernanceChain
from governance.encoding import state_to_dict
from governance.params import compute_params_hash
from governance.proposals import ProposalKind, ValidatorSetChange, VoteChoice, encode_validator_set_change
from node.governance_source import build_governance_source
from risk.params import RRA1
from tests.governance.conftest import EPOCH_SECONDS, Deployed
from tests.governance.helpers import INVALID_MM_PAYLOAD, WIDE_BTC

REPO = Path(__file__).resolve().parents[2]


def clearingd(d: Deployed | None, *argv: str, dev_key: int | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARING_")}
    if d is not None:
        env |= {"CLEARING_HOME_RPC_URL": d.chain.rpc_url, "CLEARING_GOVERNANCE_ADDRESS": d.gov.address,
                "CLEARING_GENESIS_TIME": str(d.genesis.clock.genesis_time),
                "CLEARING_EPOCH_SECONDS": str(EPOCH_SECONDS)}
    if dev_key is not None:
        env["CLEARING_DEV_KEY"] = str(dev_key)
    return subprocess.run([sys.executable, "-m", "node.cli.main", *argv], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def test_params_show_without_chain_is_rra1() -> None:
    out = clearingd(None, "params", "show", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["params_hash"] == "0x" + compute_params_hash(RRA1).hex()
    assert doc["params"]["price_scan_range"] == {"BTC": 0.15, "ETH": 0.2}


@pytest.mark.slow
def test_gov_propose_vote_list_show_and_params_show(deployed: Deployed, tmp_path: Path) -> None:
    d = deployed
    (tmp_path / "wide.json").write_text(json.dumps({"price_scan_range": {"BTC": 0.25}}))
    out = clearingd(d, "gov", "propose", "--kind", "params", "--params-file", str(tmp_path / "wide.json"),
                    "--voting-period-blocks", "8", "--activation-epoch", "3", "--json", dev_key=0)
    assert out.returncode == 0, out.stderr
    pid = json.loads(out.stdout)["proposal_id"]
    for i in range(3):
        vote = clearingd(d, "gov", "vote", "--id", str(pid), "--choice", "yes", dev_key=i)
        assert vote.returncode == 0, vote.stderr
    again = clearingd(d, "gov", "vote", "--id", str(pid), "--choice", "no", dev_key=0)
    assert again.returncode == 1
    assert again.stderr.startswith("refused: AlreadyVoted")
    outsider = clearingd(d, "gov", "vote", "--id", str(pid), "--choice", "yes", dev_key=5)
    assert outsider.returncode == 1 and outsider.stderr.startswith("refused: NotValidator")
    d.mine(9)
    listed = json.loads(clearingd(d, "gov", "list", "--json").stdout)
    assert [(p["id"], p["status"]) for p in listed["proposals"]] == [(pid, "approved")]
    shown = json.loads(clearingd(d, "gov", "show", "--id", str(pid), "--json").stdout)
    assert shown["params"]["price_scan_range"]["BTC"] == 0.25
    assert shown["validation"] == "ok" and shown["tally"]["yes"] == 3
    before = json.loads(clearingd(d, "params", "show", "--epoch", "2", "--json").stdout)
    after = json.loads(clearingd(d, "params", "show", "--epoch", "3", "--json").stdout)
    assert before["params_hash"] == "0x" + compute_params_hash(RRA1).hex()
    assert after["params_hash"] == "0x" + compute_params_hash(WIDE_BTC).hex()
    assert after["proposal_id"] == pid


def test_invalid_parameter_set_shows_its_reason(deployed: Deployed) -> None:
    d = deployed
    out = clearingd(d, "gov", "propose", "--kind", "params", "--payload-hex", INVALID_MM_PAYLOAD.hex(),
                    "--voting-period-blocks", "3", "--activation-epoch", "3", "--json", dev_key=1)
    assert out.returncode == 0, out.stderr
    pid = json.loads(out.stdout)["proposal_id"]
    text = clearingd(d, "gov", "show", "--id", str(pid))
    assert text.returncode == 0, text.stderr
    assert f"proposal {pid}: invalid - parameter set refused: maintenance_factor: " in text.stdout
    assert "validation: parameter set refused: maintenance_factor:" in text.stdout


def test_invalid_cli_usage_names_the_missing_option(deployed: Deployed) -> None:
    out = clearingd(deployed, "gov", "vote", "--id", "1", "--choice", "yes")
    assert out.returncode == 2
    assert "--key-file or --dev-key" in out.stderr
    bad = clearingd(deployed, "gov", "propose", "--kind", "validators", "--remove", deployed.validators[3],
                    "--voting-period-blocks", "3", "--activation-epoch", "3", dev_key=0)
    assert bad.returncode == 2 and "--threshold" in bad.stderr


def test_gov_list_agrees_with_the_node_after_a_set_change(deployed: Deployed) -> None:
    """The CLI derives the genesis as the node does (the contract's set version 0 at the pin), also once
    the contract's voting set moved on and whatever set the node is configured with."""
    d = deployed
    joiner = Account.from_key(d.keys[4]).address.lower()
    change = encode_validator_set_change(ValidatorSetChange((joiner,), (d.validators[3],), 3))
    pid, _ = d.gov.propose(d.keys[0], ProposalKind.VALIDATOR_SET, change, 3, 6)
    for key in d.keys[:3]:
        d.gov.vote(key, pid, VoteChoice.YES)
    d.mine(4)
    d.gov.execute(d.keys[1], pid)
    listed = clearingd(d, "gov", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    doc = json.loads(listed.stdout)
    pin = d.gov.get_pin_at_head(0)
    assert doc.pop("epoch") == d.genesis.clock.get_epoch_at(pin.timestamp)  # the network's epoch at the head
    assert doc["head_block"] == pin.number  # nothing mined since: the node reads the same pin
    new_set = (*d.validators[:3], joiner)
    node = build_governance_source(d.gov.client, d.gov.address, new_set, 3, float(d.genesis.clock.genesis_time),
                                   float(EPOCH_SECONDS))
    assert json.loads(json.dumps(state_to_dict(node.get_state(pin)), sort_keys=True)) == doc
    assert [(p["id"], p["status"]) for p in doc["proposals"]] == [(pid, "approved")]


def test_invalid_governance_address_without_contract_is_an_error_not_a_trace(deployed: Deployed) -> None:
    d = deployed
    no_contract = replace(d, gov=GovernanceChain(d.gov.client, "0x" + "5e" * 20, d.gov.abi))
    out = clearingd(no_contract, "gov", "list")
    assert out.returncode == 1
    assert out.stderr.startswith("error: ") and "validatorsAt" in out.stderr
    assert "Traceback" not in out.stderr


def propose_and_approve_change(d: Deployed, change: ValidatorSetChange, activation: int) -> int:
    pid, _ = d.gov.propose(d.keys[0], ProposalKind.VALIDATOR_SET, encode_validator_set_change(change), 3, activation)
    for key in d.keys[:3]:
        d.gov.vote(key, pid, VoteChoice.YES)
    d.mine(4)
    return pid


def test_invalid_gov_execute_refuses_a_change_the_tally_refuses(deployed: Deployed) -> None:
    """Voting ends in epoch 0, so activation epoch 1 is too early for every node: the CLI does not let
    the contract's voting set move alone; --force still sends it (the contract does not know epochs)."""
    d = deployed
    pid = propose_and_approve_change(d, ValidatorSetChange((), (d.validators[3],), 3), activation=1)
    out = clearingd(d, "gov", "execute", "--id", str(pid), dev_key=2)
    assert out.returncode == 1
    assert out.stderr.startswith(f"refused: proposal {pid} is invalid for every node (activation epoch 1 ")
    assert d.gov.get_validators(d.gov.get_pin_at_head(0))[0] == 0
    forced = clearingd(d, "gov", "execute", "--id", str(pid), "--force", "--json", dev_key=2)
    assert forced.returncode == 0, forced.stderr
    assert d.gov.get_validators(d.gov.get_pin_at_head(0))[0] == 1


def test_gov_execute_applies_an_approved_change(deployed: Deployed) -> None:
    d = deployed
    pid = propose_and_approve_change(d, ValidatorSetChange((), (d.validators[3],), 3), activation=6)
    out = clearingd(d, "gov", "execute", "--id", str(pid), "--json", dev_key=2)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["proposal_id"] == pid
    assert d.gov.get_validators(d.gov.get_pin_at_head(0))[1] == d.validators[:3]
    again = clearingd(d, "gov", "execute", "--id", str(pid), dev_key=2)
    assert again.returncode == 1 and again.stderr.startswith("refused: AlreadyExecuted")


@pytest.mark.slow
def test_invalid_gov_execute_refuses_an_execution_that_comes_too_late(deployed: Deployed) -> None:
    """Voting ended in epoch 0, so activation epoch 2 was allowed; one epoch later an execution would
    put the activation too close (the nodes take an executed change only beyond its execution epoch +
    margin): the CLI refuses, --force sends it, and the tally then declares it invalid."""
    d = deployed
    pid = propose_and_approve_change(d, ValidatorSetChange((), (d.validators[3],), 3), activation=2)
    now = d.gov.client.get_block("latest").timestamp
    rpc_call(d.chain.rpc_url, "evm_setNextBlockTimestamp", [d.genesis.clock.genesis_time + EPOCH_SECONDS])
    d.mine(1)
    assert d.gov.client.get_block("latest").timestamp > now
    out = clearingd(d, "gov", "execute", "--id", str(pid), dev_key=2)
    assert out.returncode == 1
    assert out.stderr.startswith(f"refused: proposal {pid}: executed now (epoch 1) its activation epoch 2 would be "
                                 "refused by every node (earliest allowed 3)")
    assert d.gov.get_validators(d.gov.get_pin_at_head(0))[0] == 0
    forced = clearingd(d, "gov", "execute", "--id", str(pid), "--force", dev_key=2)
    assert forced.returncode == 0, forced.stderr
    shown = json.loads(clearingd(d, "gov", "show", "--id", str(pid), "--json").stdout)
    assert shown["status"] == "invalid" and shown["executed"]
    assert shown["reason"].startswith("activation epoch 2 not in the future: executed at block ")
