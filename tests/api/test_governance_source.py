"""Governance served by the API: proposals and the parameter schedule read from a real Governance
contract on anvil (proposed and voted with `clearingd gov`), through `GovernanceReader` and the
live server's ListProposals / GetParameters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from governance.params import compute_params_hash
from node.api.governance import GovernanceReader
from node.api.live import LiveSources
from node.api.server import ApiServerConfig, start_api_server
from node.pb.clearing.api.v1 import api_pb2, api_pb2_grpc
from node.store import SQLiteStore
from risk.params import RRA1
from tests.governance.conftest import EPOCH_SECONDS, Deployed, anvil_chain, deployed  # noqa: F401
from tests.governance.helpers import WIDE_BTC

REPO = Path(__file__).resolve().parents[2]


def gov_cli(d: Deployed, *argv: str, dev_key: int) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARING_")}
    env |= {"CLEARING_HOME_RPC_URL": d.chain.rpc_url, "CLEARING_GOVERNANCE_ADDRESS": d.gov.address,
            "CLEARING_GENESIS_TIME": str(d.genesis.clock.genesis_time), "CLEARING_EPOCH_SECONDS": str(EPOCH_SECONDS),
            "CLEARING_DEV_KEY": str(dev_key)}
    return subprocess.run([sys.executable, "-m", "node.cli.main", "gov", *argv], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.mark.slow
def test_proposals_and_schedule_from_the_chain(deployed: Deployed, tmp_path: Path) -> None:  # noqa: F811
    d = deployed
    clock = Clock()
    reader = GovernanceReader(d.chain.rpc_url, d.gov.address, 0, d.genesis.clock.genesis_time, EPOCH_SECONDS,
                              refresh_s=5, clock=clock)
    assert reader.list_proposals(0, 10) == []
    assert reader.get_parameters(0).params_hash == compute_params_hash(RRA1)
    (tmp_path / "wide.json").write_text(json.dumps({"price_scan_range": {"BTC": 0.25}}))
    out = gov_cli(d, "propose", "--kind", "params", "--params-file", str(tmp_path / "wide.json"),
                  "--voting-period-blocks", "8", "--activation-epoch", "3", "--json", dev_key=0)
    assert out.returncode == 0, out.stderr
    pid = json.loads(out.stdout)["proposal_id"]
    assert reader.list_proposals(0, 10) == []  # cached until refresh_s passes
    clock.t += 6
    (open_,) = reader.list_proposals(0, 10)
    assert (open_.id, open_.status, open_.activation_epoch) == (pid, "open", 3)
    for i in range(3):
        assert gov_cli(d, "vote", "--id", str(pid), "--choice", "yes", dev_key=i).returncode == 0
    d.mine(9)
    clock.t += 6
    (passed,) = reader.list_proposals(0, 10)
    assert (passed.status, passed.votes_for, passed.params_hash) == ("passed", 3, compute_params_hash(WIDE_BTC))
    store = SQLiteStore(tmp_path / "n.sqlite")
    server = start_api_server(ApiServerConfig(listen="127.0.0.1:0"), store,
                              LiveSources(store, tmp_path / "status.json", governance=reader))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = api_pb2_grpc.MarginServiceStub(channel)
            listed = stub.ListProposals(api_pb2.ListProposalsRequest(), timeout=10)
            assert [(p.id, p.status) for p in listed.proposals] == [(pid, api_pb2.PROPOSAL_STATUS_PASSED)]
            before = stub.GetParameters(api_pb2.GetParametersRequest(epoch=2), timeout=10)
            after = stub.GetParameters(api_pb2.GetParametersRequest(epoch=3), timeout=10)
            assert before.params_hash == compute_params_hash(RRA1) and before.version == 1
            assert after.params_hash == compute_params_hash(WIDE_BTC) and after.version == 2
            assert json.loads(after.params_json)["price_scan_range"]["BTC"] == 0.25
    finally:
        server.stop(0.2)
        store.close()


def test_unreachable_chain_gives_no_state_and_keeps_serving(tmp_path: Path) -> None:
    reader = GovernanceReader("http://127.0.0.1:1", "0x" + "00" * 20, 0, 0, 10, refresh_s=5)
    assert reader.get_state() is None and reader.list_proposals(0, 5) == [] and reader.get_parameters(1) is None
    store = SQLiteStore(tmp_path / "n.sqlite")
    server = start_api_server(ApiServerConfig(listen="127.0.0.1:0"), store,
                              LiveSources(store, tmp_path / "status.json", governance=reader))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = api_pb2_grpc.MarginServiceStub(channel)
            with pytest.raises(grpc.RpcError) as err:
                stub.GetParameters(api_pb2.GetParametersRequest(epoch=1), timeout=10)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            assert list(stub.ListProposals(api_pb2.ListProposalsRequest(), timeout=10).proposals) == []
    finally:
        server.stop(0.2)
        store.close()
