"""The parameter schedule every validator reads from the home chain's Governance contract.

`GovernanceScheduleSource` is the `schedule_for(home_pin)` of `node.consensus.margin_inputs`: for the
home-chain pin an epoch's inputs were read at, it reads the proposals and votes AT THAT PIN
(`bridges.governance_chain.read_governance_state`), derives the governance state with the pure
`governance.tally`, and returns its `ParameterSchedule`. The epoch then takes the version active at
its number, and that version's `params_hash` goes into the signed digest.

Invariants:
- Same pin -> same schedule at every honest node: the genesis (validator set, threshold, EpochClock)
  comes from the node's own configuration (`build_governance_genesis`), which is the same at every
  node and equals what the CLI and the API use (`clearingd gov --genesis-time G --epoch-seconds E`);
  the contract's set version 0 is checked against it at every pin read (a mismatch stalls the epoch
  with an error naming the difference, instead of silently deriving a different schedule).
- Never a guess: any chain read failure or undecodable record raises `GovernanceSourceError` (an
  `InputsUnavailable`), so the engine does not sign that epoch and retries; there is no fallback to
  a cached or genesis schedule for a pin that could not be read.
- Bounded: at most `max_cached` pins kept (LRU by pin hash); reads are serialised by one lock.
Persists nothing (the cache lives in memory).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from node.consensus.errors import InputsUnavailable

DEFAULT_MAX_CACHED_PINS = 64


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


def build_governance_genesis(operators: Sequence[bytes | str], threshold: int, genesis_time: float,
                             epoch_period_s: float, keyset_id: int = 1) -> Any:
    """The `GovernanceGenesis` of a node: its configured validator set and threshold, and the epoch clock."""
    from governance.proposals import EpochClock, GovernanceGenesis

    members = tuple(("0x" + a.hex()) if isinstance(a, bytes) else a for a in operators)
    start, seconds = get_epoch_clock_seconds(genesis_time, epoch_period_s)
    return GovernanceGenesis(members, threshold, EpochClock(start, seconds), keyset_id=keyset_id)


class GovernanceScheduleSource:
    """`schedule_for(home_pin)`: the parameter schedule derived at a pinned home-chain block, cached per pin."""

    def __init__(self, gov: Any, genesis: Any, max_cached: int = DEFAULT_MAX_CACHED_PINS) -> None:
        if max_cached < 1:
            raise ValueError(f"max_cached: must be >= 1, got {max_cached}")
        self.gov = gov  # bridges.governance_chain.GovernanceChain on the home chain
        self.genesis = genesis  # governance.proposals.GovernanceGenesis
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
            self.validate_genesis_set(pin)
            state = read_governance_state(self.gov, pin, self.genesis)
        except (BridgeError, GovernanceError) as exc:
            raise GovernanceSourceError(f"governance at {where}: {exc}") from exc
        self.reads += 1
        return state

    def validate_genesis_set(self, pin: Any) -> None:
        """The contract's set version 0 must be the configured genesis set and threshold."""
        _, members, threshold = self.gov.get_validators(pin, 0)
        if members != self.genesis.validators or threshold != self.genesis.threshold:
            raise GovernanceSourceError(
                f"governance.address: the contract's genesis set ({len(members)} members, threshold {threshold}) "
                f"differs from validator_set ({len(self.genesis.validators)} members, threshold "
                f"{self.genesis.threshold}); check [governance].address and [validator_set].operators")


def build_governance_source(client: Any, address: str, operators: Sequence[bytes | str], threshold: int,
                            genesis_time: float, epoch_period_s: float, keyset_id: int = 1,
                            max_cached: int = DEFAULT_MAX_CACHED_PINS) -> GovernanceScheduleSource:
    """The node's schedule reader over `client` (the home chain's `bridges.chain.ChainClient`)."""
    from bridges.governance_chain import GovernanceChain, load_governance_abi

    genesis = build_governance_genesis(operators, threshold, genesis_time, epoch_period_s, keyset_id)
    return GovernanceScheduleSource(GovernanceChain(client, address, load_governance_abi()), genesis, max_cached)
