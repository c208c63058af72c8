"""Properties of the validator-set schedule over random histories of concurrent set changes.

A small model of the Governance contract's rules (proposal checked against the set current then;
`execute` after the end block, approved, in approval order (end block, id), activation increasing,
the change applied to the set current at execution, a failing change leaves everything unchanged)
produces the records of a random history: proposals at random blocks and voting periods, approved
or not, execution attempts at random blocks. The tally must then give every node the same schedule:
independent of record order, built from the executed changes in approval order with increasing
activation and consecutive key-set ids, one pending reshare at a time starting from the set that
signs now, and STABLE: the signing set of epoch A derived at any pin from epoch A - 1 on (as a node
pins the home chain for epoch A) equals the one derived at the final head.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

from hypothesis import given, settings
from hypothesis import strategies as st

from governance.encoding import encode_governance_state
from governance.errors import InvalidValidatorSetChange
from governance.lifecycle import ProposalStatus
from governance.proposals import (
    ProposalKind,
    ProposalRecord,
    ValidatorSetChange,
    VoteRecord,
    compute_new_set,
    compute_quorum,
    decode_validator_set_change,
    encode_validator_set_change,
)
from governance.tally import GovernanceState, derive_governance_state, get_pending_reshare, get_validator_set
from tests.governance.helpers import GENESIS, VALIDATORS, get_block_timestamp

NEWCOMERS = tuple(f"0x{0xa0 + i:040x}" for i in range(3))
MAX_EPOCH = 40


@dataclass(frozen=True)
class Plan:
    gap: int  # blocks after the previous proposal
    period: int
    add: bool
    who: int
    extra_threshold: int  # 0: smallest valid threshold at proposal time, 1: one more (when <= n)
    approved: bool
    activation_offset: int  # activation epoch = epoch of the end block + this (the margin needs >= 2)
    execute_after: int  # blocks after the end block at which execution is attempted; 0: never


plans_strategy = st.lists(st.builds(
    Plan, gap=st.integers(1, 4), period=st.integers(1, 12), add=st.booleans(), who=st.integers(0, 5),
    extra_threshold=st.integers(0, 1), approved=st.sampled_from((True, True, True, False)),
    activation_offset=st.integers(0, 10), execute_after=st.integers(0, 15)), min_size=1, max_size=6)


@dataclass
class Contract:
    """The Governance contract's validator-set rules, as a test model."""

    sets: list[tuple[str, ...]] = field(default_factory=lambda: [VALIDATORS])
    records: dict[int, ProposalRecord] = field(default_factory=dict)
    votes: list[VoteRecord] = field(default_factory=list)
    last: ProposalRecord | None = None

    def propose(self, plan: Plan, block: int) -> None:
        current = self.sets[-1]
        if plan.add:
            change = (((NEWCOMERS[plan.who % 3],), ()) if NEWCOMERS[plan.who % 3] not in current else None)
        else:
            change = ((), (current[plan.who % len(current)],)) if len(current) > 1 else None
        if change is None:
            return  # the contract would refuse it at proposal time
        n = len(current) + len(change[0]) - len(change[1])
        payload = encode_validator_set_change(ValidatorSetChange(*change, min(n, 2 * n // 3 + 1 + plan.extra_threshold)))
        pid = len(self.records) + 1
        end = block + plan.period
        activation = GENESIS.clock.get_epoch_at(get_block_timestamp(end)) + plan.activation_offset
        self.records[pid] = ProposalRecord(pid, ProposalKind.VALIDATOR_SET, current[0], payload, block, end,
                                           activation, len(self.sets) - 1, len(current))
        if plan.approved:
            self.votes += [VoteRecord(pid, a, 1, block) for a in current[:compute_quorum(len(current))]]

    def execute(self, pid: int, plan: Plan, block: int) -> None:
        r = self.records[pid]
        if block <= r.end_block or not plan.approved:
            return
        if self.last is not None and (r.get_approval_key() < self.last.get_approval_key()
                                      or r.activation_epoch <= self.last.activation_epoch):
            return  # ChangeSuperseded / ActivationNotIncreasing
        try:
            new = compute_new_set(self.sets[-1], decode_validator_set_change(r.payload))
        except InvalidValidatorSetChange:
            return  # InvalidAddition / InvalidRemoval / InvalidThreshold: nothing changes
        self.sets.append(new)
        self.records[pid] = replace(r, executed=True, resulting_set_version=len(self.sets) - 1, executed_block=block,
                                    executed_timestamp=get_block_timestamp(block))
        self.last = self.records[pid]


def run_history(plans: list[Plan]) -> tuple[Contract, int]:
    """Play the plans block by block (proposals first, then execution attempts); returns the final head."""
    contract, block, events = Contract(), 2, []
    for i, plan in enumerate(plans):
        events.append((block, 0, i))
        if plan.execute_after:
            events.append((block + plan.period + plan.execute_after, 1, i))
        block += plan.gap
    proposal_of: dict[int, int] = {}
    for at, kind, i in sorted(events):
        if kind == 0:
            before = len(contract.records)
            contract.propose(plans[i], at)
            if len(contract.records) > before:
                proposal_of[i] = before + 1
        elif i in proposal_of:
            contract.execute(proposal_of[i], plans[i], at)
    return contract, max(at for at, _, _ in events) + 1


def get_chain_at(contract: Contract, head: int) -> tuple[list[ProposalRecord], list[VoteRecord]]:
    """The records and votes a node reads at a pin of block `head` (the chain as it was then)."""
    records = []
    for r in contract.records.values():
        if r.created_block > head:
            continue
        if r.executed_block > head:
            r = replace(r, executed=False, resulting_set_version=0, executed_block=0, executed_timestamp=None)
        records.append(replace(r, end_timestamp=get_block_timestamp(r.end_block) if r.end_block <= head else None))
    return records, [v for v in contract.votes if v.block_number <= head]


def derive_at(contract: Contract, head: int) -> GovernanceState:
    return derive_governance_state(GENESIS, *get_chain_at(contract, head), head)


@settings(max_examples=60, deadline=None)
@given(plans_strategy)
def test_schedule_follows_executed_changes_in_approval_order(plans: list[Plan]) -> None:
    contract, head = run_history(plans)
    state = derive_at(contract, head)
    records, votes = get_chain_at(contract, head)
    again = derive_governance_state(GENESIS, list(reversed(records)), list(reversed(votes)), head)
    assert encode_governance_state(again) == encode_governance_state(state)
    # signing sets: executed changes only, approval order, increasing activation, consecutive key sets
    sets = state.validator_sets
    assert sets[0].members == VALIDATORS and sets[0].keyset_id == GENESIS.keyset_id
    scheduled = [contract.records[v.proposal_id] for v in sets[1:]]
    assert all(r.executed for r in scheduled)
    assert [r.get_approval_key() for r in scheduled] == sorted(r.get_approval_key() for r in scheduled)
    assert all(a.activation_epoch < b.activation_epoch for a, b in itertools.pairwise(sets))
    assert [v.keyset_id for v in sets] == list(range(GENESIS.keyset_id, GENESIS.keyset_id + len(sets)))
    for v, r in zip(sets[1:], scheduled, strict=True):
        assert v.members == contract.sets[r.resulting_set_version]  # the set current at its execution
        assert r.activation_epoch > GENESIS.clock.get_epoch_at(r.executed_timestamp or 0) + 1
    # one reshare per scheduled change, chained; the pending one starts from the set signing now
    assert [(r.old_keyset_id, r.next_keyset_id) for r in state.reshares] == \
        [(a.keyset_id, b.keyset_id) for a, b in itertools.pairwise(sets)]
    for epoch in range(MAX_EPOCH):
        pending = get_pending_reshare(state, epoch)
        later = [r for r in state.reshares if r.activation_epoch > epoch]
        assert pending == (later[0] if later else None)
        if pending is not None:
            assert pending.old_keyset_id == get_validator_set(state, epoch).keyset_id
    # approved changes left unexecuted: expired once a later-approved change was executed
    for o in state.proposals:
        if not o.record.executed and o.status in (ProposalStatus.APPROVED, ProposalStatus.EXPIRED) and o.count.yes:
            superseded = contract.last is not None and o.record.get_approval_key() < contract.last.get_approval_key()
            assert o.status is (ProposalStatus.EXPIRED if superseded else ProposalStatus.APPROVED)


@settings(max_examples=40, deadline=None)
@given(plans_strategy)
def test_signing_set_of_an_epoch_never_changes_once_nodes_pin_for_it(plans: list[Plan]) -> None:
    contract, head = run_history(plans)
    final = derive_at(contract, head)
    for pin in range(2, head + 1):
        at_pin = derive_at(contract, pin)
        pin_epoch = GENESIS.clock.get_epoch_at(get_block_timestamp(pin))
        for epoch in range(pin_epoch + 2):  # epochs whose pin may lie at or before this block
            assert get_validator_set(at_pin, epoch) == get_validator_set(final, epoch), (pin, epoch)
