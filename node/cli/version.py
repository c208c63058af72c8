"""`clearingd version [--json]`: the node's version and the versions of the wire standard and the
libraries that decide compatibility (protobuf, grpcio, libp2p, web3) and the store schema.
Persists nothing."""

from __future__ import annotations

import argparse
import platform
from importlib import metadata

from node.cli.common import add_json_option, emit, run

API_PACKAGES = ("clearing.api.v1", "clearing.admin.v1", "clearing.gossip.v1", "clearing.dkg.v1")
LIBRARIES = ("grpcio", "protobuf", "libp2p", "web3", "py-arkworks-bls12381", "numpy")


def get_version() -> str:
    try:
        return metadata.version("clearing-node")
    except metadata.PackageNotFoundError:
        return "0.0.0+unknown"


def handle_version(args: argparse.Namespace) -> int:
    from node.store import SCHEMA_VERSION

    libs: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            libs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            libs[name] = None
    doc = {"version": get_version(), "python": platform.python_version(), "api": list(API_PACKAGES),
           "store_schema": SCHEMA_VERSION, "libraries": libs}
    emit(args, doc, f"clearingd {doc['version']} (python {doc['python']}, store schema {SCHEMA_VERSION}, "
                    f"api {', '.join(API_PACKAGES)})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("version", help="node, wire standard and library versions")
    add_json_option(p)
    p.set_defaults(func=run(handle_version))
