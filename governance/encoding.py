"""Canonical encoding of a derived `GovernanceState` (for hashing, caching and `--json` output).

Invariants: only integers, strings, booleans, null, lists and objects (no floats: a parameter set
appears by its hash); JSON with sorted keys and no whitespace, so equal states give equal bytes.
`compute_state_hash = keccak256(DST_GOVERNANCE_STATE || encoding)`. Nothing is persisted here; the
node's store may persist the encoding as its governance cache.
"""

from __future__ import annotations

import json

from governance.params import ParameterSchedule, compute_keccak256
from governance.tally import (
    DST_GOVERNANCE_STATE,
    STATE_ENCODING_VERSION,
    GovernanceState,
    PendingReshare,
    ProposalOutcome,
    RefusedVote,
    ValidatorSetVersion,
)


def _hex(b: bytes | None) -> str | None:
    return None if b is None else "0x" + b.hex()


def outcome_to_dict(o: ProposalOutcome) -> dict:
    r, c = o.record, o.count
    change = None if o.change is None else {
        "add": list(o.change.add), "remove": list(o.change.remove), "threshold": o.change.threshold,
        "new_set": list(o.new_set or ())}
    return {
        "id": r.proposal_id, "kind": r.kind, "proposer": r.proposer, "status": o.status.value,
        "reason": o.reason, "created_block": r.created_block, "end_block": r.end_block,
        "activation_epoch": r.activation_epoch, "set_version": r.set_version, "executed": r.executed,
        "executed_block": r.executed_block, "resulting_set_version": r.resulting_set_version,
        "tally": {"yes": c.yes, "no": c.no, "abstain": c.abstain, "cast": c.cast, "n": c.n, "quorum": c.quorum},
        "payload_hash": _hex(compute_keccak256(r.payload)), "params_hash": _hex(o.params_hash),
        "validator_set_change": change,
    }


def refused_vote_to_dict(v: RefusedVote) -> dict:
    return {"proposal_id": v.proposal_id, "voter": v.voter, "choice": v.choice,
            "block_number": v.block_number, "reason": v.reason}


def schedule_to_list(s: ParameterSchedule) -> list[dict]:
    return [{"activation_epoch": v.activation_epoch, "params_hash": _hex(v.params_hash),
             "proposal_id": v.proposal_id} for v in s.versions]


def validator_set_to_dict(v: ValidatorSetVersion) -> dict:
    return {"activation_epoch": v.activation_epoch, "members": list(v.members), "threshold": v.threshold,
            "keyset_id": v.keyset_id, "proposal_id": v.proposal_id}


def reshare_to_dict(r: PendingReshare) -> dict:
    return {"proposal_id": r.proposal_id, "activation_epoch": r.activation_epoch,
            "old_set": list(r.old_set), "old_threshold": r.old_threshold, "old_keyset_id": r.old_keyset_id,
            "new_set": list(r.new_set), "new_threshold": r.new_threshold, "next_keyset_id": r.next_keyset_id}


def state_to_dict(state: GovernanceState) -> dict:
    return {
        "encoding_version": STATE_ENCODING_VERSION,
        "head_block": state.head_block,
        "proposals": [outcome_to_dict(o) for o in state.proposals],
        "refused_votes": [refused_vote_to_dict(v) for v in state.refused_votes],
        "parameter_schedule": schedule_to_list(state.schedule),
        "validator_sets": [validator_set_to_dict(v) for v in state.validator_sets],
        "reshares": [reshare_to_dict(r) for r in state.reshares],
    }


def encode_governance_state(state: GovernanceState) -> bytes:
    return json.dumps(state_to_dict(state), sort_keys=True, separators=(",", ":")).encode()


def compute_state_hash(state: GovernanceState) -> bytes:
    return compute_keccak256(DST_GOVERNANCE_STATE + encode_governance_state(state))
