"""`clearingd network operator|new|show|add-peer`: the network file (`node.network_file`) before the ceremony.

- `network operator --home H --multiaddr /ip4/IP/tcp/PORT`: this operator's entry (address, peer id,
  multiaddr, ceremony key), printed as JSON for the coordinator (decrypts the operator key to derive
  the ceremony key; the passphrase as for every command).
- `network new --out F --network-id N --genesis-time T --epoch-period E --chain ID[:CONFIRMATIONS[:LAG_S]]
  ... --operator FILE ... [--threshold t] [--max-quote-age S]`: the coordinator writes the genesis network
  file from the operators' entries (in the order given: operator i holds share i); default threshold
  floor(2n/3)+1; `--max-quote-age` bounds the age of the oracle values an epoch uses (0: none).
- `network show [--network-file F | --home H]`: stage, hash and summary; `--json` prints the document
  with its hash.
- `network add-peer --home H /ip4/HOST/tcp/PORT/p2p/PEER_ID`: a member adds a joining validator to its
  bootstrap peers (of each pair of peers only one dials the other, so both must know each other).
Persists `--out` (mode 0644, public) and, for `add-peer`, the home's config.toml.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from node.cli.common import (
    CliError,
    add_home_option,
    add_json_option,
    add_passphrase_option,
    emit,
    env_default,
    require_home,
    run,
)


def handle_operator(args: argparse.Namespace) -> int:
    from node.cli.dkg import load_identity
    from node.cli.init import get_p2p_peer_id
    from node.network_file import make_operator_entry, operator_to_dict

    _config, _passphrase, identity = load_identity(require_home(args), args.passphrase_file)
    entry = make_operator_entry(identity.operator_key, get_p2p_peer_id(identity.p2p_seed), args.multiaddr)
    doc = operator_to_dict(entry)
    print(json.dumps(doc, indent=2, sort_keys=True))
    return 0


def parse_chain(text: str) -> dict[str, Any]:
    parts = text.split(":")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        raise CliError(f"--chain {text!r}: expected CHAIN_ID[:CONFIRMATIONS[:LAG_S]]")
    values = [int(p) for p in parts] + [0] * (3 - len(parts))
    return {"chain_id": values[0], "confirmations": values[1], "lag_s": values[2], "contracts": None}


def read_operator(path: str) -> dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise CliError(f"--operator {path}: not a readable JSON operator entry ({exc})") from exc
    return doc


def handle_new(args: argparse.Namespace) -> int:
    from node.crypto.threshold import compute_default_threshold
    from node.network_file import compute_network_hash, parse_network, write_network_file

    out = Path(args.out)
    if out.exists() and not args.force:
        raise CliError(f"{out} exists; refusing to overwrite (use --force)")
    if not args.operator:
        raise CliError("--operator: at least one operator entry file is required")
    operators = [read_operator(p) for p in args.operator]
    net = parse_network({
        "version": 1, "network_id": args.network_id, "genesis_time": args.genesis_time,
        "epoch_period_s": args.epoch_period, "threshold": args.threshold or compute_default_threshold(len(operators)),
        "chains": [parse_chain(c) for c in args.chain or []], "governance": None, "operators": operators,
        "keyset": None, **({"max_quote_age_s": args.max_quote_age} if args.max_quote_age else {})})
    write_network_file(out, net)
    network_hash = compute_network_hash(net)
    emit(args, {"network_file": str(out), "network_hash": network_hash, "stage": net.get_stage()},
         f"wrote {out} (network {net.network_id}, {len(net.operators)} operators, threshold {net.threshold}); "
         f"hash {network_hash}\nnext: send it to the operators; each runs `clearingd init --home HOME "
         f"--network-file {out.name}`, then `clearingd dkg --home HOME` at the agreed time")
    return 0


def handle_show(args: argparse.Namespace) -> int:
    from node.cli.init import NETWORK_FILE
    from node.network_file import compute_network_hash, load_network_file, network_to_dict

    path = Path(args.network_file) if args.network_file else require_home(args) / NETWORK_FILE
    net = load_network_file(path)
    network_hash = compute_network_hash(net)
    doc = {"network_file": str(path), "network_hash": network_hash, "stage": net.get_stage(),
           "network": network_to_dict(net)}
    lines = [f"network {net.network_id}: {net.get_stage()}, hash {network_hash}",
             f"  genesis {net.genesis_time}, epoch {net.epoch_period_s}s, threshold {net.threshold} of "
             f"{len(net.operators)}"]
    lines += [f"  operator {i + 1}: {o.address} {o.peer_id} {o.multiaddr}" for i, o in enumerate(net.operators)]
    lines.append(f"  oracle values older than {net.max_quote_age_s}s fail the accounts that use them"
                 if net.max_quote_age_s else "  no bound on the age of oracle values")
    lines += [f"  chain {c.chain_id}: confirmations {c.confirmations}, lag {c.lag_s}s, "
              + (f"registry {c.contracts.registry}" if c.contracts else "not deployed") for c in net.chains]
    if net.governance:
        lines.append(f"  governance {net.governance.address} on chain {net.governance.chain_id}")
    if net.keyset:
        lines.append(f"  key set {net.keyset.keyset_id}: group key {net.keyset.group_key}")
    emit(args, doc, "\n".join(lines))
    return 0


def handle_add_peer(args: argparse.Namespace) -> int:
    """Add a peer (a joining validator) to the home's bootstrap peers; `init --network-file` keeps it."""
    import re

    from node.cli.init import write_config
    from node.config import CONFIG_FILE, load_config

    home = require_home(args)
    if not re.fullmatch(r"/(ip4|ip6|dns|dns4|dns6)/[^/]+/tcp/\d{1,5}/p2p/[1-9A-HJ-NP-Za-km-z]{40,80}", args.peer):
        raise CliError(f"peer {args.peer!r}: expected /ip4/HOST/tcp/PORT/p2p/PEER_ID")
    config = load_config(home, env={})
    values = {s: dict(v) for s, v in config.values.items()}
    bootstrap = list(values["p2p"]["bootstrap"])
    added = args.peer not in bootstrap
    if added:
        values["p2p"]["bootstrap"] = [*bootstrap, args.peer]
        write_config(home / CONFIG_FILE, values, config.chains)
    emit(args, {"added": added, "bootstrap": values["p2p"]["bootstrap"]},
         f"{'added' if added else 'already listed'}: {args.peer} (takes effect at the node's next start)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    network = subparsers.add_parser("network", help="the network file: operator entries, a new network, show")
    sub = network.add_subparsers(dest="network_command", metavar="SUBCOMMAND")
    sub.required = True
    op = sub.add_parser("operator", help="this operator's network-file entry (JSON)")
    add_home_option(op)
    add_passphrase_option(op)
    op.add_argument("--multiaddr", required=True, help="where this node listens for peers: /ip4/IP/tcp/PORT")
    op.set_defaults(func=run(handle_operator))
    new = sub.add_parser("new", help="write a genesis network file from the operators' entries")
    add_json_option(new)
    new.add_argument("--out", required=True, help="network file to write")
    new.add_argument("--force", action="store_true")
    new.add_argument("--network-id", type=int, required=True)
    new.add_argument("--genesis-time", type=int, required=True, help="unix seconds of epoch 0's start")
    new.add_argument("--epoch-period", type=int, required=True, help="epoch period in whole seconds")
    new.add_argument("--threshold", type=int, default=0, help="signing threshold (default floor(2n/3)+1)")
    new.add_argument("--chain", action="append", metavar="ID[:CONFIRMATIONS[:LAG_S]]", help="a chain (repeatable)")
    new.add_argument("--max-quote-age", type=int, default=0, metavar="S",
                     help="oldest oracle value an epoch may use, seconds before the epoch's time (0: no bound)")
    new.add_argument("--operator", action="append", metavar="FILE", help="an operator's entry (repeatable, in order)")
    new.set_defaults(func=run(handle_new))
    show = sub.add_parser("show", help="a network file's stage, hash and contents")
    add_home_option(show)
    add_json_option(show)
    show.add_argument("--network-file", default=env_default("CLEARING_NETWORK_FILE", ""),
                      help="default: the home's network.json")
    show.set_defaults(func=run(handle_show))
    peer = sub.add_parser("add-peer", help="add a peer (a joining validator) to this home's bootstrap peers")
    add_home_option(peer)
    add_json_option(peer)
    peer.add_argument("peer", help="/ip4/HOST/tcp/PORT/p2p/PEER_ID")
    peer.set_defaults(func=run(handle_add_peer))
