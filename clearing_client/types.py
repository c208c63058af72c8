"""Typed results of the public API: frozen dataclasses built from the `clearing.api.v1` messages.

Amounts are kept as integer micro-USD (`*_micro_usd`, exact, what is signed) and offered as
`decimal.Decimal` USD (`usd(...)` and the `*_usd` properties); addresses are EIP-55 checksummed;
bytes stay bytes. Nothing is persisted.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass
from decimal import Decimal
from typing import Any

from eth_utils import is_address, to_checksum_address

from clearing_client.formats import LeafValues, decode_leaf
from node.pb.clearing.api.v1 import api_pb2

USD_SCALE = 10**6


def usd(micro_usd: int) -> Decimal:
    """Exact USD value of an integer micro-USD amount."""
    return Decimal(micro_usd).scaleb(-6)


def to_json_dict(value: Any) -> Any:
    """A typed result as JSON-ready data: dataclasses -> dicts (field order), bytes -> 0x-hex."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json_dict(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, tuple | list):
        return [to_json_dict(v) for v in value]
    return value


def checksum(text: str) -> str:
    """EIP-55 form of an address (already-checksummed or lowercase input); other text unchanged."""
    return to_checksum_address(text) if is_address(text) else text


@dataclass(frozen=True)
class ChainPin:
    chain_id: int
    block_number: int
    block_hash: bytes


@dataclass(frozen=True)
class SignedState:
    network_id: int
    keyset_id: int
    epoch: int
    pins: tuple[ChainPin, ...]
    inputs_digest: bytes
    params_hash: bytes
    root: bytes
    leaf_count: int
    digest: bytes
    signature: bytes  # 48-byte compressed G1
    signers: tuple[int, ...]

    @classmethod
    def from_pb(cls, m: api_pb2.SignedState) -> SignedState:
        return cls(m.network_id, m.keyset_id, m.epoch,
                   tuple(ChainPin(p.chain_id, p.block_number, bytes(p.block_hash)) for p in m.pins),
                   bytes(m.inputs_digest), bytes(m.params_hash), bytes(m.root), m.leaf_count, bytes(m.digest),
                   bytes(m.signature), tuple(m.signers))


@dataclass(frozen=True)
class Collateral:
    chain_id: int
    asset: str
    amount: int  # token base units


@dataclass(frozen=True)
class Margin:
    account: str
    epoch: int
    equity_micro_usd: int
    initial_margin_micro_usd: int
    maintenance_margin_micro_usd: int
    free_collateral_micro_usd: int  # equity - initial margin
    health_bps: int | None  # None when the maintenance margin is 0
    liquidatable: bool
    risk_array_micro_usd: tuple[int, ...]
    worst_scenario: int | None
    collateral: tuple[Collateral, ...]
    approved_withdrawals: tuple[bytes, ...]

    @property
    def equity_usd(self) -> Decimal:
        return usd(self.equity_micro_usd)

    @property
    def initial_margin_usd(self) -> Decimal:
        return usd(self.initial_margin_micro_usd)

    @property
    def maintenance_margin_usd(self) -> Decimal:
        return usd(self.maintenance_margin_micro_usd)

    @property
    def free_collateral_usd(self) -> Decimal:
        return usd(self.free_collateral_micro_usd)

    @classmethod
    def from_pb(cls, m: api_pb2.AccountMargin) -> Margin:
        return cls(checksum(m.account), m.epoch, m.equity_micro_usd, m.initial_margin_micro_usd,
                   m.maintenance_margin_micro_usd, m.free_collateral_micro_usd,
                   None if m.health_unbounded else m.health_bps, m.liquidatable, tuple(m.risk_array_micro_usd),
                   None if m.worst_scenario < 0 else m.worst_scenario,
                   tuple(Collateral(c.chain_id, c.asset, int(c.amount or 0)) for c in m.collateral),
                   tuple(bytes(w) for w in m.approved_withdrawals))


@dataclass(frozen=True)
class MarginReport:
    """An account's margin, its leaf (`leaf`: the ABI-encoded bytes hashed into the tree; `leaf_values`:
    decoded, for contract calls), proof and the signed state; `endpoint` is the validator that served it."""

    margin: Margin
    leaf: bytes
    leaf_values: LeafValues
    leaf_index: int
    proof: tuple[bytes, ...]
    state: SignedState
    endpoint: str

    @classmethod
    def from_pb(cls, r: api_pb2.MarginReport, endpoint: str) -> MarginReport:
        return cls(Margin.from_pb(r.margin), bytes(r.leaf), decode_leaf(r.leaf), r.leaf_index,
                   tuple(bytes(p) for p in r.proof), SignedState.from_pb(r.state), endpoint)


@dataclass(frozen=True)
class Simulation:
    result_json: str
    initial_margin_micro_usd: int
    maintenance_margin_micro_usd: int
    equity_micro_usd: int
    free_collateral_micro_usd: int
    liquidatable: bool
    worst_scenario: int | None

    @classmethod
    def from_pb(cls, r: api_pb2.SimulateMarginResponse) -> Simulation:
        return cls(r.result_json, r.initial_margin_micro_usd, r.maintenance_margin_micro_usd, r.equity_micro_usd,
                   r.free_collateral_micro_usd, r.liquidatable, None if r.worst_scenario < 0 else r.worst_scenario)


@dataclass(frozen=True)
class Validator:
    index: int
    peer_id: str
    public_key_share: bytes
    address: str
    is_self: bool


@dataclass(frozen=True)
class ValidatorSet:
    keyset_id: int
    threshold: int
    group_public_key: bytes  # 96-byte compressed G2
    validators: tuple[Validator, ...]

    @classmethod
    def from_pb(cls, r: api_pb2.ListValidatorsResponse) -> ValidatorSet:
        return cls(r.keyset_id, r.threshold, bytes(r.group_public_key), tuple(
            Validator(v.index, v.peer_id, bytes(v.public_key_share), checksum(v.address), v.is_self)
            for v in r.validators))


@dataclass(frozen=True)
class Parameters:
    version: int
    activation_epoch: int
    params_hash: bytes
    encoded: bytes
    params_json: str

    @classmethod
    def from_pb(cls, r: api_pb2.GetParametersResponse) -> Parameters:
        return cls(r.version, r.activation_epoch, bytes(r.params_hash), bytes(r.encoded), r.params_json)


@dataclass(frozen=True)
class Proposal:
    id: int
    status: str  # e.g. "PROPOSAL_STATUS_OPEN"
    proposer: str
    activation_epoch: int
    params_hash: bytes
    votes_for: int
    votes_against: int
    description: str

    @classmethod
    def from_pb(cls, p: api_pb2.Proposal) -> Proposal:
        return cls(p.id, api_pb2.ProposalStatus.Name(p.status) if p.status in api_pb2.ProposalStatus.values()
                   else str(p.status), checksum(p.proposer), p.activation_epoch, bytes(p.params_hash),
                   p.votes_for, p.votes_against, p.description)
