"""Backpressure in the epoch engine: at most one input computation per node; rounds whose computation
cannot start or finish in their window are skipped on purpose (reason in status and metrics), never
stacked; signing resumes as soon as computations fit again (engines on the in-memory bus, real BLS;
the unit seam is the input source, whose computation blocks on an event)."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable

import trio
import trio.testing

from node.consensus.engine import EpochEngine
from node.consensus.inputs import ComputedState
from node.consensus.machine import Event
from node.consensus.validation import EpochWindow
from node.metrics import NodeMetrics
from tests.consensus.helpers import Bus, MemoryTransport, SlowInputSource, make_engine, make_keys, make_window

PERIOD_S = 0.5


async def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll `condition` until it holds; fail after `timeout` seconds."""
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.02)


async def start_engines(nursery: trio.Nursery, engines: list[EpochEngine], bus: Bus) -> None:
    for i, engine in enumerate(engines):
        transport = MemoryTransport(bus, i)
        bus.engines[transport.peer_id_bytes] = engine
        await nursery.start(engine.run, transport)


def signed_epochs(engine: EpochEngine) -> list[int]:
    """Epochs this engine sent its own partial for."""
    return sorted(e for e, r in engine.rounds.items() if any(h[1] is Event.SIGNED for h in r.history))


def read_skip_metric(engine: EpochEngine) -> dict[str, float]:
    text = NodeMetrics(engine.store, engine.get_status).render().decode()
    return {m[1]: float(m[2]) for m in re.finditer(r'^clearing_epochs_skipped_total\{reason="(\w+)"\} (\S+)$',
                                                    text, re.M)}


def test_overrunning_computation_is_skipped_not_stacked_and_signing_resumes() -> None:
    keys, window, bus = make_keys(4), make_window(PERIOD_S), Bus()
    slow = SlowInputSource()
    engines = [make_engine(keys, 0, window, inputs=slow)] + [make_engine(keys, i, window) for i in range(1, 4)]
    node = engines[0]
    seen: dict[str, object] = {}

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            await start_engines(nursery, engines, bus)
            # The first computation hangs: its round expires (`deadline`), the next rounds cannot start (`overrun`).
            await wait_for(lambda: node.epochs_skipped["deadline"] >= 1 and node.epochs_skipped["overrun"] >= 2)
            blocked = slow.started[0][0]
            seen["blocked"] = blocked
            # Meanwhile the other three sign, and this node adopts their states of the skipped epochs.
            await wait_for(lambda: any(e > blocked and node.rounds[e].skip_reason for e in node.have))
            seen["status"] = json.loads(json.dumps(node.get_status()))
            seen["metric"] = read_skip_metric(node)
            seen["calls_while_blocked"] = [e for e, _ in slow.started]
            seen["released_at"] = window.get_current_epoch(time.time())
            slow.gate.set()
            await wait_for(lambda: len(slow.started) >= 3 and any(e >= slow.started[1][0] for e in signed_epochs(node)))
            nursery.cancel_scope.cancel()

    trio.run(scenario)
    blocked, released_at = seen["blocked"], seen["released_at"]
    assert seen["calls_while_blocked"] == [blocked]  # nothing stacked behind the hanging computation
    assert slow.max_active == 1
    status = seen["status"]
    assert status["epochs_skipped"]["deadline"] >= 1 and status["epochs_skipped"]["overrun"] >= 2
    assert status["last_skipped"][1] == "overrun" and status["inputs"]["in_flight"] == blocked
    assert seen["metric"]["overrun"] >= 2 and seen["metric"]["deadline"] >= 1
    assert node.rounds[blocked].skip_reason == "deadline"
    # The late result was not signed; the next computation was the newest open epoch (no backlog).
    assert node.metrics["inputs_late"] >= 1 and blocked not in signed_epochs(node)
    resumed = slow.started[1][0]
    assert resumed >= released_at  # the newest open epoch, then forward only: never back into the backlog
    after = [e for e, _ in slow.started[1:]]
    assert after == sorted(set(after))
    assert not node.rounds[resumed].skip_reason and any(e >= resumed for e in signed_epochs(node))
    # The skipped epochs' states came from the others (gossip or catch-up), valid and stored.
    adopted = [e for e in range(blocked + 1, resumed) if e in node.have]
    assert adopted and all(node.store.get_signed_state(e) == engines[1].store.get_signed_state(e) for e in adopted)
    assert slow.active == 0 and len(slow.finished) == len(slow.started)  # no thread left computing


def test_stopping_the_engine_waits_for_the_running_computation() -> None:
    keys, window, bus = make_keys(4), make_window(PERIOD_S), Bus()
    slow = SlowInputSource()
    engine = make_engine(keys, 0, window, inputs=slow)

    async def scenario() -> None:
        stopped = trio.Event()
        async with trio.open_nursery() as outer:
            scope = trio.CancelScope()

            async def run_engine(task_status=trio.TASK_STATUS_IGNORED) -> None:
                with scope:
                    async with trio.open_nursery() as inner:
                        await start_engines(inner, [engine], bus)
                        task_status.started()
                stopped.set()

            await outer.start(run_engine)
            await wait_for(lambda: slow.active == 1)
            scope.cancel()
            await trio.testing.wait_all_tasks_blocked()
            assert not stopped.is_set()  # the engine waits for its computation: no thread is left behind
            slow.gate.set()
            with trio.fail_after(10):
                await stopped.wait()
            assert slow.active == 0

    trio.run(scenario)
    assert slow.max_active == 1 and len(slow.finished) == len(slow.started) == 1


def test_retries_after_unavailable_inputs_stay_in_the_round_and_never_overlap() -> None:
    period = 1.0  # room for a loaded machine: the round deadline is 6 periods
    keys, window, bus = make_keys(4), make_window(period), Bus()
    first = window.get_current_epoch(time.time()) + 2
    outage = set(range(first, first + 4))  # these epochs' inputs never become available
    flaky = SlowInputSource(slow=lambda e: False, unavailable=set(outage))
    engines = ([make_engine(keys, 0, window, inputs=flaky, input_retry_s=0.1, period_s=period)]
               + [make_engine(keys, i, window, period_s=period) for i in range(1, 4)])
    node = engines[0]

    after = first + len(outage) + 6  # starts after every outage round's deadline (6 periods)

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            await start_engines(nursery, engines, bus)
            await wait_for(lambda: any(e >= after for e in signed_epochs(node)), timeout=120.0)
            nursery.cancel_scope.cancel()

    trio.run(scenario)
    assert flaky.max_active == 1 and flaky.active == 0
    attempts = Counter(e for e, _ in flaky.started if e in outage)
    assert attempts and max(attempts.values()) >= 2  # retried, each attempt inside its own round
    # the worker starts nothing after a round's deadline (the outage never ends, so a worker that ignored
    # the deadline would go on retrying for many periods); one period of slack for a thread start under load
    assert all(t < window.get_epoch_start(e) + 6 * period + period for e, t in flaky.started)
    for e in outage:  # an attempted epoch ends unavailable; one a loaded node never started says why
        if e not in node.rounds:  # the epoch loop itself was late: no round, counted as loop_late
            assert e not in attempts and node.epochs_skipped["loop_late"] > 0
            continue
        expected = {"inputs_unavailable"} if e in attempts else {"overrun"}
        assert node.rounds[e].skip_reason in expected, (e, node.rounds[e].skip_reason, attempts)
    assert node.epochs_skipped["inputs_unavailable"] >= len(attempts)
    assert not set(signed_epochs(node)) & outage


class LaggingPins(SlowInputSource):
    """Epoch e's pin is only confirmed `lag_s` after T_e, later than the next epoch's start (as on a
    chain whose blocks come slower than the epochs): attempts before that raise InputsUnavailable."""

    def __init__(self, window: EpochWindow, lag_s: float) -> None:
        super().__init__(slow=lambda e: False)
        self.window, self.lag_s = window, lag_s
        self.computed: set[int] = set()

    def compute_epoch(self, epoch: int, target_time: int) -> ComputedState:
        if time.time() < self.window.get_epoch_start(epoch) + self.lag_s:
            self.unavailable.add(epoch)
        else:
            self.unavailable.discard(epoch)
        computed = super().compute_epoch(epoch, target_time)
        self.computed.add(epoch)
        return computed


def test_an_epoch_whose_pin_comes_late_is_retried_after_the_next_epoch_opened() -> None:
    period = 1.0  # room for a loaded machine: the round deadline is 6 periods
    keys, window, bus = make_keys(4), make_window(period), Bus()
    sources = [LaggingPins(window, 1.4 * period) for _ in range(4)]
    engines = [make_engine(keys, i, window, inputs=sources[i], period_s=period, input_retry_s=0.1) for i in range(4)]
    first = window.get_current_epoch(time.time()) + 2
    epochs = range(first, first + 4)
    trio.run(run_engines_until, engines, bus, lambda: all(
        set(epochs) <= s.computed and set(epochs) <= e.have for e, s in zip(engines, sources, strict=True)))
    for engine, source in zip(engines, sources, strict=True):
        assert source.max_active == 1 and not [e for e in epochs if engine.rounds[e].skip_reason]
        late = Counter(e for e, t in source.started if e in epochs and t > window.get_epoch_start(e + 1))
        assert late  # attempts after the next epoch had opened: the older epoch was not abandoned


async def run_engines_until(engines: list[EpochEngine], bus: Bus, until: Callable[[], bool]) -> None:
    async with trio.open_nursery() as nursery:
        await start_engines(nursery, engines, bus)
        await wait_for(until)
        nursery.cancel_scope.cancel()
