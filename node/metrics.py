"""Prometheus metrics and the HTTP endpoints `/metrics`, `/livez`, `/readyz` of a node.

`NodeMetrics` owns one `CollectorRegistry` (so several nodes in one process do not collide): event
counters the node's parts increment (API requests, chain RPC errors, publish gas) and a collector
that reads, at scrape time, the store (latest epoch, signers, last signed epoch) and the validator's
status snapshot (consensus event counters, skipped epochs by reason, round latencies, peers, gossip
accepted/rejected).
`/readyz` answers 200 only when `ready()` is true. Bounded: label sets (method, code, chain id,
event names from the status snapshot, at most `MAX_LABELS` each). Nothing is persisted.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from node.ports import Store

MAX_LABELS = 64
StatusProvider = Callable[[], dict[str, Any] | None]
ACCEPTED_EVENTS = ("partials_received", "states_adopted", "catchup_states")
REJECTED_EVENTS = ("invalid_partials", "digests_dropped", "aggregate_invalid", "evidence_dropped")


def read_status_file(path: Path, max_bytes: int = 4 << 20) -> dict[str, Any] | None:
    """The validator's `status.json`, or None when missing/unreadable/too large."""
    try:
        if path.stat().st_size > max_bytes:
            return None
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class _StateCollector(Collector):
    def __init__(self, store: Store, status: StatusProvider) -> None:
        self.store = store
        self.status = status

    def collect(self) -> Iterator[Any]:
        latest = self.store.get_latest_signed_state()
        signed = self.store.get_last_signed()
        yield GaugeMetricFamily("clearing_epoch", "Epoch of the latest signed state in the store",
                                value=latest.epoch if latest else -1)
        yield GaugeMetricFamily("clearing_signers", "Signers combined into the latest signed state",
                                value=len(latest.signers) if latest else 0)
        yield GaugeMetricFamily("clearing_last_signed_epoch", "Highest epoch this node has signed",
                                value=signed[0] if signed else -1)
        yield from self._collect_status(self.status() or {})

    def _collect_status(self, status: dict[str, Any]) -> Iterator[Any]:
        events = {str(k): v for k, v in (status.get("metrics") or {}).items() if isinstance(v, int)}
        family = CounterMetricFamily("clearing_consensus_events", "Consensus engine events", labels=["event"])
        for name, value in sorted(events.items())[:MAX_LABELS]:
            family.add_metric([name], value)
        yield family
        gossip = CounterMetricFamily("clearing_gossip_messages", "Gossip messages by verdict", labels=["verdict"])
        rejections = status.get("rejections") or {}
        rejected = sum(events.get(e, 0) for e in REJECTED_EVENTS) + sum(
            v for v in rejections.values() if isinstance(v, int))
        gossip.add_metric(["accepted"], sum(events.get(e, 0) for e in ACCEPTED_EVENTS))
        gossip.add_metric(["rejected"], rejected)
        yield gossip
        skipped = CounterMetricFamily("clearing_epochs_skipped", "Rounds whose input computation could not start "
                                      "or finish before the round deadline, by reason", labels=["reason"])
        for reason, value in sorted((status.get("epochs_skipped") or {}).items())[:MAX_LABELS]:
            if isinstance(value, int):
                skipped.add_metric([str(reason)], value)
        yield skipped
        yield GaugeMetricFamily("clearing_peers", "Peers with a score (connected validators)",
                                value=len(status.get("scores") or {}))
        latencies = [float(x[2]) for x in status.get("latencies") or [] if isinstance(x, list) and len(x) == 3]
        lat = GaugeMetricFamily("clearing_round_latency_seconds", "Round start -> signed state, recent rounds",
                                labels=["quantile"])
        if latencies:
            for q in (0.5, 0.99):
                lat.add_metric([str(q)], _quantile(latencies, q))
        yield lat


class NodeMetrics:
    """The node's metrics registry; pass `observe_api` to the API service."""

    def __init__(self, store: Store, status: StatusProvider = lambda: None) -> None:
        self.registry = CollectorRegistry()
        self.api_requests = Counter("clearing_api_requests", "Public API requests", ["method", "code"],
                                    registry=self.registry)
        self.api_latency = Histogram("clearing_api_request_seconds", "Public API request latency", ["method"],
                                     buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.25, 1.0),
                                     registry=self.registry)
        self.chain_rpc_errors = Counter("clearing_chain_rpc_errors", "Chain RPC errors", ["chain_id"],
                                        registry=self.registry)
        self.publish_gas = Counter("clearing_publish_gas", "Gas used publishing signed states", ["chain_id"],
                                   registry=self.registry)
        self.registry.register(_StateCollector(store, status))

    def observe_api(self, method: str, code: str, seconds: float) -> None:
        self.api_requests.labels(method, code).inc()
        self.api_latency.labels(method).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsServer:
    """HTTP server for /metrics, /livez, /readyz in a daemon thread."""

    def __init__(self, listen: str, metrics: NodeMetrics, ready: Callable[[], bool]) -> None:
        host, _, port = listen.rpartition(":")
        handler = _make_handler(metrics, ready)
        self.httpd = ThreadingHTTPServer((host.strip("[]") or "127.0.0.1", int(port)), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="metrics", daemon=True)

    def start(self) -> MetricsServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _make_handler(metrics: NodeMetrics, ready: Callable[[], bool]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, metrics.render(), CONTENT_TYPE_LATEST)
            elif path == "/livez":
                self._send(200, b"ok\n")
            elif path == "/readyz":
                ok = _safe(ready)
                self._send(200 if ok else 503, b"ready\n" if ok else b"not ready\n")
            else:
                self._send(404, b"not found\n")

        def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


def _safe(ready: Callable[[], bool]) -> bool:
    try:
        return bool(ready())
    except Exception:
        return False
