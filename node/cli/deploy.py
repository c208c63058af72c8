"""`clearingd deploy`: deploy a network's production contracts to one chain (run once per chain).

`clearingd deploy --network-file F --rpc-url URL --key-file KEYSTORE [--home-chain] [--demo] [--json]`
reads the network file after the key ceremony (its group key goes into the registry), checks the
endpoint (its chain id must be one of the file's chains, or `--chain-id`; the EIP-2537 precompiles;
a funded deployer), deploys MarginStateRegistry, CollateralVault, PositionLedger and MarketOracle
(owned by the deployer) and, with `--home-chain`, `Governance` (the file's operators and threshold);
`--demo` adds the demo tokens and makes the deployer venue and oracle publisher (devnets only). Each
transaction waits for the chain's `confirmations` (from the file; `--confirmations` overrides).
Resumable: the deployment file (`--deployment-file`, default `deployment-<network>-<chain>.json`
beside F) records every step, so a rerun continues where it stopped (`bridges.deployer`). At the end
the contract addresses (and the governance address on the home chain) are written into F and the new
network hash is printed: operators compare it out of band, then `clearingd init --network-file F`.
The key: any keystore `clearingd init` wrote (`keys/operator.json`) or an Ethereum V3 keystore, with
`--passphrase-file` (or CLEARING_KEYSTORE_PASSPHRASE). Persists the deployment file and F.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from node.cli.common import CliError, add_json_option, add_passphrase_option, emit, env_default, run


def handle_deploy(args: argparse.Namespace) -> int:
    from bridges.deploy import ChainSender
    from bridges.deployer import ChainDeployer, ChainPlan
    from node.crypto.bls import g2_to_eip2537
    from node.crypto.keystore import load_passphrase, load_private_key
    from node.network_file import Contracts, GovernanceSpec, load_network_file, write_network_file

    path = Path(args.network_file)
    net = load_network_file(path)
    if net.keyset is None:
        raise CliError(f"{path}: no key set yet; run the ceremony (`clearingd dkg`) first and deploy with the "
                       "network file it wrote (the registry is built with the group key)")
    key = load_private_key(args.key_file, load_passphrase(args.passphrase_file or None))
    sender = ChainSender(args.rpc_url, "0x" + key.hex(), receipt_timeout_s=args.tx_timeout)
    if args.chain_id is not None and sender.chain_id != args.chain_id:
        raise CliError(f"--chain-id: the endpoint serves chain {sender.chain_id}, expected {args.chain_id}")
    spec = net.get_chain(sender.chain_id)
    if args.home_chain and net.governance is not None and net.governance.chain_id != spec.chain_id:
        raise CliError(f"--home-chain: {path.name} already has Governance on chain {net.governance.chain_id}")
    plan = ChainPlan(chain_id=spec.chain_id, network_id=net.network_id, keyset_id=net.keyset.keyset_id,
                     group_key=g2_to_eip2537(bytes.fromhex(net.keyset.group_key[2:])), home_chain=args.home_chain,
                     operators=tuple(o.address for o in net.operators), threshold=net.threshold, demo=args.demo)
    log_file = Path(args.deployment_file or path.parent / f"deployment-{net.network_id}-{spec.chain_id}.json")
    confirmations = spec.confirmations if args.confirmations is None else args.confirmations

    def say(msg: str) -> None:
        print(f"chain {spec.chain_id}: {msg}", file=sys.stderr, flush=True)

    result = ChainDeployer(sender, plan, log_file, confirmations, args.tx_timeout, say).run()
    d = result.deployment
    contracts = Contracts(registry=d.registry, vault=d.vault, ledger=d.ledger, oracle=d.oracle, deployer=d.deployer,
                          start_block=d.start_block)
    if spec.contracts is not None and spec.contracts != contracts:
        raise CliError(f"{path.name}: chain {spec.chain_id} already lists other contracts ({spec.contracts.registry}); "
                       "refusing to overwrite them")
    governance = GovernanceSpec(spec.chain_id, result.governance, result.governance_block) if result.governance else None
    network_hash = write_network_file(path, net.with_contracts(spec.chain_id, contracts, governance))
    doc: dict[str, Any] = {
        "chain_id": spec.chain_id, "network_id": net.network_id, "registry": d.registry, "vault": d.vault,
        "ledger": d.ledger, "oracle": d.oracle, "governance": result.governance or None, "tokens": dict(d.tokens),
        "deployer": d.deployer, "start_block": d.start_block, "confirmations": confirmations,
        "transactions_sent": result.steps_sent, "deployment_file": str(log_file), "network_file": str(path),
        "network_hash": network_hash, "deployment": json.loads(d.to_json())}
    lines = [f"chain {spec.chain_id} (network {net.network_id}): {result.steps_sent} transaction(s) sent",
             *(f"  {name:<10} {addr}" for name, addr in (("registry", d.registry), ("vault", d.vault),
                                                           ("ledger", d.ledger), ("oracle", d.oracle))),
             *([f"  governance {result.governance}"] if result.governance else []),
             *(f"  token {sym:<5} {addr}" for sym, addr in d.tokens),
             f"network file {path} updated; network hash {network_hash}",
             "next: compare the hash with the other operators, then each runs "
             "`clearingd init --home HOME --network-file FILE --rpc-url CHAIN=URL ...`"]
    emit(args, doc, "\n".join(lines))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("deploy", help="deploy the network's contracts to one chain (resumable)")
    add_json_option(p)
    p.add_argument("--network-file", required=not env_default("CLEARING_NETWORK_FILE"),
                   default=env_default("CLEARING_NETWORK_FILE"),
                   help="the network file with its key set; updated with the addresses (env CLEARING_NETWORK_FILE)")
    p.add_argument("--rpc-url", required=True, help="JSON-RPC endpoint of the chain to deploy to")
    p.add_argument("--key-file", required=True, help="deployer keystore (clearingd init's keys/operator.json, or V3)")
    add_passphrase_option(p)
    p.add_argument("--chain-id", type=int, default=None, help="refuse unless the endpoint serves this chain id")
    p.add_argument("--home-chain", action="store_true", help="also deploy Governance (one chain of the network)")
    p.add_argument("--demo", action="store_true", help="devnets: demo tokens, deployer as venue and publisher")
    p.add_argument("--confirmations", type=int, default=None,
                   help="blocks to wait on each transaction (default: the chain's in the network file)")
    p.add_argument("--deployment-file", default="", help="progress record (default beside the network file)")
    p.add_argument("--tx-timeout", type=float, default=300.0, help="seconds to wait per transaction")
    p.set_defaults(func=run(handle_deploy))
