"""Pure tally: lifecycle outcomes, refusals with reasons, the parameter schedule, determinism."""

from __future__ import annotations

import pytest

from governance.encoding import compute_state_hash, encode_governance_state
from governance.errors import IllegalTransition, InvalidGovernanceInput
from governance.lifecycle import TRANSITIONS, Lifecycle, LifecycleEvent, ProposalStatus, process_event
from governance.params import compute_params_hash
from governance.tally import derive_governance_state
from risk.params import RRA1, encode_params
from tests.governance.helpers import (
    GENESIS,
    INVALID_MM_PAYLOAD,
    OUTSIDER,
    VALIDATORS,
    WIDE_BTC,
    make_param_proposal,
    make_votes,
    patch_fixed,
)

YES, NO, ABSTAIN = 1, 2, 3


def test_approved_parameter_set_activates_exactly_at_its_epoch() -> None:
    state = derive_governance_state(GENESIS, [make_param_proposal()], make_votes(1, [YES, YES, YES]), 11)
    outcome = state.proposals[0]
    assert outcome.status is ProposalStatus.APPROVED, outcome.reason
    assert outcome.params == WIDE_BTC
    assert state.schedule.get_active_params_hash(4) == compute_params_hash(RRA1)
    assert state.schedule.get_active_params_hash(5) == compute_params_hash(WIDE_BTC)
    assert state.schedule.get_active_params(1000) == WIDE_BTC


def test_proposal_stays_pending_while_voting_is_open() -> None:
    state = derive_governance_state(GENESIS, [make_param_proposal(end_timestamp=None)],
                                    make_votes(1, [YES, YES, YES]), 10)
    assert state.proposals[0].status is ProposalStatus.PENDING
    assert len(state.schedule.versions) == 1


def test_invalid_quorum_missed_expires_without_effect() -> None:
    state = derive_governance_state(GENESIS, [make_param_proposal()], make_votes(1, [YES, YES]), 11)
    outcome = state.proposals[0]
    assert outcome.status is ProposalStatus.EXPIRED
    assert outcome.reason == "quorum missed: 2 votes cast < 3"
    assert state.schedule.get_active_params(10**6) == RRA1


def test_quorum_without_approval_is_rejected() -> None:
    state = derive_governance_state(GENESIS, [make_param_proposal()], make_votes(1, [YES, YES, NO, ABSTAIN]), 11)
    assert state.proposals[0].status is ProposalStatus.REJECTED
    assert state.proposals[0].reason == "approval missed: 2 yes < 3"


def test_abstentions_count_towards_quorum_only() -> None:
    state = derive_governance_state(GENESIS, [make_param_proposal()], make_votes(1, [YES, YES, YES, ABSTAIN]), 11)
    count = state.proposals[0].count
    assert (count.yes, count.abstain, count.cast, count.quorum) == (3, 1, 4, 3)
    assert state.proposals[0].status is ProposalStatus.APPROVED


def test_invalid_double_vote_is_refused_and_counted_once() -> None:
    votes = [*make_votes(1, [YES, YES]), *make_votes(1, [YES], voters=(VALIDATORS[0],), block=6)]
    state = derive_governance_state(GENESIS, [make_param_proposal()], votes, 11)
    assert state.proposals[0].status is ProposalStatus.EXPIRED
    assert [(v.voter, v.reason) for v in state.refused_votes] == [(VALIDATORS[0], "double vote")]


def test_invalid_non_validator_vote_is_refused() -> None:
    votes = [*make_votes(1, [YES, YES]), *make_votes(1, [YES], voters=(OUTSIDER,))]
    state = derive_governance_state(GENESIS, [make_param_proposal()], votes, 11)
    assert state.proposals[0].status is ProposalStatus.EXPIRED
    assert [(v.voter, v.reason) for v in state.refused_votes] == [(OUTSIDER, "not a validator of set version 0")]


def test_invalid_late_vote_is_refused() -> None:
    votes = [*make_votes(1, [YES, YES]), *make_votes(1, [YES], voters=(VALIDATORS[2],), block=11)]
    state = derive_governance_state(GENESIS, [make_param_proposal()], votes, 12)
    assert state.proposals[0].status is ProposalStatus.EXPIRED
    assert "outside voting period 2..10" in state.refused_votes[0].reason


def test_invalid_parameter_set_is_refused_with_the_field_and_never_activated() -> None:
    state = derive_governance_state(GENESIS, [make_param_proposal(payload=INVALID_MM_PAYLOAD)],
                                    make_votes(1, [YES, YES, YES, YES]), 11)
    outcome = state.proposals[0]
    assert outcome.status is ProposalStatus.INVALID
    assert outcome.reason.startswith("parameter set refused: maintenance_factor: ")
    assert outcome.params is None
    assert state.schedule.get_active_params(10**6) == RRA1


def test_invalid_extreme_scan_range_is_refused() -> None:
    payload = patch_fixed(encode_params(WIDE_BTC), "BTC", 0.25, 0.5)
    state = derive_governance_state(GENESIS, [make_param_proposal(payload=payload)],
                                    make_votes(1, [YES, YES, YES, YES]), 11)
    assert state.proposals[0].status is ProposalStatus.INVALID
    assert "price_scan_range.BTC" in state.proposals[0].reason


def test_invalid_undecodable_parameter_set() -> None:
    state = derive_governance_state(GENESIS, [make_param_proposal(payload=b"not a parameter set")],
                                    make_votes(1, [YES, YES, YES]), 11)
    assert state.proposals[0].status is ProposalStatus.INVALID
    assert state.proposals[0].reason.startswith("parameter set refused: ")


def test_invalid_activation_epoch_not_in_the_future() -> None:
    # voting ended in epoch 2; margin 1 -> earliest activation is epoch 4
    state = derive_governance_state(GENESIS, [make_param_proposal(activation_epoch=3)],
                                    make_votes(1, [YES, YES, YES]), 11)
    outcome = state.proposals[0]
    assert outcome.status is ProposalStatus.INVALID
    assert outcome.reason == ("activation epoch 3 not in the future: voting ended in epoch 2, "
                              "earliest allowed 4")
    assert len(state.schedule.versions) == 1


def test_invalid_activation_not_after_the_latest_scheduled_version() -> None:
    first = make_param_proposal(1, activation_epoch=8)
    second = make_param_proposal(2, end_block=12, activation_epoch=6, end_timestamp=1_027)
    votes = make_votes(1, [YES] * 3) + make_votes(2, [YES] * 3)
    state = derive_governance_state(GENESIS, [second, first], votes, 13)
    assert state.proposals[0].status is ProposalStatus.APPROVED
    assert state.proposals[1].status is ProposalStatus.INVALID
    assert "not after the latest scheduled version (8)" in state.proposals[1].reason
    assert [v.activation_epoch for v in state.schedule.versions] == [0, 8]


def test_invalid_missing_end_timestamp_after_voting_is_an_input_error() -> None:
    with pytest.raises(InvalidGovernanceInput, match="end_timestamp"):
        derive_governance_state(GENESIS, [make_param_proposal(end_timestamp=None)], make_votes(1, [YES] * 3), 11)


def test_invalid_lifecycle_transition_is_refused() -> None:
    expired = process_event(Lifecycle(), LifecycleEvent.QUORUM_MISSED, "q")
    with pytest.raises(IllegalTransition):
        process_event(expired, LifecycleEvent.APPROVAL_REACHED, "late")
    terminal = {ProposalStatus.EXPIRED, ProposalStatus.REJECTED, ProposalStatus.INVALID}
    assert not [k for k in TRANSITIONS if k[0] in terminal]


def test_encoding_is_deterministic_and_sensitive() -> None:
    args = (GENESIS, [make_param_proposal()], make_votes(1, [YES, YES, YES]), 11)
    a, b = derive_governance_state(*args), derive_governance_state(*args)
    assert encode_governance_state(a) == encode_governance_state(b)
    assert compute_state_hash(a) == compute_state_hash(b)
    c = derive_governance_state(GENESIS, [make_param_proposal()], make_votes(1, [YES, YES]), 11)
    assert compute_state_hash(c) != compute_state_hash(a)
