"""Seeding of the chain-mode epoch pipeline benchmark (`bench/chain_pipeline.py`); excluded from its timing.

Two anvil chains (genesis timestamp = the bench's GENESIS, so the instrument set of
`epoch_pipeline_bench.build_instruments` is live; a large block gas limit and no automine once deployed,
so every batch of transactions lands in one block), the production contracts deployed and wired like the
devnet (`bridges.deploy.deploy_all` with the devnet's tokens, the owner as venue and publisher), the
instruments registered and the marks published with real transactions (`node.devnet.txbatch.TxBatch`).

Then N accounts, ~5 positions each on each chain over the full instrument set, realised cash and USDC
collateral on both chains, are written straight into the contracts' storage with batched JSON-RPC
`anvil_setStorageAt`: anvil's cost per mined block grows with its state, so a million positions cannot be
seeded with transactions. The slots come from the storage layout that solcjs reports for the committed
sources (a bench-only compile, `storageLayout` output; the committed artifacts are not touched): the
ledger's account list, account states (cash, position count), per-account instrument lists and holdings;
the vault's account list, statuses and balances; the token's balance of the vault and total supply, so the
books are consistent. A sample is then checked through the contracts' public views.
Persists nothing; the chains live as long as the caller keeps them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import requests
from eth_hash.auto import keccak
from eth_utils import to_checksum_address

from bench.epoch_pipeline_bench import CHAINS, DAY, EXPIRIES, GENESIS, POSITIONS_PER_ACCOUNT, SPOTS
from bridges.anvil import AnvilChain, get_free_port, rpc_call
from bridges.book import InstrumentInfo
from bridges.deploy import (
    KIND_FUTURE,
    KIND_OPTION,
    KIND_PERP,
    KIND_SPOT,
    RIGHT_CALL,
    RIGHT_NONE,
    RIGHT_PUT,
    ChainSender,
    Deployment,
    deploy_all,
    get_dev_key,
    set_publisher,
    set_venue,
)
from bridges.statecodec import symbol_to_bytes32
from node.devnet.seed import DEVNET_TOKENS
from node.devnet.txbatch import TxBatch

REPO_ROOT = Path(__file__).resolve().parent.parent
GAS_LIMIT = 4_000_000_000  # one block holds every transaction of a steady epoch
MAX_GAS_PER_TX = 1_000_000_000
STORAGE_BATCH = 5_000  # anvil_setStorageAt calls per JSON-RPC batch
RPC_TIMEOUT_S = 600.0
NETWORK_ID = 7
MICRO = 10**6
MASK64 = (1 << 64) - 1
KIND_IDS = {"option": KIND_OPTION, "future": KIND_FUTURE, "perp": KIND_PERP, "spot": KIND_SPOT}
RIGHT_IDS = {"": RIGHT_NONE, "call": RIGHT_CALL, "put": RIGHT_PUT}
VOL = 550_000
LAYOUT_CONTRACTS = ("PositionLedger", "CollateralVault", "TestToken")
SAMPLE = 25


class Layout:
    """One contract's storage layout as solc reports it: variables by label, types by id."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.vars = {v["label"]: v for v in raw["storage"]}
        self.types = raw["types"] or {}

    def slot(self, label: str) -> int:
        return int(self.vars[label]["slot"])

    def member(self, label: str, member: str) -> tuple[int, int, int]:
        """(slot within the struct, byte offset, bytes) of `member` of the struct a mapping `label` holds."""
        t = self.types[self.vars[label]["type"]]
        while "value" in t:
            t = self.types[t["value"]]
        for m in t["members"]:
            if m["label"] == member:
                return int(m["slot"]), int(m["offset"]), int(self.types[m["type"]]["numberOfBytes"])
        raise KeyError(f"{label}.{member}")

    def packed(self, label: str, values: dict[str, int]) -> int:
        """One slot of the struct held by mapping `label` with `values` (two's complement for signed)."""
        word = 0
        for name, value in values.items():
            slot, offset, size = self.member(label, name)
            if slot != 0:
                raise ValueError(f"{label}.{name}: not in the struct's first slot")
            word |= (int(value) & ((1 << (8 * size)) - 1)) << (8 * offset)
        return word


def compile_storage_layouts() -> dict[str, Layout]:
    """Storage layouts of the committed sources (solcjs, the settings of `scripts/compile_contracts.py`)."""
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    import compile_contracts as cc  # type: ignore[import-not-found]

    standard_input = cc.get_standard_input(cc.get_sources())
    standard_input["settings"]["outputSelection"] = {"*": {"*": ["storageLayout"]}}
    _version, output = cc.run_solc(standard_input)
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise SystemExit("solc: " + "; ".join(e.get("message", "") for e in errors))
    found = {name: data["storageLayout"] for contracts in output["contracts"].values()
             for name, data in contracts.items() if name in LAYOUT_CONTRACTS}
    return {name: Layout(found[name]) for name in LAYOUT_CONTRACTS}


def word(value: int | bytes) -> bytes:
    return value.rjust(32, b"\0") if isinstance(value, bytes) else int(value).to_bytes(32, "big")


def mapping_slot(key: int | bytes, slot: int | bytes) -> bytes:
    """keccak256(key . slot): the slot of mapping[key] (32-byte big-endian)."""
    return keccak(word(key) + word(slot))


class StorageWriter:
    """Batched `anvil_setStorageAt` on one chain; every reply is checked."""

    def __init__(self, rpc_url: str) -> None:
        self.url, self.session = rpc_url, requests.Session()
        self.parts: list[str] = []
        self.written = 0

    def set(self, address: str, slot: int | bytes, value: int) -> None:
        s = slot.hex() if isinstance(slot, bytes) else f"{slot:064x}"
        self.parts.append(f'{{"jsonrpc":"2.0","id":{len(self.parts)},"method":"anvil_setStorageAt",'
                          f'"params":["{address}","0x{s}","0x{value:064x}"]}}')
        if len(self.parts) >= STORAGE_BATCH:
            self.flush()

    def flush(self) -> None:
        if not self.parts:
            return
        body = ("[" + ",".join(self.parts) + "]").encode()
        reply = self.session.post(self.url, data=body, headers={"Content-Type": "application/json"},
                                  timeout=RPC_TIMEOUT_S)
        reply.raise_for_status()
        bad = [r for r in reply.json() if "error" in r or r.get("result") is not True]
        if bad:
            raise SystemExit(f"anvil_setStorageAt: {bad[0]}")
        self.written += len(self.parts)
        self.parts = []

    def get(self, address: str, slot: int) -> int:
        return int(str(rpc_call(self.url, "eth_getStorageAt", [address, hex(slot), "latest"])), 16)


@dataclass
class SeededAccounts:
    """What was written on one chain (for the sample check and the steady epochs' trades)."""

    addresses: list[bytes]
    instruments: list[list[int]]  # per account, instrument ids in list order
    quantities: list[list[int]]
    cash: list[int]
    balances: list[int]  # USDC units

    @property
    def positions(self) -> int:
        return sum(len(x) for x in self.instruments)


@dataclass
class BenchChain:
    chain: AnvilChain
    deployment: Deployment
    owner: ChainSender
    accounts: SeededAccounts | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def rpc_url(self) -> str:
        return self.chain.rpc_url

    def rpc(self, method: str, params: list | None = None) -> object:
        return rpc_call(self.rpc_url, method, params, timeout=RPC_TIMEOUT_S)

    def mine(self, timestamp: int | None = None) -> None:
        if timestamp is not None:
            self.rpc("evm_setNextBlockTimestamp", [timestamp])
        self.rpc("evm_mine", [])

    def latest_timestamp(self) -> int:
        return int(str(self.rpc("eth_getBlockByNumber", ["latest", False])["timestamp"]), 16)  # type: ignore[index]


def get_group_key() -> bytes:
    from node.crypto import bls, threshold

    public_key, _shares, _ = threshold.deal_trusted(4, 3, b"chain-pipeline-bench")
    return bls.g2_to_eip2537(public_key)


def start_bench_chains() -> list[AnvilChain]:
    chains: list[AnvilChain] = []
    try:
        for cid in CHAINS:
            chains.append(AnvilChain(chain_id=cid, port=get_free_port(), extra_args=(
                "--timestamp", str(GENESIS), "--gas-limit", str(GAS_LIMIT))).start())
    except Exception:
        for c in chains:
            c.stop()
        raise
    return chains


def deploy_chain(chain: AnvilChain, instruments: list[InstrumentInfo]) -> BenchChain:
    """Contracts like the devnet; instruments and marks with transactions mined on demand."""
    key = get_dev_key(0)
    deployment = deploy_all(chain.rpc_url, key, NETWORK_ID, 1, get_group_key(), tokens=DEVNET_TOKENS)
    owner = ChainSender(chain.rpc_url, key)
    set_venue(owner, deployment, owner.address)
    set_publisher(owner, deployment, owner.address)
    bc = BenchChain(chain, deployment, owner)
    bc.rpc("evm_setAutomine", [False])
    batch = TxBatch(owner, MAX_GAS_PER_TX)
    gas = None
    for info in instruments:
        batch.add("PositionLedger", deployment.ledger, "registerInstrument",
                  (info.id, symbol_to_bytes32(info.underlying), KIND_IDS[info.kind], info.strike, info.expiry,
                   RIGHT_IDS[info.right]), gas=gas)
        gas = gas or 300_000
    add_marks(batch, deployment, instruments, 1.0, VOL)
    batch.add("MarketOracle", deployment.oracle, "setAssetPrices", [symbol_to_bytes32("USDC"),
              symbol_to_bytes32("ETH")], [MICRO, SPOTS["ETH"] * MICRO])
    batch.wait(mine=bc.mine)
    return bc


def add_marks(batch: TxBatch, deployment: Deployment, instruments: list[InstrumentInfo], move: float,
              vol: int) -> None:
    """Every spot, every forward (= spot * move) and every option vol, in oracle batches of 200."""
    oracle = deployment.oracle
    spots = {u: int(s * MICRO * move) for u, s in SPOTS.items()}
    batch.add("MarketOracle", oracle, "setSpots", [symbol_to_bytes32(u) for u in spots], list(spots.values()))
    fwd = [(u, GENESIS + d * DAY, p) for u, p in spots.items() for d in EXPIRIES]
    batch.add("MarketOracle", oracle, "setForwards", [symbol_to_bytes32(u) for u, _, _ in fwd],
              [e for _, e, _ in fwd], [p for _, _, p in fwd])
    options = [i.id for i in instruments if i.kind == "option"]
    for k in range(0, len(options), 200):
        ids = options[k:k + 200]
        batch.add("MarketOracle", oracle, "setVols", ids, [vol] * len(ids))


def make_accounts(n: int, instruments: list[InstrumentInfo], rng: np.random.Generator) -> SeededAccounts:
    """~POSITIONS_PER_ACCOUNT/2 positions per account over the full set, cash and collateral (one chain)."""
    addresses = [bytes(a) for a in rng.integers(0, 256, size=(n, 20), dtype=np.uint8)]
    ids = np.array([i.id for i in instruments], dtype=np.int64)
    k = POSITIONS_PER_ACCOUNT // 2
    picks = rng.choice(len(ids), size=(n, k), replace=True)
    qty = (rng.normal(size=(n, k)) * 5e7).astype(np.int64)
    qty[qty == 0] = 1
    held, quantities = [], []
    for row_ids, row_q in zip(ids[picks].tolist(), qty.tolist(), strict=True):
        seen: dict[int, int] = {}
        for iid, q in zip(row_ids, row_q, strict=True):
            seen.setdefault(iid, q)
        held.append(list(seen))
        quantities.append(list(seen.values()))
    notional = np.array([sum(abs(q) for q in row) for row in quantities], dtype=np.float64) / 1e8 * 50_000
    balances = ((notional * rng.uniform(0.3, 0.8, n) + 1_000).astype(np.int64) * MICRO).tolist()
    cash = (rng.normal(size=n) * 1e9).astype(np.int64).tolist()
    return SeededAccounts(addresses, held, quantities, cash, balances)


def write_accounts(bc: BenchChain, layouts: dict[str, Layout], seeded: SeededAccounts) -> int:
    """Ledger, vault and token storage of `seeded` on one chain; returns the slots written."""
    d = bc.deployment
    ledger, vault, token = layouts["PositionLedger"], layouts["CollateralVault"], layouts["TestToken"]
    usdc = d.get_token("USDC")
    w = StorageWriter(bc.rpc_url)
    n = len(seeded.addresses)
    l_list, v_list = ledger.slot("accountList"), vault.slot("accountList")
    l_states, l_islots, l_hold = ledger.slot("accountStates"), ledger.slot("instrumentSlots"), ledger.slot("holdings")
    v_status, v_bal = vault.slot("statuses"), vault.slot("balanceOf")
    w.set(d.ledger, l_list, n)
    w.set(d.vault, v_list, n)
    l_data, v_data = int.from_bytes(keccak(word(l_list)), "big"), int.from_bytes(keccak(word(v_list)), "big")
    listed = vault.packed("statuses", {"listed": 1})
    for i, addr in enumerate(seeded.addresses):
        a = int.from_bytes(addr, "big")
        ids, qs = seeded.instruments[i], seeded.quantities[i]
        w.set(d.ledger, l_data + i, a)
        w.set(d.vault, v_data + i, a)
        w.set(d.ledger, mapping_slot(addr, l_states),
              ledger.packed("accountStates", {"cash": seeded.cash[i], "positionCount": len(ids)}))
        islots = mapping_slot(addr, l_islots)
        for j in range(0, len(ids), 4):
            w.set(d.ledger, mapping_slot(j // 4, islots),
                  sum((iid & MASK64) << (64 * k) for k, iid in enumerate(ids[j:j + 4])))
        holdings = mapping_slot(addr, l_hold)
        for iid, q in zip(ids, qs, strict=True):
            w.set(d.ledger, mapping_slot(iid, holdings),
                  ledger.packed("holdings", {"quantity": q, "fundingEntry": 0, "listed": 1}))
        w.set(d.vault, mapping_slot(addr, v_status), listed)
        w.set(d.vault, mapping_slot(bytes.fromhex(usdc[2:]), mapping_slot(addr, v_bal)), seeded.balances[i])
    total = sum(seeded.balances)
    vault_balance_slot = int.from_bytes(mapping_slot(bytes.fromhex(d.vault[2:]), token.slot("balanceOf")), "big")
    w.flush()
    w.set(usdc, vault_balance_slot, w.get(usdc, vault_balance_slot) + total)
    w.set(usdc, token.slot("totalSupply"), w.get(usdc, token.slot("totalSupply")) + total)
    w.flush()
    return w.written


def check_sample(bc: BenchChain, seeded: SeededAccounts, rng: np.random.Generator) -> int:
    """Compare a sample of accounts with the public views; raises SystemExit on a difference."""
    d, owner = bc.deployment, bc.owner
    ledger = owner.contract("PositionLedger", d.ledger).functions
    vault = owner.contract("CollateralVault", d.vault).functions
    token = owner.contract("TestToken", d.get_token("USDC")).functions
    n = len(seeded.addresses)
    problems = []
    if ledger.accountCount().call() != n or vault.accountCount().call() != n:
        problems.append("account counts")
    if token.balanceOf(d.vault).call() < sum(seeded.balances):
        problems.append("token balance of the vault")
    for i in rng.choice(n, size=min(SAMPLE, n), replace=False).tolist():
        a = to_checksum_address(seeded.addresses[i])
        expected = [(iid, q, 0) for iid, q in zip(seeded.instruments[i], seeded.quantities[i], strict=True)]
        got = [tuple(p) for p in ledger.getPositions(a, 0, 500).call()]
        if got != expected or ledger.cashOf(a).call() != seeded.cash[i]:
            problems.append(f"ledger account {i} {a}: {got} != {expected}")
        if ledger.getAccounts(i, 1).call() != [a] or vault.getAccounts(i, 1).call() != [a]:
            problems.append(f"account list {i}")
        if vault.balanceOf(a, d.get_token("USDC")).call() != seeded.balances[i] or not vault.isAccount(a).call():
            problems.append(f"vault account {i} {a}")
    if problems:
        raise SystemExit(f"chain {bc.chain.chain_id}: seeded storage differs from the views: {problems[:3]}")
    return min(SAMPLE, n)


def seed_chains(n: int, instruments: list[InstrumentInfo], rng: np.random.Generator,
                say: Any = print) -> list[BenchChain]:
    """Both chains deployed, marked and seeded with `n` accounts (same addresses on both chains)."""
    layouts = compile_storage_layouts()
    chains = start_bench_chains()
    try:
        out = [deploy_chain(c, instruments) for c in chains]
        say(f"deployed; {len(instruments)} instruments registered and marked on {len(out)} chains")
        addresses = None
        for bc in out:
            seeded = make_accounts(n, instruments, rng)
            if addresses is not None:
                seeded.addresses = addresses
            addresses = seeded.addresses
            slots = write_accounts(bc, layouts, seeded)
            bc.mine()  # the written state is that of a block (pins read blocks)
            bc.accounts = seeded
            bc.info = {"slots_written": slots, "sample_checked": check_sample(bc, seeded, rng),
                       "positions": seeded.positions}
            say(f"chain {bc.chain.chain_id}: {slots} storage slots written, sample checked")
        return out
    except BaseException:
        for c in chains:
            c.stop()
        raise

