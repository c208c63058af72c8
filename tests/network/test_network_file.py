"""The network file (`node.network_file`): canonical encoding and hash, field-naming errors, successors."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from node.crypto.dkg_bus import run_dkg_in_process
from node.network_file import (
    Contracts,
    GovernanceSpec,
    NetworkFileError,
    compute_network_hash,
    derive_ceremony_key,
    is_successor,
    load_network_file,
    network_to_dict,
    parse_network,
)
from tests.network.files import write_network

ADDRESS = "0x" + "ab" * 20


@pytest.fixture
def doc(tmp_path: Path) -> dict:
    write_network(tmp_path / "n.json", with_keyset=False)
    return json.loads((tmp_path / "n.json").read_text())


def test_hash_is_of_the_content_not_the_layout(tmp_path: Path, doc: dict) -> None:
    net = parse_network(doc)
    (tmp_path / "flat.json").write_text(json.dumps(doc))  # another layout, other key order
    assert compute_network_hash(load_network_file(tmp_path / "flat.json")) == compute_network_hash(net)
    lowered = json.loads(json.dumps(doc).replace(doc["operators"][0]["address"], doc["operators"][0]["address"].lower()))
    assert compute_network_hash(parse_network(lowered)) == compute_network_hash(net)  # addresses are checksummed
    other = dict(doc, genesis_time=doc["genesis_time"] + 1)
    assert compute_network_hash(parse_network(other)) != compute_network_hash(net)
    assert network_to_dict(parse_network(network_to_dict(net))) == network_to_dict(net)


@pytest.mark.parametrize(("change", "field"), [
    (lambda d: d.update(extra=1), "network.extra: unknown field"),
    (lambda d: d.update(threshold=5), "threshold: 5 outside 1..4"),
    (lambda d: d.update(epoch_period_s=2.5), "epoch_period_s: expected an integer"),
    (lambda d: d["operators"][1].update(address=d["operators"][0]["address"]), "operators[].address"),
    (lambda d: d["operators"][2].update(multiaddr="/ip4/1.2.3.4/tcp/1/p2p/x"), "operators[2].multiaddr"),
    (lambda d: d["operators"][0].update(dkg_key="0x12"), "operators[0].dkg_key: expected 32 bytes"),
    (lambda d: d["chains"][0].update(contracts={"registry": "nope"}), "chains[0].contracts.vault: missing"),
    (lambda d: d.update(governance={"chain_id": 9, "address": ADDRESS, "start_block": 1}), "chain 9 is not a chain"),
    (lambda d: d.update(version=2), "version: expected 1"),
])
def test_invalid_network_file_names_the_field(doc: dict, change, field: str) -> None:  # type: ignore[no-untyped-def]
    change(doc)
    with pytest.raises(NetworkFileError, match=re.escape(field)):
        parse_network(doc)


def test_invalid_key_set_of_another_threshold_or_size_is_refused(doc: dict) -> None:
    net = parse_network(doc)
    with pytest.raises(NetworkFileError, match=r"keyset\.threshold"):
        net.with_keyset(run_dkg_in_process(4, 2).results["1"].keyset)
    with pytest.raises(NetworkFileError, match="holders are not the operators"):
        net.with_keyset(run_dkg_in_process(5, 3).results["1"].keyset)


def test_successors_only_add_parts(doc: dict) -> None:
    genesis = parse_network(doc)
    keyed = genesis.with_keyset(run_dkg_in_process(4, 3).results["1"].keyset)
    contracts = Contracts(ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS, 1)
    deployed = keyed.with_contracts(keyed.chains[0].chain_id, contracts,
                                    GovernanceSpec(keyed.chains[0].chain_id, parse_network(doc).operators[0].address, 2))
    assert deployed.get_stage() == "deployed" and keyed.get_stage() == "keyset" and genesis.get_stage() == "genesis"
    assert is_successor(genesis, keyed) and is_successor(keyed, deployed) and is_successor(genesis, deployed)
    assert not is_successor(deployed, keyed)  # parts are never removed
    assert not is_successor(genesis, replace(keyed, network_id=2))
    other_keys = genesis.with_keyset(run_dkg_in_process(4, 3).results["1"].keyset)
    assert not is_successor(keyed, other_keys)


def test_ceremony_key_is_derived_from_the_operator_key() -> None:
    a, b = derive_ceremony_key(b"\x01" * 32), derive_ceremony_key(b"\x01" * 32)
    assert a.public_key().public_bytes_raw() == b.public_key().public_bytes_raw()
    assert derive_ceremony_key(b"\x02" * 32).public_key().public_bytes_raw() != a.public_key().public_bytes_raw()
