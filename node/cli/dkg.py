"""`clearingd dkg`: this operator's part of the genesis key ceremony (`node.ceremony`).

Run by every genesis operator at about the same time, each in its own home configured from the
network file (`clearingd init --network-file F`): the processes meet over libp2p at the file's
multiaddrs, run the dealerless DKG, check the new key together, and each writes ONLY its own share:
`keys/share.json` (encrypted with the home's passphrase, mode 0600). Every participant derives the
same key set and writes the same `network.json` (the file plus the key set's public data), so all
print the same network hash: compare it out of band before deploying. `ceremony-<attempt>.json`
(public) keeps the report: qualified dealers, excluded operators and why, operators without a
share, the key check. A failed ceremony (too few qualified dealers, operators unreachable) writes
only the report and exits 1; rerun it with `--attempt N+1` on every operator (a fresh session).
`--fault-drill` (hidden) makes this operator a cheating dealer, for drills and tests only.
No log line shows a secret: the operator and p2p keys, and once the DKG ran the share and the opened
dealt shares it sums, are registered for redaction (`node.logs.register_secret`).
Persists: keys/share.json, network.json, config.toml (validator set), ceremony-<attempt>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
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
from node.cli.init import NETWORK_FILE


def parse_fault_drill(text: str) -> Any:
    """`wrong-share:J` (deal operator J a bad share, reveal it again when J complains) or
    `withhold-justification` (deal J a bad share, never answer the complaint)."""
    if not text:
        return None
    from node.crypto.dkg_bus import Misbehaviour

    kind, _, arg = text.partition(":")
    if kind in ("wrong-share", "withhold-justification") and arg.isdigit():
        return Misbehaviour(wrong_share_for=frozenset({int(arg)}),
                            withhold_justification=kind == "withhold-justification")
    raise CliError(f"--fault-drill {text!r}: expected wrong-share:J or withhold-justification:J")


def setup_quiet_logging() -> None:
    """Warnings of the node as text on stderr; py-libp2p's routine gossipsub warnings (GRAFT) hidden."""
    import logging

    from node.logs import setup_logging

    setup_logging("WARNING", "text")
    logging.getLogger("libp2p").setLevel(logging.ERROR)


def load_identity(home: Path, passphrase_file: str) -> tuple[Any, Any, Any]:
    """(config, passphrase, ceremony Identity) of the home."""
    from node.ceremony import Identity
    from node.config import load_config
    from node.crypto.keystore import load_keystore, load_passphrase

    config = load_config(home)
    if passphrase_file:
        passphrase = load_passphrase(passphrase_file)
    else:
        has_file = bool(config.get("keys", "passphrase_file"))
        passphrase = load_passphrase(config.get_path("keys", "passphrase_file") if has_file else None)
    operator = load_keystore(config.get_path("keys", "operator_file"), passphrase).secret.reveal()
    seed = load_keystore(config.get_path("keys", "p2p_file"), passphrase).secret.reveal()
    from node.logs import register_secret

    register_secret(operator)
    register_secret(seed)
    return config, passphrase, Identity(operator_key=operator, p2p_seed=seed, listen=config.get("p2p", "listen"))


def register_ceremony_secrets(machine: Any, result: Any) -> None:
    """Redact from every later log line the secrets the ceremony produced: this operator's share and the
    plaintext of each share a dealer sealed to it (their weighted sum is the share). The operator and
    p2p keys are registered by `load_identity`; revealed shares are public and are not registered."""
    from node.logs import register_secret

    for dealt in machine.get_received_shares():  # the opened sealed shares
        register_secret(dealt)
    if result is not None and result.share is not None:
        register_secret(result.share)


def handle_dkg(args: argparse.Namespace) -> int:
    import trio

    from node.ceremony import Ceremony, CeremonyOptions
    from node.network_file import load_network_file

    home = require_home(args)
    setup_quiet_logging()
    if not (home / NETWORK_FILE).is_file():
        raise CliError(f"{home / NETWORK_FILE}: no network file; run `clearingd init --home {home} "
                       "--network-file FILE` first")
    net = load_network_file(home / NETWORK_FILE)
    if net.keyset is not None:
        raise CliError(f"{home / NETWORK_FILE}: the ceremony is done (key set {net.keyset.keyset_id}, group key "
                       f"{net.keyset.group_key[:18]}...)")
    config, passphrase, identity = load_identity(home, args.passphrase_file)
    share_file = config.get_path("keys", "share_file")
    if share_file.exists():
        raise CliError(f"{share_file} exists: this home already holds a share; use a fresh home")
    from eth_keys import keys

    index = net.find_operator(keys.PrivateKey(identity.operator_key).public_key.to_checksum_address())
    if index is None:
        raise CliError(f"this home's operator is not a genesis operator of network {net.network_id}")
    options = CeremonyOptions(attempt=args.attempt, wait_s=args.wait, phase_timeout_s=args.phase_timeout,
                              linger_s=args.phase_timeout, misbehaviour=parse_fault_drill(args.fault_drill))

    def say(msg: str) -> None:
        print(f"dkg: {msg}", file=sys.stderr, flush=True)

    ceremony = Ceremony(net, index, identity, options, say)
    try:
        outcome = trio.run(ceremony.run)
    finally:  # before the share is written, reported or shows in an error
        register_ceremony_secrets(ceremony.machine, ceremony.machine.result)
    report = outcome.report
    if report["status"] == "ok":
        report |= save_outcome(home, config, net, outcome, passphrase, args.scrypt_n)
    write_report(home / f"ceremony-{args.attempt}.json", report)
    emit(args, report, format_report(report))
    return 0 if report["status"] == "ok" else 1


def save_outcome(home: Path, config: Any, net: Any, outcome: Any, passphrase: Any, scrypt_n: int) -> dict[str, Any]:
    """The share keystore (0600), the network file with the key set, the config's validator set."""
    from node.cli.init import build_network_values, check_identity, write_config
    from node.config import CONFIG_FILE
    from node.crypto.keyshare import write_share_keystore
    from node.network_file import write_network_file

    done = net.with_keyset(outcome.result.keyset) if outcome.result is not None else None
    if done is None:
        raise CliError("the ceremony finished without a share for this operator")
    share_file = config.get_path("keys", "share_file")
    write_share_keystore(share_file, outcome.result, passphrase, scrypt_n=scrypt_n)
    network_hash = write_network_file(home / NETWORK_FILE, done)
    values, chains = build_network_values(home, done, check_identity(home, done, passphrase), {}, "")
    write_config(home / CONFIG_FILE, values, chains)
    return {"network_hash": network_hash, "share_file": str(share_file), "network_file": str(home / NETWORK_FILE)}


def write_report(path: Path, report: dict[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "w") as handle:
        json.dump(report, handle, indent=2, sort_keys=True)


def format_report(r: dict[str, Any]) -> str:
    lines = [f"ceremony attempt {r['attempt']} of network {r['network_id']}: {r['status'].upper()}",
             f"  participants {r['participants']} of {r['operators']}, threshold {r['threshold']}, "
             f"qualified dealers {r['qualified']}"]
    lines += [f"  excluded operator {e['index']} ({e['address']}): {e['reason']}" for e in r["excluded"]]
    lines += [f"  operator {e['index']} ({e['address']}): {e['reason']}" for e in r["without_share"]]
    check = r["key_check"]
    if r["status"] == "ok":
        lines += [f"  key check: partials of {check['verified_partials']} verified, group signature "
                  f"{'verified' if check['group_signature_verified'] else 'NOT verified'}",
                  f"  group key {r['group_key']}", f"  share written to {r['share_file']}",
                  f"  network hash {r['network_hash']}: compare it with the other operators, then deploy"]
    else:
        lines += [f"  failure: {r['failure']}", f"  nothing written but the report; rerun every operator with "
                                               f"`--attempt {r['attempt'] + 1}`"]
    return "\n".join(lines)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("dkg", help="run this operator's part of the genesis key ceremony")
    add_home_option(p)
    add_json_option(p)
    add_passphrase_option(p)
    p.add_argument("--attempt", type=int, default=int(env_default("CLEARING_DKG_ATTEMPT", 1)),
                   help="ceremony attempt (every operator the same; +1 to rerun a failed one)")
    p.add_argument("--wait", type=float, default=float(env_default("CLEARING_DKG_WAIT", 600.0)),
                   help="seconds to wait for the other operators before starting with those present")
    p.add_argument("--phase-timeout", type=float, default=float(env_default("CLEARING_DKG_PHASE_TIMEOUT", 10.0)),
                   help="seconds per DKG phase (deal, response, justification)")
    p.add_argument("--scrypt-n", type=int, default=int(env_default("CLEARING_INIT_SCRYPT_N", 1 << 15)),
                   help="scrypt cost of the share keystore")
    p.add_argument("--fault-drill", default="", help=argparse.SUPPRESS)
    p.set_defaults(func=run(handle_dkg))
