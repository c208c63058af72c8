"""Resharing keeps the group key, changes set and threshold, and retires the old shares."""

from __future__ import annotations

import itertools

import pytest

from node.crypto import bls, threshold
from node.crypto.dkg import DkgResult
from node.crypto.dkg_bus import (
    BusOutcome,
    Misbehaviour,
    make_encryption_keys,
    make_participants,
    run_dkg_in_process,
)
from node.crypto.errors import DkgError
from node.crypto.reshare import (
    get_new_holders,
    make_reshare_config,
    make_reshare_machine,
    run_reshare_in_process,
)

MSG = b"state after validator-set change"


@pytest.fixture(scope="module")
def old_holders() -> dict[int, DkgResult]:
    outcome = run_dkg_in_process(5, 3)
    assert not outcome.failures
    return {int(name): r for name, r in outcome.results.items()}


def sign_all(holders: dict[int, DkgResult], msg: bytes) -> dict[int, bytes]:
    return {i: threshold.partial_sign(r.share or 0, msg) for i, r in holders.items()}


def assert_same_key_everywhere(outcome: BusOutcome, group_pk: bytes) -> None:
    assert not outcome.failures, outcome.failures
    assert {r.keyset.group_public_key for r in outcome.results.values()} == {group_pk}


def test_reshare_to_larger_set_and_threshold_keeps_group_key(old_holders: dict[int, DkgResult]) -> None:
    group_pk = old_holders[1].keyset.group_public_key
    outcome = run_reshare_in_process(old_holders, 7, 5, continuing={1: 1, 2: 2, 3: 3, 4: 4})
    assert_same_key_everywhere(outcome, group_pk)
    new = get_new_holders(outcome)
    assert sorted(new) == [1, 2, 3, 4, 5, 6, 7]
    keyset = new[1].keyset
    assert keyset.keyset_id == old_holders[1].keyset.keyset_id + 1
    assert keyset.threshold == 5 and len(keyset.commitments) == 5
    for j, r in new.items():
        assert bls.public_key(r.share or 0) == keyset.get_public_share(j)
    partials = sign_all(new, MSG)
    for subset in itertools.combinations(sorted(partials), 5):
        sig = threshold.combine({j: partials[j] for j in subset}, 5)
        assert threshold.group_verify(group_pk, MSG, sig)
    four = {j: partials[j] for j in (1, 2, 3, 4)}
    assert not threshold.group_verify(group_pk, MSG, threshold.combine(four, 4))


def test_reshare_to_smaller_disjoint_set(old_holders: dict[int, DkgResult]) -> None:
    group_pk = old_holders[1].keyset.group_public_key
    outcome = run_reshare_in_process(old_holders, 3, 2)
    assert_same_key_everywhere(outcome, group_pk)
    new = get_new_holders(outcome)
    assert sorted(new) == [1, 2, 3]
    assert outcome.results["old5"].share is None and outcome.results["old5"].index is None
    sig = threshold.combine({j: threshold.partial_sign(new[j].share or 0, MSG) for j in (1, 3)}, 2)
    assert threshold.group_verify(group_pk, MSG, sig)


def test_invalid_old_shares_do_not_combine_with_new_ones(old_holders: dict[int, DkgResult]) -> None:
    group_pk = old_holders[1].keyset.group_public_key
    outcome = run_reshare_in_process(old_holders, 5, 3, continuing={i: i for i in range(1, 6)})
    new = get_new_holders(outcome)
    old_partials = sign_all(old_holders, MSG)
    new_partials = sign_all(new, MSG)
    assert threshold.group_verify(group_pk, MSG, threshold.combine(old_partials, 3))
    assert threshold.group_verify(group_pk, MSG, threshold.combine(new_partials, 3))
    for old_pick in (1, 2):
        mixed = {j: new_partials[j] for j in (1, 2, 3)[old_pick:]}
        mixed.update({j: old_partials[j] for j in (4, 5)[: 3 - len(mixed)]})
        assert not threshold.group_verify(group_pk, MSG, threshold.combine(mixed, 3))
    for j in (1, 2, 3):
        assert new[j].share != old_holders[j].share
        assert not threshold.partial_verify(new[j].keyset.get_public_share(j), MSG, old_partials[j])


def test_reshare_survives_faulty_old_dealers(old_holders: dict[int, DkgResult]) -> None:
    group_pk = old_holders[1].keyset.group_public_key
    faults = {2: Misbehaviour(silent=True), 4: Misbehaviour(wrong_share_for=frozenset({1}))}
    outcome = run_reshare_in_process(old_holders, 4, 3, misbehaviour=faults)
    honest = {k: v for k, v in outcome.results.items() if k not in ("old2", "old4")}
    assert not {k for k in outcome.failures if k not in ("old2", "old4")}
    assert {r.keyset.group_public_key for r in honest.values()} == {group_pk}
    assert {r.keyset.qualified for r in honest.values()} == {(1, 3, 5)}
    new = {r.index: r for r in honest.values() if r.index is not None}
    sig = threshold.combine({j: threshold.partial_sign(new[j].share or 0, MSG) for j in (2, 3, 4)}, 3)
    assert threshold.group_verify(group_pk, MSG, sig)


def test_invalid_reshare_with_too_few_qualified_old_holders_fails(old_holders: dict[int, DkgResult]) -> None:
    silent = Misbehaviour(silent=True)
    outcome = run_reshare_in_process(old_holders, 4, 3, misbehaviour={1: silent, 2: silent, 3: silent})
    assert "qualified: only dealers [4, 5] qualified, at least 3 needed" in outcome.failures["new1"]


def test_invalid_reshare_config_refused(old_holders: dict[int, DkgResult]) -> None:
    keyset = old_holders[1].keyset
    recipients = make_participants(make_encryption_keys([1, 2, 3]))
    with pytest.raises(DkgError, match="dealers: 2 old holders, old threshold is 3"):
        make_reshare_config(keyset, [1, 2], recipients, 2)
    with pytest.raises(DkgError, match=r"dealers: \[9\] are not holders"):
        make_reshare_config(keyset, [1, 2, 9], recipients, 2)


def test_invalid_dealer_with_wrong_old_share_is_refused(old_holders: dict[int, DkgResult]) -> None:
    group_pk = old_holders[1].keyset.group_public_key
    outcome = run_reshare_in_process(old_holders, 4, 3, misbehaviour={3: Misbehaviour(wrong_secret=True)})
    assert any("dealer 3 does not commit to its old public share" in r for r in outcome.refused)
    new = get_new_holders(outcome)
    assert {r.keyset.qualified for r in new.values()} == {(1, 2, 4, 5)}
    sig = threshold.combine({j: threshold.partial_sign(new[j].share or 0, MSG) for j in (1, 2, 4)}, 3)
    assert threshold.group_verify(group_pk, MSG, sig)


def test_invalid_honest_machine_with_wrong_old_share_refuses_to_start(
    old_holders: dict[int, DkgResult],
) -> None:
    keyset = old_holders[1].keyset
    keys = make_encryption_keys([1, 2, 3])
    config = make_reshare_config(keyset, [1, 2, 3, 4, 5], make_participants(keys), 2)
    bad = DkgResult(keyset=keyset, index=3, share=((old_holders[3].share or 0) + 1) % bls.CURVE_ORDER)
    with pytest.raises(
        DkgError, match="dealer_secret: old share of holder 3 does not match its public share"
    ):
        make_reshare_machine(config, old=bad, new_index=None, encryption_key=None)
