"""Entry point of `clearingd`: builds the argument parser from the command modules and dispatches.

Every command module exposes `register(subparsers)`, which adds its parser(s) and sets
`func=handler` where `handler(args) -> int` returns the exit code. Read commands take `--json`.
Every option can also come from a `CLEARING_<OPTION>` environment variable (see `node.cli.common`).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# One entry per command module; each registers one or more subcommands.
COMMAND_MODULES: tuple[str, ...] = (
    "node.cli.gov",
    "node.cli.params",
    "node.cli.init",
    "node.cli.network",
    "node.cli.dkg",
    "node.cli.deploy",
    "node.cli.oracle",
    "node.cli.keys",
    "node.cli.start",
    "node.cli.status",
    "node.cli.version",
    "node.cli.margin",
    "node.cli.devnet",
)


def build_parser() -> argparse.ArgumentParser:
    from node.cli.version import get_version

    parser = argparse.ArgumentParser(prog="clearingd", description="Validator node of the clearing layer.")
    parser.add_argument("--version", action="version", version=f"clearingd {get_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
