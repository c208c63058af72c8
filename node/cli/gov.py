"""`clearingd gov propose|vote|execute|list|show`: governance on the home chain from the command line.

Where the network is: flags (each with its CLEARING_* variable, named in its help), else the node
home (`--home`, env CLEARING_HOME, which must exist when named; its `config.toml` and the
`CLEARING_<SECTION>_<KEY>` environment, as for `clearingd start`): `[governance].rpc_url` and
`address`, `[consensus].genesis_time` and `epoch_period_s`, `[governance].confirmations`, or a network
file (`--network-file`: governance address, genesis time, epoch period; the RPC URL still comes from
the home or `--rpc-url`). Without a known genesis time and epoch period the command refuses (an epoch
number computed from a guess would make a voter pick a wrong activation epoch). The home chain is
reached through web3 (`bridges.chain.ChainClient`). Transactions are signed by the operator key: the
home's `keys/operator.json` (or `--key-file`: a keystore `clearingd init` wrote, or an Ethereum V3
keystore) with the home's passphrase file or `--passphrase-file` (or CLEARING_KEYSTORE_PASSPHRASE), or,
on the devnet only, `--dev-key N` (anvil's public test mnemonic). Read commands take `--json` (errors
too) and derive the state with the pure `governance.tally` at the home-chain head minus
`--confirmations`; the genesis set is the contract's set version 0 read there, as the node derives
it; `list` shows the epoch of the head block. `execute` first derives the tally and refuses a change
every node declares INVALID, or whose execution NOW would put its activation epoch too close (the
nodes take an executed change only when its activation epoch lies beyond the epoch of the execution
block plus the margin): the contract knows no epochs and would apply to its voting set a change the
nodes never activate; `--force` skips that check. Validator-set changes may be proposed while others
are open; the contract applies them at `execute`, against the set current then, in approval order
(see `Governance.sol`). Exit codes: 0 ok, 1 refused (revert, tally, invalid input), 2 usage.
Persists nothing.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridges.chain import ChainClient, ChainConfig
from bridges.errors import BridgeError
from bridges.governance_chain import GovernanceChain, GovernanceTxReverted, get_dev_key, load_governance_abi
from governance.encoding import outcome_to_dict, refused_vote_to_dict, state_to_dict
from governance.errors import GovernanceError
from governance.lifecycle import ProposalStatus
from governance.proposals import (
    GovernanceGenesis,
    ProposalKind,
    ValidatorSetChange,
    encode_validator_set_change,
)
from governance.tally import GovernanceState, derive_governance_state, get_earliest_activation
from node.cli.common import (
    CliError,
    add_home_option,
    add_passphrase_option,
    env_default,
    fail,
    get_config_home,
)
from node.config import CONFIG_FILE, ConfigError, load_config
from node.consensus.errors import InputsUnavailable
from node.crypto.errors import CryptoError
from node.governance_source import GENESIS_KEYSET_ID, build_genesis_spec, get_genesis_at
from risk.errors import RiskError
from risk.params import RRA1, RiskParams, encode_params, params_with_overrides

CHOICES = {"yes": 1, "no": 2, "abstain": 3}
MAX_PARAMS_FILE_BYTES = 1 << 20

__all__ = ["CliError", "add_chain_options", "derive_from_chain", "emit", "get_operator_key", "params_to_dict", "run"]


def add_chain_options(p: argparse.ArgumentParser) -> None:
    add_home_option(p)
    p.add_argument("--network-file", default=env_default("CLEARING_NETWORK_FILE"),
                   help="take the governance address, genesis time and epoch period from this network file")
    p.add_argument("--rpc-url", default=env_default("CLEARING_HOME_RPC_URL"),
                   help="home-chain JSON-RPC URL (env CLEARING_HOME_RPC_URL; default: the home's [governance].rpc_url)")
    p.add_argument("--governance-address", default=env_default("CLEARING_GOVERNANCE_ADDRESS"),
                   help="Governance contract address (env CLEARING_GOVERNANCE_ADDRESS; default: the network file's, "
                        "or [governance].address)")
    p.add_argument("--confirmations", type=int, default=env_default("CLEARING_HOME_CONFIRMATIONS"),
                   help="read this many blocks below the head (env CLEARING_HOME_CONFIRMATIONS; default: "
                        "[governance].confirmations)")
    p.add_argument("--genesis-time", type=int, default=env_default("CLEARING_GENESIS_TIME"),
                   help="network genesis unix time (env CLEARING_GENESIS_TIME; default: the network file's, or "
                        "[consensus].genesis_time)")
    p.add_argument("--epoch-period", type=int, default=env_default("CLEARING_EPOCH_SECONDS"),
                   help="epoch period in seconds (env CLEARING_EPOCH_SECONDS; default: the network file's, or "
                        "[consensus].epoch_period_s)")


def add_key_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--key-file", default=env_default("CLEARING_KEY_FILE"),
                   help="operator keystore (default: the home's keys/operator.json; env CLEARING_KEY_FILE)")
    add_passphrase_option(p)
    p.add_argument("--dev-key", type=int, default=env_default("CLEARING_DEV_KEY"),
                   help="devnet only: index of anvil's public test account (env CLEARING_DEV_KEY)")


def resolve_chain_options(args: argparse.Namespace) -> argparse.Namespace:
    """Fill `rpc_url`, `governance_address`, `confirmations`, `genesis_time`, `epoch_period` of `args` from
    the flags, else the network file, else the home's config (and environment); refuse unknown ones."""
    if getattr(args, "resolved", False):
        return args
    if not hasattr(args, "home"):  # a caller's explicit settings (node.api.governance.GovernanceReader)
        if getattr(args, "epoch_period", None) is None:
            args.epoch_period = getattr(args, "epoch_seconds", None)
        return args
    home = get_config_home(args)
    has_home = (home / CONFIG_FILE).is_file()
    config = load_config(home) if has_home else load_config(home, env={})  # without a home: flags (and their env)
    net = None
    if getattr(args, "network_file", None):
        from node.network_file import load_network_file

        net = load_network_file(args.network_file)
    gov, cons = config.values["governance"], config.values["consensus"]
    known_clock = has_home
    args.rpc_url = args.rpc_url or gov["rpc_url"]
    args.governance_address = args.governance_address or (
        net.governance.address if net is not None and net.governance is not None else gov["address"])
    args.confirmations = gov["confirmations"] if args.confirmations is None else int(args.confirmations)
    if args.genesis_time is None:
        args.genesis_time = net.genesis_time if net is not None else (int(cons["genesis_time"]) if known_clock else None)
    if args.epoch_period is None:
        args.epoch_period = net.epoch_period_s if net is not None else (
            int(cons["epoch_period_s"]) if known_clock else None)
    args.genesis_time, args.epoch_period = (None if v is None else int(v) for v in (args.genesis_time, args.epoch_period))
    if not args.rpc_url or not args.governance_address:
        raise CliError(f"no home chain: --rpc-url and --governance-address are needed (or --home with a configured "
                       f"[governance]; {home} has " + ("none)" if not has_home else "no [governance])"))
    if not args.genesis_time or not args.epoch_period:
        raise CliError("the network's genesis time and epoch period are unknown: pass --home (a configured node "
                       "home), --network-file, or --genesis-time and --epoch-period")
    args.resolved = True
    return args


def has_chain_options(args: argparse.Namespace) -> bool:
    """Whether a home chain is named at all (flags, network file, or the home's [governance])."""
    home = get_config_home(args)
    return bool(args.rpc_url or args.governance_address or getattr(args, "network_file", None)
                or ((home / CONFIG_FILE).is_file() and load_config(home).values["governance"]["rpc_url"]))


def get_operator_key(args: argparse.Namespace) -> bytes:
    """The signing key: `--key-file` (or the home's operator keystore) with its passphrase, or `--dev-key`."""
    from node.crypto.keystore import load_passphrase, load_private_key

    if getattr(args, "dev_key", None) is not None and not args.key_file:
        return get_dev_key(int(args.dev_key))
    key_file, passphrase_file = args.key_file, getattr(args, "passphrase_file", "") or ""
    home = Path(getattr(args, "home", None) or "~/.clearingd").expanduser()
    if (home / CONFIG_FILE).is_file():
        config = load_config(home)
        key_file = key_file or str(config.get_path("keys", "operator_file"))
        if not passphrase_file and config.get("keys", "passphrase_file"):
            passphrase_file = str(config.get_path("keys", "passphrase_file"))
    if not key_file:
        raise CliError("--key-file or --dev-key is required to send a transaction (or --home with an operator key)")
    return load_private_key(key_file, load_passphrase(passphrase_file or None))


def get_governance(args: argparse.Namespace) -> GovernanceChain:
    from web3 import HTTPProvider, Web3

    resolve_chain_options(args)
    chain_id = int(Web3(HTTPProvider(args.rpc_url, request_kwargs={"timeout": 10})).eth.chain_id)
    client = ChainClient(ChainConfig(chain_id=chain_id, rpc_url=args.rpc_url))
    return GovernanceChain(client, args.governance_address, load_governance_abi())


@dataclass(frozen=True)
class Derived:
    state: GovernanceState
    genesis: GovernanceGenesis
    head_timestamp: int

    @property
    def epoch(self) -> int:
        """The network's epoch at the head block's time."""
        return self.genesis.clock.get_epoch_at(self.head_timestamp)


def derive_from_chain(args: argparse.Namespace, gov: GovernanceChain | None = None) -> Derived:
    """Snapshot at head - confirmations, then the tally; the genesis set is the contract's version 0 read
    at that pin, exactly as the node derives it (`node.governance_source.get_genesis_at`)."""
    resolve_chain_options(args)
    gov = gov or get_governance(args)
    pin = gov.get_pin_at_head(args.confirmations)
    spec = build_genesis_spec(args.genesis_time, args.epoch_period, getattr(args, "genesis_keyset_id", GENESIS_KEYSET_ID))
    genesis = get_genesis_at(gov, pin, spec)
    snap = gov.read_snapshot(pin)
    return Derived(derive_governance_state(genesis, snap.proposals, snap.votes, pin.number), genesis, pin.timestamp)


def params_to_dict(p: RiskParams) -> dict[str, Any]:
    """Readable form of a parameter set (per-key fields as objects, scenarios as a list of objects)."""
    return p.to_dict()


def build_payload(args: argparse.Namespace) -> tuple[int, bytes]:
    if args.kind == "params":
        if args.payload_hex:
            return ProposalKind.PARAMETER_SET, bytes.fromhex(args.payload_hex.removeprefix("0x"))
        if not args.params_file:
            raise CliError("--params-file (overrides over RRA1, JSON object) or --payload-hex is required")
        raw = Path(args.params_file).read_bytes()
        if len(raw) > MAX_PARAMS_FILE_BYTES:
            raise CliError(f"--params-file larger than {MAX_PARAMS_FILE_BYTES} bytes")
        return ProposalKind.PARAMETER_SET, encode_params(params_with_overrides(RRA1, json.loads(raw)))
    if args.threshold is None:
        raise CliError("--threshold is required for a validator-set change")
    change = ValidatorSetChange(tuple(a.lower() for a in args.add), tuple(a.lower() for a in args.remove),
                                args.threshold)
    return ProposalKind.VALIDATOR_SET, encode_validator_set_change(change)


def emit(args: argparse.Namespace, doc: dict[str, Any], text: str) -> None:
    print(json.dumps(doc, sort_keys=True, indent=2) if getattr(args, "json", False) else text)


def handle_propose(args: argparse.Namespace) -> int:
    kind, payload = build_payload(args)
    gov = get_governance(args)
    pid, receipt = gov.propose(get_operator_key(args), kind, payload, args.voting_period_blocks,
                               args.activation_epoch)
    emit(args, {"proposal_id": pid, "tx_hash": receipt["transactionHash"], "block": int(receipt["blockNumber"], 16)},
         f"proposal {pid} created (tx {receipt['transactionHash']})")
    return 0


def handle_vote(args: argparse.Namespace) -> int:
    receipt = get_governance(args).vote(get_operator_key(args), args.id, CHOICES[args.choice])
    emit(args, {"proposal_id": args.id, "choice": args.choice, "tx_hash": receipt["transactionHash"]},
         f"voted {args.choice} on proposal {args.id} (tx {receipt['transactionHash']})")
    return 0


class TallyRefused(Exception):
    """The node's tally refuses the proposal, so `execute` would move the contract's set alone (exit 1)."""


def validate_executable(args: argparse.Namespace, gov: GovernanceChain) -> None:
    """Refuse to execute a change the tally declared INVALID (e.g. an activation epoch that was already too
    close when voting ended), or one whose activation epoch is not beyond the epoch of the latest block
    plus the margin (an execution now would be refused by every node): the contract knows no epochs and
    would apply it to its voting set while no node ever activates it. Other statuses are left to the
    contract's own checks."""
    derived = derive_from_chain(args, gov)
    outcome = derived.state.get_proposal(args.id)
    if outcome is None:
        return
    if outcome.status is ProposalStatus.INVALID:
        raise TallyRefused(f"proposal {args.id} is invalid for every node ({outcome.reason}); "
                           "not executed (--force sends it anyway)")
    if outcome.status is ProposalStatus.APPROVED and outcome.change is not None and not outcome.record.executed:
        now = gov.client.get_block("latest").timestamp
        earliest = get_earliest_activation(derived.genesis, now)
        if outcome.record.activation_epoch < earliest:
            raise TallyRefused(f"proposal {args.id}: executed now (epoch {derived.genesis.clock.get_epoch_at(now)}) "
                               f"its activation epoch {outcome.record.activation_epoch} would be refused by every "
                               f"node (earliest allowed {earliest}); not executed (--force sends it anyway)")


def handle_execute(args: argparse.Namespace) -> int:
    gov = get_governance(args)
    if not args.force:
        validate_executable(args, gov)
    receipt = gov.execute(get_operator_key(args), args.id)
    emit(args, {"proposal_id": args.id, "tx_hash": receipt["transactionHash"]},
         f"executed proposal {args.id} (tx {receipt['transactionHash']})")
    return 0


def handle_list(args: argparse.Namespace) -> int:
    d = derive_from_chain(args)
    doc = state_to_dict(d.state)
    doc["epoch"] = d.epoch
    lines = [f"head block {d.state.head_block}, epoch {d.epoch}"]
    for o in d.state.proposals:
        r, c = o.record, o.count
        lines.append(f"#{r.proposal_id} {ProposalKind(r.kind).name if r.kind in (1, 2) else r.kind} "
                     f"{o.status.value} yes={c.yes} no={c.no} abstain={c.abstain} n={c.n} "
                     f"activation_epoch={r.activation_epoch} ends={r.end_block}"
                     f"{f' executed={r.executed_block}' if r.executed else ''} - {o.reason}")
    emit(args, doc, "\n".join(lines) if d.state.proposals else lines[0] + "\nno proposals")
    return 0


def handle_show(args: argparse.Namespace) -> int:
    d = derive_from_chain(args)
    o = d.state.get_proposal(args.id)
    if o is None:
        raise CliError(f"--id: no proposal {args.id} at block {d.state.head_block}")
    doc = outcome_to_dict(o)
    doc["params"] = None if o.params is None else params_to_dict(o.params)
    doc["validation"] = "ok" if (o.params is not None or o.change is not None) else o.reason
    doc["refused_votes"] = [refused_vote_to_dict(v) for v in d.state.refused_votes if v.proposal_id == args.id]
    text = [f"proposal {args.id}: {o.status.value} - {o.reason}",
            f"tally: yes {o.count.yes}, no {o.count.no}, abstain {o.count.abstain}, cast {o.count.cast} "
            f"of n={o.count.n} (quorum and approval need {o.count.quorum})",
            f"validation: {doc['validation']}"]
    if o.params is not None:
        text.append(f"params_hash: {doc['params_hash']}")
        text += [f"  {k}: {v}" for k, v in doc["params"].items()]
    if o.change is not None:
        text.append(f"change: add {list(o.change.add)} remove {list(o.change.remove)} threshold {o.change.threshold}")
        if o.new_set is not None:
            text.append(f"executed at block {o.record.executed_block}: set version {o.record.resulting_set_version} "
                        f"= {list(o.new_set)}")
    text += [f"refused vote by {v['voter']}: {v['reason']}" for v in doc["refused_votes"]]
    emit(args, doc, "\n".join(text))
    return 0


def run(handler):  # type: ignore[no-untyped-def]
    """Wrap a handler: operator-readable errors (and a JSON object with `--json`) and an exit code."""
    def wrapped(args: argparse.Namespace) -> int:
        try:
            return int(handler(args))
        except (CliError, ConfigError, CryptoError) as exc:
            return fail(args, str(exc), 2)
        except GovernanceTxReverted as exc:
            return refuse(args, f"{exc.error}{exc.args_decoded if exc.args_decoded else ''}")
        except TallyRefused as exc:
            return refuse(args, str(exc))
        except (BridgeError, GovernanceError, InputsUnavailable, RiskError, OSError, ValueError) as exc:
            return fail(args, str(exc), 1)
    return wrapped


def refuse(args: argparse.Namespace, message: str) -> int:
    import sys

    print(f"refused: {message}", file=sys.stderr)
    if getattr(args, "json", False):
        print(json.dumps({"error": f"refused: {message}", "exit_code": 1}, sort_keys=True))
    return 1


def register(subparsers: argparse._SubParsersAction) -> None:
    gov = subparsers.add_parser("gov", help="governance proposals and votes on the home chain")
    sub = gov.add_subparsers(dest="gov_command", metavar="SUBCOMMAND")
    sub.required = True
    p = sub.add_parser("propose", help="create a proposal (PARAMETER_SET or VALIDATOR_SET)")
    p.add_argument("--kind", choices=("params", "validators"), required=True)
    p.add_argument("--params-file", help="JSON object of parameter overrides over RRA1 (complete set is sent)")
    p.add_argument("--payload-hex", help="raw canonical parameter encoding (hex)")
    p.add_argument("--add", action="append", default=[], help="validator operator address to add (repeat)")
    p.add_argument("--remove", action="append", default=[], help="validator operator address to remove (repeat)")
    p.add_argument("--threshold", type=int, help="signing threshold of the new set")
    p.add_argument("--voting-period-blocks", type=int, required=True)
    p.add_argument("--activation-epoch", type=int, required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run(handle_propose))
    v = sub.add_parser("vote", help="vote yes/no/abstain on a proposal")
    v.add_argument("--id", type=int, required=True)
    v.add_argument("--choice", choices=tuple(CHOICES), required=True)
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=run(handle_vote))
    x = sub.add_parser("execute", help="apply an approved validator-set change after its voting period")
    x.add_argument("--id", type=int, required=True)
    x.add_argument("--force", action="store_true",
                   help="send even when the tally declares it invalid")
    x.add_argument("--json", action="store_true")
    x.set_defaults(func=run(handle_execute))
    ls = sub.add_parser("list", help="all proposals with status, reason and tally")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=run(handle_list))
    sh = sub.add_parser("show", help="one proposal: decoded parameter set, validation and tally")
    sh.add_argument("--id", type=int, required=True)
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=run(handle_show))
    for sp in (p, v, x, ls, sh):
        add_chain_options(sp)
    for sp in (p, v, x):
        add_key_options(sp)
