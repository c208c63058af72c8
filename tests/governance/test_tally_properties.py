"""Properties of the tally over random vote sequences: every vote is either counted or refused with a
reason, at most one counted vote per validator, statuses follow the quorum rule, and the derived
state does not depend on the order proposals are handed in."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from governance.encoding import encode_governance_state
from governance.lifecycle import ProposalStatus
from governance.proposals import VoteRecord
from governance.tally import derive_governance_state
from tests.governance.helpers import GENESIS, OUTSIDER, VALIDATORS, make_param_proposal

VOTERS = (*VALIDATORS, OUTSIDER)
votes_strategy = st.lists(
    st.tuples(st.integers(1, 3), st.sampled_from(VOTERS), st.integers(0, 4), st.integers(1, 14)), max_size=24)


@settings(max_examples=60, deadline=None)
@given(votes_strategy)
def test_every_vote_is_counted_or_refused(raw: list[tuple[int, str, int, int]]) -> None:
    proposals = [make_param_proposal(i, activation_epoch=4 + i) for i in (1, 2, 3)]
    votes = [VoteRecord(pid, voter, choice, block) for pid, voter, choice, block in raw]
    state = derive_governance_state(GENESIS, proposals, votes, 11)
    counted = sum(o.count.cast for o in state.proposals)
    assert counted + len(state.refused_votes) == len(votes)
    for o in state.proposals:
        assert o.count.cast <= len(VALIDATORS)
        if o.count.cast < o.count.quorum:
            assert o.status is ProposalStatus.EXPIRED
        elif o.count.yes < o.count.quorum:
            assert o.status is ProposalStatus.REJECTED
        else:
            assert o.status is ProposalStatus.APPROVED
    reversed_state = derive_governance_state(GENESIS, list(reversed(proposals)), votes, 11)
    assert encode_governance_state(reversed_state) == encode_governance_state(state)
