"""`clearingd devnet --governance-demo`: a parameter change voted on chain and activated at an epoch.

The devnet of `node.devnet.runner` (two anvil chains, four validator processes, demo book; no mark
change, so the margin moves only with the parameters) runs a few signed epochs on the genesis
parameter set RRA-1. Then validator 0 proposes, with its operator key, the complete canonical
encoding of RRA-1 with wider scan ranges (`DEMO_OVERRIDES`: BTC 0.15 -> 0.25, ETH 0.20 -> 0.25, so
the hedged account, whose BTC legs offset, moves too), validators 0..2 vote yes, and the activation
epoch is set a few epochs after the estimated end of the voting period (the period is in blocks; the
devnet mines one block per second). Every validator reads the schedule from the contract at each
epoch's pinned home-chain block (`node.governance_source`), so from the activation epoch on every
signed state carries the new parameters hash and the demo IMs rise.

The run stops `EPOCHS_AFTER_ACTIVATION` epochs after activation. The summary is the runner's
(`params_hash_by_epoch`, `im_by_epoch`, ...) plus per-epoch `params_hash_at_validators` and a
`governance` object: proposal id, activation epoch, status, votes, both hashes, and whether the CLI's
derivation (`clearingd gov`, same genesis time and epoch seconds) agrees with the node's.
Persists: the devnet home folder (as the runner does).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from node.devnet.homes import DevnetError
from node.devnet.runner import (
    MAX_RUN_S_PER_EPOCH,
    POLL_S,
    STARTUP_GRACE_S,
    DevnetOptions,
    DevnetRun,
    check_accounts,
    get_latest_states,
    get_publications,
    record_epoch,
    setup,
    start_validator,
)
from node.devnet.seed import get_demo_accounts

DEMO_OVERRIDES: dict[str, Any] = {"version": 2, "price_scan_range": {"BTC": 0.25, "ETH": 0.25}}
PROPOSE_AFTER_EPOCHS = 2  # signed epochs on RRA-1 before the proposal
VOTING_PERIOD_BLOCKS = 8  # ~8 s on the devnet: three votes at ~1 s each fit easily
VOTING_SLACK_S = 3  # block-time jitter allowance when estimating the end of voting
ACTIVATION_EXTRA_EPOCHS = 1  # beyond the governance margin: room for the slowest validator's pin
EPOCHS_AFTER_ACTIVATION = 2
YES_VOTERS = 3  # validators 0..2 (the threshold of the 4-validator devnet)
PUBLISH_WAIT_S = 10.0


@dataclass
class DemoProgress:
    """What the demo has done so far (mutable: filled in while the devnet runs)."""

    history: dict[int, dict[str, Any]] = field(default_factory=dict)
    first_epoch: int | None = None
    last_seen: int = -1
    proposal_id: int = 0
    proposed_at_epoch: int = -1
    activation_epoch: int = -1
    end_block: int = 0
    voters: list[str] = field(default_factory=list)


def build_demo_params() -> tuple[bytes, bytes, bytes]:
    """(payload, new params hash, genesis params hash): the complete canonical encoding, never a diff."""
    from governance.params import compute_params_hash
    from risk.params import RRA1, encode_params, params_with_overrides

    params = params_with_overrides(RRA1, DEMO_OVERRIDES)
    return encode_params(params), compute_params_hash(params), compute_params_hash(RRA1)


def get_operator_key(run: DevnetRun, index: int) -> bytes:
    """Validator `index`'s operator key, decrypted from its devnet home with the devnet passphrase file."""
    from node.config import load_config, load_validator_secrets

    return load_validator_secrets(load_config(run.homes[index].path, env={})).operator_key


def get_governance_chain(run: DevnetRun) -> Any:
    from bridges.chain import ChainClient, ChainConfig
    from bridges.governance_chain import GovernanceChain, load_governance_abi

    home = run.chains[0]
    return GovernanceChain(ChainClient(ChainConfig(home.chain_id, home.rpc_url)), run.governance,
                           load_governance_abi())


def compute_activation_epoch(head_timestamp: int, genesis_time: int, epoch_seconds: int) -> int:
    """First safe activation epoch for a proposal sent now: after the voting period's estimated end
    epoch, the governance margin (`GovernanceGenesis.activation_margin_epochs`) and one extra epoch."""
    from governance.proposals import GovernanceGenesis

    margin = GovernanceGenesis.__dataclass_fields__["activation_margin_epochs"].default
    end_ts = head_timestamp + 1 + VOTING_PERIOD_BLOCKS + VOTING_SLACK_S
    end_epoch = (end_ts - genesis_time) // epoch_seconds
    return int(end_epoch + margin + 1 + ACTIVATION_EXTRA_EPOCHS)  # type: ignore[operator]


def propose_and_vote(run: DevnetRun, progress: DemoProgress, say: Callable[[str], None]) -> None:
    """Validator 0 proposes the demo parameter set; validators 0..YES_VOTERS-1 vote yes."""
    from governance.proposals import ProposalKind, VoteChoice

    gov = get_governance_chain(run)
    payload, new_hash, _ = build_demo_params()
    head = gov.client.get_block("latest")
    activation = compute_activation_epoch(head.timestamp, int(run.genesis_time), int(run.options.epoch_period_s))
    pid, receipt = gov.propose(get_operator_key(run, 0), ProposalKind.PARAMETER_SET, payload,
                               VOTING_PERIOD_BLOCKS, activation)
    created = int(receipt["blockNumber"], 16)
    say(f"governance: validator 0 proposed #{pid} (params 0x{new_hash.hex()[:12]}..., scan ranges "
        f"{DEMO_OVERRIDES['price_scan_range']}) at block {created}, voting until block "
        f"{created + VOTING_PERIOD_BLOCKS}, activation epoch {activation}")
    for i in range(YES_VOTERS):
        gov.vote(get_operator_key(run, i), pid, VoteChoice.YES)
        progress.voters.append(run.homes[i].address)
        say(f"governance: validator {i} voted yes on #{pid}")
    progress.proposal_id, progress.activation_epoch = pid, activation
    progress.end_block, progress.proposed_at_epoch = created + VOTING_PERIOD_BLOCKS, progress.last_seen


def get_params_hashes(run: DevnetRun, epoch: int) -> list[str | None]:
    """Each validator's signed-state params hash for `epoch` over gRPC (None where it holds none)."""
    import grpc

    from node.pb.clearing.api.v1 import api_pb2, api_pb2_grpc

    out: list[str | None] = []
    for h in run.homes:
        try:
            with grpc.insecure_channel(h.api_address) as channel:
                st = api_pb2_grpc.MarginServiceStub(channel).GetSignedState(
                    api_pb2.GetSignedStateRequest(epoch=epoch), timeout=2).state
            out.append("0x" + bytes(st.params_hash).hex())
        except grpc.RpcError:
            out.append(None)
    return out


def get_demo_ims(run: DevnetRun, epoch: int) -> dict[str, float]:
    """Demo accounts' IM (USD) at `epoch` from the first validator that serves all of them over gRPC."""
    import grpc

    from node.api.client import get_margin, open_api_channel

    accounts = get_demo_accounts()
    for h in run.homes:
        channel = open_api_channel(h.api_address)
        try:
            return {name: get_margin(channel, account, epoch).report.margin.initial_margin_micro_usd / 1e6
                    for name, account in accounts.items()}
        except grpc.RpcError:
            continue
        finally:
            channel.close()
    return {}


def record_new_epochs(run: DevnetRun, progress: DemoProgress, say: Callable[[str], None]) -> None:
    states = get_latest_states(run)
    if not all(st is not None for st in states):
        return
    latest = min(int(st.epoch) for st in states)
    if latest <= progress.last_seen or latest <= 0:
        return
    progress.first_epoch = latest if progress.first_epoch is None else progress.first_epoch
    for epoch in range(max(progress.first_epoch, progress.last_seen + 1), latest + 1):
        entry = record_epoch(run, epoch, say)
        entry["params_hash_at_validators"] = get_params_hashes(run, epoch)
        if len(entry["im"]) < len(get_demo_accounts()):  # validator 0 may not serve it yet: ask the others
            entry["im"] = get_demo_ims(run, epoch)
        progress.history[epoch] = entry
    progress.last_seen = latest


def is_finished(progress: DemoProgress, min_epochs: int) -> bool:
    if progress.proposal_id == 0 or progress.first_epoch is None:
        return False
    observed = progress.last_seen - progress.first_epoch + 1
    return progress.last_seen >= progress.activation_epoch + EPOCHS_AFTER_ACTIVATION and observed >= min_epochs


def watch_governance(run: DevnetRun, say: Callable[[str], None]) -> DemoProgress:
    """Record every epoch; propose and vote after PROPOSE_AFTER_EPOCHS; stop after the activation."""
    opts = run.options
    progress = DemoProgress()
    expected = PROPOSE_AFTER_EPOCHS + (VOTING_PERIOD_BLOCKS + VOTING_SLACK_S) // max(1, int(opts.epoch_period_s)) \
        + 3 + ACTIVATION_EXTRA_EPOCHS + EPOCHS_AFTER_ACTIVATION + max(0, opts.epochs or 0)
    budget = STARTUP_GRACE_S + MAX_RUN_S_PER_EPOCH * (expected + 2)
    started = time.monotonic()
    while time.monotonic() - started < budget:
        dead = [i for i, p in enumerate(run.processes) if p.poll() is not None]
        if dead:
            raise DevnetError(f"validator(s) {dead} exited; see {opts.home / 'logs'}")
        record_new_epochs(run, progress, say)
        done = 0 if progress.first_epoch is None else progress.last_seen - progress.first_epoch + 1
        if progress.proposal_id == 0 and done >= PROPOSE_AFTER_EPOCHS:
            propose_and_vote(run, progress, say)
        if is_finished(progress, opts.epochs or 0):
            return progress
        time.sleep(POLL_S)
    raise DevnetError(f"governance demo unfinished within {budget:.0f}s: last signed epoch {progress.last_seen}, "
                      f"activation epoch {progress.activation_epoch}")


def get_governance_report(run: DevnetRun, progress: DemoProgress) -> dict[str, Any]:
    """Proposal outcome as the node derives it (its schedule source) and as the CLI derives it."""
    from node.cli.gov import derive_from_chain
    from node.governance_source import GovernanceScheduleSource, build_governance_genesis

    gov = get_governance_chain(run)
    genesis = build_governance_genesis([h.address for h in run.homes], run.options.threshold, run.genesis_time,
                                       run.options.epoch_period_s)
    pin = gov.get_pin_at_head(1)
    node_state = GovernanceScheduleSource(gov, genesis).get_state(pin)
    cli_args = argparse.Namespace(rpc_url=run.chains[0].rpc_url, governance_address=run.governance,
                                  confirmations=1, genesis_time=int(run.genesis_time),
                                  epoch_seconds=int(run.options.epoch_period_s))
    cli_state = derive_from_chain(cli_args, gov).state
    outcome = node_state.get_proposal(progress.proposal_id)
    cli_outcome = cli_state.get_proposal(progress.proposal_id)
    payload, new_hash, genesis_hash = build_demo_params()
    if outcome is None or cli_outcome is None:
        raise DevnetError(f"governance: proposal {progress.proposal_id} not found at home block {pin.number}")
    return {
        "proposal_id": progress.proposal_id, "proposer": run.homes[0].address,
        "proposed_after_epoch": progress.proposed_at_epoch, "activation_epoch": progress.activation_epoch,
        "end_block": progress.end_block, "voting_period_blocks": VOTING_PERIOD_BLOCKS,
        "status": outcome.status.value, "reason": outcome.reason,
        "votes": {"yes": outcome.count.yes, "no": outcome.count.no, "abstain": outcome.count.abstain,
                  "n": outcome.count.n, "voters": list(progress.voters)},
        "overrides": DEMO_OVERRIDES, "payload_bytes": len(payload),
        "params_hash": "0x" + new_hash.hex(), "genesis_params_hash": "0x" + genesis_hash.hex(),
        "schedule": [{"activation_epoch": v.activation_epoch, "params_hash": "0x" + v.params_hash.hex(),
                      "proposal_id": v.proposal_id} for v in node_state.schedule.versions],
        "cli_agrees": (cli_outcome.status == outcome.status
                       and cli_state.schedule.versions == node_state.schedule.versions),
        "cli_hint": f"clearingd gov show --id {progress.proposal_id} --rpc-url {run.chains[0].rpc_url} "
                    f"--governance-address {run.governance} --genesis-time {int(run.genesis_time)} "
                    f"--epoch-seconds {int(run.options.epoch_period_s)} --confirmations 1",
    }


def build_summary(run: DevnetRun, progress: DemoProgress) -> dict[str, Any]:
    history = progress.history
    deadline = time.monotonic() + PUBLISH_WAIT_S
    published, gas = get_publications(run)
    while time.monotonic() < deadline and not all(progress.last_seen in v for v in published.values()):
        time.sleep(POLL_S)
        published, gas = get_publications(run)
    common = [e for e in published[str(run.seeded[0].chain_id)] if all(e in v for v in published.values())]
    check_epoch = max(common) if common else progress.last_seen
    accounts = check_accounts(run, check_epoch)
    return {
        "epochs_signed": sum(1 for h in history.values() if h["identical_at_all_validators"]),
        "epochs_observed": len(history), "first_epoch": progress.first_epoch, "last_epoch": progress.last_seen,
        "validators": len(run.homes), "threshold": run.options.threshold,
        "published": {cid: len(v) for cid, v in published.items()}, "published_epochs": published,
        "publish_gas": {"mean": int(sum(gas) / len(gas)) if gas else None, "max": max(gas, default=None),
                        "min": min(gas, default=None)},
        "mark_change_after_epoch": None,
        "accounts": accounts, "checked_epoch": check_epoch,
        "proof_verified_on_chain": all(all(a["proof_verified_on_chain"].values()) for a in accounts.values()),
        "params_hash_by_epoch": {str(e): h["params_hash"] for e, h in sorted(history.items())},
        "params_hash_at_validators": {str(e): h["params_hash_at_validators"] for e, h in sorted(history.items())},
        "identical_by_epoch": {str(e): h["identical_at_all_validators"] for e, h in sorted(history.items())},
        "im_by_epoch": {str(e): h["im"] for e, h in sorted(history.items())},
        "signers_by_epoch": {str(e): h["signers"] for e, h in sorted(history.items())},
        "governance": get_governance_report(run, progress),
        "home": str(run.options.home),
    }


def run_governance_demo(options: DevnetOptions, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the devnet with the governance demo; returns the summary ({} when interrupted)."""
    from dataclasses import replace

    if options.epoch_period_s != int(options.epoch_period_s):
        raise DevnetError(f"--epoch-period: the governance demo needs whole seconds, got {options.epoch_period_s}")
    run = DevnetRun(replace(options, crash_epoch=None))  # no mark change: only the parameters move the margin
    log_dir = options.home / "logs"
    try:
        setup(run, say)
        log_dir.mkdir(parents=True, exist_ok=True)
        run.processes = [start_validator(h, log_dir) for h in run.homes]
        say(f"validators: {len(run.processes)} processes; logs in {log_dir}; genesis in "
            f"{max(0.0, run.genesis_time - time.time()):.1f}s, epoch {options.epoch_period_s}s; governance demo")
        progress = watch_governance(run, say)
        return build_summary(run, progress)
    except KeyboardInterrupt:
        say("interrupted: stopping validators and chains")
        return {}
    finally:
        run.stop()
