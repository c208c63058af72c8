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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from node.devnet.homes import DevnetError
from node.devnet.runner import DevnetOptions, DevnetRun, WatchState, run_devnet

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
    """Validator `index`'s operator key, decrypted from its devnet home with the devnet passphrase file
    (only the operator keystore: a joining home holds no share keystore)."""
    from node.config import load_config
    from node.crypto.keystore import load_keystore, load_passphrase

    config = load_config(run.homes[index].path, env={})
    passphrase = load_passphrase(config.get_path("keys", "passphrase_file"))
    return load_keystore(config.get_path("keys", "operator_file"), passphrase).secret.reveal()


def get_governance_chain(run: DevnetRun) -> Any:
    from bridges.chain import ChainClient, ChainConfig
    from bridges.governance_chain import GovernanceChain, load_governance_abi

    home = run.chains[0]
    return GovernanceChain(ChainClient(ChainConfig(home.chain_id, home.rpc_url)), run.governance,
                           load_governance_abi())


def compute_activation_epoch(head_timestamp: int, genesis_time: int, epoch_seconds: int,
                             extra_epochs: int = ACTIVATION_EXTRA_EPOCHS) -> int:
    """First safe activation epoch for a proposal sent now: after the voting period's estimated end
    epoch, the governance margin (`GovernanceGenesis.activation_margin_epochs`) and `extra_epochs`."""
    from governance.proposals import GovernanceGenesis

    margin = GovernanceGenesis.__dataclass_fields__["activation_margin_epochs"].default
    end_ts = head_timestamp + 1 + VOTING_PERIOD_BLOCKS + VOTING_SLACK_S
    end_epoch = (end_ts - genesis_time) // epoch_seconds
    return int(end_epoch + margin + 1 + extra_epochs)  # type: ignore[operator]


def submit_and_vote(run: DevnetRun, kind: Any, payload: bytes, what: str, say: Callable[[str], None], *,
                    voters: Sequence[int] = tuple(range(YES_VOTERS)),
                    extra_epochs: int = ACTIVATION_EXTRA_EPOCHS) -> tuple[int, int, int, list[str]]:
    """Validator 0 proposes `payload`; the validators `voters` (node indices) vote yes with their
    operator keys; activation `extra_epochs` after the earliest allowed epoch.

    Returns (proposal id, activation epoch, last voting block, voter addresses)."""
    from governance.proposals import VoteChoice

    gov = get_governance_chain(run)
    head = gov.client.get_block("latest")
    activation = compute_activation_epoch(head.timestamp, int(run.genesis_time), int(run.options.epoch_period_s),
                                          extra_epochs)
    pid, receipt = gov.propose(get_operator_key(run, 0), kind, payload, VOTING_PERIOD_BLOCKS, activation)
    created = int(receipt["blockNumber"], 16)
    say(f"governance: validator 0 proposed #{pid} ({what}) at block {created}, voting until block "
        f"{created + VOTING_PERIOD_BLOCKS}, activation epoch {activation}")
    addresses = []
    for i in voters:
        gov.vote(get_operator_key(run, i), pid, VoteChoice.YES)
        addresses.append(run.homes[i].address)
        say(f"governance: validator {i} voted yes on #{pid}")
    return pid, activation, created + VOTING_PERIOD_BLOCKS, addresses


def propose_and_vote(run: DevnetRun, progress: DemoProgress, say: Callable[[str], None]) -> None:
    """Validator 0 proposes the demo parameter set; validators 0..YES_VOTERS-1 vote yes."""
    from governance.proposals import ProposalKind

    payload, new_hash, _ = build_demo_params()
    what = f"params 0x{new_hash.hex()[:12]}..., scan ranges {DEMO_OVERRIDES['price_scan_range']}"
    pid, activation, end_block, voters = submit_and_vote(run, ProposalKind.PARAMETER_SET, payload, what, say)
    progress.voters.extend(voters)
    progress.proposal_id, progress.activation_epoch = pid, activation
    progress.end_block, progress.proposed_at_epoch = end_block, progress.last_seen


def get_governance_report(run: DevnetRun, progress: DemoProgress) -> dict[str, Any]:
    """Proposal outcome as the node derives it (its schedule source) and as the CLI derives it."""
    from node.cli.gov import derive_from_chain
    from node.governance_source import GovernanceScheduleSource, build_governance_genesis

    gov = get_governance_chain(run)
    genesis = build_governance_genesis([h.address for h in run.genesis_homes], run.options.threshold, run.genesis_time,
                                       run.options.epoch_period_s)
    pin = gov.get_pin_at_head(1)
    node_state = GovernanceScheduleSource(gov, genesis).get_state(pin)
    cli_args = argparse.Namespace(rpc_url=run.chains[0].rpc_url, governance_address=run.governance,
                                  confirmations=1, genesis_time=int(run.genesis_time),
                                  epoch_period=int(run.options.epoch_period_s), resolved=True)
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
                    f"--epoch-period {int(run.options.epoch_period_s)} --confirmations 1",
    }


def run_governance_demo(options: DevnetOptions, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the devnet with the governance demo; returns the summary ({} when interrupted)."""
    from dataclasses import replace

    if options.epoch_period_s != int(options.epoch_period_s):
        raise DevnetError(f"--epoch-period: the governance demo needs whole seconds, got {options.epoch_period_s}")
    progress = DemoProgress()

    def hook(run: DevnetRun, ws: WatchState, say: Callable[[str], None]) -> None:
        progress.last_seen = ws.last_seen
        if progress.proposal_id == 0 and ws.done >= PROPOSE_AFTER_EPOCHS:
            propose_and_vote(run, progress, say)

    def is_finished(run: DevnetRun, ws: WatchState) -> bool:
        return (progress.proposal_id != 0 and ws.last_seen >= progress.activation_epoch + EPOCHS_AFTER_ACTIVATION
                and ws.done >= (run.options.epochs or 0))

    expected = PROPOSE_AFTER_EPOCHS + (VOTING_PERIOD_BLOCKS + VOTING_SLACK_S) // max(1, int(options.epoch_period_s)) \
        + 3 + ACTIVATION_EXTRA_EPOCHS + EPOCHS_AFTER_ACTIVATION + max(0, options.epochs or 0)
    # no mark change: only the parameters move the margin
    return run_devnet(replace(options, crash_epoch=None), say, hook=hook, is_finished=is_finished,
                      budget_epochs=expected,
                      extend=lambda run, ws: {"governance": get_governance_report(run, progress)})
