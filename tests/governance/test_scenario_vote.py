"""A governance vote replaces the scenario list (RRA-1 plus extended tail moves) on a real anvil chain: it
activates at its epoch for every reader of the chain (two node schedule sources and a separate process),
changes the params hash the signed state commits to and the margins of the demo book; invalid lists (no
scenarios, a NaN shock, two linear-skew scenarios) are refused naming the field, by the proposer's CLI or
by every node's tally."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

from bridges.book_merge import AccountIndex, merge_books
from bridges.governance_chain import read_governance_state
from governance.lifecycle import ProposalStatus
from governance.params import compute_params_hash
from node.governance_source import GenesisSpec, GovernanceScheduleSource
from node.pipeline import compute_epoch_state
from node.state import compute_inputs_digest, compute_state_digest
from risk.param_codec import enc_fixed, enc_list, enc_map, enc_string
from risk.params import RRA1, Scenario, encode_params, params_with_overrides
from tests.governance.conftest import EPOCH_SECONDS, Deployed
from tests.state.test_state import GENESIS, A, build_books  # account A holds one long BTC perp

REPO = Path(__file__).resolve().parents[2]
PARAMS, YES, PERIOD, ACTIVATION = 1, 1, 5, 3
TAILS = [{"name": "tail -9", "shock": -9.0, "vol": "up", "weight": 0.5},
         {"name": "tail +9", "shock": 9.0, "vol": "up", "weight": 0.5},
         {"name": "tail +18", "shock": 18.0, "vol": "none", "weight": 0.25}]
WITH_TAILS = params_with_overrides(RRA1, {"scenarios": [*(dataclasses.asdict(s) for s in RRA1.scenarios), *TAILS]})

CHILD = """
import json, sys
sys.path.insert(0, {root!r})
from bridges.chain import ChainClient, ChainConfig
from bridges.governance_chain import GovernanceChain, load_governance_abi, read_governance_state
from bridges.chain import Pin
from governance.proposals import EpochClock, GovernanceGenesis
client = ChainClient(ChainConfig(chain_id={chain_id}, rpc_url={rpc!r}))
gov = GovernanceChain(client, {address!r}, load_governance_abi())
pin = Pin({chain_id}, {number}, bytes.fromhex({hash!r}), {timestamp})
genesis = GovernanceGenesis(tuple({validators!r}), 3, EpochClock({genesis_time}, {epoch_seconds}))
state = read_governance_state(gov, pin, genesis)
print(json.dumps([state.schedule.get_active_params_hash(e).hex() for e in range(6)]))
"""


def vote_through(d: Deployed, payload: bytes) -> int:
    pid, _ = d.gov.propose(d.keys[0], PARAMS, payload, PERIOD, ACTIVATION)
    for key in d.keys[:3]:
        d.gov.vote(key, pid, YES)
    d.mine(PERIOD + 1)
    return pid


def hashes_in_a_separate_process(d: Deployed, pin) -> list[str]:  # type: ignore[no-untyped-def]
    script = CHILD.format(root=str(REPO), chain_id=d.chain.chain_id, rpc=d.chain.rpc_url, address=d.gov.address,
                          number=pin.number, hash=bytes(pin.hash).hex(), timestamp=pin.timestamp,
                          validators=list(d.validators), genesis_time=d.genesis.clock.genesis_time,
                          epoch_seconds=d.genesis.clock.epoch_seconds)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(run.stdout)


def test_vote_replaces_the_scenario_list_and_activates_at_its_epoch(deployed: Deployed) -> None:
    d = deployed
    assert len(WITH_TAILS.scenarios) == 26 and compute_params_hash(WITH_TAILS) != compute_params_hash(RRA1)
    pid = vote_through(d, encode_params(WITH_TAILS))
    pin = d.gov.get_pin_at_head()
    readers = [GovernanceScheduleSource(d.gov, GenesisSpec(d.genesis.clock.genesis_time, EPOCH_SECONDS)),
               GovernanceScheduleSource(d.gov, d.genesis)]
    states = [r.get_state(pin) for r in readers]
    assert all(s.get_proposal(pid).status is ProposalStatus.APPROVED for s in states)
    per_node = [[s.schedule.get_active_params_hash(e).hex() for e in range(6)] for s in states]
    per_node.append(hashes_in_a_separate_process(d, pin))
    expected = [compute_params_hash(RRA1).hex()] * ACTIVATION + [compute_params_hash(WITH_TAILS).hex()] * 3
    assert per_node == [expected] * 3  # every node: the same schedule, the new list from its epoch on
    schedule = states[0].schedule
    assert schedule.get_active_params(ACTIVATION - 1) == RRA1 and schedule.get_active_params(ACTIVATION) == WITH_TAILS
    inputs = merge_books(build_books(), AccountIndex(), 31337, GENESIS + 3600)
    margin = {}
    for epoch in (ACTIVATION - 1, ACTIVATION):
        version = schedule.get_active_version(epoch)
        state = compute_epoch_state(inputs, version.params, network_id=7, keyset_id=1, epoch=epoch,
                                    params_hash=version.params_hash)
        assert state.digest == compute_state_digest(7, 1, epoch, compute_inputs_digest(state.pins),
                                                    version.params_hash, state.root, state.leaf_count)
        leaf = state.leaves[state.get_index(A)]
        margin[epoch] = (leaf.im, leaf.mm, state.details[state.get_index(A)].worst_scenario)
    micro = 1_000_000
    assert margin[ACTIVATION - 1] == (15_000 * micro, 12_000 * micro, 0)  # RRA-1: -3 steps (15%) vol down
    assert margin[ACTIVATION] == (22_500 * micro, 18_000 * micro, 23)  # "tail -9": 45% at weight 0.5


def scenarios_bytes(scenarios: tuple[Scenario, ...]) -> bytes:
    """The canonical encoding of a scenario list (risk.params.encode_params's format)."""
    return enc_list([enc_map([("name", enc_string(s.name)), ("shock", enc_fixed("shock", s.shock)),
                              ("vol", enc_string(s.vol)), ("weight", enc_fixed("weight", s.weight))])
                     for s in scenarios])


def test_invalid_scenario_lists_are_refused_naming_the_field(deployed: Deployed, tmp_path: Path) -> None:
    d = deployed
    skews = params_with_overrides(RRA1, {"scenarios": [*(dataclasses.asdict(s) for s in RRA1.scenarios),
                                                       {"name": "skew A", "shock": 0, "vol": "linear"},
                                                       {"name": "skew B", "shock": 0, "vol": "abs"}]})
    valid = encode_params(skews)
    old = bytes([3]) + (3).to_bytes(4, "big") + b"abs"
    assert valid.count(old) == 1
    two_linear = valid.replace(old, bytes([3]) + (6).to_bytes(4, "big") + b"linear")  # hand-written bytes
    no_scenarios = valid.replace(scenarios_bytes(skews.scenarios), enc_list([]))
    assert two_linear != valid and no_scenarios != valid
    reasons = {}
    for name, payload in (("two_linear", two_linear), ("no_scenarios", no_scenarios)):
        pid = vote_through(d, payload)  # the contract stores any bytes; every node's tally refuses them
        outcome = read_governance_state(d.gov, d.gov.get_pin_at_head(), d.genesis).get_proposal(pid)
        assert outcome.status is ProposalStatus.INVALID and outcome.params is None
        reasons[name] = outcome.reason
    assert reasons["two_linear"].startswith("parameter set refused: scenarios[24].vol: a second linear-skew")
    assert reasons["no_scenarios"] == "parameter set refused: scenarios: no scenarios"
    state = read_governance_state(d.gov, d.gov.get_pin_at_head(), d.genesis)
    assert state.schedule.get_active_params(10**6) == RRA1
    nan_file = tmp_path / "nan.json"
    nan_file.write_text(json.dumps({"scenarios": [{"name": "crash", "shock": math.nan, "vol": "up"}]}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARING_")}
    refused = subprocess.run([sys.executable, "-m", "node.cli.main", "gov", "propose", "--kind", "params",
                              "--params-file", str(nan_file), "--voting-period-blocks", "5", "--activation-epoch",
                              "3"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.strip() == "error: scenarios[0].shock: not finite"
