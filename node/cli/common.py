"""Shared pieces of the node's operator commands (`init`, `keys`, `start`, `status`, `version`, `dkg`,
`deploy`, `network`, `gov`): the `--home` option (env `CLEARING_HOME`, default `~/.clearingd`), `--json`,
`--passphrase-file`, environment defaults for every option (`CLEARING_<OPTION>`), output, and the
error -> exit code wrapper (with `--json`, errors are a JSON object on stdout too). A home the operator
named (`--home` or CLEARING_HOME) must exist wherever a command reads it (`get_config_home`); only the
default home may be absent, and then the config's defaults and environment apply.

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


class _HomeAction(argparse.Action):
    """Store `--home` and record that the operator named it (`home_named`)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, values)
        namespace.home_named = True


def add_home_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", default=env_default("CLEARING_HOME", DEFAULT_HOME), action=_HomeAction,
                        help=f"node home folder (env CLEARING_HOME; default {DEFAULT_HOME})")
    parser.set_defaults(home_named="CLEARING_HOME" in os.environ)


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", default=env_default("CLEARING_JSON", "") in ("1", "true"),
                        help="print one JSON object (env CLEARING_JSON=1)")


def get_home(args: argparse.Namespace) -> Path:
    return Path(args.home).expanduser().absolute()


def emit(args: argparse.Namespace, doc: dict[str, Any], text: str) -> None:
    print(json.dumps(doc, sort_keys=True, indent=2) if getattr(args, "json", False) else text)


def add_passphrase_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--passphrase-file", default=env_default("CLEARING_KEYS_PASSPHRASE_FILE", ""),
                        help="keystore passphrase file, mode 0600 (env CLEARING_KEYS_PASSPHRASE_FILE; "
                             "else CLEARING_KEYSTORE_PASSPHRASE)")


def require_home(args: argparse.Namespace) -> Path:
    """The home folder, which must hold a config (never created here): else a next step to take."""
    from node.config import CONFIG_FILE

    home = get_home(args)
    if not (home / CONFIG_FILE).is_file():
        raise CliError(f"no node home at {home} (no {CONFIG_FILE}): create it with "
                       f"`clearingd init --home {home} --passphrase-file FILE`")
    return home


def get_config_home(args: argparse.Namespace) -> Path:
    """The home whose config a command reads: one the operator named (`--home`, CLEARING_HOME) must exist
    (`require_home`: else the next step); the default one may be absent (the config's defaults and
    environment apply, as for a node configured by environment only)."""
    return require_home(args) if getattr(args, "home_named", False) else get_home(args)


def fail(args: argparse.Namespace, message: str, code: int) -> int:
    """Report an error: `error: ...` on stderr and, with `--json`, `{"error", "exit_code"}` on stdout."""
    print(f"error: {message}", file=sys.stderr)
    if getattr(args, "json", False):
        print(json.dumps({"error": message, "exit_code": code}, sort_keys=True))
    return code


def run(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Wrap a handler: operator-readable errors (stderr, and JSON on stdout with `--json`) and an exit
    code instead of a traceback."""
    import grpc

    from bridges.errors import BridgeError
    from node.config import ConfigError
    from node.crypto.errors import CryptoError
    from node.ports import NodeError

    def wrapped(args: argparse.Namespace) -> int:
        try:
            return int(handler(args))
        except (CliError, ConfigError, CryptoError) as exc:
            return fail(args, str(exc), 2)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            detail = exc.details() if hasattr(exc, "details") else str(exc)
            return fail(args, f"{code.name if code else 'RPC'}: {detail}", 1)
        except (NodeError, BridgeError, OSError) as exc:
            return fail(args, str(exc), 1)

    wrapped.__name__ = getattr(handler, "__name__", "handler")
    return wrapped
