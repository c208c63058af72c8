"""A dealerless DKG (the crypto engineer's DkgMachine) run over the validator gossip envelopes."""

from __future__ import annotations

import trio
from eth_hash.auto import keccak

from node.consensus.dkg_session import get_session_number
from node.crypto import threshold
from node.crypto.dealing import SessionConfig
from node.crypto.dkg import DkgMachine, DkgTimeouts
from node.crypto.dkg_bus import make_encryption_keys, make_participants
from node.crypto.errors import DkgError
from tests.consensus.helpers import Bus, MemoryTransport, make_engine, make_keys, make_window

TIMEOUTS = DkgTimeouts(deal=3.0, response=3.0, justification=3.0)


def make_machines(n: int, t: int, nonce: bytes) -> list[DkgMachine]:
    keys = make_encryption_keys(range(1, n + 1))
    config = SessionConfig(epoch=1, threshold=t, dealers=tuple(range(1, n + 1)), recipients=make_participants(keys),
                           nonce=nonce)
    return [DkgMachine(config, encryption_key=keys[i], dealer_index=i, recipient_index=i, timeouts=TIMEOUTS)
            for i in range(1, n + 1)]


def run_network_dkg(machines: list[DkgMachine], silent: set[int] = frozenset()) -> dict[int, object]:  # type: ignore[assignment]
    keys, window, bus = make_keys(len(machines)), make_window(), Bus()
    engines = [make_engine(keys, i, window) for i in range(len(machines))]
    for i, engine in enumerate(engines):
        transport = MemoryTransport(bus, i)
        engine.transport = transport
        if i not in silent:
            bus.engines[transport.peer_id_bytes] = engine
    results: dict[int, object] = {}

    async def one(i: int) -> None:
        try:
            results[i] = await engines[i].run_dkg(machines[i], timeout_s=20.0)
        except DkgError as exc:
            results[i] = exc

    async def all_of() -> None:
        async with trio.open_nursery() as nursery:
            for i in range(len(machines)):
                if i not in silent:
                    nursery.start_soon(one, i)

    trio.run(all_of)
    assert all(engine.dkg_sessions == {} for engine in engines)
    return results


def test_network_dkg_gives_one_group_key_that_threshold_signs() -> None:
    machines = make_machines(4, 3, b"network-dkg")
    results = run_network_dkg(machines)
    group_keys = {r.keyset.group_public_key for r in results.values()}
    assert len(group_keys) == 1
    digest = keccak(b"epoch 1")
    partials = {r.index: threshold.partial_sign(r.share, digest) for r in list(results.values())[:3]}
    assert threshold.group_verify(group_keys.pop(), digest, threshold.combine(partials, 3))


def test_network_dkg_tolerates_a_silent_dealer() -> None:
    machines = make_machines(4, 3, b"silent-dealer")
    results = run_network_dkg(machines, silent={3})
    assert set(results) == {0, 1, 2}
    assert len({r.keyset.group_public_key for r in results.values()}) == 1


def test_invalid_foreign_session_messages_are_ignored() -> None:
    machines = make_machines(4, 3, b"session-a")
    other = make_machines(4, 3, b"session-b")
    assert get_session_number(machines[0]) != get_session_number(other[0])
    from node.consensus.dkg_session import DkgSession
    from node.pb.clearing.gossip.v1 import gossip_pb2

    session = DkgSession(machines[0], 0, lambda kind, payload: payload, publish=None)  # type: ignore[arg-type]
    foreign = gossip_pb2.DkgMessage(session_id=get_session_number(other[0]), sender_index=1,
                                    type_name="clearing.dkg.v1.DkgPacket", body=b"")
    assert not session.offer(1, foreign)
    garbage = gossip_pb2.DkgMessage(session_id=session.session, sender_index=1,
                                    type_name="clearing.dkg.v1.DkgPacket", body=b"\xff\xff")
    assert not session.offer(1, garbage) and session.refused


def test_session_numbers_are_stable() -> None:
    a, b = make_machines(4, 3, b"x"), make_machines(4, 3, b"x")
    assert get_session_number(a[0]) == get_session_number(a[1])
    assert get_session_number(a[0]) != get_session_number(b[0])  # fresh encryption keys: another session
