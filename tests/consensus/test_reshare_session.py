"""Resharing to a changed validator set over real signed gossip envelopes (in-memory trio bus).

Sessions run on trio's virtual clock (`MockClock`, autojump), so timing holds under any machine load.
Every published envelope is opened with `open_envelope` against the member list of the key-set id it
was sealed under (old set for deals and justifications, new set for responses and key announcements)
and offered to every other session, as the epoch engine does.
"""

from __future__ import annotations

import itertools

import pytest
import trio
import trio.testing
from eth_hash.auto import keccak

from node.consensus.reshare_session import (
    ENCRYPTION_KEY_TYPE,
    PACKET_TYPE,
    ResharePlan,
    ReshareSession,
    compute_encryption_key,
    get_session_number,
)
from node.crypto import bls, threshold
from node.crypto.dkg import DkgResult, DkgTimeouts, run_dkg_in_process
from node.crypto.errors import DkgError
from node.p2p.envelope import get_operator_address, open_envelope, seal_envelope
from node.pb.clearing.dkg.v1 import dkg_pb2
from node.pb.clearing.gossip.v1 import gossip_pb2

NETWORK_ID = 7
MSG = b"first state signed by the new key set"
TIMEOUTS = DkgTimeouts(deal=5.0, response=5.0, justification=5.0)
RUN_TIMEOUT_S = 60.0

Outcome = dict[bytes, DkgResult | DkgError]


def make_operator_key(i: int) -> bytes:
    return keccak(b"reshare-session-operator" + i.to_bytes(4, "big"))


OPERATOR_KEYS = {get_operator_address(make_operator_key(i)): make_operator_key(i) for i in range(8)}
ADDRESSES = tuple(OPERATOR_KEYS)


def make_old_holders(n: int, t: int) -> dict[int, DkgResult]:
    outcome = run_dkg_in_process(n, t)
    assert not outcome.failures, outcome.failures
    return {int(name): r for name, r in outcome.results.items()}


@pytest.fixture(scope="module")
def old4() -> dict[int, DkgResult]:
    return make_old_holders(4, 3)


@pytest.fixture(scope="module")
def old5() -> dict[int, DkgResult]:
    return make_old_holders(5, 4)


def make_plan(old: dict[int, DkgResult], new_members: tuple[bytes, ...], new_t: int,
              attempt: int = 0) -> ResharePlan:
    return ResharePlan(network_id=NETWORK_ID, proposal_id=3, attempt=attempt, old_keyset=old[1].keyset,
                       old_members=ADDRESSES[:len(old)], new_members=new_members, new_threshold=new_t)


class Bus:
    """Delivers each envelope, opened against its key set's members, to every other session."""

    def __init__(self, plan: ResharePlan) -> None:
        self.members = {plan.old_keyset.keyset_id: plan.old_members, plan.new_keyset_id: plan.new_members}
        self.sessions: dict[bytes, ReshareSession] = {}

    def make_publish(self, sender: bytes):  # type: ignore[no-untyped-def]
        async def publish(data: bytes) -> None:
            env = gossip_pb2.SignedEnvelope()
            env.ParseFromString(data)
            opened = open_envelope(data, self.members[env.keyset_id], NETWORK_ID, env.keyset_id)
            for address, session in self.sessions.items():
                if address != sender:
                    message = opened.message
                    session.offer(env.keyset_id, opened.signer_index, message)  # type: ignore[arg-type]
            await trio.lowlevel.checkpoint()

        return publish


def make_seal(operator_key: bytes):  # type: ignore[no-untyped-def]
    def seal(keyset_id: int, signer_index0: int, kind: int, payload: bytes) -> bytes:
        return seal_envelope(kind, payload, signer_index0, operator_key, NETWORK_ID, keyset_id)

    return seal


def make_session(plan: ResharePlan, bus: Bus, address: bytes, old: dict[int, DkgResult],
                 announce_interval_s: float = 0.5) -> ReshareSession:
    old_index = plan.old_members.index(address) + 1 if address in plan.old_members else None
    return ReshareSession(plan, operator_key=OPERATOR_KEYS[address],
                          old_share=old[old_index].share if old_index is not None else None,
                          seal=make_seal(OPERATOR_KEYS[address]), publish=bus.make_publish(address),
                          timeouts=TIMEOUTS, tick_s=0.05, announce_interval_s=announce_interval_s)


def run_reshare(plan: ResharePlan, old: dict[int, DkgResult], silent: frozenset[bytes] = frozenset(),
                late: dict[bytes, float] | None = None,
                announce_interval_s: float = 0.5) -> tuple[Outcome, dict[bytes, ReshareSession]]:
    """Run every session but the silent ones; a late one joins the bus (hears anything) after its delay."""
    bus, late = Bus(plan), late or {}
    sessions = {address: make_session(plan, bus, address, old, announce_interval_s)
                for address in dict.fromkeys(plan.old_members + plan.new_members) if address not in silent}
    bus.sessions.update({a: s for a, s in sessions.items() if a not in late})
    outcome: Outcome = {}

    async def one(address: bytes, session: ReshareSession) -> None:
        await trio.sleep(late.get(address, 0.0))
        bus.sessions[address] = session
        try:
            outcome[address] = await session.run(RUN_TIMEOUT_S)
        except DkgError as exc:
            outcome[address] = exc

    async def all_of() -> None:
        async with trio.open_nursery() as nursery:
            for address, session in sessions.items():
                nursery.start_soon(one, address, session)

    # virtual time (it moves only while every session waits): the phases, the late join and the
    # re-announcements keep their order however slowly a loaded machine computes the deals
    trio.run(all_of, clock=trio.testing.MockClock(autojump_threshold=0))
    return outcome, sessions


def get_new_shares(plan: ResharePlan, outcome: Outcome) -> dict[int, int]:
    """New index -> new share of every new member, checking each against the new key set."""
    shares = {}
    for j, address in enumerate(plan.new_members, start=1):
        result = outcome[address]
        assert isinstance(result, DkgResult), result
        assert result.index == j and result.share is not None
        assert bls.public_key(result.share) == result.keyset.get_public_share(j)
        shares[j] = result.share
    return shares


def assert_one_new_keyset(plan: ResharePlan, outcome: Outcome) -> None:
    assert all(isinstance(r, DkgResult) for r in outcome.values()), outcome
    keysets = {r.keyset for r in outcome.values() if isinstance(r, DkgResult)}
    assert len(keysets) == 1
    keyset = keysets.pop()
    assert keyset.group_public_key == plan.old_keyset.group_public_key
    assert keyset.keyset_id == plan.old_keyset.keyset_id + 1 == plan.new_keyset_id
    assert keyset.threshold == plan.new_threshold
    assert keyset.holders == tuple(range(1, len(plan.new_members) + 1))


def test_reshare_adds_a_member_and_raises_the_threshold(old4: dict[int, DkgResult]) -> None:
    plan = make_plan(old4, ADDRESSES[:5], 4)
    outcome, sessions = run_reshare(plan, old4)
    assert set(outcome) == set(ADDRESSES[:5])
    assert all(not s.refused and not s.dropped for s in sessions.values())
    assert_one_new_keyset(plan, outcome)
    shares = get_new_shares(plan, outcome)
    partials = {j: threshold.partial_sign(s, MSG) for j, s in shares.items()}
    group_pk = plan.old_keyset.group_public_key
    for subset in itertools.combinations(sorted(partials), 4):
        assert threshold.group_verify(group_pk, MSG, threshold.combine({j: partials[j] for j in subset}, 4))
    three = {j: partials[j] for j in (1, 2, 3)}
    assert not threshold.group_verify(group_pk, MSG, threshold.combine(three, 3))


def test_reshare_removes_a_member(old5: dict[int, DkgResult]) -> None:
    removed = ADDRESSES[2]
    plan = make_plan(old5, tuple(a for a in ADDRESSES[:5] if a != removed), 3)
    outcome, _ = run_reshare(plan, old5)
    assert_one_new_keyset(plan, outcome)
    removed_result = outcome[removed]
    assert isinstance(removed_result, DkgResult)
    assert removed_result.index is None and removed_result.share is None
    shares = get_new_shares(plan, outcome)
    group_pk = plan.old_keyset.group_public_key
    keyset = removed_result.keyset
    old_partial = threshold.partial_sign(old5[3].share or 0, MSG)
    public_shares = keyset.get_public_shares().values()
    assert not any(threshold.partial_verify(pk, MSG, old_partial) for pk in public_shares)
    new_partials = {j: threshold.partial_sign(shares[j], MSG) for j in (1, 2)}
    for slot in (3, 4):
        mixed = {**new_partials, slot: old_partial}
        assert not threshold.group_verify(group_pk, MSG, threshold.combine(mixed, 3))
    honest = {**new_partials, 4: threshold.partial_sign(shares[4], MSG)}
    assert threshold.group_verify(group_pk, MSG, threshold.combine(honest, 3))


def test_reshare_succeeds_with_a_silent_old_dealer(old4: dict[int, DkgResult]) -> None:
    silent = ADDRESSES[3]
    plan = make_plan(old4, ADDRESSES[:3] + ADDRESSES[4:5], 3)
    outcome, _ = run_reshare(plan, old4, silent=frozenset({silent}))
    assert silent not in outcome
    assert_one_new_keyset(plan, outcome)
    assert all(r.keyset.qualified == (1, 2, 3) for r in outcome.values() if isinstance(r, DkgResult))
    shares = get_new_shares(plan, outcome)
    partials = {j: threshold.partial_sign(shares[j], MSG) for j in (2, 3, 4)}
    assert threshold.group_verify(plan.old_keyset.group_public_key, MSG, threshold.combine(partials, 3))


def test_late_joining_member_gets_keys_resent_and_replays_early_packets(old4: dict[int, DkgResult]) -> None:
    newcomer = ADDRESSES[4]
    plan = make_plan(old4, ADDRESSES[:5], 4)
    # others re-announce at 0, 1, 2 s: it joins at 1.4 s and is dealt to before it knows their keys
    outcome, sessions = run_reshare(plan, old4, late={newcomer: 1.4}, announce_interval_s=1.0)
    assert_one_new_keyset(plan, outcome)
    get_new_shares(plan, outcome)
    # the others' first announcements went out before it listened: it learnt their keys from a re-send,
    # and the deals that reached it before that were buffered and replayed into its machine
    assert sessions[newcomer].replayed > 0
    assert all(s.replayed == 0 for a, s in sessions.items() if a != newcomer)


def test_session_number_and_encryption_key_are_deterministic(old4: dict[int, DkgResult]) -> None:
    plan = make_plan(old4, ADDRESSES[:5], 4)
    assert get_session_number(plan) == get_session_number(make_plan(old4, ADDRESSES[:5], 4))
    assert get_session_number(plan) != get_session_number(make_plan(old4, ADDRESSES[:5], 4, attempt=1))
    assert get_session_number(plan) != get_session_number(make_plan(old4, ADDRESSES[:5], 3))
    assert 0 <= get_session_number(plan) < 1 << 64
    key = OPERATOR_KEYS[ADDRESSES[4]]
    raw = compute_encryption_key(key, 1).private_bytes_raw()
    assert raw == compute_encryption_key(key, 1).private_bytes_raw()
    assert raw != compute_encryption_key(key, 2).private_bytes_raw()


def packet_message(session: int, sender0: int, packet: dkg_pb2.DkgPacket) -> gossip_pb2.DkgMessage:
    return gossip_pb2.DkgMessage(session_id=session, sender_index=sender0, type_name=PACKET_TYPE,
                                 body=packet.SerializeToString())


def open_sealed(plan: ResharePlan, address: bytes, keyset_id: int,
                msg: gossip_pb2.DkgMessage) -> tuple[int, object]:
    """Seal `msg` with `address`'s operator key under `keyset_id` and open it as a receiver would."""
    members = plan.old_members if keyset_id == plan.old_keyset.keyset_id else plan.new_members
    data = seal_envelope(gossip_pb2.MESSAGE_KIND_DKG, msg.SerializeToString(), members.index(address),
                         OPERATOR_KEYS[address], NETWORK_ID, keyset_id)
    opened = open_envelope(data, members, NETWORK_ID, keyset_id)
    return opened.signer_index, opened.message


def make_idle_session(plan: ResharePlan, old: dict[int, DkgResult], address: bytes) -> ReshareSession:
    return make_session(plan, Bus(plan), address, old)


def test_invalid_deal_sealed_under_the_new_keyset_is_refused(old4: dict[int, DkgResult]) -> None:
    plan = make_plan(old4, ADDRESSES[:5], 4)
    receiver = make_idle_session(plan, old4, ADDRESSES[4])
    deal = dkg_pb2.DkgPacket(deal=dkg_pb2.DealBundle(dealer_index=1))
    msg = packet_message(receiver.session, 0, deal)
    signer, opened = open_sealed(plan, ADDRESSES[0], plan.new_keyset_id, msg)
    assert not receiver.offer(plan.new_keyset_id, signer, opened)  # type: ignore[arg-type]
    assert receiver.refused and "deal" in receiver.refused[-1]
    response = dkg_pb2.DkgPacket(response=dkg_pb2.ResponseBundle(responder_index=1))
    msg_response = packet_message(receiver.session, 0, response)
    signer, opened = open_sealed(plan, ADDRESSES[0], plan.old_keyset.keyset_id, msg_response)
    assert not receiver.offer(plan.old_keyset.keyset_id, signer, opened)  # type: ignore[arg-type]
    assert len(receiver.refused) == 2 and "response" in receiver.refused[-1]
    signer, opened = open_sealed(plan, ADDRESSES[0], plan.old_keyset.keyset_id, msg)
    assert receiver.offer(plan.old_keyset.keyset_id, signer, opened)  # type: ignore[arg-type]
    assert len(receiver.refused) == 2


def test_invalid_second_encryption_key_from_one_recipient_is_refused(old4: dict[int, DkgResult]) -> None:
    plan = make_plan(old4, ADDRESSES[:5], 4)
    receiver = make_idle_session(plan, old4, ADDRESSES[0])
    session = receiver.session

    def announcement(key: bytes) -> gossip_pb2.DkgMessage:
        return gossip_pb2.DkgMessage(session_id=session, sender_index=4, type_name=ENCRYPTION_KEY_TYPE,
                                     body=key)

    first = compute_encryption_key(OPERATOR_KEYS[ADDRESSES[4]], session).public_key().public_bytes_raw()
    signer, opened = open_sealed(plan, ADDRESSES[4], plan.new_keyset_id, announcement(first))
    assert receiver.offer(plan.new_keyset_id, signer, opened)  # type: ignore[arg-type]
    assert receiver.offer(plan.new_keyset_id, signer, opened)  # type: ignore[arg-type]  # re-announcement
    assert receiver.keys[5] == first and not receiver.refused
    signer, opened = open_sealed(plan, ADDRESSES[4], plan.new_keyset_id, announcement(bytes(32)))
    assert not receiver.offer(plan.new_keyset_id, signer, opened)  # type: ignore[arg-type]
    assert receiver.keys[5] == first
    assert len(receiver.refused) == 1 and "second, different encryption key" in receiver.refused[0]


def test_invalid_operator_in_neither_set(old4: dict[int, DkgResult]) -> None:
    plan = make_plan(old4, ADDRESSES[:5], 4)
    with pytest.raises(DkgError, match="operator_key"):
        make_idle_session(plan, old4, ADDRESSES[6])


def test_invalid_old_share_that_does_not_match_its_public_share(old4: dict[int, DkgResult]) -> None:
    plan = make_plan(old4, ADDRESSES[:5], 4)
    wrong = {**old4, 2: old4[3]}
    with pytest.raises(DkgError, match="old_share"):
        make_idle_session(plan, wrong, ADDRESSES[1])
    missing = {**old4, 2: DkgResult(keyset=old4[2].keyset, index=2, share=None)}
    with pytest.raises(DkgError, match="old_share"):
        make_idle_session(plan, missing, ADDRESSES[1])


def test_invalid_plan_fields_are_named(old4: dict[int, DkgResult]) -> None:
    with pytest.raises(DkgError, match="new_members"):
        make_plan(old4, (ADDRESSES[0], ADDRESSES[0]), 1)
    with pytest.raises(DkgError, match="new_threshold"):
        make_plan(old4, ADDRESSES[:5], 6)
    with pytest.raises(DkgError, match="old_members"):
        ResharePlan(network_id=NETWORK_ID, proposal_id=3, attempt=0, old_keyset=old4[1].keyset,
                    old_members=ADDRESSES[:3], new_members=ADDRESSES[:3], new_threshold=2)
