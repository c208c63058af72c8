"""Observability of a live devnet (real chains, four `clearingd start` processes): every documented
metric is served and moves, publish gas and registry epochs after 3 epochs on both chains, every
metric the alert rules and the dashboard use is served, the logs are structured JSON and none of
the run (the key ceremony's too) holds key material, the printed web view address answers, and, once
the network is stopped, a node's real scrapes raise `ClearingNoSignedEpoch` under `promtool test
rules` (and its failing chain reads count as RPC errors)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from bridges.anvil import get_free_port
from node.config import load_config, load_validator_secrets
from tests.service.live_devnet import LiveDevnet, Samples, get_value, scrape, wait_for
from tests.service.test_monitoring import (
    NO_SIGNED_RUNBOOK,
    get_dashboard_expressions,
    get_documented_metrics,
    get_rule_expressions,
    get_used_metrics,
    promtool,
    run_rule_test,
)

pytestmark = pytest.mark.slow

CHAINS = ("31337", "31338")
SUFFIXES = ("", "_total", "_bucket", "_count", "_sum")
# Documented metrics, by what a healthy devnet does with them in 3 epochs (every documented metric
# must be in exactly one of these sets, so a newly documented one has to be classified here).
MOVING = {"clearing_epoch", "clearing_current_epoch", "clearing_last_signed_epoch", "clearing_round_latency_seconds",
          "clearing_round_pinned_to_signed_seconds", "clearing_compute_stage_seconds",
          "clearing_gossip_messages_total", "clearing_consensus_events_total", "clearing_api_requests_total",
          "clearing_api_request_seconds", "clearing_publish_gas_total", "clearing_publications_total",
          "clearing_chain_last_published_epoch", "clearing_publisher_balance_wei", "process_cpu_seconds_total"}
STEADY = {"clearing_signers": 3, "clearing_peers": 3, "clearing_keyset_id": 1, "clearing_keyset_threshold": 3,
          "clearing_keyset_size": 4, "clearing_keyset_member": 1, "clearing_epoch_period_seconds": 3,
          "clearing_build_info": 1, "process_resident_memory_bytes": None, "process_open_fds": None,
          "process_start_time_seconds": None, "clearing_reshares": 0,
          "clearing_epochs_skipped_total": None,
          "clearing_accounts_without_leaf": 0}  # every demo account has a leaf  # exported at 0 per reason; moves only when a round overruns
INDUCED = {"clearing_chain_rpc_errors_total"}  # moves once the chains are gone (last test)


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory):
    net = LiveDevnet(tmp_path_factory.mktemp("observed-devnet"), crash_epoch=None).start()
    yield net
    net.stop()


def has_metric(samples: Samples, name: str) -> bool:
    return any(n == name + suffix for n, _ in samples for suffix in SUFFIXES)


def values_of(samples: Samples, name: str) -> dict[tuple[str, frozenset], float]:
    return {k: v for k, v in samples.items() if any(k[0] == name + suffix for suffix in SUFFIXES)}


def test_every_documented_metric_is_served_and_moves(devnet: LiveDevnet) -> None:
    documented = get_documented_metrics()
    assert documented == MOVING | set(STEADY) | INDUCED, "classify every documented metric in this test"
    devnet.wait_epochs(1)
    before = [scrape(m) for m in devnet.metrics]
    devnet.wait_epochs(4)

    def advanced() -> list[Samples] | None:
        now = [scrape(m) for m in devnet.metrics]
        return now if all(get_value(a, "clearing_epoch") >= get_value(b, "clearing_epoch") + 3
                          for a, b in zip(now, before, strict=True)) else None

    after = devnet.wait(advanced, 60, "three more signed epochs in every node's metrics")
    for samples in after:
        missing = [n for n in documented if not has_metric(samples, n)]
        assert not missing, f"documented but not served: {missing}"
    for name in MOVING:
        moved = [i for i, (b, a) in enumerate(zip(before, after, strict=True)) if values_of(b, name) != values_of(a, name)]
        assert moved, f"{name} did not move in 3 epochs on any node"
    for name, expected in STEADY.items():
        for samples in after:
            values = set(values_of(samples, name).values())
            assert values, name
            if expected is not None:
                assert values == {expected}, (name, values)
    info = next(k for k in after[0] if k[0] == "clearing_build_info")
    assert dict(info[1])["version"] != "unknown" and re.fullmatch(r"[0-9a-f]{40}|unknown", dict(info[1])["git_commit"])


def test_publish_gas_and_registry_epochs_on_both_chains_after_three_epochs(devnet: LiveDevnet) -> None:
    ws = devnet.wait_epochs(3)
    first = ws.first_epoch or 0

    def published() -> list[Samples] | None:
        all_samples = [scrape(m) for m in devnet.metrics]
        for chain in CHAINS:
            gas = sum(get_value(s, "clearing_publish_gas_total", chain_id=chain) or 0 for s in all_samples)
            epochs = [get_value(s, "clearing_chain_last_published_epoch", chain_id=chain) or 0 for s in all_samples]
            if gas <= 0 or min(epochs) < first:
                return None
        return all_samples

    samples = devnet.wait(published, 60, "publish gas and registry epochs on both chains")
    for chain in CHAINS:
        gas = sum(get_value(s, "clearing_publish_gas_total", chain_id=chain) or 0 for s in samples)
        count = sum(get_value(s, "clearing_publications_total", chain_id=chain) or 0 for s in samples)
        assert count >= 1 and 100_000 < gas / count < 250_000, (chain, gas, count)  # publishState with the BLS check
        for s in samples:
            assert (get_value(s, "clearing_publisher_balance_wei", chain_id=chain) or 0) > 10**20  # devnet funding


def test_alert_and_dashboard_metrics_are_served(devnet: LiveDevnet) -> None:
    samples = scrape(devnet.metrics[0])
    used = get_used_metrics([*get_rule_expressions().values(), *get_dashboard_expressions()])
    missing = [n for n in used if not has_metric(samples, n)]
    assert not missing, f"rules or dashboard use metrics the node does not serve: {missing}"


def get_key_material(devnet: LiveDevnet) -> list[str]:
    """Every secret of the devnet's homes as it could appear in text: share scalars (decimal and hex),
    operator and p2p keys (hex), and the keystore passphrase."""
    assert devnet.run is not None
    passphrase = (devnet.home / "passphrase").read_text().strip()
    forms = [passphrase]
    for home in devnet.run.homes:
        secrets = load_validator_secrets(load_config(home.path, env={}))
        assert secrets.share_sk is not None
        forms += [str(secrets.share_sk), format(secrets.share_sk, "x"), format(secrets.share_sk, "064x"),
                  secrets.operator_key.hex(), secrets.p2p_seed.hex()]
    return forms


def test_logs_are_json_with_fields_and_hold_no_key_material(devnet: LiveDevnet) -> None:
    """Every log file of the run holds no key material: the validators' (`v<i>.log`, JSON lines) and the
    key ceremony's (`dkg-v<i>.log`, `clearingd dkg`'s text output, written while the shares were made)."""
    devnet.wait_epochs(4)
    every_log = sorted(devnet.home.rglob("*.log"))
    logs = [p for p in every_log if re.fullmatch(r"v\d+\.log", p.name)]
    ceremony_logs = [p for p in every_log if re.fullmatch(r"dkg-v\d+\.log", p.name)]
    assert len(logs) == 4 and len(ceremony_logs) == 4, [p.name for p in every_log]
    secrets = get_key_material(devnet)
    for path in every_log:
        lowered = path.read_text().lower()
        leaked = [f"{s[:6]}...({len(s)} chars)" for s in secrets if s.lower() in lowered]
        assert not leaked, f"{path.relative_to(devnet.home)} holds key material: {leaked}"
    for path in logs:
        text = path.read_text()
        records = []
        for number, line in enumerate(text.splitlines(), 1):
            try:
                records.append(json.loads(line))
            except ValueError:
                raise AssertionError(f"{path.name}:{number} is not a JSON line: {line[:200]}") from None
        assert all({"ts", "level", "logger", "msg"} <= set(r) for r in records)
        unavailable = Counter(r["epoch"] for r in records if r["msg"] == "inputs unavailable" and r["level"] == "INFO")
        assert unavailable and max(unavailable.values()) == 1, f"{path.name}: inputs unavailable repeated at INFO"
        assert all(isinstance(r["epoch"], int) for r in records if r["logger"] == "node.consensus.engine" and "epoch" in r)
        assert not [r for r in records if re.search(r"epoch \d+", r["msg"])], "values belong in fields, not msg"


def test_devnet_prints_its_web_view_address(devnet: LiveDevnet) -> None:
    """The address the devnet prints is validator 0's web view, and it answers with the page."""
    printed = [line for line in devnet.lines if line.startswith("web view: ")]
    assert len(printed) == 1 and printed[0].startswith(f"web view: {devnet.web[0]} "), printed
    address = printed[0].split()[2]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", address), address
    with urllib.request.urlopen(address, timeout=10) as resp:
        assert resp.status == 200 and resp.headers.get_content_type() == "text/html"
        assert b"<html" in resp.read().lower()


def test_stopped_network_raises_no_signed_epoch_alert(devnet: LiveDevnet, tmp_path: Path) -> None:
    """Real scrapes of v0 while the network signs, then of v0's node (API and metrics only) after the
    whole network and its chains stopped, replayed one minute apart through the alert rules."""
    tool = promtool()
    assert devnet.run is not None
    home = devnet.run.homes[0].path
    healthy = [scrape(devnet.metrics[0])]
    for _ in range(3):
        healthy.append(scrape_next_epoch(devnet.metrics[0], healthy[-1]))
    devnet.stop()
    metrics_at = f"127.0.0.1:{get_free_port()}"
    env = {**os.environ, "CLEARING_METRICS_LISTEN": metrics_at, "CLEARING_API_LISTEN": f"127.0.0.1:{get_free_port()}",
           "CLEARING_WEB_ENABLED": "false"}
    node = subprocess.Popen([sys.executable, "-m", "node.cli.main", "start", "--home", str(home), "--no-validator"],
                            env=env, stdout=subprocess.DEVNULL, stderr=(tmp_path / "v0-stopped.log").open("w"))
    try:
        stopped = [wait_for(lambda: scrape(metrics_at), 60, "the stopped network's node to serve metrics")]
        while len(stopped) < 4 or min(map(get_lag, stopped[-2:])) < 3:  # `for: 1m`: two samples in a row
            stopped.append(scrape_next_epoch(metrics_at, stopped[-1]))
        errors = [sum(v for k, v in s.items() if k[0] == "clearing_chain_rpc_errors_total") for s in (stopped[0], stopped[-1])]
        assert errors[1] > errors[0], "failed reads of the stopped chains were not counted"
    finally:
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=30) == 0
    scrapes = healthy + stopped
    label = 'instance="v0", job="clearing"'
    series = [(f"{name}{{{label}}}", " ".join(str(int(get_value(s, name))) for s in scrapes))
              for name in ("clearing_epoch", "clearing_current_epoch")]
    lag = get_lag(scrapes[-1])
    assert max(map(get_lag, healthy)) < 3
    last = f"{len(scrapes) - 1}m"
    cases = [
        {"alertname": "ClearingNoSignedEpoch", "eval_time": f"{len(healthy) - 1}m", "exp_alerts": []},
        {"alertname": "ClearingNoSignedEpoch", "eval_time": last, "exp_alerts": [{
            "exp_labels": {"severity": "critical", "instance": "v0", "job": "clearing"},
            "exp_annotations": {"summary": f"No signed epoch for {lag} periods on v0",
                                "runbook": NO_SIGNED_RUNBOOK}}]},
    ]
    run_rule_test(tool, tmp_path, series, cases)


def scrape_next_epoch(address: str, previous: Samples) -> Samples:
    """The first scrape whose wall-clock epoch is past `previous`'s."""
    def later() -> Samples | None:
        samples = scrape(address)
        return samples if get_value(samples, "clearing_current_epoch") > get_value(previous, "clearing_current_epoch") \
            else None

    return wait_for(later, 30, f"the next epoch at {address}")


def get_lag(samples: Samples) -> int:
    return int((get_value(samples, "clearing_current_epoch") or 0) - (get_value(samples, "clearing_epoch") or 0))
