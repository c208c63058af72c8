"""Proposal spam cannot stall the network (issue 11): the contract caps each member's live proposals
(open for voting or for execution), and the node reads a proposal that can no longer change only once,
so an epoch re-reads the live proposals and the new ids, not the whole history. On a real anvil chain."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bridges.governance_chain import (
    GovernanceChain,
    GovernanceTxReverted,
    deploy_governance,
    read_governance_state,
)
from governance.lifecycle import ProposalStatus
from risk.params import encode_params
from tests.governance.conftest import Deployed
from tests.governance.helpers import WIDE_BTC

PARAMS, YES = 1, 1
LIMIT = 8  # Governance.MAX_LIVE_PROPOSALS_PER_MEMBER
WINDOW = 20  # maxVotingPeriodBlocks of these tests' deployments (also the execution window)


@pytest.fixture
def short(deployed: Deployed) -> Deployed:
    """The fixture's network with a Governance whose windows are WINDOW blocks."""
    d = deployed
    address = deploy_governance(d.gov.client, d.keys[0], d.gov.abi, _bytecode(), d.validators, 3, WINDOW)
    return replace(d, gov=GovernanceChain(d.gov.client, address, d.gov.abi))


def _bytecode() -> str:
    from tests.governance.solc_helper import compile_governance

    return compile_governance()[1]


def test_invalid_ninth_live_proposal_of_one_member_is_reverted_until_its_window_closes(short: Deployed) -> None:
    d = short
    payload = encode_params(WIDE_BTC)
    for _ in range(LIMIT):
        d.gov.propose(d.keys[0], PARAMS, payload, 1, 3)
    with pytest.raises(GovernanceTxReverted) as exc:
        d.gov.propose(d.keys[0], PARAMS, payload, 1, 3)
    assert exc.value.error == "TooManyLiveProposals"
    d.gov.propose(d.keys[1], PARAMS, payload, 1, 3)  # the others are not blocked by the spammer
    d.mine(WINDOW - 12)  # voting ended (1 block), execution windows (20 blocks) still open: still live
    with pytest.raises(GovernanceTxReverted):
        d.gov.propose(d.keys[0], PARAMS, payload, 1, 3)
    d.mine(WINDOW)  # every window closed
    d.gov.propose(d.keys[0], PARAMS, payload, 1, 3)


def test_settled_proposals_are_read_once_and_the_state_equals_a_full_read(short: Deployed) -> None:
    d = short
    payload = encode_params(WIDE_BTC)
    approved, _ = d.gov.propose(d.keys[0], PARAMS, payload, 10, 3)
    for key in d.keys[:3]:
        d.gov.vote(key, approved, YES)
    for i in range(1, 4):
        d.gov.propose(d.keys[i], PARAMS, payload, 10, 3)
    d.mine(WINDOW + 320)  # all four settled: windows closed more than 256 blocks ago
    node = GovernanceChain(d.gov.client, d.gov.address, d.gov.abi)
    first = read_governance_state(node, d.gov.get_pin_at_head(), d.genesis)
    assert node.proposal_reads == 4
    live, _ = d.gov.propose(d.keys[1], PARAMS, payload, 10, 3)
    pin = d.gov.get_pin_at_head()
    cached = read_governance_state(node, pin, d.genesis)
    assert node.proposal_reads == 5  # only the new one
    cached = read_governance_state(node, d.gov.get_pin_at_head(), d.genesis)
    assert node.proposal_reads == 6  # the live one again, the settled ones never
    full = read_governance_state(GovernanceChain(d.gov.client, d.gov.address, d.gov.abi),
                                 d.gov.get_pin_at_head(), d.genesis)
    assert cached == full and cached != first
    assert cached.get_proposal(approved).status is ProposalStatus.APPROVED
    assert cached.get_proposal(live).status is ProposalStatus.PENDING
