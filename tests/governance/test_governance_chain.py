"""Governance on a real anvil chain: propose, vote, tally at a pinned block, refusals on chain and in
the tally, activation of a parameter set at its epoch and its effect on initial margin."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account

from bridges.governance_chain import GovernanceChain, GovernanceTxReverted, read_governance_state
from governance.lifecycle import ProposalStatus
from governance.params import compute_params_hash
from governance.tally import GovernanceState
from risk.instruments import Instrument, Market, Position
from risk.params import RRA1, encode_params
from risk.reference import compute_account_risk
from tests.governance.conftest import Deployed
from tests.governance.helpers import INVALID_MM_PAYLOAD, WIDE_BTC

PARAMS, VSET = 1, 2
YES, NO, ABSTAIN = 1, 2, 3
PERIOD = 5


def derive_at_head(d: Deployed) -> GovernanceState:
    return read_governance_state(d.gov, d.gov.get_pin_at_head(), d.genesis)


def compute_im(epoch: int, state: GovernanceState) -> float:
    market = Market(spot={"BTC": 100_000.0, "ETH": 3_000.0},
                    forwards={("BTC", 30.0): 100_400.0}, asset_prices={"USDC": 1.0, "BTC": 100_000.0})
    positions = [Position(Instrument("BTC", "perp"), 1.0),
                 Position(Instrument("BTC", "option", 30.0, 110_000.0, "call", 0.52), -1.0)]
    params = state.schedule.get_active_params(epoch)
    return compute_account_risk(positions, {"USDC": 50_000.0}, market, params, include_tail=False).initial_margin


def test_widened_btc_scan_range_passes_and_activates_at_its_epoch(deployed: Deployed) -> None:
    d = deployed
    pid, _ = d.gov.propose(d.keys[0], PARAMS, encode_params(WIDE_BTC), PERIOD, 3)
    for key in d.keys[:3]:
        d.gov.vote(key, pid, YES)
    assert derive_at_head(d).proposals[0].status is ProposalStatus.PENDING
    d.mine(PERIOD + 1)
    state = derive_at_head(d)
    outcome = state.get_proposal(pid)
    assert outcome is not None and outcome.status is ProposalStatus.APPROVED, outcome
    assert (outcome.count.yes, outcome.count.n) == (3, 4)
    assert state.schedule.get_active_params_hash(2) == compute_params_hash(RRA1)
    assert state.schedule.get_active_params_hash(3) == compute_params_hash(WIDE_BTC)
    im = [compute_im(e, state) for e in (0, 2, 3, 4)]
    assert im[0] == im[1] < im[2] == im[3]


def test_invalid_short_of_quorum_expires_without_effect(deployed: Deployed) -> None:
    d = deployed
    pid, _ = d.gov.propose(d.keys[0], PARAMS, encode_params(WIDE_BTC), PERIOD, 3)
    d.gov.vote(d.keys[0], pid, YES)
    d.gov.vote(d.keys[1], pid, YES)
    d.mine(PERIOD + 1)
    state = derive_at_head(d)
    assert state.proposals[0].status is ProposalStatus.EXPIRED
    assert state.proposals[0].reason == "quorum missed: 2 votes cast < 3"
    assert state.schedule.get_active_params(10**6) == RRA1


def test_invalid_votes_are_reverted_with_custom_errors(deployed: Deployed) -> None:
    d = deployed
    pid, _ = d.gov.propose(d.keys[0], PARAMS, encode_params(WIDE_BTC), PERIOD, 3)
    d.gov.vote(d.keys[0], pid, YES)
    with pytest.raises(GovernanceTxReverted) as double:
        d.gov.vote(d.keys[0], pid, NO)
    assert double.value.error == "AlreadyVoted"
    assert double.value.args_decoded == (pid, d.validators[0].lower())
    with pytest.raises(GovernanceTxReverted) as outsider:
        d.gov.vote(d.keys[4], pid, YES)
    assert outsider.value.error == "NotValidator"
    with pytest.raises(GovernanceTxReverted) as bad_choice:
        d.gov.vote(d.keys[1], pid, 0)
    assert bad_choice.value.error == "InvalidChoice"
    d.mine(PERIOD)
    with pytest.raises(GovernanceTxReverted) as late:
        d.gov.vote(d.keys[1], pid, YES)
    assert late.value.error == "VotingClosed"
    with pytest.raises(GovernanceTxReverted) as unknown:
        d.gov.vote(d.keys[1], pid + 7, YES)
    assert unknown.value.error == "UnknownProposal"
    assert [v.voter for v in d.gov.read_snapshot(d.gov.get_pin_at_head()).votes] == [d.validators[0]]


def test_invalid_proposals_are_reverted_with_custom_errors(deployed: Deployed) -> None:
    d = deployed
    cases = [
        (d.keys[4], PARAMS, encode_params(WIDE_BTC), PERIOD, "NotValidator"),
        (d.keys[0], 3, encode_params(WIDE_BTC), PERIOD, "InvalidKind"),
        (d.keys[0], PARAMS, b"", PERIOD, "InvalidPayloadLength"),
        (d.keys[0], PARAMS, encode_params(WIDE_BTC), 0, "InvalidVotingPeriod"),
    ]
    for key, kind, payload, period, error in cases:
        with pytest.raises(GovernanceTxReverted) as exc:
            d.gov.propose(key, kind, payload, period, 3)
        assert exc.value.error == error


def test_invalid_parameter_set_is_refused_by_the_tally(deployed: Deployed) -> None:
    d = deployed
    pid, _ = d.gov.propose(d.keys[0], PARAMS, INVALID_MM_PAYLOAD, PERIOD, 3)
    for key in d.keys[:4]:
        d.gov.vote(key, pid, YES)
    d.mine(PERIOD + 1)
    state = derive_at_head(d)
    assert state.proposals[0].status is ProposalStatus.INVALID
    assert state.proposals[0].reason.startswith("parameter set refused: maintenance_factor: ")
    assert state.schedule.get_active_params(10**6) == RRA1


def test_invalid_activation_epoch_too_close_to_the_vote_end(deployed: Deployed) -> None:
    d = deployed
    pid, _ = d.gov.propose(d.keys[0], PARAMS, encode_params(WIDE_BTC), PERIOD, 1)
    for key in d.keys[:3]:
        d.gov.vote(key, pid, YES)
    d.mine(PERIOD + 1)
    outcome = derive_at_head(d).proposals[0]
    assert outcome.status is ProposalStatus.INVALID
    assert outcome.reason == "activation epoch 1 not in the future: voting ended in epoch 0, earliest allowed 2"


class RacingClient:
    """The real client, except that right after the first pending-nonce read of `key` another transaction of
    that key (as the operator's own node publishing a state would) is sent at the nonce just read."""

    def __init__(self, client: Any, key: bytes) -> None:
        self.client, self.key, self.raced = client, key, False
        self.chain_id = client.chain_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def rpc(self, method: str, params: Any) -> Any:
        out = self.client.rpc(method, params)
        if method == "eth_getTransactionCount" and not self.raced:
            self.raced = True
            account = Account.from_key(self.key)
            base_fee = self.client.get_block("latest").base_fee or 0
            tx = {"chainId": self.chain_id, "nonce": int(out, 16), "to": account.address, "value": 0, "gas": 21_000,
                  "maxFeePerGas": 4 * base_fee + 10 * 10**9, "maxPriorityFeePerGas": 10 * 10**9, "type": 2}
            self.client.rpc("eth_sendRawTransaction", ["0x" + bytes(Account.sign_transaction(tx, self.key).raw_transaction).hex()])
        return out


def test_vote_retries_when_another_transaction_of_the_key_takes_its_nonce(deployed: Deployed) -> None:
    """The walkthrough's `gov vote` failed with "replacement transaction underpriced": the operator's node had
    sent a transaction of the same key between the CLI's nonce read and its send. The vote now reads the
    pending nonce again and lands."""
    d = deployed
    pid, _ = d.gov.propose(d.keys[0], PARAMS, encode_params(WIDE_BTC), PERIOD, 3)
    racing = RacingClient(d.gov.client, d.keys[1])
    gov = GovernanceChain(racing, d.gov.address, d.gov.abi)  # type: ignore[arg-type]
    receipt = gov.vote(d.keys[1], pid, YES)
    assert racing.raced and int(receipt["status"], 16) == 1
    assert [v.voter for v in d.gov.read_snapshot(d.gov.get_pin_at_head()).votes] == [d.validators[1]]
