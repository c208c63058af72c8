"""Validator-set changes in the pure tally: payload rules (as the contract's), the signing sets built
from EXECUTED changes in execution order, the activation rule against the execution epoch, and
records that break the contract's rules refused as input errors."""

from __future__ import annotations

import pytest

from governance.errors import InvalidGovernanceInput, InvalidValidatorSetChange
from governance.lifecycle import ProposalStatus
from governance.proposals import (
    ValidatorSetChange,
    compute_new_set,
    decode_validator_set_change,
    encode_validator_set_change,
)
from governance.tally import derive_governance_state, get_pending_reshare, get_validator_set
from tests.governance.helpers import GENESIS, VALIDATORS, make_change_proposal, make_votes

YES = 1
NEWCOMER = "0x" + "ab" * 20
DROP_D = ValidatorSetChange((), (VALIDATORS[3],), 3)


def test_change_payload_roundtrip_and_strictness() -> None:
    change = ValidatorSetChange((NEWCOMER,), (VALIDATORS[0],), 4)
    payload = encode_validator_set_change(change)
    assert decode_validator_set_change(payload) == change
    with pytest.raises(InvalidValidatorSetChange, match="payload"):
        decode_validator_set_change(payload + b"\x00" * 32)
    with pytest.raises(InvalidValidatorSetChange, match="payload"):
        decode_validator_set_change(b"\x01\x02")


def test_invalid_change_rules_match_the_contract() -> None:
    with pytest.raises(InvalidValidatorSetChange, match=r"remove\[0\]"):
        compute_new_set(VALIDATORS, ValidatorSetChange((), (NEWCOMER,), 3))
    with pytest.raises(InvalidValidatorSetChange, match=r"add\[0\]"):
        compute_new_set(VALIDATORS, ValidatorSetChange((VALIDATORS[0],), (), 3))
    with pytest.raises(InvalidValidatorSetChange, match="threshold"):
        compute_new_set(VALIDATORS, ValidatorSetChange((), (VALIDATORS[3],), 2))
    assert compute_new_set(VALIDATORS, ValidatorSetChange((NEWCOMER,), (VALIDATORS[0],), 3)) == (
        *VALIDATORS[1:], NEWCOMER)


def test_invalid_change_payload_is_refused_by_the_tally() -> None:
    record = make_change_proposal(1, ValidatorSetChange((), (VALIDATORS[3],), 2), activation_epoch=5)
    state = derive_governance_state(GENESIS, [record], make_votes(1, [YES] * 4), 11)
    assert state.proposals[0].status is ProposalStatus.INVALID
    assert state.proposals[0].reason.startswith("validator-set change refused: new_set.threshold: 2 not in")
    assert state.reshares == () and len(state.validator_sets) == 1


def test_executed_change_is_scheduled_with_the_contracts_resulting_set() -> None:
    record = make_change_proposal(1, DROP_D, activation_epoch=5, resulting_set_version=1, executed_block=11)
    state = derive_governance_state(GENESIS, [record], make_votes(1, [YES] * 3), 12)
    outcome = state.proposals[0]
    assert outcome.status is ProposalStatus.APPROVED
    assert outcome.reason == "approved: 3 yes of 4; executed at block 11 (set version 1)"
    assert outcome.new_set == VALIDATORS[:3]
    assert get_validator_set(state, 5).members == VALIDATORS[:3]
    assert get_pending_reshare(state, 4).proposal_id == 1  # type: ignore[union-attr]


def test_invalid_change_executed_too_late_is_refused() -> None:
    """Voting ended in epoch 2 (activation 5 allowed then) but the change was executed at block 20, in
    epoch 4: nodes pinned before the execution would have signed epoch 5 under the old set, so every
    node refuses the activation; the contract's voting set moved all the same."""
    record = make_change_proposal(1, DROP_D, activation_epoch=5, resulting_set_version=1, executed_block=20)
    state = derive_governance_state(GENESIS, [record], make_votes(1, [YES] * 3), 21)
    outcome = state.proposals[0]
    assert outcome.status is ProposalStatus.INVALID
    assert outcome.reason == "activation epoch 5 not in the future: executed at block 20 in epoch 4, earliest allowed 6"
    assert outcome.new_set == VALIDATORS[:3]  # the contract's set version 1
    assert len(state.validator_sets) == 1 and state.reshares == ()


def test_change_after_a_refused_but_executed_change_reshares_from_the_signing_set() -> None:
    # 1: approved on chain and executed, but its activation epoch (2) is too early -> refused here
    first = make_change_proposal(1, DROP_D, activation_epoch=2, resulting_set_version=1, executed_block=11)
    # 2: proposed under the contract's set version 1 (3 members), applies to it at execution
    second = make_change_proposal(2, ValidatorSetChange((NEWCOMER,), (), 3), created_block=12, end_block=20,
                                  activation_epoch=9, set_version=1, set_size=3, resulting_set_version=2,
                                  executed_block=21)
    votes = make_votes(1, [YES] * 3) + make_votes(2, [YES] * 3, block=15)
    state = derive_governance_state(GENESIS, [first, second], votes, 22)
    assert [o.status for o in state.proposals] == [ProposalStatus.INVALID, ProposalStatus.APPROVED]
    assert get_validator_set(state, 8).members == VALIDATORS
    assert get_validator_set(state, 9).members == (*VALIDATORS[:3], NEWCOMER)
    (reshare,) = state.reshares
    assert reshare.old_set == VALIDATORS and reshare.get_removed() == (VALIDATORS[3],)


def test_invalid_executed_records_breaking_the_contracts_order_are_input_errors() -> None:
    """Executed changes must follow approval order (end block, id) and increase their activation epoch,
    as the contract enforces; records that do not are not from this contract: an error naming the field."""
    first = make_change_proposal(1, DROP_D, end_block=10, activation_epoch=6, resulting_set_version=2,
                                 executed_block=13)
    second = make_change_proposal(2, ValidatorSetChange((NEWCOMER,), (), 4), end_block=11, activation_epoch=7,
                                  resulting_set_version=1, executed_block=12)
    votes = make_votes(1, [YES] * 3) + make_votes(2, [YES] * 3)
    with pytest.raises(InvalidGovernanceInput, match=r"proposals\[1\]\.end_block: executed after change 2"):
        derive_governance_state(GENESIS, [first, second], votes, 14)
    second = make_change_proposal(2, ValidatorSetChange((NEWCOMER,), (), 3), end_block=11, activation_epoch=6,
                                  set_version=0, resulting_set_version=2, executed_block=13)
    first = make_change_proposal(1, DROP_D, end_block=10, activation_epoch=6, resulting_set_version=1,
                                 executed_block=12)
    with pytest.raises(InvalidGovernanceInput, match=r"proposals\[2\]\.activation_epoch"):
        derive_governance_state(GENESIS, [first, second], votes, 14)
    early = make_change_proposal(1, DROP_D, end_block=10, resulting_set_version=1, executed_block=10)
    with pytest.raises(InvalidGovernanceInput, match=r"proposals\[1\]\.executed_block"):
        derive_governance_state(GENESIS, [early], votes[:3], 14)
    with pytest.raises(InvalidGovernanceInput, match=r"proposals\[1\]\.executed_block: after the head block"):
        derive_governance_state(GENESIS, [make_change_proposal(1, DROP_D, resulting_set_version=1,
                                                               executed_block=15)], votes[:3], 14)
