"""The operator walkthroughs of docs/operations.md ("Start a new network", "Join a network"), run as
written by four genesis operators and one joining operator, each a separate OS process tree in its
own home and, as root, its own uid (`tests/network/operators.py`), on two anvil chains mining a block
a second.

Every `<!-- walkthrough: ROLE -->` shell block of the manual runs verbatim through bash with the
variables its table names; between blocks the test does what operators do out of band: pass the
public files (entries, network file) around, fund the operators' addresses, restart nodes. So the
network is started from nothing but a network file and each operator's own keys: keys and entries,
the coordinator's file, `clearingd dkg` by all four at once over loopback libp2p, `clearingd deploy`
to both chains by one operator with its own keystore, `init` with the deployed file, `clearingd
start`. Checked: one key set and network hash everywhere, epochs signed and published on both chains
under the ceremony's key, `gov propose`/`vote` with the operators' own keystores changing a risk
parameter the signed states then carry, `gov list` at the network's epoch, the joining node following
the network and its addition voted and executed; and that no process of any operator opened a file
of another operator's home (open audit logs; as root also the kernel's refusal).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from web3 import Web3

from bridges.anvil import AnvilChain, get_free_port, rpc_call, start_chains
from bridges.artifacts import get_abi
from node.config import load_config
from node.crypto import threshold
from node.network_file import Network, compute_network_hash, load_network_file
from node.pb.clearing.api.v1 import api_pb2, api_pb2_grpc
from tests.network.operators import (
    REPO,
    SEPARATE_UIDS,
    Operator,
    assert_barrier,
    each,
    find_foreign_opens,
    get_opened,
    make_operators,
    wait_for,
)

DOC = REPO / "docs" / "operations.md"
NAMES = ("alice", "bob", "carol", "dave", "erin")  # erin joins later
CHAIN_IDS = (31337, 31338)
EPOCH_S = 3
ROLES = ["each operator", "coordinator", "each operator, together", "deployer", "each operator, background",
         "each operator", "alice", "alice bob carol", "joiner", "joiner, background", "each operator", "alice",
         "alice bob carol", "alice"]


def load_walkthrough() -> list[tuple[str, str]]:
    """(role, shell block) of every walkthrough block of the manual, in order."""
    return re.findall(r"<!-- walkthrough: ([^>]+?) -->\n```sh\n(.*?)```", DOC.read_text(), re.S)


@dataclass
class Walkthrough:
    base: Path
    ops: list[Operator]  # alice, bob, carol, dave, erin
    chains: list[AnvilChain]
    blocks: list[tuple[str, str]]
    ports: dict[int, dict[str, int]] = field(default_factory=dict)
    procs: dict[int, subprocess.Popen] = field(default_factory=dict)
    outputs: dict[int, list[str]] = field(default_factory=dict)  # block number -> stdout per operator
    net: Network | None = None
    proposal_epochs: dict[int, int] = field(default_factory=dict)

    @property
    def members(self) -> list[Operator]:
        return self.ops[:4]

    def get_vars(self, op: Operator, extra: dict[str, str]) -> dict[str, str]:
        return {"CLEARING_HOME": str(op.home), "PASS_FILE": str(op.pass_file), "NAME": NAMES[op.index - 1],
                "MY_MULTIADDR": f"/ip4/127.0.0.1/tcp/{self.ports[op.index]['p2p']}",
                "CHAIN_A": str(self.chains[0].chain_id), "CHAIN_B": str(self.chains[1].chain_id),
                "RPC_A": self.chains[0].rpc_url, "RPC_B": self.chains[1].rpc_url,
                "CLEARING_API_LISTEN": f"127.0.0.1:{self.ports[op.index]['api']}",
                "CLEARING_METRICS_LISTEN": f"127.0.0.1:{self.ports[op.index]['metrics']}", **extra}

    def run(self, number: int, ops: list[Operator], extra: dict[str, str] | None = None) -> list[str]:
        role, block = self.blocks[number]
        assert role == ROLES[number] and "background" not in role

        def one(op: Operator) -> str:
            out = subprocess.run(op.wrap(["bash", "-euo", "pipefail", "-c", block]), cwd=op.root, capture_output=True,
                                 text=True, timeout=300, env=op.env(self.get_vars(op, extra or {})))
            assert out.returncode == 0, f"{NAMES[op.index - 1]}: block {number} ({role}):\n{block}\n{out.stderr}"
            return out.stdout

        self.outputs[number] = each(ops, one)
        return self.outputs[number]

    def start(self, number: int, ops: list[Operator]) -> None:
        role, block = self.blocks[number]
        assert role == ROLES[number] and role.endswith("background")
        for op in ops:  # its own process group: bash and the node it starts
            self.procs[op.index] = subprocess.Popen(
                op.wrap(["bash", "-euo", "pipefail", "-c", block]), cwd=op.root, env=op.env(self.get_vars(op, {})),
                stdout=(op.root / "node.log").open("ab"), stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self, ops: list[Operator]) -> None:
        for op in ops:
            proc = self.procs.pop(op.index, None)
            if proc is None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)  # the group this test started: bash and `clearingd start`
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def hand_out(self, sender: Operator, name: str, receivers: list[Operator]) -> None:
        """Out of band: `sender` gives a public file to `receivers` (into their working folders)."""
        for op in receivers:
            if op is not sender:
                shutil.copyfile(sender.root / name, op.root / name)
                op.give(op.root / name)

    def get_epoch(self) -> int:
        assert self.net is not None
        return int((time.time() - self.net.genesis_time) // self.net.epoch_period_s)


def get_state(port: int, epoch: int = 0) -> Any:
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            request = api_pb2.GetSignedStateRequest(epoch=epoch) if epoch else api_pb2.GetSignedStateRequest()
            return api_pb2_grpc.MarginServiceStub(channel).GetSignedState(request, timeout=3).state
    except grpc.RpcError:
        return None


def get_published(chain: AnvilChain, registry: str) -> list[int]:
    contract = Web3(Web3.HTTPProvider(chain.rpc_url)).eth.contract(address=registry, abi=get_abi("MarginStateRegistry"))
    return sorted(int(log["args"]["epoch"]) for log in contract.events.StatePublished().get_logs(from_block=0))


def gov_list(op: Operator) -> dict[str, Any]:
    return op.run_json("gov", "list", "--home", str(op.home), "--json")


def start_network(w: Walkthrough) -> None:
    """Blocks 0-5: keys, the file, the ceremony, the deployment, the start."""
    ops, alice = w.members, w.members[0]
    w.run(0, ops)
    for op in ops:
        w.hand_out(op, f"operator-{NAMES[op.index - 1]}.json", [alice])
    w.run(1, [alice], {"GENESIS_TIME": str(int(time.time())), "EPOCH_PERIOD": str(EPOCH_S)})
    w.hand_out(alice, "network.json", ops)
    w.run(2, ops)
    entries = [json.loads((op.root / f"operator-{NAMES[op.index - 1]}.json").read_text()) for op in ops]
    for chain in w.chains:  # out of band: every operator funds its address (deploying, publishing, voting)
        for entry in entries:
            rpc_call(chain.rpc_url, "anvil_setBalance", [entry["address"], hex(10**21)])
    w.run(3, [alice])
    w.hand_out(alice, "network.json", ops)
    w.net = load_network_file(alice.root / "network.json")
    w.start(4, ops)


@pytest.fixture(scope="module")
def walk() -> Iterator[Walkthrough]:
    blocks = load_walkthrough()
    assert [role for role, _ in blocks] == ROLES, "the walkthrough blocks of docs/operations.md changed"
    base, ops = make_operators(5)
    chains = start_chains(list(CHAIN_IDS), block_time=1)
    w = Walkthrough(base, ops, chains, blocks)
    w.ports = {op.index: {"p2p": get_free_port(), "api": get_free_port(), "metrics": get_free_port()} for op in ops}
    try:
        start_network(w)
        yield w
    finally:
        w.stop(ops)
        for c in chains:
            c.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
def test_ceremony_gives_every_operator_the_same_key_set_and_network_hash(walk: Walkthrough) -> None:
    reports = [json.loads((op.home / "ceremony-1.json").read_text()) for op in walk.members]
    assert {r["status"] for r in reports} == {"ok"}
    assert len({r["network_hash"] for r in reports}) == 1 and len({r["group_key"] for r in reports}) == 1
    assert all(r["qualified"] == [1, 2, 3, 4] and r["excluded"] == [] for r in reports)
    assert all(r["key_check"]["group_signature_verified"] for r in reports)
    printed = {h for out in walk.outputs[2] for h in re.findall(r"network hash (0x[0-9a-f]{64})", out)}
    assert printed == {reports[0]["network_hash"]}  # what each operator reads out to the others
    assert walk.net is not None
    before_deploy = replace(walk.net, governance=None, chains=tuple(replace(c, contracts=None) for c in walk.net.chains))
    assert compute_network_hash(before_deploy) == reports[0]["network_hash"]
    for op, report in zip(walk.members, reports, strict=True):
        share = op.home / "keys" / "share.json"
        assert share.stat().st_mode & 0o777 == 0o600 and report["share_file"] == str(share)
        if SEPARATE_UIDS:
            assert share.stat().st_uid == op.uid and op.root.stat().st_mode & 0o777 == 0o700


@pytest.mark.slow
def test_deploy_writes_the_contracts_into_the_network_file(walk: Walkthrough) -> None:
    net = walk.net
    assert net is not None and net.get_stage() == "deployed"
    assert net.governance is not None and net.governance.chain_id == CHAIN_IDS[0]
    assert all(c.confirmations == 2 for c in net.chains) and net.max_quote_age_s == 3600
    assert all(load_config(op.home, env={}).get("consensus", "max_quote_age_s") == 3600 for op in walk.members)
    assert f"network hash {compute_network_hash(net)}" in walk.outputs[3][0]
    for chain, spec in zip(walk.chains, net.chains, strict=True):
        registry = Web3(Web3.HTTPProvider(chain.rpc_url)).eth.contract(
            address=spec.contracts.registry, abi=get_abi("MarginStateRegistry"))
        assert registry.functions.networkId().call() == 7 and registry.functions.keysetId().call() == 1


@pytest.mark.slow
def test_nodes_sign_and_publish_epochs_on_both_chains(walk: Walkthrough) -> None:
    net = walk.net
    assert net is not None and net.keyset is not None
    registries = [c.contracts.registry for c in net.chains]

    def published() -> list[list[int]] | None:
        epochs = [get_published(c, reg) for c, reg in zip(walk.chains, registries, strict=True)]
        return epochs if all(len(e) >= 3 for e in epochs) else None

    epochs = wait_for(published, 180, "three epochs published on both chains")
    common = sorted(set(epochs[0]) & set(epochs[1]))
    assert common, epochs
    states = [get_state(walk.ports[op.index]["api"], common[-1]) for op in walk.members]
    signed = [s for s in states if s is not None]
    assert signed and len({bytes(s.digest) for s in signed}) == 1 and len(signed[0].signers) >= net.threshold
    assert threshold.group_verify(bytes.fromhex(net.keyset.group_key[2:]), bytes(signed[0].digest),
                                  bytes(signed[0].signature))
    walk.run(5, walk.members)  # `clearingd status` on every node
    assert all("latest signed state:" in out for out in walk.outputs[5])


@pytest.mark.slow
def test_gov_with_each_operators_own_keystore_changes_a_parameter(walk: Walkthrough) -> None:
    from governance.params import compute_params_hash
    from risk.params import RRA1, params_with_overrides

    alice = walk.members[0]
    wait_for(lambda: get_state(walk.ports[4]["api"]), 120, "a first signed state")
    activation = walk.get_epoch() + 10  # beyond the 12-block voting period (1 s blocks, 3 s epochs) and the margin
    out = walk.run(6, [alice], {"ACTIVATION_EPOCH": str(activation)})[0]
    listed_epoch = int(re.search(r"head block \d+, epoch (\d+)", out).group(1))  # type: ignore[union-attr]
    assert abs(listed_epoch - (activation - 10)) <= 1  # `gov list` shows the network's real epoch
    walk.run(7, walk.members[:3])
    wait_for(lambda: [(p["id"], p["status"]) for p in gov_list(alice)["proposals"]] == [(1, "approved")], 60,
             "proposal 1 approved")
    new_hash = "0x" + compute_params_hash(params_with_overrides(RRA1, {"price_scan_range": {"BTC": 0.25}})).hex()
    state = wait_for(lambda: get_state(walk.ports[4]["api"], activation), 90, f"epoch {activation}'s state")
    assert "0x" + bytes(state.params_hash).hex() == new_hash


@pytest.mark.slow
def test_joining_operator_follows_and_its_addition_is_voted_and_executed(walk: Walkthrough) -> None:
    alice, erin = walk.members[0], walk.ops[4]
    walk.hand_out(alice, "network.json", [erin])
    walk.run(8, [erin])
    entry = load_network_file(erin.home / "network.json")
    assert entry.find_operator(json.loads(erin.run("keys", "show", "operator", "--home", str(erin.home),
                                                   "--json").stdout)["address"]) is None
    walk.start(9, [erin])
    keys = json.loads(erin.run("keys", "show", "p2p", "--home", str(erin.home), "--json").stdout)
    address = json.loads(erin.run("keys", "show", "operator", "--home", str(erin.home), "--json").stdout)["address"]
    joiner = {"JOINER": address, "JOINER_PEER": f"/ip4/127.0.0.1/tcp/{walk.ports[5]['p2p']}/p2p/{keys['peer_id']}"}
    for chain in walk.chains:
        rpc_call(chain.rpc_url, "anvil_setBalance", [address, hex(10**21)])
    walk.run(10, walk.members, joiner)
    walk.stop(walk.members)  # out of band: each member restarts its node (the new bootstrap peer)
    walk.start(4, walk.members)
    wait_for(lambda: get_state(walk.ports[5]["api"]), 120, "the joining node holding a signed state")
    activation = walk.get_epoch() + 16
    walk.run(11, [alice], joiner | {"ACTIVATION_EPOCH": str(activation)})
    walk.run(12, walk.members[:3])
    wait_for(lambda: any(p["id"] == 2 and p["status"] == "approved" for p in gov_list(alice)["proposals"]), 60,
             "proposal 2 approved")
    walk.run(13, [alice])
    proposal = next(p for p in gov_list(walk.members[1])["proposals"] if p["id"] == 2)
    assert proposal["executed"] is True and proposal["status"] == "approved", proposal


@pytest.mark.slow
def test_no_operator_process_opened_another_operators_files(walk: Walkthrough) -> None:
    """The open logs of every operator process (ceremony, deployment, nodes, gov) hold no path of another
    operator's folder; each node did open its own share. As root, the kernel refuses them too."""
    wait_for(lambda: all(get_state(walk.ports[op.index]["api"]) for op in walk.members), 120,
             "every node holding a signed state")
    assert find_foreign_opens(walk.ops) == {op.index: [] for op in walk.ops}
    for op in walk.members:
        assert str(op.home / "keys" / "share.json") in get_opened(op)
    if SEPARATE_UIDS:
        for reader, target in ((walk.members[1], walk.members[0]), (walk.ops[4], walk.members[3])):
            assert_barrier(reader, target.home / "keys" / "share.json")
