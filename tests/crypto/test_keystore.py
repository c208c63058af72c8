"""Keystore: round trip, wrong passphrase, file modes, tampering, passphrase sources, redaction."""

from __future__ import annotations

import json
import logging
import os
import pickle
import stat
from pathlib import Path

import pytest

from node.crypto import threshold
from node.crypto.dkg_bus import run_dkg_in_process
from node.crypto.errors import KeystoreError
from node.crypto.keyshare import load_share_keystore, write_share_keystore
from node.crypto.keystore import (
    MIN_SCRYPT_N,
    Secret,
    load_keystore,
    load_passphrase,
    read_keystore_metadata,
    write_keystore,
)

FAST_N = MIN_SCRYPT_N
SECRET = bytes(range(32))
PASS = Secret(b"correct horse battery staple")


def write(path: Path, **meta: str | int) -> None:
    write_keystore(path, Secret(SECRET), PASS, meta, scrypt_n=FAST_N)


def test_round_trip_with_metadata_and_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "share.json"
    write(path, keyset_id=3, role="validator")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    contents = load_keystore(path, PASS)
    assert contents.secret.reveal() == SECRET
    assert dict(contents.metadata) == {"keyset_id": 3, "role": "validator"}
    assert read_keystore_metadata(path) == {"keyset_id": 3, "role": "validator"}
    assert SECRET.hex() not in path.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["share.json"]  # no temp file left behind


def test_overwrite_is_atomic_replacement(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    write(path)
    first = path.read_bytes()
    write(path)
    assert path.read_bytes() != first  # fresh salt and nonce
    assert load_keystore(path, PASS).secret.reveal() == SECRET


def test_invalid_wrong_passphrase_fails_clearly(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    write(path)
    with pytest.raises(KeystoreError, match=r"keystore k\.json: wrong passphrase or tampered file"):
        load_keystore(path, Secret(b"wrong"))


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_invalid_loose_mode_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "k.json"
    write(path)
    os.chmod(path, mode)
    with pytest.raises(KeystoreError, match=f"mode {mode:04o} lets group/others access it"):
        load_keystore(path, PASS)


def test_invalid_tampered_metadata_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    write(path, index=1)
    document = json.loads(path.read_text())
    document["metadata"]["index"] = 2
    path.write_text(json.dumps(document))
    with pytest.raises(KeystoreError, match="wrong passphrase or tampered file"):
        load_keystore(path, PASS)


def test_invalid_kdf_cost_out_of_bounds_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    write(path)
    document = json.loads(path.read_text())
    document["kdf"]["n"] = 1 << 30
    path.write_text(json.dumps(document))
    with pytest.raises(KeystoreError, match=r"kdf\.n/r/p"):
        load_keystore(path, PASS)


def test_invalid_malformed_file_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    path.write_text("{not json")
    os.chmod(path, 0o600)
    with pytest.raises(KeystoreError, match="not readable JSON"):
        load_keystore(path, PASS)


def test_secret_never_in_repr_str_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    secret = Secret(b"hunter2-super-secret")
    contents_repr = repr(secret) + str(secret) + f"{secret}" + repr([secret])
    assert "hunter2" not in contents_repr and "<redacted>" in contents_repr
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("loaded %s %r", secret, secret)
    assert "hunter2" not in caplog.text
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    assert Secret(b"a") == Secret(b"a") and Secret(b"a") != Secret(b"b")


def test_passphrase_from_file_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "pass"
    path.write_bytes(b"from-file\n")
    os.chmod(path, 0o600)
    assert load_passphrase(path).reveal() == b"from-file"
    monkeypatch.setenv("CLEARING_KEYSTORE_PASSPHRASE", "from-env")
    assert load_passphrase().reveal() == b"from-env"
    assert load_passphrase(path).reveal() == b"from-file"


def test_invalid_passphrase_sources_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLEARING_KEYSTORE_PASSPHRASE", raising=False)
    with pytest.raises(KeystoreError, match=r"\$CLEARING_KEYSTORE_PASSPHRASE is not set"):
        load_passphrase()
    monkeypatch.setenv("CLEARING_KEYSTORE_PASSPHRASE", "")
    with pytest.raises(KeystoreError, match="is empty"):
        load_passphrase()
    path = tmp_path / "pass"
    path.write_bytes(b"p\n")
    os.chmod(path, 0o644)
    with pytest.raises(KeystoreError, match="passphrase file pass: mode 0644"):
        load_passphrase(path)


def test_share_keystore_round_trip_signs(tmp_path: Path) -> None:
    outcome = run_dkg_in_process(3, 2)
    path = tmp_path / "share-2.json"
    write_share_keystore(path, outcome.results["2"], PASS, scrypt_n=FAST_N)
    loaded = load_share_keystore(path, PASS)
    assert loaded.share == outcome.results["2"].share and loaded.keyset == outcome.results["2"].keyset
    other = outcome.results["1"]
    sig = threshold.combine(
        {
            1: threshold.partial_sign(other.share or 0, b"m"),
            2: threshold.partial_sign(loaded.share or 0, b"m"),
        },
        2,
    )
    assert threshold.group_verify(loaded.keyset.group_public_key, b"m", sig)
