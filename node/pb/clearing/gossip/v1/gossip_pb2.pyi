from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MessageKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MESSAGE_KIND_UNSPECIFIED: _ClassVar[MessageKind]
    MESSAGE_KIND_HEARTBEAT: _ClassVar[MessageKind]
    MESSAGE_KIND_PARTIAL_SIGNATURE: _ClassVar[MessageKind]
    MESSAGE_KIND_SIGNED_STATE: _ClassVar[MessageKind]
    MESSAGE_KIND_DKG: _ClassVar[MessageKind]
    MESSAGE_KIND_EQUIVOCATION_EVIDENCE: _ClassVar[MessageKind]
    MESSAGE_KIND_STATE_REQUEST: _ClassVar[MessageKind]
    MESSAGE_KIND_STATE_RESPONSE: _ClassVar[MessageKind]
MESSAGE_KIND_UNSPECIFIED: MessageKind
MESSAGE_KIND_HEARTBEAT: MessageKind
MESSAGE_KIND_PARTIAL_SIGNATURE: MessageKind
MESSAGE_KIND_SIGNED_STATE: MessageKind
MESSAGE_KIND_DKG: MessageKind
MESSAGE_KIND_EQUIVOCATION_EVIDENCE: MessageKind
MESSAGE_KIND_STATE_REQUEST: MessageKind
MESSAGE_KIND_STATE_RESPONSE: MessageKind

class SignedEnvelope(_message.Message):
    __slots__ = ("version", "kind", "payload", "signer_index", "signature", "network_id", "keyset_id")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SIGNER_INDEX_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    NETWORK_ID_FIELD_NUMBER: _ClassVar[int]
    KEYSET_ID_FIELD_NUMBER: _ClassVar[int]
    version: int
    kind: MessageKind
    payload: bytes
    signer_index: int
    signature: bytes
    network_id: int
    keyset_id: int
    def __init__(self, version: _Optional[int] = ..., kind: _Optional[_Union[MessageKind, str]] = ..., payload: _Optional[bytes] = ..., signer_index: _Optional[int] = ..., signature: _Optional[bytes] = ..., network_id: _Optional[int] = ..., keyset_id: _Optional[int] = ...) -> None: ...

class ChainHeight(_message.Message):
    __slots__ = ("chain_id", "number", "block_hash")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    BLOCK_HASH_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    number: int
    block_hash: bytes
    def __init__(self, chain_id: _Optional[int] = ..., number: _Optional[int] = ..., block_hash: _Optional[bytes] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("validator_index", "peer_id", "pinned", "epoch", "time_ms", "last_signed_epoch")
    VALIDATOR_INDEX_FIELD_NUMBER: _ClassVar[int]
    PEER_ID_FIELD_NUMBER: _ClassVar[int]
    PINNED_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_SIGNED_EPOCH_FIELD_NUMBER: _ClassVar[int]
    validator_index: int
    peer_id: bytes
    pinned: _containers.RepeatedCompositeFieldContainer[ChainHeight]
    epoch: int
    time_ms: int
    last_signed_epoch: int
    def __init__(self, validator_index: _Optional[int] = ..., peer_id: _Optional[bytes] = ..., pinned: _Optional[_Iterable[_Union[ChainHeight, _Mapping]]] = ..., epoch: _Optional[int] = ..., time_ms: _Optional[int] = ..., last_signed_epoch: _Optional[int] = ...) -> None: ...

class PartialSignature(_message.Message):
    __slots__ = ("epoch", "digest", "partial", "signer_index")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    SIGNER_INDEX_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    digest: bytes
    partial: bytes
    signer_index: int
    def __init__(self, epoch: _Optional[int] = ..., digest: _Optional[bytes] = ..., partial: _Optional[bytes] = ..., signer_index: _Optional[int] = ...) -> None: ...

class SignedStateMsg(_message.Message):
    __slots__ = ("network_id", "keyset_id", "epoch", "pins", "inputs_digest", "params_hash", "root", "leaf_count", "digest", "signature", "signers")
    NETWORK_ID_FIELD_NUMBER: _ClassVar[int]
    KEYSET_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    PINS_FIELD_NUMBER: _ClassVar[int]
    INPUTS_DIGEST_FIELD_NUMBER: _ClassVar[int]
    PARAMS_HASH_FIELD_NUMBER: _ClassVar[int]
    ROOT_FIELD_NUMBER: _ClassVar[int]
    LEAF_COUNT_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SIGNERS_FIELD_NUMBER: _ClassVar[int]
    network_id: int
    keyset_id: int
    epoch: int
    pins: _containers.RepeatedCompositeFieldContainer[ChainHeight]
    inputs_digest: bytes
    params_hash: bytes
    root: bytes
    leaf_count: int
    digest: bytes
    signature: bytes
    signers: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, network_id: _Optional[int] = ..., keyset_id: _Optional[int] = ..., epoch: _Optional[int] = ..., pins: _Optional[_Iterable[_Union[ChainHeight, _Mapping]]] = ..., inputs_digest: _Optional[bytes] = ..., params_hash: _Optional[bytes] = ..., root: _Optional[bytes] = ..., leaf_count: _Optional[int] = ..., digest: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., signers: _Optional[_Iterable[int]] = ...) -> None: ...

class DkgMessage(_message.Message):
    __slots__ = ("session_id", "sender_index", "type_name", "body")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_INDEX_FIELD_NUMBER: _ClassVar[int]
    TYPE_NAME_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    session_id: int
    sender_index: int
    type_name: str
    body: bytes
    def __init__(self, session_id: _Optional[int] = ..., sender_index: _Optional[int] = ..., type_name: _Optional[str] = ..., body: _Optional[bytes] = ...) -> None: ...

class EquivocationEvidence(_message.Message):
    __slots__ = ("epoch", "signer_index", "first", "second")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SIGNER_INDEX_FIELD_NUMBER: _ClassVar[int]
    FIRST_FIELD_NUMBER: _ClassVar[int]
    SECOND_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    signer_index: int
    first: bytes
    second: bytes
    def __init__(self, epoch: _Optional[int] = ..., signer_index: _Optional[int] = ..., first: _Optional[bytes] = ..., second: _Optional[bytes] = ...) -> None: ...

class StateRequest(_message.Message):
    __slots__ = ("from_epoch", "limit")
    FROM_EPOCH_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    from_epoch: int
    limit: int
    def __init__(self, from_epoch: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class StateResponse(_message.Message):
    __slots__ = ("states",)
    STATES_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedCompositeFieldContainer[SignedStateMsg]
    def __init__(self, states: _Optional[_Iterable[_Union[SignedStateMsg, _Mapping]]] = ...) -> None: ...
