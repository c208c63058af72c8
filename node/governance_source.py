"""The parameter schedule every validator reads from the home chain's Governance contract.

`GovernanceScheduleSource` is the `schedule_for(home_pin)` of `node.consensus.margin_inputs`: for the
home-chain pin an epoch's inputs were read at, it reads the proposals and votes AT THAT PIN
(`bridges.governance_chain.read_governance_state`), derives the governance state with the pure
`governance.tally`, and returns its `ParameterSchedule` (`get_state(pin)` returns the whole
`GovernanceState`: validator sets by activation epoch, pending reshares). The epoch then takes the
version active at its number, and that version's `params_hash` goes into the signed digest. The
validator sets follow the changes the contract EXECUTED (in its approval order, each taken only when
its activation epoch lies beyond its execution epoch plus the margin, see `governance.tally`), so the
set of an epoch is the same at every pin a node can take for it.

Invariants:
- Same pin -> same state at every honest node: the genesis validator set and threshold are the
  contract's set version 0 READ AT THAT PIN (`get_genesis_at`), not the node's configured operators
  (a node of a later set, or a joining validator, is configured with another list); the epoch clock
  and the genesis key-set id come from the node's configuration (`GenesisSpec`), which is the same at
  every node. The CLI (`clearingd gov`) and the API's `GovernanceReader` derive the genesis through the
  same `get_genesis_at`, so node, CLI and API agree.
- A source built with a fixed `GovernanceGenesis` (devnet harnesses that know the genesis set) checks
  the contract's version 0 against it at every pin read; a mismatch stalls with an error naming it.
- Never a guess: any chain read failure, unreadable set version 0 or undecodable record raises
  `GovernanceSourceError` (an `InputsUnavailable`), so the engine does not sign that epoch and
  retries; there is no fallback to a cached or configured genesis for a pin that could not be read.
- Bounded: at most `max_cached` pins kept (LRU by pin hash); reads are serialised by one lock.
Persists nothing itself (the per-pin cache lives in memory); given a `data_dir`, the reader keeps the
settled proposals in `data_dir/governance.sqlite` (`node.governance_store`).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.consensus.errors import InputsUnavailable

DEFAULT_MAX_CACHED_PINS = 64
GENESIS_KEYSET_ID = 1  # the genesis DKG's key-set id (node.crypto: DKG epoch 1)
LOG = logging.getLogger(__name__)


class GovernanceSourceError(InputsUnavailable):
    """The governance schedule could not be derived at the pinned home-chain block."""


def get_epoch_clock_seconds(genesis_time: float, epoch_period_s: float) -> tuple[int, int]:
    """(genesis_time, epoch_seconds) as the integers of `governance.proposals.EpochClock`.

    Raises ValueError naming the field when either is not a whole number of seconds (the node's
    epoch window and the governance clock must number epochs identically).
    """
    if float(genesis_time) != int(genesis_time) or genesis_time < 0:
        raise ValueError(f"genesis_time: governance needs a whole, non-negative unix time, got {genesis_time}")
    if float(epoch_period_s) != int(epoch_period_s) or epoch_period_s < 1:
        raise ValueError(f"epoch_period_s: governance needs a whole number of seconds >= 1, got {epoch_period_s}")
    return int(genesis_time), int(epoch_period_s)


@dataclass(frozen=True)
class GenesisSpec:
    """What a node configures about the governance genesis: the epoch clock (whole seconds) and the
    genesis DKG's key-set id. The genesis set and threshold are read from the contract (version 0)."""

    genesis_time: int
    epoch_seconds: int
    keyset_id: int = GENESIS_KEYSET_ID

    def __post_init__(self) -> None:
        get_epoch_clock_seconds(self.genesis_time, self.epoch_seconds)
        if self.keyset_id < 1:
            raise ValueError(f"keyset_id: the genesis key-set id must be >= 1, got {self.keyset_id}")


def build_genesis_spec(genesis_time: float, epoch_period_s: float, keyset_id: int = GENESIS_KEYSET_ID) -> GenesisSpec:
    """A `GenesisSpec` from the node's float config values (ValueError naming the field if not whole)."""
    start, seconds = get_epoch_clock_seconds(genesis_time, epoch_period_s)
    return GenesisSpec(start, seconds, keyset_id)


def get_genesis_at(gov: Any, pin: Any, spec: GenesisSpec) -> Any:
    """The `GovernanceGenesis` at `pin`: the contract's set version 0 (members, threshold) and `spec`'s clock.

    Raises `GovernanceSourceError` when version 0 cannot be read or is not a valid set (empty,
    threshold out of range); chain errors of the read propagate as `BridgeError` to the caller.
    """
    from governance.errors import GovernanceError
    from governance.proposals import EpochClock, GovernanceGenesis

    _, members, threshold = gov.get_validators(pin, 0)
    try:
        return GovernanceGenesis(members, threshold, EpochClock(spec.genesis_time, spec.epoch_seconds),
                                 keyset_id=spec.keyset_id)
    except GovernanceError as exc:
        raise GovernanceSourceError(f"governance.address: the contract's set version 0 ({len(members)} members, "
                                    f"threshold {threshold}) is not a valid genesis set: {exc}") from exc


def build_governance_genesis(operators: Sequence[bytes | str], threshold: int, genesis_time: float,
                             epoch_period_s: float, keyset_id: int = 1) -> Any:
    """A fixed `GovernanceGenesis` (validator set, threshold, epoch clock), for harnesses that know the set;
    nodes read it from the contract instead (`get_genesis_at`)."""
    from governance.proposals import EpochClock, GovernanceGenesis

    members = tuple(("0x" + a.hex()) if isinstance(a, bytes) else a for a in operators)
    start, seconds = get_epoch_clock_seconds(genesis_time, epoch_period_s)
    return GovernanceGenesis(members, threshold, EpochClock(start, seconds), keyset_id=keyset_id)


class GovernanceScheduleSource:
    """`schedule_for(home_pin)`: the parameter schedule derived at a pinned home-chain block, cached per pin.

    `genesis` is a `GenesisSpec` (the node's case: set and threshold read from the contract's version 0
    at each pin) or a fixed `GovernanceGenesis` (checked against version 0 at each pin).
    """

    def __init__(self, gov: Any, genesis: Any, max_cached: int = DEFAULT_MAX_CACHED_PINS) -> None:
        if max_cached < 1:
            raise ValueError(f"max_cached: must be >= 1, got {max_cached}")
        self.gov = gov  # bridges.governance_chain.GovernanceChain on the home chain
        self.genesis = genesis  # GenesisSpec or governance.proposals.GovernanceGenesis
        self.max_cached = max_cached
        self._cache: OrderedDict[bytes, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.reads = 0  # chain derivations done (cache misses), for tests and status

    def __call__(self, home_pin: Any) -> Any:
        return self.get_state(home_pin).schedule

    def get_state(self, home_pin: Any) -> Any:
        """The `GovernanceState` at `home_pin` (a `bridges.chain.Pin` of the home chain)."""
        if home_pin is None:
            raise GovernanceSourceError("governance: the epoch's inputs hold no home-chain pin")
        if home_pin.chain_id != self.gov.client.chain_id:
            raise GovernanceSourceError(f"governance: pin of chain {home_pin.chain_id}, the Governance contract "
                                        f"is on chain {self.gov.client.chain_id}")
        key = bytes(home_pin.hash)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
            state = self._read(home_pin)
            self._cache[key] = state
            while len(self._cache) > self.max_cached:
                self._cache.popitem(last=False)
            return state

    def _read(self, pin: Any) -> Any:
        from bridges.errors import BridgeError
        from bridges.governance_chain import read_governance_state
        from governance.errors import GovernanceError

        where = f"home block {pin.number} (0x{bytes(pin.hash).hex()[:12]})"
        try:
            genesis = self.get_genesis(pin)
            state = read_governance_state(self.gov, pin, genesis)
        except (BridgeError, GovernanceError, GovernanceSourceError) as exc:
            raise GovernanceSourceError(f"governance at {where}: {exc}") from exc
        self.reads += 1
        return state

    def get_genesis(self, pin: Any) -> Any:
        """The `GovernanceGenesis` the state at `pin` is derived from (see the class docstring)."""
        if isinstance(self.genesis, GenesisSpec):
            return get_genesis_at(self.gov, pin, self.genesis)
        self.validate_genesis_set(pin)
        return self.genesis

    def validate_genesis_set(self, pin: Any) -> None:
        """A fixed genesis must equal the contract's set version 0 (members and threshold)."""
        _, members, threshold = self.gov.get_validators(pin, 0)
        if members != self.genesis.validators or threshold != self.genesis.threshold:
            raise GovernanceSourceError(
                f"governance.address: the contract's genesis set ({len(members)} members, threshold {threshold}) "
                f"differs from validator_set ({len(self.genesis.validators)} members, threshold "
                f"{self.genesis.threshold}); check [governance].address and [validator_set].operators")


def build_governance_source(client: Any, address: str, operators: Sequence[bytes | str], threshold: int,
                            genesis_time: float, epoch_period_s: float, keyset_id: int = GENESIS_KEYSET_ID,
                            max_cached: int = DEFAULT_MAX_CACHED_PINS,
                            data_dir: Path | None = None) -> GovernanceScheduleSource:
    """The node's schedule reader over `client` (the home chain's `bridges.chain.ChainClient`).

    The genesis set and threshold are the contract's version 0 read at each pin; `operators` and
    `threshold` (the node's configured CURRENT set) are accepted for compatibility and only logged.
    `keyset_id` is the GENESIS key-set id (1 for every network made by the genesis DKG), not the
    node's current one: a node of a later key set must still pass the genesis id, or its state
    numbers key sets differently from the other nodes'. With `data_dir`, settled proposals persist in
    `data_dir/governance.sqlite` across restarts.
    """
    from bridges.governance_chain import GovernanceChain, load_governance_abi
    from node.governance_store import FILE_NAME, GovernanceStore

    spec = build_genesis_spec(genesis_time, epoch_period_s, keyset_id)
    LOG.info("governance: genesis set read from the contract's version 0 at each pin (the configured set is "
             "not used for governance)", extra={"governance": address, "operators": len(operators), "threshold": threshold})
    store = None if data_dir is None else GovernanceStore(Path(data_dir) / FILE_NAME, client.chain_id, address)
    gov = GovernanceChain(client, address, load_governance_abi(), store=store)
    return GovernanceScheduleSource(gov, spec, max_cached)
