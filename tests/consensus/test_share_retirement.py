"""Erasing retired share keystores (real `clearingd init` home, real encrypted keystores): the configured
share keeps only its public part and the node still starts from it; a later share is removed; the
old bytes are zeroed; nothing secret reaches the log."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from node.config import build_validator_config, get_share_path, load_config, load_validator_secrets
from node.consensus.inputs import FakeInputSource
from node.consensus.publishing import NullPublisher
from node.crypto.dkg_bus import run_dkg_in_process
from node.crypto.errors import KeystoreError
from node.crypto.keyshare import (
    RETIRED_SHARE_KIND,
    load_share_keystore,
    retire_share_keystore,
    write_share_keystore,
)
from node.crypto.keystore import erase_keystore, load_passphrase, read_keystore_metadata
from node.crypto.reshare import get_new_holders, run_reshare_in_process
from node.devnet.homes import DEVNET_SCRYPT_N, init_home, write_passphrase
from node.logs import get_fields
from node.p2p.envelope import get_operator_address
from node.ports import MemoryStore
from node.validator import build_engine, make_share_eraser
from tests.consensus.cluster import operator_key


def make_home(tmp_path: Path) -> tuple[Path, dict[str, str], dict, dict]:
    """Validator 0 of a 4-member key set 1, holding also its share of key set 2 (`share-2.json`)."""
    pass_file = write_passphrase(tmp_path)
    genesis = {int(k): r for k, r in run_dkg_in_process(4, 3).results.items()}
    new = get_new_holders(run_reshare_in_process(genesis, 4, 3, continuing={i: i for i in range(1, 5)}))
    passphrase = load_passphrase(pass_file)
    write_share_keystore(tmp_path / "share1.json", genesis[1], passphrase, scrypt_n=DEVNET_SCRYPT_N)
    home = init_home(tmp_path / "v0", 0, pass_file, 1, tmp_path / "share1.json").path
    write_share_keystore(get_share_path(home / "keys", 2), new[1], passphrase, scrypt_n=DEVNET_SCRYPT_N)
    own = load_config(home, env={}).get_path("keys", "operator_file")
    from node.cli.keys import describe_keystore

    operators = [describe_keystore(own)["address"]] + ["0x" + get_operator_address(operator_key(i)).hex()
                                                       for i in (1, 2, 3)]
    env = {"CLEARING_VALIDATOR_SET_OPERATORS": ",".join(operators),
           "CLEARING_KEYS_PASSPHRASE_FILE": str(pass_file)}
    return home, env, genesis, new


def load(home: Path, env: dict[str, str]):  # type: ignore[no-untyped-def]
    config = load_config(home, env=env)
    return build_validator_config(config, load_validator_secrets(config))


def test_retired_shares_erased_and_the_node_still_starts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    home, env, genesis, new = make_home(tmp_path)
    config = load(home, env)
    assert config.share_sk == genesis[1].share and config.share_file == home / "keys" / "share.json"
    erase = make_share_eraser(config)
    assert erase is not None
    share_file, later_file = home / "keys" / "share.json", home / "keys" / "share-2.json"
    witness = tmp_path / "witness"  # a second name of share.json's bytes: they must end up zeroed
    os.link(share_file, witness)
    size = witness.stat().st_size

    with caplog.at_level("INFO", logger="node.validator"):
        erase(1, 2)  # key set 2 signed: the configured share of key set 1 is retired
    assert witness.read_bytes() == bytes(size)
    meta = read_keystore_metadata(share_file)
    assert meta["kind"] == RETIRED_SHARE_KIND and meta["keyset_id"] == 1 and meta["retired_by_keyset"] == 2
    assert stat.S_IMODE(share_file.stat().st_mode) == 0o600
    kept = load_share_keystore(share_file, config.passphrase)
    assert kept.share is None and kept.index == 1 and kept.keyset == genesis[1].keyset
    (erased,) = [r for r in caplog.records if r.getMessage() == "retired share erased"]
    assert (erased.keyset_id, erased.path, erased.retired_by_keyset) == (1, "share.json", 2)  # type: ignore[attr-defined]
    logged = "\n".join(r.getMessage() + json.dumps(get_fields(r)) for r in caplog.records)  # fields included
    for secret in (genesis[1].share, new[1].share):
        assert str(secret) not in logged and f"{secret:x}" not in logged.lower()

    # a restart: the node loads the public part of key set 1 and its share of key set 2
    restarted = load(home, env)
    assert restarted.share_sk is None and restarted.index is None
    assert restarted.validator_set.keyset_id == 1 and restarted.keyset == genesis[1].keyset
    assert [(r.keyset.keyset_id, r.share) for r in restarted.later_shares] == [(2, new[1].share)]
    engine = build_engine(restarted, MemoryStore(), FakeInputSource(), NullPublisher())
    assert engine.ring.get_share(1) is None and engine.ring.get_index(1) == 0 and set(engine.keys.unplaced) == {2}

    erase(2, 3)  # key set 3 signed: the share of key set 2 goes
    assert not later_file.exists()
    assert load(home, env).later_shares == ()
    with pytest.raises(KeystoreError, match="is not"):  # a retired keystore is never retired twice
        retire_share_keystore(share_file, config.passphrase, 3)


def test_erase_keystore_zeroes_the_bytes_and_refuses_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "share-5.json"
    target.write_bytes(b"x" * 300)
    os.chmod(target, 0o600)
    link = tmp_path / "share-6.json"
    link.symlink_to(target)
    with pytest.raises(OSError):
        erase_keystore(link)
    assert target.read_bytes() == b"x" * 300
    witness = tmp_path / "witness"
    os.link(target, witness)
    erase_keystore(target)
    assert not target.exists() and witness.read_bytes() == bytes(300)
