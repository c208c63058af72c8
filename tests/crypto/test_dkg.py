"""Dealerless DKG: honest runs, faulty dealers and recipients, timeouts, message validation."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from py_ecc.bls.hash_to_curve import hash_to_G1
from py_ecc.bls.point_compression import decompress_G1, decompress_G2
from py_ecc.optimized_bls12_381 import G2, pairing

from node.crypto import bls, dealing, threshold
from node.crypto.dkg import TRANSITIONS, DkgMachine, DkgResult, DkgTimeouts, Event, KeySet, Phase
from node.crypto.dkg_bus import (
    BusOutcome,
    Misbehaviour,
    make_encryption_keys,
    make_participants,
    run_dkg_in_process,
)
from node.crypto.errors import DkgError, ThresholdError
from node.pb.clearing.dkg.v1 import dkg_pb2

MSG = b"epoch 42 margin root"


def oracle_verify(pk: bytes, msg: bytes, sig: bytes) -> bool:
    sig_point = decompress_G1(int.from_bytes(sig, "big"))
    pk_point = decompress_G2((int.from_bytes(pk[:48], "big"), int.from_bytes(pk[48:], "big")))
    return pairing(G2, sig_point) == pairing(pk_point, hash_to_G1(msg, bls.DST_SIG, hashlib.sha256))


def honest_results(outcome: BusOutcome, honest: list[int]) -> dict[int, DkgResult]:
    assert not any(str(i) in outcome.failures for i in honest), outcome.failures
    return {i: outcome.results[str(i)] for i in honest}


def assert_working_key(results: dict[int, DkgResult], t: int, qualified: tuple[int, ...]) -> bytes:
    keys = {r.keyset.group_public_key for r in results.values()}
    assert len(keys) == 1
    (group_pk,) = keys
    for r in results.values():
        assert r.keyset.qualified == qualified
        assert r.index is not None and r.share is not None
        assert bls.public_key(r.share) == r.keyset.get_public_share(r.index)
    partials = {i: threshold.partial_sign(r.share, MSG) for i, r in results.items() if r.share is not None}
    sigs = {threshold.combine(dict(sub), t) for sub in itertools.combinations(sorted(partials.items()), t)}
    assert len(sigs) == 1
    (sig,) = sigs
    assert threshold.group_verify(group_pk, MSG, sig)
    return sig


def test_honest_dkg_gives_one_working_key_verified_by_oracle() -> None:
    outcome = run_dkg_in_process(5, 4)
    results = honest_results(outcome, [1, 2, 3, 4, 5])
    sig = assert_working_key(results, 4, (1, 2, 3, 4, 5))
    assert oracle_verify(results[1].keyset.group_public_key, MSG, sig)
    assert outcome.refused == [] and outcome.virtual_seconds == 0.0
    three = {i: threshold.partial_sign(results[i].share or 0, MSG) for i in (1, 2, 3)}
    with pytest.raises(ThresholdError, match="partials: 3 given, threshold needs 4"):
        threshold.combine(three, 4)
    assert not threshold.group_verify(results[1].keyset.group_public_key, MSG, threshold.combine(three, 3))


def test_group_key_is_sum_of_constant_terms_not_known_to_any_dealer() -> None:
    outcome = run_dkg_in_process(4, 3)
    results = honest_results(outcome, [1, 2, 3, 4])
    secret = threshold.compute_interpolated_secret({i: r.share or 0 for i, r in results.items()})
    assert bls.public_key(secret) == results[1].keyset.group_public_key
    assert results[1].keyset.get_public_shares() == results[2].keyset.get_public_shares()


def test_dealer_sending_wrong_share_is_caught_and_excluded() -> None:
    outcome = run_dkg_in_process(5, 3, misbehaviour={2: Misbehaviour(wrong_share_for=frozenset({4}))})
    results = honest_results(outcome, [1, 3, 4, 5])
    assert_working_key(results, 3, (1, 3, 4, 5))


def test_dealer_withholding_justification_is_excluded() -> None:
    bad = Misbehaviour(tamper_ciphertext_for=frozenset({1}), withhold_justification=True)
    outcome = run_dkg_in_process(4, 3, misbehaviour={3: bad})
    results = honest_results(outcome, [1, 2, 4])
    assert_working_key(results, 3, (1, 2, 4))
    assert outcome.virtual_seconds == pytest.approx(DkgTimeouts().justification)


def test_tampered_ciphertext_leads_to_complaint_and_honest_reveal() -> None:
    outcome = run_dkg_in_process(4, 3, misbehaviour={2: Misbehaviour(tamper_ciphertext_for=frozenset({3}))})
    results = honest_results(outcome, [1, 2, 3, 4])
    assert_working_key(results, 3, (1, 2, 3, 4))


def test_false_complaint_is_answered_and_dealer_stays_qualified() -> None:
    outcome = run_dkg_in_process(
        4, 3, misbehaviour={4: Misbehaviour(false_complaints_against=frozenset({1}))}
    )
    results = honest_results(outcome, [1, 2, 3, 4])
    assert_working_key(results, 3, (1, 2, 3, 4))


def test_wrong_justification_excludes_dealer() -> None:
    bad = Misbehaviour(tamper_ciphertext_for=frozenset({2}), wrong_justification=True)
    outcome = run_dkg_in_process(4, 3, misbehaviour={1: bad})
    assert_working_key(honest_results(outcome, [2, 3, 4]), 3, (2, 3, 4))


def test_silent_party_is_excluded_after_phase_timeouts() -> None:
    timeouts = DkgTimeouts(deal=5.0, response=7.0, justification=9.0)
    outcome = run_dkg_in_process(5, 3, misbehaviour={5: Misbehaviour(silent=True)}, timeouts=timeouts)
    results = honest_results(outcome, [1, 2, 3, 4])
    assert_working_key(results, 3, (1, 2, 3, 4))
    assert outcome.virtual_seconds == pytest.approx(12.0)


def test_invalid_too_many_faulty_dealers_fail_with_reason() -> None:
    silent = Misbehaviour(silent=True)
    outcome = run_dkg_in_process(4, 3, misbehaviour={3: silent, 4: silent})
    for i in ("1", "2"):
        assert "qualified: only dealers [1, 2] qualified, at least 3 needed" in outcome.failures[i]


def test_open_share_rejects_tampering_and_wrong_slot() -> None:
    recipient = make_encryption_keys([1])[1]
    ephemeral = make_encryption_keys([9])[9]
    pk = recipient.public_key().public_bytes_raw()
    ad = dealing.compute_share_ad(b"s" * 32, 1, 2, 1)
    nonce, ciphertext = dealing.seal_share(ephemeral, pk, ad, 12345)
    eph_pk = ephemeral.public_key().public_bytes_raw()
    assert dealing.open_share(recipient, eph_pk, ad, nonce, ciphertext) == 12345
    tampered = bytes([ciphertext[0] ^ 0x80]) + ciphertext[1:]
    with pytest.raises(DkgError, match="ciphertext: share does not authenticate"):
        dealing.open_share(recipient, eph_pk, ad, nonce, tampered)
    other_slot = dealing.compute_share_ad(b"s" * 32, 1, 3, 1)
    with pytest.raises(DkgError, match="ciphertext"):
        dealing.open_share(recipient, eph_pk, other_slot, nonce, ciphertext)


# --- driving machines by hand ---


def make_machines(n: int, t: int, timeouts: DkgTimeouts | None = None) -> list[DkgMachine]:
    keys = make_encryption_keys(range(1, n + 1))
    config = dealing.SessionConfig(
        epoch=1, threshold=t, dealers=tuple(range(1, n + 1)), recipients=make_participants(keys), nonce=b"t"
    )
    return [
        DkgMachine(config, encryption_key=keys[i], dealer_index=i, recipient_index=i, timeouts=timeouts)
        for i in range(1, n + 1)
    ]


def test_machine_waits_for_deadline_then_times_out() -> None:
    machines = make_machines(3, 2, DkgTimeouts(deal=4.0, response=4.0, justification=4.0))
    deal = machines[0].start(100.0)
    assert machines[0].phase == Phase.DEAL and machines[0].deadline == 104.0
    assert machines[0].tick(103.9) == [] and machines[0].phase == Phase.DEAL
    out = machines[0].tick(104.0)
    assert machines[0].phase == Phase.RESPONSE
    assert [p.WhichOneof("body") for p in out] == ["response"]
    assert len(deal) == 1


def test_invalid_late_deal_refused_and_state_unchanged() -> None:
    a, b, _ = make_machines(3, 2)
    deal_b = b.start(0.0)[0]
    a.start(0.0)
    a.tick(1000.0)
    assert a.phase == Phase.RESPONSE
    with pytest.raises(dealing.DkgMessageError, match="deal_received is not accepted in phase response"):
        a.process_packet(2, deal_b, 1000.0)
    assert 2 not in a.deals


def test_invalid_sender_session_and_equivocation_refused() -> None:
    a, b, c = make_machines(3, 2)
    a.start(0.0)
    deal_b = b.start(0.0)[0]
    with pytest.raises(dealing.DkgMessageError, match="claims 2 but the transport says sender 3"):
        a.process_packet(3, deal_b, 0.0)
    forged = dkg_pb2.DkgPacket()
    forged.CopyFrom(deal_b)
    forged.deal.session_id = b"\x00" * 32
    with pytest.raises(dealing.DkgMessageError, match=r"deal.session_id"):
        a.process_packet(2, forged, 0.0)
    forged.CopyFrom(deal_b)
    forged.deal.epoch = 7
    with pytest.raises(dealing.DkgMessageError, match=r"deal.epoch: 7"):
        a.process_packet(2, forged, 0.0)
    assert a.process_packet(2, deal_b, 0.0) == []
    assert a.process_packet(2, deal_b, 0.0) == []  # identical re-delivery is ignored
    forged.CopyFrom(deal_b)
    forged.deal.shares[0].nonce = b"\x01" * 12
    with pytest.raises(dealing.DkgMessageError, match="equivocation"):
        a.process_packet(2, forged, 0.0)
    with pytest.raises(dealing.DkgMessageError, match=r"packet.body: empty"):
        a.process_packet(2, dkg_pb2.DkgPacket(), 0.0)
    del c


def test_invalid_commitment_count_and_point_refused() -> None:
    a, b, _ = make_machines(3, 2)
    deal_b = b.start(0.0)[0]
    short = dkg_pb2.DkgPacket()
    short.CopyFrom(deal_b)
    del short.deal.commitments[1]
    with pytest.raises(dealing.DkgMessageError, match=r"deal.commitments: 1 given, threshold is 2"):
        a.process_packet(2, short, 0.0)
    bad = dkg_pb2.DkgPacket()
    bad.CopyFrom(deal_b)
    bad.deal.commitments[1] = bytes([0xC0]) + bytes(95)
    with pytest.raises(dealing.DkgMessageError, match=r"deal.commitments\[1\]: point at infinity"):
        a.process_packet(2, bad, 0.0)


def test_transition_table_is_the_only_path() -> None:
    targets = {(phase, event): nxt for (phase, event), (nxt, _) in TRANSITIONS.items()}
    assert targets[(Phase.DEAL, Event.TIMEOUT)] == Phase.RESPONSE
    assert targets[(Phase.JUSTIFICATION, Event.PHASE_COMPLETE)] == Phase.FINISHED
    assert not any(phase in (Phase.FINISHED, Phase.FAILED) for phase, _ in TRANSITIONS)
    (machine,) = make_machines(1, 1)
    machine.start(0.0)
    assert machine.phase == Phase.FINISHED  # a single party completes every phase at once
    with pytest.raises(dealing.DkgMessageError, match="start is not accepted in phase finished"):
        machine.start(1.0)


def test_invalid_session_config_fields_named() -> None:
    keys = make_participants(make_encryption_keys([1, 2, 3]))
    with pytest.raises(DkgError, match="dealers: a fresh DKG needs dealers == recipients"):
        dealing.SessionConfig(epoch=1, threshold=2, dealers=(1, 2), recipients=keys)
    with pytest.raises(DkgError, match="threshold: 4"):
        dealing.SessionConfig(epoch=1, threshold=4, dealers=(1, 2, 3), recipients=keys)
    with pytest.raises(DkgError, match="epoch"):
        dealing.SessionConfig(epoch=0, threshold=2, dealers=(1, 2, 3), recipients=keys)
    with pytest.raises(DkgError, match=r"timeouts.deal"):
        DkgTimeouts(deal=0.0)


def test_session_id_binds_configuration() -> None:
    keys = make_participants(make_encryption_keys([1, 2, 3]))
    base = dealing.SessionConfig(epoch=1, threshold=2, dealers=(1, 2, 3), recipients=keys, nonce=b"a")
    assert (
        base.session_id
        == dealing.SessionConfig(
            epoch=1, threshold=2, dealers=(1, 2, 3), recipients=keys, nonce=b"a"
        ).session_id
    )
    variants = [
        dealing.SessionConfig(epoch=2, threshold=2, dealers=(1, 2, 3), recipients=keys, nonce=b"a"),
        dealing.SessionConfig(epoch=1, threshold=3, dealers=(1, 2, 3), recipients=keys, nonce=b"a"),
        dealing.SessionConfig(epoch=1, threshold=2, dealers=(1, 2, 3), recipients=keys, nonce=b"b"),
    ]
    assert len({base.session_id, *(v.session_id for v in variants)}) == 4


def test_keyset_record_round_trip() -> None:
    outcome = run_dkg_in_process(3, 2)
    keyset = outcome.results["1"].keyset
    record = keyset.to_record(index=1)
    assert KeySet.from_record(dkg_pb2.KeySetRecord.FromString(record.SerializeToString())) == keyset
    text = repr(outcome.results["1"])
    assert "share=" not in text and str(outcome.results["1"].share) not in text


def test_packet_wire_helpers() -> None:
    a, b = make_machines(2, 2)
    deal = a.start(0.0)[0]
    assert dealing.parse_packet(deal.SerializeToString()) == deal
    assert dealing.get_packet_sender(deal) == ("dealer", 1)
    b.start(0.0)
    out = b.process_packet(1, deal, 0.0)
    assert [dealing.get_packet_sender(p) for p in out] == [("recipient", 2)]


def test_invalid_wire_packets_refused() -> None:
    with pytest.raises(dealing.DkgMessageError, match="packet: not a DkgPacket"):
        dealing.parse_packet(b"\xff\xff\xff")
    with pytest.raises(dealing.DkgMessageError, match=r"packet\.body: empty"):
        dealing.parse_packet(b"")
    with pytest.raises(dealing.DkgMessageError, match="at most"):
        dealing.parse_packet(bytes(dealing.MAX_PACKET_BYTES + 1))


def test_status_reports_progress_and_complaints() -> None:
    a, b, c = make_machines(3, 2, DkgTimeouts(deal=3.0, response=3.0, justification=3.0))
    deal_a = a.start(0.0)[0]
    b.start(0.0)
    status = a.get_status()
    assert (status.phase, status.deadline, status.deals_from) == ("deal", 3.0, (1,))
    b.process_packet(1, deal_a, 0.5)
    assert b.get_status().deals_from == (1, 2)
    out = b.tick(3.0)
    assert b.get_status().phase == "response" and b.get_status().responses_from == (2,)
    assert [p.response.responses[0].status for p in out] == [dkg_pb2.RESPONSE_STATUS_SUCCESS]
    del c


def test_mixed_faults_at_seven_parties() -> None:
    faults = {
        2: Misbehaviour(silent=True),
        5: Misbehaviour(wrong_share_for=frozenset({1, 3})),
        7: Misbehaviour(false_complaints_against=frozenset({1, 4})),
    }
    outcome = run_dkg_in_process(7, 4, misbehaviour=faults)
    results = honest_results(outcome, [1, 3, 4, 6])
    assert_working_key({**results, 7: outcome.results["7"]}, 4, (1, 3, 4, 6, 7))


def test_encryption_key_round_trip_through_raw_bytes() -> None:
    private, public = dealing.generate_encryption_key()
    key = dealing.load_encryption_key(private)
    assert key.public_key().public_bytes_raw() == public
    with pytest.raises(DkgError, match="encryption_key: expected 32 bytes"):
        dealing.load_encryption_key(private[:31])
