"""Epoch consensus benchmark: N validator OS processes on loopback, K epochs, one JSON object.

Runs real `python -m node.validator` processes (real libp2p, real threshold BLS, SQLite stores) with
the deterministic input source (no chains, no risk computation: the target excludes it), waits until
every node holds K consecutive signed states, then reports:
- latency from input pin (inputs computed) to signed state, over every (node, epoch): p50/p99;
- messages and payload bytes sent and received per node per epoch (envelope bytes, not wire bytes);
- CPU seconds per node over the measured epochs (psutil);
- baseline measured in the same run: the bare crypto of one epoch at one node (partial sign, t
  partial verifies, combine, group verify), single-threaded.
Usage: `.venv/bin/python bench/epoch_bench.py --nodes 7 --epochs 10 [--period 2.0]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eth_hash.auto import keccak

from node.crypto import threshold
from tests.consensus.cluster import build_configs, get_current_epoch, start_cluster, stop_cluster, wait_for


def measure_crypto_baseline(n: int, t: int, rounds: int = 20) -> float:
    """Median ms of what one node's crypto costs per epoch: its own partial sign, t partial
    verifies, one combine and one group verify (the peers' partials are made outside the timing)."""
    group_key, shares, public_shares = threshold.deal_trusted(n, t, b"bench")
    times = []
    for r in range(rounds):
        digest = keccak(r.to_bytes(8, "big"))
        others = {i: threshold.partial_sign(shares[i], digest) for i in range(2, t + 1)}
        start = time.perf_counter()
        partials = {1: threshold.partial_sign(shares[1], digest), **others}
        if not all(threshold.partial_verify(public_shares[i], digest, p) for i, p in partials.items()):
            raise RuntimeError("baseline: a partial does not verify")
        if not threshold.group_verify(group_key, digest, threshold.combine(partials, t)):
            raise RuntimeError("baseline: the group signature does not verify")
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def run(nodes_n: int, epochs_k: int, period_s: float, startup_timeout_s: float) -> dict:
    root = Path(tempfile.mkdtemp(prefix="epoch-bench-"))
    configs = build_configs(root, nodes_n, [{"chain_id": 31337, "rpc_url": "http://127.0.0.1:9"}], period_s,
                            inputs="fake", heartbeat_interval_s=max(2.0, period_s))
    t = configs[0]["validator_set"]["threshold"]
    baseline_ms = measure_crypto_baseline(nodes_n, t)
    nodes = start_cluster(configs, root)
    try:
        bound = wait_for(lambda: all(len(nd.read_status().get("bindings", {})) >= nodes_n - 1 for nd in nodes),
                         startup_timeout_s, interval=0.5)
        first = get_current_epoch(configs[0]) + 2
        wait_for(lambda: get_current_epoch(configs[0]) >= first, 3 * period_s)
        procs = [psutil.Process(nd.process.pid) for nd in nodes]
        cpu0 = [cpu_seconds(p) for p in procs]
        traffic0 = [nd.read_status().get("traffic", {}) for nd in nodes]
        epochs = range(first, first + epochs_k)
        wait_for(lambda: all(set(epochs) <= set(nd.read_status().get("have", [])) for nd in nodes),
                 (epochs_k + 8) * period_s, interval=0.5)
        time.sleep(1.5)  # one more status snapshot
        statuses = [nd.read_status() for nd in nodes]
        cpu1 = [cpu_seconds(p) for p in procs]
    finally:
        stop_cluster(nodes)
    latencies = [lat[1] * 1000.0 for st in statuses for lat in st.get("latencies", []) if lat[0] in epochs]
    signed_by_all = sum(1 for e in epochs if all(e in set(st.get("have", [])) for st in statuses))

    def per_node_epoch(key: str) -> float:
        deltas = [st.get("traffic", {}).get(key, 0) - t0.get(key, 0) for st, t0 in zip(statuses, traffic0, strict=True)]
        return statistics.mean(deltas) / epochs_k

    return {
        "nodes": nodes_n, "threshold": t, "epochs": epochs_k, "period_s": period_s, "all_bound": bound,
        "epochs_signed_by_all": signed_by_all,
        "latency_p50_ms": round(percentile(latencies, 0.5), 1) if latencies else None,
        "latency_p99_ms": round(percentile(latencies, 0.99), 1) if latencies else None,
        "latency_samples": len(latencies),
        "messages_per_node_per_epoch": round(per_node_epoch("messages_out"), 2),
        "messages_in_per_node_per_epoch": round(per_node_epoch("messages_in"), 2),
        "bytes_per_node_per_epoch": round(per_node_epoch("bytes_out"), 1),
        "bytes_in_per_node_per_epoch": round(per_node_epoch("bytes_in"), 1),
        "cpu_s_per_node": round(statistics.mean(b - a for a, b in zip(cpu0, cpu1, strict=True)), 3),
        "cpu_s_per_node_per_epoch": round(statistics.mean(b - a for a, b in zip(cpu0, cpu1, strict=True)) / epochs_k, 4),
        "baseline_crypto_ms": round(baseline_ms, 2),
        "load_average_1m": round(psutil.getloadavg()[0], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--period", type=float, default=2.0, help="epoch period in seconds")
    parser.add_argument("--startup-timeout", type=float, default=180.0)
    args = parser.parse_args()
    print(json.dumps(run(args.nodes, args.epochs, args.period, args.startup_timeout)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
