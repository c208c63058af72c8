"""`clearingd devnet --validator-change-demo`: a validator-set change voted on chain, same group key.

Operator-driven resharing at the activation epoch. The validators do NOT yet switch key sets live:
each validator process holds one fixed validator set, so the devnet plays the operators. Steps:

1. The devnet of `node.devnet.runner` (no mark change) runs 4 validators (t = 3) for a few epochs.
2. A fifth home is created with `clearingd init` (its own operator and p2p keys, no share yet).
   Validator 0 proposes a VALIDATOR_SET change (add the fifth operator, remove validator 3,
   threshold floor(2n/3)+1 = 3 for n = 4), validators 0..2 vote yes, and once the voting period has
   ended the devnet (anyone) calls `Governance.execute`.
3. At the activation epoch, after the last old-set epoch is signed: stop every validator process;
   decrypt the old shares from the homes' keystores; run `run_reshare_in_process` (old holders 1..4
   deal, old 1..3 continue as new 1..3, the fifth home receives new share 4); write the new share
   keystores (key set 2) into the new set's homes; rotate the key-set id on every registry with an
   admin message signed by the OLD group key (t old partials combined) carrying the SAME group key;
   rewrite the new set's configs (operators, bootstrap, fresh ports) and restart them.
   The restarted configs leave `[governance].address` empty: the node's governance reader checks
   that the contract's genesis set equals `[validator_set].operators`, which no longer holds after
   the change, so the new set runs on the static genesis parameter set (this demo changes no
   parameter). Epochs that fall into the restart gap are not signed by anyone.
4. The summary adds `validator_change`: proposal outcome, group key and key-set id on each registry
   before and after, the new set's operators, signers of the epochs after the change (0-based
   indices into the new set) and whether they are published on every chain, and the check that a
   partial from the removed validator's old share verifies against no new public share and does
   not combine with new partials into a valid group signature.

Persists: the devnet home folder (as the runner does; the new set logs to `logs/keyset2/`); the
removed validator's home keeps its old (retired) share keystore; the continuing homes' old share
keystores are replaced; `devnet.json` lists the new set's validators.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from node.devnet.governance_demo import PROPOSE_AFTER_EPOCHS, VOTING_PERIOD_BLOCKS
from node.devnet.homes import DEVNET_SCRYPT_N, DevnetError, NodeHome, init_home
from node.devnet.runner import DevnetOptions, DevnetRun, WatchState, run_devnet, start_validator

REMOVED_INDEX = 3  # 0-based validator removed from the set
EPOCHS_AFTER_CHANGE = 3  # epochs signed by the new set before the run ends
RESTART_BUDGET_EPOCHS = 3  # the new set must sign within STARTUP_GRACE_S + this many epochs' run budget
PROBE_MESSAGE = b"clearing-devnet-validator-change-probe"


@dataclass
class ChangeProgress:
    """What the demo has done so far (mutable: filled in while the devnet runs)."""

    new_home: NodeHome | None = None
    proposal_id: int = 0
    activation_epoch: int = -1
    end_block: int = 0
    executed: bool = False
    execute_block: int = 0
    voters: list[str] = field(default_factory=list)
    changed_after_epoch: int = -1
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    rotations: dict[str, Any] = field(default_factory=dict)
    removed_probe: dict[str, Any] = field(default_factory=dict)
    new_operators: list[str] = field(default_factory=list)
    new_threshold: int = 0


def create_new_home(out: Path, index: int, network_id: int) -> NodeHome:
    """`clearingd init` for the joining validator (node index `index`, no share yet)."""
    # the devnet's v0..v3 exist; the joining node is v4
    return init_home(out / f"v{index + 1}", index, out / "passphrase", network_id)


def get_old_shares(run: DevnetRun) -> dict[int, Any]:
    """Old `DkgResult`s decrypted from the devnet homes' share keystores, keyed by share index."""
    from node.crypto.keyshare import load_share_keystore
    from node.crypto.keystore import load_passphrase

    passphrase = load_passphrase(run.options.home / "passphrase")
    results = [load_share_keystore(h.path / "keys" / "share.json", passphrase) for h in run.homes]
    return {int(r.index or 0): r for r in results}  # load_share_keystore always sets the index


def read_registries(run: DevnetRun) -> dict[str, Any]:
    """Per chain id: the registry's key-set id, group key (hex, EIP-2537) and admin nonce."""
    from node.devnet.runner import get_registry

    out = {}
    for s in run.seeded:
        reg = get_registry(s)
        out[str(s.chain_id)] = {"keyset_id": int(reg.functions.keysetId().call()),
                                "group_key": "0x" + bytes(reg.functions.groupPublicKey().call()).hex(),
                                "admin_nonce": int(reg.functions.adminNonce().call())}
    return out


def propose_and_vote(run: DevnetRun, progress: ChangeProgress, ws: WatchState, say: Callable[[str], None]) -> None:
    """Create the joining home; validator 0 proposes the set change; validators 0..2 vote yes."""
    from governance.proposals import ProposalKind, ValidatorSetChange, encode_validator_set_change
    from node.devnet.governance_demo import submit_and_vote

    new_n = len(run.homes)  # one in, one out
    progress.new_threshold = (2 * new_n) // 3 + 1
    progress.new_home = create_new_home(run.options.home, new_n - 1, run.options.network_id)
    for c in run.chains:  # the joining operator pays for publishing
        from bridges.anvil import rpc_call

        rpc_call(c.rpc_url, "anvil_setBalance", [progress.new_home.address, hex(10**21)])
    change = ValidatorSetChange(add=(progress.new_home.address,), remove=(run.homes[REMOVED_INDEX].address,),
                                threshold=progress.new_threshold)
    what = (f"add {progress.new_home.address}, remove {run.homes[REMOVED_INDEX].address}, "
            f"threshold {progress.new_threshold}")
    pid, activation, end_block, voters = submit_and_vote(run, ProposalKind.VALIDATOR_SET,
                                                         encode_validator_set_change(change), what, say)
    progress.voters.extend(voters)
    progress.proposal_id, progress.activation_epoch, progress.end_block = pid, activation, end_block


def execute_when_due(run: DevnetRun, progress: ChangeProgress, say: Callable[[str], None]) -> None:
    """After the voting period, anyone calls `execute` (here: the devnet's deployer key)."""
    from bridges.governance_chain import get_dev_key
    from node.devnet.governance_demo import get_governance_chain

    gov = get_governance_chain(run)
    if gov.client.get_block("latest").number <= progress.end_block:
        return
    receipt = gov.execute(get_dev_key(0), progress.proposal_id)
    progress.executed, progress.execute_block = True, int(receipt["blockNumber"], 16)
    say(f"validator change: #{progress.proposal_id} executed at block {progress.execute_block}")


def reshare(old: dict[int, Any], new_n: int, new_t: int) -> dict[int, Any]:
    """Old holders 1..n deal; old 1..n-1 (all but the removed one) continue as new 1..n-1."""
    from node.crypto.reshare import get_new_holders, run_reshare_in_process

    continuing = {i: i for i in sorted(old) if i != REMOVED_INDEX + 1}
    outcome = run_reshare_in_process(old, new_n, new_t, continuing=continuing, nonce=b"devnet-validator-change")
    holders = get_new_holders(outcome)
    if outcome.failures or sorted(holders) != list(range(1, new_n + 1)):
        raise DevnetError(f"reshare failed: {outcome.failures}; new holders {sorted(holders)}")
    return holders


def rotate_registries(run: DevnetRun, old: dict[int, Any], new_keyset: Any) -> dict[str, Any]:
    """`rotateGroupKey(keyset_id + 1, same key)` on every registry, signed by t old partials combined."""
    from bridges.deploy import ChainSender, get_dev_key
    from bridges.statecodec import compute_admin_digest
    from node.crypto import bls, threshold
    from node.devnet.runner import get_registry

    old_keyset = next(iter(old.values())).keyset
    new_key = bls.g2_to_eip2537(new_keyset.group_public_key)
    signers = [i for i in sorted(old) if i != REMOVED_INDEX + 1][: old_keyset.threshold]
    out = {}
    for s in run.seeded:
        nonce = int(get_registry(s).functions.adminNonce().call())
        digest = compute_admin_digest(run.options.network_id, s.chain_id, s.deployment.registry, nonce,
                                      new_keyset.keyset_id, new_key)
        partials = {i: threshold.partial_sign(int(old[i].share), digest) for i in signers}
        signature = threshold.combine(partials, old_keyset.threshold)
        if not threshold.group_verify(old_keyset.group_public_key, digest, signature):
            raise DevnetError("rotation: the combined old-set signature does not verify")
        receipt = ChainSender(s.rpc_url, get_dev_key(0)).transact(
            "MarginStateRegistry", s.deployment.registry, "rotateGroupKey", new_keyset.keyset_id, new_key,
            bls.g1_to_eip2537(signature))
        out[str(s.chain_id)] = {"status": int(receipt["status"]), "nonce": nonce, "old_signers": signers,
                                "gas": int(receipt["gasUsed"])}
    return out


def compute_removed_probe(old_removed: Any, holders: dict[int, Any]) -> dict[str, Any]:
    """The removed validator's old share against the new key set: partial checks and a combine attempt."""
    from node.crypto import threshold

    ks = next(iter(holders.values())).keyset
    t = ks.threshold
    removed_index = int(old_removed.index)
    partial = threshold.partial_sign(int(old_removed.share), PROBE_MESSAGE)
    verifies = {str(j): threshold.partial_verify(ks.get_public_share(j), PROBE_MESSAGE, partial)
                for j in sorted(holders)}
    others = [j for j in sorted(holders) if j != removed_index][: t - 1]
    mixed = {removed_index: partial} | {j: threshold.partial_sign(int(holders[j].share), PROBE_MESSAGE)
                                        for j in others}
    honest = {j: threshold.partial_sign(int(holders[j].share), PROBE_MESSAGE) for j in sorted(holders)[:t]}
    return {
        "removed_old_index": removed_index,
        "partial_verifies_against_new_public_shares": verifies,
        "mixed_combine_indices": sorted(mixed),
        "mixed_combine_verifies": threshold.group_verify(ks.group_public_key, PROBE_MESSAGE,
                                                         threshold.combine(mixed, t)),
        "new_set_combine_verifies": threshold.group_verify(ks.group_public_key, PROBE_MESSAGE,
                                                           threshold.combine(honest, t)),
    }


def write_new_set(run: DevnetRun, progress: ChangeProgress, holders: dict[int, Any]) -> list[NodeHome]:
    """New share keystores and configs for the new set (operators, bootstrap, fresh ports)."""
    import json

    from node.crypto.keyshare import write_share_keystore
    from node.crypto.keystore import load_passphrase
    from node.devnet.runner import write_run_configs

    assert progress.new_home is not None
    members = [h for h in run.homes if h.index != REMOVED_INDEX] + [progress.new_home]
    passphrase = load_passphrase(run.options.home / "passphrase")
    for j, home in enumerate(members, start=1):
        write_share_keystore(home.path / "keys" / "share.json", holders[j], passphrase, scrypt_n=DEVNET_SCRYPT_N)
    new_homes = write_run_configs(run, members, {"rpc_url": "", "address": ""})  # see the module docstring
    progress.new_operators = [h.address for h in new_homes]
    devnet_file = run.options.home / "devnet.json"
    doc = json.loads(devnet_file.read_text())
    doc["validators"] = [{"home": str(h.path), "address": h.address, "api": h.api_address,
                          "metrics": h.metrics_address} for h in new_homes]
    devnet_file.write_text(json.dumps(doc, indent=2))
    return new_homes


def stop_processes(run: DevnetRun) -> None:
    import signal
    import subprocess

    for p in run.processes:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in run.processes:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)


def change_validator_set(run: DevnetRun, progress: ChangeProgress, ws: WatchState,
                         say: Callable[[str], None]) -> None:
    """Stop the old set, reshare, rotate both registries, write the new homes, restart the new set."""
    progress.before = read_registries(run)
    stop_processes(run)
    say(f"validator change: old set stopped after epoch {ws.last_seen}")
    old = get_old_shares(run)
    holders = reshare(old, len(run.homes), progress.new_threshold)
    new_keyset = next(iter(holders.values())).keyset
    progress.rotations = rotate_registries(run, old, new_keyset)
    progress.after = read_registries(run)
    progress.removed_probe = compute_removed_probe(old[REMOVED_INDEX + 1], holders)
    say(f"validator change: reshared to key set {new_keyset.keyset_id} (threshold {new_keyset.threshold}), "
        f"registries rotated to key-set id {[v['keyset_id'] for v in progress.after.values()]}, same group key "
        f"{[v['group_key'] == progress.before[c]['group_key'] for c, v in progress.after.items()]}")
    new_homes = write_new_set(run, progress, holders)
    log_dir = run.options.home / "logs" / f"keyset{new_keyset.keyset_id}"  # v<node index>.log of the new set
    log_dir.mkdir(parents=True, exist_ok=True)
    run.homes[:] = new_homes
    run.processes[:] = [start_validator(h, log_dir) for h in new_homes]
    progress.changed_after_epoch = ws.last_seen
    say(f"validator change: new set {progress.new_operators} started")
    # epochs of the restart gap are signed by nobody: record from the first epoch every new member holds
    first = wait_first_new_epoch(run, ws.last_seen)
    ws.last_seen = first - 1
    say(f"validator change: every member of the new set holds an epoch >= {first}; recording from there")


def wait_first_new_epoch(run: DevnetRun, after: int) -> int:
    """Block until every new member's latest signed state is past `after`; the lowest such epoch."""
    from node.devnet.runner import MAX_RUN_S_PER_EPOCH, STARTUP_GRACE_S, get_latest_states

    deadline = time.monotonic() + STARTUP_GRACE_S + MAX_RUN_S_PER_EPOCH * RESTART_BUDGET_EPOCHS
    while time.monotonic() < deadline:
        dead = [h.index for h, p in zip(run.homes, run.processes, strict=True) if p.poll() is not None]
        if dead:
            raise DevnetError(f"validator(s) {dead} of the new set exited; see {run.options.home / 'logs'}")
        states = get_latest_states(run)
        if all(st is not None and int(st.epoch) > after for st in states):
            return min(int(st.epoch) for st in states)
        time.sleep(0.5)
    raise DevnetError(f"the new set signed no epoch after {after} within {RESTART_BUDGET_EPOCHS} epochs' budget")


def get_change_report(run: DevnetRun, ws: WatchState, progress: ChangeProgress, removed: str) -> dict[str, Any]:
    """The `validator_change` object of the summary (run after the runner's summary waited for publications)."""
    from node.devnet.governance_demo import get_governance_chain
    from node.devnet.runner import get_publications

    gov = get_governance_chain(run)
    raw = gov.get_validators(gov.get_pin_at_head(0))
    after_epochs = [e for e in sorted(ws.history) if e > progress.changed_after_epoch]
    published, _ = get_publications(run)
    keysets = get_published_keyset_ids(run)
    before_epochs = [e for e in sorted(ws.history) if e <= progress.changed_after_epoch]
    keys_before = {v["group_key"] for v in progress.before.values()}
    keys_after = {v["group_key"] for v in read_registries(run).values()}
    return {
        "proposal_id": progress.proposal_id, "activation_epoch": progress.activation_epoch,
        "end_block": progress.end_block, "executed": progress.executed, "execute_block": progress.execute_block,
        "voters": progress.voters,
        "contract_set": {"version": int(raw[0]), "members": list(raw[1]), "threshold": int(raw[2])},
        "added": progress.new_home.address if progress.new_home else None,
        "removed": removed,
        "new_operators": progress.new_operators, "new_threshold": progress.new_threshold,
        "registries_before": progress.before, "registries_after": read_registries(run),
        "group_key_unchanged": len(keys_before) == 1 and keys_before == keys_after,
        "rotations": progress.rotations,
        "changed_after_epoch": progress.changed_after_epoch,
        "epochs_before_change": before_epochs, "epochs_after_change": after_epochs,
        "signers_after_change": {str(e): ws.history[e]["signers"] for e in after_epochs},
        "published_after_change": {str(e): all(e in v for v in published.values()) for e in after_epochs},
        "signer_addresses_after_change": {str(e): [progress.new_operators[i] for i in ws.history[e]["signers"]]
                                          for e in after_epochs},
        "published_keyset_ids": keysets,
        "removed_share_probe": progress.removed_probe,
    }


def get_published_keyset_ids(run: DevnetRun) -> dict[str, dict[str, int]]:
    """Per chain id, per published epoch: the key-set id the registry recorded (StatePublished)."""
    from node.devnet.runner import get_registry

    out = {}
    for s in run.seeded:
        logs = get_registry(s).events.StatePublished().get_logs(from_block=0)
        out[str(s.chain_id)] = {str(int(log["args"]["epoch"])): int(log["args"]["keysetId"]) for log in logs}
    return out


def run_validator_change_demo(options: DevnetOptions, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the devnet with the validator-change demo; returns the summary ({} when interrupted)."""
    if options.validators != 4 or options.threshold != 3:
        raise DevnetError(f"--validators/--threshold: the validator-change demo runs 4 validators with t = 3, "
                          f"got {options.validators}/{options.threshold}")
    if options.epoch_period_s != int(options.epoch_period_s):
        raise DevnetError(f"--epoch-period: the validator-change demo needs whole seconds, got {options.epoch_period_s}")
    progress = ChangeProgress()
    removed: list[str] = []

    def hook(run: DevnetRun, ws: WatchState, say: Callable[[str], None]) -> None:
        if progress.proposal_id == 0 and ws.done >= PROPOSE_AFTER_EPOCHS:
            removed.append(run.homes[REMOVED_INDEX].address)
            propose_and_vote(run, progress, ws, say)
        elif progress.proposal_id and not progress.executed:
            execute_when_due(run, progress, say)
        elif progress.executed and progress.changed_after_epoch < 0 and ws.last_seen >= progress.activation_epoch - 1:
            change_validator_set(run, progress, ws, say)

    def is_finished(run: DevnetRun, ws: WatchState) -> bool:
        return progress.changed_after_epoch >= 0 and \
            sum(1 for e in ws.history if e > progress.changed_after_epoch) >= EPOCHS_AFTER_CHANGE

    def extend(run: DevnetRun, ws: WatchState) -> dict[str, Any]:
        return {"validator_change": get_change_report(run, ws, progress, removed[0] if removed else "")}

    expected = PROPOSE_AFTER_EPOCHS + VOTING_PERIOD_BLOCKS // max(1, int(options.epoch_period_s)) + 8 \
        + EPOCHS_AFTER_CHANGE + 4
    return run_devnet(replace(options, crash_epoch=None), say, hook=hook, is_finished=is_finished,
                      budget_epochs=expected, extend=extend)
