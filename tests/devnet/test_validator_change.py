"""`clearingd devnet --validator-change-demo` end to end (two anvil chains, validator processes).

A VALIDATOR_SET change voted on chain (add a fifth operator, remove validator 3, t = 3) is applied
by operator-driven resharing at the activation epoch: the registries keep the same group key, their
key-set id goes 1 -> 2 (rotation signed by the old group key), later epochs are signed by the new
set and published on both chains, and the removed validator's old share is useless against the new
key set. Fast part: argument checks of the demo.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from node.devnet.homes import DevnetError
from node.devnet.runner import DevnetOptions
from node.devnet.validator_change import run_validator_change_demo


def test_invalid_validator_count_refused(tmp_path: Path) -> None:
    with pytest.raises(DevnetError, match="--validators"):
        run_validator_change_demo(DevnetOptions(home=tmp_path, validators=5, threshold=4), lambda _: None)


def test_invalid_fractional_epoch_period_refused(tmp_path: Path) -> None:
    with pytest.raises(DevnetError, match="--epoch-period"):
        run_validator_change_demo(DevnetOptions(home=tmp_path, epoch_period_s=2.5), lambda _: None)


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory) -> dict:
    lines: list[str] = []
    home = tmp_path_factory.mktemp("validator-change")
    result = run_validator_change_demo(DevnetOptions(home=home, epoch_period_s=3.0), lines.append)
    assert result, "\n".join(lines)
    return result


@pytest.mark.slow
def test_set_change_voted_and_executed_on_chain(summary: dict) -> None:
    c = summary["validator_change"]
    assert c["executed"] is True and c["execute_block"] > c["end_block"]
    assert len(set(c["voters"])) == 3
    members = c["contract_set"]["members"]
    assert c["contract_set"]["version"] == 1 and c["contract_set"]["threshold"] == 3
    assert c["added"].lower() in [m.lower() for m in members]
    assert c["removed"].lower() not in [m.lower() for m in members]
    assert sorted(m.lower() for m in members) == sorted(a.lower() for a in c["new_operators"])
    assert c["new_threshold"] == 3


@pytest.mark.slow
def test_group_key_unchanged_and_keyset_id_rotated_on_both_registries(summary: dict) -> None:
    c = summary["validator_change"]
    before, after = c["registries_before"], c["registries_after"]
    assert sorted(before) == sorted(after) and len(after) == 2
    for chain_id in after:
        assert before[chain_id]["keyset_id"] == 1 and after[chain_id]["keyset_id"] == 2
        assert after[chain_id]["group_key"] == before[chain_id]["group_key"]
        assert after[chain_id]["admin_nonce"] == before[chain_id]["admin_nonce"] + 1
        assert c["rotations"][chain_id]["status"] == 1
    assert c["group_key_unchanged"] is True


@pytest.mark.slow
def test_epochs_after_change_signed_by_new_set_and_published_everywhere(summary: dict) -> None:
    c = summary["validator_change"]
    after = c["epochs_after_change"]
    assert len(after) >= 2 and c["epochs_before_change"]
    assert min(after) > c["changed_after_epoch"] >= c["activation_epoch"] - 1
    for epoch in after:
        signers = c["signers_after_change"][str(epoch)]
        assert len(signers) == 3 and set(signers) <= set(range(len(c["new_operators"])))
        assert summary["identical_by_epoch"][str(epoch)] is True
    # every epoch after the change but the last (its publication may still be in flight) is on both chains
    assert all(c["published_after_change"][str(e)] for e in after[:-1])
    # the registries recorded key set 1 before the change and key set 2 after it
    for chain_id, by_epoch in c["published_keyset_ids"].items():
        assert by_epoch and all(k == (1 if int(e) <= c["changed_after_epoch"] else 2) for e, k in by_epoch.items())
        assert any(int(e) > c["changed_after_epoch"] for e in by_epoch), chain_id
    for epoch in after:
        addresses = c["signer_addresses_after_change"][str(epoch)]
        assert c["removed"] not in addresses and set(addresses) <= set(c["new_operators"])
    assert summary["validators"] == 4 and summary["proof_verified_on_chain"] is True
    assert summary["checked_epoch"] > c["changed_after_epoch"]


@pytest.mark.slow
def test_invalid_removed_share_partial_rejected_by_new_set(summary: dict) -> None:
    probe = summary["validator_change"]["removed_share_probe"]
    assert probe["removed_old_index"] == 4
    assert sorted(probe["partial_verifies_against_new_public_shares"]) == ["1", "2", "3", "4"]
    assert not any(probe["partial_verifies_against_new_public_shares"].values())
    assert probe["mixed_combine_indices"] == [1, 2, 4]
    assert probe["mixed_combine_verifies"] is False
    assert probe["new_set_combine_verifies"] is True
