"""Which epoch "latest" is: the newest signed state whose leaves the node holds. A state adopted from a
peer is stored before the node's own leaves (engine `_complete_leaves` adds them later); until then
`GetMargin` without an epoch answers from the previous epoch and says so, never NOT_FOUND. Real SQLite
store, real gRPC server on loopback."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

from node.pb.clearing.api.v1 import api_pb2
from tests.api.conftest import N_LEAVES, start_env, stop_env
from tests.store.factories import make_account, make_state

DEADLINE_S = 20.0


def wait_for_latest_epoch(stub, epoch: int) -> api_pb2.GetMarginResponse:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + DEADLINE_S
    while True:
        try:
            response = stub.GetMargin(api_pb2.GetMarginRequest(account="0x" + make_account(2).hex()), timeout=5)
            if response.report.state.epoch == epoch or time.monotonic() > deadline:
                return response
        except grpc.RpcError as exc:  # before the snapshot thread's first poll of the filled store
            assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION and time.monotonic() < deadline
        time.sleep(0.05)


def test_a_state_without_leaves_is_not_served_as_latest_until_its_leaves_arrive(tmp_path: Path) -> None:
    env = start_env(tmp_path, fill=False)
    try:
        for epoch in (1, 2):
            env.store.put_signed_state(*make_state(epoch, N_LEAVES))
        assert wait_for_latest_epoch(env.stub, 2).report.state.epoch == 2
        adopted, own_leaves = make_state(3, N_LEAVES)
        env.store.put_signed_state(adopted, [])  # a peer's state, before this node computed the epoch
        deadline = time.monotonic() + 1.0  # several polls of the snapshot thread (0.05 s)
        while time.monotonic() < deadline:
            rep = env.stub.GetMargin(api_pb2.GetMarginRequest(account="0x" + make_account(2).hex()), timeout=5).report
            assert rep.state.epoch == rep.margin.epoch == 2 and rep.proof
            assert env.stub.GetSignedState(api_pb2.GetSignedStateRequest(), timeout=5).state.epoch == 2
        assert env.stub.GetSignedState(api_pb2.GetSignedStateRequest(epoch=3), timeout=5).state.epoch == 3
        with pytest.raises(grpc.RpcError) as err:  # asked by epoch: this node cannot answer (yet)
            env.stub.GetMargin(api_pb2.GetMarginRequest(account="0x" + make_account(2).hex(), epoch=3), timeout=5)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND and "another validator" in err.value.details()
        env.store.put_signed_state(adopted, own_leaves)  # what the engine's leaf completion does
        rep = wait_for_latest_epoch(env.stub, 3).report
        assert rep.state.epoch == 3 and rep.proof and rep.state.digest == adopted.digest
        by_epoch = env.stub.GetMargin(api_pb2.GetMarginRequest(account="0x" + make_account(2).hex(), epoch=3),
                                      timeout=5).report
        assert by_epoch.leaf == rep.leaf  # the leafless snapshot of epoch 3 was not cached
    finally:
        stop_env(env)


def test_a_node_holding_no_leaves_at_all_still_serves_its_newest_state(tmp_path: Path) -> None:
    env = start_env(tmp_path, fill=False)
    try:
        state, _ = make_state(5, N_LEAVES)
        env.store.put_signed_state(state, [])
        deadline = time.monotonic() + DEADLINE_S
        while True:
            try:
                got = env.stub.GetSignedState(api_pb2.GetSignedStateRequest(), timeout=5).state
                break
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION and time.monotonic() < deadline
                time.sleep(0.05)
        assert got.epoch == 5
        with pytest.raises(grpc.RpcError) as err:
            env.stub.GetMargin(api_pb2.GetMarginRequest(account="0x" + make_account(2).hex()), timeout=5)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        stop_env(env)
