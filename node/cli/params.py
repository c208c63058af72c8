"""`clearingd params show [--epoch E]`: the active risk parameter set and its hash at an epoch.

Without a chain (no `--rpc-url`/`--governance-address`/`--network-file`, no `[governance]` in the home or
its CLEARING_GOVERNANCE_* env vars) the answer is the genesis set RRA1. With a chain (found as by `clearingd
gov`), the parameter schedule is derived from the Governance contract at the home-chain head (minus
`--confirmations`); `--epoch` defaults to the epoch of that head block.
A named `--home` (or CLEARING_HOME) must hold a config: a missing one is an error (exit 2), never the
genesis set. `--json` prints one object, errors too (`{"error", "exit_code"}`). Persists nothing.
"""

from __future__ import annotations

import argparse
from typing import Any

from governance.encoding import schedule_to_list
from governance.params import get_genesis_schedule
from node.cli.gov import (
    CliError,
    add_chain_options,
    derive_from_chain,
    emit,
    has_chain_options,
    params_to_dict,
    run,
)


def handle_show(args: argparse.Namespace) -> int:
    if has_chain_options(args):
        d = derive_from_chain(args)
        schedule, source = d.state.schedule, f"home chain block {d.state.head_block}"
        epoch = args.epoch if args.epoch is not None else d.epoch
    else:
        schedule, source, epoch = get_genesis_schedule(), "genesis (no chain configured)", args.epoch or 0
    if epoch < 0:
        raise CliError(f"--epoch must be >= 0, got {epoch}")
    version = schedule.get_active_version(epoch)
    doc: dict[str, Any] = {
        "epoch": epoch, "source": source, "activation_epoch": version.activation_epoch,
        "proposal_id": version.proposal_id, "params_hash": "0x" + version.params_hash.hex(),
        "params": params_to_dict(version.params), "schedule": schedule_to_list(schedule),
    }
    lines = [f"epoch {epoch} ({source}): parameter set active since epoch {version.activation_epoch}"
             f" (proposal {version.proposal_id or 'genesis'})", f"params_hash: {doc['params_hash']}"]
    lines += [f"  {k}: {v}" for k, v in doc["params"].items()]
    emit(args, doc, "\n".join(lines))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    params = subparsers.add_parser("params", help="risk parameter sets")
    sub = params.add_subparsers(dest="params_command", metavar="SUBCOMMAND")
    sub.required = True
    show = sub.add_parser("show", help="the active parameter set and its hash at an epoch")
    show.add_argument("--epoch", type=int, default=None, help="epoch (default: the head's, or 0 without a chain)")
    show.add_argument("--json", action="store_true")
    add_chain_options(show)
    show.set_defaults(func=run(handle_show))
