"""`clearingd devnet --validator-change-demo`: two validator-set changes, each voted on chain and done
live by the nodes (reshare over the validator gossip, same group key, key-set id + 1 per change).

The devnet only plays the voters; it never stops a validator, reshares or rotates a registry:

1. The runner's devnet (two anvil chains, no mark change) starts the 4 genesis validators (t = 3)
   AND a fifth, JOINING validator `v4` (`DevnetOptions.joining = 1`: its own operator and p2p keys,
   no share keystore, the genesis key set's public data in its config, ETH on both chains).
2. Proposal 1 (validator 0): add v4, threshold 4 (n = 5); validators 0..2 vote yes (quorum 3 of 4);
   after the voting period anyone calls `execute`, so the contract's voting set becomes version 1.
   Before the activation epoch the nodes reshare key set 1 -> 2 (v4 a recipient, writes
   `keys/share-2.json`); from it on every epoch is signed under key set 2.
3. Once key set 2 signs: proposal 2 removes v3, threshold 3 (n = 4), voted by v0, v1, v2, v4 (quorum
   ceil(2*5/3) = 4 of the 5-member set) and executed; from its activation the remaining four sign
   under key set 3. v3's process keeps running (an operator would stop it later) but is no signer.
4. Every epoch is recorded once all members of ITS set (derived from the contract as every node
   derives it) hold it; the registries advance their key-set id through `publishState` alone.

The summary adds `validator_change`: per proposal (id, voters, activation, executed block, contract
set after), per epoch (key-set id, signers and their addresses, publication on every chain), the
registries at start and end, `unsigned_epochs`, each node's `status.json` key sets and reshares,
`GetMargin` proofs checked on chain for an epoch of every key set, and the probe that v3's key-set-2
share is useless against key set 3 (its partial verifies under no key-set-3 public share and does
not combine with t-1 key-set-3 partials into a valid group signature); once key set 3 has signed,
v3 has erased that retired share and the probe reports `removed_share_erased` instead.
Persists: the devnet home folder (as the runner does; the nodes write their new share keystores).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from node.devnet.governance_demo import PROPOSE_AFTER_EPOCHS, VOTING_PERIOD_BLOCKS, VOTING_SLACK_S
from node.devnet.homes import DevnetError
from node.devnet.runner import DevnetOptions, DevnetRun, WatchState, check_accounts, run_devnet

JOINING_INDEX = 4  # node index of the joining validator (v4)
REMOVED_INDEX = 3  # node index of the validator removed by proposal 2
ADD_VOTERS = (0, 1, 2)  # 3 of the 4 genesis members
REMOVE_VOTERS = (0, 1, 2, JOINING_INDEX)  # 4 of the 5 members of set version 1
RESHARE_EPOCHS = 3  # extra epochs before each activation: room for the live reshare
EPOCHS_AFTER_CHANGE = 3  # epochs signed under the last key set before the run ends
PROBE_MESSAGE = b"clearing-devnet-validator-change-probe"


@dataclass
class ChangeProposal:
    """One VALIDATOR_SET proposal of the demo (mutable: filled in while the devnet runs)."""

    label: str
    voters_index: tuple[int, ...]
    proposal_id: int = 0
    activation_epoch: int = -1
    end_block: int = 0
    voters: list[str] = field(default_factory=list)
    change: dict[str, Any] = field(default_factory=dict)
    executed_block: int = 0
    contract_set_after: dict[str, Any] = field(default_factory=dict)


@dataclass
class ChangeProgress:
    """The demo's two proposals, the registries at the start and the governance-derived signing sets."""

    add: ChangeProposal = field(default_factory=lambda: ChangeProposal("add", ADD_VOTERS))
    remove: ChangeProposal = field(default_factory=lambda: ChangeProposal("remove", REMOVE_VOTERS))
    registries_start: dict[str, Any] = field(default_factory=dict)
    validator_sets: tuple[Any, ...] = ()  # governance.tally.ValidatorSetVersion, as of the latest read
    reshares_seen: dict[str, str] = field(default_factory=dict)  # "v<i>/#<proposal>" -> last state said
    source: Any = None  # node.governance_source.GovernanceScheduleSource (cached per pin)


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


def read_governance_state(run: DevnetRun, progress: ChangeProgress) -> Any:
    """The `GovernanceState` at the home chain's head (1 confirmation), derived as every node does."""
    from node.devnet.governance_demo import get_governance_chain
    from node.governance_source import GovernanceScheduleSource, build_genesis_spec

    if progress.source is None:  # genesis set read from the contract's version 0, as the nodes do
        spec = build_genesis_spec(run.genesis_time, run.options.epoch_period_s)
        progress.source = GovernanceScheduleSource(get_governance_chain(run), spec)
    return progress.source.get_state(progress.source.gov.get_pin_at_head(1))


def get_set_version(progress: ChangeProgress, epoch: int) -> Any:
    """The signing set (`ValidatorSetVersion`) of `epoch` as of the latest governance read."""
    return [v for v in progress.validator_sets if v.activation_epoch <= epoch][-1]


def get_member_indices(run: DevnetRun, members: tuple[str, ...]) -> list[int]:
    """Node indices of the homes whose operators are `members`, in set order."""
    by_address = {h.address.lower(): h.index for h in run.homes}
    missing = [a for a in members if a.lower() not in by_address]
    if missing:
        raise DevnetError(f"governance set members {missing} have no devnet home")
    return [by_address[a.lower()] for a in members]


def propose(run: DevnetRun, prop: ChangeProposal, add: tuple[str, ...], remove: tuple[str, ...], threshold: int,
            say: Callable[[str], None]) -> None:
    """Validator 0 proposes the change; `prop.voters_index` vote yes; activation leaves room to reshare."""
    from governance.proposals import ProposalKind, ValidatorSetChange, encode_validator_set_change
    from node.devnet.governance_demo import submit_and_vote

    change = ValidatorSetChange(add=add, remove=remove, threshold=threshold)
    prop.change = {"add": list(add), "remove": list(remove), "threshold": threshold}
    what = f"{prop.label}: add {list(add)}, remove {list(remove)}, threshold {threshold}"
    pid, activation, end_block, voters = submit_and_vote(
        run, ProposalKind.VALIDATOR_SET, encode_validator_set_change(change), what, say,
        voters=prop.voters_index, extra_epochs=RESHARE_EPOCHS)
    prop.proposal_id, prop.activation_epoch, prop.end_block = pid, activation, end_block
    prop.voters.extend(voters)


def execute_when_due(run: DevnetRun, prop: ChangeProposal, say: Callable[[str], None]) -> None:
    """After the voting period, anyone calls `execute` (here: the devnet's deployer key)."""
    from bridges.governance_chain import get_dev_key
    from node.devnet.governance_demo import get_governance_chain

    gov = get_governance_chain(run)
    if gov.client.get_block("latest").number <= prop.end_block:
        return
    receipt = gov.execute(get_dev_key(0), prop.proposal_id)
    prop.executed_block = int(receipt["blockNumber"], 16)
    version, members, threshold = gov.get_validators(gov.get_pin_at_head(0))
    prop.contract_set_after = {"version": version, "members": list(members), "threshold": threshold}
    say(f"validator change: #{prop.proposal_id} ({prop.label}) executed at block {prop.executed_block}; "
        f"contract set version {version}: {len(members)} members, threshold {threshold}")


def get_node_status(run: DevnetRun) -> dict[str, dict[str, Any]]:
    """Each node's `status.json` key sets and reshares (empty where it has not written them)."""
    from node.config import load_config
    from node.metrics import read_status_file

    out = {}
    for h in run.homes:
        status = read_status_file(load_config(h.path, env={}).get_path("node", "data_dir") / "status.json") or {}
        out[f"v{h.index}"] = {"keysets": status.get("keysets", {}), "reshares": status.get("reshares", {})}
    return out


def say_reshare_progress(run: DevnetRun, progress: ChangeProgress, say: Callable[[str], None]) -> None:
    """One line per node whenever a reshare's state changes in its `status.json`."""
    for node, status in get_node_status(run).items():
        for pid, r in status["reshares"].items():
            key = f"{node}/#{pid}"
            if isinstance(r, dict) and progress.reshares_seen.get(key) != r.get("state"):
                progress.reshares_seen[key] = str(r.get("state"))
                say(f"reshare #{pid} at {node}: {r.get('state')} (key set {r.get('keyset_id')})"
                    + (f", error {r['error']}" if r.get("error") else ""))


def process_demo_step(run: DevnetRun, progress: ChangeProgress, ws: WatchState, say: Callable[[str], None]) -> None:
    """The watch hook: propose, execute and advance through both changes; refresh the signing sets."""
    add, remove = progress.add, progress.remove
    if not progress.registries_start:
        progress.registries_start = read_registries(run)
    if add.proposal_id:
        progress.validator_sets = read_governance_state(run, progress).validator_sets
        say_reshare_progress(run, progress, say)
    if add.proposal_id == 0 and ws.done >= PROPOSE_AFTER_EPOCHS:
        propose(run, add, (run.homes[JOINING_INDEX].address,), (), 4, say)
    elif add.proposal_id and not add.executed_block:
        execute_when_due(run, add, say)
    elif remove.proposal_id == 0 and ws.last_seen >= add.activation_epoch \
            and ws.history.get(ws.last_seen, {}).get("keyset_id") == 2:
        propose(run, remove, (), (run.homes[REMOVED_INDEX].address,), 3, say)
    elif remove.proposal_id and not remove.executed_block:
        execute_when_due(run, remove, say)


def get_epoch_reports(run: DevnetRun, ws: WatchState, progress: ChangeProgress) -> dict[str, Any]:
    """Per recorded epoch: key-set id (signed and expected), signers, their addresses, publications."""
    from node.devnet.runner import get_publications

    published, _ = get_publications(run)
    keysets = get_published_keyset_ids(run)
    sets_by_id = {v.keyset_id: v for v in progress.validator_sets}
    out = {}
    for e, h in sorted(ws.history.items()):
        members = sets_by_id[h["keyset_id"]].members if h["keyset_id"] in sets_by_id else ()
        out[str(e)] = {
            "keyset_id": h["keyset_id"], "expected_keyset_id": get_set_version(progress, e).keyset_id,
            "signers": h["signers"], "signer_addresses": [members[i] if i < len(members) else None
                                                          for i in h["signers"]],
            "members": [f"v{i}" for i in h["members"]], "identical_at_members": h["identical_at_all_validators"],
            "published": {c: e in v for c, v in published.items()},
            "published_keyset_id": {c: keysets[c].get(str(e)) for c in keysets},
        }
    return out


def get_published_keyset_ids(run: DevnetRun) -> dict[str, dict[str, int]]:
    """Per chain id, per published epoch: the key-set id the registry recorded (StatePublished)."""
    from node.devnet.runner import get_registry

    out = {}
    for s in run.seeded:
        logs = get_registry(s).events.StatePublished().get_logs(from_block=0)
        out[str(s.chain_id)] = {str(int(log["args"]["epoch"])): int(log["args"]["keysetId"]) for log in logs}
    return out


def check_accounts_by_keyset(run: DevnetRun, epochs: dict[str, Any]) -> dict[str, Any]:
    """`GetMargin` proofs checked on every chain's registry at the last epoch of each key set published
    everywhere (the runner's protocol-side check)."""
    out: dict[str, Any] = {}
    for e, r in sorted(epochs.items(), key=lambda kv: int(kv[0])):
        if all(r["published"].values()):
            out[str(r["keyset_id"])] = int(e)
    return {ks: {"epoch": e, "proof_verified_on_chain": all(
        all(a["proof_verified_on_chain"].values()) for a in check_accounts(run, e).values())}
        for ks, e in out.items()}


def compute_removed_probe(home: Path) -> dict[str, Any]:
    """v3's key-set-2 share against key set 3: partial checks and combine attempts (devnet passphrase).
    Once key set 3 has signed, v3 erases that retired share: then only `removed_share_erased` is reported."""
    from node.crypto import threshold
    from node.crypto.keyshare import load_share_keystore
    from node.crypto.keystore import load_passphrase

    removed_file = home / f"v{REMOVED_INDEX}" / "keys" / "share-2.json"
    if not removed_file.exists():
        return {"removed_share_erased": True}
    passphrase = load_passphrase(home / "passphrase")
    removed = load_share_keystore(removed_file, passphrase)
    holders = [load_share_keystore(home / f"v{i}" / "keys" / "share-3.json", passphrase) for i in (0, 1, 2)]
    ks = holders[0].keyset
    t = ks.threshold
    partial = threshold.partial_sign(int(removed.share or 0), PROBE_MESSAGE)
    verifies = {str(j): threshold.partial_verify(ks.get_public_share(j), PROBE_MESSAGE, partial)
                for j in sorted(ks.holders)}
    honest = {int(r.index or 0): threshold.partial_sign(int(r.share or 0), PROBE_MESSAGE) for r in holders}
    helpers = dict(sorted(honest.items())[: t - 1])
    mixed = {}
    for j in sorted(set(ks.holders) - set(helpers)):  # the removed partial in every free position
        signature = threshold.combine(helpers | {j: partial}, t)
        mixed[str(j)] = threshold.group_verify(ks.group_public_key, PROBE_MESSAGE, signature)
    return {
        "removed_share_erased": False,
        "removed_keyset_id": removed.keyset.keyset_id, "removed_old_index": removed.index,
        "new_keyset_id": ks.keyset_id, "new_threshold": t,
        "partial_verifies_against_new_public_shares": verifies,
        "helper_indices": sorted(helpers), "mixed_combine_verifies_at_index": mixed,
        "new_set_combine_verifies": threshold.group_verify(
            ks.group_public_key, PROBE_MESSAGE, threshold.combine(dict(sorted(honest.items())[:t]), t)),
    }


def get_change_report(run: DevnetRun, ws: WatchState, progress: ChangeProgress) -> dict[str, Any]:
    """The `validator_change` object of the summary (run after the runner's summary waited for publications)."""
    state = read_governance_state(run, progress)
    progress.validator_sets = state.validator_sets
    epochs = get_epoch_reports(run, ws, progress)
    end = read_registries(run)
    keys = {v["group_key"] for v in progress.registries_start.values()} | {v["group_key"] for v in end.values()}
    proposals = []
    for prop in (progress.add, progress.remove):
        outcome = state.get_proposal(prop.proposal_id)
        version = next((v for v in state.validator_sets if prop.proposal_id and v.proposal_id == prop.proposal_id),
                       None)
        proposals.append({
            "label": prop.label, "proposal_id": prop.proposal_id, "change": prop.change, "voters": prop.voters,
            "status": outcome.status.value if outcome else None, "reason": outcome.reason if outcome else "",
            "activation_epoch": prop.activation_epoch, "end_block": prop.end_block,
            "executed_block": prop.executed_block, "contract_set_after": prop.contract_set_after,
            "keyset_id": version.keyset_id if version else None,
            "signing_set": list(version.members) if version else [],
            "signing_threshold": version.threshold if version else None})
    return {
        "proposals": proposals,
        "operators": {f"v{h.index}": h.address for h in run.homes},
        "added": run.homes[JOINING_INDEX].address, "removed": run.homes[REMOVED_INDEX].address,
        "first_epoch": ws.first_epoch, "last_epoch": ws.last_seen,
        "epochs": epochs, "unsigned_epochs": list(ws.unsigned),
        "registries_start": progress.registries_start, "registries_end": end,
        "group_key_unchanged": len(keys) == 1,
        "keyset_events": get_keyset_events(run),
        "nodes": get_node_status(run),
        "share_files": {f"v{h.index}": sorted(p.name for p in (h.path / "keys").glob("share*.json"))
                        for h in run.homes},
        "checked_by_keyset": check_accounts_by_keyset(run, epochs),
        "removed_share_probe": compute_removed_probe(run.options.home),
    }


def get_keyset_events(run: DevnetRun) -> dict[str, list[dict[str, int]]]:
    """Per chain id: every `GroupKeyRotated` (old id, new id, admin nonce; 0 = advanced by publishState)."""
    from node.devnet.runner import get_registry

    out = {}
    for s in run.seeded:
        logs = get_registry(s).events.GroupKeyRotated().get_logs(from_block=0)
        out[str(s.chain_id)] = [{"old": int(x["args"]["oldKeysetId"]), "new": int(x["args"]["newKeysetId"]),
                                 "nonce": int(x["args"]["nonce"])} for x in logs]
    return out


def run_validator_change_demo(options: DevnetOptions, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the devnet with the validator-change demo; returns the summary ({} when interrupted)."""
    if options.validators != 4 or options.threshold != 3:
        raise DevnetError(f"--validators/--threshold: the validator-change demo runs 4 validators with t = 3, "
                          f"got {options.validators}/{options.threshold}")
    if options.epoch_period_s != int(options.epoch_period_s):
        raise DevnetError(f"--epoch-period: the validator-change demo needs whole seconds, got {options.epoch_period_s}")
    progress = ChangeProgress()

    def hook(run: DevnetRun, ws: WatchState, say: Callable[[str], None]) -> None:
        process_demo_step(run, progress, ws, say)

    def members(run: DevnetRun, epoch: int) -> list[int]:
        if not progress.validator_sets:
            return list(range(run.options.validators))
        return get_member_indices(run, get_set_version(progress, epoch).members)

    def is_finished(run: DevnetRun, ws: WatchState) -> bool:
        return bool(progress.remove.executed_block) and \
            ws.last_seen >= progress.remove.activation_epoch + EPOCHS_AFTER_CHANGE - 1

    def extend(run: DevnetRun, ws: WatchState) -> dict[str, Any]:
        return {"validator_change": get_change_report(run, ws, progress)}

    per_change = (VOTING_PERIOD_BLOCKS + VOTING_SLACK_S + 6) // max(1, int(options.epoch_period_s)) + 3 + RESHARE_EPOCHS
    expected = PROPOSE_AFTER_EPOCHS + 2 * per_change + EPOCHS_AFTER_CHANGE + 4
    return run_devnet(replace(options, crash_epoch=None, joining=1), say, hook=hook, is_finished=is_finished,
                      budget_epochs=expected, extend=extend, members=members)
