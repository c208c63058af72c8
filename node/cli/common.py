"""Shared pieces of the node's operator commands (`init`, `keys`, `start`, `status`, `version`):
the `--home` option (env `CLEARING_HOME`, default `~/.clearingd`), `--json`, environment defaults
for every option (`CLEARING_<OPTION>`), output, and the error -> exit code wrapper.

Exit codes: 0 success, 1 the node or a remote call failed, 2 usage/configuration/key problems.
Nothing is persisted here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEFAULT_HOME = "~/.clearingd"


class CliError(Exception):
    """A usage or input problem reported to the operator (exit code 2)."""


def env_default(name: str, default: Any = None) -> Any:
    """The value of environment variable `name`, else `default`."""
    return os.environ.get(name, default)


def add_home_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", default=env_default("CLEARING_HOME", DEFAULT_HOME),
                        help=f"node home folder (env CLEARING_HOME; default {DEFAULT_HOME})")


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", default=env_default("CLEARING_JSON", "") in ("1", "true"),
                        help="print one JSON object (env CLEARING_JSON=1)")


def get_home(args: argparse.Namespace) -> Path:
    return Path(args.home).expanduser().absolute()


def emit(args: argparse.Namespace, doc: dict[str, Any], text: str) -> None:
    print(json.dumps(doc, sort_keys=True, indent=2) if getattr(args, "json", False) else text)


def run(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Wrap a handler: operator-readable errors on stderr and an exit code instead of a traceback."""
    import grpc

    from node.config import ConfigError
    from node.crypto.errors import CryptoError
    from node.ports import NodeError

    def wrapped(args: argparse.Namespace) -> int:
        try:
            return int(handler(args))
        except (CliError, ConfigError, CryptoError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            detail = exc.details() if hasattr(exc, "details") else str(exc)
            print(f"error: {code.name if code else 'RPC'}: {detail}", file=sys.stderr)
            return 1
        except (NodeError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    wrapped.__name__ = getattr(handler, "__name__", "handler")
    return wrapped
