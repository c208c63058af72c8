"""`clearingd keys list|show|import-share`: the node's keystores and their public parts.

`list` and `show` never decrypt: they read the authenticated-on-load metadata (operator address,
libp2p peer id, share index, key-set id, group key and public share derived from the key-set record)
and the file mode. `import-share FILE` checks a DKG share keystore against the passphrase and the
node index, then copies it to `keys/share.json` (0600; refuses to overwrite without `--force`).
A named `--home` (or CLEARING_HOME) that holds no config is refused with the `clearingd init` to run.
Persists only the imported file.
"""

from __future__ import annotations

import argparse
import os
import shutil
import stat
from pathlib import Path
from typing import Any

from node.cli.common import CliError, add_home_option, add_json_option, emit, get_config_home, run
from node.config import load_config


def describe_keystore(path: Path) -> dict[str, Any]:
    """Public description of one keystore file (no decryption)."""
    from node.crypto.keystore import read_keystore_metadata

    mode = stat.S_IMODE(path.stat().st_mode)
    doc: dict[str, Any] = {"name": path.stem, "file": str(path), "mode": f"{mode:04o}"}
    meta = read_keystore_metadata(path)
    doc["kind"] = meta.get("kind", "")
    for key in ("address", "peer_id", "keyset_id", "index"):
        if key in meta:
            doc[key] = meta[key]
    if "keyset_record" in meta:
        from node.crypto.dkg import KeySet
        from node.pb.clearing.dkg.v1 import dkg_pb2

        record = dkg_pb2.KeySetRecord.FromString(bytes.fromhex(str(meta["keyset_record"])))
        keyset = KeySet.from_record(record)
        doc["threshold"] = keyset.threshold
        doc["group_public_key"] = "0x" + keyset.group_public_key.hex()
        doc["public_share"] = "0x" + keyset.get_public_share(int(meta["index"])).hex()
        # public: what a joining validator sets as [validator_set].keyset_record (index cleared)
        doc["keyset_record"] = keyset.to_record().SerializeToString(deterministic=True).hex()
    return doc


def _keys_dir(args: argparse.Namespace) -> Path:
    return load_config(get_config_home(args)).get_path("keys", "dir")


def handle_list(args: argparse.Namespace) -> int:
    folder = _keys_dir(args)
    if not folder.is_dir():
        raise CliError(f"{folder}: no keys folder (run `clearingd init`)")
    found = [describe_keystore(p) for p in sorted(folder.glob("*.json"))]
    lines = [f"{k['name']:<10} {k['kind']:<28} {k['mode']}  " +
             (k.get("address") or k.get("peer_id") or f"share {k.get('index')} of key set {k.get('keyset_id')}")
             for k in found] or ["no keystores"]
    emit(args, {"keys_dir": str(folder), "keystores": found}, "\n".join(lines))
    return 0


def handle_show(args: argparse.Namespace) -> int:
    path = _keys_dir(args) / f"{args.name}.json"
    if not path.is_file():
        raise CliError(f"{path}: no such keystore")
    doc = describe_keystore(path)
    emit(args, doc, "\n".join(f"{k}: {v}" for k, v in doc.items()))
    return 0


def handle_import_share(args: argparse.Namespace) -> int:
    from node.crypto.keyshare import load_share_keystore
    from node.crypto.keystore import load_passphrase

    config = load_config(get_config_home(args))
    target = config.get_path("keys", "share_file")
    if target.exists() and not args.force:
        raise CliError(f"{target} exists; refusing to overwrite (use --force)")
    has_file = bool(config.get("keys", "passphrase_file"))
    passphrase = load_passphrase(config.get_path("keys", "passphrase_file") if has_file else None)
    share = load_share_keystore(args.file, passphrase)
    if share.index != config.get("node", "index") + 1:
        raise CliError(f"{args.file}: share index {share.index}, but node.index is {config.get('node', 'index')}")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.file, target)
    os.chmod(target, 0o600)
    emit(args, describe_keystore(target), f"imported share {share.index} of key set {share.keyset.keyset_id}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    keys = subparsers.add_parser("keys", help="list and show the node's keystores (public parts only)")
    sub = keys.add_subparsers(dest="keys_command", metavar="SUBCOMMAND")
    sub.required = True
    lst = sub.add_parser("list", help="every keystore with its public part")
    show = sub.add_parser("show", help="one keystore's public part")
    show.add_argument("name", help="keystore name: operator, p2p or share")
    imp = sub.add_parser("import-share", help="import a threshold-share keystore written by the DKG")
    imp.add_argument("file", help="share keystore file")
    imp.add_argument("--force", action="store_true")
    for p, handler in ((lst, handle_list), (show, handle_show), (imp, handle_import_share)):
        add_home_option(p)
        add_json_option(p)
        p.set_defaults(func=run(handler))
