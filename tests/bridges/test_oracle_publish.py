"""Publishing market data to `MarketOracle`: `bridges.deploy.set_market` with the risk model v2 inputs, the
`clearingd oracle publish|show` commands (in process and as a real subprocess) and the devnet seed, on real
anvil chains; every value read back through the chain book (cold read, and the merged `Market`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridges.anvil import AnvilChain, start_chains
from bridges.book import ChainBook
from bridges.book_merge import AccountIndex, merge_books
from bridges.book_reader import BookSync, contracts_of
from bridges.chain import ChainClient, ChainConfig, Pin
from bridges.deploy import (
    ORACLE_MAX_ROWS_PER_TX,
    Deployment,
    DeploymentError,
    get_dev_key,
    set_market,
    set_publisher,
)
from node.cli.main import main
from node.cli.oracle import parse_marks
from node.crypto.keystore import Secret, write_keystore
from node.network_file import Contracts, load_network_file, write_network_file
from tests.bridges.conftest import ChainEnv, GroupKey
from tests.network.files import write_network

PUBLISHER, OUTSIDER = 3, 4
PASS = "publisher passphrase"
EXPIRY = 1_893_456_000  # 2030-01-01
DAY = 86_400

MARKS: dict[str, Any] = {
    "spots": {"BTC": "100000.5", "ETH": "3000"},
    "forwards": [{"underlying": "BTC", "expiry": EXPIRY, "price": "101000.25"}],
    "vols": {"4": "0.55", "7": "1.2"},
    "asset_prices": {"USDC": "0.9999", "ETH": "3000"},
    "confidences": [{"kind": "spot", "symbol": "BTC", "expiry": 0, "value": "0.98"},
                    {"kind": "perp", "symbol": "BTC", "value": "0.9"},
                    {"kind": "expiry", "symbol": "BTC", "expiry": EXPIRY, "value": "0.000000001"},
                    {"kind": "asset", "symbol": "USDC", "value": "1"}],
    "rates": [{"underlying": "BTC", "expiry": EXPIRY, "rate": "0.05"}],
}
# MARKS in the contract's fixed point (prices and vols 1e6, confidences and rates 1e9)
FIXED: dict[str, dict[Any, int]] = {
    "spots": {"BTC": 100_000_500_000, "ETH": 3_000_000_000},
    "forwards": {("BTC", EXPIRY): 101_000_250_000},
    "vols": {4: 550_000, 7: 1_200_000},
    "asset_prices": {"USDC": 999_900, "ETH": 3_000_000_000},
    "confidences": {("spot", "BTC", 0): 980_000_000, ("perp", "BTC", 0): 900_000_000,
                    ("expiry", "BTC", EXPIRY): 1, ("asset", "USDC", 0): 10**9},
    "rates": {("BTC", EXPIRY): 50_000_000},
}


@pytest.fixture
def env(chains: list[ChainEnv]) -> ChainEnv:
    """The first session chain (reverted after the test) with dev account PUBLISHER as oracle publisher."""
    set_publisher(chains[0].sender(), chains[0].deployment, chains[0].sender(PUBLISHER).address)
    return chains[0]


@pytest.fixture
def files(env: ChainEnv, tmp_path: Path) -> dict[str, Path]:
    """The publisher's V3-or-node keystore (0600) and passphrase file, the deployment JSON and a network file
    listing the chain's contracts."""
    pass_file = tmp_path / "pass"
    pass_file.write_text(PASS + "\n")
    os.chmod(pass_file, 0o600)
    keys = {}
    for name, index in (("key", PUBLISHER), ("outsider", OUTSIDER)):
        keys[name] = tmp_path / f"{name}.json"
        write_keystore(keys[name], Secret(bytes.fromhex(get_dev_key(index)[2:])), Secret(PASS.encode()), scrypt_n=1024)
    deployment = tmp_path / "deployment.json"
    deployment.write_text(env.deployment.to_json())
    network = tmp_path / "network.json"
    write_network(network, with_keyset=True)
    d = env.deployment
    contracts = Contracts(registry=d.registry, vault=d.vault, ledger=d.ledger, oracle=d.oracle, deployer=d.deployer,
                          start_block=d.start_block)
    write_network_file(network, load_network_file(network).with_contracts(env.chain_id, contracts, None))
    return {"pass": pass_file, "deployment": deployment, "network": network, **keys}


def write_marks(tmp_path: Path, doc: Any, name: str = "marks.json") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any], str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if captured.out.strip() else {}, captured.err


def publish(capsys: pytest.CaptureFixture[str], env: ChainEnv, files: dict[str, Path], marks: Path,
            key: str = "key", where: tuple[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
    where = where or ("--deployment", str(files["deployment"]))
    return run_cli(capsys, "oracle", "publish", "--rpc-url", env.chain.rpc_url, *where, "--key-file",
                   str(files[key]), "--passphrase-file", str(files["pass"]), "--marks", str(marks), "--json")


def cold_book(env: ChainEnv) -> tuple[ChainBook, int]:
    """The chain's book read cold (every view) at the latest block, and that block's timestamp."""
    client = ChainClient(ChainConfig(chain_id=env.chain_id, rpc_url=env.chain.rpc_url))
    head = client.get_block("latest")
    book = BookSync(client, contracts_of(env.deployment)).cold_read(Pin(env.chain_id, head.number, head.hash,
                                                                        head.timestamp))
    return book, head.timestamp


def values(book: ChainBook) -> dict[str, dict[Any, int]]:
    return {name: {k: v for k, (v, _at) in getattr(book, name).items()} for name in FIXED}


def oracle_state(env: ChainEnv) -> tuple[int, int]:
    """(the oracle's eventSequence, the publisher's transaction count): both unchanged when nothing was sent."""
    sequence = env.contract("MarketOracle").functions.eventSequence().call()
    return int(sequence), int(env.sender().w3.eth.get_transaction_count(env.sender(PUBLISHER).address))


# --- clearingd oracle publish / show ---------------------------------------------------------------------


def test_cli_publishes_a_marks_file_and_show_and_a_cold_read_return_the_values(
        env: ChainEnv, files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sequence0, _ = oracle_state(env)
    code, out, err = publish(capsys, env, files, write_marks(tmp_path, MARKS))
    assert code == 0, err
    entries = sum(len(t) for t in FIXED.values())
    assert out["entries"] == {name: len(t) for name, t in FIXED.items()}
    assert len(out["transactions"]) == 1 and out["event_sequence"] == sequence0 + entries  # one atomic update
    assert out["publisher"] == env.sender(PUBLISHER).address
    book, _t = cold_book(env)
    assert values(book) == FIXED
    assert book.sequences["oracle"] == sequence0 + entries
    code, shown, err = run_cli(capsys, "oracle", "show", "--rpc-url", env.chain.rpc_url, "--network-file",
                               str(files["network"]))
    assert code == 0, err
    assert shown["event_sequence"] == sequence0 + entries and shown["chain_id"] == env.chain_id
    assert shown["marks"]["spots"] == {"BTC": "100000.5", "ETH": "3000"}
    assert shown["marks"]["confidences"][2] == {"kind": "expiry", "symbol": "BTC", "expiry": EXPIRY,
                                                "value": "0.000000001"}
    assert shown["marks"]["rates"] == [{"underlying": "BTC", "expiry": EXPIRY, "rate": "0.05"}]
    assert parse_marks(json.dumps(shown["marks"])) == parse_marks(json.dumps(MARKS))  # `show` feeds `publish`
    assert shown["updated_at"]["confidences"]["spot:BTC:0"] > 0
    # publishing is absolute: the same file again changes nothing but the sequence and the times
    code, out, err = publish(capsys, env, files, write_marks(tmp_path, MARKS),
                             where=("--network-file", str(files["network"])))
    assert code == 0, err
    assert values(cold_book(env)[0]) == FIXED
    assert out["event_sequence"] == sequence0 + 2 * entries


@pytest.mark.parametrize(("doc", "expected"), [
    ({"confidences": [{"kind": "spot", "symbol": "BTC", "value": "1"},
                      {"kind": "perp", "symbol": "BTC", "value": "1"},
                      {"kind": "asset", "symbol": "USDC", "value": "1.5"}]}, "confidences[2].value: 1.5 outside [0, 1]"),
    ({"spots": {"BTC": "1"}, "rates": [{"underlying": "BTC", "expiry": EXPIRY, "rate": "-0.01"}]},
     "rates[0].rate: -0.01 outside [0, 2]"),
    ('{"spots": {"BTC": "100"}, "vols": {"4": NaN}}', "vols.4: NaN is not a decimal number"),
    ('{"spots": {"BTC": 100000.5}}', 'spots.BTC: the JSON number 100000.5 must be written as a decimal string'),
    ({"spots": {"BTC": "1e5"}}, "spots.BTC: '1e5' is not a decimal number"),
    ({"asset_prices": {"USDC": "0x10"}}, "asset_prices.USDC: '0x10' is not a decimal number"),
    ({"spots": {"BTC": "1.0000001"}}, "spots.BTC: 1.0000001 has more than 6 decimal places"),
    ({"confidences": [{"kind": "mid", "symbol": "BTC", "value": "1"}]}, "confidences[0].kind: unknown kind 'mid'"),
    ({"confidences": [{"kind": "expiry", "symbol": "BTC", "value": "1"}]}, "confidences[0].expiry: expected a unix"),
    ({"spots": {"BTC€": "1"}}, 'spots["BTC\\u20ac"]: symbol'),
    ({"forwards": [{"underlying": "BTC", "expiry": EXPIRY, "price": "1"},
                   {"underlying": "BTC", "expiry": EXPIRY, "price": "2"}]}, "forwards[1]: the same key as forwards[0]"),
    ({"spots": {"BTC": "1"}, "prices": {}}, "prices: unknown table"),
    ('{"spots": {"BTC": "1", "BTC": "2"}}', "spots: key 'BTC' appears twice"),
    ('{"rates": [{"underlying": "BTC", "expiry": 5, "rate": "0", "rate": "1"}]}', "rates[0]: key 'rate' appears twice"),
    ('{"spots": ' * 40 + "{}" + "}" * 40, "marks: nested deeper than 3"),
    ({"spots": {f"S{i}": "1" for i in range(5_001)}}, "spots: 5001 entries (at most 5000)"),
    ('{"spots": {"BTC": "' + "1" * (1 << 20) + '"}}', "marks: marks.json is larger than 1048576 bytes"),
    ({}, "marks: nothing to publish"),
])
def test_a_bad_marks_document_is_refused_with_its_json_path_and_nothing_is_sent(
        env: ChainEnv, files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], doc: Any,
        expected: str) -> None:
    before = oracle_state(env)
    book_before = values(cold_book(env)[0])
    code, out, err = publish(capsys, env, files, write_marks(tmp_path, doc))
    assert code == 2
    assert out["error"].startswith(expected) and err.startswith(f"error: {expected}")
    assert oracle_state(env) == before and values(cold_book(env)[0]) == book_before


def test_a_key_that_is_not_a_publisher_gets_the_contract_revert_by_name(
        env: ChainEnv, files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outsider = env.sender(OUTSIDER).address
    nonce = env.sender().w3.eth.get_transaction_count(outsider)
    before = oracle_state(env)
    code, out, _err = publish(capsys, env, files, write_marks(tmp_path, MARKS), key="outsider")
    assert code == 1
    assert f"MarketOracle.multicall(setSpots, setForwards, setVols, setAssetPrices, setConfidences, setRates): " \
           f"reverted NotPublisher('{outsider.lower()}',)" in out["error"]
    assert env.sender().w3.eth.get_transaction_count(outsider) == nonce and oracle_state(env) == before


def test_publish_and_show_as_processes_with_the_passphrase_from_the_environment(
        env: ChainEnv, files: dict[str, Path], tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "node.cli.main", "oracle"]
    environ = {**os.environ, "CLEARING_KEYSTORE_PASSPHRASE": PASS, "CLEARING_NETWORK_FILE": str(files["network"])}
    marks = write_marks(tmp_path, {"confidences": [{"kind": "perp", "symbol": "ETH", "value": "0.75"}]})
    done = subprocess.run([*cli, "publish", "--rpc-url", env.chain.rpc_url, "--key-file", str(files["key"]),
                           "--marks", str(marks)], env=environ, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "1 confidences" in done.stdout and PASS not in done.stdout + done.stderr
    shown = subprocess.run([*cli, "show", "--rpc-url", env.chain.rpc_url], env=environ, capture_output=True,
                           text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["marks"]["confidences"] == [{"kind": "perp", "symbol": "ETH", "expiry": 0,
                                                                 "value": "0.75"}]


def test_show_refuses_a_deployment_of_another_chain(env: ChainEnv, files: dict[str, Path],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    other = Deployment.from_json(files["deployment"].read_text())
    files["deployment"].write_text(other.to_json().replace(f'"chain_id": {env.chain_id}', '"chain_id": 5'))
    code, _out, err = run_cli(capsys, "oracle", "show", "--rpc-url", env.chain.rpc_url, "--deployment",
                              str(files["deployment"]))
    assert code == 2 and f"is for chain 5, the endpoint serves chain {env.chain_id}" in err


# --- bridges.deploy.set_market ---------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"confidences": {(1, "BTC", 0): 10**9 + 1}}, r"confidences\[\(1, 'BTC', 0\)\]: value 1000000001 outside"),
    ({"confidences": {(5, "BTC", 0): 1}}, r"confidences\[\(5, 'BTC', 0\)\]: unknown kind 5"),
    ({"confidences": {(3, "BTC", 0): 1}}, r"confidences\[\(3, 'BTC', 0\)\]: 0 must be an integer in \[1"),
    ({"confidences": {(1, "BTC", EXPIRY): 1}}, r"expiry must be 0 for kind 1"),
    ({"confidences": {(4, "US D", 0): 1}}, r"symbol 'US D' must be 1..32 printable ASCII"),
    ({"confidences": {(1, "BTC", 0): True}}, r"value True must be a fixed-point integer"),
    ({"rates": {("BTC", EXPIRY): -1}}, r"rates\[\('BTC', 1893456000\)\]: value -1 outside \[0, 2000000000\]"),
    ({"rates": {("BTC", EXPIRY): 2 * 10**9 + 1}}, r"value 2000000001 outside"),
    ({"rates": {("BTÇ", EXPIRY): 0}}, r"symbol 'BTÇ' must be"),
    ({"vols": {0: 1}}, r"vols\[0\] instrument id: 0 must be an integer"),
    ({"asset_prices": {"USDC": 2**192}}, r"asset_prices\['USDC'\]: value 6277\d+ outside \[0, 6277\d+\]"),
    ({"forwards": {("BTC", 0): 1}}, r"forwards\[\('BTC', 0\)\]: 0 must be an integer in \[1"),
])
def test_set_market_checks_every_table_before_sending_anything(env: ChainEnv, kwargs: dict[str, Any],
                                                               expected: str) -> None:
    before = oracle_state(env)
    with pytest.raises(DeploymentError, match=expected):
        set_market(env.sender(PUBLISHER), env.deployment, spots={"BTC": 10**11}, **kwargs)  # spots would go first
    assert oracle_state(env) == before


def test_set_market_sends_large_tables_in_transactions_of_the_row_bound(env: ChainEnv) -> None:
    confidences = {(1, f"C{i}", 0): i for i in range(3 * ORACLE_MAX_ROWS_PER_TX)}
    receipts = set_market(env.sender(PUBLISHER), env.deployment, confidences=confidences,
                          rates={("BTC", EXPIRY): 7})
    assert len(receipts) == 3 + 1  # the rates do not fit beside the last full share of confidences
    book = values(cold_book(env)[0])
    assert book["confidences"] == {("spot", f"C{i}", 0): i for i in range(450)}
    assert book["rates"] == {("BTC", EXPIRY): 7}


# --- devnet seed -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeded_chain(group_key: GroupKey) -> Iterator[tuple[AnvilChain, Any, int]]:
    from node.devnet.seed import seed_chain

    (chain,) = start_chains([31511])
    try:
        genesis = int(time.time())
        yield chain, seed_chain(chain, 0, 7, group_key.keyset_id, group_key.eip2537, genesis), genesis
    finally:
        chain.stop()


def test_devnet_seed_publishes_neutral_confidences_and_rates_that_reach_the_market(
        seeded_chain: tuple[AnvilChain, Any, int]) -> None:
    from node.devnet.seed import get_expiry

    chain, seeded, genesis = seeded_chain
    env = ChainEnv(chain, seeded.deployment)
    book, t = cold_book(env)
    expiry = get_expiry(genesis, 30)
    assert values(book)["confidences"] == {
        ("spot", "BTC", 0): 10**9, ("spot", "ETH", 0): 10**9, ("perp", "BTC", 0): 10**9, ("perp", "ETH", 0): 10**9,
        ("expiry", "BTC", expiry): 10**9, ("asset", "USDC", 0): 10**9, ("asset", "ETH", 0): 10**9}
    assert values(book)["rates"] == {("BTC", expiry): 0}
    market = merge_books([book], AccountIndex(), chain.chain_id, t).market
    days = (expiry - t) / DAY
    assert market.spot_confidence == market.perp_confidence == {"BTC": 1.0, "ETH": 1.0}
    assert market.asset_confidence == {"USDC": 1.0, "ETH": 1.0}
    assert market.expiry_confidence == {("BTC", days): 1.0}
    assert market.rates == {("BTC", days): 0.0}
