"""Local EVM chains: real `anvil` processes from the pinned npm package `@foundry-rs/anvil`.

Each chain listens on loopback only, with its own chain id and `--hardfork prague` (EIP-2537
precompiles) unless told another hardfork. Processes are owned by the caller: `AnvilChain.stop()` (or the context manager)
terminates them. Nothing is persisted; state lives in the anvil process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ANVIL_BIN_ENV = "CLEARING_ANVIL_BIN"
START_TIMEOUT_S = 15.0
# anvil's default dev accounts are derived from this public test mnemonic; never use them elsewhere.
DEV_MNEMONIC = "test test test test test test test test test test test junk"


class AnvilError(RuntimeError):
    """An anvil process could not be found, started or reached."""


def get_anvil_binary() -> Path:
    """Path of the pinned anvil binary (env `CLEARING_ANVIL_BIN` overrides)."""
    override = os.environ.get(ANVIL_BIN_ENV)
    path = Path(override) if override else REPO_ROOT / "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
    if not path.is_file():
        raise AnvilError(f"anvil binary not found at {path}; run `make setup`")
    return path


def get_free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rpc_call(url: str, method: str, params: list | None = None, timeout: float = 5.0) -> object:
    """One JSON-RPC call over HTTP; raises AnvilError on a JSON-RPC error."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        reply = json.loads(resp.read())
    if "error" in reply:
        raise AnvilError(f"{method}: {reply['error']}")
    return reply["result"]


@dataclass
class AnvilChain:
    """One running anvil node on 127.0.0.1."""

    chain_id: int
    port: int
    block_time: float | None = None
    extra_args: tuple[str, ...] = ()
    hardfork: str = "prague"  # an older one (e.g. "cancun") lacks the EIP-2537 precompiles
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> AnvilChain:
        args = [str(get_anvil_binary()), "--host", "127.0.0.1", "--port", str(self.port),
                "--chain-id", str(self.chain_id), "--hardfork", self.hardfork, "--silent",
                "--mnemonic", DEV_MNEMONIC, "--accounts", "20", "--balance", "1000000"]
        if self.block_time:
            args += ["--block-time", str(self.block_time)]
        args += list(self.extra_args)
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise AnvilError(f"anvil exited with {self.process.returncode}: {err.strip()[:500]}")
            try:
                if int(str(rpc_call(self.rpc_url, "eth_chainId", timeout=1.0)), 16) == self.chain_id:
                    return self
            except (OSError, AnvilError):
                time.sleep(0.05)
        self.stop()
        raise AnvilError(f"anvil on port {self.port} did not answer within {START_TIMEOUT_S}s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    def __enter__(self) -> AnvilChain:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_chains(chain_ids: list[int], block_time: float | None = None) -> list[AnvilChain]:
    """Start one anvil per chain id on free loopback ports; stops all of them if one fails."""
    chains: list[AnvilChain] = []
    try:
        for cid in chain_ids:
            chains.append(AnvilChain(chain_id=cid, port=get_free_port(), block_time=block_time).start())
    except Exception:
        for c in chains:
            c.stop()
        raise
    return chains
