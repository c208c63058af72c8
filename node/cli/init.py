"""`clearingd init`: create a node's home folder.

Layout (CometBFT-like): `config.toml` (every option written out), `keys/` (0700) with encrypted
keystores (mode 0600) `operator.json` (secp256k1 operator key) and `p2p.json` (ed25519 libp2p seed),
plus `share.json` (BLS threshold share) when `--share-keystore` imports one written by the DKG;
`data/` (SQLite store, validator status) and `run/` (0700, admin socket). Refuses to overwrite an
existing config or keystore without `--force`. The passphrase comes from `--passphrase-file` (mode
0600) or `CLEARING_KEYSTORE_PASSPHRASE`. Persists exactly those files.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

from node.cli.common import CliError, add_home_option, add_json_option, emit, env_default, get_home, run
from node.config import CONFIG_FILE, SCHEMA, render_config_toml

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
OPERATOR_KIND = "clearing-operator-key"
P2P_KIND = "clearing-p2p-seed"


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


def handle_init(args: argparse.Namespace) -> int:
    from node.crypto.keyshare import load_share_keystore
    from node.crypto.keystore import Secret, load_passphrase, write_keystore

    home = get_home(args)
    keys_dir = home / "keys"
    targets = {"config": home / CONFIG_FILE, "operator": keys_dir / "operator.json", "p2p": keys_dir / "p2p.json",
               "share": keys_dir / "share.json"}
    _check_overwrite(list(targets.values()), args.force)
    passphrase = load_passphrase(args.passphrase_file or None)
    share = load_share_keystore(args.share_keystore, passphrase) if args.share_keystore else None
    if share is not None and share.index != args.index + 1:
        raise CliError(f"--share-keystore holds share index {share.index}; --index must be share index - 1")
    for folder, mode in ((home, 0o700), (keys_dir, 0o700), (home / "data", 0o700), (home / "run", 0o700)):
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, mode)
    operator, seed = generate_operator_key(), secrets.token_bytes(32)
    address, peer_id = get_operator_address(operator), get_p2p_peer_id(seed)
    kw: dict[str, Any] = {"scrypt_n": args.scrypt_n}
    write_keystore(targets["operator"], Secret(operator), passphrase, {"kind": OPERATOR_KIND, "address": address}, **kw)
    write_keystore(targets["p2p"], Secret(seed), passphrase, {"kind": P2P_KIND, "peer_id": peer_id}, **kw)
    if share is not None:
        shutil.copyfile(args.share_keystore, targets["share"])
        os.chmod(targets["share"], 0o600)
    values = {s: dict(d) for s, d in SCHEMA.items()}
    values["node"].update(network_id=args.network_id, index=args.index)
    if args.passphrase_file:
        values["keys"]["passphrase_file"] = str(Path(args.passphrase_file).expanduser().absolute())
    if share is not None:
        values["validator_set"].update(keyset_id=share.keyset.keyset_id, threshold=share.keyset.threshold)
    targets["config"].write_text(render_config_toml(values))
    os.chmod(targets["config"], 0o600)
    doc = {"home": str(home), "config": str(targets["config"]), "operator_address": address, "peer_id": peer_id,
           "keystores": [str(p) for k, p in targets.items() if k != "config" and p.exists()],
           "share_imported": share is not None}
    text = [f"initialised {home}", f"  operator address: {address}", f"  p2p peer id:      {peer_id}",
            f"  config:           {targets['config']}"]
    if share is None:
        text.append("  no threshold share yet: run the DKG, then `clearingd keys import-share FILE`")
    emit(args, doc, "\n".join(text))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("init", help="create a node home folder: config.toml and encrypted keystores")
    add_home_option(p)
    add_json_option(p)
    p.add_argument("--force", action="store_true", help="overwrite an existing config and keystores")
    p.add_argument("--network-id", type=int, default=int(env_default("CLEARING_NODE_NETWORK_ID", 1)),
                   help="network id (env CLEARING_NODE_NETWORK_ID)")
    p.add_argument("--index", type=int, default=int(env_default("CLEARING_NODE_INDEX", 0)),
                   help="0-based validator index (env CLEARING_NODE_INDEX)")
    p.add_argument("--passphrase-file", default=env_default("CLEARING_KEYS_PASSPHRASE_FILE", ""),
                   help="keystore passphrase file, mode 0600 (env CLEARING_KEYS_PASSPHRASE_FILE; "
                        "else CLEARING_KEYSTORE_PASSPHRASE)")
    p.add_argument("--share-keystore", default=env_default("CLEARING_INIT_SHARE_KEYSTORE", ""),
                   help="import this threshold-share keystore written by the DKG (env CLEARING_INIT_SHARE_KEYSTORE)")
    p.add_argument("--scrypt-n", type=int, default=int(env_default("CLEARING_INIT_SCRYPT_N", 1 << 15)),
                   help="scrypt cost of new keystores (env CLEARING_INIT_SCRYPT_N)")
    p.set_defaults(func=run(handle_init))
