from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ResponseStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESPONSE_STATUS_UNSPECIFIED: _ClassVar[ResponseStatus]
    RESPONSE_STATUS_SUCCESS: _ClassVar[ResponseStatus]
    RESPONSE_STATUS_COMPLAINT: _ClassVar[ResponseStatus]
RESPONSE_STATUS_UNSPECIFIED: ResponseStatus
RESPONSE_STATUS_SUCCESS: ResponseStatus
RESPONSE_STATUS_COMPLAINT: ResponseStatus

class DkgPacket(_message.Message):
    __slots__ = ("deal", "response", "justification")
    DEAL_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    JUSTIFICATION_FIELD_NUMBER: _ClassVar[int]
    deal: DealBundle
    response: ResponseBundle
    justification: JustificationBundle
    def __init__(self, deal: _Optional[_Union[DealBundle, _Mapping]] = ..., response: _Optional[_Union[ResponseBundle, _Mapping]] = ..., justification: _Optional[_Union[JustificationBundle, _Mapping]] = ...) -> None: ...

class DealBundle(_message.Message):
    __slots__ = ("session_id", "epoch", "dealer_index", "commitments", "ephemeral_public_key", "shares")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    DEALER_INDEX_FIELD_NUMBER: _ClassVar[int]
    COMMITMENTS_FIELD_NUMBER: _ClassVar[int]
    EPHEMERAL_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    SHARES_FIELD_NUMBER: _ClassVar[int]
    session_id: bytes
    epoch: int
    dealer_index: int
    commitments: _containers.RepeatedScalarFieldContainer[bytes]
    ephemeral_public_key: bytes
    shares: _containers.RepeatedCompositeFieldContainer[EncryptedShare]
    def __init__(self, session_id: _Optional[bytes] = ..., epoch: _Optional[int] = ..., dealer_index: _Optional[int] = ..., commitments: _Optional[_Iterable[bytes]] = ..., ephemeral_public_key: _Optional[bytes] = ..., shares: _Optional[_Iterable[_Union[EncryptedShare, _Mapping]]] = ...) -> None: ...

class EncryptedShare(_message.Message):
    __slots__ = ("recipient_index", "nonce", "ciphertext")
    RECIPIENT_INDEX_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    recipient_index: int
    nonce: bytes
    ciphertext: bytes
    def __init__(self, recipient_index: _Optional[int] = ..., nonce: _Optional[bytes] = ..., ciphertext: _Optional[bytes] = ...) -> None: ...

class Response(_message.Message):
    __slots__ = ("dealer_index", "status")
    DEALER_INDEX_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    dealer_index: int
    status: ResponseStatus
    def __init__(self, dealer_index: _Optional[int] = ..., status: _Optional[_Union[ResponseStatus, str]] = ...) -> None: ...

class ResponseBundle(_message.Message):
    __slots__ = ("session_id", "epoch", "responder_index", "responses")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    RESPONDER_INDEX_FIELD_NUMBER: _ClassVar[int]
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    session_id: bytes
    epoch: int
    responder_index: int
    responses: _containers.RepeatedCompositeFieldContainer[Response]
    def __init__(self, session_id: _Optional[bytes] = ..., epoch: _Optional[int] = ..., responder_index: _Optional[int] = ..., responses: _Optional[_Iterable[_Union[Response, _Mapping]]] = ...) -> None: ...

class Justification(_message.Message):
    __slots__ = ("recipient_index", "share")
    RECIPIENT_INDEX_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    recipient_index: int
    share: bytes
    def __init__(self, recipient_index: _Optional[int] = ..., share: _Optional[bytes] = ...) -> None: ...

class JustificationBundle(_message.Message):
    __slots__ = ("session_id", "epoch", "dealer_index", "justifications")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    DEALER_INDEX_FIELD_NUMBER: _ClassVar[int]
    JUSTIFICATIONS_FIELD_NUMBER: _ClassVar[int]
    session_id: bytes
    epoch: int
    dealer_index: int
    justifications: _containers.RepeatedCompositeFieldContainer[Justification]
    def __init__(self, session_id: _Optional[bytes] = ..., epoch: _Optional[int] = ..., dealer_index: _Optional[int] = ..., justifications: _Optional[_Iterable[_Union[Justification, _Mapping]]] = ...) -> None: ...

class KeySetRecord(_message.Message):
    __slots__ = ("keyset_id", "session_id", "index", "threshold", "holders", "commitments", "qualified")
    KEYSET_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    HOLDERS_FIELD_NUMBER: _ClassVar[int]
    COMMITMENTS_FIELD_NUMBER: _ClassVar[int]
    QUALIFIED_FIELD_NUMBER: _ClassVar[int]
    keyset_id: int
    session_id: bytes
    index: int
    threshold: int
    holders: _containers.RepeatedScalarFieldContainer[int]
    commitments: _containers.RepeatedScalarFieldContainer[bytes]
    qualified: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, keyset_id: _Optional[int] = ..., session_id: _Optional[bytes] = ..., index: _Optional[int] = ..., threshold: _Optional[int] = ..., holders: _Optional[_Iterable[int]] = ..., commitments: _Optional[_Iterable[bytes]] = ..., qualified: _Optional[_Iterable[int]] = ...) -> None: ...
