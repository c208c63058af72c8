"""node.metrics: Prometheus text from the store and the validator status; /livez, /readyz, /metrics
over real HTTP on loopback."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from node.metrics import MetricsServer, NodeMetrics, read_status_file
from node.store import SQLiteStore
from tests.store.factories import make_state

STATUS = {"metrics": {"partials_received": 7, "states_adopted": 2, "invalid_partials": 3, "publish_failed": 1},
          "rejections": {"bad_signature": 4}, "scores": {"peerA": 1.0, "peerB": 0.5},
          "latencies": [[1, 0.2, 0.30], [2, 0.2, 0.10], [3, 0.2, 0.20]],
          "epochs_skipped": {"overrun": 4, "deadline": 1, "inputs_unavailable": 0, "loop_late": 0}}


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or (line.startswith(name + "{") and line.split(" ")[0] == name):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics")


def test_metrics_endpoints(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "n.sqlite")
    status_file = tmp_path / "status.json"
    ready = {"ok": False}
    metrics = NodeMetrics(store, status=lambda: read_status_file(status_file))
    server = MetricsServer("127.0.0.1:0", metrics, ready=lambda: ready["ok"]).start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        assert get(base + "/livez") == (200, "ok\n")
        assert get(base + "/readyz")[0] == 503
        ready["ok"] = True
        assert get(base + "/readyz")[0] == 200
        assert get(base + "/nope")[0] == 404
        code, text = get(base + "/metrics")
        assert code == 200 and sample(text, "clearing_epoch") == -1 and sample(text, "clearing_peers") == 0
        store.put_signed_state(*make_state(6, 3))
        store.record_signing(6, b"\x01" * 32)
        status_file.write_text(json.dumps(STATUS))
        metrics.observe_api("GetMargin", "OK", 0.001)
        metrics.chain_rpc_errors.labels("31337").inc(2)
        metrics.publish_gas.labels("31337").inc(137_000)
        text = get(base + "/metrics")[1]
        assert sample(text, "clearing_epoch") == 6 and sample(text, "clearing_signers") == 3
        assert sample(text, "clearing_last_signed_epoch") == 6 and sample(text, "clearing_peers") == 2
        assert 'clearing_gossip_messages_total{verdict="accepted"} 9.0' in text
        assert 'clearing_gossip_messages_total{verdict="rejected"} 7.0' in text
        assert 'clearing_consensus_events_total{event="publish_failed"} 1.0' in text
        assert 'clearing_round_latency_seconds{quantile="0.5"} 0.2' in text
        assert 'clearing_api_requests_total{code="OK",method="GetMargin"} 1.0' in text
        assert 'clearing_chain_rpc_errors_total{chain_id="31337"} 2.0' in text
        assert 'clearing_publish_gas_total{chain_id="31337"} 137000.0' in text
        assert 'clearing_epochs_skipped_total{reason="overrun"} 4.0' in text
        assert 'clearing_epochs_skipped_total{reason="deadline"} 1.0' in text
        assert 'clearing_epochs_skipped_total{reason="inputs_unavailable"} 0.0' in text
    finally:
        server.stop()
        store.close()


def test_invalid_status_file_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    assert read_status_file(path) is None
    path.write_text("{not json")
    assert read_status_file(path) is None
    path.write_text("[1, 2]")
    assert read_status_file(path) is None
    store = SQLiteStore(tmp_path / "n.sqlite")
    text = NodeMetrics(store, status=lambda: read_status_file(path)).render().decode()
    assert "clearing_peers 0.0" in text
    store.close()
