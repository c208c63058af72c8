"""Live validator-set changes in the epoch engine: governance names the key set of every epoch, the
old holders and the new members reshare over the gossip before the activation epoch, and from it
on the new key set signs under the same group key (engines on the in-memory bus, real envelopes,
real BLS, a real DKG for the genesis key set)."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest
import trio

from node.consensus.engine import EngineParams, EpochEngine, Secrets
from node.consensus.inputs import ComputedState, FakeInputSource, ReshareOrder, SigningSet
from node.consensus.keyring import KeyRing, KeyRingError
from node.consensus.publishing import NullPublisher
from node.consensus.validation import EpochWindow, ValidatorSet
from node.crypto import threshold
from node.crypto.dkg import run_dkg_in_process
from node.logs import get_fields
from node.p2p.envelope import get_operator_address
from node.ports import MemoryStore, SystemClock
from node.records import SignedState
from tests.consensus.cluster import KEYSET_ID, NETWORK_ID, operator_key
from tests.consensus.helpers import Bus, MemoryTransport, run_engines

PERIOD_S = 0.5
WINDOW_EPOCHS = 10  # 5 s attempt windows: room on a loaded 2-core machine
ADDRESSES = tuple(get_operator_address(operator_key(i)) for i in range(6))


class GovernedInputs(FakeInputSource):
    """Fake pins plus a governance schedule of key sets: `changes` is [(activation, members, t), ...]."""

    def __init__(self, changes: list[tuple[int, tuple[bytes, ...], int]], genesis: SigningSet,
                 silent_from: int | None = None) -> None:
        super().__init__([31337])
        self.sets = [(0, genesis)] + [(a, SigningSet(genesis.keyset_id + k + 1, m, t))
                                      for k, (a, m, t) in enumerate(changes)]
        self.silent_from = silent_from

    def compute_epoch(self, epoch: int, target_time: int) -> ComputedState:
        if self.silent_from is not None and epoch >= self.silent_from:
            self.unavailable.add(epoch)  # this node's chain view stops: it signs nothing from here
        state = super().compute_epoch(epoch, target_time)
        active = [s for a, s in self.sets if a <= epoch][-1]
        pending = [(a, s) for a, s in self.sets if a > epoch]
        order = None
        if pending:
            activation, new = pending[0]
            old = [s for a, s in self.sets if a < activation][-1]
            order = ReshareOrder(proposal_id=new.keyset_id * 10, activation_epoch=activation, old=old, new=new)
        return replace(state, signing=active, reshare=order)


def make_genesis(n: int, t: int) -> tuple[ValidatorSet, dict[int, object]]:
    outcome = run_dkg_in_process(n, t)
    results = {r.index: r for r in outcome.results.values()}
    keyset = results[1].keyset
    vset = ValidatorSet(NETWORK_ID, KEYSET_ID, ADDRESSES[:n], tuple(keyset.get_public_share(i + 1) for i in range(n)),
                        t, keyset.group_public_key)
    return vset, results


def make_engine(vset: ValidatorSet, genesis: dict, op: int, inputs: FakeInputSource, window: EpochWindow,
                written: list, retired: list | None = None, later: tuple = (),
                store: MemoryStore | None = None) -> EpochEngine:
    """Engine of operator `op`; `written` gets (op, key set id, DkgResult) of every new share, `retired`
    (op, retired key set id, key set that signed, whether a state of it was stored at that moment)."""
    params = EngineParams(round_deadline_s=6 * PERIOD_S, publish_fallback_s=PERIOD_S, heartbeat_interval_s=0.2,
                          catchup_interval_s=0.3, partial_resend_s=PERIOD_S, reshare_window_epochs=WINDOW_EPOCHS)
    member = op < vset.n
    result = genesis[op + 1] if member else None
    secrets = Secrets(result.share if result else None, operator_key(op), keyset=genesis[1].keyset, later=later)
    store = store if store is not None else MemoryStore()

    def on_retire(keyset_id: int, by: int) -> None:
        signed = any(s.keyset_id == by for s in store.list_signed_states(0, 10_000))
        (retired if retired is not None else []).append((op, keyset_id, by, signed))

    return EpochEngine(vset, op if member else None, secrets, store, inputs, NullPublisher(), window,
                       params, SystemClock(), on_share=lambda r: written.append((op, r.keyset.keyset_id, r)),
                       on_retire=on_retire)


def signer_addresses(engine: EpochEngine, epoch: int) -> tuple[int, set[bytes]]:
    state = engine.store.get_signed_state(epoch)
    members = engine.ring.get_operators(state.keyset_id)
    return state.keyset_id, {members[i] for i in state.signers}


@pytest.mark.slow
def test_add_then_remove_keeps_signing_every_epoch_with_one_group_key() -> None:
    vset, genesis = make_genesis(4, 3)
    window = EpochWindow(genesis_time=float(int(time.time()) - 100 * PERIOD_S), period_s=PERIOD_S)
    now = window.get_current_epoch(time.time())
    a1 = (now // WINDOW_EPOCHS + 2) * WINDOW_EPOCHS + 2  # a full attempt window lies before each activation
    a2 = a1 + 2 * WINDOW_EPOCHS
    added = ((*ADDRESSES[:4], ADDRESSES[4]), 4)  # proposal 1: add operator 4, t = 4 of 5
    removed = ((ADDRESSES[0], ADDRESSES[1], ADDRESSES[2], ADDRESSES[4]), 3)  # proposal 2: remove operator 3
    changes = [(a1, *added), (a2, *removed)]
    g = SigningSet(KEYSET_ID, ADDRESSES[:4], 3)
    # operator 1 stops reading its chains from a2 - 3 on: epochs a2-3..a2-1 (key set 2, t = 4 of 5) can
    # only be signed if the joining operator 4 signs them
    inputs = [GovernedInputs(changes, g, silent_from=a2 - 3 if op == 1 else None) for op in range(5)]
    written: list = []
    retired: list = []
    engines = [make_engine(vset, genesis, op, inputs[op], window, written, retired) for op in range(5)]
    epochs = range(a1 - 3, a2 + 3)
    bus = Bus()
    timeout = (a2 + 3 - now) * PERIOD_S + 20
    key_set_2_retired = {(op, 2) for op in range(5)}  # every holder of key set 2, the removed operator 3 too
    trio.run(run_engines, engines, bus, lambda: all(set(epochs) <= eng.have for eng in (engines[0], engines[4]))
             and key_set_2_retired <= {(op, k) for op, k, _, _ in retired}, timeout)
    watcher = engines[0]
    assert set(epochs) <= watcher.have, f"unsigned epochs: {sorted(set(epochs) - watcher.have)}"
    for epoch in epochs:  # one group key throughout, the key set governance names for the epoch
        state = watcher.store.get_signed_state(epoch)
        assert threshold.group_verify(vset.group_key, state.digest, state.signature)
        assert state.keyset_id == (1 if epoch < a1 else 2 if epoch < a2 else 3), epoch
    joining = engines[4]
    assert joining.ring.get_share(3) is not None  # its share of key set 2 was erased once key set 3 signed
    assert any(ADDRESSES[4] in signer_addresses(watcher, e)[1] for e in range(a2 - 3, a2))
    for epoch in range(a2, a2 + 3):  # the removed operator is in no signature of key set 3
        keyset_id, signers = signer_addresses(watcher, epoch)
        assert keyset_id == 3 and ADDRESSES[3] not in signers
    removed_engine = engines[3]
    assert removed_engine.ring.get_share(3) is None and removed_engine.ring.get_index(3) is None
    assert sorted((op, k) for op, k, _ in written) == sorted([(op, 2) for op in range(5)]
                                                             + [(op, 3) for op in (0, 1, 2, 4)])
    assert {e.keys.status[20]["state"] for e in engines} == {"done"}
    assert {e.keys.status[30]["state"] for e in engines} == {"done"}
    # the removed operator's key-set-2 share is no share of key set 3
    old_share = next(r for op, k, r in written if (op, k) == (3, 2))
    probe = threshold.partial_sign(old_share.share, b"probe")
    assert not any(threshold.partial_verify(p, b"probe", probe) for p in watcher.ring.get_set(3).public_shares)
    # each retired key set's shares were erased by their holders, each once, only after the next key set signed
    assert sorted((op, k, by) for op, k, by, _ in retired) == sorted(
        [(op, 1, 2) for op in range(4)] + [(op, 2, 3) for op in range(5)])
    assert all(signed for *_, signed in retired)
    for op, engine in enumerate(engines):
        assert engine.ring.get_share(1) is None and engine.ring.get_share(2) is None
        assert (engine.ring.get_share(3) is not None) == (op != 3)
        assert engine.metrics.get("shares_retired") == (2 if op < 4 else 1)


def test_invalid_keyring_refuses_conflicting_members_and_foreign_shares() -> None:
    vset, genesis = make_genesis(4, 3)
    ring = KeyRing(vset, ADDRESSES[0])
    assert ring.add_members(2, ADDRESSES[:5], 4) and not ring.add_members(2, ADDRESSES[:5], 4)
    with pytest.raises(KeyRingError, match="keyset 2"):
        ring.add_members(2, ADDRESSES[1:6], 4)
    with pytest.raises(KeyRingError, match="public shares unknown"):
        ring.add_share(2, 0, 5)
    with pytest.raises(KeyRingError, match="does not match"):
        ring.add_share(KEYSET_ID, 0, genesis[2].share)
    with pytest.raises(KeyRingError, match="not this operator"):
        ring.add_share(KEYSET_ID, 1, genesis[2].share)
    ring.add_share(KEYSET_ID, 0, genesis[1].share)
    assert ring.get_sealing_keyset() == KEYSET_ID and ring.get_index(2) == 0


def test_invalid_confirmations_fail_the_attempt_unless_every_new_member_has_the_same_keyset() -> None:
    """The confirmation round: a member that obtained another key set, or one that never confirms,
    fails the attempt; the same hash from every new member lets it through."""
    from node.consensus.keychange import CONFIRM_TYPE, compute_keyset_hash
    from node.crypto.errors import DkgError
    from node.pb.clearing.gossip.v1 import gossip_pb2

    vset, genesis = make_genesis(4, 3)
    window = EpochWindow(genesis_time=float(int(time.time()) - 100 * PERIOD_S), period_s=PERIOD_S)
    engine = make_engine(vset, genesis, 0, FakeInputSource(), window, [])
    bus = Bus()
    engine.transport = MemoryTransport(bus, 0)
    order = ReshareOrder(20, 10**6, SigningSet(1, ADDRESSES[:4], 3), SigningSet(2, ADDRESSES[:5], 4))
    engine.ring.add_members(2, ADDRESSES[:5], 4)  # as governance names it before the reshare
    keyset = genesis[1].keyset
    other = replace(keyset, commitments=keyset.commitments[::-1])

    def confirm(session: int, signer: int, ks: object) -> None:
        msg = gossip_pb2.DkgMessage(session_id=session, sender_index=signer, type_name=CONFIRM_TYPE,
                                    body=compute_keyset_hash(session, ks))
        assert engine.keys.offer(2, signer, msg)

    confirm(77, 3, other)
    with pytest.raises(DkgError, match=r"members \[3\] obtained another key set"):
        trio.run(engine.keys._confirm, 77, order, keyset, time.time() + 5)
    for j in (1, 2, 3):
        confirm(78, j, keyset)
    with pytest.raises(DkgError, match=r"no confirmation from new members \[4\]"):
        trio.run(engine.keys._confirm, 78, order, keyset, time.time() + 0.5)
    for j in (1, 2, 3, 4):
        confirm(79, j, keyset)
    trio.run(engine.keys._confirm, 79, order, keyset, time.time() + 5)
    sent = [engine.validator.open(d) for _, d in bus.published]
    assert sent and all((o.keyset_id, o.signer_index) == (2, 0) for o in sent)  # own confirmation, as new member 0


def sign_state(engine: EpochEngine, epoch: int, signing: SigningSet, shares: dict[int, int]) -> SignedState:
    """A state of `epoch` that key set `signing` signs (its digest carries the key-set id)."""
    computed = replace(FakeInputSource().compute_epoch(epoch, 0), signing=signing)
    digest = engine.compute_digest(computed)
    t = signing.threshold
    signature = threshold.combine({i: threshold.partial_sign(shares[i], digest) for i in sorted(shares)[:t]}, t)
    return SignedState(NETWORK_ID, signing.keyset_id, epoch, computed.pins, computed.inputs_digest,
                       computed.params_hash, computed.root, 0, digest, signature, tuple(range(t)))


def test_retired_share_erased_once_the_next_key_set_signed(caplog: pytest.LogCaptureFixture) -> None:
    """Key set 1 -> 2 (same members, reshared in process): the share of key set 1 stays while only key set 1
    signs, and is erased (memory and keystore hook) once a state of key set 2 is stored; after a restart
    with that state in the store, the share loaded again is erased at once."""
    from node.crypto.reshare import get_new_holders, run_reshare_in_process

    vset, genesis = make_genesis(4, 3)
    new = get_new_holders(run_reshare_in_process(genesis, 4, 3, continuing={i: i for i in range(1, 5)}))
    set1, set2 = SigningSet(KEYSET_ID, ADDRESSES[:4], 3), SigningSet(KEYSET_ID + 1, ADDRESSES[:4], 3)
    window = EpochWindow(genesis_time=float(int(time.time()) - 100 * PERIOD_S), period_s=PERIOD_S)
    epoch = window.get_current_epoch(time.time()) + 1000  # the engine's own rounds never reach it
    retired: list = []
    engine = make_engine(vset, genesis, 0, FakeInputSource(), window, [], retired, later=(new[1],))
    engine.params = replace(engine.params, start_epoch=epoch + 1000)
    old_share = genesis[1].share
    state1 = sign_state(engine, epoch, set1, {i: r.share for i, r in genesis.items()})
    state2 = sign_state(engine, epoch + 1, set2, {i: r.share for i, r in new.items()})

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(engine.run, MemoryTransport(Bus(), 0))
            engine.keys.process_computed(replace(FakeInputSource().compute_epoch(epoch, 0), signing=set1,
                                                 reshare=ReshareOrder(20, epoch + 1, set1, set2)))
            assert engine.ring.get_share(2) is not None  # the share from the earlier reshare, placed
            assert await engine.adopt_state(state1)
            assert engine.ring.get_share(1) is not None and engine.metrics.get("shares_retired") is None
            assert await engine.adopt_state(state2)
            assert engine.ring.get_share(1) is None and engine.ring.get_share(2) is not None
            with trio.fail_after(10):
                while not retired:
                    await trio.sleep(0.02)
            nursery.cancel_scope.cancel()

    with caplog.at_level("INFO", logger="node.consensus.keychange"):
        trio.run(scenario)
    assert retired == [(0, 1, 2, True)]
    assert engine.metrics["shares_retired"] == 1 and engine.secrets.share_sk is None
    (retiring,) = [r for r in caplog.records if r.getMessage() == "key set retired: erasing this node's share of it"]
    assert (retiring.keyset_id, retiring.retired_by_keyset) == (1, 2)  # type: ignore[attr-defined]
    logged = "\n".join(r.getMessage() + json.dumps(get_fields(r)) for r in caplog.records)  # fields included
    assert str(old_share) not in logged and f"{old_share:x}" not in logged.lower()

    store = MemoryStore()
    store.put_signed_state(state2, [])
    again: list = []
    restarted = make_engine(vset, genesis, 0, FakeInputSource(), window, [], again, later=(new[1],), store=store)
    restarted.params = replace(restarted.params, start_epoch=epoch + 1000)
    trio.run(run_engines, [restarted], Bus(), lambda: bool(again), 10)
    assert again == [(0, 1, 2, True)] and restarted.ring.get_share(1) is None
    assert set(restarted.keys.unplaced) == {2} and [r.keyset.keyset_id for r in restarted.secrets.later] == [2]


class FixedClock:
    def __init__(self, now: float) -> None:
        self.t = now

    def now(self) -> float:
        return self.t


def test_an_order_late_in_the_last_window_before_activation_still_gets_an_attempt() -> None:
    """Windows of 8 epochs of 3 s, activation at epoch 24 (a window start): an order seen at epoch 20.5
    (late in window 16..23: less than half of it left) used to wait for window 24 and fail at
    activation; it now runs in what is left of window 16..23. Earlier in the window, and when a whole
    window remains before the activation, the usual rule holds."""
    from types import SimpleNamespace

    from node.consensus.keychange import KeyChanger

    window = EpochWindow(genesis_time=0.0, period_s=3.0)
    clock = FixedClock(0.0)
    engine = SimpleNamespace(window=window, clock=clock, params=EngineParams(reshare_window_epochs=8))
    changer = KeyChanger(engine)  # type: ignore[arg-type]
    end = window.get_epoch_start(24)
    clock.t = window.get_epoch_start(17)
    assert changer._get_attempt(24) == (2, end)  # more than half of the window left: the usual attempt
    clock.t = window.get_epoch_start(20) + 1.5
    assert changer._get_attempt(24) == (2, end)  # the last chance before activation 24
    assert changer._get_attempt(40) == (None, end)  # a whole window (24..31) remains: wait for it
    clock.t = window.get_epoch_start(23) + 2.5  # less than one epoch left: not even the last chance
    assert changer._get_attempt(24) == (None, end)
