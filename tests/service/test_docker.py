"""docker/: the compose file and Dockerfile are checked structurally (no Docker engine runs on this
machine, so the image is never built here), and the setup path the compose file runs
(`docker/devnet_setup.py`: four `node` roles, each with its own home, and the one-shot `genesis`) is
executed for real on loopback (slow): the validators make their keys, meet for the key ceremony over
libp2p, the genesis role deploys with `clearingd deploy --demo` and seeds the demo book, the validators
start from the deployed network file, and a validator serves a demo account's margin over gRPC whose
proof verifies against the registry."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
import yaml

from bridges.anvil import start_chains

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
VALIDATORS = ("v0", "v1", "v2", "v3")
MONITORING = ("prometheus", "grafana")  # upstream images, checked in test_monitoring.py
HOME = "/home/clearing/.clearingd"


def load_compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def get_arg(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_compose_structure() -> None:
    doc = load_compose()
    services = doc["services"]
    assert set(services) == {"chain-a", "chain-b", "genesis", *VALIDATORS, *MONITORING}
    subnet = ipaddress.ip_network(doc["networks"]["devnet"]["ipam"]["config"][0]["subnet"])
    ips = {name: ipaddress.ip_address(s["networks"]["devnet"]["ipv4_address"]) for name, s in services.items()}
    assert len(set(ips.values())) == len(ips) and all(ip in subnet for ip in ips.values())
    genesis = services["genesis"]
    chains = get_arg(genesis["command"], "--chains")
    assert genesis["command"][0] == "genesis" and genesis["restart"] == "no"
    assert genesis["volumes"] == ["network:/network"]  # public files only: no validator home
    assert int(get_arg(genesis["command"], "--validators")) == len(VALIDATORS)
    for i, name in enumerate(VALIDATORS):
        svc = services[name]
        argv = svc["command"]
        assert svc["entrypoint"] == ["python", "/opt/clearing/devnet_setup.py"] and argv[0] == "node"
        assert get_arg(argv, "--index") == str(i) and get_arg(argv, "--ip") == str(ips[name])
        assert get_arg(argv, "--chains") == chains and get_arg(argv, "--home") == HOME
        assert sorted(svc["volumes"]) == sorted(["network:/network", f"{name}:{HOME}"])  # its own home volume
        assert "genesis" not in svc["depends_on"]  # the ceremony runs before genesis ends: they meet by files
        assert svc["environment"]["CLEARING_API_LISTEN"] == "0.0.0.0:50051"
        assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"]
    homes = [v.split(":")[0] for n in VALIDATORS for v in services[n]["volumes"] if v.endswith(HOME)]
    assert len(set(homes)) == len(VALIDATORS) and set(homes) <= set(doc["volumes"])
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
    assert f"CLEARING_HOME={HOME}" in final and "mkdir -p /network " + HOME in final  # volume mount points
    assert not re.search(r"^ADD\s+https?://", text, re.MULTILINE)
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.MULTILINE):
        for src in line.split()[:-1]:
            assert (REPO / src).exists(), f"COPY source {src} missing"


def setup_role(*args: str, env: dict[str, str] | None = None, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(DOCKER / "devnet_setup.py"), *args], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, stdout=subprocess.PIPE,
                            stderr=log.open("w"), text=True)


@pytest.mark.slow
def test_compose_setup_path_serves_a_margin_on_loopback(tmp_path: Path) -> None:
    """The compose file's roles as processes: four `node`s (validator i at 127.0.0.1<i>, its own home) and
    `genesis`; a validator then serves the hedged demo account's margin, its proof verified on chain."""
    from bridges.anvil import get_free_port
    from node.api.client import get_margin, open_api_channel
    from node.devnet.runner import decode_leaf
    from node.devnet.seed import get_demo_accounts

    chains = start_chains([31337, 31338])
    shared = tmp_path / "network"
    spec = ",".join(f"{c.chain_id}={c.rpc_url}" for c in chains)
    apis = [f"127.0.0.1{i}:{get_free_port()}" for i in range(len(VALIDATORS))]
    procs: list[subprocess.Popen] = []
    try:
        for i, name in enumerate(VALIDATORS):
            procs.append(setup_role(
                "node", "--index", str(i), "--shared", str(shared), "--home", str(tmp_path / name), "--ip",
                f"127.0.0.1{i}", "--p2p-port", str(get_free_port()), "--chains", spec, "--scrypt-n", "1024",
                "--phase-timeout", "5", log=tmp_path / f"{name}.log",
                env={"CLEARING_API_LISTEN": apis[i], "CLEARING_METRICS_LISTEN": f"127.0.0.1{i}:{get_free_port()}"}))
        genesis = setup_role("genesis", "--shared", str(shared), "--chains", spec, "--epoch-period", "3",
                             "--genesis-delay", "0", log=tmp_path / "genesis.log")
        out, _ = genesis.communicate(timeout=300)
        assert genesis.returncode == 0, (tmp_path / "genesis.log").read_text()[-3000:]
        summary = json.loads(out.strip().splitlines()[-1])
        hedged = get_demo_accounts()["hedged"]
        report = None
        deadline = time.monotonic() + 180
        while report is None and time.monotonic() < deadline:
            assert all(p.poll() is None for p in procs), "a validator exited"
            channel = open_api_channel(apis[0])
            try:
                report = get_margin(channel, hedged).report
            except grpc.RpcError:
                time.sleep(1)
            finally:
                channel.close()
        assert report is not None, "no margin served within the deadline"
        assert report.margin.initial_margin_micro_usd > 0
        from web3 import Web3

        from bridges.artifacts import get_abi

        registry = Web3(Web3.HTTPProvider(chains[0].rpc_url)).eth.contract(
            address=summary["chains"]["31337"], abi=get_abi("MarginStateRegistry"))
        epoch = report.state.epoch
        leaf, proof = decode_leaf(report.leaf), [bytes(p) for p in report.proof]
        deadline = time.monotonic() + 60
        while not registry.functions.isStateRoot(epoch, bytes(report.state.root)).call():
            assert time.monotonic() < deadline, f"epoch {epoch} never published on chain 31337"
            time.sleep(1)
        assert registry.functions.verifyLeaf(epoch, leaf, proof).call()
        for name in VALIDATORS:  # each home holds only its own secrets
            keys = sorted(p.name for p in (tmp_path / name / "keys").iterdir())
            assert keys == ["operator.json", "p2p.json", "share.json"]
        assert not any(shared.rglob("share*.json")) and not any(shared.rglob("operator.json"))
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        for c in chains:
            c.stop()
