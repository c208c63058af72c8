"""The quote-age bound as consensus: carried by the network file (`max_quote_age_s`, absent = no bound and
the hash of older files unchanged), written into a home by `init --network-file`, passed by the validator
to its margin inputs, and a node whose config contradicts its network file refuses to start."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from node.cli.main import main
from node.config import ConfigError, ValidatorSecrets, build_validator_config, load_config
from node.devnet.homes import set_local_options
from node.network_file import (
    NetworkFileError,
    compute_network_hash,
    encode_canonical,
    find_config_conflicts,
    is_successor,
    load_network_file,
    parse_network,
)
from tests.network.files import write_network

PASS = "quote age passphrase"


@pytest.fixture
def doc(tmp_path: Path) -> dict:
    write_network(tmp_path / "n.json", with_keyset=False)
    return json.loads((tmp_path / "n.json").read_text())


def test_absent_bound_keeps_the_hash_and_a_set_bound_changes_it(doc: dict) -> None:
    assert "max_quote_age_s" not in doc
    net = parse_network(doc)
    assert net.max_quote_age_s == 0 and b"max_quote_age_s" not in encode_canonical(net)
    assert compute_network_hash(parse_network(dict(doc, max_quote_age_s=0))) == compute_network_hash(net)
    bounded = parse_network(dict(doc, max_quote_age_s=3600))
    assert bounded.max_quote_age_s == 3600 and compute_network_hash(bounded) != compute_network_hash(net)
    assert parse_network(json.loads(encode_canonical(bounded))) == bounded
    assert not is_successor(net, bounded) and not is_successor(bounded, net)  # a genesis rule, never changed


@pytest.mark.parametrize(("value", "message"), [
    (-1, "max_quote_age_s: -1 outside 0..2592000"), (30 * 86_400 + 1, "max_quote_age_s: 2592001 outside"),
    ("60", "max_quote_age_s: expected an integer"), (True, "max_quote_age_s: expected an integer"),
    (1.5, "max_quote_age_s: expected an integer")])
def test_invalid_bound_names_the_field(doc: dict, value: object, message: str) -> None:
    with pytest.raises(NetworkFileError, match=re.escape(message)):
        parse_network(dict(doc, max_quote_age_s=value))


def make_home_from_network(tmp_path: Path, doc: dict, bound: int) -> tuple[Path, Path]:
    """`network new --max-quote-age` from the operators' entries, then `init --network-file` (a joining home)."""
    entries = []
    for i, op in enumerate(doc["operators"]):
        entries += ["--operator", str(tmp_path / f"op{i}.json")]
        (tmp_path / f"op{i}.json").write_text(json.dumps(op))
    network_file = tmp_path / "network.json"
    assert main(["network", "new", "--out", str(network_file), "--network-id", "7", "--genesis-time", "1000",
                 "--epoch-period", "3", "--chain", "31337:1", "--max-quote-age", str(bound), *entries]) == 0
    pass_file = tmp_path / "pass"
    pass_file.write_text(PASS + "\n")
    os.chmod(pass_file, 0o600)
    home = tmp_path / "home"
    assert main(["init", "--home", str(home), "--passphrase-file", str(pass_file), "--scrypt-n", "1024"]) == 0
    assert main(["init", "--home", str(home), "--network-file", str(network_file)]) == 0
    return home, network_file


def test_init_writes_the_bound_and_start_refuses_a_contradicting_config(
        tmp_path: Path, doc: dict, capsys: pytest.CaptureFixture[str]) -> None:
    home, network_file = make_home_from_network(tmp_path, doc, 3600)
    net = load_network_file(network_file)
    assert net.max_quote_age_s == 3600 and load_network_file(home / "network.json") == net
    config = load_config(home, env={})
    assert config.get("consensus", "max_quote_age_s") == 3600 and find_config_conflicts(net, config) == []
    capsys.readouterr()
    assert main(["network", "show", "--network-file", str(network_file)]) == 0
    assert "oracle values older than 3600s fail the accounts that use them" in capsys.readouterr().out
    # an operator who edits the bound (or any consensus option) would sign other states: start refuses
    set_local_options(home, {"consensus": {"max_quote_age_s": 60}})
    assert main(["start", "--home", str(home)]) != 0
    err = capsys.readouterr().err
    assert "consensus.max_quote_age_s: config has 60, the network file 3600" in err
    set_local_options(home, {"consensus": {"max_quote_age_s": 3600}})
    assert main(["start", "--home", str(home), "--set", "consensus.epoch_period_s=4"]) != 0
    assert "consensus.epoch_period_s: config has 4.0, the network file 3.0" in capsys.readouterr().err


def test_invalid_configured_bound_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"consensus\.max_quote_age_s: must be in 0\.\.2592000"):
        load_config(tmp_path, env={}, overrides={"consensus.max_quote_age_s": "-5"})


def test_validator_passes_the_configured_bound_to_its_margin_inputs(tmp_path: Path) -> None:
    from node.consensus.margin_inputs import MarginInputSource
    from node.validator import build_input_source

    (tmp_path / "config.toml").write_text(
        '[[chains]]\nchain_id = 31337\nrpc_url = "http://127.0.0.1:1"\n'
        + "".join(f'{k} = "0x{"1" * 40}"\n' for k in ("vault", "ledger", "oracle")))
    secrets = ValidatorSecrets(share_sk=1, operator_key=bytes(32), p2p_seed=bytes(32))
    base = {"consensus.inputs": "margin", "validator_set.operators": "0x" + "22" * 20,
            "validator_set.public_shares": "0x" + "33" * 96, "node.data_dir": str(tmp_path / "data")}
    for configured, expected in (("900", 900), ("0", None)):
        config = build_validator_config(load_config(tmp_path, env={}, overrides={
            **base, "consensus.max_quote_age_s": configured}), secrets)
        (tmp_path / "data").mkdir(exist_ok=True)
        source = build_input_source(config)
        assert isinstance(source, MarginInputSource) and source.max_quote_age_s == expected
