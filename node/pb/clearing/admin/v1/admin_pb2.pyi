from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ChainStatus(_message.Message):
    __slots__ = ("chain_id", "head_block", "pinned_block", "healthy", "rpc_errors")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    HEAD_BLOCK_FIELD_NUMBER: _ClassVar[int]
    PINNED_BLOCK_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    RPC_ERRORS_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    head_block: int
    pinned_block: int
    healthy: bool
    rpc_errors: int
    def __init__(self, chain_id: _Optional[int] = ..., head_block: _Optional[int] = ..., pinned_block: _Optional[int] = ..., healthy: _Optional[bool] = ..., rpc_errors: _Optional[int] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ("version", "network_id", "validator_index", "peer_id", "has_latest_state", "latest_epoch", "has_last_signed", "last_signed_epoch", "syncing", "peer_count", "uptime_seconds", "chains", "api_address", "metrics_address", "evidence_count", "keysets", "reshares", "epochs_skipped", "has_last_skipped", "last_skipped_epoch", "last_skipped_reason")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    NETWORK_ID_FIELD_NUMBER: _ClassVar[int]
    VALIDATOR_INDEX_FIELD_NUMBER: _ClassVar[int]
    PEER_ID_FIELD_NUMBER: _ClassVar[int]
    HAS_LATEST_STATE_FIELD_NUMBER: _ClassVar[int]
    LATEST_EPOCH_FIELD_NUMBER: _ClassVar[int]
    HAS_LAST_SIGNED_FIELD_NUMBER: _ClassVar[int]
    LAST_SIGNED_EPOCH_FIELD_NUMBER: _ClassVar[int]
    SYNCING_FIELD_NUMBER: _ClassVar[int]
    PEER_COUNT_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CHAINS_FIELD_NUMBER: _ClassVar[int]
    API_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    METRICS_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_COUNT_FIELD_NUMBER: _ClassVar[int]
    KEYSETS_FIELD_NUMBER: _ClassVar[int]
    RESHARES_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    HAS_LAST_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    LAST_SKIPPED_EPOCH_FIELD_NUMBER: _ClassVar[int]
    LAST_SKIPPED_REASON_FIELD_NUMBER: _ClassVar[int]
    version: str
    network_id: int
    validator_index: int
    peer_id: str
    has_latest_state: bool
    latest_epoch: int
    has_last_signed: bool
    last_signed_epoch: int
    syncing: bool
    peer_count: int
    uptime_seconds: int
    chains: _containers.RepeatedCompositeFieldContainer[ChainStatus]
    api_address: str
    metrics_address: str
    evidence_count: int
    keysets: _containers.RepeatedCompositeFieldContainer[KeySetStatus]
    reshares: _containers.RepeatedCompositeFieldContainer[ReshareStatus]
    epochs_skipped: _containers.RepeatedCompositeFieldContainer[EpochSkips]
    has_last_skipped: bool
    last_skipped_epoch: int
    last_skipped_reason: str
    def __init__(self, version: _Optional[str] = ..., network_id: _Optional[int] = ..., validator_index: _Optional[int] = ..., peer_id: _Optional[str] = ..., has_latest_state: _Optional[bool] = ..., latest_epoch: _Optional[int] = ..., has_last_signed: _Optional[bool] = ..., last_signed_epoch: _Optional[int] = ..., syncing: _Optional[bool] = ..., peer_count: _Optional[int] = ..., uptime_seconds: _Optional[int] = ..., chains: _Optional[_Iterable[_Union[ChainStatus, _Mapping]]] = ..., api_address: _Optional[str] = ..., metrics_address: _Optional[str] = ..., evidence_count: _Optional[int] = ..., keysets: _Optional[_Iterable[_Union[KeySetStatus, _Mapping]]] = ..., reshares: _Optional[_Iterable[_Union[ReshareStatus, _Mapping]]] = ..., epochs_skipped: _Optional[_Iterable[_Union[EpochSkips, _Mapping]]] = ..., has_last_skipped: _Optional[bool] = ..., last_skipped_epoch: _Optional[int] = ..., last_skipped_reason: _Optional[str] = ...) -> None: ...

class EpochSkips(_message.Message):
    __slots__ = ("reason", "count")
    REASON_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    reason: str
    count: int
    def __init__(self, reason: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class KeySetStatus(_message.Message):
    __slots__ = ("keyset_id", "index", "n", "threshold", "has_share", "pending")
    KEYSET_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    HAS_SHARE_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    keyset_id: int
    index: int
    n: int
    threshold: int
    has_share: bool
    pending: bool
    def __init__(self, keyset_id: _Optional[int] = ..., index: _Optional[int] = ..., n: _Optional[int] = ..., threshold: _Optional[int] = ..., has_share: _Optional[bool] = ..., pending: _Optional[bool] = ...) -> None: ...

class ReshareStatus(_message.Message):
    __slots__ = ("proposal_id", "keyset_id", "state", "activation_epoch", "attempts", "error")
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    KEYSET_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_EPOCH_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    proposal_id: int
    keyset_id: int
    state: str
    activation_epoch: int
    attempts: int
    error: str
    def __init__(self, proposal_id: _Optional[int] = ..., keyset_id: _Optional[int] = ..., state: _Optional[str] = ..., activation_epoch: _Optional[int] = ..., attempts: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class Peer(_message.Message):
    __slots__ = ("peer_id", "addrs", "validator_index")
    PEER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRS_FIELD_NUMBER: _ClassVar[int]
    VALIDATOR_INDEX_FIELD_NUMBER: _ClassVar[int]
    peer_id: str
    addrs: _containers.RepeatedScalarFieldContainer[str]
    validator_index: int
    def __init__(self, peer_id: _Optional[str] = ..., addrs: _Optional[_Iterable[str]] = ..., validator_index: _Optional[int] = ...) -> None: ...

class ListPeersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPeersResponse(_message.Message):
    __slots__ = ("peers",)
    PEERS_FIELD_NUMBER: _ClassVar[int]
    peers: _containers.RepeatedCompositeFieldContainer[Peer]
    def __init__(self, peers: _Optional[_Iterable[_Union[Peer, _Mapping]]] = ...) -> None: ...

class TriggerRereadRequest(_message.Message):
    __slots__ = ("epoch", "reason")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    reason: str
    def __init__(self, epoch: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class TriggerRereadResponse(_message.Message):
    __slots__ = ("accepted", "detail")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    detail: str
    def __init__(self, accepted: _Optional[bool] = ..., detail: _Optional[str] = ...) -> None: ...

class Evidence(_message.Message):
    __slots__ = ("kind", "epoch", "signer_index", "first", "second", "note")
    KIND_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SIGNER_INDEX_FIELD_NUMBER: _ClassVar[int]
    FIRST_FIELD_NUMBER: _ClassVar[int]
    SECOND_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    kind: str
    epoch: int
    signer_index: int
    first: bytes
    second: bytes
    note: str
    def __init__(self, kind: _Optional[str] = ..., epoch: _Optional[int] = ..., signer_index: _Optional[int] = ..., first: _Optional[bytes] = ..., second: _Optional[bytes] = ..., note: _Optional[str] = ...) -> None: ...

class ListEvidenceRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class ListEvidenceResponse(_message.Message):
    __slots__ = ("evidence",)
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    evidence: _containers.RepeatedCompositeFieldContainer[Evidence]
    def __init__(self, evidence: _Optional[_Iterable[_Union[Evidence, _Mapping]]] = ...) -> None: ...
