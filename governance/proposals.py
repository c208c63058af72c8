"""Proposal and vote records (as read from the Governance contract), validator-set changes, the epoch
clock and the network's governance genesis.

Invariants: every record is a frozen dataclass of integers, bytes and lowercase 0x-addresses (parse at
the edge: `bridges/governance_chain.py` converts contract reads into these). A VALIDATOR_SET payload
is the canonical `abi.encode(address[] add, address[] remove, uint256 threshold)`; a PARAMETER_SET
payload is the complete canonical encoding of `risk.params` (never a diff). Nothing is persisted.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

import eth_abi

from governance.errors import InvalidGovernanceInput, InvalidValidatorSetChange

MAX_VALIDATORS = 128  # same bound as Governance.sol
_ADDRESS_RE = re.compile(r"^0x[0-9a-f]{40}$")
_CHANGE_TYPES = ["address[]", "address[]", "uint256"]


class ProposalKind(enum.IntEnum):
    """On-chain proposal kinds (Governance.sol KIND_*)."""

    UNSPECIFIED = 0
    PARAMETER_SET = 1
    VALIDATOR_SET = 2


class VoteChoice(enum.IntEnum):
    """On-chain vote choices (Governance.sol CHOICE_*)."""

    UNSPECIFIED = 0
    YES = 1
    NO = 2
    ABSTAIN = 3


def normalize_address(value: str, field: str = "address") -> str:
    """Lowercase 0x-hex form of an EVM address; raises naming `field` when malformed."""
    text = value.lower() if isinstance(value, str) else ""
    if not _ADDRESS_RE.match(text):
        raise InvalidGovernanceInput(field, f"not a 20-byte 0x address: {value!r}")
    return text


@dataclass(frozen=True)
class EpochClock:
    """Epoch e spans [genesis_time + e * epoch_seconds, genesis_time + (e+1) * epoch_seconds)."""

    genesis_time: int
    epoch_seconds: int

    def __post_init__(self) -> None:
        if self.epoch_seconds <= 0:
            raise InvalidGovernanceInput("epoch_seconds", f"must be > 0, got {self.epoch_seconds}")

    def get_epoch_at(self, timestamp: int) -> int:
        """Epoch containing `timestamp` (-1 before genesis)."""
        if timestamp < self.genesis_time:
            return -1
        return (timestamp - self.genesis_time) // self.epoch_seconds


@dataclass(frozen=True)
class GovernanceGenesis:
    """What every node agrees on before any proposal: the genesis validator set and clock.

    Share indices of the threshold key are 1-based positions in `validators` (and in every later set).
    `activation_margin_epochs`: an approved proposal's activation epoch must exceed the epoch of its
    vote end by more than this margin, so that every honest node's pinned home-chain block for the
    activation epoch (taken `lag` seconds before the epoch starts, lag < one epoch) already shows it.
    """

    validators: tuple[str, ...]
    threshold: int
    clock: EpochClock
    keyset_id: int = 1  # the genesis DKG's key-set id (node.crypto: DKG epoch 1)
    activation_margin_epochs: int = 1

    def __post_init__(self) -> None:
        members = tuple(normalize_address(a, f"validators[{i}]") for i, a in enumerate(self.validators))
        object.__setattr__(self, "validators", members)
        validate_set(members, self.threshold, "genesis")
        if self.activation_margin_epochs < 0:
            raise InvalidGovernanceInput("activation_margin_epochs", "must be >= 0")


@dataclass(frozen=True)
class ProposalRecord:
    """A proposal as stored by the contract; `end_timestamp` is the timestamp of `end_block` when that
    block is at or below the pinned head, else None. An executed validator-set change also carries the
    block it was executed in and that block's timestamp (`executed_block`, `executed_timestamp`)."""

    proposal_id: int
    kind: int
    proposer: str
    payload: bytes
    created_block: int
    end_block: int
    activation_epoch: int
    set_version: int
    set_size: int
    executed: bool = False
    resulting_set_version: int = 0
    end_timestamp: int | None = None
    executed_block: int = 0
    executed_timestamp: int | None = None

    def get_approval_key(self) -> tuple[int, int]:
        """The contract's approval order of validator-set changes: (end block, id)."""
        return (self.end_block, self.proposal_id)


@dataclass(frozen=True)
class VoteRecord:
    """One vote as stored by the contract, in on-chain order."""

    proposal_id: int
    voter: str
    choice: int
    block_number: int


@dataclass(frozen=True)
class ValidatorSetChange:
    """Payload of a VALIDATOR_SET proposal."""

    add: tuple[str, ...]
    remove: tuple[str, ...]
    threshold: int


def compute_quorum(n: int) -> int:
    """ceil(2n/3): both the quorum (votes cast) and the approval bar (yes votes)."""
    return (2 * n + 2) // 3


def is_valid_threshold(threshold: int, size: int) -> bool:
    """2n/3 < t <= n (the smallest is floor(2n/3) + 1, DESIGN.md)."""
    return 3 * threshold > 2 * size and threshold <= size


def validate_set(members: tuple[str, ...], threshold: int, field: str) -> None:
    if not 1 <= len(members) <= MAX_VALIDATORS:
        raise InvalidValidatorSetChange(field, f"set size {len(members)} outside 1..{MAX_VALIDATORS}")
    if len(set(members)) != len(members):
        raise InvalidValidatorSetChange(field, "duplicate member")
    if not is_valid_threshold(threshold, len(members)):
        raise InvalidValidatorSetChange(
            f"{field}.threshold", f"{threshold} not in (2n/3, n] for n = {len(members)}")


def encode_validator_set_change(change: ValidatorSetChange) -> bytes:
    """Canonical payload: abi.encode(address[] add, address[] remove, uint256 threshold)."""
    add = [normalize_address(a, "add") for a in change.add]
    remove = [normalize_address(a, "remove") for a in change.remove]
    return eth_abi.encode(_CHANGE_TYPES, [add, remove, change.threshold])


def decode_validator_set_change(payload: bytes) -> ValidatorSetChange:
    """Strict decode: the payload must be exactly the canonical encoding of its decoded value."""
    try:
        add, remove, threshold = eth_abi.decode(_CHANGE_TYPES, payload)
    except Exception as exc:  # eth_abi raises several unrelated types on malformed input
        raise InvalidValidatorSetChange("payload", f"not abi(address[],address[],uint256): {exc}") from exc
    change = ValidatorSetChange(tuple(a.lower() for a in add), tuple(a.lower() for a in remove), int(threshold))
    if encode_validator_set_change(change) != bytes(payload):
        raise InvalidValidatorSetChange("payload", "not the canonical ABI encoding")
    return change


def compute_new_set(base: tuple[str, ...], change: ValidatorSetChange) -> tuple[str, ...]:
    """Apply a change exactly as Governance.sol does: base order minus removals, then additions."""
    for i, a in enumerate(change.remove):
        if a not in base or a in change.remove[:i]:
            raise InvalidValidatorSetChange(f"remove[{i}]", f"{a} is not a member or is listed twice")
    for i, a in enumerate(change.add):
        if a == "0x" + "0" * 40 or a in base or a in change.add[:i]:
            raise InvalidValidatorSetChange(f"add[{i}]", f"{a} is zero, already a member or listed twice")
    new = tuple(a for a in base if a not in change.remove) + change.add
    validate_set(new, change.threshold, "new_set")
    return new
