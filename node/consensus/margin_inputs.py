"""The production `InputSource`: pinned chain reads (bridges) + the margin state builder (node.state).

`MarginInputSource.compute_epoch(epoch, T_e)` pins every chain for T_e (each chain's lag and
confirmations, `bridges.chain`), reads the vault, ledger and oracle of every chain at its pin and
merges them (`bridges.snapshot.read_epoch_inputs`, re-reads after a reorg), takes the risk
parameters active at `epoch` from the parameter schedule, and builds leaves, Merkle root and
digest (`node.state.compute_margin_state`). Any chain failure (unavailable RPC, pin not ready,
reorg, invalid on-chain value) raises `InputsUnavailable`, so the node does not sign that epoch.
The schedule is the governance genesis schedule unless a `schedule_for(home_pin)` reader is given
(`node.governance_source.GovernanceScheduleSource`: the Governance contract read at the epoch's
pinned home-chain block; `node.validator.build_input_source` wires it when `governance_address` is set).
Blocking (web3 and numpy): run it through `trio.to_thread`. Persists nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from node.consensus.errors import InputsUnavailable
from node.consensus.inputs import ComputedState
from node.records import ChainPin


class MarginInputSource:
    def __init__(self, clients: Sequence[object], deployments: Mapping[int, object], home_chain_id: int,
                 network_id: int, keyset_id: int, schedule_for: Callable[[object], object] | None = None,
                 max_quote_age_s: int | None = None) -> None:
        from governance.params import get_genesis_schedule

        self.clients = list(clients)
        self.deployments = dict(deployments)
        self.home_chain_id = home_chain_id
        self.network_id, self.keyset_id = network_id, keyset_id
        genesis = get_genesis_schedule()
        self.schedule_for = schedule_for or (lambda _pin: genesis)
        self.max_quote_age_s = max_quote_age_s

    def compute_epoch(self, epoch: int, target_time: int) -> ComputedState:
        from bridges.errors import BridgeError
        from bridges.snapshot import read_epoch_inputs
        from node.state import MarginStateError, compute_margin_state

        try:
            inputs = read_epoch_inputs(self.clients, self.deployments, self.home_chain_id,  # type: ignore[arg-type]
                                       target_time, self.max_quote_age_s)
        except BridgeError as exc:
            raise InputsUnavailable(f"epoch {epoch}: {exc}") from exc
        home_pin = next((p for p in inputs.pins if p.chain_id == self.home_chain_id), None)
        schedule = self.schedule_for(home_pin)
        params = schedule.get_active_params(epoch)  # type: ignore[attr-defined]
        params_hash = schedule.get_active_params_hash(epoch)  # type: ignore[attr-defined]
        try:
            state = compute_margin_state(inputs, params, inputs.pins, self.network_id, self.keyset_id, epoch,
                                         params_hash)
        except MarginStateError as exc:
            raise InputsUnavailable(f"epoch {epoch}: margin state: {exc}") from exc
        return ComputedState(epoch=epoch, pins=tuple(ChainPin(c, n, h) for c, n, h in state.pins),
                             inputs_digest=state.inputs_digest, params_hash=state.params_hash, root=state.root,
                             leaf_count=state.leaf_count, leaves=state.get_account_leaves())
