"""docker/: the compose file and Dockerfile are checked structurally (no Docker engine runs on this
machine, so the image is never built here), and the devnet setup script the compose file runs is
executed for real: its homes load, decrypt and produce a consistent validator set, and (slow) four
validators started from them sign threshold states together over libp2p on loopback."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
import yaml

from node.config import build_validator_config, load_config, load_validator_secrets
from node.crypto import threshold
from node.pb.clearing.api.v1 import api_pb2, api_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
VALIDATORS = ("v0", "v1", "v2", "v3")
MONITORING = ("prometheus", "grafana")  # upstream images, checked in test_monitoring.py


def load_compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_compose_structure() -> None:
    doc = load_compose()
    services = doc["services"]
    assert set(services) == {"chain-a", "chain-b", "setup", *VALIDATORS, *MONITORING}
    subnet = ipaddress.ip_network(doc["networks"]["devnet"]["ipam"]["config"][0]["subnet"])
    ips = {name: ipaddress.ip_address(s["networks"]["devnet"]["ipv4_address"]) for name, s in services.items()}
    assert len(set(ips.values())) == len(ips) and all(ip in subnet for ip in ips.values())
    setup_args = services["setup"]["command"]
    prefix = setup_args[setup_args.index("--ip-prefix") + 1]
    chains = setup_args[setup_args.index("--chains") + 1]
    for i, name in enumerate(VALIDATORS):
        svc = services[name]
        assert svc["command"] == ["start", "--home", f"/devnet/{name}"]
        assert str(ips[name]) == f"{prefix}{i}"  # the bootstrap addresses the setup writes
        assert svc["depends_on"]["setup"] == {"condition": "service_completed_successfully"}
        assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"]
        assert "devnet:/devnet" in svc["volumes"]
    for name, svc in services.items():
        if name in MONITORING:
            continue
        assert svc["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
        assert (DOCKER / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file()
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
        assert "privileged" not in svc and svc.get("user") in (None, "10001:10001")
    chain_ids = {s["entrypoint"][s["entrypoint"].index("--chain-id") + 1] for n, s in services.items()
                 if n.startswith("chain-")}
    assert chain_ids == {"31337", "31338"}
    for n in ("chain-a", "chain-b"):
        assert "--hardfork" in services[n]["entrypoint"] and f"{ips[n]}:8545" in chains
    host_ports = [p.split(":")[1] for s in services.values() for p in s.get("ports", [])]
    assert len(host_ports) == len(set(host_ports))


def test_dockerfile_structure() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.MULTILINE)
    names = [name for _, name in stages]
    assert len(stages) >= 3 and names[-1] == "runtime"
    for source in re.findall(r"COPY --from=(\S+)", text):
        assert source in names[:-1]
    final = text[text.rindex("FROM "):]
    user = re.findall(r"^USER\s+(\S+)", final, re.MULTILINE)
    assert user and user[-1].split(":")[0] not in ("0", "root")
    assert "HEALTHCHECK" in final and 'ENTRYPOINT ["clearingd"]' in final
    assert not re.search(r"^ADD\s+https?://", text, re.MULTILINE)
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.MULTILINE):
        for src in line.split()[:-1]:
            assert (REPO / src).exists(), f"COPY source {src} missing"


def run_setup(out: Path, *extra: str) -> dict:
    result = subprocess.run([sys.executable, str(DOCKER / "devnet_setup.py"), "--out", str(out), "--scrypt-n", "1024",
                             *extra], cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_devnet_setup_homes_form_one_validator_set(tmp_path: Path) -> None:
    summary = run_setup(tmp_path / "devnet")
    assert [v["home"] for v in summary["validators"]] == [str(tmp_path / "devnet" / n) for n in VALIDATORS]
    assert oct((tmp_path / "devnet" / "passphrase").stat().st_mode & 0o777) == "0o600"
    configs = []
    for i, name in enumerate(VALIDATORS):
        config = load_config(tmp_path / "devnet" / name, env={})
        vc = build_validator_config(config, load_validator_secrets(config))
        configs.append(vc)
        assert vc.index == i and vc.validator_set.n == 4 and vc.validator_set.threshold == 3
        assert len(vc.bootstrap) == 3 and all(f"/ip4/172.28.0.1{i}/" not in b for b in vc.bootstrap)
        assert [c.chain_id for c in vc.chains] == [31337, 31338]
    assert len({c.validator_set for c in configs}) == 1  # identical set, group key and shares everywhere
    vs = configs[0].validator_set
    partials = {c.index + 1: threshold.partial_sign(c.share_sk, b"devnet") for c in configs[:3]}
    assert threshold.group_verify(vs.group_key, b"devnet", threshold.combine(partials, 3))
    again = subprocess.run([sys.executable, str(DOCKER / "devnet_setup.py"), "--out", str(tmp_path / "devnet")],
                           cwd=REPO, capture_output=True, text=True, timeout=120,
                           env={**os.environ, "PYTHONPATH": str(REPO)})
    assert again.returncode == 0 and "already set up" in again.stdout


def wait_for_metric(url: str, line: str, timeout: float) -> bool:
    """Poll `url` until its text contains `line`; False after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if line in resp.read().decode():
                    return True
        except OSError:
            pass
        time.sleep(0.25)
    return False


@pytest.mark.slow
def test_devnet_homes_sign_threshold_states_on_loopback(tmp_path: Path) -> None:
    out = tmp_path / "devnet"
    run_setup(out, "--inputs", "fake", "--epoch-period", "2", "--genesis-delay", "0", "--ip-prefix", "127.0.0.1",
              "--chains", "31337=http://127.0.0.1:1")
    procs = []
    try:
        for i, name in enumerate(VALIDATORS):
            env = {**os.environ, "CLEARING_P2P_LISTEN": f"/ip4/127.0.0.1{i}/tcp/4001",
                   "CLEARING_API_LISTEN": f"127.0.0.1{i}:50051", "CLEARING_METRICS_LISTEN": f"127.0.0.1{i}:9100"}
            procs.append(subprocess.Popen([sys.executable, "-m", "node.cli.main", "start", "--home", str(out / name)],
                                          cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                          stderr=(tmp_path / f"{name}.log").open("w")))
        deadline, state = time.monotonic() + 150, None
        while time.monotonic() < deadline:
            try:
                with grpc.insecure_channel("127.0.0.13:50051") as channel:
                    state = api_pb2_grpc.MarginServiceStub(channel).GetSignedState(
                        api_pb2.GetSignedStateRequest(), timeout=2).state
                if len(state.signers) >= 3:
                    break
            except grpc.RpcError:
                pass
            time.sleep(1)
        assert state is not None and len(state.signers) >= 3, "no threshold-signed state within the deadline"
        group = load_config(out / "v0", env={})
        secrets = load_validator_secrets(group)
        assert threshold.group_verify(secrets.keyset.group_public_key, state.digest, state.signature)
        # /metrics reads the peers from status.json, rewritten every second: it trails, so poll for it
        assert wait_for_metric("http://127.0.0.10:9100/metrics", "clearing_peers 3.0", 30), \
            "v0 never reported 3 peers on /metrics"
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
