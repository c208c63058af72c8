"""Devnet node homes, made the way operators make theirs: one home per validator created by
`clearingd init` (encrypted keystores, mode 0600), its entry from `clearingd network operator`, the
network file from `clearingd network new`, each home configured by `clearingd init --network-file`,
and the genesis key ceremony run by `clearingd dkg` in one OS process per validator, which meet over
loopback libp2p (no process sees another's share). After the deployment (`clearingd deploy`, by the
caller), `configure_homes` reruns `init --network-file` with the deployed file and the chains' RPC
URLs, then sets the devnet's local options (API, metrics ports). A JOINING home (`join_home`) is made
by `init --network-file` on a fresh home: its operator is not in the file, so it is configured with the
key set's public data; members add its address to their bootstrap peers (`add_bootstrap`).

Used by `clearingd devnet` and by the compose file's setup (`docker/devnet_setup.py`).
Persists: `<out>/passphrase` (mode 0600, random), `<out>/network.json`, `<out>/v<i>/` per validator,
`<out>/logs/dkg-v<i>.log`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEVNET_SCRYPT_N = 1 << 12  # keystores of a throw-away devnet: cheap to open
DKG_PHASE_TIMEOUT_S = 5.0
DKG_TIMEOUT_S = 120.0


class DevnetError(RuntimeError):
    """The devnet could not be set up (ceremony failure, init failure, bad option)."""


@dataclass(frozen=True)
class NodeHome:
    index: int
    path: Path
    address: str  # operator EVM address
    peer_id: str
    api_address: str = ""
    metrics_address: str = ""
    p2p: str = ""  # multiaddr it listens on


def write_passphrase(out: Path) -> Path:
    path = out / "passphrase"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(24) + "\n")
    return path


def clearingd(argv: Sequence[str], what: str) -> dict[str, Any]:
    """Run one `clearingd` command in this process; its JSON output (DevnetError with its stderr on failure)."""
    from node.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    if code != 0:
        raise DevnetError(f"{what} failed: {err.getvalue().strip()[-800:]}")
    return json.loads(out.getvalue())


def init_home(home: Path, index: int, pass_file: Path, network_id: int, share_file: Path | None = None,
              scrypt_n: int = DEVNET_SCRYPT_N) -> NodeHome:
    """`clearingd init` of one validator home (with its threshold share when `share_file` is given)."""
    argv = ["init", "--home", str(home), "--index", str(index), "--passphrase-file", str(pass_file),
            "--scrypt-n", str(scrypt_n), "--network-id", str(network_id), "--json", "--force"]
    if share_file is not None:
        argv += ["--share-keystore", str(share_file)]
    doc = clearingd(argv, f"clearingd init of validator {index}")
    return NodeHome(index, home, doc["operator_address"], doc["peer_id"])


@dataclass(frozen=True)
class NetworkPlan:
    """What `network new` is given: chains as (chain id, confirmations, lag seconds) and the quote-age bound
    (a day: a devnet whose marks nobody republishes keeps its accounts for a day, then fails them)."""

    network_id: int
    genesis_time: int
    epoch_period_s: int
    threshold: int
    chains: tuple[tuple[int, int, int], ...]
    max_quote_age_s: int = 86_400


def create_network(out: Path, plan: NetworkPlan, p2p: Sequence[tuple[str, int]], pass_file: Path,
                   say: Callable[[str], None] = lambda _m: None, scrypt_n: int = DEVNET_SCRYPT_N,
                   listen_ip: str = "") -> tuple[list[NodeHome], Path]:
    """Genesis homes `out/v<i>` (one per `p2p` address), the network file `out/network.json`, and the key
    ceremony between the validators' processes; returns the homes and the network file with the key set."""
    homes = []
    for i, (ip, port) in enumerate(p2p):
        home = init_home(out / f"v{i}", i, pass_file, plan.network_id, scrypt_n=scrypt_n)
        homes.append(NodeHome(i, home.path, home.address, home.peer_id, p2p=f"/ip4/{ip}/tcp/{port}"))
    entries = []
    for h in homes:
        entry = out / f"operator-v{h.index}.json"
        doc = clearingd(["network", "operator", "--home", str(h.path), "--multiaddr", h.p2p, "--passphrase-file",
                         str(pass_file)], f"clearingd network operator of validator {h.index}")
        entry.write_text(json.dumps(doc))
        entries += ["--operator", str(entry)]
    network_file = out / "network.json"
    clearingd(["network", "new", "--out", str(network_file), "--force", "--network-id", str(plan.network_id),
               "--genesis-time", str(plan.genesis_time), "--epoch-period", str(plan.epoch_period_s),
               "--threshold", str(plan.threshold), "--max-quote-age", str(plan.max_quote_age_s),
               *[a for c in plan.chains for a in ("--chain", ":".join(map(str, c)))],
               *entries, "--json"], "clearingd network new")
    for h in homes:
        argv = ["init", "--home", str(h.path), "--network-file", str(network_file), "--json"]
        clearingd(argv + (["--p2p-listen", f"/ip4/{listen_ip}/tcp/{h.p2p.rsplit('/', 1)[1]}"] if listen_ip else []),
                  f"clearingd init --network-file of validator {h.index}")
    reports = run_ceremony(homes, out / "logs")
    say(f"dkg: {len(homes)} validators in {len(homes)} processes, threshold {plan.threshold}, group key "
        f"{reports[0]['group_key'][:18]}..., network hash {reports[0]['network_hash'][:18]}...")
    with contextlib.suppress(FileNotFoundError):
        network_file.unlink()
    (out / "network.json").write_bytes((homes[0].path / "network.json").read_bytes())
    return homes, network_file


def run_ceremony(homes: Sequence[NodeHome], log_dir: Path) -> list[dict[str, Any]]:
    """`clearingd dkg` in one process per home, concurrently; their reports (all must agree)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    for h in homes:
        log = (log_dir / f"dkg-v{h.index}.log").open("wb")
        procs.append(subprocess.Popen([sys.executable, "-m", "node.cli.main", "dkg", "--home", str(h.path), "--json",
                                       "--phase-timeout", str(DKG_PHASE_TIMEOUT_S), "--wait", str(DKG_TIMEOUT_S)],
                                      stdout=subprocess.PIPE, stderr=log))
    try:
        outputs = [p.communicate(timeout=DKG_TIMEOUT_S + 4 * DKG_PHASE_TIMEOUT_S)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    reports = []
    for h, p, raw in zip(homes, procs, outputs, strict=True):
        try:
            report = json.loads(raw)
        except ValueError:
            report = {"status": "failed", "failure": f"no report (exit {p.returncode})"}
        if p.returncode != 0 or report.get("status") != "ok":
            raise DevnetError(f"dkg of validator {h.index} failed: {report.get('failure')}; see "
                              f"{log_dir / f'dkg-v{h.index}.log'}")
        reports.append(report)
    if len({r["network_hash"] for r in reports}) != 1:
        raise DevnetError(f"dkg: the validators derived different network files: {[r['network_hash'] for r in reports]}")
    return reports


def write_deployer_keystore(out: Path, key: bytes, pass_file: Path) -> Path:
    """A devnet deployer key (anvil's dev key) as a keystore `clearingd deploy --key-file` reads."""
    from node.cli.init import OPERATOR_KIND, get_operator_address
    from node.crypto.keystore import Secret, load_passphrase, write_keystore

    path = out / "deployer.json"
    write_keystore(path, Secret(key), load_passphrase(pass_file), {"kind": OPERATOR_KIND,
                                                                   "address": get_operator_address(key)},
                   scrypt_n=DEVNET_SCRYPT_N)
    return path


def deploy_chains(network_file: Path, rpc_urls: Sequence[str], key_file: Path, pass_file: Path,
                  demo: bool = True) -> list[dict[str, Any]]:
    """`clearingd deploy` on every chain (the first is the home chain) with 0 confirmations (the devnet's
    chains mine on demand while it deploys); the network file is updated in place."""
    docs = []
    for i, url in enumerate(rpc_urls):
        argv = ["deploy", "--network-file", str(network_file), "--rpc-url", url, "--key-file", str(key_file),
                "--passphrase-file", str(pass_file), "--confirmations", "0", "--json"]
        docs.append(clearingd(argv + (["--home-chain"] if i == 0 else []) + (["--demo"] if demo else []),
                              f"clearingd deploy to {url}"))
    return docs


def configure_homes(homes: Sequence[NodeHome], network_file: Path, rpc_urls: dict[int, str],
                    api_listen: Sequence[str], metrics_listen: Sequence[str], listen_ip: str = "") -> list[NodeHome]:
    """`init --network-file` with the deployed file and RPC URLs, then the local API and metrics addresses.
    A joining home listens on its own `p2p` address; with `listen_ip` every home listens on that IP."""
    from node.network_file import load_network_file

    net = load_network_file(network_file)
    rpc = [a for cid, url in rpc_urls.items() for a in ("--rpc-url", f"{cid}={url}")]
    done = []
    for h, api, metrics in zip(homes, api_listen, metrics_listen, strict=True):
        argv = ["init", "--home", str(h.path), "--network-file", str(network_file), *rpc, "--json"]
        if listen_ip:
            argv += ["--p2p-listen", f"/ip4/{listen_ip}/tcp/{h.p2p.rsplit('/', 1)[1]}"]
        elif net.find_operator(h.address) is None:
            argv += ["--p2p-listen", h.p2p]
        clearingd(argv, f"clearingd init --network-file of validator {h.index}")
        set_local_options(h.path, {"api": {"listen": api}, "metrics": {"listen": metrics}})
        done.append(NodeHome(h.index, h.path, h.address, h.peer_id, api, metrics, h.p2p))
    return done


def join_home(home: Path, index: int, pass_file: Path, network_id: int, p2p: tuple[str, int]) -> NodeHome:
    """A home whose operator is outside the genesis set (created like any other; `configure_homes` then
    configures it as joining from the network file)."""
    made = init_home(home, index, pass_file, network_id)
    return NodeHome(index, home, made.address, made.peer_id, p2p=f"/ip4/{p2p[0]}/tcp/{p2p[1]}")


def add_bootstrap(homes: Sequence[NodeHome], peers: Sequence[NodeHome]) -> None:
    """Add `peers` (joining validators) to the bootstrap peers of `homes` (as their operators would)."""
    from node.config import load_config

    for h in homes:
        current = list(load_config(h.path, env={}).get("p2p", "bootstrap"))
        extra = [f"{p.p2p}/p2p/{p.peer_id}" for p in peers if p.path != h.path]
        set_local_options(h.path, {"p2p": {"bootstrap": current + [b for b in extra if b not in current]}})


def set_local_options(home: Path, updates: dict[str, dict[str, Any]]) -> None:
    """Set options of a home's config.toml (the operator's local settings), keeping everything else."""
    from node.cli.init import write_config
    from node.config import CONFIG_FILE, load_config

    config = load_config(home, env={})
    values = {s: dict(v) for s, v in config.values.items()}
    for section, table in updates.items():
        values[section].update(table)
    write_config(home / CONFIG_FILE, values, config.chains)
