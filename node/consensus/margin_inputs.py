"""The production `InputSource`: pinned chain reads (bridges) + the margin state builder (node.state).

`MarginInputSource.compute_epoch(epoch, T_e)` pins every chain for T_e (each chain's lag and
confirmations, `bridges.chain`), reads the vault, ledger and oracle of every chain at its pin and
merges them (`bridges.snapshot.read_epoch_inputs`, re-reads after a reorg), takes the risk
parameters active at `epoch` from the parameter schedule, and builds leaves, Merkle root and
digest (`node.state.compute_margin_state`). Any chain failure (unavailable RPC, pin not ready,
reorg, invalid on-chain value) raises `InputsUnavailable`, so the node does not sign that epoch.
The schedule is the governance genesis schedule unless a `governance_for(home_pin)` reader is given
(`node.governance_source.GovernanceScheduleSource.get_state`: the Governance contract read at the
epoch's pinned home-chain block; `node.validator.build_input_source` wires it when
`governance_address` is set). From that same governance state come the key set that signs the epoch
(`governance.tally.get_validator_set`: its id goes into the digest) and the next pending reshare, so
every node agrees on both at the same pin.
Blocking (web3 and numpy): run it through `trio.to_thread`. Persists nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from bridges.telemetry import measure_stage
from node.consensus.errors import InputsUnavailable
from node.consensus.inputs import ComputedState, ReshareOrder, SigningSet
from node.records import ChainPin


class MarginInputSource:
    def __init__(self, clients: Sequence[object], deployments: Mapping[int, object], home_chain_id: int,
                 network_id: int, keyset_id: int, schedule_for: Callable[[object], object] | None = None,
                 max_quote_age_s: int | None = None,
                 governance_for: Callable[[object], object] | None = None) -> None:
        from governance.params import get_genesis_schedule

        self.clients = list(clients)
        self.deployments = dict(deployments)
        self.home_chain_id = home_chain_id
        self.network_id, self.keyset_id = network_id, keyset_id
        genesis = get_genesis_schedule()
        self.schedule_for = schedule_for or (lambda _pin: genesis)
        self.max_quote_age_s = max_quote_age_s
        self.governance_for = governance_for

    def compute_epoch(self, epoch: int, target_time: int) -> ComputedState:
        from bridges.errors import BridgeError
        from bridges.snapshot import read_epoch_inputs
        from node.state import MarginStateError, compute_margin_state

        try:
            with measure_stage("read_inputs"):
                inputs = read_epoch_inputs(self.clients, self.deployments, self.home_chain_id,  # type: ignore[arg-type]
                                           target_time, self.max_quote_age_s)
        except BridgeError as exc:
            raise InputsUnavailable(f"epoch {epoch}: {exc}") from exc
        home_pin = next((p for p in inputs.pins if p.chain_id == self.home_chain_id), None)
        signing = reshare = None
        if self.governance_for is not None:
            with measure_stage("governance"):
                gov = self.governance_for(home_pin)
            schedule = gov.schedule  # type: ignore[attr-defined]
            signing, reshare = get_signing_set(gov, epoch), get_reshare_order(gov, epoch)
        else:
            schedule = self.schedule_for(home_pin)
        params = schedule.get_active_params(epoch)  # type: ignore[attr-defined]
        params_hash = schedule.get_active_params_hash(epoch)  # type: ignore[attr-defined]
        keyset_id = signing.keyset_id if signing is not None else self.keyset_id
        try:
            with measure_stage("margin_state"):
                state = compute_margin_state(inputs, params, inputs.pins, self.network_id, keyset_id, epoch,
                                             params_hash)
        except MarginStateError as exc:
            raise InputsUnavailable(f"epoch {epoch}: margin state: {exc}") from exc
        return ComputedState(epoch=epoch, pins=tuple(ChainPin(c, n, h) for c, n, h in state.pins),
                             inputs_digest=state.inputs_digest, params_hash=state.params_hash, root=state.root,
                             leaf_count=state.leaf_count, leaves=state.get_account_leaves(),
                             signing=signing, reshare=reshare)


def _to_signing_set(version: object) -> SigningSet:
    members = tuple(bytes.fromhex(a.removeprefix("0x")) for a in version.members)  # type: ignore[attr-defined]
    return SigningSet(int(version.keyset_id), members, int(version.threshold))  # type: ignore[attr-defined]


def get_signing_set(gov: object, epoch: int) -> SigningSet:
    """The key set that signs `epoch` in the governance state `gov` (a `governance.tally.GovernanceState`)."""
    from governance.tally import get_validator_set

    return _to_signing_set(get_validator_set(gov, epoch))  # type: ignore[arg-type]


def get_reshare_order(gov: object, epoch: int) -> ReshareOrder | None:
    """The next validator-set change still to come after `epoch`, if any."""
    from governance.tally import get_pending_reshare

    pending = get_pending_reshare(gov, epoch)  # type: ignore[arg-type]
    if pending is None:
        return None
    old = SigningSet(pending.old_keyset_id, tuple(bytes.fromhex(a.removeprefix("0x")) for a in pending.old_set),
                     pending.old_threshold)
    new = SigningSet(pending.next_keyset_id, tuple(bytes.fromhex(a.removeprefix("0x")) for a in pending.new_set),
                     pending.new_threshold)
    return ReshareOrder(pending.proposal_id, pending.activation_epoch, old, new)
