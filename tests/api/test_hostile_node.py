"""The review's reproduction on a real validator process (`clearingd start`: libp2p, consensus with a
1-of-1 DKG share, fake chain inputs, the public gRPC API; `web3` is imported, so the process runs with
py_ecc's recursion limit of 100,000): one 200 KB document of nested `[` and one what-if whose `params`
ask for unbounded work used to kill it (SIGSEGV) or pin it. Now each is refused INVALID_ARGUMENT
naming the field, the process stays up, answers `/livez` and gRPC health, and goes on signing.

The what-if workers run at normal priority here (`api.simulate_nice=0`, `api.simulate_idle=false`):
on a loaded test host idle workers may not get a time slice, and this test is about the documents,
not about scheduling (`test_sandbox` checks the production priority, the devnet flood test uses it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from node.api.errors import get_field_violations, get_retry_delay
from node.pb.clearing.api.v1 import api_pb2, api_pb2_grpc
from tests.api.test_simulate import DOC
from tests.service.test_cli import REPO, make_home, node_env, wait_for

NESTED = "[" * 200_000
UNBOUNDED_PARAMS = json.dumps({**DOC, "params": {"es_samples": 2**62, "price_steps": 2**40}})
ATTACKS = [
    (api_pb2.SimulateMarginRequest(whatif_json=NESTED), "whatif_json"),
    (api_pb2.SimulateMarginRequest(whatif_json='{"a":' * 40_000), "whatif_json"),
    (api_pb2.SimulateMarginRequest(whatif_json=UNBOUNDED_PARAMS), "params.price_steps"),
    (api_pb2.SimulateMarginRequest(whatif_json=json.dumps({**DOC, "params": {"es_samples": 10**9}})),
     "params.es_samples"),
    (api_pb2.SimulateMarginRequest(whatif=api_pb2.WhatIf(params_json=NESTED)), "whatif.params_json"),
]


def get_latest_epoch(stub: api_pb2_grpc.MarginServiceStub) -> int:
    try:
        return stub.GetSignedState(api_pb2.GetSignedStateRequest(), timeout=5).state.epoch
    except grpc.RpcError:
        return -1


def is_live(metrics: str) -> bool:
    with urllib.request.urlopen(f"http://{metrics}/livez", timeout=5) as resp:
        return resp.status == 200


def simulate_honouring_retry(stub: api_pb2_grpc.MarginServiceStub, request: api_pb2.SimulateMarginRequest,
                             deadline_s: float) -> api_pb2.SimulateMarginResponse:
    """What a well-behaved client does after the flood drained its rate-limit bucket: wait the
    RetryInfo delay the server names and ask again (only RESOURCE_EXHAUSTED with a delay is retried)."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return stub.SimulateMargin(request, timeout=max(deadline - time.monotonic(), 1))
        except grpc.RpcError as err:
            delay = get_retry_delay(err)
            if err.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or delay is None or time.monotonic() > deadline:
                raise
            time.sleep(delay)


def flood(stub: api_pb2_grpc.MarginServiceStub, stop: threading.Event, codes: list[grpc.StatusCode]) -> None:
    while not stop.is_set():
        for request, _ in ATTACKS:
            try:
                stub.SimulateMargin(request, timeout=30)
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as err:
                codes.append(err.code())


@pytest.mark.slow
def test_nested_document_does_not_kill_validator(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path)
    env = {**node_env(home, time.time()), "CLEARING_API_SIMULATE_NICE": "0", "CLEARING_API_SIMULATE_IDLE": "false"}
    log = (tmp_path / "node.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "node.cli.main", "start", "--home", str(home)], cwd=REPO,
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env})
    channel = grpc.insecure_channel(env["CLEARING_API_LISTEN"])
    try:
        stub = api_pb2_grpc.MarginServiceStub(channel)
        wait_for(lambda: get_latest_epoch(stub) >= 1, 120, "a first signed state")
        for request, field in ATTACKS:  # the reproduction, one document at a time
            with pytest.raises(grpc.RpcError) as err:
                stub.SimulateMargin(request, timeout=30)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
            assert field in [v.field for v in get_field_violations(err.value)]
            assert proc.poll() is None, "the validator died"
        stop, codes = threading.Event(), []  # then many at once from several clients
        threads = [threading.Thread(target=flood, args=(stub, stop, codes)) for _ in range(8)]
        for t in threads:
            t.start()
        attacked_at = get_latest_epoch(stub)
        wait_for(lambda: get_latest_epoch(stub) >= attacked_at + 2, 90, "signing under the flood")
        stop.set()
        for t in threads:
            t.join(60)
        assert codes and set(codes) <= {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert proc.poll() is None and is_live(env["CLEARING_METRICS_LISTEN"])
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        answer = simulate_honouring_retry(stub, api_pb2.SimulateMarginRequest(whatif_json=json.dumps(DOC)), 60)
        assert answer.initial_margin_micro_usd > 0
        after = get_latest_epoch(stub)
        wait_for(lambda: get_latest_epoch(stub) > after, 60, "a signature after the attack")
        workers = psutil.Process(proc.pid).children()
        assert workers and all("multiprocessing" in " ".join(w.cmdline()) for w in workers)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        _, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, "what-if workers outlived the node"
    finally:
        channel.close()
        if proc.poll() is None:
            proc.kill()
        log.close()
