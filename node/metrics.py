"""Prometheus metrics and the HTTP endpoints `/metrics`, `/livez`, `/readyz` of a node.

`NodeMetrics` owns one `CollectorRegistry` (so several nodes in one process do not collide) with:
- event metrics updated where the event happens: public API requests (the API service's observer),
  and, once `install()` made it the process's `bridges.telemetry.Telemetry`, chain RPC failures
  (`bridges.chain`), publish gas and publisher balance (`bridges.publisher`), each registry's latest
  epoch (`bridges.publisher`, through `node.publications.PublicationWatcher`), compute-stage
  durations (`node.consensus.margin_inputs`) and round latencies (`node.consensus.engine`);
- a collector that reads, at scrape time, the store (latest epoch, signers, last signed epoch), the
  wall-clock epoch and the validator's status snapshot (engine event counters, skipped epochs by
  reason, peers, gossip verdicts, key sets, reshares);
- build information and prometheus_client's process collector.
`/readyz` answers 200 only when `ready()` is true. Bounded: label sets (method, code, chain id,
stage, event names of the status snapshot: at most `MAX_LABELS` each). Nothing is persisted.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from bridges.telemetry import FAILURE_REASONS, Telemetry, set_telemetry
from node.consensus.input_worker import SKIP_REASONS
from node.ports import Store

MAX_LABELS = 64
StatusProvider = Callable[[], dict[str, Any] | None]
ACCEPTED_EVENTS = ("partials_received", "states_adopted", "catchup_states")
REJECTED_EVENTS = ("invalid_partials", "digests_dropped", "aggregate_invalid", "evidence_dropped")
# Engine events exported at 0 before they first happen, so `increase()` in alert rules sees the first one.
KNOWN_EVENTS = ("states_aggregated", "states_adopted", "states_published", "publish_failed", "rounds_expired",
                "inputs_unavailable", "equivocations", "invalid_partials", "divergent_partials", "divergence_alerts",
                "adopted_differs_own", "sign_refused", "evidence_recorded", "reshares_done",
                "reshare_attempts_failed", "task_errors")
RESHARE_STATES = ("running", "done", "failed")
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 60.0)
STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
COMPUTE_STAGES = ("pin", "read_apply", "merge", "governance", "risk", "settle", "leaves", "records", "total")


def read_status_file(path: Path, max_bytes: int = 4 << 20) -> dict[str, Any] | None:
    """The validator's `status.json`, or None when missing/unreadable/too large."""
    try:
        if path.stat().st_size > max_bytes:
            return None
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def get_git_commit() -> str:
    """The source's git commit: `CLEARING_GIT_COMMIT`, else `git rev-parse HEAD` of the source tree, else ""."""
    commit = os.environ.get("CLEARING_GIT_COMMIT", "")
    if commit:
        return commit[:64]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=2, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    text = out.stdout.strip()
    return text if out.returncode == 0 and len(text) == 40 else ""


class EpochClock:
    """The wall-clock epoch of a network: floor((now - genesis) / period)."""

    def __init__(self, genesis_time: float, period_s: float, now: Callable[[], float] = time.time) -> None:
        self.genesis_time, self.period_s, self.now = genesis_time, period_s, now

    def get_current_epoch(self) -> int:
        return int((self.now() - self.genesis_time) // self.period_s)


class _StateCollector(Collector):
    def __init__(self, store: Store, status: StatusProvider, clock: EpochClock | None) -> None:
        self.store = store
        self.status = status
        self.clock = clock

    def collect(self) -> Iterator[Any]:
        latest = self.store.get_latest_signed_state()
        signed = self.store.get_last_signed()
        yield GaugeMetricFamily("clearing_epoch", "Epoch of the latest signed state in the store",
                                value=latest.epoch if latest else -1)
        yield GaugeMetricFamily("clearing_signers", "Signers combined into the latest signed state",
                                value=len(latest.signers) if latest else 0)
        yield GaugeMetricFamily("clearing_last_signed_epoch", "Highest epoch this node has signed",
                                value=signed[0] if signed else -1)
        if self.clock is not None:
            yield GaugeMetricFamily("clearing_current_epoch", "Wall-clock epoch (genesis time and epoch period)",
                                    value=self.clock.get_current_epoch())
            yield GaugeMetricFamily("clearing_epoch_period_seconds", "Epoch period", value=self.clock.period_s)
        yield from _collect_status(self.status() or {})


def _collect_status(status: dict[str, Any]) -> Iterator[Any]:
    events = {str(k): v for k, v in (status.get("metrics") or {}).items() if isinstance(v, int)}
    family = CounterMetricFamily("clearing_consensus_events", "Consensus engine events", labels=["event"])
    for name in KNOWN_EVENTS:
        events.setdefault(name, 0)
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
    by_reason = {str(k): v for k, v in (status.get("epochs_skipped") or {}).items() if isinstance(v, int)}
    for reason in SKIP_REASONS:
        by_reason.setdefault(reason, 0)
    for reason, value in sorted(by_reason.items())[:MAX_LABELS]:
        skipped.add_metric([reason], value)
    yield skipped
    yield GaugeMetricFamily("clearing_peers", "Peers with a score (connected validators)",
                            value=len(status.get("scores") or {}))
    keysets = {int(k): v for k, v in (status.get("keysets") or {}).items() if isinstance(v, dict)}
    if keysets:
        newest = keysets[max(keysets)]
        yield GaugeMetricFamily("clearing_keyset_id", "Newest key set this node knows", value=max(keysets))
        yield GaugeMetricFamily("clearing_keyset_threshold", "Signing threshold of the newest key set",
                                value=int(newest.get("threshold", 0)))
        yield GaugeMetricFamily("clearing_keyset_size", "Members of the newest key set", value=int(newest.get("n", 0)))
        yield GaugeMetricFamily("clearing_keyset_member", "1 when this node holds a share of the newest key set",
                                value=1 if newest.get("has_share") else 0)
    reshares = GaugeMetricFamily("clearing_reshares", "Reshares (validator-set changes) by state", labels=["state"])
    states = [str(v.get("state", "")) for v in (status.get("reshares") or {}).values() if isinstance(v, dict)]
    for state in RESHARE_STATES:
        reshares.add_metric([state], states.count(state))
    yield reshares


class NodeMetrics(Telemetry):
    """The node's metrics registry. Pass `observe_api` to the API service; `install()` makes it the
    process's telemetry so the chain adapters and the engine report into it."""

    def __init__(self, store: Store, status: StatusProvider = lambda: None, *, clock: EpochClock | None = None,
                 version: str = "", git_commit: str = "") -> None:
        self.registry = r = CollectorRegistry()
        self.api_requests = Counter("clearing_api_requests", "Public API requests", ["method", "code"], registry=r)
        self.api_latency = Histogram("clearing_api_request_seconds", "Public API request latency", ["method"],
                                     buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.25, 1.0), registry=r)
        self.chain_rpc_errors = Counter("clearing_chain_rpc_errors", "Chain requests failed after their retries",
                                        ["chain_id"], registry=r)
        self.publish_gas = Counter("clearing_publish_gas", "Gas used by this node's publish transactions",
                                   ["chain_id"], registry=r)
        self.publications = Counter("clearing_publications", "Publish transactions this node sent and saw mined",
                                    ["chain_id"], registry=r)
        self.last_published = Gauge("clearing_chain_last_published_epoch", "Latest epoch held by the chain's registry",
                                    ["chain_id"], registry=r)
        self.balance = Gauge("clearing_publisher_balance_wei", "Balance of the account paying publications",
                             ["chain_id"], registry=r)
        self.round_latency = Histogram("clearing_round_latency_seconds", "Epoch start to signed state (own rounds)",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.pin_latency = Histogram("clearing_round_pinned_to_signed_seconds", "Inputs pinned to signed state",
                                     buckets=LATENCY_BUCKETS, registry=r)
        self.stage_seconds = Histogram("clearing_compute_stage_seconds", "Duration of each stage of an epoch's "
                                       "computation", ["stage"], buckets=STAGE_BUCKETS, registry=r)
        for stage in COMPUTE_STAGES:
            self.stage_seconds.labels(stage)
        self.without_leaf = Gauge("clearing_accounts_without_leaf", "Accounts of the last computed epoch that got "
                                  "no leaf, by reason", ["reason"], registry=r)
        for reason in FAILURE_REASONS:
            self.without_leaf.labels(reason).set(0)
        Info("clearing_build", "Build of this node", registry=r).info(
            {"version": version or "unknown", "git_commit": git_commit or "unknown",
             "python": platform.python_version()})
        ProcessCollector(registry=r)
        r.register(_StateCollector(store, status, clock))
        self._chains: set[str] = set()
        self._lock = threading.Lock()

    # --- bridges.telemetry.Telemetry ------------------------------------------------------------
    def _chain(self, chain_id: int) -> str | None:
        """The chain id as a label, or None once MAX_LABELS other chains are known."""
        label = str(chain_id)
        with self._lock:
            if label not in self._chains and len(self._chains) >= MAX_LABELS:
                return None
            self._chains.add(label)
        return label

    def chain_rpc_failed(self, chain_id: int) -> None:
        if (label := self._chain(chain_id)) is not None:
            self.chain_rpc_errors.labels(label).inc()

    def publish_mined(self, chain_id: int, gas_used: int) -> None:
        if (label := self._chain(chain_id)) is not None:
            self.publications.labels(label).inc()
            self.publish_gas.labels(label).inc(max(0, gas_used))

    def registry_epoch(self, chain_id: int, epoch: int) -> None:
        if (label := self._chain(chain_id)) is not None:
            self.last_published.labels(label).set(epoch)

    def publisher_balance(self, chain_id: int, wei: int) -> None:
        if (label := self._chain(chain_id)) is not None:
            self.balance.labels(label).set(wei)

    def compute_stage(self, stage: str, seconds: float) -> None:
        if stage in COMPUTE_STAGES:
            self.stage_seconds.labels(stage).observe(seconds)

    def round_signed(self, start_to_signed_s: float, pinned_to_signed_s: float) -> None:
        self.round_latency.observe(start_to_signed_s)
        self.pin_latency.observe(pinned_to_signed_s)

    def accounts_without_leaf(self, counts: Mapping[str, int]) -> None:
        for reason in FAILURE_REASONS:
            self.without_leaf.labels(reason).set(counts.get(reason, 0))

    # ----------------------------------------------------------------------------------------------
    def init_chains(self, chain_ids: list[int]) -> None:
        """Export the per-chain counters at 0 for the configured chains (so the first event is an increase)."""
        for chain_id in chain_ids:
            if (label := self._chain(chain_id)) is not None:
                self.chain_rpc_errors.labels(label)
                self.publications.labels(label)
                self.publish_gas.labels(label)

    def install(self) -> NodeMetrics:
        """Make this the process's telemetry (chain adapters, publisher, engine report into it)."""
        set_telemetry(self)
        return self

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
