"""Where `clearingd params show` and `clearingd gov` find the network: the config of `--home` (chain and epoch
clock), and a network file (`--network-file`: governance address, genesis time, epoch period), against a real
anvil chain with a deployed Governance contract. The clocks differ from the chain's own so an epoch computed
from anything else would show."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from governance.params import compute_params_hash
from governance.proposals import ProposalKind, VoteChoice
from node.network_file import operator_to_dict, parse_network, write_network_file
from risk.params import RRA1, encode_params
from tests.governance.conftest import Deployed
from tests.service.test_cli import make_home

REPO = Path(__file__).resolve().parents[2]
PERIOD_S = 60


def clearingd(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess:
    """`clearingd ARGV...` without CLEARING_* in the environment and with a HOME without `.clearingd`."""
    (tmp_path / "user").mkdir(exist_ok=True)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CLEARING_")}, "HOME": str(tmp_path / "user")}
    return subprocess.run([sys.executable, "-m", "node.cli.main", *argv], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


def get_head(d: Deployed) -> tuple[int, int]:
    head = d.gov.client.get_block("latest")
    return head.number, head.timestamp


def test_params_show_reads_the_chain_and_clock_of_home(deployed: Deployed, tmp_path: Path) -> None:
    d = deployed
    home, _ = make_home(tmp_path, with_share=False)
    number, timestamp = get_head(d)
    genesis = timestamp - 7 * PERIOD_S - 5  # the head lies in epoch 7 of this clock, in epoch 0 of the fixture's
    config = (home / "config.toml").read_text()
    for key, value in (("genesis_time", f"{genesis}.0"), ("epoch_period_s", f"{PERIOD_S}.0"),
                       ("rpc_url", json.dumps(d.chain.rpc_url)), ("address", json.dumps(d.gov.address))):
        config, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", config)
        assert n == 1, key
    (home / "config.toml").write_text(config)
    out = clearingd(tmp_path, "params", "show", "--home", str(home), "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["source"] == f"home chain block {number}" and doc["epoch"] == 7
    assert doc["params_hash"] == "0x" + compute_params_hash(RRA1).hex() and doc["activation_epoch"] == 0
    text = clearingd(tmp_path, "params", "show", "--home", str(home), "--epoch", "9")
    assert text.returncode == 0 and text.stdout.startswith(f"epoch 9 (home chain block {number}): "), text.stderr


def write_network(path: Path, d: Deployed, genesis_time: int) -> None:
    """A network file naming the fixture's chain and Governance contract, with its own clock."""
    from node.network_file import make_operator_entry
    from node.p2p.host import get_peer_id

    entries = [make_operator_entry(key, str(get_peer_id(bytes([i + 1]) * 32)), f"/ip4/127.0.0.1/tcp/{5000 + i}")
               for i, key in enumerate(d.keys[:4])]
    doc = {"version": 1, "network_id": 1, "genesis_time": genesis_time, "epoch_period_s": PERIOD_S, "threshold": 3,
           "chains": [{"chain_id": d.chain.chain_id, "confirmations": 0, "lag_s": 0, "contracts": None}],
           "governance": {"chain_id": d.chain.chain_id, "address": d.gov.address, "start_block": 0},
           "operators": [operator_to_dict(e) for e in entries], "keyset": None}
    write_network_file(path, parse_network(doc))


def test_gov_takes_the_chain_options_from_the_network_file(deployed: Deployed, tmp_path: Path) -> None:
    d = deployed
    pid, _ = d.gov.propose(d.keys[0], ProposalKind.PARAMETER_SET, encode_params(RRA1), 3, 40)
    d.gov.vote(d.keys[1], pid, VoteChoice.YES)
    number, timestamp = get_head(d)
    network = tmp_path / "network.json"
    write_network(network, d, timestamp - 12 * PERIOD_S)
    listed = clearingd(tmp_path, "gov", "list", "--network-file", str(network), "--rpc-url", d.chain.rpc_url, "--json")
    assert listed.returncode == 0, listed.stderr
    doc = json.loads(listed.stdout)
    assert doc["epoch"] == 12 and doc["head_block"] == number  # the file's clock, the file's contract
    assert [(p["id"], p["tally"]["yes"]) for p in doc["proposals"]] == [(pid, 1)]
    shown = clearingd(tmp_path, "gov", "show", "--id", str(pid), "--network-file", str(network), "--rpc-url",
                      d.chain.rpc_url, "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["activation_epoch"] == 40, shown.stderr
    flags = clearingd(tmp_path, "gov", "list", "--network-file", str(network), "--rpc-url", d.chain.rpc_url,
                      "--epoch-period", str(2 * PERIOD_S), "--json")  # a flag wins over the file
    assert flags.returncode == 0 and json.loads(flags.stdout)["epoch"] == 6, flags.stderr
    without_rpc = clearingd(tmp_path, "gov", "list", "--network-file", str(network), "--json")
    assert without_rpc.returncode == 2 and "--rpc-url" in json.loads(without_rpc.stdout)["error"]
