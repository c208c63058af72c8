"""Test harness: a cluster of validator OS processes (`python -m node.validator`) on loopback.

Keys come from the trusted dealer (`deal_trusted`, tests only) and deterministic operator/p2p seeds;
each node gets its own data dir under the test's tmp_path, a config file and a log file. Processes
are stopped by the harness (SIGTERM, then SIGKILL) and never outlive the test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_hash.auto import keccak

from bridges.anvil import get_free_port
from node.crypto.threshold import compute_default_threshold, deal_trusted
from node.p2p.envelope import get_operator_address
from node.p2p.host import get_peer_id
from node.store import SQLiteStore
from node.validator import STATUS_FILE, STORE_FILE

REPO_ROOT = Path(__file__).resolve().parents[2]
NETWORK_ID = 7
KEYSET_ID = 1


def operator_key(i: int) -> bytes:
    return keccak(b"test-operator" + i.to_bytes(4, "big"))


def p2p_seed(i: int) -> bytes:
    return keccak(b"test-p2p" + i.to_bytes(4, "big"))


def build_configs(root: Path, n: int, chains: list[dict[str, Any]], period_s: float, *,
                  threshold: int | None = None, inputs: str = "chain_pins",
                  genesis_time: float | None = None, **options: Any) -> list[dict[str, Any]]:
    t = threshold or compute_default_threshold(n)
    group_key, shares, public_shares = deal_trusted(n, t, b"cluster-seed")
    ports = [get_free_port() for _ in range(n)]
    addrs = [f"/ip4/127.0.0.1/tcp/{ports[i]}/p2p/{get_peer_id(p2p_seed(i))}" for i in range(n)]
    vset = {"network_id": NETWORK_ID, "keyset_id": KEYSET_ID, "threshold": t, "group_key": group_key.hex(),
            "operators": [get_operator_address(operator_key(i)).hex() for i in range(n)],
            "public_shares": [public_shares[i + 1].hex() for i in range(n)]}
    genesis = genesis_time if genesis_time is not None else float(int(time.time()) - 10 * period_s)
    configs = []
    for i in range(n):
        configs.append({
            "index": i, "validator_set": vset,
            "secrets": {"share": hex(shares[i + 1]), "operator_key": operator_key(i).hex(),
                        "p2p_seed": p2p_seed(i).hex()},
            "listen": f"/ip4/127.0.0.1/tcp/{ports[i]}", "bootstrap": [a for j, a in enumerate(addrs) if j != i],
            "chains": chains, "genesis_time": genesis, "epoch_period_s": period_s,
            "data_dir": str(root / f"node{i}"), "inputs": inputs, **options})
    return configs


@dataclass
class NodeProcess:
    config: dict[str, Any]
    root: Path
    module: str = "node.validator"
    process: subprocess.Popen | None = field(default=None, repr=False)
    starts: int = 0

    @property
    def index(self) -> int:
        return int(self.config["index"])

    @property
    def data_dir(self) -> Path:
        return Path(self.config["data_dir"])

    def start(self) -> NodeProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / STATUS_FILE).unlink(missing_ok=True)  # a stale snapshot must not pass for a live one
        path = self.root / f"node{self.index}.json"
        path.write_text(json.dumps(self.config))
        self.starts += 1
        log = open(self.root / f"node{self.index}.{self.starts}.log", "wb")  # noqa: SIM115 - owned by the child
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        self.process = subprocess.Popen([sys.executable, "-m", self.module, "--config", str(path)],
                                        stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env)
        log.close()
        return self

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        code = self.process.returncode
        self.process = None
        return code

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def read_status(self) -> dict[str, Any]:
        try:
            return json.loads((self.data_dir / STATUS_FILE).read_text())
        except (OSError, ValueError):
            return {}

    def open_store(self) -> SQLiteStore:
        return SQLiteStore(self.data_dir / STORE_FILE)

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.root.glob(f"node{self.index}.*.log")))


def start_cluster(configs: list[dict[str, Any]], root: Path, modules: dict[int, str] | None = None) -> list[NodeProcess]:
    modules = modules or {}
    return [NodeProcess(c, root, modules.get(int(c["index"]), "node.validator")).start() for c in configs]


def stop_cluster(nodes: list[NodeProcess]) -> None:
    for node in nodes:
        node.stop()


def wait_for(predicate: Any, timeout: float, interval: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def get_current_epoch(config: dict[str, Any]) -> int:
    return int((time.time() - float(config["genesis_time"])) // float(config["epoch_period_s"]))


def get_states(node: NodeProcess, from_epoch: int = 0) -> dict[int, tuple[bytes, bytes]]:
    """epoch -> (digest, signature) of every signed state in the node's store."""
    store = node.open_store()
    try:
        return {s.epoch: (s.digest, s.signature) for s in store.list_signed_states(from_epoch, 10_000)}
    finally:
        store.close()
