"""Devnet setup (the compose file's one-shot `setup` service, also usable on a laptop): runs a
dealerless DKG among N validators in one process, then creates one node home per validator with
`clearingd init` (encrypted keystores, mode 0600) and writes its config: validator set (operator
addresses in index order; public shares come from each share keystore), chains, libp2p bootstrap
to every other validator at `<ip-prefix><index>:4001`, API and metrics on all interfaces (the
container's), genesis `--genesis-delay` seconds from now.

Persists: OUT/passphrase (0600, random), OUT/v<i>/ (a complete home per validator). Refuses to
overwrite an existing OUT/v0 unless `--force`. DEVNET ONLY: one process sees every share while the
DKG runs; a real network runs the DKG between the operators' own machines.

Usage: python devnet_setup.py --out DIR [--validators 4] [--threshold 3]
       [--chains 31337=http://host:8545,...] [--ip-prefix 172.28.0.1] [--inputs chain_pins|fake]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_CHAINS = "31337=http://127.0.0.1:8545,31338=http://127.0.0.1:8546"


def parse_chains(text: str) -> list[dict]:
    chains = []
    for item in filter(None, (x.strip() for x in text.split(","))):
        chain_id, sep, url = item.partition("=")
        if not sep or not chain_id.isdigit() or not url:
            raise SystemExit(f"--chains: {item!r} is not CHAIN_ID=URL")
        chains.append({"chain_id": int(chain_id), "rpc_url": url})
    return chains


def write_passphrase(out: Path) -> Path:
    path = out / "passphrase"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(24) + "\n")
    return path


def init_homes(out: Path, n: int, t: int, pass_file: Path, scrypt_n: int) -> list[dict]:
    """DKG + `clearingd init` per validator; returns [{home, address, peer_id}] in index order."""
    from node.cli.main import main as clearingd
    from node.crypto.dkg_bus import run_dkg_in_process
    from node.crypto.keyshare import write_share_keystore
    from node.crypto.keystore import load_passphrase

    outcome = run_dkg_in_process(n, t)
    if outcome.failures or len(outcome.results) != n:
        raise SystemExit(f"DKG failed: {outcome.failures}")
    passphrase = load_passphrase(pass_file)
    homes = []
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        for i in range(n):
            share_file = Path(tmp) / f"share{i}.json"
            write_share_keystore(share_file, outcome.results[str(i + 1)], passphrase, scrypt_n=scrypt_n)
            home = out / f"v{i}"
            code = clearingd(["init", "--home", str(home), "--index", str(i), "--passphrase-file", str(pass_file),
                              "--share-keystore", str(share_file), "--scrypt-n", str(scrypt_n), "--json", "--force"])
            if code != 0:
                raise SystemExit(f"clearingd init failed for validator {i}")
            from node.cli.keys import describe_keystore

            homes.append({"home": home, "address": describe_keystore(home / "keys" / "operator.json")["address"],
                          "peer_id": describe_keystore(home / "keys" / "p2p.json")["peer_id"]})
    return homes


def write_configs(homes: list[dict], args: argparse.Namespace, chains: list[dict]) -> None:
    from node.config import ChainConfig, load_config, render_config_toml

    genesis = float(int(time.time()) + args.genesis_delay)
    operators = [h["address"] for h in homes]
    for i, home in enumerate(homes):
        config = load_config(home["home"], env={})
        values = {s: dict(v) for s, v in config.values.items()}
        values["node"].update(network_id=args.network_id)
        values["validator_set"].update(operators=operators)
        values["consensus"].update(genesis_time=genesis, epoch_period_s=args.epoch_period, inputs=args.inputs)
        values["p2p"].update(listen=f"/ip4/{args.listen_ip}/tcp/4001", bootstrap=[
            f"/ip4/{args.ip_prefix}{j}/tcp/4001/p2p/{h['peer_id']}" for j, h in enumerate(homes) if j != i])
        values["api"].update(listen=f"{args.listen_ip}:50051")
        values["metrics"].update(listen=f"{args.listen_ip}:9100")
        rendered = render_config_toml(values, tuple(ChainConfig(**c) for c in chains))
        (home["home"] / "config.toml").write_text(rendered)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--validators", type=int, default=4)
    parser.add_argument("--threshold", type=int, default=3)
    parser.add_argument("--network-id", type=int, default=1)
    parser.add_argument("--chains", default=DEFAULT_CHAINS)
    parser.add_argument("--ip-prefix", default="172.28.0.1", help="validator i listens at <prefix><i>")
    parser.add_argument("--listen-ip", default="0.0.0.0")
    parser.add_argument("--inputs", default="chain_pins", choices=["chain_pins", "fake"])
    parser.add_argument("--epoch-period", type=float, default=10.0)
    parser.add_argument("--genesis-delay", type=float, default=30.0)
    parser.add_argument("--scrypt-n", type=int, default=1 << 15)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    if not 1 <= args.threshold <= args.validators <= 9:
        raise SystemExit("--threshold/--validators: need 1 <= threshold <= validators <= 9")
    out = args.out.absolute()
    if (out / "v0").exists() and not args.force:
        print(f"{out}/v0 exists: devnet already set up (use --force to redo)")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    chains = parse_chains(args.chains)
    pass_file = write_passphrase(out)
    homes = init_homes(out, args.validators, args.threshold, pass_file, args.scrypt_n)
    write_configs(homes, args, chains)
    print(json.dumps({"out": str(out), "validators": [{"home": str(h["home"]), "address": h["address"],
                                                      "peer_id": h["peer_id"]} for h in homes]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
