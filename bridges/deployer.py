"""Resumable deployment of one chain's clearing contracts (the engine of `clearingd deploy`).

`ChainPlan` fixes what one chain gets: the production contracts (MarginStateRegistry with the
network's group key, CollateralVault, PositionLedger, MarketOracle; the deployer owns the last
three), `Governance` (genesis operators, threshold) on the home chain only, the ledger and the vault linked
to each other (settlement of ledger cash), and with `demo` the demo TestTokens registered as collateral
(USDC the settlement asset) and the deployer as ledger venue and oracle publisher. Before
anything is sent, `check_chain` refuses an endpoint serving another chain id, a chain without the
EIP-2537 precompiles (a real pairing check and a map-to-curve call must answer) and a deployer
without funds.

Each step is recorded in the deployment file (JSON, atomic rewrite): `sent` with its signed raw
transaction, hash and nonce BEFORE it is broadcast, then `done` with the address and block once its
receipt is `confirmations` blocks deep. A rerun skips `done` steps (checking the contract code is
there), re-broadcasts and waits for a `sent` one (a node that already has it is fine), and starts the
others; a file written for another chain, network, deployer, group key or plan is refused. Bounds:
each transaction waits at most `tx_timeout_s` for its receipt and its confirmations.
Persists: the deployment file only.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_typing import HexStr
from eth_utils import to_checksum_address
from hexbytes import HexBytes
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3RPCError

from bridges.artifacts import get_abi, load_artifact
from bridges.deploy import (
    DEFAULT_APPROVAL_WINDOW,
    DEFAULT_MIN_WITHDRAWAL,
    DEMO_TOKENS,
    SETTLEMENT_ASSET,
    ChainSender,
    Deployment,
)
from bridges.errors import DeploymentError
from bridges.statecodec import symbol_to_bytes32

FILE_VERSION = 1
DEFAULT_TX_TIMEOUT_S = 300.0
POLL_S = 0.2
G1ADD, PAIRING, MAP_FP_TO_G1 = (to_checksum_address(f"0x{n:040x}") for n in (0x0B, 0x0F, 0x10))
MAX_VOTING_PERIOD_BLOCKS = 21_600  # Governance: 3 days of 12-second blocks (also the execution window)


@dataclass(frozen=True)
class ChainPlan:
    """What one chain gets; every field is recorded in (and checked against) the deployment file."""

    chain_id: int
    network_id: int
    keyset_id: int
    group_key: bytes  # EIP-2537 G2 (256 bytes)
    home_chain: bool = False
    operators: tuple[str, ...] = ()  # Governance's genesis validators (home chain)
    threshold: int = 0
    demo: bool = False
    approval_window: int = DEFAULT_APPROVAL_WINDOW
    max_voting_period_blocks: int = MAX_VOTING_PERIOD_BLOCKS

    def to_dict(self) -> dict[str, Any]:
        return {"chain_id": self.chain_id, "network_id": self.network_id, "keyset_id": self.keyset_id,
                "group_key": "0x" + self.group_key.hex(), "home_chain": self.home_chain,
                "operators": [a.lower() for a in self.operators], "threshold": self.threshold, "demo": self.demo,
                "approval_window": self.approval_window, "max_voting_period_blocks": self.max_voting_period_blocks}


@dataclass(frozen=True)
class DeployResult:
    deployment: Deployment  # registry, vault, ledger, oracle, demo tokens
    governance: str  # "" off the home chain
    governance_block: int
    steps_sent: int  # transactions this run sent (0: everything was done before)


@dataclass(frozen=True)
class Step:
    name: str
    contract: str  # the contract deployed, or called
    deploys: bool
    build: Callable[[dict[str, str]], tuple[Any, ...]]  # constructor / call arguments from the done addresses
    function: str = ""  # the function called (not `deploys`)
    target: str = ""  # step whose address is called (not `deploys`)


def _constant(args: tuple[Any, ...]) -> Callable[[dict[str, str]], tuple[Any, ...]]:
    return lambda _a: args


def _asset_args(symbol: str) -> Callable[[dict[str, str]], tuple[Any, ...]]:
    return lambda a: (symbol_to_bytes32(symbol), a[f"token:{symbol}"], DEFAULT_MIN_WITHDRAWAL[symbol])


def get_steps(plan: ChainPlan, deployer: str) -> list[Step]:
    """The ordered steps of `plan` (later steps take earlier steps' addresses)."""
    steps = [
        Step("registry", "MarginStateRegistry", True, lambda a: (plan.network_id, plan.keyset_id, plan.group_key)),
        Step("vault", "CollateralVault", True, lambda a: (a["registry"], plan.approval_window, deployer)),
        Step("ledger", "PositionLedger", True, lambda a: (deployer,)),
        Step("oracle", "MarketOracle", True, lambda a: (deployer,)),
        # settlement (docs/clearing.md section 1): only the vault moves ledger cash, each names the other
        Step("link:ledger", "PositionLedger", False, lambda a: (a["vault"],), "setVault", "ledger"),
        Step("link:vault", "CollateralVault", False, lambda a: (a["ledger"],), "setLedger", "vault"),
    ]
    if plan.home_chain:
        steps.append(Step("governance", "Governance", True, lambda a: (
            [to_checksum_address(o) for o in plan.operators], plan.threshold, plan.max_voting_period_blocks)))
    if plan.demo:
        for symbol, name, decimals in DEMO_TOKENS:
            steps.append(Step(f"token:{symbol}", "TestToken", True, _constant((name, symbol, decimals, deployer))))
            steps.append(Step(f"asset:{symbol}", "CollateralVault", False, _asset_args(symbol), "registerAsset", "vault"))
        steps.append(Step(f"settlement:{SETTLEMENT_ASSET}", "CollateralVault", False,
                          lambda a: (a[f"token:{SETTLEMENT_ASSET}"],), "setSettlementAsset", "vault"))
        steps.append(Step("venue", "PositionLedger", False, lambda a: (deployer, True), "setVenue", "ledger"))
        steps.append(Step("publisher", "MarketOracle", False, lambda a: (deployer, True), "setPublisher", "oracle"))
    return steps


def check_chain(sender: ChainSender, expected_chain_id: int) -> None:
    """Refuse an unexpected chain id, a chain without the EIP-2537 precompiles, an unfunded deployer."""
    if sender.chain_id != expected_chain_id:
        raise DeploymentError(f"chain_id: the endpoint serves chain {sender.chain_id}, expected {expected_chain_id}")
    probes = ((G1ADD, bytes(256), bytes(128)),  # O + O = O
              (PAIRING, bytes(384), (1).to_bytes(32, "big")),  # e(O, O) = 1
              (MAP_FP_TO_G1, bytes(64), None))  # some point (128 bytes)
    for address, data, expected in probes:
        try:
            out = bytes(sender.w3.eth.call({"to": address, "data": HexStr("0x" + data.hex()), "gas": 1_000_000}))
        except (Web3RPCError, ContractLogicError) as exc:  # the call fails: no usable precompile either
            out = b""
            reason = str(exc)[:120]
        else:
            reason = f"returned {len(out)} bytes"
        if out != expected if expected is not None else len(out) != 128:
            raise DeploymentError(f"chain {sender.chain_id}: no EIP-2537 BLS12-381 precompile at {address} "
                                  f"({reason}); the registry needs them (Prague or later)")
    if int(sender.w3.eth.get_balance(sender.address)) == 0:
        raise DeploymentError(f"deployer {sender.address} has no funds on chain {sender.chain_id}")


def _save(path: Path, doc: Mapping[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(doc, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class DeploymentLog:
    """The deployment file of one chain: the plan, the deployer and the state of every step."""

    def __init__(self, path: Path, plan: ChainPlan, deployer: str) -> None:
        self.path = path
        header: dict[str, Any] = {"version": FILE_VERSION, "deployer": deployer, "plan": plan.to_dict()}
        if path.exists():
            try:
                doc = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise DeploymentError(f"{path.name}: not a readable deployment file ({exc})") from exc
            old = {k: doc.get(k) for k in header}
            if old != header:
                differ = sorted(k for k in ("deployer", "version") if old[k] != header[k]) or sorted(
                    k for k in header["plan"] if (old["plan"] or {}).get(k) != header["plan"][k])
                raise DeploymentError(f"{path}: written for another deployment ({', '.join(differ)} differ); "
                                      "use another --deployment-file")
            self.doc: dict[str, Any] = doc
        else:
            self.doc = {**header, "steps": {}}
            _save(path, self.doc)

    def get(self, step: str) -> dict[str, Any]:
        return dict(self.doc["steps"].get(step, {}))

    def record(self, step: str, **fields: Any) -> None:
        self.doc["steps"][step] = fields
        _save(self.path, self.doc)

    def get_addresses(self) -> dict[str, str]:
        return {k: v["address"] for k, v in self.doc["steps"].items() if v.get("status") == "done" and v.get("address")}


class ChainDeployer:
    """Runs a `ChainPlan` through a `DeploymentLog` (see the module docstring)."""

    def __init__(self, sender: ChainSender, plan: ChainPlan, log_path: Path, confirmations: int,
                 tx_timeout_s: float = DEFAULT_TX_TIMEOUT_S, say: Callable[[str], None] = lambda _m: None) -> None:
        self.sender, self.plan, self.confirmations, self.tx_timeout_s, self.say = (
            sender, plan, confirmations, tx_timeout_s, say)
        check_chain(sender, plan.chain_id)
        self.log = DeploymentLog(log_path, plan, sender.address)
        self.sent = 0

    def run(self) -> DeployResult:
        for step in get_steps(self.plan, self.sender.address):
            self.run_step(step)
        return self.get_result()

    def run_step(self, step: Step) -> None:
        state = self.log.get(step.name)
        if state.get("status") == "done":
            if step.deploys and not self.sender.w3.eth.get_code(to_checksum_address(state["address"])):
                raise DeploymentError(f"{step.name}: the deployment file records {state['address']} but the chain "
                                      "holds no code there (another chain, or a reset chain?)")
            return
        if state.get("status") == "sent":
            self.say(f"{step.name}: resuming transaction {state['tx']} (nonce {state['nonce']})")
            tx_hash = bytes.fromhex(state["tx"][2:])
            self.sender.broadcast(step.name, bytes.fromhex(state["raw"][2:]), resend=True)
        else:
            tx_hash = self.send(step)
        receipt = self.wait_for_receipt(step.name, tx_hash)
        address = to_checksum_address(receipt["contractAddress"]) if step.deploys else ""
        self.log.record(step.name, status="done", tx="0x" + tx_hash.hex(), address=address,
                        block=int(receipt["blockNumber"]))
        self.say(f"{step.name}: {address or 'done'} (block {int(receipt['blockNumber'])})")

    def send(self, step: Step) -> bytes:
        addresses = self.log.get_addresses()
        args = step.build(addresses)
        if step.deploys:
            artifact = load_artifact(step.contract)
            call = self.sender.w3.eth.contract(abi=artifact.get_abi(), bytecode=artifact.bytecode).constructor(*args)
        else:
            call = getattr(self.sender.contract(step.contract, addresses[step.target]).functions, step.function)(*args)
        tx_hash, raw, nonce = self.sender.sign(step.name, call, get_abi(step.contract))
        self.log.record(step.name, status="sent", tx="0x" + tx_hash.hex(), raw="0x" + raw.hex(), nonce=nonce)
        self.sender.broadcast(step.name, raw)
        self.sent += 1
        return tx_hash

    def wait_for_receipt(self, step: str, tx_hash: bytes) -> dict[str, Any]:
        """The successful receipt once `confirmations` blocks lie on top of it (bounded by `tx_timeout_s`)."""
        w3, deadline = self.sender.w3, time.monotonic() + self.tx_timeout_s
        while True:
            receipt: dict[str, Any] | None
            try:
                receipt = dict(w3.eth.get_transaction_receipt(HexBytes(tx_hash)))
            except TransactionNotFound:
                receipt = None
            if receipt is not None:
                if receipt["status"] != 1:
                    raise DeploymentError(f"{step}: transaction 0x{tx_hash.hex()} reverted")
                if int(w3.eth.block_number) >= int(receipt["blockNumber"]) + self.confirmations:
                    return receipt
            if time.monotonic() > deadline:
                what = "confirmations" if receipt is not None else "a receipt"
                raise DeploymentError(f"{step}: no {what} for 0x{tx_hash.hex()} within {self.tx_timeout_s:.0f}s; "
                                      "rerun to resume")
            time.sleep(POLL_S)

    def get_result(self) -> DeployResult:
        a, steps = self.log.get_addresses(), self.log.doc["steps"]
        tokens = tuple(sorted((name.split(":", 1)[1], addr) for name, addr in a.items() if name.startswith("token:")))
        deployment = Deployment(chain_id=self.plan.chain_id, network_id=self.plan.network_id,
                                keyset_id=self.plan.keyset_id, registry=a["registry"], vault=a["vault"],
                                ledger=a["ledger"], oracle=a["oracle"], tokens=tokens, deployer=self.sender.address,
                                start_block=int(steps["registry"]["block"]))
        return DeployResult(deployment, a.get("governance", ""),
                            int(steps["governance"]["block"]) if "governance" in a else 0, self.sent)

