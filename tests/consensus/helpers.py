"""Shared fixtures for consensus unit tests: a 4-validator set from the trusted dealer (tests only)
and an in-memory transport bus that runs every delivery through the real gossip validator."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from node.consensus.engine import EngineParams, EpochEngine, Secrets
from node.consensus.inputs import ComputedState, FakeInputSource
from node.consensus.publishing import NullPublisher
from node.consensus.validation import EpochWindow, ValidatorSet
from node.crypto.threshold import compute_default_threshold, deal_trusted
from node.p2p.envelope import get_operator_address
from node.p2p.host import get_peer_id
from node.ports import MemoryStore, SystemClock
from tests.consensus.cluster import KEYSET_ID, NETWORK_ID, operator_key, p2p_seed


@dataclass(frozen=True)
class Keys:
    vset: ValidatorSet
    shares: dict[int, int]  # share index (1-based) -> secret


def make_keys(n: int = 4) -> Keys:
    t = compute_default_threshold(n)
    group_key, shares, public_shares = deal_trusted(n, t, b"unit-seed")
    vset = ValidatorSet(network_id=NETWORK_ID, keyset_id=KEYSET_ID,
                        operator_addresses=tuple(get_operator_address(operator_key(i)) for i in range(n)),
                        public_shares=tuple(public_shares[i + 1] for i in range(n)), threshold=t,
                        group_key=group_key)
    return Keys(vset, shares)


def make_window(period_s: float = 0.5) -> EpochWindow:
    return EpochWindow(genesis_time=float(int(time.time()) - 100 * period_s), period_s=period_s)


class SlowInputSource(FakeInputSource):
    """A FakeInputSource whose computation blocks until `gate` is set (while `slow(epoch)` holds), and
    which counts concurrent calls: `max_active` is the most computations ever in flight at once."""

    def __init__(self, chain_ids: tuple[int, ...] = (31337, 31338), slow: Callable[[int], bool] = lambda e: True,
                 **kwargs: object) -> None:
        super().__init__(chain_ids, **kwargs)  # type: ignore[arg-type]
        self.slow = slow
        self.gate = threading.Event()
        self._lock = threading.Lock()
        self.active = self.max_active = 0
        self.started: list[tuple[int, float]] = []  # (epoch, wall time) of every call
        self.finished: list[int] = []

    def compute_epoch(self, epoch: int, target_time: int) -> ComputedState:
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.started.append((epoch, time.time()))
        try:
            if self.slow(epoch):
                self.gate.wait(timeout=120)  # bounded: a broken test must not hang the run forever
            return super().compute_epoch(epoch, target_time)
        finally:
            with self._lock:
                self.active -= 1
                self.finished.append(epoch)


@dataclass
class Bus:
    engines: dict[bytes, EpochEngine] = field(default_factory=dict)
    published: list[tuple[bytes, bytes]] = field(default_factory=list)  # (origin peer, data)
    rejected: list[tuple[bytes, str]] = field(default_factory=list)


class MemoryTransport:
    """Delivers to every other engine on the bus after its real `validate_gossip`."""

    def __init__(self, bus: Bus, index: int) -> None:
        self.bus = bus
        self.peer_id_bytes = get_peer_id(p2p_seed(index)).to_bytes()
        self.penalties: list[tuple[str, str]] = []

    async def publish(self, data: bytes) -> None:
        self.bus.published.append((self.peer_id_bytes, data))
        for peer, engine in list(self.bus.engines.items()):
            if peer == self.peer_id_bytes:
                continue
            reason = engine.validator.validate_gossip("bus", self.peer_id_bytes, data)
            if reason is None:
                await engine.deliver(self.peer_id_bytes, data)
            else:
                self.bus.rejected.append((self.peer_id_bytes, reason))

    async def request(self, peer: bytes, data: bytes) -> bytes:
        return await self.bus.engines[peer].serve_catchup("bus", data)

    def penalize(self, peer: str, reason: str) -> None:
        self.penalties.append((peer, reason))


def make_engine(keys: Keys, index: int, window: EpochWindow, *, store: MemoryStore | None = None,
                inputs: FakeInputSource | None = None, period_s: float = 0.5, **overrides: object) -> EpochEngine:
    params = EngineParams(**{"round_deadline_s": 6 * period_s, "publish_fallback_s": period_s,  # type: ignore[arg-type]
                             "heartbeat_interval_s": 0.2, "catchup_interval_s": 0.3, "partial_resend_s": period_s,
                             **overrides})
    return EpochEngine(keys.vset, index, Secrets(keys.shares[index + 1], operator_key(index)),
                       store or MemoryStore(), inputs or FakeInputSource([31337, 31338]), NullPublisher(),
                       window, params, SystemClock())


async def run_engines(engines: list[EpochEngine], bus: Bus, until: Callable[[], bool], timeout: float = 20.0) -> None:
    """Run every engine on the bus (engine i as peer i) until `until()` holds or `timeout` passes."""
    async with trio.open_nursery() as nursery:
        for i, engine in enumerate(engines):
            transport = MemoryTransport(bus, i)
            bus.engines[transport.peer_id_bytes] = engine
            await nursery.start(engine.run, transport)
        with trio.move_on_after(timeout):
            while not until():
                await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
