from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProposalStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROPOSAL_STATUS_UNSPECIFIED: _ClassVar[ProposalStatus]
    PROPOSAL_STATUS_OPEN: _ClassVar[ProposalStatus]
    PROPOSAL_STATUS_PASSED: _ClassVar[ProposalStatus]
    PROPOSAL_STATUS_REJECTED: _ClassVar[ProposalStatus]
    PROPOSAL_STATUS_EXECUTED: _ClassVar[ProposalStatus]
    PROPOSAL_STATUS_EXPIRED: _ClassVar[ProposalStatus]
    PROPOSAL_STATUS_INVALID: _ClassVar[ProposalStatus]
PROPOSAL_STATUS_UNSPECIFIED: ProposalStatus
PROPOSAL_STATUS_OPEN: ProposalStatus
PROPOSAL_STATUS_PASSED: ProposalStatus
PROPOSAL_STATUS_REJECTED: ProposalStatus
PROPOSAL_STATUS_EXECUTED: ProposalStatus
PROPOSAL_STATUS_EXPIRED: ProposalStatus
PROPOSAL_STATUS_INVALID: ProposalStatus

class ChainPin(_message.Message):
    __slots__ = ("chain_id", "block_number", "block_hash")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    BLOCK_NUMBER_FIELD_NUMBER: _ClassVar[int]
    BLOCK_HASH_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    block_number: int
    block_hash: bytes
    def __init__(self, chain_id: _Optional[int] = ..., block_number: _Optional[int] = ..., block_hash: _Optional[bytes] = ...) -> None: ...

class SignedState(_message.Message):
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
    pins: _containers.RepeatedCompositeFieldContainer[ChainPin]
    inputs_digest: bytes
    params_hash: bytes
    root: bytes
    leaf_count: int
    digest: bytes
    signature: bytes
    signers: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, network_id: _Optional[int] = ..., keyset_id: _Optional[int] = ..., epoch: _Optional[int] = ..., pins: _Optional[_Iterable[_Union[ChainPin, _Mapping]]] = ..., inputs_digest: _Optional[bytes] = ..., params_hash: _Optional[bytes] = ..., root: _Optional[bytes] = ..., leaf_count: _Optional[int] = ..., digest: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., signers: _Optional[_Iterable[int]] = ...) -> None: ...

class ChainCollateral(_message.Message):
    __slots__ = ("chain_id", "asset", "amount")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    asset: str
    amount: str
    def __init__(self, chain_id: _Optional[int] = ..., asset: _Optional[str] = ..., amount: _Optional[str] = ...) -> None: ...

class AccountMargin(_message.Message):
    __slots__ = ("account", "epoch", "equity_micro_usd", "initial_margin_micro_usd", "maintenance_margin_micro_usd", "free_collateral_micro_usd", "health_bps", "health_unbounded", "liquidatable", "risk_array_micro_usd", "worst_scenario", "collateral", "approved_withdrawals")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    EQUITY_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    INITIAL_MARGIN_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    MAINTENANCE_MARGIN_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    FREE_COLLATERAL_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    HEALTH_BPS_FIELD_NUMBER: _ClassVar[int]
    HEALTH_UNBOUNDED_FIELD_NUMBER: _ClassVar[int]
    LIQUIDATABLE_FIELD_NUMBER: _ClassVar[int]
    RISK_ARRAY_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    WORST_SCENARIO_FIELD_NUMBER: _ClassVar[int]
    COLLATERAL_FIELD_NUMBER: _ClassVar[int]
    APPROVED_WITHDRAWALS_FIELD_NUMBER: _ClassVar[int]
    account: str
    epoch: int
    equity_micro_usd: int
    initial_margin_micro_usd: int
    maintenance_margin_micro_usd: int
    free_collateral_micro_usd: int
    health_bps: int
    health_unbounded: bool
    liquidatable: bool
    risk_array_micro_usd: _containers.RepeatedScalarFieldContainer[int]
    worst_scenario: int
    collateral: _containers.RepeatedCompositeFieldContainer[ChainCollateral]
    approved_withdrawals: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, account: _Optional[str] = ..., epoch: _Optional[int] = ..., equity_micro_usd: _Optional[int] = ..., initial_margin_micro_usd: _Optional[int] = ..., maintenance_margin_micro_usd: _Optional[int] = ..., free_collateral_micro_usd: _Optional[int] = ..., health_bps: _Optional[int] = ..., health_unbounded: _Optional[bool] = ..., liquidatable: _Optional[bool] = ..., risk_array_micro_usd: _Optional[_Iterable[int]] = ..., worst_scenario: _Optional[int] = ..., collateral: _Optional[_Iterable[_Union[ChainCollateral, _Mapping]]] = ..., approved_withdrawals: _Optional[_Iterable[bytes]] = ...) -> None: ...

class MarginReport(_message.Message):
    __slots__ = ("margin", "leaf", "leaf_index", "proof", "state")
    MARGIN_FIELD_NUMBER: _ClassVar[int]
    LEAF_FIELD_NUMBER: _ClassVar[int]
    LEAF_INDEX_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    margin: AccountMargin
    leaf: bytes
    leaf_index: int
    proof: _containers.RepeatedScalarFieldContainer[bytes]
    state: SignedState
    def __init__(self, margin: _Optional[_Union[AccountMargin, _Mapping]] = ..., leaf: _Optional[bytes] = ..., leaf_index: _Optional[int] = ..., proof: _Optional[_Iterable[bytes]] = ..., state: _Optional[_Union[SignedState, _Mapping]] = ...) -> None: ...

class GetMarginRequest(_message.Message):
    __slots__ = ("account", "epoch")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    account: str
    epoch: int
    def __init__(self, account: _Optional[str] = ..., epoch: _Optional[int] = ...) -> None: ...

class GetMarginResponse(_message.Message):
    __slots__ = ("report",)
    REPORT_FIELD_NUMBER: _ClassVar[int]
    report: MarginReport
    def __init__(self, report: _Optional[_Union[MarginReport, _Mapping]] = ...) -> None: ...

class GetSignedStateRequest(_message.Message):
    __slots__ = ("epoch",)
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    def __init__(self, epoch: _Optional[int] = ...) -> None: ...

class GetSignedStateResponse(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: SignedState
    def __init__(self, state: _Optional[_Union[SignedState, _Mapping]] = ...) -> None: ...

class StreamMarginUpdatesRequest(_message.Message):
    __slots__ = ("accounts", "send_current")
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    SEND_CURRENT_FIELD_NUMBER: _ClassVar[int]
    accounts: _containers.RepeatedScalarFieldContainer[str]
    send_current: bool
    def __init__(self, accounts: _Optional[_Iterable[str]] = ..., send_current: _Optional[bool] = ...) -> None: ...

class StreamMarginUpdatesResponse(_message.Message):
    __slots__ = ("report",)
    REPORT_FIELD_NUMBER: _ClassVar[int]
    report: MarginReport
    def __init__(self, report: _Optional[_Union[MarginReport, _Mapping]] = ...) -> None: ...

class WhatIfPosition(_message.Message):
    __slots__ = ("kind", "underlying", "days_to_expiry", "strike", "right", "vol", "quantity", "unrealised_pnl", "funding")
    KIND_FIELD_NUMBER: _ClassVar[int]
    UNDERLYING_FIELD_NUMBER: _ClassVar[int]
    DAYS_TO_EXPIRY_FIELD_NUMBER: _ClassVar[int]
    STRIKE_FIELD_NUMBER: _ClassVar[int]
    RIGHT_FIELD_NUMBER: _ClassVar[int]
    VOL_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    UNREALISED_PNL_FIELD_NUMBER: _ClassVar[int]
    FUNDING_FIELD_NUMBER: _ClassVar[int]
    kind: str
    underlying: str
    days_to_expiry: str
    strike: str
    right: str
    vol: str
    quantity: str
    unrealised_pnl: str
    funding: str
    def __init__(self, kind: _Optional[str] = ..., underlying: _Optional[str] = ..., days_to_expiry: _Optional[str] = ..., strike: _Optional[str] = ..., right: _Optional[str] = ..., vol: _Optional[str] = ..., quantity: _Optional[str] = ..., unrealised_pnl: _Optional[str] = ..., funding: _Optional[str] = ...) -> None: ...

class WhatIfSvi(_message.Message):
    __slots__ = ("a", "b", "rho", "m", "sigma", "forward", "tau")
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    RHO_FIELD_NUMBER: _ClassVar[int]
    M_FIELD_NUMBER: _ClassVar[int]
    SIGMA_FIELD_NUMBER: _ClassVar[int]
    FORWARD_FIELD_NUMBER: _ClassVar[int]
    TAU_FIELD_NUMBER: _ClassVar[int]
    a: str
    b: str
    rho: str
    m: str
    sigma: str
    forward: str
    tau: str
    def __init__(self, a: _Optional[str] = ..., b: _Optional[str] = ..., rho: _Optional[str] = ..., m: _Optional[str] = ..., sigma: _Optional[str] = ..., forward: _Optional[str] = ..., tau: _Optional[str] = ...) -> None: ...

class WhatIfForward(_message.Message):
    __slots__ = ("underlying", "days_to_expiry", "price", "fixed", "rate", "confidence", "svi")
    UNDERLYING_FIELD_NUMBER: _ClassVar[int]
    DAYS_TO_EXPIRY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    FIXED_FIELD_NUMBER: _ClassVar[int]
    RATE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    SVI_FIELD_NUMBER: _ClassVar[int]
    underlying: str
    days_to_expiry: str
    price: str
    fixed: str
    rate: str
    confidence: str
    svi: WhatIfSvi
    def __init__(self, underlying: _Optional[str] = ..., days_to_expiry: _Optional[str] = ..., price: _Optional[str] = ..., fixed: _Optional[str] = ..., rate: _Optional[str] = ..., confidence: _Optional[str] = ..., svi: _Optional[_Union[WhatIfSvi, _Mapping]] = ...) -> None: ...

class WhatIfPerp(_message.Message):
    __slots__ = ("mark", "confidence")
    MARK_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    mark: str
    confidence: str
    def __init__(self, mark: _Optional[str] = ..., confidence: _Optional[str] = ...) -> None: ...

class WhatIfMarket(_message.Message):
    __slots__ = ("spot", "forwards", "asset_prices", "spot_confidence", "perps", "asset_confidence", "stable_price")
    class SpotEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class AssetPricesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class SpotConfidenceEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class PerpsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: WhatIfPerp
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[WhatIfPerp, _Mapping]] = ...) -> None: ...
    class AssetConfidenceEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SPOT_FIELD_NUMBER: _ClassVar[int]
    FORWARDS_FIELD_NUMBER: _ClassVar[int]
    ASSET_PRICES_FIELD_NUMBER: _ClassVar[int]
    SPOT_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    PERPS_FIELD_NUMBER: _ClassVar[int]
    ASSET_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    STABLE_PRICE_FIELD_NUMBER: _ClassVar[int]
    spot: _containers.ScalarMap[str, str]
    forwards: _containers.RepeatedCompositeFieldContainer[WhatIfForward]
    asset_prices: _containers.ScalarMap[str, str]
    spot_confidence: _containers.ScalarMap[str, str]
    perps: _containers.MessageMap[str, WhatIfPerp]
    asset_confidence: _containers.ScalarMap[str, str]
    stable_price: str
    def __init__(self, spot: _Optional[_Mapping[str, str]] = ..., forwards: _Optional[_Iterable[_Union[WhatIfForward, _Mapping]]] = ..., asset_prices: _Optional[_Mapping[str, str]] = ..., spot_confidence: _Optional[_Mapping[str, str]] = ..., perps: _Optional[_Mapping[str, WhatIfPerp]] = ..., asset_confidence: _Optional[_Mapping[str, str]] = ..., stable_price: _Optional[str] = ...) -> None: ...

class WhatIf(_message.Message):
    __slots__ = ("market", "positions", "collateral", "params_json", "version", "cash")
    class CollateralEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MARKET_FIELD_NUMBER: _ClassVar[int]
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    COLLATERAL_FIELD_NUMBER: _ClassVar[int]
    PARAMS_JSON_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CASH_FIELD_NUMBER: _ClassVar[int]
    market: WhatIfMarket
    positions: _containers.RepeatedCompositeFieldContainer[WhatIfPosition]
    collateral: _containers.ScalarMap[str, str]
    params_json: str
    version: int
    cash: str
    def __init__(self, market: _Optional[_Union[WhatIfMarket, _Mapping]] = ..., positions: _Optional[_Iterable[_Union[WhatIfPosition, _Mapping]]] = ..., collateral: _Optional[_Mapping[str, str]] = ..., params_json: _Optional[str] = ..., version: _Optional[int] = ..., cash: _Optional[str] = ...) -> None: ...

class SimulateMarginRequest(_message.Message):
    __slots__ = ("whatif_json", "whatif")
    WHATIF_JSON_FIELD_NUMBER: _ClassVar[int]
    WHATIF_FIELD_NUMBER: _ClassVar[int]
    whatif_json: str
    whatif: WhatIf
    def __init__(self, whatif_json: _Optional[str] = ..., whatif: _Optional[_Union[WhatIf, _Mapping]] = ...) -> None: ...

class SimulateMarginResponse(_message.Message):
    __slots__ = ("result_json", "initial_margin_micro_usd", "maintenance_margin_micro_usd", "equity_micro_usd", "free_collateral_micro_usd", "liquidatable", "worst_scenario", "scenario_pnl", "contingencies")
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    INITIAL_MARGIN_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    MAINTENANCE_MARGIN_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    EQUITY_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    FREE_COLLATERAL_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    LIQUIDATABLE_FIELD_NUMBER: _ClassVar[int]
    WORST_SCENARIO_FIELD_NUMBER: _ClassVar[int]
    SCENARIO_PNL_FIELD_NUMBER: _ClassVar[int]
    CONTINGENCIES_FIELD_NUMBER: _ClassVar[int]
    result_json: str
    initial_margin_micro_usd: int
    maintenance_margin_micro_usd: int
    equity_micro_usd: int
    free_collateral_micro_usd: int
    liquidatable: bool
    worst_scenario: int
    scenario_pnl: _containers.RepeatedCompositeFieldContainer[WhatIfAmount]
    contingencies: _containers.RepeatedCompositeFieldContainer[WhatIfAmount]
    def __init__(self, result_json: _Optional[str] = ..., initial_margin_micro_usd: _Optional[int] = ..., maintenance_margin_micro_usd: _Optional[int] = ..., equity_micro_usd: _Optional[int] = ..., free_collateral_micro_usd: _Optional[int] = ..., liquidatable: _Optional[bool] = ..., worst_scenario: _Optional[int] = ..., scenario_pnl: _Optional[_Iterable[_Union[WhatIfAmount, _Mapping]]] = ..., contingencies: _Optional[_Iterable[_Union[WhatIfAmount, _Mapping]]] = ...) -> None: ...

class WhatIfAmount(_message.Message):
    __slots__ = ("name", "amount_micro_usd")
    NAME_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    name: str
    amount_micro_usd: int
    def __init__(self, name: _Optional[str] = ..., amount_micro_usd: _Optional[int] = ...) -> None: ...

class Validator(_message.Message):
    __slots__ = ("index", "peer_id", "public_key_share", "address", "is_self")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    PEER_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_SHARE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    IS_SELF_FIELD_NUMBER: _ClassVar[int]
    index: int
    peer_id: str
    public_key_share: bytes
    address: str
    is_self: bool
    def __init__(self, index: _Optional[int] = ..., peer_id: _Optional[str] = ..., public_key_share: _Optional[bytes] = ..., address: _Optional[str] = ..., is_self: _Optional[bool] = ...) -> None: ...

class ListValidatorsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListValidatorsResponse(_message.Message):
    __slots__ = ("keyset_id", "threshold", "group_public_key", "validators")
    KEYSET_ID_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    GROUP_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    VALIDATORS_FIELD_NUMBER: _ClassVar[int]
    keyset_id: int
    threshold: int
    group_public_key: bytes
    validators: _containers.RepeatedCompositeFieldContainer[Validator]
    def __init__(self, keyset_id: _Optional[int] = ..., threshold: _Optional[int] = ..., group_public_key: _Optional[bytes] = ..., validators: _Optional[_Iterable[_Union[Validator, _Mapping]]] = ...) -> None: ...

class GetParametersRequest(_message.Message):
    __slots__ = ("epoch",)
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    def __init__(self, epoch: _Optional[int] = ...) -> None: ...

class GetParametersResponse(_message.Message):
    __slots__ = ("version", "activation_epoch", "params_hash", "encoded", "params_json")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_EPOCH_FIELD_NUMBER: _ClassVar[int]
    PARAMS_HASH_FIELD_NUMBER: _ClassVar[int]
    ENCODED_FIELD_NUMBER: _ClassVar[int]
    PARAMS_JSON_FIELD_NUMBER: _ClassVar[int]
    version: int
    activation_epoch: int
    params_hash: bytes
    encoded: bytes
    params_json: str
    def __init__(self, version: _Optional[int] = ..., activation_epoch: _Optional[int] = ..., params_hash: _Optional[bytes] = ..., encoded: _Optional[bytes] = ..., params_json: _Optional[str] = ...) -> None: ...

class Proposal(_message.Message):
    __slots__ = ("id", "status", "proposer", "activation_epoch", "params_hash", "votes_for", "votes_against", "description")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PROPOSER_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_EPOCH_FIELD_NUMBER: _ClassVar[int]
    PARAMS_HASH_FIELD_NUMBER: _ClassVar[int]
    VOTES_FOR_FIELD_NUMBER: _ClassVar[int]
    VOTES_AGAINST_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    id: int
    status: ProposalStatus
    proposer: str
    activation_epoch: int
    params_hash: bytes
    votes_for: int
    votes_against: int
    description: str
    def __init__(self, id: _Optional[int] = ..., status: _Optional[_Union[ProposalStatus, str]] = ..., proposer: _Optional[str] = ..., activation_epoch: _Optional[int] = ..., params_hash: _Optional[bytes] = ..., votes_for: _Optional[int] = ..., votes_against: _Optional[int] = ..., description: _Optional[str] = ...) -> None: ...

class ListProposalsRequest(_message.Message):
    __slots__ = ("page_size", "from_id")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    FROM_ID_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    from_id: int
    def __init__(self, page_size: _Optional[int] = ..., from_id: _Optional[int] = ...) -> None: ...

class ListProposalsResponse(_message.Message):
    __slots__ = ("proposals", "next_from_id")
    PROPOSALS_FIELD_NUMBER: _ClassVar[int]
    NEXT_FROM_ID_FIELD_NUMBER: _ClassVar[int]
    proposals: _containers.RepeatedCompositeFieldContainer[Proposal]
    next_from_id: int
    def __init__(self, proposals: _Optional[_Iterable[_Union[Proposal, _Mapping]]] = ..., next_from_id: _Optional[int] = ...) -> None: ...
