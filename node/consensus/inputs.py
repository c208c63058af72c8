"""The `InputSource` port: pin an epoch's inputs and compute the state to sign (blocking, run in a thread).

Implementations:
- `FakeInputSource`: deterministic pins/root from the epoch number, for unit tests; can be told to
  fail (`unavailable`) or to diverge for given epochs.
- `ChainPinSource`: REAL pins on real chains (`bridges.chain.ChainClient.pin_block`: highest block
  with timestamp <= T_e - lag, `confirmations` deep) and a deterministic state derived from the pins
  (no accounts: `leaf_count` 0, root = keccak of the inputs digest under a domain tag). It stands in
  for the margin computation in tests that need real pins but no accounts (the production source is
  `node.consensus.margin_inputs.MarginInputSource`).
Every implementation returns only integers and bytes; raises `InputsUnavailable` when the inputs
cannot be pinned or read. Nothing persisted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from eth_hash.auto import keccak

from node.consensus.digest import compute_inputs_digest
from node.consensus.errors import InputsUnavailable
from node.records import AccountLeaf, ChainPin

DST_PLACEHOLDER_ROOT = b"CLEARING-V1-PIN-ONLY-ROOT"
PLACEHOLDER_PARAMS_HASH = keccak(b"CLEARING-V1-PIN-ONLY-PARAMS")


@dataclass(frozen=True)
class SigningSet:
    """The key set governance assigns to an epoch (read at the epoch's pinned home-chain block)."""

    keyset_id: int
    members: tuple[bytes, ...]  # 20-byte operator addresses; position i holds share index i + 1
    threshold: int


@dataclass(frozen=True)
class ReshareOrder:
    """An approved validator-set change whose reshare must be done before `activation_epoch`."""

    proposal_id: int
    activation_epoch: int
    old: SigningSet
    new: SigningSet


@dataclass(frozen=True)
class ComputedState:
    """What a node computed for one epoch: the pins and the unsigned state commitment.

    `signing` is the key set that signs the epoch (None: the node's configured key set, for sources
    without governance); `reshare` the next pending validator-set change, if any."""

    epoch: int
    pins: tuple[ChainPin, ...]
    inputs_digest: bytes
    params_hash: bytes
    root: bytes
    leaf_count: int
    leaves: Sequence[AccountLeaf] = field(default=(), repr=False)  # node.leaves.EpochLeaves from the state module
    signing: SigningSet | None = None
    reshare: ReshareOrder | None = None
    failures: Sequence[Any] = field(default=(), repr=False)  # bridges.book_merge.AccountFailure: no leaf, why


class InputSource(Protocol):
    def compute_epoch(self, epoch: int, target_time: int) -> ComputedState:
        """Pin every chain for `target_time` (= T_e) and compute the epoch's state; blocking."""
        ...


def compute_pin_only_state(epoch: int, pins: Sequence[ChainPin]) -> ComputedState:
    """Deterministic stand-in state committed to the pins only (no accounts)."""
    inputs_digest = compute_inputs_digest(pins)
    return ComputedState(epoch=epoch, pins=tuple(sorted(pins, key=lambda p: p.chain_id)),
                         inputs_digest=inputs_digest, params_hash=PLACEHOLDER_PARAMS_HASH,
                         root=keccak(DST_PLACEHOLDER_ROOT + inputs_digest), leaf_count=0)


class FakeInputSource:
    """Deterministic inputs for unit tests; `unavailable`/`diverge` are sets of epochs."""

    def __init__(self, chain_ids: Sequence[int] = (31337,), unavailable: set[int] | None = None,
                 diverge: set[int] | None = None) -> None:
        self.chain_ids = tuple(chain_ids)
        self.unavailable = unavailable if unavailable is not None else set()
        self.diverge = diverge if diverge is not None else set()
        self.calls: list[int] = []

    def compute_epoch(self, epoch: int, target_time: int) -> ComputedState:
        self.calls.append(epoch)
        if epoch in self.unavailable:
            raise InputsUnavailable(f"epoch {epoch}: fake inputs unavailable")
        salt = b"diverged" if epoch in self.diverge else b""
        pins = [ChainPin(cid, epoch, keccak(salt + cid.to_bytes(8, "big") + epoch.to_bytes(8, "big")))
                for cid in self.chain_ids]
        return compute_pin_only_state(epoch, pins)


class ChainPinSource:
    """Real pinned blocks from `bridges.chain.ChainClient`s; state derived from the pins only."""

    def __init__(self, clients: Sequence[object]) -> None:
        self.clients = list(clients)

    def compute_epoch(self, epoch: int, target_time: int) -> ComputedState:
        from bridges.errors import BridgeError

        pins = []
        for client in self.clients:
            try:
                pin = client.pin_block(target_time)  # type: ignore[attr-defined]
            except BridgeError as exc:
                raise InputsUnavailable(f"epoch {epoch}: {exc}") from exc
            pins.append(ChainPin(pin.chain_id, pin.number, pin.hash))
        return compute_pin_only_state(epoch, pins)
