"""Fixtures: a real SQLite store filled with signed states and a real gRPC server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from node.api.sandbox import SandboxConfig
from node.api.server import ApiServer, ApiServerConfig, start_api_server
from node.api.service import ServiceLimits
from node.api.sources import ParametersInfo, ProposalInfo, StaticSources, ValidatorInfo, ValidatorSetInfo
from node.pb.clearing.api.v1 import api_pb2_grpc
from node.store import SQLiteStore
from tests.store.factories import h32, make_state

EPOCHS = (1, 2, 3)
N_LEAVES = 37


@dataclass
class ApiEnv:
    store: SQLiteStore
    sources: StaticSources
    server: ApiServer
    channel: grpc.Channel
    stub: api_pb2_grpc.MarginServiceStub
    address: str


def make_sources() -> StaticSources:
    vs = ValidatorSetInfo(keyset_id=1, threshold=3, group_public_key=b"\x01" * 96, self_index=2,
                          validators=tuple(ValidatorInfo(i, f"peer{i}", bytes([i]) * 96, f"0x{i:040x}")
                                           for i in range(4)))
    params = (ParametersInfo(1, 0, h32("p1"), b"enc1", '{"v":1}'), ParametersInfo(2, 3, h32("p2"), b"enc2", '{"v":2}'))
    proposals = tuple(ProposalInfo(i, "open" if i > 3 else "executed", f"0x{i:040x}", 10 + i, h32("pp", i), i, 1)
                      for i in range(1, 8))
    return StaticSources(validator_set=vs, parameters=params, proposals=proposals)


def fill_store(store: SQLiteStore) -> None:
    for epoch in EPOCHS:
        store.put_signed_state(*make_state(epoch, N_LEAVES))


# What-if workers at normal priority: the production default (idle scheduling, test_sandbox checks
# it) can starve them for minutes on a loaded shared test host.
TEST_SANDBOX = SandboxConfig(nice=0, idle=False)


def start_env(tmp_path: Path, limits: ServiceLimits | None = None, fill: bool = True, **kw: object) -> ApiEnv:
    store = SQLiteStore(tmp_path / "node.sqlite")
    if fill:
        fill_store(store)
    sources = make_sources()
    kw.setdefault("sandbox", TEST_SANDBOX)
    config = ApiServerConfig(listen="127.0.0.1:0", limits=limits or ServiceLimits(), snapshot_poll_s=0.05, **kw)  # type: ignore[arg-type]
    server = start_api_server(config, store, sources)
    address = f"127.0.0.1:{server.port}"
    channel = grpc.insecure_channel(address)
    return ApiEnv(store, sources, server, channel, api_pb2_grpc.MarginServiceStub(channel), address)


def stop_env(env: ApiEnv) -> None:
    env.channel.close()
    env.server.stop(0.5)
    env.store.close()


@pytest.fixture
def api_env(tmp_path: Path) -> Iterator[ApiEnv]:
    env = start_env(tmp_path)
    yield env
    stop_env(env)
