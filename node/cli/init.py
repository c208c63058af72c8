"""`clearingd init`: create a node's home folder, or (re)configure it from a network file.

Layout (CometBFT-like): `config.toml` (every option written out), `keys/` with encrypted keystores
(mode 0600) `operator.json` (secp256k1 operator key) and `p2p.json` (ed25519 libp2p seed), plus
`share.json` (BLS threshold share) when `--share-keystore` imports one or the ceremony (`clearingd
dkg`) writes it; `data/` (SQLite store, validator status), `run/` (admin socket) and, with a network
file, `network.json` (the network's genesis, `node.network_file`). Folders the command creates are
mode 0700; a folder that already exists keeps its mode (never changed here).

Without `--network-file`: creates the keys and a default config; refuses to overwrite an existing
config or keystore without `--force`. With `--network-file F` (`configure_from_network`): keeps the
keys of an existing home (creating them in a new one), copies F to `network.json` and writes every
network-derived option of `config.toml` from it (network id, genesis time, epoch period, home chain,
validator set, p2p listen address and bootstrap peers, chains and their contracts, governance) while
keeping the operator's own settings; the operator adds only RPC URLs (`--rpc-url CHAIN_ID=URL`,
remembered across reruns) and secrets. Rerun it with each newer version of the network file (after
the ceremony, after the deployment). An operator listed in F must be this home's (address, peer id,
ceremony key); a home whose operator is not listed is a JOINING one (configured with the key set's
public data). A share keystore must belong to F's key set. The passphrase comes from
`--passphrase-file` (mode 0600) or `CLEARING_KEYSTORE_PASSPHRASE`. Persists exactly those files.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

from node.cli.common import (
    CliError,
    add_home_option,
    add_json_option,
    add_passphrase_option,
    emit,
    env_default,
    get_home,
    run,
)
from node.config import CONFIG_FILE, SCHEMA, render_config_toml

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
OPERATOR_KIND = "clearing-operator-key"
P2P_KIND = "clearing-p2p-seed"
NETWORK_FILE = "network.json"


def get_operator_address(key: bytes) -> str:
    from eth_keys import keys

    return keys.PrivateKey(key).public_key.to_checksum_address()


def get_p2p_peer_id(seed: bytes) -> str:
    from node.p2p.host import get_peer_id

    return str(get_peer_id(seed))


def generate_operator_key() -> bytes:
    while True:
        key = secrets.token_bytes(32)
        if 0 < int.from_bytes(key, "big") < SECP256K1_N:
            return key


def _check_overwrite(paths: list[Path], force: bool) -> None:
    existing = [p for p in paths if p.exists()]
    if existing and not force:
        raise CliError(f"{existing[0]} exists; refusing to overwrite (use --force)")


def make_folders(home: Path) -> None:
    """The home's folders: created with mode 0700; existing ones are left as they are."""
    for folder in (home, home / "keys", home / "data", home / "run"):
        if not folder.exists():
            folder.mkdir(parents=True, mode=0o700)
            os.chmod(folder, 0o700)  # mkdir's mode is masked by the umask


def write_operator_keystores(keys_dir: Path, passphrase: Any, scrypt_n: int,
                             operator: bytes | None = None) -> tuple[str, str]:
    """New operator key (or `operator`) and p2p seed, encrypted; returns (address, peer id)."""
    from node.crypto.keystore import Secret, write_keystore

    operator = operator or generate_operator_key()
    seed = secrets.token_bytes(32)
    address, peer_id = get_operator_address(operator), get_p2p_peer_id(seed)
    write_keystore(keys_dir / "operator.json", Secret(operator), passphrase,
                   {"kind": OPERATOR_KIND, "address": address}, scrypt_n=scrypt_n)
    write_keystore(keys_dir / "p2p.json", Secret(seed), passphrase, {"kind": P2P_KIND, "peer_id": peer_id},
                   scrypt_n=scrypt_n)
    return address, peer_id


def handle_init(args: argparse.Namespace) -> int:
    if args.network_file:
        return configure_from_network(args)
    from node.crypto.keyshare import load_share_keystore
    from node.crypto.keystore import load_passphrase

    home = get_home(args)
    keys_dir = home / "keys"
    targets = {"config": home / CONFIG_FILE, "operator": keys_dir / "operator.json", "p2p": keys_dir / "p2p.json",
               "share": keys_dir / "share.json"}
    _check_overwrite(list(targets.values()), args.force)
    passphrase = load_passphrase(args.passphrase_file or None)
    share = load_share_keystore(args.share_keystore, passphrase) if args.share_keystore else None
    if share is not None and share.index != args.index + 1:
        raise CliError(f"--share-keystore holds share index {share.index}; --index must be share index - 1")
    make_folders(home)
    address, peer_id = write_operator_keystores(keys_dir, passphrase, args.scrypt_n)
    if share is not None:
        shutil.copyfile(args.share_keystore, targets["share"])
        os.chmod(targets["share"], 0o600)
    values = {s: dict(d) for s, d in SCHEMA.items()}
    values["node"].update(network_id=args.network_id, index=args.index)
    if args.passphrase_file:
        values["keys"]["passphrase_file"] = str(Path(args.passphrase_file).expanduser().absolute())
    if share is not None:
        values["validator_set"].update(keyset_id=share.keyset.keyset_id, threshold=share.keyset.threshold)
    write_config(targets["config"], values, ())
    doc = {"home": str(home), "config": str(targets["config"]), "operator_address": address, "peer_id": peer_id,
           "keystores": [str(p) for k, p in targets.items() if k != "config" and p.exists()],
           "share_imported": share is not None}
    text = [f"initialised {home}", f"  operator address: {address}", f"  p2p peer id:      {peer_id}",
            f"  config:           {targets['config']}"]
    if share is None:
        text.append("  next: give the coordinator your entry (`clearingd network operator --home HOME --multiaddr "
                    "/ip4/IP/tcp/PORT`), then `clearingd init --home HOME --network-file FILE`")
    emit(args, doc, "\n".join(text))
    return 0


def write_config(path: Path, values: dict[str, dict[str, Any]], chains: tuple) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(render_config_toml(values, chains))
    os.chmod(path, 0o600)


def parse_rpc_urls(items: list[str]) -> dict[int, str]:
    urls: dict[int, str] = {}
    for item in items or []:
        chain_id, sep, url = item.partition("=")
        if not sep or not chain_id.strip().isdigit() or not url.strip():
            raise CliError(f"--rpc-url {item!r}: expected CHAIN_ID=URL")
        urls[int(chain_id)] = url.strip()
    return urls


def configure_from_network(args: argparse.Namespace) -> int:
    """`init --network-file F`: see the module docstring."""
    from node.config import load_config
    from node.crypto.keystore import load_passphrase
    from node.network_file import is_successor, load_network_file, write_network_file

    home = get_home(args)
    net = load_network_file(args.network_file)
    if (home / NETWORK_FILE).is_file() and not args.force:
        old = load_network_file(home / NETWORK_FILE)
        if not is_successor(old, net):
            raise CliError(f"{args.network_file}: not a later version of this home's network file "
                           f"({home / NETWORK_FILE}: network {old.network_id}); use another home (or --force)")
    passphrase_file = args.passphrase_file
    if not passphrase_file and (home / CONFIG_FILE).is_file():
        config = load_config(home, env={})
        passphrase_file = str(config.get_path("keys", "passphrase_file")) if config.get("keys", "passphrase_file") else ""
    passphrase = load_passphrase(passphrase_file or None)
    make_folders(home)
    created = not (home / "keys" / "operator.json").exists()
    if created:
        _check_overwrite([home / "keys" / "p2p.json"], False)
        write_operator_keystores(home / "keys", passphrase, args.scrypt_n)
    identity = check_identity(home, net, passphrase)
    values, chains = build_network_values(home, net, identity, parse_rpc_urls(args.rpc_url), args.p2p_listen)
    if passphrase_file:
        values["keys"]["passphrase_file"] = str(Path(passphrase_file).expanduser().absolute())
    write_config(home / CONFIG_FILE, values, chains)
    network_hash = write_network_file(home / NETWORK_FILE, net)
    index = identity["index"]
    stage = net.get_stage()
    doc = {"home": str(home), "config": str(home / CONFIG_FILE), "network_file": str(home / NETWORK_FILE),
           "network_hash": network_hash, "stage": stage, "operator_address": identity["address"],
           "peer_id": identity["peer_id"], "operator_index": None if index is None else index + 1,
           "joining": index is None, "keys_created": created,
           "missing_rpc_urls": [c.chain_id for c in chains if not c.rpc_url]}
    emit(args, doc, "\n".join([f"configured {home} from network {net.network_id} (hash {network_hash})",
                               f"  operator {identity['address']}: " + (
                                   "joining (not a genesis operator)" if index is None else f"operator {index + 1}"),
                               f"  next: {get_next_step(net, index, doc['missing_rpc_urls'], home)}"]))
    return 0


def get_next_step(net: Any, index: int | None, missing_rpc: list[int], home: Path) -> str:
    if net.keyset is None:
        return f"run the key ceremony with the other operators: `clearingd dkg --home {home}`"
    if not net.is_deployed:
        return "deploy the contracts (`clearingd deploy`), then rerun init with the network file it updates"
    if missing_rpc:
        return f"rerun init with --rpc-url for chain(s) {missing_rpc}"
    return f"`clearingd start --home {home}`" + (" (joining: governance must add you)" if index is None else "")


def check_identity(home: Path, net: Any, passphrase: Any) -> dict[str, Any]:
    """This home's operator in `net` (address, peer id and ceremony key must all match its entry), and a share
    keystore, if any, of `net`'s key set."""
    from node.cli.keys import describe_keystore
    from node.crypto.keystore import load_keystore
    from node.network_file import derive_ceremony_key

    keys_dir = home / "keys"
    address = describe_keystore(keys_dir / "operator.json")["address"]
    peer_id = describe_keystore(keys_dir / "p2p.json")["peer_id"]
    index = net.find_operator(address)
    if index is not None:
        entry = net.operators[index]
        key = load_keystore(keys_dir / "operator.json", passphrase).secret.reveal()
        dkg_key = "0x" + derive_ceremony_key(key).public_key().public_bytes_raw().hex()
        for name, mine, listed in (("peer_id", peer_id, entry.peer_id), ("dkg_key", dkg_key, entry.dkg_key)):
            if mine != listed:
                raise CliError(f"operators[{index}].{name}: the network file lists {listed}, this home has {mine}")
    share_file = keys_dir / "share.json"
    if share_file.exists():
        share = describe_keystore(share_file)
        if net.keyset is None or share.get("keyset_record") != net.keyset.record or share.get("index") != (
                None if index is None else index + 1):
            raise CliError(f"{share_file}: a share of another key set or operator than the network file's "
                           f"(network {net.network_id}); use another home")
    return {"address": address, "peer_id": peer_id, "index": index}


def build_network_values(home: Path, net: Any, identity: dict[str, Any], rpc_urls: dict[int, str],
                         p2p_listen: str) -> tuple[dict[str, dict[str, Any]], tuple]:
    """The config values of this home from `net`, keeping the home's own settings."""
    from node.config import ChainEndpoint, load_config

    config = load_config(home, env={}) if (home / CONFIG_FILE).is_file() else None
    values = {s: dict(d) for s, d in (config.values if config else SCHEMA).items()}
    known = {c.chain_id: c.rpc_url for c in config.chains} if config else {}
    unknown = sorted(set(rpc_urls) - {c.chain_id for c in net.chains})
    if unknown:
        raise CliError(f"--rpc-url: chain {unknown[0]} is not a chain of network {net.network_id}")
    chains = tuple(ChainEndpoint(
        chain_id=c.chain_id, rpc_url=rpc_urls.get(c.chain_id, known.get(c.chain_id, "")), lag_s=c.lag_s,
        confirmations=c.confirmations, **({"registry": c.contracts.registry, "vault": c.contracts.vault,
                                           "ledger": c.contracts.ledger, "oracle": c.contracts.oracle}
                                          if c.contracts else {})) for c in net.chains)
    if net.is_deployed:
        missing = [c.chain_id for c in chains if not c.rpc_url]
        if missing:
            raise CliError(f"--rpc-url: no RPC URL for chain(s) {missing} (pass --rpc-url CHAIN_ID=URL)")
    index = identity["index"]
    values["node"].update(network_id=net.network_id, index=len(net.operators) if index is None else index)
    values["consensus"].update(genesis_time=float(net.genesis_time), epoch_period_s=float(net.epoch_period_s),
                               home_chain_id=net.home_chain_id, max_quote_age_s=net.max_quote_age_s)
    public: dict[str, Any] = {"group_key": "", "public_shares": [], "keyset_record": ""}
    if index is None and net.keyset is not None:  # joining: no share keystore to read the key set from
        keyset = net.keyset.get_keyset()
        public = {"group_key": net.keyset.group_key, "keyset_record": net.keyset.record,
                  "public_shares": ["0x" + keyset.get_public_share(i).hex() for i in keyset.holders]}
    values["validator_set"].update(keyset_id=1, threshold=net.threshold,
                                   operators=[o.address for o in net.operators], **public)
    own = net.operators[index].multiaddr if index is not None else values["p2p"]["listen"]
    peers = {o.peer_id for o in net.operators}
    added = [b for b in values["p2p"]["bootstrap"] if b.rsplit("/p2p/", 1)[-1] not in peers]  # the operator's own
    values["p2p"].update(listen=p2p_listen or own,
                         bootstrap=[o.get_bootstrap() for j, o in enumerate(net.operators) if j != index] + added)
    home_rpc = next((c.rpc_url for c in chains if c.chain_id == net.home_chain_id), "")
    governance = net.governance.address if net.governance is not None and home_rpc else ""
    values["governance"].update(address=governance, rpc_url=home_rpc if governance else "")
    return values, chains


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("init", help="create a node home folder, or configure it from a network file")
    add_home_option(p)
    add_json_option(p)
    add_passphrase_option(p)
    p.add_argument("--force", action="store_true", help="overwrite an existing config and keystores")
    p.add_argument("--network-file", default=env_default("CLEARING_NETWORK_FILE", ""),
                   help="configure the home from this network file, keeping its keys (env CLEARING_NETWORK_FILE)")
    p.add_argument("--rpc-url", action="append", default=[], metavar="CHAIN_ID=URL",
                   help="with --network-file: this operator's RPC endpoint of a chain (repeatable)")
    p.add_argument("--p2p-listen", default="", help="with --network-file: listen here instead of the multiaddr "
                                                  "the network file lists for this operator")
    p.add_argument("--network-id", type=int, default=int(env_default("CLEARING_NODE_NETWORK_ID", 1)),
                   help="network id (env CLEARING_NODE_NETWORK_ID)")
    p.add_argument("--index", type=int, default=int(env_default("CLEARING_NODE_INDEX", 0)),
                   help="0-based validator index (env CLEARING_NODE_INDEX)")
    p.add_argument("--share-keystore", default=env_default("CLEARING_INIT_SHARE_KEYSTORE", ""),
                   help="import this threshold-share keystore (env CLEARING_INIT_SHARE_KEYSTORE)")
    p.add_argument("--scrypt-n", type=int, default=int(env_default("CLEARING_INIT_SCRYPT_N", 1 << 15)),
                   help="scrypt cost of new keystores (env CLEARING_INIT_SCRYPT_N)")
    p.set_defaults(func=run(handle_init))
