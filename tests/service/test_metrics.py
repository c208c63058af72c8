"""node.metrics: Prometheus text from the store and the validator status, event metrics through the
process telemetry (`bridges.telemetry`); /livez, /readyz, /metrics over real HTTP on loopback."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bridges.chain import ChainClient, ChainConfig
from bridges.errors import ChainUnavailable
from bridges.telemetry import get_telemetry, set_telemetry
from node.metrics import EpochClock, MetricsServer, NodeMetrics, read_status_file
from node.store import SQLiteStore
from tests.store.factories import make_state

STATUS = {"metrics": {"partials_received": 7, "states_adopted": 2, "invalid_partials": 3, "publish_failed": 1},
          "rejections": {"bad_signature": 4}, "scores": {"peerA": 1.0, "peerB": 0.5},
          "latencies": [[1, 0.2, 0.30], [2, 0.2, 0.10], [3, 0.2, 0.20]],
          "keysets": {"1": {"index": 0, "n": 4, "threshold": 3}, "2": {"index": 1, "n": 5, "threshold": 4}},
          "reshares": {"1": {"state": "done", "keyset_id": 2}},
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
        assert 'clearing_consensus_events_total{event="equivocations"} 0.0' in text  # known events start at 0
        assert sample(text, "clearing_keyset_threshold") == 4 and sample(text, "clearing_keyset_size") == 5
        assert 'clearing_reshares{state="done"} 1.0' in text
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


@pytest.fixture
def installed(tmp_path: Path):
    store = SQLiteStore(tmp_path / "n.sqlite")
    metrics = NodeMetrics(store, clock=EpochClock(genesis_time=1000.0, period_s=10.0, now=lambda: 1125.0),
                          version="1.2.3", git_commit="abc123").install()
    yield metrics
    set_telemetry(None)
    store.close()


def test_telemetry_events_move_metrics(installed: NodeMetrics) -> None:
    installed.init_chains([31337, 31338])
    before = installed.render().decode()
    assert 'clearing_publish_gas_total{chain_id="31338"} 0.0' in before
    assert 'clearing_chain_rpc_errors_total{chain_id="31337"} 0.0' in before
    telemetry = get_telemetry()
    assert telemetry is installed
    telemetry.publish_mined(31337, 90_000)
    telemetry.publish_mined(31337, 80_000)
    telemetry.registry_epoch(31338, 42)
    telemetry.publisher_balance(31338, 10**21)
    telemetry.round_signed(3.5, 0.25)
    telemetry.compute_stage("risk", 0.12)
    telemetry.compute_stage("not_a_stage", 1.0)
    assert 'clearing_accounts_without_leaf{reason="stale_quote"} 0.0' in installed.render().decode()
    telemetry.accounts_without_leaf({"stale_quote": 7, "collateral": 1})
    text = installed.render().decode()
    assert 'clearing_accounts_without_leaf{reason="stale_quote"} 7.0' in text
    assert 'clearing_accounts_without_leaf{reason="collateral"} 1.0' in text
    assert 'clearing_accounts_without_leaf{reason="risk"} 0.0' in text
    assert 'clearing_publish_gas_total{chain_id="31337"} 170000.0' in text
    assert 'clearing_publications_total{chain_id="31337"} 2.0' in text
    assert 'clearing_chain_last_published_epoch{chain_id="31338"} 42.0' in text
    assert 'clearing_publisher_balance_wei{chain_id="31338"} 1e+21' in text
    assert 'clearing_round_latency_seconds_bucket{le="5.0"} 1.0' in text
    assert 'clearing_round_latency_seconds_bucket{le="3.0"} 0.0' in text
    assert 'clearing_round_pinned_to_signed_seconds_count 1.0' in text
    assert 'clearing_compute_stage_seconds_count{stage="risk"} 1.0' in text
    assert 'clearing_compute_stage_seconds_count{stage="read_apply"} 0.0' in text
    assert "not_a_stage" not in text
    assert 'clearing_build_info{git_commit="abc123",python=' in text and 'version="1.2.3"' in text
    assert sample(text, "clearing_current_epoch") == 12 and sample(text, "clearing_epoch_period_seconds") == 10
    assert sample(text, "process_cpu_seconds_total") > 0 and sample(text, "process_resident_memory_bytes") > 0


def test_unreachable_chain_counts_rpc_errors(installed: NodeMetrics) -> None:
    client = ChainClient(ChainConfig(chain_id=31337, rpc_url="http://127.0.0.1:9", timeout_s=0.5, max_attempts=1))
    for _ in range(2):
        with pytest.raises(ChainUnavailable):
            client.get_head_number()
    assert 'clearing_chain_rpc_errors_total{chain_id="31337"} 2.0' in installed.render().decode()


@pytest.mark.parametrize(("field", "reason", "label"), [
    ("positions[31338:2]", "chain 31337 oracle.spot.BTC: updated at 5, older than 500s", "stale_quote"),
    ("collateral.USDC", "home oracle.asset.USDC: no price", "collateral"),
    ("positions[31338:2]", "chain 31338 oracle.vol[2]: no value", "position"),
    ("amounts", "not representable as int64 micro-USD", "amounts"),
    ("oracle.spot.BTC", "price 0 <= 0", "oracle"),
    ("vol", "not finite", "risk")])
def test_account_failures_get_a_bounded_reason_label(field: str, reason: str, label: str) -> None:
    from bridges.telemetry import FAILURE_REASONS, classify_account_failure

    assert classify_account_failure(field, reason) == label and label in FAILURE_REASONS
