"""`clearingd deploy` and its engine (`bridges.deployer`) against real anvil chains: production contracts
only (no tokens without `--demo`), the registry built with the network file's group key, the chain
checks (unexpected chain id, no EIP-2537 precompiles), waiting for confirmations, and resuming after a
transaction that was sent but never confirmed."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from web3 import Web3

from bridges.anvil import AnvilChain, get_free_port, rpc_call
from bridges.artifacts import get_abi
from bridges.deploy import ChainSender, get_dev_key
from bridges.deployer import ChainDeployer, ChainPlan
from bridges.errors import DeploymentError
from node.cli.main import main
from node.crypto.bls import g2_to_eip2537
from node.crypto.dkg_bus import run_dkg_in_process
from node.crypto.keystore import Secret, write_keystore
from node.network_file import load_network_file
from tests.network.files import write_network

PASS = "deployer passphrase"


@pytest.fixture(scope="module")
def chain() -> Iterator[AnvilChain]:
    with AnvilChain(chain_id=31337, port=get_free_port()) as c:
        yield c


@pytest.fixture
def network(tmp_path: Path) -> Path:
    write_network(tmp_path / "network.json", with_keyset=True)
    return tmp_path / "network.json"


def write_key(tmp_path: Path, index: int = 3) -> tuple[Path, Path]:
    pass_file = tmp_path / "pass"
    pass_file.write_text(PASS + "\n")
    os.chmod(pass_file, 0o600)
    key_file = tmp_path / "deployer.json"
    write_keystore(key_file, Secret(bytes.fromhex(get_dev_key(index)[2:])), Secret(PASS.encode()), scrypt_n=1024)
    return key_file, pass_file


def deploy(network: Path, chain: AnvilChain, key_file: Path, pass_file: Path, *extra: str,
           capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    code = main(["deploy", "--network-file", str(network), "--rpc-url", chain.rpc_url, "--key-file", str(key_file),
                 "--passphrase-file", str(pass_file), "--json", "--confirmations", "0", *extra])  # automine chain
    return code, json.loads(capsys.readouterr().out)


def test_deploy_production_contracts_and_the_network_file(chain: AnvilChain, network: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    key_file, pass_file = write_key(tmp_path)
    code, doc = deploy(network, chain, key_file, pass_file, "--home-chain", capsys=capsys)
    assert code == 0, doc
    assert doc["tokens"] == {} and doc["transactions_sent"] == 7 and doc["governance"]  # 5 contracts, 2 links
    net = load_network_file(network)
    assert net.get_stage() == "deployed" and net.chains[0].contracts.registry == doc["registry"]
    assert net.governance.address == doc["governance"] and doc["network_hash"].startswith("0x")
    w3 = Web3(Web3.HTTPProvider(chain.rpc_url))
    registry = w3.eth.contract(address=doc["registry"], abi=get_abi("MarginStateRegistry"))
    expected = g2_to_eip2537(bytes.fromhex(net.keyset.group_key[2:]))
    assert bytes(registry.functions.groupPublicKey().call()) == expected
    ledger = w3.eth.contract(address=doc["ledger"], abi=get_abi("PositionLedger"))
    vault = w3.eth.contract(address=doc["vault"], abi=get_abi("CollateralVault"))
    assert (ledger.functions.vault().call(), vault.functions.ledger().call()) == (doc["vault"], doc["ledger"])
    governance = w3.eth.contract(address=doc["governance"], abi=get_abi("Governance"))
    assert [a.lower() for a in governance.functions.validatorsAt(0).call()] == [o.address.lower() for o in net.operators]
    again_code, again = deploy(network, chain, key_file, pass_file, "--home-chain", capsys=capsys)
    assert again_code == 0 and again["transactions_sent"] == 0 and again["registry"] == doc["registry"]


def test_invalid_deploy_before_the_ceremony_or_to_another_chain(chain: AnvilChain, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    key_file, pass_file = write_key(tmp_path)
    write_network(tmp_path / "genesis.json", with_keyset=False)
    code, doc = deploy(tmp_path / "genesis.json", chain, key_file, pass_file, capsys=capsys)
    assert code == 2 and "no key set yet" in doc["error"]
    write_network(tmp_path / "network.json", with_keyset=True)
    code, doc = deploy(tmp_path / "network.json", chain, key_file, pass_file, "--chain-id", "1", capsys=capsys)
    assert code == 2 and "the endpoint serves chain 31337, expected 1" in doc["error"]
    with AnvilChain(chain_id=5, port=get_free_port()) as other:
        code, doc = deploy(tmp_path / "network.json", other, key_file, pass_file, capsys=capsys)
    assert code == 2 and "chain 5 is not a chain of network 1" in doc["error"]


def test_invalid_chain_without_eip2537_precompiles_is_refused(tmp_path: Path) -> None:
    group_key = g2_to_eip2537(run_dkg_in_process(1, 1).results["1"].keyset.group_public_key)
    with AnvilChain(chain_id=31337, port=get_free_port(), hardfork="cancun") as old:
        sender = ChainSender(old.rpc_url, get_dev_key(0))
        with pytest.raises(DeploymentError, match="no EIP-2537 BLS12-381 precompile"):
            ChainDeployer(sender, ChainPlan(31337, 1, 1, group_key), tmp_path / "d.json", 0)
        assert not (tmp_path / "d.json").exists()


def test_deploy_waits_for_confirmations_and_resumes_a_sent_transaction(tmp_path: Path) -> None:
    """The first run sends the registry's transaction into a chain that mines nothing and gives up; the
    deployment file keeps it as sent; the rerun, once blocks come, re-broadcasts it, waits for 2
    confirmations per step and finishes with the same registry."""
    group_key = g2_to_eip2537(run_dkg_in_process(1, 1).results["1"].keyset.group_public_key)
    plan = ChainPlan(31337, 1, 1, group_key)
    with AnvilChain(chain_id=31337, port=get_free_port()) as c:
        rpc_call(c.rpc_url, "evm_setAutomine", [False])
        sender = ChainSender(c.rpc_url, get_dev_key(0))
        with pytest.raises(DeploymentError, match="rerun to resume"):
            ChainDeployer(sender, plan, tmp_path / "d.json", 2, tx_timeout_s=1.0).run()
        sent = json.loads((tmp_path / "d.json").read_text())["steps"]["registry"]
        assert sent["status"] == "sent" and sent["nonce"] == 0
        rpc_call(c.rpc_url, "evm_setIntervalMining", [1])
        resumed = ChainDeployer(sender, plan, tmp_path / "d.json", 2, tx_timeout_s=60.0)
        result = resumed.run()
        steps = json.loads((tmp_path / "d.json").read_text())["steps"]
        assert steps["registry"]["tx"] == sent["tx"] and result.deployment.registry == steps["registry"]["address"]
        # vault, ledger, oracle and the ledger-vault links; the registry was resumed
        assert resumed.sent == 5 and result.governance == ""
        head = int(Web3(Web3.HTTPProvider(c.rpc_url)).eth.block_number)
        assert all(head >= s["block"] + 2 for s in steps.values())
        with pytest.raises(DeploymentError, match="written for another deployment"):
            ChainDeployer(sender, ChainPlan(31337, 2, 1, group_key), tmp_path / "d.json", 2)
