"""A network started by four operators from nothing but a network file and their own keys.

Four operators, each a separate OS process tree in its own home (and, as root, its own uid: see
`tests/network/operators.py`), on two anvil chains mining a block a second:
`clearingd init` (keys), `network operator` (entries) -> the coordinator's `network new` ->
`init --network-file` -> `clearingd dkg` (all four at once, over loopback libp2p) -> operator 1 runs
`clearingd deploy` on both chains with its own keystore -> `init --network-file` with the deployed
file and RPC URLs -> `clearingd start`. The nodes sign and publish epochs on both chains; `gov
propose` and `vote` with each node's own keystore change a risk parameter, which the signed states
then carry; `gov list` shows the network's epoch. No process opened a file of another operator's home.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from web3 import Web3

from bridges.anvil import AnvilChain, get_free_port, rpc_call, start_chains
from bridges.artifacts import get_abi
from node.crypto import threshold
from node.network_file import Network, compute_network_hash, load_network_file
from node.pb.clearing.api.v1 import api_pb2, api_pb2_grpc
from tests.network.operators import (
    SEPARATE_UIDS,
    Operator,
    assert_barrier,
    find_foreign_opens,
    get_opened,
    make_operators,
    publish,
)

CHAIN_IDS = (31337, 31338)
EPOCH_S = 3
NETWORK_ID = 7


@dataclass
class Running:
    base: Path
    operators: list[Operator]
    chains: list[AnvilChain]
    net: Network
    init: list[dict[str, Any]] = field(default_factory=list)
    dkg: list[dict[str, Any]] = field(default_factory=list)
    deploy: list[dict[str, Any]] = field(default_factory=list)
    api: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen] = field(default_factory=list)


def each(operators: list[Operator], fn: Any) -> list[Any]:
    with ThreadPoolExecutor(len(operators)) as pool:
        return list(pool.map(fn, operators))


def wait_for(condition: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.5)


def genesis_ceremony(base: Path, ops: list[Operator], p2p_ports: list[int], threshold_: int = 3,
                     chains: tuple[int, ...] = CHAIN_IDS) -> tuple[list[dict[str, Any]], Path]:
    """Keys, entries, the coordinator's network file, and each home configured from it."""
    public = base / "public"
    init = each(ops, lambda op: op.run_json("init", "--home", str(op.home), "--passphrase-file", str(op.pass_file),
                                            "--scrypt-n", "1024", "--json"))
    entries = each(ops, lambda op: op.run_json("network", "operator", "--home", str(op.home), "--multiaddr",
                                               f"/ip4/127.0.0.1/tcp/{p2p_ports[op.index - 1]}"))
    for op, entry in zip(ops, entries, strict=True):
        (public / f"op{op.index}.json").write_text(json.dumps(entry))
    coordinator = ops[0]  # any operator may coordinate: it only writes public data
    out = coordinator.run_json(
        "network", "new", "--out", str(coordinator.root / "network.json"), "--network-id", str(NETWORK_ID), "--genesis-time",
        str(int(time.time())), "--epoch-period", str(EPOCH_S), "--threshold", str(threshold_),
        *[a for c in chains for a in ("--chain", f"{c}:1")],
        *[a for op in ops for a in ("--operator", str(public / f"op{op.index}.json"))], "--json")
    assert out["stage"] == "genesis"
    publish(coordinator.root / "network.json", public / "network.json")
    each(ops, lambda op: op.run_json("init", "--home", str(op.home), "--network-file", str(public / "network.json"),
                                     "--json"))
    return init, public / "network.json"


def run_dkg(ops: list[Operator], *extra: str) -> list[subprocess.CompletedProcess]:
    return each(ops, lambda op: op.run("dkg", "--home", str(op.home), "--json", "--phase-timeout", "4", *extra,
                                       timeout=240))


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    base, ops = make_operators(4)
    chains = start_chains(list(CHAIN_IDS), block_time=1)
    r = Running(base, ops, chains, None)  # type: ignore[arg-type]
    try:
        r.init, _ = genesis_ceremony(base, ops, [get_free_port() for _ in ops])
        outs = run_dkg(ops)
        assert all(o.returncode == 0 for o in outs), "\n".join(o.stderr + o.stdout for o in outs)
        r.dkg = [json.loads(o.stdout) for o in outs]
        for c in chains:  # every operator pays for its own transactions (deploying, publishing, voting)
            for doc in r.init:
                rpc_call(c.rpc_url, "anvil_setBalance", [doc["operator_address"], hex(10**21)])
        deployer = ops[0]  # deploys from a copy of its network file, with its own operator keystore
        work = deployer.root / "deploy"
        work.mkdir()
        deployer.give(work)
        shutil.copyfile(deployer.home / "network.json", work / "network.json")
        deployer.give(work / "network.json")
        for chain, home in zip(chains, (True, False), strict=True):
            r.deploy.append(deployer.run_json(
                "deploy", "--network-file", str(work / "network.json"), "--rpc-url", chain.rpc_url, "--key-file",
                str(deployer.home / "keys" / "operator.json"), "--passphrase-file", str(deployer.pass_file), "--json",
                *(["--home-chain"] if home else []), timeout=300))
        final = publish(work / "network.json", base / "public" / "network-final.json")
        r.net = load_network_file(final)
        rpc = [a for c in chains for a in ("--rpc-url", f"{c.chain_id}={c.rpc_url}")]
        each(ops, lambda op: op.run_json("init", "--home", str(op.home), "--network-file", str(final), *rpc, "--json"))
        r.api = [f"127.0.0.1:{get_free_port()}" for _ in ops]
        r.procs = [op.popen("start", "--home", str(op.home), log=op.root / "node.log",
                            env={"CLEARING_API_LISTEN": r.api[i], "CLEARING_METRICS_LISTEN": f"127.0.0.1:{get_free_port()}"})
                   for i, op in enumerate(ops)]
        yield r
    finally:
        for p in r.procs:
            p.send_signal(signal.SIGTERM)
        for p in r.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        for c in chains:
            c.stop()
        shutil.rmtree(base, ignore_errors=True)


def get_state(api: str, epoch: int = 0) -> Any:
    try:
        with grpc.insecure_channel(api) as channel:
            request = api_pb2.GetSignedStateRequest(epoch=epoch) if epoch else api_pb2.GetSignedStateRequest()
            return api_pb2_grpc.MarginServiceStub(channel).GetSignedState(request, timeout=3).state
    except grpc.RpcError:
        return None


def get_published(chain: AnvilChain, registry: str) -> list[int]:
    w3 = Web3(Web3.HTTPProvider(chain.rpc_url))
    contract = w3.eth.contract(address=registry, abi=get_abi("MarginStateRegistry"))
    return sorted(int(log["args"]["epoch"]) for log in contract.events.StatePublished().get_logs(from_block=0))


@pytest.mark.slow
def test_ceremony_gives_every_operator_the_same_key_set_and_network_hash(running: Running) -> None:
    reports = running.dkg
    assert {r["status"] for r in reports} == {"ok"}
    assert len({r["network_hash"] for r in reports}) == 1 and len({r["group_key"] for r in reports}) == 1
    assert all(r["qualified"] == [1, 2, 3, 4] and r["excluded"] == [] for r in reports)
    assert all(r["key_check"]["group_signature_verified"] for r in reports)
    homes = [load_network_file(op.home / "network.json") for op in running.operators]  # since updated by deploy
    before_deploy = {compute_network_hash(replace(h, governance=None, chains=tuple(
        replace(c, contracts=None) for c in h.chains))) for h in homes}
    assert before_deploy == {reports[0]["network_hash"]}
    for op, report in zip(running.operators, reports, strict=True):
        share = op.home / "keys" / "share.json"
        assert share.stat().st_mode & 0o777 == 0o600 and report["share_file"] == str(share)
        if SEPARATE_UIDS:
            assert share.stat().st_uid == op.uid and op.home.stat().st_mode & 0o777 == 0o700


@pytest.mark.slow
def test_deploy_writes_the_contracts_into_the_network_file(running: Running) -> None:
    net = running.net
    assert net.get_stage() == "deployed" and net.governance is not None and net.governance.chain_id == CHAIN_IDS[0]
    assert [d["chain_id"] for d in running.deploy] == list(CHAIN_IDS)
    assert running.deploy[0]["governance"] == net.governance.address and running.deploy[1]["governance"] is None
    assert running.deploy[0]["tokens"] == {} and all(d["confirmations"] == 1 for d in running.deploy)
    assert running.deploy[-1]["network_hash"] == compute_network_hash(net)
    for chain, spec in zip(running.chains, net.chains, strict=True):
        registry = Web3(Web3.HTTPProvider(chain.rpc_url)).eth.contract(
            address=spec.contracts.registry, abi=get_abi("MarginStateRegistry"))
        assert registry.functions.groupPublicKey().call()  # built with the ceremony's key
        assert registry.functions.networkId().call() == NETWORK_ID


@pytest.mark.slow
def test_nodes_sign_and_publish_epochs_on_both_chains(running: Running) -> None:
    net = running.net
    group_key = bytes.fromhex(net.keyset.group_key[2:])
    registries = [c.contracts.registry for c in net.chains]

    def published() -> bool:
        return all(len(get_published(c, reg)) >= 3 for c, reg in zip(running.chains, registries, strict=True))

    wait_for(published, 150, "three epochs published on both chains")
    epochs = [get_published(c, reg) for c, reg in zip(running.chains, registries, strict=True)]
    common = sorted(set(epochs[0]) & set(epochs[1]))
    assert common, epochs
    states = [get_state(api, common[-1]) for api in running.api]
    signed = [s for s in states if s is not None and s.epoch == common[-1]]
    assert signed and len({bytes(s.digest) for s in signed}) == 1
    assert len(signed[0].signers) >= net.threshold
    assert threshold.group_verify(group_key, bytes(signed[0].digest), bytes(signed[0].signature))


@pytest.mark.slow
def test_gov_with_each_operators_own_keystore_changes_a_parameter(running: Running) -> None:
    from governance.params import compute_params_hash
    from risk.params import RRA1, params_with_overrides

    ops = running.operators
    wait_for(lambda: get_state(running.api[0]), 120, "a first signed state")
    listed = ops[1].run_json("gov", "list", "--home", str(ops[1].home), "--json")
    now_epoch = (int(time.time()) - running.net.genesis_time) // EPOCH_S
    assert abs(listed["epoch"] - now_epoch) <= 1 and listed["proposals"] == []
    overrides = {"price_scan_range": {"BTC": 0.25}}
    params = ops[0].root / "wide.json"
    params.write_text(json.dumps(overrides))
    ops[0].give(params)
    activation = listed["epoch"] + 10  # after the voting period (12 blocks of 1 s) and the margin
    proposal = ops[0].run_json("gov", "propose", "--home", str(ops[0].home), "--kind", "params", "--params-file",
                               str(params), "--voting-period-blocks", "12", "--activation-epoch", str(activation),
                               "--json")
    pid = proposal["proposal_id"]
    votes = each(ops[:3], lambda op: op.run_json("gov", "vote", "--home", str(op.home), "--id", str(pid), "--choice",
                                                 "yes", "--json"))
    assert [v["proposal_id"] for v in votes] == [pid] * 3

    def approved() -> bool:
        doc = ops[2].run_json("gov", "list", "--home", str(ops[2].home), "--json")
        return [(p["id"], p["status"]) for p in doc["proposals"]] == [(pid, "approved")]

    wait_for(approved, 60, "the proposal approved")
    new_hash = "0x" + compute_params_hash(params_with_overrides(RRA1, overrides)).hex()
    state = wait_for(lambda: get_state(running.api[3], activation), (activation - now_epoch + 6) * EPOCH_S,
                     f"the signed state of activation epoch {activation}")
    assert "0x" + bytes(state.params_hash).hex() == new_hash
    before = get_state(running.api[3], activation - 1)
    assert before is None or "0x" + bytes(before.params_hash).hex() == "0x" + compute_params_hash(RRA1).hex()


@pytest.mark.slow
def test_no_operator_process_opened_another_operators_files(running: Running) -> None:
    """The open logs of every operator process (ceremony, deployment, node) hold no path of another
    operator's folder; each node did open its own share. As root the uid barrier is shown too."""
    wait_for(lambda: all(get_state(api) for api in running.api), 120, "every node holding a signed state")
    ops = running.operators
    assert find_foreign_opens(ops) == {op.index: [] for op in ops}
    for op in ops:
        assert str(op.home / "keys" / "share.json") in get_opened(op)
    if SEPARATE_UIDS:
        for reader, target in ((ops[1], ops[0]), (ops[0], ops[3])):
            assert_barrier(reader, target.home / "keys" / "share.json")
