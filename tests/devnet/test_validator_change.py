"""`clearingd devnet --validator-change-demo`: two validator-set changes done live by the nodes.

Slow part, end to end (two anvil chains, five validator processes, one of them joining without a
share): proposal 1 adds the joining validator (t 3 -> 4), proposal 2 removes validator 3 (t 4 -> 3),
each voted and executed on chain; the nodes reshare under the same group key, every epoch from the
first to the last watched is signed (no gap) and identical at all members of its set, the registries
advance their key-set id 1 -> 3 through publications alone, every key set's states are published and
their `GetMargin` proofs verify on chain, and validator 3's key-set-2 share is useless against key set 3.
Fast part: argument checks, the joining home's config, and the removed-share probe on shares reshared
in process.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from node.config import ConfigError, build_validator_config, load_config, load_validator_secrets
from node.crypto.dkg import KeySet
from node.crypto.dkg_bus import run_dkg_in_process
from node.crypto.keyshare import write_share_keystore
from node.crypto.keystore import load_passphrase
from node.crypto.reshare import get_new_holders, run_reshare_in_process
from node.devnet.homes import (
    DEVNET_SCRYPT_N,
    DevnetError,
    clearingd,
    init_home,
    write_passphrase,
)
from node.devnet.runner import DevnetOptions
from node.devnet.validator_change import (
    JOINING_INDEX,
    REMOVED_INDEX,
    compute_removed_probe,
    run_validator_change_demo,
)
from node.pb.clearing.dkg.v1.dkg_pb2 import KeySetRecord
from tests.network.files import write_network


def test_invalid_validator_count_refused(tmp_path: Path) -> None:
    with pytest.raises(DevnetError, match="--validators"):
        run_validator_change_demo(DevnetOptions(home=tmp_path, validators=5, threshold=4), lambda _: None)


def test_invalid_fractional_epoch_period_refused(tmp_path: Path) -> None:
    with pytest.raises(DevnetError, match="--epoch-period"):
        run_validator_change_demo(DevnetOptions(home=tmp_path, epoch_period_s=2.5), lambda _: None)


def test_joining_home_config_carries_the_genesis_key_set(tmp_path: Path) -> None:
    """`init --network-file` on a home whose operator is not in the file: a joining home, configured with the
    key set's public data (it holds no share keystore to read it from) and bootstrapped to every operator."""
    pass_file = write_passphrase(tmp_path)
    genesis, group_key = write_network(tmp_path / "network.json", with_keyset=True)
    joining = init_home(tmp_path / "v4", 4, pass_file, 1)
    doc = clearingd(["init", "--home", str(joining.path), "--network-file", str(tmp_path / "network.json"),
                     "--p2p-listen", "/ip4/127.0.0.1/tcp/5004", "--json"], "init")
    assert doc["joining"] is True and doc["operator_index"] is None
    vs = load_config(joining.path, env={}).values["validator_set"]
    assert not (joining.path / "keys" / "share.json").exists()
    assert vs["operators"] == genesis and joining.address not in vs["operators"]
    assert vs["keyset_id"] == 1 and vs["threshold"] == 3
    assert bytes.fromhex(vs["group_key"][2:]) == group_key
    assert len(vs["public_shares"]) == 4 and len(set(vs["public_shares"])) == 4
    record = KeySet.from_record(KeySetRecord.FromString(bytes.fromhex(vs["keyset_record"])))
    assert record.group_public_key == group_key and record.keyset_id == 1 and record.threshold == 3
    assert ["0x" + record.get_public_share(i + 1).hex() for i in range(4)] == vs["public_shares"]
    bootstrap = load_config(joining.path, env={}).values["p2p"]["bootstrap"]
    assert len(bootstrap) == 4 and all(b.startswith("/ip4/127.0.0.1/tcp/50") for b in bootstrap)


def test_invalid_joining_home_before_the_ceremony_cannot_start(tmp_path: Path) -> None:
    pass_file = write_passphrase(tmp_path)
    write_network(tmp_path / "network.json", with_keyset=False)
    joining = init_home(tmp_path / "v0", 0, pass_file, 1)
    doc = clearingd(["init", "--home", str(joining.path), "--network-file", str(tmp_path / "network.json"), "--json"],
                    "init")
    assert doc["stage"] == "genesis" and doc["joining"] is True
    config = load_config(joining.path, env={})
    with pytest.raises(ConfigError, match="no threshold share"):
        build_validator_config(config, load_validator_secrets(config))


def test_invalid_removed_share_useless_against_the_next_key_set(tmp_path: Path) -> None:
    """Key set 1 (4, t 3) -> 2 (5, t 4, one joins) -> 3 (4, t 3, old holder 4 removed), in process."""
    passphrase = load_passphrase(write_passphrase(tmp_path))
    ks1 = {int(k): r for k, r in run_dkg_in_process(4, 3).results.items()}
    ks2 = get_new_holders(run_reshare_in_process(ks1, 5, 4, continuing={i: i for i in range(1, 5)}))
    ks3 = get_new_holders(run_reshare_in_process(ks2, 4, 3, continuing={1: 1, 2: 2, 3: 3, 5: 4}))
    assert ks3[1].keyset.group_public_key == ks1[1].keyset.group_public_key and ks3[1].keyset.keyset_id == 3
    for node, (keyset, index) in {REMOVED_INDEX: (ks2, 4), 0: (ks3, 1), 1: (ks3, 2), 2: (ks3, 3)}.items():
        keys = tmp_path / f"v{node}" / "keys"
        keys.mkdir(parents=True, exist_ok=True)
        name = f"share-{keyset[index].keyset.keyset_id}.json"
        write_share_keystore(keys / name, keyset[index], passphrase, scrypt_n=DEVNET_SCRYPT_N)
    probe = compute_removed_probe(tmp_path)
    assert probe["removed_keyset_id"] == 2 and probe["removed_old_index"] == 4
    assert probe["new_keyset_id"] == 3 and probe["new_threshold"] == 3
    assert probe["partial_verifies_against_new_public_shares"] == {"1": False, "2": False, "3": False, "4": False}
    assert probe["helper_indices"] == [1, 2]
    assert probe["mixed_combine_verifies_at_index"] == {"3": False, "4": False}
    assert probe["new_set_combine_verifies"] is True


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory) -> dict:
    lines: list[str] = []
    home = tmp_path_factory.mktemp("validator-change")
    try:
        result = run_validator_change_demo(DevnetOptions(home=home, epoch_period_s=3.0), lines.append)
    except DevnetError as exc:
        raise AssertionError(f"{exc}\n" + "\n".join(lines)) from exc
    assert result, "\n".join(lines)
    return result


@pytest.mark.slow
def test_both_changes_voted_and_executed_on_chain(summary: dict) -> None:
    c = summary["validator_change"]
    add, remove = c["proposals"]
    ops = {k: v.lower() for k, v in c["operators"].items()}
    genesis = [ops[f"v{i}"] for i in range(4)]
    assert add["status"] == "approved" and remove["status"] == "approved", (add["reason"], remove["reason"])
    assert add["proposal_id"] and remove["proposal_id"] > add["proposal_id"]
    assert add["executed_block"] > add["end_block"] and remove["executed_block"] > remove["end_block"]
    assert len(set(add["voters"])) == 3 and len(set(remove["voters"])) == 4
    assert ops[f"v{JOINING_INDEX}"] in [v.lower() for v in remove["voters"]]  # the new member votes
    assert add["contract_set_after"] == {"version": 1, "members": [*genesis, ops["v4"]], "threshold": 4}
    assert remove["contract_set_after"] == {"version": 2, "members": [ops[f"v{i}"] for i in (0, 1, 2, 4)],
                                            "threshold": 3}
    assert (add["keyset_id"], add["signing_threshold"]) == (2, 4)
    assert (remove["keyset_id"], remove["signing_threshold"]) == (3, 3)
    assert add["activation_epoch"] < remove["activation_epoch"]


@pytest.mark.slow
def test_every_epoch_signed_without_gap_and_identical_at_members(summary: dict) -> None:
    c = summary["validator_change"]
    epochs = c["epochs"]
    assert c["unsigned_epochs"] == [] and summary["unsigned_epochs"] == []
    assert sorted(int(e) for e in epochs) == list(range(c["first_epoch"], c["last_epoch"] + 1))
    add, remove = c["proposals"]
    assert c["first_epoch"] < add["activation_epoch"] < remove["activation_epoch"] < c["last_epoch"]
    for e, r in epochs.items():
        assert r["identical_at_members"] is True, e
        assert r["keyset_id"] == r["expected_keyset_id"], e
        expected = 1 if int(e) < add["activation_epoch"] else 2 if int(e) < remove["activation_epoch"] else 3
        assert r["keyset_id"] == expected, e
        members = {1: ["v0", "v1", "v2", "v3"], 2: ["v0", "v1", "v2", "v3", "v4"], 3: ["v0", "v1", "v2", "v4"]}
        assert r["members"] == members[expected], e
        assert len(r["signers"]) == {1: 3, 2: 4, 3: 3}[expected], e
        assert len(set(r["signers"])) == len(r["signers"]) and max(r["signers"]) < len(members[expected]), e


@pytest.mark.slow
def test_joining_validator_signs_and_removed_validator_never_after_removal(summary: dict) -> None:
    c = summary["validator_change"]
    joining, removed = c["added"].lower(), c["removed"].lower()
    remove_at = c["proposals"][1]["activation_epoch"]
    signed_by_joining = [e for e, r in c["epochs"].items() if joining in r["signer_addresses"]]
    assert signed_by_joining and all(c["epochs"][e]["keyset_id"] in (2, 3) for e in signed_by_joining)
    for e, r in c["epochs"].items():
        if int(e) >= remove_at:
            assert removed not in r["signer_addresses"], e
    # key set 3 signed: every holder erased its retired key-set-2 share (the removed validator too)
    assert c["share_files"][f"v{JOINING_INDEX}"] == ["share-3.json"]
    assert c["share_files"][f"v{REMOVED_INDEX}"] == ["share.json"]  # the genesis share's public part only
    for node in ("v0", "v1", "v2", "v4"):
        keysets = c["nodes"][node]["keysets"]
        assert keysets["3"]["has_share"] is True, node
        assert all(r["state"] == "done" for r in c["nodes"][node]["reshares"].values()), node
    assert c["nodes"]["v3"]["keysets"]["3"]["index"] is None


@pytest.mark.slow
def test_registries_end_at_keyset_3_with_the_same_group_key(summary: dict) -> None:
    c = summary["validator_change"]
    start, end = c["registries_start"], c["registries_end"]
    assert sorted(start) == sorted(end) == ["31337", "31338"]
    for chain_id in end:
        assert start[chain_id]["keyset_id"] == 1 and end[chain_id]["keyset_id"] == 3
        assert end[chain_id]["group_key"] == start[chain_id]["group_key"]
        assert end[chain_id]["admin_nonce"] == start[chain_id]["admin_nonce"]  # no admin message
    assert c["group_key_unchanged"] is True


@pytest.mark.slow
def test_every_key_set_published_on_both_chains_with_proofs_verified(summary: dict) -> None:
    c = summary["validator_change"]
    epochs = sorted(c["epochs"].items(), key=lambda kv: int(kv[0]))
    for e, r in epochs[:-1]:  # the last epoch's publication may still be in flight
        assert r["published"] == {"31337": True, "31338": True}, e
        assert r["published_keyset_id"] == {"31337": r["keyset_id"], "31338": r["keyset_id"]}, e
    checked = c["checked_by_keyset"]
    assert sorted(checked) == ["1", "2", "3"]
    assert all(v["proof_verified_on_chain"] is True for v in checked.values())
    assert summary["proof_verified_on_chain"] is True


@pytest.mark.slow
def test_invalid_removed_validator_share_rejected_by_key_set_3(summary: dict) -> None:
    """The removed validator erased its key-set-2 share once key set 3 signed (that such a share is
    useless against key set 3 is `test_invalid_removed_share_useless_against_the_next_key_set`)."""
    assert summary["validator_change"]["removed_share_probe"] == {"removed_share_erased": True}
