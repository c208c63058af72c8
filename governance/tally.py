"""Pure, deterministic derivation of the governance state from the Governance contract's records.

`derive_governance_state(genesis, proposals, votes, head_block)` re-checks every vote (only members of
the set the proposal was created under, one vote per validator, within the voting period: defence in
depth behind the contract's reverts), decides each proposal's status through the lifecycle table of
`governance.lifecycle`, and builds (a) the parameter schedule and (b) the signing validator sets by
activation epoch with their key-set ids and the reshares the node must run.

Invariants: same inputs -> byte-identical `encode_governance_state` (no clock, no I/O, no floats in the
encoding: parameter sets appear by hash).
- Parameter sets: approved proposals are scheduled in (end_block, id) order; a status never changes
  once the voting period is over.
- Validator sets follow the EXECUTED changes only. The contract applies a change at `execute`, against
  the set current then, in approval order (end_block, id) (it refuses an older change once a newer one
  was executed, and non-increasing activation epochs); `compute_voting_sets` replays exactly that
  (voting set version k = k-th executed change applied to version k-1) and refuses records that break
  those rules. In execution order, an executed change that is approved here becomes the signing set
  from its activation epoch when that epoch lies beyond the epoch of its EXECUTION block plus the
  margin (so every honest node's pin for the activation epoch, and for no earlier epoch that could be
  signed under the old set too late, already shows it) and after the latest scheduled signing set.
  Every node therefore derives the same schedule from the same chain data, one reshare per scheduled
  change, in execution order with strictly increasing activation epochs: `get_pending_reshare` hands
  the node one pending change at a time. An approved change that is not executed changes nothing; it
  becomes EXPIRED once a later-approved change is executed (it can never execute).
- Each reshare starts from the latest scheduled signing set and leads to the contract's set after the
  change; these differ only after an executed change was refused here, and the next change repairs it.
Nothing is persisted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from governance.errors import InvalidGovernanceInput, InvalidValidatorSetChange
from governance.lifecycle import Lifecycle, LifecycleEvent, ProposalStatus, process_event
from governance.params import ParameterSchedule, get_genesis_schedule, make_version
from governance.proposals import (
    GovernanceGenesis,
    ProposalKind,
    ProposalRecord,
    ValidatorSetChange,
    VoteChoice,
    VoteRecord,
    compute_new_set,
    compute_quorum,
    decode_validator_set_change,
)
from risk.params import RiskParams, decode_params, validate_params

DST_GOVERNANCE_STATE = b"CLEARING-GOVERNANCE-STATE-V1"
STATE_ENCODING_VERSION = 2  # 2: proposals carry executed_block; set changes follow executions


@dataclass(frozen=True)
class VoteCount:
    yes: int
    no: int
    abstain: int
    n: int

    @property
    def cast(self) -> int:
        return self.yes + self.no + self.abstain

    @property
    def quorum(self) -> int:
        return compute_quorum(self.n)


@dataclass(frozen=True)
class RefusedVote:
    proposal_id: int
    voter: str
    choice: int
    block_number: int
    reason: str


@dataclass(frozen=True)
class ProposalOutcome:
    record: ProposalRecord
    status: ProposalStatus
    reason: str
    count: VoteCount
    params: RiskParams | None = None
    params_hash: bytes | None = None
    change: ValidatorSetChange | None = None
    new_set: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ValidatorSetVersion:
    """The signing set from `activation_epoch` on; `proposal_id` 0 is genesis."""

    activation_epoch: int
    members: tuple[str, ...]
    threshold: int
    keyset_id: int
    proposal_id: int = 0


@dataclass(frozen=True)
class PendingReshare:
    """What the node's epoch loop needs to reshare the key before `activation_epoch`."""

    proposal_id: int
    activation_epoch: int
    old_set: tuple[str, ...]
    old_threshold: int
    old_keyset_id: int
    new_set: tuple[str, ...]
    new_threshold: int
    next_keyset_id: int

    def get_continuing(self) -> dict[int, int]:
        """Threshold-share indices (1-based position in the set) of validators in both sets: old -> new."""
        return {i + 1: self.new_set.index(a) + 1 for i, a in enumerate(self.old_set) if a in self.new_set}

    def get_removed(self) -> tuple[str, ...]:
        return tuple(a for a in self.old_set if a not in self.new_set)


@dataclass(frozen=True)
class GovernanceState:
    head_block: int
    proposals: tuple[ProposalOutcome, ...]
    refused_votes: tuple[RefusedVote, ...]
    schedule: ParameterSchedule
    validator_sets: tuple[ValidatorSetVersion, ...]
    reshares: tuple[PendingReshare, ...]

    def get_proposal(self, proposal_id: int) -> ProposalOutcome | None:
        return next((p for p in self.proposals if p.record.proposal_id == proposal_id), None)


def get_validator_set(state: GovernanceState, epoch: int) -> ValidatorSetVersion:
    """The signing set in force at `epoch`."""
    active = state.validator_sets[0]
    for v in state.validator_sets:
        if v.activation_epoch <= epoch:
            active = v
    return active


def get_pending_reshare(state: GovernanceState, epoch: int) -> PendingReshare | None:
    """The next reshare the node must complete (activation epoch after `epoch`), if any."""
    return next((r for r in state.reshares if r.activation_epoch > epoch), None)


def compute_voting_sets(genesis: GovernanceGenesis, records: Iterable[ProposalRecord]) -> list[tuple[str, ...]]:
    """Replay the contract's set versions: version k = the k-th executed change applied to version k-1
    (the set current at its execution). Raises InvalidGovernanceInput, naming the field, where the
    records break a rule the contract enforces (numbering, approval order, increasing activation)."""
    executed = sorted((r for r in records if r.executed), key=lambda r: r.resulting_set_version)
    sets = [genesis.validators]
    previous: ProposalRecord | None = None
    for r in executed:
        field = f"proposals[{r.proposal_id}]"
        if r.kind != ProposalKind.VALIDATOR_SET or r.resulting_set_version != len(sets):
            raise InvalidGovernanceInput(f"{field}.resulting_set_version",
                                         f"executed changes must number 1..k, got {r.resulting_set_version}")
        if r.set_version >= r.resulting_set_version or r.executed_block <= r.end_block:
            raise InvalidGovernanceInput(f"{field}.executed_block",
                                         "a change executes after its voting period, on a later set version")
        if previous is not None and r.get_approval_key() <= previous.get_approval_key():
            raise InvalidGovernanceInput(f"{field}.end_block", f"executed after change {previous.proposal_id} "
                                         "although approved before it (the contract refuses: ChangeSuperseded)")
        if previous is not None and r.activation_epoch <= previous.activation_epoch:
            raise InvalidGovernanceInput(f"{field}.activation_epoch", "not after that of the previously executed "
                                         f"change {previous.proposal_id} (the contract refuses it)")
        try:
            sets.append(compute_new_set(sets[-1], decode_validator_set_change(r.payload)))
        except InvalidValidatorSetChange as exc:
            raise InvalidGovernanceInput(f"{field}.payload", str(exc)) from exc
        previous = r
    return sets


def get_earliest_activation(genesis: GovernanceGenesis, timestamp: int) -> int:
    """The first activation epoch allowed for a decision (end of voting, execution) at `timestamp`."""
    return genesis.clock.get_epoch_at(timestamp) + genesis.activation_margin_epochs + 1


def compute_vote_count(record: ProposalRecord, members: tuple[str, ...], votes: Iterable[VoteRecord],
                       refused: list[RefusedVote]) -> VoteCount:
    """Count the valid votes of one proposal; append every refused vote with its reason."""
    seen: set[str] = set()
    counts = {VoteChoice.YES: 0, VoteChoice.NO: 0, VoteChoice.ABSTAIN: 0}
    for v in votes:
        reason = ""
        if v.choice not in (1, 2, 3):
            reason = f"invalid choice {v.choice}"
        elif v.voter not in members:
            reason = f"not a validator of set version {record.set_version}"
        elif v.voter in seen:
            reason = "double vote"
        elif v.block_number > record.end_block or v.block_number < record.created_block:
            reason = f"vote at block {v.block_number} outside voting period {record.created_block}..{record.end_block}"
        if reason:
            refused.append(RefusedVote(record.proposal_id, v.voter, v.choice, v.block_number, reason))
            continue
        seen.add(v.voter)
        counts[VoteChoice(v.choice)] += 1
    return VoteCount(counts[VoteChoice.YES], counts[VoteChoice.NO], counts[VoteChoice.ABSTAIN], len(members))


def check_payload(record: ProposalRecord, base: tuple[str, ...]) -> ProposalOutcome | str:
    """Decode and validate the payload: a partial outcome (status pending) or the refusal reason."""
    empty = VoteCount(0, 0, 0, len(base))
    if record.kind == ProposalKind.PARAMETER_SET:
        try:
            params = decode_params(record.payload)
            validate_params(params)
        except Exception as exc:  # any refusal of on-chain bytes makes the proposal invalid
            return f"parameter set refused: {exc}"
        return ProposalOutcome(record, ProposalStatus.PENDING, "", empty, params=params,
                               params_hash=make_version(0, params).params_hash)
    if record.kind == ProposalKind.VALIDATOR_SET:
        try:  # the contract's check at proposal time; the change applies to the set current at execution
            change = decode_validator_set_change(record.payload)
            compute_new_set(base, change)
        except InvalidValidatorSetChange as exc:
            return f"validator-set change refused: {exc}"
        return ProposalOutcome(record, ProposalStatus.PENDING, "", empty, change=change)
    return f"unknown proposal kind {record.kind}"


def decide_proposal(genesis: GovernanceGenesis, record: ProposalRecord, base: tuple[str, ...] | None,
                    votes: list[VoteRecord], head_block: int, refused: list[RefusedVote]) -> ProposalOutcome:
    """Lifecycle of one proposal up to APPROVED (scheduling may still refuse the activation)."""
    life = Lifecycle()
    if base is None:
        reason = f"unknown validator set version {record.set_version}"
        refused.extend(RefusedVote(record.proposal_id, v.voter, v.choice, v.block_number, reason) for v in votes)
        life = process_event(life, LifecycleEvent.PAYLOAD_REFUSED, reason)
        return ProposalOutcome(record, life.status, life.reason, VoteCount(0, 0, 0, record.set_size))
    count = compute_vote_count(record, base, votes, refused)
    checked = check_payload(record, base)
    if isinstance(checked, str):
        life = process_event(life, LifecycleEvent.PAYLOAD_REFUSED, checked)
    elif record.set_size != len(base):
        life = process_event(life, LifecycleEvent.PAYLOAD_REFUSED,
                             f"set_size {record.set_size} differs from replayed set size {len(base)}")
    elif head_block > record.end_block:
        life = close_voting(genesis, record, count, life)
    out = checked if not isinstance(checked, str) else ProposalOutcome(record, life.status, "", count)
    return ProposalOutcome(record, life.status, life.reason, count, out.params, out.params_hash,
                           out.change, out.new_set)


def close_voting(genesis: GovernanceGenesis, record: ProposalRecord, count: VoteCount,
                 life: Lifecycle) -> Lifecycle:
    q = count.quorum
    if count.cast < q:
        return process_event(life, LifecycleEvent.QUORUM_MISSED, f"quorum missed: {count.cast} votes cast < {q}")
    if count.yes < q:
        return process_event(life, LifecycleEvent.APPROVAL_MISSED, f"approval missed: {count.yes} yes < {q}")
    life = process_event(life, LifecycleEvent.APPROVAL_REACHED, f"approved: {count.yes} yes of {count.n}")
    if record.end_timestamp is None:
        raise InvalidGovernanceInput(f"proposals[{record.proposal_id}].end_timestamp",
                                     "required once the voting period is over")
    end_epoch = genesis.clock.get_epoch_at(record.end_timestamp)
    earliest = get_earliest_activation(genesis, record.end_timestamp)
    if record.activation_epoch < earliest:
        return process_event(life, LifecycleEvent.ACTIVATION_REFUSED,
                             f"activation epoch {record.activation_epoch} not in the future: voting ended in "
                             f"epoch {end_epoch}, earliest allowed {earliest}")
    return life


def refuse_activation(o: ProposalOutcome, reason: str) -> ProposalOutcome:
    life = process_event(Lifecycle(o.status, o.reason), LifecycleEvent.ACTIVATION_REFUSED, reason)
    return replace(o, status=life.status, reason=life.reason)


def build_parameter_schedule(schedule: ParameterSchedule, outcomes: dict[int, ProposalOutcome]) -> ParameterSchedule:
    """Append approved parameter sets in (end_block, id) order; refuse activations that do not advance."""
    approved = sorted((o for o in outcomes.values() if o.status is ProposalStatus.APPROVED),
                      key=lambda o: o.record.get_approval_key())
    for o in approved:
        r = o.record
        if o.params is None:
            continue
        latest = schedule.get_latest_activation_epoch()
        if r.activation_epoch <= latest:
            outcomes[r.proposal_id] = refuse_activation(
                o, f"activation epoch {r.activation_epoch} not after the latest scheduled version ({latest})")
            continue
        schedule = schedule.with_version(make_version(r.activation_epoch, o.params, r.proposal_id))
    return schedule


def check_execution(genesis: GovernanceGenesis, record: ProposalRecord, latest: ValidatorSetVersion) -> str:
    """Why an executed change's activation is refused ("" when it is not): it must lie beyond the epoch
    of the execution block plus the margin, and after the latest scheduled signing set."""
    if record.executed_timestamp is None:
        raise InvalidGovernanceInput(f"proposals[{record.proposal_id}].executed_timestamp", "required once executed")
    earliest = get_earliest_activation(genesis, record.executed_timestamp)
    if record.activation_epoch < earliest:
        return (f"activation epoch {record.activation_epoch} not in the future: executed at block "
                f"{record.executed_block} in epoch {genesis.clock.get_epoch_at(record.executed_timestamp)}, "
                f"earliest allowed {earliest}")
    if record.activation_epoch <= latest.activation_epoch:
        return (f"activation epoch {record.activation_epoch} not after the latest scheduled validator set "
                f"({latest.activation_epoch})")
    return ""


def mark_unexecuted(outcomes: dict[int, ProposalOutcome], last: ProposalRecord | None) -> None:
    """Approved set changes not executed: superseded (EXPIRED) when a later-approved one was executed."""
    for pid, o in list(outcomes.items()):
        if o.status is not ProposalStatus.APPROVED or o.change is None or o.record.executed:
            continue
        if last is not None and o.record.get_approval_key() < last.get_approval_key():
            life = process_event(Lifecycle(o.status, o.reason), LifecycleEvent.EXECUTION_MISSED,
                                 f"superseded: change {last.proposal_id}, approved after it, was executed first")
            outcomes[pid] = replace(o, status=life.status, reason=life.reason)
        else:
            outcomes[pid] = replace(o, reason=f"{o.reason}; not executed: the validator set changes once executed")


def build_validator_sets(genesis: GovernanceGenesis, sets: list[tuple[str, ...]],
                         outcomes: dict[int, ProposalOutcome],
                         ) -> tuple[tuple[ValidatorSetVersion, ...], tuple[PendingReshare, ...]]:
    """Signing sets and reshares from the executed changes, in execution order (see the module docstring)."""
    vsets = [ValidatorSetVersion(0, genesis.validators, genesis.threshold, genesis.keyset_id)]
    reshares: list[PendingReshare] = []
    executed = sorted((o.record for o in outcomes.values() if o.record.executed),
                      key=lambda r: r.resulting_set_version)
    mark_unexecuted(outcomes, executed[-1] if executed else None)
    for r in executed:
        o = replace(outcomes[r.proposal_id], new_set=sets[r.resulting_set_version])
        outcomes[r.proposal_id] = o
        if o.status is not ProposalStatus.APPROVED or o.change is None:
            continue  # in the contract's voting set, never a signing set (a later change repairs it)
        cur = vsets[-1]
        refusal = check_execution(genesis, r, cur)
        if refusal:
            outcomes[r.proposal_id] = refuse_activation(o, refusal)
            continue
        outcomes[r.proposal_id] = replace(o, reason=f"{o.reason}; executed at block {r.executed_block} "
                                                    f"(set version {r.resulting_set_version})")
        nxt = ValidatorSetVersion(r.activation_epoch, sets[r.resulting_set_version], o.change.threshold,
                                  cur.keyset_id + 1, r.proposal_id)
        reshares.append(PendingReshare(r.proposal_id, r.activation_epoch, cur.members, cur.threshold,
                                       cur.keyset_id, nxt.members, nxt.threshold, nxt.keyset_id))
        vsets.append(nxt)
    return tuple(vsets), tuple(reshares)


def derive_governance_state(genesis: GovernanceGenesis, proposals: Iterable[ProposalRecord],
                            votes: Iterable[VoteRecord], head_block: int,
                            genesis_schedule: ParameterSchedule | None = None) -> GovernanceState:
    """The governance state as of `head_block` (the pinned home-chain block)."""
    records = sorted(proposals, key=lambda r: r.proposal_id)
    ids = [r.proposal_id for r in records]
    if len(set(ids)) != len(ids):
        raise InvalidGovernanceInput("proposals", "duplicate proposal id")
    for r in records:
        for name, block in (("created_block", r.created_block), ("executed_block", r.executed_block)):
            if block > head_block:
                raise InvalidGovernanceInput(f"proposals[{r.proposal_id}].{name}", "after the head block")
    by_id: dict[int, list[VoteRecord]] = {i: [] for i in ids}
    refused: list[RefusedVote] = []
    for v in votes:
        if v.proposal_id in by_id:
            by_id[v.proposal_id].append(v)
        else:
            refused.append(RefusedVote(v.proposal_id, v.voter, v.choice, v.block_number, "unknown proposal"))
    sets = compute_voting_sets(genesis, records)
    outcomes = {r.proposal_id: decide_proposal(
        genesis, r, sets[r.set_version] if r.set_version < len(sets) else None, by_id[r.proposal_id],
        head_block, refused) for r in records}
    schedule = build_parameter_schedule(genesis_schedule or get_genesis_schedule(), outcomes)
    vsets, reshares = build_validator_sets(genesis, sets, outcomes)
    refused.sort(key=lambda x: (x.proposal_id, x.block_number, x.voter))
    return GovernanceState(head_block, tuple(outcomes[i] for i in ids), tuple(refused), schedule, vsets, reshares)
