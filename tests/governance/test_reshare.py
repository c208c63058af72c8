"""An approved and executed validator-set change drives the crypto module's resharing: the group public key stays,
the new set signs, and the removed validator's partials are refused."""

from __future__ import annotations

from governance.lifecycle import ProposalStatus
from governance.proposals import ValidatorSetChange
from governance.tally import derive_governance_state, get_pending_reshare, get_validator_set
from node.crypto import threshold
from node.crypto.dkg_bus import run_dkg_in_process
from node.crypto.reshare import get_new_holders, run_reshare_in_process
from tests.governance.helpers import GENESIS, VALIDATORS, make_change_proposal, make_votes

MSG = b"margin state after the validator-set change"
NEWCOMER = "0x" + "ab" * 20


def test_approved_change_reshares_keeping_the_group_key() -> None:
    change = ValidatorSetChange(add=(NEWCOMER,), remove=(VALIDATORS[1],), threshold=3)
    record = make_change_proposal(1, change, activation_epoch=6, resulting_set_version=1, executed_block=11)
    state = derive_governance_state(GENESIS, [record], make_votes(1, [1, 1, 1]), 11)
    assert state.proposals[0].status is ProposalStatus.APPROVED
    reshare = get_pending_reshare(state, 5)
    assert reshare is not None and reshare.activation_epoch == 6
    assert reshare.get_removed() == (VALIDATORS[1],)
    assert reshare.get_continuing() == {1: 1, 3: 2, 4: 3}

    genesis_run = run_dkg_in_process(len(reshare.old_set), reshare.old_threshold, epoch=reshare.old_keyset_id)
    assert not genesis_run.failures
    old = {int(name): r for name, r in genesis_run.results.items()}
    group_pk = old[1].keyset.group_public_key
    outcome = run_reshare_in_process(old, len(reshare.new_set), reshare.new_threshold,
                                     continuing=reshare.get_continuing())
    assert not outcome.failures, outcome.failures
    new = get_new_holders(outcome)
    keyset = new[1].keyset
    assert keyset.group_public_key == group_pk
    assert keyset.keyset_id == reshare.next_keyset_id == get_validator_set(state, 6).keyset_id
    assert keyset.threshold == reshare.new_threshold

    partials = {j: threshold.partial_sign(r.share or 0, MSG) for j, r in new.items()}
    assert threshold.group_verify(group_pk, MSG, threshold.combine({j: partials[j] for j in (1, 2, 3)}, 3))
    removed_partial = threshold.partial_sign(old[2].share or 0, MSG)  # old index 2 = the removed validator
    assert not any(threshold.partial_verify(keyset.get_public_share(j), MSG, removed_partial) for j in new)
    mixed = {1: partials[1], 2: partials[2], 3: removed_partial}
    assert not threshold.group_verify(group_pk, MSG, threshold.combine(mixed, 3))
