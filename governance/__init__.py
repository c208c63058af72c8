"""Governance: versioned risk parameter sets (activated like forks), proposals, votes, tally and
validator-set changes. Imports only `risk`.

Public API (pure; no I/O):
- `governance.params`: `ParameterSchedule.get_active_params(epoch)` / `get_active_params_hash(epoch)`,
  `compute_params_hash(p)`, `get_genesis_schedule()` (RRA1 at epoch 0).
- `governance.tally`: `derive_governance_state(genesis, proposals, votes, head_block) -> GovernanceState`,
  `get_validator_set(state, epoch)`, `get_pending_reshare(state, epoch)`.
- `governance.encoding`: `encode_governance_state(state)`, `compute_state_hash(state)`, `state_to_dict`.
- `governance.proposals`: records, `GovernanceGenesis`, `EpochClock`, validator-set change payloads.
The home-chain reads live in `bridges.governance_chain` (`read_governance_state(gov, pin, genesis)`).
"""
