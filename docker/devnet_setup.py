"""Devnet setup of the compose file, run the way separate operators run theirs (also usable on a laptop).

Two roles meet through a shared folder of PUBLIC files (`--shared`, the compose volume `network`):
- `node --index I --home H --ip IP --chains ...` (each validator container, its home in its own
  volume): `clearingd init` (keys; a random passphrase file in H, mode 0600), publishes its entry
  (`clearingd network operator`) as `operators/vI.json`, waits for `network.json`, configures its home
  from it, runs its part of the key ceremony (`clearingd dkg`, meeting the other validators over
  libp2p) and publishes the resulting network file as `ceremony/vI.json`, waits for
  `network-final.json`, configures its home from it with the chains' RPC URLs, then becomes
  `clearingd start`. No process ever holds another validator's share or passphrase.
- `genesis --validators N --threshold T --chains ...` (one-shot): waits for the N entries, writes
  `network.json` (`clearingd network new`, genesis `--genesis-delay` s ahead), waits for the N
  ceremony results (all must carry one network hash), deploys to every chain (`clearingd deploy
  --demo`, anvil's dev key 0; the first chain is the home chain), funds the operators, seeds the demo
  book (so the nodes serve margins), switches the chains to 1 s blocks and publishes
  `network-final.json`.
Every step is skipped when its output exists, so a restarted container resumes. DEVNET ONLY: anvil's
public dev key deploys and seeds.

Usage: python devnet_setup.py node --index I --shared DIR --home DIR --ip IP --chains ID=URL,...
       python devnet_setup.py genesis --shared DIR --validators N --threshold T --chains ID=URL,...
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_CHAINS = "31337=http://127.0.0.1:8545,31338=http://127.0.0.1:8546"
WAIT_S = 900.0
POLL_S = 0.5


def parse_chains(text: str) -> list[tuple[int, str]]:
    chains = []
    for item in filter(None, (x.strip() for x in text.split(","))):
        chain_id, sep, url = item.partition("=")
        if not sep or not chain_id.isdigit() or not url:
            raise SystemExit(f"--chains: {item!r} is not CHAIN_ID=URL")
        chains.append((int(chain_id), url))
    return chains


def say(msg: str) -> None:
    print(f"setup: {msg}", file=sys.stderr, flush=True)


def clearingd(*args: str, json_out: bool = True) -> Any:
    out = subprocess.run([sys.executable, "-m", "node.cli.main", *args], stdout=subprocess.PIPE, text=True)
    if out.returncode != 0:
        raise SystemExit(f"clearingd {args[0]} failed (exit {out.returncode})")
    return json.loads(out.stdout) if json_out else out.stdout


def wait_for(paths: list[Path], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not all(p.is_file() for p in paths):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(POLL_S)


def publish(path: Path, data: bytes) -> None:
    """Write a public file atomically (readers poll for it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def run_node(args: argparse.Namespace) -> int:
    shared, home, i = args.shared, args.home, args.index
    multiaddr = f"/ip4/{args.ip}/tcp/{args.p2p_port}"
    listen = ["--p2p-listen", f"/ip4/{args.listen_ip}/tcp/{args.p2p_port}"] if args.listen_ip else []
    pass_file = home / "passphrase"
    if not (home / "config.toml").is_file():
        home.mkdir(parents=True, exist_ok=True)
        fd = os.open(pass_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(24) + "\n")
        clearingd("init", "--home", str(home), "--passphrase-file", str(pass_file), "--scrypt-n", str(args.scrypt_n),
                  "--json")
    entry = shared / "operators" / f"v{i}.json"
    if not entry.is_file():
        publish(entry, clearingd("network", "operator", "--home", str(home), "--multiaddr", multiaddr,
                                 json_out=False).encode())
    result = shared / "ceremony" / f"v{i}.json"
    if not result.is_file():
        wait_for([shared / "network.json"], "the network file")
        if not (home / "keys" / "share.json").is_file():
            clearingd("init", "--home", str(home), "--network-file", str(shared / "network.json"), *listen, "--json")
            say(f"validator {i}: key ceremony")
            clearingd("dkg", "--home", str(home), "--json", "--phase-timeout", str(args.phase_timeout))
        publish(result, (home / "network.json").read_bytes())
    wait_for([shared / "network-final.json"], "the deployed network file")
    rpc = [a for cid, url in parse_chains(args.chains) for a in ("--rpc-url", f"{cid}={url}")]
    clearingd("init", "--home", str(home), "--network-file", str(shared / "network-final.json"), *rpc, *listen,
              "--json")
    say(f"validator {i}: starting")
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", "node.cli.main", "start", "--home", str(home)])
    return 0  # not reached


def run_genesis(args: argparse.Namespace) -> int:
    shared, n = args.shared, args.validators
    final = shared / "network-final.json"
    if final.is_file():
        say(f"{final} exists: the devnet is set up")
        return 0
    chains = parse_chains(args.chains)
    entries = [shared / "operators" / f"v{i}.json" for i in range(n)]
    wait_for(entries, f"{n} validator entries")
    if not (shared / "network.json").is_file():
        work = shared / "work"
        work.mkdir(parents=True, exist_ok=True)
        clearingd("network", "new", "--out", str(work / "network.json"), "--force", "--network-id",
                  str(args.network_id), "--genesis-time", str(int(time.time() + args.genesis_delay)),
                  "--epoch-period", str(args.epoch_period), "--threshold", str(args.threshold),
                  "--max-quote-age", "86400", *[a for cid, _url in chains for a in ("--chain", f"{cid}:1")],
                  *[a for e in entries for a in ("--operator", str(e))], "--json")
        publish(shared / "network.json", (work / "network.json").read_bytes())
    results = [shared / "ceremony" / f"v{i}.json" for i in range(n)]
    wait_for(results, "every validator's key ceremony")
    if len({r.read_bytes() for r in results}) != 1:
        raise SystemExit("the validators' ceremonies ended with different network files")
    deploy_and_seed(shared, results[0], chains)
    return 0


def deploy_and_seed(shared: Path, ceremony_result: Path, chains: list[tuple[int, str]]) -> None:
    from bridges.anvil import rpc_call
    from bridges.deploy import Deployment, get_dev_key
    from node.devnet.homes import deploy_chains, write_deployer_keystore, write_passphrase
    from node.devnet.seed import seed_book
    from node.network_file import load_network_file

    work = shared / "deploy"
    work.mkdir(parents=True, exist_ok=True)
    network_file = work / "network.json"
    if not network_file.is_file():
        network_file.write_bytes(ceremony_result.read_bytes())
    pass_file = work / "passphrase" if (work / "passphrase").is_file() else write_passphrase(work)
    key_file = write_deployer_keystore(work, bytes.fromhex(get_dev_key(0)[2:]), pass_file)
    deployed = deploy_chains(network_file, [url for _cid, url in chains], key_file, pass_file)
    if not (work / "seeded").is_file():  # seeding records trades: once only
        market_time = int(time.time())
        for position, ((_cid, url), doc) in enumerate(zip(chains, deployed, strict=True)):
            seed_book(url, position, Deployment.from_json(json.dumps(doc["deployment"])), market_time)
        (work / "seeded").write_text(str(market_time))
    net = load_network_file(network_file)
    for _cid, url in chains:
        for op in net.operators:  # operators pay for publishing
            rpc_call(url, "anvil_setBalance", [op.address, hex(10**21)])
        rpc_call(url, "evm_setIntervalMining", [1])
    publish(shared / "network-final.json", network_file.read_bytes())
    say(f"deployed and seeded on {len(chains)} chains; network hash {deployed[-1]['network_hash']}")
    print(json.dumps({"network_file": str(shared / "network-final.json"), "network_hash": deployed[-1]["network_hash"],
                      "governance": deployed[0]["governance"],
                      "chains": {str(d["chain_id"]): d["registry"] for d in deployed}}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="role", required=True)
    node = sub.add_parser("node", help="one validator: keys, entry, ceremony, then clearingd start")
    node.add_argument("--index", type=int, required=True)
    node.add_argument("--home", type=Path, default=Path(os.environ.get("CLEARING_HOME", "~/.clearingd")).expanduser())
    node.add_argument("--ip", required=True, help="the address other validators reach this one at")
    node.add_argument("--listen-ip", default="", help="listen on this IP instead of --ip (e.g. 0.0.0.0)")
    node.add_argument("--p2p-port", type=int, default=4001)
    node.add_argument("--phase-timeout", type=float, default=10.0)
    node.add_argument("--scrypt-n", type=int, default=1 << 15)
    genesis = sub.add_parser("genesis", help="network file, deployment, demo book (one-shot)")
    genesis.add_argument("--validators", type=int, default=4)
    genesis.add_argument("--threshold", type=int, default=3)
    genesis.add_argument("--network-id", type=int, default=1)
    genesis.add_argument("--epoch-period", type=int, default=10)
    genesis.add_argument("--genesis-delay", type=int, default=30)
    for p in (node, genesis):
        p.add_argument("--shared", type=Path, required=True, help="folder of public files shared by every role")
        p.add_argument("--chains", default=DEFAULT_CHAINS, help="CHAIN_ID=RPC_URL,... (the first is the home chain)")
    args = parser.parse_args(argv)
    args.shared = args.shared.absolute()
    if args.role == "genesis" and not 1 <= args.threshold <= args.validators <= 9:
        raise SystemExit("--threshold/--validators: need 1 <= threshold <= validators <= 9")
    return run_node(args) if args.role == "node" else run_genesis(args)


if __name__ == "__main__":
    sys.exit(main())
