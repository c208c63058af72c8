"""`clearingd devnet`: two local chains, four validators, demo book, epochs, publications (the main job).
SIGTERM and SIGINT both stop it: validators, ceremony processes and chains are stopped before it exits."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
from pathlib import Path

from node.cli.common import env_default

MAX_ACCOUNTS = 1_000_000


def handle_devnet(args: argparse.Namespace) -> int:
    from node.devnet.homes import DevnetError
    from node.devnet.runner import DevnetOptions, run_devnet

    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="clearing-devnet-"))
    options = DevnetOptions(home=home, validators=args.validators, threshold=args.threshold or
                            (2 * args.validators) // 3 + 1, epochs=args.epochs, epoch_period_s=args.epoch_period,
                            crash_epoch=None if args.no_crash else args.crash_epoch, json_output=args.json,
                            accounts=args.accounts)
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if args.json else (lambda m: print(m, flush=True))
    signal.signal(signal.SIGTERM, stop_on_signal)  # SIGTERM stops every child like Ctrl-C (KeyboardInterrupt)
    try:
        if args.governance_demo:
            from node.devnet.governance_demo import run_governance_demo

            summary = run_governance_demo(options, say)
        elif args.validator_change_demo:
            from node.devnet.validator_change import run_validator_change_demo

            summary = run_validator_change_demo(options, say)
        else:
            summary = run_devnet(options, say)
    except DevnetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not summary:
        return 130
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"signed {summary['epochs_signed']} epochs; published {summary['published']}; "
              f"publish gas {summary['publish_gas']}; epoch latency p50 {summary['epoch_latency_p50_ms']} ms, "
              f"p90 {summary['epoch_latency_p90_ms']} ms")
        if "load" in summary:
            load = summary["load"]
            print(f"load: {load['accounts']} accounts, {load['trades']} seeding trades in {load['seed_seconds']}s; "
                  f"traffic {load['traffic']}")
        for name, a in summary["accounts"].items():
            print(f"  {name:9} IM {a['initial_margin']:>12,.2f}  MM {a['maintenance_margin']:>12,.2f}  "
                  f"equity {a['equity']:>12,.2f}  liquidatable {a['liquidatable']}  "
                  f"proof on chain {a['proof_verified_on_chain']}")
        if "governance" in summary:
            g = summary["governance"]
            print(f"governance: proposal {g['proposal_id']} {g['status']} (yes {g['votes']['yes']} of "
                  f"{g['votes']['n']}), params {g['params_hash'][:14]}... active from epoch {g['activation_epoch']}")
        if "validator_change" in summary:
            c = summary["validator_change"]
            for prop in c["proposals"]:
                print(f"validator change: proposal {prop['proposal_id']} ({prop['label']}) {prop['status']}, "
                      f"executed at block {prop['executed_block']}, key set {prop['keyset_id']} from epoch "
                      f"{prop['activation_epoch']}")
            print(f"  registries' key-set id {[v['keyset_id'] for v in c['registries_start'].values()]} -> "
                  f"{[v['keyset_id'] for v in c['registries_end'].values()]}, group key unchanged "
                  f"{c['group_key_unchanged']}, unsigned epochs {c['unsigned_epochs']}")
    ok = summary["proof_verified_on_chain"] and all(summary["published"].values())
    return 0 if ok else 1


def stop_on_signal(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _accounts(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {value!r}") from None
    if not 0 <= n <= MAX_ACCOUNTS:
        raise argparse.ArgumentTypeError(f"{n} outside 0..{MAX_ACCOUNTS}")
    return n


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("devnet", help="run a local devnet: 2 anvil chains, validators, demo book, epochs")
    p.add_argument("--home", default=env_default("CLEARING_DEVNET_HOME", ""),
                   help="devnet folder (env CLEARING_DEVNET_HOME; default: a new temporary folder)")
    p.add_argument("--validators", type=int, default=int(env_default("CLEARING_DEVNET_VALIDATORS", 4)))
    p.add_argument("--threshold", type=int, default=int(env_default("CLEARING_DEVNET_THRESHOLD", 0)),
                   help="default floor(2n/3)+1")
    p.add_argument("--epochs", type=int, default=None, help="run K epochs and exit (default: until Ctrl-C)")
    p.add_argument("--epoch-period", type=float, default=float(env_default("CLEARING_DEVNET_EPOCH_PERIOD", 3.0)))
    p.add_argument("--crash-epoch", type=int, default=3, help="apply the BTC mark change after this many epochs")
    p.add_argument("--no-crash", action="store_true", help="no mark change")
    p.add_argument("--accounts", type=_accounts, default=env_default("CLEARING_DEVNET_ACCOUNTS", "0"),
                   help="seed N more accounts (~10 positions each, collateral on both chains) before the validators "
                        "start; ~1%% of them trade and every mark moves each epoch (env CLEARING_DEVNET_ACCOUNTS)")
    p.add_argument("--json", action="store_true", help="print one JSON summary (progress goes to stderr)")
    p.add_argument("--governance-demo", action="store_true",
                   help="no mark change; vote wider scan ranges on chain and run until two epochs after activation")
    p.add_argument("--validator-change-demo", action="store_true",
                   help="no mark change; start a fifth, joining validator; vote adding it, then removing validator 3 "
                        "(two proposals); the nodes reshare live under the same group key (key-set id 1 -> 2 -> 3)")
    p.set_defaults(func=handle_devnet)
