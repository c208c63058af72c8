"""Home-chain adapter of the Governance contract: pinned reads of proposals and votes, and the
propose / vote / execute transactions of a validator's operator key.

Parse at the edge: contract tuples become `governance.proposals.ProposalRecord` / `VoteRecord`
(lowercase addresses, ints, bytes); the node then calls the pure `governance.tally`. Every read of
one snapshot happens at one pinned block hash (EIP-1898 through `ChainClient`), including the
timestamps of the proposals' end blocks (ancestors of the pin), and the pin is re-validated after
the reads. Reverts are decoded into the contract's custom error name and arguments
(`GovernanceTxReverted`). An executed validator-set change is read with the timestamp of its
execution block (an ancestor of the pin too): the tally takes its activation epoch only beyond the
epoch of that block. Bounds: at most MAX_PROPOSALS_READ live proposals per snapshot (settled ones are
read once and kept, see `read_snapshot`), receipts awaited at most RECEIPT_TIMEOUT_S; deployments choose
the contract's maximum voting period (default DEFAULT_MAX_VOTING_PERIOD_BLOCKS, at most
VOTING_PERIOD_CAP_BLOCKS as the contract).

Settled proposals are kept as `SettledProposal`s anchored at the (number, hash) of the pin they were
read at. Persists nothing itself: a reader given a `SettledStore` (the node's
`node.governance_store.GovernanceStore`, one SQLite file per data dir) loads it at construction and
hands it each newly settled batch after its pin was re-validated. Anchors are re-checked against the
canonical chain at the first snapshot and then every `anchor_check_every` snapshots (one batch of
`eth_getBlockByNumber`, one call per distinct anchor); entries anchored at or above the lowest anchor
no longer canonical (a reorg deeper than `settled_depth`) are dropped, from the store too, and read again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from eth_abi import decode as abi_decode
from eth_account import Account
from eth_utils import keccak, to_checksum_address

from bridges.chain import (
    ChainClient,
    Pin,
    encode_function_call,
    find_function_abi,
    parse_quantity,
)
from bridges.errors import BridgeError, CallReverted, InvalidChainResponse, RpcError
from governance.proposals import GovernanceGenesis, ProposalRecord, VoteRecord, normalize_address
from governance.tally import GovernanceState, derive_governance_state

ARTIFACT_PATH = Path(__file__).resolve().parent / "artifacts" / "Governance.json"
MAX_PROPOSALS_READ = 10_000  # live (not yet settled) proposals read per snapshot
SETTLED_DEPTH_BLOCKS = 256  # a proposal settled this many blocks below the pin is cached (reorg margin)
ANCHOR_CHECK_EVERY = 32  # snapshots between re-checks of the settled proposals' anchor blocks
RECEIPT_TIMEOUT_S = 30.0
RECEIPT_POLL_S = 0.05
NONCE_TAKEN = ("replacement transaction underpriced", "nonce too low")
"""Send errors meaning another transaction of the same key took the nonce (retried with a fresh one)."""
GAS_MARGIN_NUM, GAS_MARGIN_DEN = 12, 10  # 20 % above the estimate
DEFAULT_MAX_VOTING_PERIOD_BLOCKS = 21_600  # 3 days of 12-second blocks; also the execution window
VOTING_PERIOD_CAP_BLOCKS = 100_800  # Governance.sol VOTING_PERIOD_CAP_BLOCKS
LOG = logging.getLogger(__name__)


class GovernanceTxReverted(BridgeError):
    """A governance transaction (or its gas estimate) reverted; `error` is the custom error name."""

    def __init__(self, error: str, args: tuple[Any, ...], raw: str | None) -> None:
        super().__init__(f"Governance reverted: {error}{args if args else ''}")
        self.error = error
        self.args_decoded = args
        self.raw = raw


class GovernanceTxFailed(BridgeError):
    """A governance transaction was mined with status 0 or no receipt arrived in time."""


def load_governance_abi(path: Path = ARTIFACT_PATH) -> list[dict[str, Any]]:
    """ABI from the committed artifact (`scripts/compile_contracts.py` output)."""
    if not path.is_file():
        raise InvalidChainResponse(f"artifact: {path.name} not found; compile the contracts")
    return list(json.loads(path.read_text())["abi"])


def decode_revert(abi: Sequence[dict[str, Any]], data: object) -> GovernanceTxReverted:
    """Map revert bytes to the contract's custom error (name and decoded arguments)."""
    raw = data if isinstance(data, str) else (data.get("data") if isinstance(data, dict) else None)
    if not isinstance(raw, str) or len(raw) < 10:
        return GovernanceTxReverted("UnknownRevert", (), raw if isinstance(raw, str) else None)
    blob = bytes.fromhex(raw[2:])
    for entry in abi:
        if entry.get("type") != "error":
            continue
        types = [i["type"] for i in entry.get("inputs", [])]
        if keccak(text=f"{entry['name']}({','.join(types)})")[:4] == blob[:4]:
            return GovernanceTxReverted(entry["name"], tuple(abi_decode(types, blob[4:])), raw)
    return GovernanceTxReverted("UnknownRevert", (), raw)


@dataclass(frozen=True)
class GovernanceSnapshot:
    """Everything the tally needs, read at one pin."""

    pin: Pin
    proposals: tuple[ProposalRecord, ...]
    votes: tuple[VoteRecord, ...]


@dataclass(frozen=True)
class SettledProposal:
    """A proposal that can no longer change, its votes, and the block (number, hash) it was read at."""

    record: ProposalRecord
    votes: tuple[VoteRecord, ...]
    anchor_number: int
    anchor_hash: bytes


class SettledStore(Protocol):
    """Persistence of one deployment's settled proposals (chain id and contract fixed by the store)."""

    def load(self) -> list[SettledProposal]: ...

    def save(self, entries: Sequence[SettledProposal]) -> None: ...

    def drop_from(self, block_number: int) -> int: ...


def parse_proposal(raw: tuple[Any, ...], end_timestamp: int | None,
                   executed_timestamp: int | None = None) -> ProposalRecord:
    (pid, kind, proposer, payload, created, end, activation, set_version, set_size,
     _yes, _no, _abstain, executed, resulting, executed_block) = raw
    return ProposalRecord(int(pid), int(kind), normalize_address(proposer, "proposer"), bytes(payload),
                          int(created), int(end), int(activation), int(set_version), int(set_size),
                          bool(executed), int(resulting), end_timestamp, int(executed_block), executed_timestamp)


class GovernanceChain:
    """Reads and transactions against one deployed Governance contract."""

    def __init__(self, client: ChainClient, address: str, abi: Sequence[dict[str, Any]],
                 settled_depth: int = SETTLED_DEPTH_BLOCKS, store: SettledStore | None = None,
                 anchor_check_every: int = ANCHOR_CHECK_EVERY) -> None:
        if anchor_check_every < 1:
            raise ValueError(f"anchor_check_every: must be >= 1, got {anchor_check_every}")
        self.client = client
        self.address = normalize_address(address, "governance_address")
        self.abi = list(abi)
        self.settled_depth = settled_depth
        self.store = store
        self.anchor_check_every = anchor_check_every
        self._window: int | None = None  # maxVotingPeriodBlocks (immutable), read once
        self._settled: dict[int, SettledProposal] = {}
        if store is not None:
            self._settled = {e.record.proposal_id: e for e in store.load()}
        self._snapshots_since_check = anchor_check_every  # due at the first snapshot
        self.proposal_reads = 0  # proposals read from the chain (cache misses), for tests

    def _call(self, pin: Pin, name: str, *args: object) -> tuple[Any, ...]:
        fn = find_function_abi(self.abi, name)
        try:
            return self.client.call_function(pin, self.address, fn, args)
        except CallReverted as exc:
            raise decode_revert(self.abi, exc.data) from exc

    def get_pin_at_head(self, confirmations: int = 0) -> Pin:
        header = self.client.get_block(self.client.get_head_number() - confirmations)
        return Pin(self.client.chain_id, header.number, header.hash, header.timestamp)

    def read_snapshot(self, pin: Pin) -> GovernanceSnapshot:
        """Proposals (with end-block timestamps when ended) and votes, all at `pin`.

        A proposal whose execution window closed more than `settled_depth` blocks below the pin can no
        longer change (no vote, no execution), so it is read once and kept; each snapshot re-reads only
        the live ones and the new ids. The contract caps live proposals per member
        (MAX_LIVE_PROPOSALS_PER_MEMBER), so a spamming member cannot make an epoch's read unbounded;
        more than MAX_PROPOSALS_READ live proposals stall the epoch with a named error."""
        count = int(self._call(pin, "proposalCount")[0])
        if self._window is None:
            self._window = self.get_max_voting_period(pin)
        self._check_anchors_when_due()
        proposals: list[ProposalRecord] = []
        votes: list[VoteRecord] = []
        fresh: list[SettledProposal] = []
        live_reads = 0
        for pid in range(1, count + 1):
            settled = self._settled.get(pid)
            if settled is not None and self._is_settled(settled.record, pin):
                proposals.append(settled.record)
                votes.extend(settled.votes)
                continue
            record, record_votes = self._read_proposal(pin, pid)
            proposals.append(record)
            votes.extend(record_votes)
            if self._is_settled(record, pin):
                fresh.append(SettledProposal(record, record_votes, pin.number, bytes(pin.hash)))
            else:
                live_reads += 1
                if live_reads > MAX_PROPOSALS_READ:
                    raise InvalidChainResponse(f"proposalCount: more than {MAX_PROPOSALS_READ} live proposals "
                                               f"at block {pin.number}")
        self.client.validate_pin(pin)  # the end and execution headers were read by number: same chain?
        self._keep(fresh)
        return GovernanceSnapshot(pin, tuple(proposals), tuple(votes))

    def _keep(self, fresh: Sequence[SettledProposal]) -> None:
        """Cache (and persist) proposals newly read as settled at a pin that was re-validated."""
        for entry in fresh:
            self._settled[entry.record.proposal_id] = entry
        if fresh and self.store is not None:
            self.store.save(fresh)

    def _check_anchors_when_due(self) -> None:
        """Drop the settled entries anchored at or above the lowest anchor that is no longer canonical."""
        if self._snapshots_since_check < self.anchor_check_every:
            self._snapshots_since_check += 1
            return
        anchors = {(e.anchor_number, e.anchor_hash) for e in self._settled.values()}
        canonical = self.get_canonical_hashes(sorted({number for number, _ in anchors}))
        stale = [number for number, block_hash in anchors if canonical.get(number) != block_hash]
        self._snapshots_since_check = 1
        if not stale:
            return
        fork = min(stale)
        dropped = [pid for pid, e in self._settled.items() if e.anchor_number >= fork]
        for pid in dropped:
            del self._settled[pid]
        if self.store is not None:
            self.store.drop_from(fork)
        LOG.warning("governance: settled proposals anchored at or above fork_block are no longer canonical "
                    "(reorg deeper than settled_depth blocks); they are read again",
                    extra={"chain_id": self.client.chain_id, "governance": self.address, "dropped": len(dropped),
                           "fork_block": fork, "settled_depth": self.settled_depth})

    def get_canonical_hashes(self, numbers: Sequence[int]) -> dict[int, bytes]:
        """Hash of the canonical block at each number (absent when the chain has no such block)."""
        return {n: h.hash for n, h in zip(numbers, self.client.get_blocks(numbers), strict=True) if h is not None}

    def _is_settled(self, record: ProposalRecord, pin: Pin) -> bool:
        assert self._window is not None
        return record.end_block + self._window + self.settled_depth < pin.number

    def _read_proposal(self, pin: Pin, pid: int) -> tuple[ProposalRecord, tuple[VoteRecord, ...]]:
        self.proposal_reads += 1
        raw = self._call(pin, "getProposal", pid)[0]
        end_block, executed_block = int(raw[5]), int(raw[14])
        end_ts = self.client.get_block(end_block).timestamp if end_block <= pin.number else None
        executed_ts = self.client.get_block(executed_block).timestamp if raw[12] else None
        votes = tuple(VoteRecord(pid, normalize_address(voter, "voter"), int(choice), int(block_number))
                      for voter, choice, block_number in self._call(pin, "getVotes", pid)[0])
        return parse_proposal(raw, end_ts, executed_ts), votes

    def get_validators(self, pin: Pin, version: int | None = None) -> tuple[int, tuple[str, ...], int]:
        """(set version, members, threshold) of the contract's voting set `version` (default: current)."""
        if version is None:
            version = int(self._call(pin, "setVersion")[0])
        members = tuple(normalize_address(a) for a in self._call(pin, "validatorsAt", version)[0])
        return version, members, int(self._call(pin, "thresholdAt", version)[0])

    def get_max_voting_period(self, pin: Pin) -> int:
        """The contract's `maxVotingPeriodBlocks` (also the execution window after a vote's end)."""
        return int(self._call(pin, "maxVotingPeriodBlocks")[0])

    # --- transactions ----------------------------------------------------------------------

    def propose(self, key: bytes, kind: int, payload: bytes, voting_period_blocks: int,
                activation_epoch: int) -> tuple[int, dict[str, Any]]:
        """Send propose; returns (proposal id, receipt)."""
        receipt = self.send(key, "propose", kind, payload, voting_period_blocks, activation_epoch)
        topic = keccak(text="ProposalCreated(uint256,uint8,address,uint64,uint64)")
        for log in receipt.get("logs", []):
            if bytes.fromhex(log["topics"][0][2:]) == topic:
                return int(log["topics"][1], 16), receipt
        raise InvalidChainResponse("propose: receipt without ProposalCreated event")

    def vote(self, key: bytes, proposal_id: int, choice: int) -> dict[str, Any]:
        return self.send(key, "vote", proposal_id, choice)

    def execute(self, key: bytes, proposal_id: int) -> dict[str, Any]:
        return self.send(key, "execute", proposal_id)

    def send(self, key: bytes, name: str, *args: object) -> dict[str, Any]:
        """Estimate (decoding reverts), sign with `key`, send, and wait for a successful receipt."""
        account = Account.from_key(key)
        data = "0x" + encode_function_call(find_function_abi(self.abi, name), args).hex()
        to = to_checksum_address(self.address)
        call = {"from": account.address, "to": to, "data": data}
        try:
            gas = parse_quantity(self.client.rpc("eth_estimateGas", [call]), "eth_estimateGas")
        except CallReverted as exc:
            raise decode_revert(self.abi, exc.data) from exc
        base_fee = self.client.get_block("latest").base_fee or 0
        tip = parse_quantity(self.client.rpc("eth_maxPriorityFeePerGas", []), "eth_maxPriorityFeePerGas")
        deadline = time.monotonic() + RECEIPT_TIMEOUT_S
        while True:
            nonce = parse_quantity(self.client.rpc("eth_getTransactionCount", [account.address, "pending"]), "nonce")
            tx = {"chainId": self.client.chain_id, "nonce": nonce, "to": to, "data": data, "value": 0,
                  "gas": gas * GAS_MARGIN_NUM // GAS_MARGIN_DEN, "maxFeePerGas": 2 * base_fee + tip,
                  "maxPriorityFeePerGas": tip, "type": 2}
            signed = Account.sign_transaction(tx, key)
            try:
                tx_hash = self.client.rpc("eth_sendRawTransaction", ["0x" + bytes(signed.raw_transaction).hex()])
                break
            except RpcError as exc:
                message = exc.message.lower()
                if "already known" in message:  # this very transaction reached the node before
                    tx_hash = "0x" + bytes(signed.hash).hex()
                    break
                if not any(s in message for s in NONCE_TAKEN) or time.monotonic() > deadline:
                    raise
                # Another transaction of this key (the operator's own node publishing a state) took the
                # nonce between our read and our send: read the pending nonce again.
                LOG.info("governance transaction nonce taken; retrying with the next one",
                         extra={"method": name, "nonce": nonce})
                time.sleep(RECEIPT_POLL_S)
        return self.wait_receipt(str(tx_hash), name)

    def wait_receipt(self, tx_hash: str, name: str) -> dict[str, Any]:
        deadline = time.monotonic() + RECEIPT_TIMEOUT_S
        while time.monotonic() < deadline:
            receipt = self.client.rpc("eth_getTransactionReceipt", [tx_hash])
            if receipt:
                if parse_quantity(receipt["status"], "status") != 1:
                    raise GovernanceTxFailed(f"{name}: transaction {tx_hash} reverted")
                return dict(receipt)
            time.sleep(RECEIPT_POLL_S)
        raise GovernanceTxFailed(f"{name}: no receipt for {tx_hash} within {RECEIPT_TIMEOUT_S}s")


def read_governance_state(gov: GovernanceChain, pin: Pin, genesis: GovernanceGenesis) -> GovernanceState:
    """The node's entry point: snapshot at the pinned home-chain block, then the pure tally."""
    snap = gov.read_snapshot(pin)
    return derive_governance_state(genesis, snap.proposals, snap.votes, pin.number)


def deploy_governance(client: ChainClient, key: bytes, abi: Sequence[dict[str, Any]], bytecode: str,
                      validators: Sequence[str], threshold: int,
                      max_voting_period_blocks: int = DEFAULT_MAX_VOTING_PERIOD_BLOCKS) -> str:
    """Deploy Governance(validators, threshold, max voting period) with `key`; returns the contract
    address (devnet, tests)."""
    from eth_abi import encode as abi_encode

    account = Account.from_key(key)
    data = bytecode + abi_encode(["address[]", "uint32", "uint64"],
                                 [list(validators), threshold, max_voting_period_blocks]).hex()
    try:
        gas = parse_quantity(client.rpc("eth_estimateGas", [{"from": account.address, "data": data}]), "gas")
    except CallReverted as exc:  # the constructor's checks (set, threshold, voting period bound)
        raise decode_revert(abi, exc.data) from exc
    base_fee = client.get_block("latest").base_fee or 0
    nonce = parse_quantity(client.rpc("eth_getTransactionCount", [account.address, "pending"]), "nonce")
    tx = {"chainId": client.chain_id, "nonce": nonce, "data": data, "value": 0, "gas": gas * 12 // 10,
          "maxFeePerGas": 2 * base_fee + 10**9, "maxPriorityFeePerGas": 10**9, "type": 2}
    signed = Account.sign_transaction(tx, key)
    tx_hash = client.rpc("eth_sendRawTransaction", ["0x" + bytes(signed.raw_transaction).hex()])
    receipt = GovernanceChain(client, "0x" + "0" * 40, abi).wait_receipt(str(tx_hash), "deploy")
    return normalize_address(receipt["contractAddress"], "contractAddress")


def get_dev_key(index: int) -> bytes:
    """Private key of anvil's dev account `index` (public test mnemonic: devnet and tests only)."""
    from bridges.anvil import DEV_MNEMONIC

    if not 0 <= index < 20:
        raise ValueError(f"dev key index must be in 0..19, got {index}")
    Account.enable_unaudited_hdwallet_features()
    return bytes(Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}").key)
