"""Validator-set changes: on-chain execution, serialisation, the signing-set schedule and the reshare
the node must run; plus the pure change rules."""

from __future__ import annotations

import pytest

from bridges.governance_chain import GovernanceTxReverted
from governance.errors import InvalidValidatorSetChange
from governance.lifecycle import ProposalStatus
from governance.proposals import (
    ProposalKind,
    ProposalRecord,
    ValidatorSetChange,
    compute_new_set,
    decode_validator_set_change,
    encode_validator_set_change,
)
from governance.tally import derive_governance_state, get_pending_reshare, get_validator_set
from tests.governance.conftest import Deployed
from tests.governance.helpers import GENESIS, VALIDATORS, make_votes

YES = 1
PERIOD = 4


def test_removal_executes_on_chain_and_schedules_a_reshare(deployed: Deployed) -> None:
    d = deployed
    change = ValidatorSetChange(add=(), remove=(d.validators[3],), threshold=3)
    pid, _ = d.gov.propose(d.keys[0], ProposalKind.VALIDATOR_SET, encode_validator_set_change(change), PERIOD, 5)
    with pytest.raises(GovernanceTxReverted) as pending:
        d.gov.propose(d.keys[1], ProposalKind.VALIDATOR_SET, encode_validator_set_change(change), PERIOD, 6)
    assert pending.value.error == "ValidatorSetChangePending"
    for key in d.keys[:3]:
        d.gov.vote(key, pid, YES)
    with pytest.raises(GovernanceTxReverted) as early:
        d.gov.execute(d.keys[5], pid)
    assert early.value.error == "VotingNotEnded"
    d.mine(PERIOD)
    d.gov.execute(d.keys[5], pid)  # permissionless
    pin = d.gov.get_pin_at_head()
    assert d.gov.get_validators(pin) == (1, d.validators[:3], 3)
    with pytest.raises(GovernanceTxReverted) as removed:
        d.gov.propose(d.keys[3], ProposalKind.PARAMETER_SET, b"\x01", PERIOD, 9)
    assert removed.value.error == "NotValidator"
    snap = d.gov.read_snapshot(d.gov.get_pin_at_head())
    state = derive_governance_state(d.genesis, snap.proposals, snap.votes, snap.pin.number)
    assert state.proposals[0].status is ProposalStatus.APPROVED
    assert get_validator_set(state, 4).members == d.validators
    assert get_validator_set(state, 5).members == d.validators[:3]
    assert get_validator_set(state, 5).keyset_id == 2
    reshare = get_pending_reshare(state, 0)
    assert reshare is not None
    assert (reshare.old_set, reshare.new_set, reshare.new_threshold) == (d.validators, d.validators[:3], 3)
    assert (reshare.activation_epoch, reshare.old_keyset_id, reshare.next_keyset_id) == (5, 1, 2)
    assert get_pending_reshare(state, 5) is None


def test_invalid_change_is_reverted_on_chain(deployed: Deployed) -> None:
    d = deployed
    outsider = "0x" + "ab" * 20
    cases = [
        (ValidatorSetChange((), (outsider,), 3), "InvalidRemoval"),
        (ValidatorSetChange((d.validators[1],), (), 3), "InvalidAddition"),
        (ValidatorSetChange((outsider,), (), 3), "InvalidThreshold"),  # n = 5 needs t >= 4
    ]
    for change, error in cases:
        with pytest.raises(GovernanceTxReverted) as exc:
            d.gov.propose(d.keys[0], ProposalKind.VALIDATOR_SET, encode_validator_set_change(change), PERIOD, 5)
        assert exc.value.error == error


def test_failed_change_does_not_block_the_next_one(deployed: Deployed) -> None:
    d = deployed
    payload = encode_validator_set_change(ValidatorSetChange((), (d.validators[3],), 3))
    d.gov.propose(d.keys[0], ProposalKind.VALIDATOR_SET, payload, PERIOD, 5)
    d.mine(PERIOD + 1)  # no votes: expires
    pid2, _ = d.gov.propose(d.keys[1], ProposalKind.VALIDATOR_SET, payload, PERIOD, 6)
    assert pid2 == 2
    with pytest.raises(GovernanceTxReverted) as exc:
        d.gov.execute(d.keys[0], 1)
    assert exc.value.error == "NotApproved"


def test_votes_on_a_proposal_made_before_a_removal_use_the_old_set(deployed: Deployed) -> None:
    d = deployed
    change = encode_validator_set_change(ValidatorSetChange((), (d.validators[3],), 3))
    vs_id, _ = d.gov.propose(d.keys[0], ProposalKind.VALIDATOR_SET, change, PERIOD, 5)
    params_id, _ = d.gov.propose(d.keys[0], ProposalKind.PARAMETER_SET, b"\x01", 50, 9)
    for key in d.keys[:3]:
        d.gov.vote(key, vs_id, YES)
    d.mine(PERIOD)
    d.gov.execute(d.keys[0], vs_id)
    d.gov.vote(d.keys[3], params_id, YES)  # member of the set the proposal was created under
    snap = d.gov.read_snapshot(d.gov.get_pin_at_head())
    state = derive_governance_state(d.genesis, snap.proposals, snap.votes, snap.pin.number)
    assert state.refused_votes == ()
    assert state.get_proposal(params_id).count.yes == 1  # type: ignore[union-attr]


def test_change_payload_roundtrip_and_strictness() -> None:
    change = ValidatorSetChange(("0x" + "ab" * 20,), (VALIDATORS[0],), 4)
    payload = encode_validator_set_change(change)
    assert decode_validator_set_change(payload) == change
    with pytest.raises(InvalidValidatorSetChange, match="payload"):
        decode_validator_set_change(payload + b"\x00" * 32)
    with pytest.raises(InvalidValidatorSetChange, match="payload"):
        decode_validator_set_change(b"\x01\x02")


def test_invalid_change_rules_match_the_contract() -> None:
    with pytest.raises(InvalidValidatorSetChange, match=r"remove\[0\]"):
        compute_new_set(VALIDATORS, ValidatorSetChange((), ("0x" + "ab" * 20,), 3))
    with pytest.raises(InvalidValidatorSetChange, match=r"add\[0\]"):
        compute_new_set(VALIDATORS, ValidatorSetChange((VALIDATORS[0],), (), 3))
    with pytest.raises(InvalidValidatorSetChange, match="threshold"):
        compute_new_set(VALIDATORS, ValidatorSetChange((), (VALIDATORS[3],), 2))
    assert compute_new_set(VALIDATORS, ValidatorSetChange(("0x" + "ab" * 20,), (VALIDATORS[0],), 3)) == (
        *VALIDATORS[1:], "0x" + "ab" * 20)


def test_invalid_change_payload_is_refused_by_the_tally() -> None:
    record = ProposalRecord(1, ProposalKind.VALIDATOR_SET, VALIDATORS[0],
                            encode_validator_set_change(ValidatorSetChange((), (VALIDATORS[3],), 2)),
                            2, 10, 5, 0, 4, end_timestamp=1_025)
    state = derive_governance_state(GENESIS, [record], make_votes(1, [YES] * 4), 11)
    assert state.proposals[0].status is ProposalStatus.INVALID
    assert state.proposals[0].reason.startswith("validator-set change refused: new_set.threshold: 2 not in")
    assert state.reshares == () and len(state.validator_sets) == 1


def test_change_after_a_refused_but_executed_change_reshares_from_the_signing_set() -> None:
    drop_d = encode_validator_set_change(ValidatorSetChange((), (VALIDATORS[3],), 3))
    # 1: approved on chain and executed, but its activation epoch (2) is too early -> refused here
    first = ProposalRecord(1, ProposalKind.VALIDATOR_SET, VALIDATORS[0], drop_d, 2, 10, 2, 0, 4,
                           executed=True, resulting_set_version=1, end_timestamp=1_025)
    newcomer = "0x" + "ab" * 20
    add = encode_validator_set_change(ValidatorSetChange((newcomer,), (), 3))
    second = ProposalRecord(2, ProposalKind.VALIDATOR_SET, VALIDATORS[0], add, 12, 20, 9, 1, 3,
                            end_timestamp=1_035)
    votes = make_votes(1, [YES] * 3) + make_votes(2, [YES] * 3, block=15)
    state = derive_governance_state(GENESIS, [first, second], votes, 21)
    assert [o.status for o in state.proposals] == [ProposalStatus.INVALID, ProposalStatus.APPROVED]
    assert get_validator_set(state, 8).members == VALIDATORS
    assert get_validator_set(state, 9).members == (*VALIDATORS[:3], newcomer)
    (reshare,) = state.reshares
    assert reshare.old_set == VALIDATORS and reshare.get_removed() == (VALIDATORS[3],)
