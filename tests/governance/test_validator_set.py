"""Validator-set changes on a real anvil chain: concurrent proposals (no member can block a change),
execution against the set current at execution, approval order, the execution window, the signing-set
schedule and the reshare the node derives from the contract at a pinned block."""

from __future__ import annotations

import pytest
from eth_account import Account

from bridges.governance_chain import (
    DEFAULT_MAX_VOTING_PERIOD_BLOCKS,
    VOTING_PERIOD_CAP_BLOCKS,
    GovernanceChain,
    GovernanceTxReverted,
    deploy_governance,
    read_governance_state,
)
from governance.lifecycle import ProposalStatus
from governance.proposals import ProposalKind, ValidatorSetChange, encode_validator_set_change
from governance.tally import GovernanceState, get_pending_reshare, get_validator_set
from node.consensus.margin_inputs import get_reshare_order, get_signing_set
from node.governance_source import build_governance_source
from tests.governance.conftest import EPOCH_SECONDS, Deployed
from tests.governance.solc_helper import compile_governance

YES = 1
PERIOD = 4
LONG = 10  # several proposals, each approved (one block per transaction) before the first one ends
VSET = ProposalKind.VALIDATOR_SET


def propose_change(d: Deployed, proposer: int, change: ValidatorSetChange, period: int, activation: int) -> int:
    pid, _ = d.gov.propose(d.keys[proposer], VSET, encode_validator_set_change(change), period, activation)
    return pid


def approve(d: Deployed, pid: int, voters: tuple[int, ...] = (0, 1, 2)) -> None:
    for i in voters:
        d.gov.vote(d.keys[i], pid, YES)


def derive_at_head(d: Deployed) -> GovernanceState:
    return read_governance_state(d.gov, d.gov.get_pin_at_head(), d.genesis)


def get_revert(call: object) -> GovernanceTxReverted:
    with pytest.raises(GovernanceTxReverted) as exc:
        call()  # type: ignore[operator]
    return exc.value


def test_one_validator_cannot_block_set_changes(deployed: Deployed) -> None:
    """Reproduction: a member opened a set change with the maximum voting period (then 1,000,000
    blocks), and while it was open every other set change was refused (ValidatorSetChangePending),
    its own removal included. Now validator 3 opens one with the maximum period of the deployment
    and the removal of validator 3 is still proposed, voted, executed, and reaches the node's schedule."""
    d = deployed
    outsider = Account.from_key(d.keys[4]).address.lower()
    max_period = d.gov.get_max_voting_period(d.gov.get_pin_at_head())
    assert max_period == DEFAULT_MAX_VOTING_PERIOD_BLOCKS
    blocking = propose_change(d, 3, ValidatorSetChange((outsider,), (), 4), max_period, 9)
    too_long = get_revert(lambda: propose_change(d, 3, ValidatorSetChange((outsider,), (), 4), max_period + 1, 9))
    assert (too_long.error, too_long.args_decoded) == ("InvalidVotingPeriod", (max_period + 1, max_period))

    removal = propose_change(d, 0, ValidatorSetChange((), (d.validators[3],), 3), PERIOD, 5)
    approve(d, removal)
    d.mine(PERIOD)
    receipt = d.gov.execute(d.keys[5], removal)  # permissionless
    pin = d.gov.get_pin_at_head()
    assert d.gov.get_validators(pin) == (1, d.validators[:3], 3)
    assert get_revert(lambda: propose_change(d, 3, ValidatorSetChange((), (), 3), PERIOD, 9)).error == "NotValidator"

    # the node's governance source at the pin (genesis read from the contract's set version 0)
    node = build_governance_source(d.gov.client, d.gov.address, d.validators, 3,
                                   float(d.genesis.clock.genesis_time), float(EPOCH_SECONDS))
    state = node.get_state(pin)
    outcome = state.get_proposal(removal)
    assert outcome is not None and outcome.status is ProposalStatus.APPROVED, outcome
    assert outcome.record.executed_block == int(receipt["blockNumber"], 16)
    assert outcome.new_set == d.validators[:3]
    assert state.get_proposal(blocking).status is ProposalStatus.PENDING  # type: ignore[union-attr]
    before, after = get_signing_set(state, 4), get_signing_set(state, 5)
    assert (len(before.members), before.keyset_id) == (4, 1)
    assert (len(after.members), after.threshold, after.keyset_id) == (3, 3, 2)
    order = get_reshare_order(state, 4)
    assert order is not None and (order.proposal_id, order.activation_epoch) == (removal, 5)
    assert "0x" + order.old.members[3].hex() == d.validators[3] and len(order.new.members) == 3
    assert get_reshare_order(state, 5) is None


def test_removal_executes_on_chain_and_schedules_a_reshare(deployed: Deployed) -> None:
    d = deployed
    pid = propose_change(d, 0, ValidatorSetChange((), (d.validators[3],), 3), PERIOD, 5)
    approve(d, pid)
    assert get_revert(lambda: d.gov.execute(d.keys[5], pid)).error == "VotingNotEnded"
    d.mine(PERIOD)
    d.gov.execute(d.keys[5], pid)
    assert d.gov.get_validators(d.gov.get_pin_at_head()) == (1, d.validators[:3], 3)
    assert get_revert(lambda: d.gov.execute(d.keys[5], pid)).error == "AlreadyExecuted"
    state = derive_at_head(d)
    assert state.proposals[0].status is ProposalStatus.APPROVED
    assert get_validator_set(state, 4).members == d.validators
    assert (get_validator_set(state, 5).members, get_validator_set(state, 5).keyset_id) == (d.validators[:3], 2)
    reshare = get_pending_reshare(state, 0)
    assert reshare is not None
    assert (reshare.old_set, reshare.new_set, reshare.new_threshold) == (d.validators, d.validators[:3], 3)
    assert (reshare.activation_epoch, reshare.old_keyset_id, reshare.next_keyset_id) == (5, 1, 2)
    assert get_pending_reshare(state, 5) is None


def test_approved_change_takes_effect_only_once_executed(deployed: Deployed) -> None:
    d = deployed
    pid = propose_change(d, 0, ValidatorSetChange((), (d.validators[3],), 3), PERIOD, 5)
    approve(d, pid)
    d.mine(PERIOD)
    state = derive_at_head(d)
    outcome = state.get_proposal(pid)
    assert outcome is not None and outcome.status is ProposalStatus.APPROVED
    assert outcome.reason.endswith("not executed: the validator set changes once executed")
    assert len(state.validator_sets) == 1 and state.reshares == ()


def test_changes_apply_to_the_set_current_at_execution(deployed: Deployed) -> None:
    """Three concurrent changes, each valid against the genesis set when proposed: the removal of
    validator 3 executes first; the addition then applies to the 3 remaining members; a second removal
    of validator 3 fails cleanly at execution and leaves the set as it is."""
    d = deployed
    newcomer = Account.from_key(d.keys[4]).address.lower()
    remove = propose_change(d, 0, ValidatorSetChange((), (d.validators[3],), 3), LONG, 5)
    approve(d, remove)
    add = propose_change(d, 1, ValidatorSetChange((newcomer,), (), 4), LONG, 6)
    approve(d, add)
    again = propose_change(d, 2, ValidatorSetChange((), (d.validators[3],), 3), LONG, 7)
    approve(d, again)
    d.mine(LONG)
    for pid in (remove, add):
        d.gov.execute(d.keys[5], pid)
    failed = get_revert(lambda: d.gov.execute(d.keys[5], again))
    assert (failed.error, failed.args_decoded) == ("InvalidRemoval", (d.validators[3],))
    pin = d.gov.get_pin_at_head()
    assert d.gov.get_validators(pin) == (2, (*d.validators[:3], newcomer), 4)
    state = read_governance_state(d.gov, pin, d.genesis)
    assert [v.members for v in state.validator_sets] == [d.validators, d.validators[:3], (*d.validators[:3], newcomer)]
    assert [(v.activation_epoch, v.threshold, v.keyset_id) for v in state.validator_sets] == [(0, 3, 1), (5, 3, 2),
                                                                                             (6, 4, 3)]
    assert [(r.proposal_id, r.old_keyset_id, r.next_keyset_id) for r in state.reshares] == [(remove, 1, 2),
                                                                                          (add, 2, 3)]
    assert get_pending_reshare(state, 4).proposal_id == remove  # type: ignore[union-attr]
    assert get_pending_reshare(state, 5).proposal_id == add  # type: ignore[union-attr]
    assert state.get_proposal(again).status is ProposalStatus.APPROVED  # type: ignore[union-attr]
    assert not state.get_proposal(again).record.executed  # type: ignore[union-attr]


def test_invalid_older_change_is_superseded_by_a_newer_executed_one(deployed: Deployed) -> None:
    """Approved changes apply in approval order (end block, id): once the later-ending one is executed,
    the older one can no longer be (ChangeSuperseded) and the tally reports it expired; activation
    epochs must increase along executions (ActivationNotIncreasing)."""
    d = deployed
    newcomer = Account.from_key(d.keys[4]).address.lower()
    older = propose_change(d, 0, ValidatorSetChange((), (d.validators[3],), 3), LONG, 5)
    approve(d, older)
    newer = propose_change(d, 1, ValidatorSetChange((newcomer,), (), 4), LONG, 6)
    approve(d, newer)
    early = propose_change(d, 2, ValidatorSetChange((), (d.validators[2],), 3), LONG, 6)
    approve(d, early)
    d.mine(LONG)
    d.gov.execute(d.keys[5], newer)
    superseded = get_revert(lambda: d.gov.execute(d.keys[5], older))
    assert (superseded.error, superseded.args_decoded) == ("ChangeSuperseded", (older, newer))
    not_later = get_revert(lambda: d.gov.execute(d.keys[5], early))
    assert (not_later.error, not_later.args_decoded) == ("ActivationNotIncreasing", (6, 6))
    state = derive_at_head(d)
    outcome = state.get_proposal(older)
    assert outcome is not None and outcome.status is ProposalStatus.EXPIRED
    assert outcome.reason == f"superseded: change {newer}, approved after it, was executed first"
    assert [v.proposal_id for v in state.validator_sets] == [0, newer]


def test_invalid_execution_after_the_window_and_voting_period_bounds(deployed: Deployed) -> None:
    d = deployed
    abi, bytecode = compile_governance()
    for bad in (0, VOTING_PERIOD_CAP_BLOCKS + 1):
        refused = get_revert(lambda b=bad: deploy_governance(d.gov.client, d.keys[0], abi, bytecode, d.validators,
                                                             3, b))
        assert (refused.error, refused.args_decoded) == ("InvalidVotingPeriod", (bad, VOTING_PERIOD_CAP_BLOCKS))
    window = 6
    gov = GovernanceChain(d.gov.client, deploy_governance(d.gov.client, d.keys[0], abi, bytecode, d.validators, 3,
                                                          window), abi)
    payload = encode_validator_set_change(ValidatorSetChange((), (d.validators[3],), 3))
    long = get_revert(lambda: gov.propose(d.keys[0], VSET, payload, window + 1, 5))
    assert (long.error, long.args_decoded) == ("InvalidVotingPeriod", (window + 1, window))
    pid, receipt = gov.propose(d.keys[0], VSET, payload, window, 5)
    for key in d.keys[:3]:
        gov.vote(key, pid, YES)
    end = int(receipt["blockNumber"], 16) + window
    d.mine(end + window + 1 - gov.client.get_head_number())  # the head is past the window
    closed = get_revert(lambda: gov.execute(d.keys[5], pid))
    assert (closed.error, closed.args_decoded) == ("ExecutionWindowClosed", (pid, end + window))


def test_invalid_change_is_reverted_on_chain(deployed: Deployed) -> None:
    d = deployed
    outsider = "0x" + "ab" * 20
    cases = [
        (ValidatorSetChange((), (outsider,), 3), "InvalidRemoval"),
        (ValidatorSetChange((d.validators[1],), (), 3), "InvalidAddition"),
        (ValidatorSetChange((outsider,), (), 3), "InvalidThreshold"),  # n = 5 needs t >= 4
    ]
    for change, error in cases:
        assert get_revert(lambda c=change: propose_change(d, 0, c, PERIOD, 5)).error == error


def test_failed_change_does_not_block_the_next_one(deployed: Deployed) -> None:
    d = deployed
    change = ValidatorSetChange((), (d.validators[3],), 3)
    propose_change(d, 0, change, PERIOD, 5)
    d.mine(PERIOD + 1)  # no votes: expires
    assert propose_change(d, 1, change, PERIOD, 6) == 2
    assert get_revert(lambda: d.gov.execute(d.keys[0], 1)).error == "NotApproved"


def test_votes_on_a_proposal_made_before_a_removal_use_the_old_set(deployed: Deployed) -> None:
    d = deployed
    vs_id = propose_change(d, 0, ValidatorSetChange((), (d.validators[3],), 3), PERIOD, 5)
    params_id, _ = d.gov.propose(d.keys[0], ProposalKind.PARAMETER_SET, b"\x01", 50, 9)
    approve(d, vs_id)
    d.mine(PERIOD)
    d.gov.execute(d.keys[0], vs_id)
    d.gov.vote(d.keys[3], params_id, YES)  # member of the set the proposal was created under
    state = derive_at_head(d)
    assert state.refused_votes == ()
    assert state.get_proposal(params_id).count.yes == 1  # type: ignore[union-attr]
