"""docker/monitoring/: the alert rules and the Prometheus configuration pass `promtool check`, the
rules behave on synthetic series (`promtool test rules`), every metric the rules and the Grafana
dashboard use is documented in docs/operations.md, and the compose file runs Prometheus and Grafana
with that configuration (structure only: no Docker engine runs here)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "docker" / "monitoring"
RULES = MONITORING / "prometheus" / "alerts.yml"
PROMETHEUS_CONFIG = MONITORING / "prometheus" / "prometheus.yml"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "clearing.json"
DOCS = REPO / "docs" / "operations.md"
METRIC_RE = re.compile(r"\b((?:clearing|process)_[a-z_]+)")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
REQUIRED_ALERTS = {"ClearingNoSignedEpoch", "ClearingPublicationLag", "ClearingPublisherBalanceLow",
                   "ClearingDivergence", "ClearingEquivocation", "ClearingPeersLow", "ClearingAccountsWithoutLeaf"}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool missing (scripts/setup.sh installs Debian's prometheus package)")
    return found


def get_documented_metrics() -> set[str]:
    """Metric names in the first column of the metrics table of docs/operations.md section 8.1."""
    text = DOCS.read_text()
    section = text[text.index("### 8.1"):text.index("### 8.2")]
    names = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            names |= {n.split("{")[0] for n in re.findall(r"`([a-z_]+(?:\{[^}]*\})?)`", first)}
    return names


def get_used_metrics(expressions: list[str]) -> set[str]:
    names = set()
    for expr in expressions:
        for name in METRIC_RE.findall(expr):
            for suffix in HISTOGRAM_SUFFIXES:
                if name.endswith(suffix) and not name.endswith("_total"):
                    name = name[: -len(suffix)]
            names.add(name)
    return names


def get_rule_expressions() -> dict[str, str]:
    doc = yaml.safe_load(RULES.read_text())
    return {r["alert"]: r["expr"] for g in doc["groups"] for r in g["rules"]}


def get_dashboard_expressions() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in doc["panels"] if p["type"] != "row" for t in p["targets"]]


def test_rules_and_config_pass_promtool() -> None:
    tool = promtool()
    for args in (["check", "rules", str(RULES)], ["check", "config", str(PROMETHEUS_CONFIG)]):
        result = subprocess.run([tool, *args], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout + result.stderr


def test_required_alerts_exist_and_use_documented_metrics() -> None:
    exprs = get_rule_expressions()
    assert set(exprs) >= REQUIRED_ALERTS
    documented = get_documented_metrics()
    assert {"clearing_epoch", "clearing_publish_gas_total", "clearing_publisher_balance_wei"} <= documented
    missing = get_used_metrics(list(exprs.values())) - documented
    assert not missing, f"alert rules use undocumented metrics: {missing}"


def test_dashboard_panels_use_documented_metrics() -> None:
    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] and doc["title"] == "Clearing network"
    panels = [p for p in doc["panels"] if p["type"] != "row"]
    titles = " | ".join(p["title"] for p in panels).lower()
    for topic in ("signed / skipped", "latency", "signers", "peers", "publication lag", "gas", "rpc errors",
                  "reshares", "evidence"):
        assert topic in titles, f"no dashboard panel about {topic}"
    assert all(p["datasource"]["uid"] == "prometheus" and p["targets"] for p in panels)
    assert len({p["id"] for p in doc["panels"]}) == len(doc["panels"])
    missing = get_used_metrics(get_dashboard_expressions()) - get_documented_metrics()
    assert not missing, f"dashboard uses undocumented metrics: {missing}"


def test_alerts_behave_on_synthetic_series(tmp_path: Path) -> None:
    """Each required alert fires on the series that should raise it and stays quiet on a healthy node."""
    tool = promtool()
    node = 'instance="v0:9100", job="clearing"'
    series = [
        (f"clearing_current_epoch{{{node}}}", "10+1x10"),
        (f"clearing_epoch{{{node}}}", "9+1x4 14+0x6"),  # signs until minute 4, then stops
        (f'clearing_chain_last_published_epoch{{{node}, chain_id="31337"}}', "9+1x10"),
        (f'clearing_chain_last_published_epoch{{{node}, chain_id="31338"}}', "9+1x2 11+0x8"),
        (f'clearing_publisher_balance_wei{{{node}, chain_id="31337"}}', "1e18+0x10"),
        (f'clearing_publisher_balance_wei{{{node}, chain_id="31338"}}', "1e16+0x10"),
        (f'clearing_consensus_events_total{{{node}, event="equivocations"}}', "0+0x5 1+0x5"),
        (f'clearing_consensus_events_total{{{node}, event="divergence_alerts"}}', "0+0x10"),
        (f"clearing_peers{{{node}}}", "3+0x4 1+0x6"),
        (f"clearing_keyset_threshold{{{node}}}", "3+0x10"),
        (f'clearing_accounts_without_leaf{{{node}, reason="stale_quote"}}', "0+0x2 12+0x8"),
        (f'clearing_accounts_without_leaf{{{node}, reason="collateral"}}', "0+0x10"),
    ]
    quiet = {"eval_time": "2m", "exp_alerts": []}
    cases = [
        {"alertname": "ClearingNoSignedEpoch", **quiet},
        {"alertname": "ClearingNoSignedEpoch", "eval_time": "9m",
         "exp_alerts": [{"exp_labels": {"severity": "critical", "instance": "v0:9100", "job": "clearing"},
                         "exp_annotations": {"summary": "No signed epoch for 5 periods on v0:9100",
                                             "runbook": NO_SIGNED_RUNBOOK}}]},
        {"alertname": "ClearingPublicationLag", **quiet},
        {"alertname": "ClearingPublicationLag", "eval_time": "6m", "exp_alerts": [{"exp_labels": {
            "severity": "critical", "instance": "v0:9100", "job": "clearing", "chain_id": "31338"},
            "exp_annotations": {"summary": "Chain 31338 registry is 3 epochs behind (seen by v0:9100)"}}]},
        {"alertname": "ClearingPublisherBalanceLow", "eval_time": "6m", "exp_alerts": [{"exp_labels": {
            "severity": "warning", "instance": "v0:9100", "job": "clearing", "chain_id": "31338"},
            "exp_annotations": {"summary": "Publisher of v0:9100 has 10P wei left on chain 31338"}}]},
        {"alertname": "ClearingEquivocation", **quiet},
        {"alertname": "ClearingEquivocation", "eval_time": "7m", "exp_alerts": [{"exp_labels": {
            "severity": "critical", "instance": "v0:9100", "job": "clearing", "event": "equivocations"},
            "exp_annotations": {"summary": "v0:9100 saw an equivocation (clearingd status --evidence)"}}]},
        {"alertname": "ClearingDivergence", "eval_time": "9m", "exp_alerts": []},
        {"alertname": "ClearingPeersLow", **quiet},
        {"alertname": "ClearingPeersLow", "eval_time": "8m", "exp_alerts": [{"exp_labels": {
            "severity": "warning", "instance": "v0:9100", "job": "clearing"},
            "exp_annotations": {"summary": "v0:9100 has 1 peers, fewer than threshold - 1"}}]},
        {"alertname": "ClearingAccountsWithoutLeaf", "eval_time": "6m", "exp_alerts": []},  # not yet 5 minutes
        {"alertname": "ClearingAccountsWithoutLeaf", "eval_time": "8m", "exp_alerts": [{"exp_labels": {
            "severity": "warning", "instance": "v0:9100", "job": "clearing", "reason": "stale_quote"},
            "exp_annotations": {"summary": "12 accounts without a leaf on v0:9100 (stale_quote)"}}]},
    ]
    summary = run_rule_test(tool, tmp_path, series, cases)
    assert "SUCCESS" in summary


def test_not_signing_rpc_errors_node_down_and_divergence_fire(tmp_path: Path) -> None:
    """The alerts the test above leaves out, each firing on the node whose series should raise it and
    staying quiet before its `for:` (or its counter) is reached and on the node that should not raise it:
    v1 (a key-set member) stops signing while the network signs, its RPC errors to chain 31337 climb, it
    diverges once and then stops answering; v2 (not a member) stops signing too, and an anvil job is down."""
    tool = promtool()
    v1, v2 = 'instance="v1:9100", job="clearing"', 'instance="v2:9100", job="clearing"'
    series = [
        (f"clearing_epoch{{{v1}}}", "10+1x11"),
        (f"clearing_last_signed_epoch{{{v1}}}", "10+1x3 13+0x8"),  # stops after minute 3: lag t-3
        (f"clearing_keyset_member{{{v1}}}", "1+0x11"),
        (f"clearing_epoch{{{v2}}}", "10+1x11"),
        (f"clearing_last_signed_epoch{{{v2}}}", "10+1x3 13+0x8"),
        (f"clearing_keyset_member{{{v2}}}", "0+0x11"),  # not a member: its silence is expected
        (f'clearing_chain_rpc_errors_total{{{v1}, chain_id="31337"}}', "100+0x5 103+3x5"),  # +3 a minute from 6
        (f'clearing_chain_rpc_errors_total{{{v1}, chain_id="31338"}}', "2+0x11"),
        (f'clearing_consensus_events_total{{{v1}, event="divergence_alerts"}}', "0+0x5 1+0x5"),
        (f'clearing_consensus_events_total{{{v1}, event="adopted_differs_own"}}', "0+0x10"),
        (f'clearing_consensus_events_total{{{v1}, event="equivocations"}}', "0+0x10"),
        (f"up{{{v1}}}", "1+0x3 0+0x7"),  # down from minute 4
        (f"up{{{v2}}}", "1+0x10"),
        ('up{instance="anvil:8545", job="anvil"}', "0+0x10"),  # not a validator
    ]
    member = {"instance": "v1:9100", "job": "clearing"}
    cases = [
        {"alertname": "ClearingNotSigning", "eval_time": "8m", "exp_alerts": []},  # lag > 3 since 7: pending
        {"alertname": "ClearingNotSigning", "eval_time": "9m", "exp_alerts": [{
            "exp_labels": {"severity": "warning", **member},
            "exp_annotations": {"summary": "v1:9100 last signed 6 epochs before the latest state"}}]},
        {"alertname": "ClearingChainRpcErrors", "eval_time": "6m", "exp_alerts": []},  # 3 in 5 minutes
        {"alertname": "ClearingChainRpcErrors", "eval_time": "9m", "exp_alerts": [{
            "exp_labels": {"severity": "warning", "chain_id": "31337", **member},
            "exp_annotations": {"summary": "v1:9100: 12 failed requests to chain 31337 in 5 minutes"}}]},
        {"alertname": "ClearingNodeDown", "eval_time": "4m", "exp_alerts": []},  # down, for < 1m
        {"alertname": "ClearingNodeDown", "eval_time": "6m", "exp_alerts": [{
            "exp_labels": {"severity": "critical", **member},
            "exp_annotations": {"summary": "v1:9100 does not answer /metrics"}}]},
        {"alertname": "ClearingDivergence", "eval_time": "5m", "exp_alerts": []},
        {"alertname": "ClearingDivergence", "eval_time": "8m", "exp_alerts": [{
            "exp_labels": {"severity": "critical", "event": "divergence_alerts", **member},
            "exp_annotations": {"summary": "v1:9100: divergence_alerts (inputs differ from the network's)"}}]},
        {"alertname": "ClearingEquivocation", "eval_time": "8m", "exp_alerts": []},
    ]
    summary = run_rule_test(tool, tmp_path, series, cases)
    assert "SUCCESS" in summary


def run_rule_test(tool: str, folder: Path, series: list[tuple[str, str]], cases: list[dict]) -> str:
    """`promtool test rules` over RULES (it compares labels and rendered annotations)."""
    test = {"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": [{"series": s, "values": v} for s, v in series],
        "alert_rule_test": cases}]}
    path = folder / "rules_test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    result = subprocess.run([tool, "test", "rules", str(path)], capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "SUCCESS" in output, output
    return output


NO_SIGNED_RUNBOOK = ("docs/operations.md section 8: check peers, chains (clearing_chain_rpc_errors_total) and the "
                     "logs of every validator")


def test_compose_runs_prometheus_and_grafana_with_this_configuration() -> None:
    compose = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())
    services = compose["services"]
    prometheus, grafana = services["prometheus"], services["grafana"]
    for name, svc in (("prometheus", prometheus), ("grafana", grafana)):
        assert all(p.startswith("127.0.0.1:") for p in svc["ports"]), f"{name} publishes beyond loopback"
        assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"] and "privileged" not in svc
        assert re.fullmatch(r"[a-z/]+:v?\d+\.\d+\.\d+", svc["image"]), f"{name}: pin an image version"
    mounts = dict(v.split(":")[:2] for v in prometheus["volumes"] if v.startswith("./"))
    assert (REPO / "docker" / mounts["./monitoring/prometheus"].lstrip("/")).name == "prometheus"
    config_path = next(a.split("=", 1)[1] for a in prometheus["command"] if a.startswith("--config.file="))
    assert config_path == mounts["./monitoring/prometheus"] + "/prometheus.yml"
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert config["rule_files"] == ["alerts.yml"] and (PROMETHEUS_CONFIG.parent / "alerts.yml").is_file()
    targets = config["scrape_configs"][0]["static_configs"][0]["targets"]
    validators = [n for n in services if re.fullmatch(r"v\d", n)]
    assert sorted(targets) == sorted(f"{v}:9100" for v in validators)
    assert all("9100" in " ".join(services[v]["ports"]) for v in validators)  # the port their metrics use
    gmounts = dict(v.split(":")[:2] for v in grafana["volumes"] if v.startswith("./"))
    provider = yaml.safe_load((MONITORING / "grafana/provisioning/dashboards/clearing.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == gmounts["./monitoring/grafana/dashboards"]
    assert gmounts["./monitoring/grafana/provisioning"] == "/etc/grafana/provisioning"
    datasource = yaml.safe_load((MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text())
    source = datasource["datasources"][0]
    assert source["uid"] == "prometheus" and source["url"] == "http://prometheus:9090"
    assert "9090" in prometheus["ports"][0] and "prometheus" in grafana["depends_on"]
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert grafana["environment"]["GF_AUTH_DISABLE_LOGIN_FORM"] == "true"
    v0 = services["v0"]["environment"]
    assert v0["CLEARING_WEB_ENABLED"] == "true" and any(p.endswith(":9180") for p in services["v0"]["ports"])
