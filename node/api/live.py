"""`NodeSources` of a running node (`clearingd start`): the validator set from the validator's
config, parameters from the governance schedule, status and peers from the validator's
`status.json` snapshot (rewritten by `node.validator` every `status_interval_s`).

Chain status (admin only): each chain's head from one `eth_blockNumber` (1 s timeout, unhealthy when it
fails) and the block the latest signed state pinned. Syncing means: a validator is configured and the latest signed state in the store is more than
`SYNC_LAG_EPOCHS` behind the wall-clock epoch (or missing after genesis + that lag). Re-read
requests are not wired to the validator yet (it has no re-read hook): they are refused with that
reason. Parameters and proposals come from the home chain's Governance contract when a
`GovernanceReader` is given (config `[governance]`), else the genesis schedule and no proposals.
Persists nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from node.api.governance import GovernanceReader, get_version_info
from node.api.sources import (
    ChainStatusInfo,
    KeySetStatusInfo,
    NodeStatusInfo,
    ParametersInfo,
    PeerInfo,
    ProposalInfo,
    ReshareStatusInfo,
    ValidatorInfo,
    ValidatorSetInfo,
)
from node.metrics import read_status_file
from node.ports import Store

SYNC_LAG_EPOCHS = 3
MAX_STATUS_CHAINS = 32
CHAIN_TIMEOUT_S = 1.0


def get_schedule_parameters(epoch: int | None) -> ParametersInfo | None:
    """The governance genesis schedule's set active at `epoch` (None: epoch 0)."""
    from governance.params import get_genesis_schedule

    return get_version_info(get_genesis_schedule(), epoch or 0)


def _peer_id_text(raw: str) -> str:
    try:
        from libp2p.peer.id import ID

        return ID(bytes.fromhex(raw)).to_base58()
    except (ValueError, ImportError):
        return raw


class LiveSources:
    """Sources of a node started by `clearingd start` (thread-safe: reads only immutable inputs)."""

    def __init__(self, store: Store, status_file: Path, validator: Any | None = None, *,
                 network_id: int = 0, chains: tuple[tuple[int, str], ...] = (), api_address: str = "",
                 metrics_address: str = "",
                 governance: GovernanceReader | None = None, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.status_file = status_file
        self.validator = validator  # node.validator.ValidatorConfig or None
        self.network_id = validator.validator_set.network_id if validator is not None else network_id
        self.chains = chains
        self.api_address = api_address
        self.metrics_address = metrics_address
        self.governance = governance
        self.clock = clock

    def _status(self) -> dict[str, Any]:
        return read_status_file(self.status_file) or {}

    def get_validator_set(self) -> ValidatorSetInfo:
        if self.validator is None:
            return ValidatorSetInfo(0, 0, b"", ())
        status = self._status()
        latest = self.store.get_latest_signed_state()
        current = (status.get("keyset_public") or {}).get(str(latest.keyset_id)) if latest is not None else None
        if current is not None and latest is not None:  # the key set that signed the newest state
            by_address = status.get("bindings_by_address") or {}
            return ValidatorSetInfo(
                keyset_id=latest.keyset_id, threshold=int(current["threshold"]),
                group_public_key=self.validator.validator_set.group_key,
                self_index=-1 if current.get("index") is None else int(current["index"]),
                validators=tuple(ValidatorInfo(i, _peer_id_text(str(by_address.get(a, ""))), bytes.fromhex(p), a)
                                 for i, (a, p) in enumerate(zip(current["operators"], current["public_shares"],
                                                                strict=True))))
        vs = self.validator.validator_set
        bindings = status.get("bindings") or {}
        return ValidatorSetInfo(
            keyset_id=vs.keyset_id, threshold=vs.threshold, group_public_key=vs.group_key,
            self_index=-1 if self.validator.index is None else self.validator.index,
            validators=tuple(ValidatorInfo(i, _peer_id_text(str(bindings.get(str(i), ""))), vs.public_shares[i],
                                           "0x" + vs.operator_addresses[i].hex()) for i in range(vs.n)))

    def get_parameters(self, epoch: int | None) -> ParametersInfo | None:
        if self.governance is not None:
            return self.governance.get_parameters(epoch)
        return get_schedule_parameters(epoch)

    def list_proposals(self, from_id: int, limit: int) -> list[ProposalInfo]:
        return self.governance.list_proposals(from_id, limit) if self.governance is not None else []

    def is_syncing(self) -> bool:
        if self.validator is None:
            return False
        period, genesis = self.validator.epoch_period_s, self.validator.genesis_time
        current = int((self.clock() - genesis) // period)
        if current < SYNC_LAG_EPOCHS:
            return False
        latest = self.store.get_latest_signed_state()
        return latest is None or latest.epoch < current - SYNC_LAG_EPOCHS

    def get_status(self) -> NodeStatusInfo:
        status = self._status()
        return NodeStatusInfo(
            network_id=self.network_id,
            validator_index=self.validator.index if self.validator and self.validator.index is not None else -1,
            peer_id=str(status.get("peer_id", "")), syncing=self.is_syncing(),
            chains=self._get_chain_status(),
            api_address=self.api_address, metrics_address=self.metrics_address,
            keysets=get_keyset_status(status), reshares=get_reshare_status(status), **get_skip_status(status))

    def _get_chain_status(self) -> tuple[ChainStatusInfo, ...]:
        """Head block by one `eth_blockNumber` per chain (bounded timeout), pinned block of the latest state."""
        from bridges.anvil import rpc_call

        latest = self.store.get_latest_signed_state()
        pinned = {p.chain_id: p.number for p in latest.pins} if latest else {}
        rows = []
        for chain_id, url in self.chains[:MAX_STATUS_CHAINS]:
            try:
                head, healthy = int(str(rpc_call(url, "eth_blockNumber", timeout=CHAIN_TIMEOUT_S)), 16), True
            except Exception:
                head, healthy = 0, False
            rows.append(ChainStatusInfo(chain_id, head, pinned.get(chain_id, 0), healthy))
        return tuple(rows)

    def list_peers(self) -> list[PeerInfo]:
        status = self._status()
        by_peer = {_peer_id_text(str(v)): int(k) for k, v in (status.get("bindings") or {}).items()}
        peers = [str(p) for p in (status.get("scores") or {})]
        return [PeerInfo(peer_id=p, validator_index=by_peer.get(p, -1)) for p in sorted(peers)]

    def request_reread(self, epoch: int | None, reason: str) -> tuple[bool, str]:
        return False, "not supported: the validator has no re-read hook yet"


def get_keyset_status(status: dict[str, Any]) -> tuple[KeySetStatusInfo, ...]:
    """The validator's key sets from its status.json (`node.consensus.keyring.KeyRing.describe`)."""
    out = []
    for k, v in sorted((status.get("keysets") or {}).items(), key=lambda kv: int(kv[0])):
        out.append(KeySetStatusInfo(int(k), -1 if v.get("index") is None else int(v["index"]), int(v.get("n", 0)),
                                    int(v.get("threshold", 0)), bool(v.get("has_share")), bool(v.get("pending"))))
    return tuple(out)


def get_skip_status(status: dict[str, Any]) -> dict[str, Any]:
    """Skipped rounds by reason and the last one, from status.json (`EpochEngine.get_status`)."""
    counts = tuple((str(k), int(v)) for k, v in sorted((status.get("epochs_skipped") or {}).items())
                   if isinstance(v, int))
    last = status.get("last_skipped")
    if not (isinstance(last, list) and len(last) == 2 and isinstance(last[0], int)):
        return {"epochs_skipped": counts, "last_skipped": None}
    return {"epochs_skipped": counts, "last_skipped": (last[0], str(last[1]))}


def get_reshare_status(status: dict[str, Any]) -> tuple[ReshareStatusInfo, ...]:
    """The validator's reshares from its status.json (`node.consensus.keychange.KeyChanger.describe`)."""
    return tuple(ReshareStatusInfo(int(p), int(v.get("keyset_id", 0)), str(v.get("state", "")),
                                   int(v.get("activation_epoch", 0)), int(v.get("attempts", 0)), str(v.get("error", "")))
                 for p, v in sorted((status.get("reshares") or {}).items(), key=lambda kv: int(kv[0])))
