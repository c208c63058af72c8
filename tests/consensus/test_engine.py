"""EpochEngine with real threshold BLS and envelopes over an in-memory bus (unit seam: the transport)."""

from __future__ import annotations

import time
from collections import Counter

import pytest
import trio
from eth_hash.auto import keccak

from node.consensus.engine import EpochEngine
from node.consensus.inputs import FakeInputSource
from node.consensus.machine import Phase
from node.crypto import threshold
from node.p2p.envelope import open_envelope, seal_envelope
from node.pb.clearing.gossip.v1 import gossip_pb2
from node.ports import MemoryStore
from tests.consensus.cluster import KEYSET_ID, NETWORK_ID, operator_key
from tests.consensus.helpers import (
    Bus,
    MemoryTransport,
    SlowInputSource,
    make_engine,
    make_keys,
    make_window,
    run_engines,
)

PERIOD_S = 0.5


def get_next_epoch(window) -> int:
    return window.get_current_epoch(time.time()) + 1


def states_of(engine: EpochEngine, epochs: range) -> dict[int, tuple[bytes, bytes]]:
    out = {}
    for e in epochs:
        s = engine.store.get_signed_state(e)
        if s is not None:
            out[e] = (s.digest, s.signature)
    return out


def test_engines_sign_every_epoch_and_agree() -> None:
    keys, window, bus = make_keys(4), make_window(PERIOD_S), Bus()
    engines = [make_engine(keys, i, window) for i in range(4)]
    epochs = range(get_next_epoch(window) + 1, get_next_epoch(window) + 5)
    trio.run(run_engines, engines, bus, lambda: all(set(epochs) <= e.have for e in engines))
    reference = states_of(engines[0], epochs)
    assert sorted(reference) == list(epochs)
    for engine in engines:
        assert states_of(engine, epochs) == reference
    for digest, signature in reference.values():
        assert threshold.group_verify(keys.vset.group_key, digest, signature)
    assert bus.rejected == []


def test_divergent_node_signs_only_its_own_digest_and_adopts_the_majority() -> None:
    keys, window, bus = make_keys(4), make_window(PERIOD_S), Bus()
    start = get_next_epoch(window)
    epochs = range(start + 1, start + 4)
    diverging = SlowInputSource(slow=lambda e: False, diverge=set(range(start, start + 10)))
    engines = [make_engine(keys, i, window) for i in range(3)] + [make_engine(keys, 3, window, inputs=diverging)]
    trio.run(run_engines, engines, bus, lambda: all(set(epochs) <= e.have for e in engines))
    honest = states_of(engines[0], epochs)
    assert sorted(honest) == list(epochs)
    assert states_of(engines[3], epochs) == honest  # adopted, valid under the group key
    last_epoch, last_digest = engines[3].store.get_last_signed()
    own = engines[3].rounds[last_epoch].digest
    assert last_digest == own and own != engines[0].rounds[last_epoch].digest
    assert engines[3].metrics.get("divergent_partials", 0) > 0
    assert engines[3].metrics.get("states_adopted", 0) >= len(epochs)
    assert engines[3].metrics.get("adopted_differs_own", 0) >= len(epochs)
    assert engines[0].metrics.get("adopted_differs_own", 0) == 0
    # the re-read after the divergence went through the node's single input worker: never beside a computation
    assert diverging.max_active == 1 and max(Counter(e for e, _ in diverging.started).values()) >= 2


def test_invalid_second_signature_refused_after_restart() -> None:
    keys, window, bus = make_keys(4), make_window(PERIOD_S), Bus()
    start = get_next_epoch(window)
    refused_until = start + 2
    store = MemoryStore()
    store.record_signing(refused_until, keccak(b"signed before the restart"))
    engines = [make_engine(keys, i, window) for i in range(3)] + [make_engine(keys, 3, window, store=store)]
    done = range(start, refused_until + 3)
    trio.run(run_engines, engines, bus, lambda: all(set(done) <= e.have for e in engines))
    own_peer = MemoryTransport(bus, 3).peer_id_bytes
    sent_epochs = set()
    for origin, data in bus.published:
        if origin == own_peer:
            opened = open_envelope(data, keys.vset.operator_addresses, NETWORK_ID, KEYSET_ID)
            if opened.kind == gossip_pb2.MESSAGE_KIND_PARTIAL_SIGNATURE:
                sent_epochs.add(opened.message.epoch)
    assert not any(e <= refused_until for e in sent_epochs)
    assert any(e > refused_until for e in sent_epochs)
    assert engines[3].metrics.get("sign_refused", 0) >= 1
    assert engines[3].rounds[refused_until].phase in (Phase.REFUSED, Phase.PERSISTED, Phase.DONE)
    assert engines[3].rounds[refused_until].history[1][1].value in ("sign_refused", "adopted")


def partial_envelope(keys, signer: int, epoch: int, digest: bytes) -> bytes:
    partial = threshold.partial_sign(keys.shares[signer + 1], digest)
    payload = gossip_pb2.PartialSignature(epoch=epoch, digest=digest, partial=partial, signer_index=signer)
    return seal_envelope(gossip_pb2.MESSAGE_KIND_PARTIAL_SIGNATURE, payload.SerializeToString(), signer,
                         operator_key(signer), NETWORK_ID, KEYSET_ID)


def test_equivocation_becomes_stored_and_gossiped_evidence() -> None:
    keys, window, bus = make_keys(4), make_window(PERIOD_S), Bus()
    engine = make_engine(keys, 0, window)
    signer_transport = MemoryTransport(bus, 1)
    epoch = window.get_current_epoch(time.time())

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            transport = MemoryTransport(bus, 0)
            bus.engines[transport.peer_id_bytes] = engine
            engine.params = type(engine.params)(**{**engine.params.__dict__, "start_epoch": epoch + 1000})
            await nursery.start(engine.run, transport)
            engine.validator.bind(keys.vset.operator_addresses[1], signer_transport.peer_id_bytes)
            for digest in (keccak(b"one"), keccak(b"two")):
                data = partial_envelope(keys, 1, epoch, digest)
                assert engine.validator.validate_gossip("x", signer_transport.peer_id_bytes, data) is None
                await engine.deliver(signer_transport.peer_id_bytes, data)
            with trio.move_on_after(5):
                while not engine.store.list_evidence():
                    await trio.sleep(0.02)
            await trio.sleep(0.1)
            nursery.cancel_scope.cancel()

    trio.run(scenario)
    evidence = engine.store.list_evidence()
    assert [(ev.kind, ev.epoch, ev.signer_index) for ev in evidence] == [("equivocation", epoch, 1)]
    assert transport_penalties(bus, engine) == [("equivocation",)]
    gossiped = [open_envelope(d, keys.vset.operator_addresses, NETWORK_ID, KEYSET_ID) for _, d in bus.published]
    kinds = [o.kind for o in gossiped]
    assert gossip_pb2.MESSAGE_KIND_EQUIVOCATION_EVIDENCE in kinds
    ev_msg = next(o.message for o in gossiped if o.kind == gossip_pb2.MESSAGE_KIND_EQUIVOCATION_EVIDENCE)
    assert engine.validator.validate_evidence(ev_msg) is None


def transport_penalties(bus: Bus, engine: EpochEngine) -> list[tuple[str]]:
    return [(reason,) for _, reason in engine.transport.penalties]


def test_catch_up_fetches_and_verifies_missed_states() -> None:
    keys, window, bus = make_keys(4), make_window(PERIOD_S), Bus()
    engines = [make_engine(keys, i, window) for i in range(4)]
    start = get_next_epoch(window)
    epochs = range(start + 1, start + 4)
    trio.run(run_engines, engines, bus, lambda: all(set(epochs) <= e.have for e in engines))
    late = make_engine(keys, 3, window, store=MemoryStore())
    late.catchup_cursor = start

    async def catch_up() -> int:
        transport = MemoryTransport(bus, 3)
        late.transport = transport
        bus.engines[transport.peer_id_bytes] = late
        late.validator.bind(keys.vset.operator_addresses[0], MemoryTransport(bus, 0).peer_id_bytes)
        late.peer_last_signed[keys.vset.operator_addresses[0]] = max(epochs)
        async with trio.open_nursery() as nursery:
            late._nursery = nursery
            adopted = await late.process_catchup()
            nursery.cancel_scope.cancel()
        return adopted

    adopted = trio.run(catch_up)
    assert adopted >= len(epochs)
    assert states_of(late, epochs) == states_of(engines[0], epochs)


@pytest.mark.parametrize("field", ["signature", "root"])
def test_invalid_catch_up_state_rejected(field: str) -> None:
    from node.consensus.catchup import parse_state_response
    from node.consensus.digest import state_to_proto
    from node.p2p.errors import CatchUpError

    keys, window, bus = make_keys(4), make_window(PERIOD_S), Bus()
    engines = [make_engine(keys, i, window) for i in range(4)]
    start = get_next_epoch(window)
    trio.run(run_engines, engines, bus, lambda: all({start + 1} <= e.have for e in engines))
    msg = state_to_proto(engines[0].store.get_signed_state(start + 1))
    if field == "signature":
        msg.signature = threshold.partial_sign(keys.shares[1], msg.digest)  # a partial, not the group signature
    else:
        msg.root = keccak(b"another root")
    data = gossip_pb2.StateResponse(states=[msg]).SerializeToString()
    with pytest.raises(CatchUpError, match="states\\[0\\]"):
        parse_state_response(data, engines[1].validator)


def test_adoption_never_overwrites_a_stored_state_and_its_leaves() -> None:
    from node.records import AccountLeaf

    keys, window, bus = make_keys(4), make_window(PERIOD_S), Bus()
    engines = [make_engine(keys, i, window) for i in range(4)]
    start = get_next_epoch(window)
    trio.run(run_engines, engines, bus, lambda: all({start + 1} <= e.have for e in engines))
    state = engines[0].store.get_signed_state(start + 1)
    leaf = AccountLeaf(epoch=state.epoch, index=0, account=b"\x01" * 20, equity=5, im=1, mm=1, flags=0,
                       approved_withdrawals=(), encoded=b"leaf")
    store = MemoryStore()
    store.put_signed_state(state, [leaf])
    restarted = make_engine(keys, 1, window, store=store)  # a fresh process: nothing in memory
    assert not trio.run(restarted.adopt_state, state)
    assert store.get_leaves(state.epoch) == [leaf]


def test_catch_up_does_not_skip_a_gap_that_one_peer_also_lacks() -> None:
    keys, window, bus = make_keys(4), make_window(PERIOD_S), Bus()
    engines = [make_engine(keys, i, window) for i in range(4)]
    start = get_next_epoch(window)
    epochs = range(start + 1, start + 7)
    trio.run(run_engines, engines, bus, lambda: all(set(epochs) <= e.have for e in engines))
    gap = range(start + 3, start + 5)
    holey = MemoryStore()  # peer 1 was down during the gap too
    for e in epochs:
        if e not in gap:
            holey.put_signed_state(engines[1].store.get_signed_state(e), [])
    engines[1].store = holey
    late = make_engine(keys, 3, window, store=MemoryStore())
    late.catchup_cursor = start + 1

    async def catch_up() -> None:
        transport = MemoryTransport(bus, 3)
        late.transport = transport
        for i in (0, 1):
            late.validator.bind(keys.vset.operator_addresses[i], MemoryTransport(bus, i).peer_id_bytes)
        async with trio.open_nursery() as nursery:
            late._nursery = nursery
            late.peer_last_signed = {keys.vset.operator_addresses[1]: max(epochs)}  # the first answer comes from the peer with the hole
            await late.process_catchup()
            assert not set(gap) & late.have and late.catchup_cursor == gap.start
            late.peer_last_signed = {keys.vset.operator_addresses[0]: max(epochs)}
            await late.process_catchup()
            nursery.cancel_scope.cancel()

    trio.run(catch_up)
    assert set(epochs) <= late.have
    assert states_of(late, epochs) == states_of(engines[0], epochs)


def test_state_adopted_before_computing_gets_this_nodes_leaves() -> None:
    """A signed state that arrives by gossip before the node computed the epoch is stored without leaves;
    once the node's own computation gives the same digest, its leaves are added (proofs served here too)."""
    from dataclasses import replace

    from node.records import AccountLeaf, SignedState

    keys, window = make_keys(4), make_window(PERIOD_S)
    engine = make_engine(keys, 0, window)
    epoch = window.get_current_epoch(time.time()) + 50
    leaf = AccountLeaf(epoch=epoch, index=0, account=b"\x01" * 20, equity=5, im=1, mm=1, flags=0,
                       approved_withdrawals=(), encoded=b"leaf")
    computed = replace(FakeInputSource().compute_epoch(epoch, 0), leaf_count=1, leaves=(leaf,))
    digest = engine.compute_digest(computed)
    signature = threshold.combine({i: threshold.partial_sign(keys.shares[i], digest) for i in (1, 2, 3)}, 3)
    state = SignedState(NETWORK_ID, KEYSET_ID, epoch, computed.pins, computed.inputs_digest, computed.params_hash,
                        computed.root, 1, digest, signature, (0, 1, 2))

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            engine._nursery = nursery
            engine.transport = MemoryTransport(Bus(), 0)
            assert await engine.adopt_state(state)
            assert engine.store.get_leaves(epoch) == []
            await engine._sign_and_send(engine.get_round(epoch), computed, trio.current_time())
            with trio.move_on_after(5):
                while not engine.store.get_leaves(epoch):
                    await trio.sleep(0.02)
            nursery.cancel_scope.cancel()

    trio.run(scenario)
    assert engine.store.get_leaves(epoch) == [leaf]
    assert engine.store.get_signed_state(epoch) == state and engine.metrics["adopted_leaves_completed"] == 1


def test_late_computation_completes_the_leaves_of_an_adopted_state_with_its_digest() -> None:
    """A computation finished after its round's deadline is never signed, but its leaves complete a state
    adopted meanwhile when the digests match (the API serves an epoch only once its leaves are here);
    a late computation with another digest adds nothing."""
    from dataclasses import replace

    from node.records import AccountLeaf, SignedState

    keys, window = make_keys(4), make_window(PERIOD_S)
    engine = make_engine(keys, 0, window)
    epoch = window.get_current_epoch(time.time()) + 50
    leaf = AccountLeaf(epoch=epoch, index=0, account=b"\x01" * 20, equity=5, im=1, mm=1, flags=0,
                       approved_withdrawals=(), encoded=b"leaf")
    computed = replace(FakeInputSource().compute_epoch(epoch, 0), leaf_count=1, leaves=(leaf,))
    digest = engine.compute_digest(computed)
    signature = threshold.combine({i: threshold.partial_sign(keys.shares[i], digest) for i in (1, 2, 3)}, 3)
    state = SignedState(NETWORK_ID, KEYSET_ID, epoch, computed.pins, computed.inputs_digest, computed.params_hash,
                        computed.root, 1, digest, signature, (0, 1, 2))
    other = replace(computed, root=b"\x07" * 32)

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            engine._nursery = nursery
            engine.transport = MemoryTransport(Bus(), 0)
            assert await engine.adopt_state(state)
            engine._on_late_inputs(other)
            await trio.sleep(0.3)
            assert engine.store.get_leaves(epoch) == []
            engine._on_late_inputs(computed)
            with trio.move_on_after(5):
                while not engine.store.get_leaves(epoch):
                    await trio.sleep(0.02)
            nursery.cancel_scope.cancel()

    trio.run(scenario)
    assert engine.store.get_leaves(epoch) == [leaf] and engine.metrics["adopted_leaves_completed"] == 1
