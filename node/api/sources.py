"""What the API and admin servers read besides the store: the validator set, parameters,
proposals and the node's live status, behind one `NodeSources` protocol.

The composition root (`clearingd start`) passes the validator's live implementation; `StaticSources`
holds fixed values (from config, tests, or a node that is not running consensus). All records are
frozen; implementations must be thread-safe (servers call them from pool threads). Nothing is
persisted here.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

MAX_REASON_CHARS = 200


@dataclass(frozen=True)
class ValidatorInfo:
    index: int
    peer_id: str
    public_key_share: bytes  # 96-byte compressed G2
    address: str = ""


@dataclass(frozen=True)
class ValidatorSetInfo:
    keyset_id: int
    threshold: int
    group_public_key: bytes
    validators: tuple[ValidatorInfo, ...]
    self_index: int = -1


@dataclass(frozen=True)
class ParametersInfo:
    version: int
    activation_epoch: int
    params_hash: bytes
    encoded: bytes
    params_json: str


@dataclass(frozen=True)
class ProposalInfo:
    id: int
    status: str  # open | passed | rejected | executed | expired | invalid
    proposer: str
    activation_epoch: int
    params_hash: bytes
    votes_for: int
    votes_against: int
    description: str = ""


@dataclass(frozen=True)
class ChainStatusInfo:
    chain_id: int
    head_block: int
    pinned_block: int
    healthy: bool
    rpc_errors: int = 0


@dataclass(frozen=True)
class PeerInfo:
    peer_id: str
    addrs: tuple[str, ...] = ()
    validator_index: int = -1


@dataclass(frozen=True)
class KeySetStatusInfo:
    keyset_id: int
    index: int  # -1: not a member
    n: int
    threshold: int
    has_share: bool
    pending: bool


@dataclass(frozen=True)
class ReshareStatusInfo:
    proposal_id: int
    keyset_id: int
    state: str  # running | done | failed
    activation_epoch: int
    attempts: int
    error: str


@dataclass(frozen=True)
class NodeStatusInfo:
    network_id: int
    validator_index: int
    peer_id: str
    syncing: bool
    chains: tuple[ChainStatusInfo, ...] = ()
    api_address: str = ""
    metrics_address: str = ""
    keysets: tuple[KeySetStatusInfo, ...] = ()
    reshares: tuple[ReshareStatusInfo, ...] = ()
    epochs_skipped: tuple[tuple[str, int], ...] = ()  # (reason, rounds) since the validator started
    last_skipped: tuple[int, str] | None = None  # (epoch, reason)


class NodeSources(Protocol):
    def get_validator_set(self) -> ValidatorSetInfo: ...
    def get_parameters(self, epoch: int | None) -> ParametersInfo | None: ...
    def list_proposals(self, from_id: int, limit: int) -> list[ProposalInfo]: ...
    def is_syncing(self) -> bool: ...
    def get_status(self) -> NodeStatusInfo: ...
    def list_peers(self) -> list[PeerInfo]: ...
    def request_reread(self, epoch: int | None, reason: str) -> tuple[bool, str]: ...


def get_default_parameters() -> ParametersInfo | None:
    """The genesis parameter set (RRA-1) from the governance schedule, when those modules exist."""
    try:
        from governance.params import compute_params_hash
        from risk.params import RRA1, encode_params
    except ImportError:
        return None
    encoded = encode_params(RRA1)
    as_dict = getattr(RRA1, "to_dict", None)
    text = json.dumps(as_dict() if callable(as_dict) else repr(RRA1), sort_keys=True, default=str)
    return ParametersInfo(version=1, activation_epoch=0, params_hash=compute_params_hash(RRA1),
                          encoded=encoded, params_json=text)


@dataclass
class StaticSources:
    """Fixed sources; `reread_requests` records accepted re-read requests (bounded)."""

    validator_set: ValidatorSetInfo = field(default_factory=lambda: ValidatorSetInfo(0, 0, b"", ()))
    parameters: tuple[ParametersInfo, ...] = ()
    proposals: tuple[ProposalInfo, ...] = ()
    status: NodeStatusInfo = field(default_factory=lambda: NodeStatusInfo(0, -1, "", False))
    peers: tuple[PeerInfo, ...] = ()
    syncing: bool = False
    reread_requests: list[tuple[int | None, str, float]] = field(default_factory=list)
    max_reread_requests: int = 100
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def get_validator_set(self) -> ValidatorSetInfo:
        return self.validator_set

    def get_parameters(self, epoch: int | None) -> ParametersInfo | None:
        active = [p for p in self.parameters if epoch is None or p.activation_epoch <= epoch]
        return max(active, key=lambda p: p.activation_epoch) if active else None

    def list_proposals(self, from_id: int, limit: int) -> list[ProposalInfo]:
        return sorted((p for p in self.proposals if p.id >= from_id), key=lambda p: p.id)[:limit]

    def is_syncing(self) -> bool:
        return self.syncing

    def get_status(self) -> NodeStatusInfo:
        return self.status

    def list_peers(self) -> list[PeerInfo]:
        return list(self.peers)

    def request_reread(self, epoch: int | None, reason: str) -> tuple[bool, str]:
        with self._lock:
            if len(self.reread_requests) >= self.max_reread_requests:
                return False, "too many pending re-read requests"
            self.reread_requests.append((epoch, reason[:MAX_REASON_CHARS], time.time()))
        return True, "queued"
