"""Operator key resolution of `clearingd gov`: V3 keystore file with passphrase file, dev key, neither."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest
from eth_account import Account

from bridges.governance_chain import get_dev_key
from node.cli.gov import CliError, get_operator_key
from node.crypto.errors import KeystoreError


def make_args(**kw: object) -> argparse.Namespace:
    return argparse.Namespace(**{"key_file": None, "passphrase_file": None, "dev_key": None, "home": "/nonexistent",
                                 **kw})


def write_private(path: Path, text: str) -> str:
    path.write_text(text)
    os.chmod(path, 0o600)
    return str(path)


def test_v3_keystore_with_passphrase_file(tmp_path: Path) -> None:
    key = bytes(range(1, 33))
    key_file = write_private(tmp_path / "key.json", json.dumps(Account.encrypt(key, "pw", kdf="pbkdf2", iterations=2)))
    args = make_args(key_file=key_file, passphrase_file=write_private(tmp_path / "pw", "pw\n"))
    assert get_operator_key(args) == key


def test_invalid_keystore_passphrase_is_refused(tmp_path: Path) -> None:
    key_file = write_private(tmp_path / "key.json",
                             json.dumps(Account.encrypt(b"\x07" * 32, "pw", kdf="pbkdf2", iterations=2)))
    with pytest.raises(KeystoreError, match="wrong passphrase"):
        get_operator_key(make_args(key_file=key_file, passphrase_file=write_private(tmp_path / "pw", "wrong")))


def test_dev_key_is_anvil_account() -> None:
    assert Account.from_key(get_operator_key(make_args(dev_key=0))).address == \
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    assert get_operator_key(make_args(dev_key="3")) == get_dev_key(3)


def test_invalid_no_key_names_the_options() -> None:
    with pytest.raises(CliError, match="--key-file or --dev-key"):
        get_operator_key(make_args())
