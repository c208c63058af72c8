"""Benchmark of the public gRPC API: GetMargin latency and throughput at a sustained offered load,
sent from this process to a SEPARATE server process over loopback, against a real SQLite store
holding one threshold-signed state of `--accounts` accounts; SimulateMargin throughput; and the
baseline of the same run: a bare health-check RPC at the same offered load.

Open loop: request i is sent at t0 + i / rate whatever the previous answers did (so queueing shows
up in the latency); latency is send -> response. The server runs with the per-client rate limit
off (the limiter is measured separately by the tests). Prints one JSON object.

Usage: python bench/api_bench.py [--accounts 100000] [--rate 1000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
import psutil  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

from node.pb.clearing.api.v1 import api_pb2, api_pb2_grpc  # noqa: E402

WHATIF = {
    "market": {"spot": {"BTC": 100000.0, "ETH": 3000.0},
               "forwards": [{"underlying": "BTC", "days_to_expiry": 30, "price": 100400.0}],
               "asset_prices": {"USDC": 1.0, "BTC": 100000.0, "ETH": 3000.0}},
    "positions": [{"kind": "option", "underlying": "BTC", "days_to_expiry": 30, "strike": 110000, "right": "call",
                   "vol": 0.52, "quantity": -1},
                  {"kind": "future", "underlying": "BTC", "days_to_expiry": 30, "quantity": -1},
                  {"kind": "perp", "underlying": "BTC", "quantity": 0.5},
                  {"kind": "spot", "underlying": "BTC", "quantity": 1}],
    "collateral": {"USDC": 10000, "BTC": 0.2}, "params": None,
}


def build_store(path: Path, accounts: int) -> float:
    """One signed state with `accounts` leaves (statecodec leaves, chain Merkle root, 3-of-4 BLS)."""
    from bridges.merkle import build_tree, make_keccak
    from bridges.statecodec import MarginLeaf, compute_inputs_digest, compute_state_digest, encode_margin_leaf
    from node.crypto import threshold
    from node.records import AccountDetail, AccountLeaf, ChainPin, SignedState
    from node.store import SQLiteStore

    started = time.perf_counter()
    leaves = []
    for i in range(accounts):
        account = (i + 1).to_bytes(20, "big")
        equity, im = (i % 1000) * 1_000_000, (i % 97) * 1_000_000 + 1
        leaf = MarginLeaf("0x" + account.hex(), equity, im, im * 8 // 10, int(equity < im * 8 // 10))
        detail = AccountDetail("0x" + account.hex(), equity, equity - im, tuple(s * 1000 for s in range(23)), 0,
                               ((31337, "USDC", equity),)).to_json_bytes()
        leaves.append(AccountLeaf(1, i, account, leaf.equity, leaf.im, leaf.mm, leaf.flags, (),
                                  encode_margin_leaf(leaf), detail))
    k = make_keccak()
    root = build_tree([k(k(leaf.encoded)) for leaf in leaves]).root
    pins = (ChainPin(31337, 10, b"\x01" * 32),)
    inputs = compute_inputs_digest([(31337, 10, b"\x01" * 32)])
    digest = compute_state_digest(7, 1, 1, inputs, b"\x02" * 32, root, accounts)
    _, shares, _ = threshold.deal_trusted(4, 3, b"bench")
    sig = threshold.combine({i: threshold.partial_sign(shares[i], digest) for i in (1, 2, 3)}, 3)
    state = SignedState(7, 1, 1, pins, inputs, b"\x02" * 32, root, accounts, digest, sig, (0, 1, 2))
    with SQLiteStore(path) as store:
        store.put_signed_state(state, leaves)
    return time.perf_counter() - started


def serve(db: str, port_file: str, workers: int) -> None:
    """The server process: API over the store until stdin closes."""
    from node.api.server import ApiServerConfig, freeze_startup_objects, start_api_server
    from node.api.service import ServiceLimits
    from node.api.sources import StaticSources
    from node.store import SQLiteStore

    store = SQLiteStore(db)
    server = start_api_server(ApiServerConfig(listen="127.0.0.1:0", max_workers=workers,
                                              limits=ServiceLimits(rate_limit_rps=0)), store, StaticSources())
    while server.snapshots.get_latest() is None:
        time.sleep(0.05)
    freeze_startup_objects()  # as `clearingd start` does
    pauses: list[float] = []
    started: dict[str, float] = {}

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            started["t"] = time.perf_counter()
        elif info.get("generation") == 2:
            pauses.append(time.perf_counter() - started.get("t", time.perf_counter()))

    gc.callbacks.append(on_gc)
    Path(port_file).write_text(str(server.port))
    sys.stdin.read()
    Path(port_file + ".gc").write_text(json.dumps({"gen2_collections": len(pauses),
                                                   "gen2_max_ms": round(max(pauses, default=0) * 1e3, 2),
                                                   "tracked_objects": len(gc.get_objects())}))
    server.stop(1.0)
    store.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def run_open_loop(call, make_request, rate: float, seconds: float) -> dict:  # type: ignore[no-untyped-def]
    """Send at a fixed rate with futures; return latency percentiles (ms) and achieved throughput."""
    sys.setswitchinterval(0.0005)  # the completion callbacks must not wait 5 ms for the sending thread's GIL
    total = int(rate * seconds)
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    done = threading.Event()
    remaining = [total]

    def finish(start: float):  # type: ignore[no-untyped-def]
        def callback(future: grpc.Future) -> None:
            elapsed = time.perf_counter() - start
            with lock:
                if future.exception() is None:
                    latencies.append(elapsed)
                else:
                    errors[0] += 1
                remaining[0] -= 1
                if remaining[0] == 0:
                    done.set()
        return callback

    t0 = time.perf_counter()
    for i in range(total):
        target = t0 + i / rate
        if (delay := target - time.perf_counter()) > 0:
            time.sleep(delay)  # no spinning: on 2 cores a spinning client takes the server's core
        start = time.perf_counter()
        call.future(make_request(i), timeout=10).add_done_callback(finish(start))
    done.wait(timeout=60)
    elapsed = time.perf_counter() - t0
    return {"p50_ms": percentile(latencies, 0.50) * 1e3, "p99_ms": percentile(latencies, 0.99) * 1e3,
            "max_ms": max(latencies) * 1e3 if latencies else float("nan"),
            "achieved_rps": len(latencies) / elapsed, "errors": errors[0], "sent": total}


def run_closed_loop(call, request, workers: int, seconds: float) -> float:  # type: ignore[no-untyped-def]
    count = [0]
    stop = time.perf_counter() + seconds
    lock = threading.Lock()

    def work() -> None:
        while time.perf_counter() < stop:
            call(request, timeout=30)
            with lock:
                count[0] += 1

    threads = [threading.Thread(target=work) for _ in range(workers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return count[0] / (time.perf_counter() - t0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=1000.0, help="offered requests per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=8, help="server thread-pool size (api.max_workers)")
    parser.add_argument("--serve", nargs=2, metavar=("DB", "PORT_FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], args.serve[1], args.workers)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        db, port_file = Path(tmp) / "bench.sqlite", Path(tmp) / "port"
        fill_s = build_store(db, args.accounts)
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(db), str(port_file),
                                   "--workers", str(args.workers)],
                                  stdin=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            started = time.perf_counter()
            while not port_file.exists() or not port_file.read_text():
                if server.poll() is not None or time.perf_counter() - started > 300:
                    raise SystemExit("server process failed to start")
                time.sleep(0.1)
            load_s = time.perf_counter() - started
            result = run_against(f"127.0.0.1:{port_file.read_text()}", args, psutil.Process(server.pid))
        finally:
            assert server.stdin is not None
            server.stdin.close()
            server.wait(timeout=30)
            gc_file = Path(str(port_file) + ".gc")
            gc_stats = json.loads(gc_file.read_text()) if gc_file.exists() else {}
    result.update({f"server_{k}": v for k, v in gc_stats.items()})
    result.update(accounts=args.accounts, server_workers=args.workers, store_fill_s=round(fill_s, 2), server_snapshot_load_s=round(load_s, 2))
    print(json.dumps(result, sort_keys=True))
    return 0


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def run_against(address: str, args: argparse.Namespace, server: psutil.Process) -> dict:
    rng = random.Random(1)
    n_requests = int(args.rate * args.seconds)  # every request asks for a uniformly random account
    accounts = ["0x" + rng.randint(1, args.accounts).to_bytes(20, "big").hex() for _ in range(n_requests + 200)]
    with grpc.insecure_channel(address) as channel:
        stub = api_pb2_grpc.MarginServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        check = health_pb2.HealthCheckRequest(service="")
        for i in range(200):  # warm-up
            stub.GetMargin(api_pb2.GetMarginRequest(account=accounts[i]), timeout=10)
            health.Check(check, timeout=10)
        cpu0 = cpu_seconds(server)
        base = run_open_loop(health.Check, lambda i: check, args.rate, args.seconds)
        cpu1 = cpu_seconds(server)
        margin = run_open_loop(stub.GetMargin, lambda i: api_pb2.GetMarginRequest(account=accounts[200 + i]),
                               args.rate, args.seconds)
        cpu2 = cpu_seconds(server)
        rep = stub.GetMargin(api_pb2.GetMarginRequest(account=accounts[0]), timeout=10).report
        simulate = run_closed_loop(stub.SimulateMargin, api_pb2.SimulateMarginRequest(whatif_json=json.dumps(WHATIF)),
                                   workers=4, seconds=min(args.seconds, 5.0))
    return {
        "offered_rps": args.rate, "seconds": args.seconds,
        "get_margin_p50_ms": round(margin["p50_ms"], 3), "get_margin_p99_ms": round(margin["p99_ms"], 3),
        "get_margin_max_ms": round(margin["max_ms"], 3), "achieved_rps": round(margin["achieved_rps"], 1),
        "get_margin_errors": margin["errors"], "proof_hashes": len(rep.proof),
        "baseline_health_p50_ms": round(base["p50_ms"], 3), "baseline_health_p99_ms": round(base["p99_ms"], 3),
        "baseline_achieved_rps": round(base["achieved_rps"], 1), "baseline_errors": base["errors"],
        "simulate_margin_rps": round(simulate, 1), "simulate_workers": 4,
        "server_cpu_ms_per_get_margin": round((cpu2 - cpu1) * 1e3 / max(margin["sent"], 1), 3),
        "server_cpu_ms_per_health_check": round((cpu1 - cpu0) * 1e3 / max(base["sent"], 1), 3),
        "load_average_1m": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
    }


if __name__ == "__main__":
    sys.exit(main())
