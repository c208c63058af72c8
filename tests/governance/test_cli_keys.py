"""Operator key resolution of `clearingd gov`: keystore file with password file, dev key, neither."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from eth_account import Account

from bridges.governance_chain import get_dev_key
from node.cli.gov import CliError, get_operator_key


def make_args(**kw: object) -> argparse.Namespace:
    return argparse.Namespace(**{"key_file": None, "password_file": None, "dev_key": None, **kw})


def test_keystore_with_password_file(tmp_path: Path) -> None:
    key = bytes(range(1, 33))
    (tmp_path / "key.json").write_text(json.dumps(Account.encrypt(key, "pw", kdf="pbkdf2", iterations=2)))
    (tmp_path / "pw").write_text("pw\n")
    args = make_args(key_file=str(tmp_path / "key.json"), password_file=str(tmp_path / "pw"))
    assert get_operator_key(args) == key


def test_invalid_keystore_password_is_refused(tmp_path: Path) -> None:
    (tmp_path / "key.json").write_text(json.dumps(Account.encrypt(b"\x07" * 32, "pw", kdf="pbkdf2", iterations=2)))
    (tmp_path / "pw").write_text("wrong")
    with pytest.raises(ValueError):
        get_operator_key(make_args(key_file=str(tmp_path / "key.json"), password_file=str(tmp_path / "pw")))


def test_dev_key_is_anvil_account() -> None:
    assert Account.from_key(get_operator_key(make_args(dev_key=0))).address == \
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    assert get_operator_key(make_args(dev_key="3")) == get_dev_key(3)


def test_invalid_no_key_names_the_options() -> None:
    with pytest.raises(CliError, match="--key-file or --dev-key"):
        get_operator_key(make_args())
