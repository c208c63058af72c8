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
       [--chains 31337=http://host:8545,...] [--ip-prefix 172.28.0.1] [--inputs margin|chain_pins|fake]
"""

from __future__ import annotations

import argparse
import json
import sys
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


def setup(out: Path, args: argparse.Namespace) -> list:
    """DKG + homes + configs through `node.devnet.homes` (the same code `clearingd devnet` runs)."""
    from node.devnet.homes import create_homes, write_configs

    homes, _group_key = create_homes(out, args.validators, args.threshold, args.network_id, args.scrypt_n)
    chains = parse_chains(args.chains)
    return write_configs(
        homes, chains, float(int(time.time()) + args.genesis_delay), args.epoch_period,
        p2p_addrs=[(f"{args.ip_prefix}{i}", 4001) for i in range(len(homes))],
        api_listen=[f"{args.listen_ip}:50051"] * len(homes), metrics_listen=[f"{args.listen_ip}:9100"] * len(homes),
        inputs=args.inputs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--validators", type=int, default=4)
    parser.add_argument("--threshold", type=int, default=3)
    parser.add_argument("--network-id", type=int, default=1)
    parser.add_argument("--chains", default=DEFAULT_CHAINS)
    parser.add_argument("--ip-prefix", default="172.28.0.1", help="validator i listens at <prefix><i>")
    parser.add_argument("--listen-ip", default="0.0.0.0")
    parser.add_argument("--inputs", default="chain_pins", choices=["margin", "chain_pins", "fake"])
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
    homes = setup(out, args)
    print(json.dumps({"out": str(out), "validators": [{"home": str(h.path), "address": h.address,
                                                      "peer_id": h.peer_id} for h in homes]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
