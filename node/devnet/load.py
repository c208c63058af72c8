"""Devnet load (`clearingd devnet --accounts N`): N more accounts on the devnet's chains, and live traffic.

The chains start with a `LOAD_GAS_LIMIT` block gas limit (`start_load_chains`): seeding fills many blocks
with ~20M-gas transactions, which would push the base fee of 30M blocks far past the publishers' fee cap.
Seeding (`seed_load`, real transactions, before the validators start): the devnet's instrument set is
extended to a realistic one (`LOAD_INSTRUMENTS`: per underlying a perp, futures at four expiries, calls and
puts at ten strikes for three expiries; ids from `FIRST_INSTRUMENT_ID`), registered on every chain, with
forwards (= spot, r = 0) and vols on every oracle. A load key (anvil dev account `LOAD_KEY_INDEX`), made venue
and publisher by the owner, funds N fresh accounts with USDC on every chain (`deposit_for_many`) and records
matched trades between them (`record_trades`): `POSITIONS_PER_CHAIN` rounds per chain, each pairing the
accounts two by two, so each account holds ~10 positions (about half on each chain). Trades are at the
market (perps and futures at the forward, options at their Black-76 value), so each account's equity starts
at its collateral. Batches are sized by gas: a trade that opens two new accounts costs ~200k, so the first
round sends `FIRST_ROUND_PER_TX` trades per transaction, the later ones `LEDGER_MAX_BATCH`.

Traffic (`LoadDriver`, a background thread while the validators run): in every epoch period about
`TRADE_SHARE` of the accounts trade (matched trades on every chain) and every mark moves on every chain
(spots a small random walk from the oracle's value, every load forward and every load option vol), sent with
`node.devnet.txbatch.TxBatch` from the load key. `market_lock` serialises it with the demo's mark change.
Keys are anvil's public dev keys (local chains only). Persists nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from eth_utils import to_checksum_address

from bridges.anvil import AnvilChain, get_free_port
from bridges.deploy import (
    KIND_FUTURE,
    KIND_OPTION,
    KIND_PERP,
    LEDGER_MAX_BATCH,
    RIGHT_CALL,
    RIGHT_PUT,
    ChainSender,
    MatchedTrade,
    deposit_for_many,
    get_dev_key,
    mint,
    record_trades,
    set_publisher,
    set_venue,
)
from bridges.statecodec import PRICE_SCALE, QTY_SCALE, VOL_SCALE, symbol_to_bytes32
from node.devnet.seed import DEPLOYER_KEY_INDEX, NORMAL_MARKET, SeededChain, get_expiry
from node.devnet.txbatch import TxBatch
from risk.pricing import compute_black76_price, compute_tau

log = logging.getLogger(__name__)

LOAD_KEY_INDEX = 5  # venue and publisher of the load; the demo's house (key 0) keeps its own nonces
FIRST_INSTRUMENT_ID = 100
FUTURE_DAYS = (7, 14, 30, 90)
OPTION_DAYS = (7, 30, 90)
STRIKES = (0.80, 0.85, 0.90, 0.95, 1.00, 1.05, 1.10, 1.15, 1.20, 1.25)
BASE_VOL = 0.55
POSITIONS_PER_CHAIN = 5
FIRST_ROUND_PER_TX = 100  # trades opening two new accounts each: ~20M gas per transaction
COLLATERAL_USDC = 50_000  # per account and chain
UNIT_QTY = {"BTC": 0.05, "ETH": 1.0}  # typical position size per underlying (units)
TRADE_SHARE = 0.01
SPOT_STEP = 0.002  # relative standard deviation of one epoch's spot move
VOL_STEP = 0.02  # absolute standard deviation of one epoch's vol move (vol 0.55 = 55%)
SEED_THREADS = 2
LOAD_GAS_LIMIT = 300_000_000


def start_load_chains(chain_ids: list[int]) -> list[AnvilChain]:
    """The devnet's anvil chains with a `LOAD_GAS_LIMIT` block gas limit (seeding blocks stay under the
    EIP-1559 target, so the base fee does not climb past what publishers pay); all stopped if one fails."""
    chains: list[AnvilChain] = []
    try:
        for cid in chain_ids:
            chains.append(AnvilChain(chain_id=cid, port=get_free_port(),
                                     extra_args=("--gas-limit", str(LOAD_GAS_LIMIT))).start())
    except Exception:
        for c in chains:
            c.stop()
        raise
    return chains


@dataclass(frozen=True)
class LoadInstrument:
    id: int
    underlying: str
    kind: int
    days: int
    strike: float  # USD (options)
    right: int


def get_load_instruments() -> list[LoadInstrument]:
    out: list[LoadInstrument] = []
    iid = FIRST_INSTRUMENT_ID
    for u, spot in NORMAL_MARKET.items():
        out.append(LoadInstrument(iid, u, KIND_PERP, 0, 0.0, 0))
        iid += 1
        for d in FUTURE_DAYS:
            out.append(LoadInstrument(iid, u, KIND_FUTURE, d, 0.0, 0))
            iid += 1
        for d in OPTION_DAYS:
            for k in STRIKES:
                for right in (RIGHT_CALL, RIGHT_PUT):
                    out.append(LoadInstrument(iid, u, KIND_OPTION, d, round(spot * k), right))
                    iid += 1
    return out


LOAD_INSTRUMENTS = get_load_instruments()


def get_price(inst: LoadInstrument, spots: dict[str, float], vols: dict[int, float]) -> int:
    """Micro-USD price of one unit at the market: the forward (= spot) or the option's Black-76 value."""
    spot = spots[inst.underlying]
    if inst.kind != KIND_OPTION:
        return round(spot * PRICE_SCALE)
    value = compute_black76_price(spot, inst.strike, compute_tau(inst.days), vols[inst.id],
                                  is_call=inst.right == RIGHT_CALL)
    return max(1, round(value * PRICE_SCALE))


def get_load_addresses(n: int, seed: int = 1) -> list[str]:
    """`n` fresh deterministic account addresses (no keys: they only hold positions and collateral)."""
    raw = np.random.default_rng(seed).integers(0, 256, size=(n, 20), dtype=np.uint8)
    return [to_checksum_address(bytes(a)) for a in raw]


def get_load_sender(chain: SeededChain) -> ChainSender:
    return ChainSender(chain.rpc_url, get_dev_key(LOAD_KEY_INDEX))


def add_marks(batch: TxBatch, chain: SeededChain, spots: dict[str, float], vols: dict[int, float],
              market_time: int, with_spots: bool) -> None:
    """Load forwards (= spot) and option vols on one oracle (and the spots when `with_spots`)."""
    oracle = chain.deployment.oracle
    if with_spots:
        batch.add("MarketOracle", oracle, "setSpots", [symbol_to_bytes32(u) for u in spots],
                  [round(p * PRICE_SCALE) for p in spots.values()])
    forwards = sorted({(i.underlying, get_expiry(market_time, i.days)) for i in LOAD_INSTRUMENTS if i.days})
    batch.add("MarketOracle", oracle, "setForwards", [symbol_to_bytes32(u) for u, _ in forwards],
              [e for _, e in forwards], [round(spots[u] * PRICE_SCALE) for u, _ in forwards])
    ids = [i.id for i in LOAD_INSTRUMENTS if i.kind == KIND_OPTION]
    for k in range(0, len(ids), 200):
        part = ids[k:k + 200]
        batch.add("MarketOracle", oracle, "setVols", part, [round(vols[i] * VOL_SCALE) for i in part])


def make_trades(accounts: Sequence[str], rng: np.random.Generator, spots: dict[str, float],
                vols: dict[int, float]) -> list[MatchedTrade]:
    """`accounts` paired at random (disjoint pairs), one matched trade per pair at the market: each account
    trades once."""
    order = rng.permutation(len(accounts)).tolist()
    out = []
    for maker, taker in zip(order[0::2], order[1::2], strict=False):
        inst = LOAD_INSTRUMENTS[int(rng.integers(len(LOAD_INSTRUMENTS)))]
        qty = UNIT_QTY[inst.underlying] * float(rng.uniform(0.2, 2.0)) * (1 if rng.random() < 0.5 else -1)
        out.append(MatchedTrade(accounts[maker], accounts[taker], inst.id, round(qty * QTY_SCALE),
                                get_price(inst, spots, vols)))
    return out


def seed_chain_load(chain: SeededChain, accounts: Sequence[str], market_time: int, seed: int) -> dict[str, Any]:
    """Instruments, marks, collateral and ~POSITIONS_PER_CHAIN positions per account on one chain."""
    started = time.monotonic()
    d = chain.deployment
    house = ChainSender(chain.rpc_url, get_dev_key(DEPLOYER_KEY_INDEX))
    load = get_load_sender(chain)
    set_venue(house, d, load.address)
    set_publisher(house, d, load.address)
    batch = TxBatch(house)
    for i in LOAD_INSTRUMENTS:
        batch.add("PositionLedger", d.ledger, "registerInstrument",
                  (i.id, symbol_to_bytes32(i.underlying), i.kind, round(i.strike * PRICE_SCALE),
                   get_expiry(market_time, i.days), i.right))
    batch.wait()
    vols = {i.id: BASE_VOL for i in LOAD_INSTRUMENTS if i.kind == KIND_OPTION}
    spots = dict(NORMAL_MARKET)
    marks = TxBatch(load)
    add_marks(marks, chain, spots, vols, market_time, with_spots=False)
    marks.wait()
    total = COLLATERAL_USDC * 10**6 * len(accounts)
    mint(house, d, "USDC", load.address, total)
    deposit_for_many(load, d, "USDC", {a: COLLATERAL_USDC * 10**6 for a in accounts})
    rng = np.random.default_rng(seed)
    trades = 0
    for r in range(POSITIONS_PER_CHAIN):
        round_trades = make_trades(accounts, rng, spots, vols)
        size = FIRST_ROUND_PER_TX if r == 0 else LEDGER_MAX_BATCH
        for k in range(0, len(round_trades), size):
            record_trades(load, d, round_trades[k:k + size])
        trades += len(round_trades)
    return {"chain_id": chain.chain_id, "trades": trades, "seconds": round(time.monotonic() - started, 1)}


def seed_load(chains: Sequence[SeededChain], n: int, market_time: int, say: Callable[[str], None]) -> dict[str, Any]:
    """Seed `n` load accounts on every chain (chains in parallel); returns what was done."""
    started = time.monotonic()
    accounts = get_load_addresses(n)
    with ThreadPoolExecutor(max_workers=SEED_THREADS) as pool:
        done = list(pool.map(lambda p: seed_chain_load(p[1], accounts, market_time, 100 + p[0]), enumerate(chains)))
    summary = {"accounts": n, "instruments": len(LOAD_INSTRUMENTS), "positions_per_account": 2 * POSITIONS_PER_CHAIN,
               "trades": sum(x["trades"] for x in done), "seed_seconds": round(time.monotonic() - started, 1),
               "chains": done}
    say(f"load: {n} accounts, {summary['trades']} matched trades over {len(LOAD_INSTRUMENTS)} more instruments "
        f"on {len(chains)} chains in {summary['seed_seconds']}s")
    return summary


@dataclass
class LoadDriver:
    """Background traffic while the validators run: see the module docstring."""

    chains: Sequence[SeededChain]
    accounts: Sequence[str]
    market_time: int
    genesis_time: float
    period_s: float
    market_lock: threading.Lock = field(default_factory=threading.Lock)
    stats: dict[str, Any] = field(default_factory=lambda: {"epochs": 0, "trades": 0, "transactions": 0,
                                                           "failures": 0, "last_error": None})
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="devnet-load", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        rng = np.random.default_rng(7)
        vols = {i.id: BASE_VOL for i in LOAD_INSTRUMENTS if i.kind == KIND_OPTION}
        senders = [get_load_sender(c) for c in self.chains]
        epoch = max(0, int((time.time() - self.genesis_time) // self.period_s))
        while not self._stop.is_set():
            epoch += 1  # mid-period of the next epoch, away from the pins at the epoch starts
            due = self.genesis_time + (epoch + 0.5) * self.period_s
            if self._stop.wait(max(0.0, due - time.time())):
                return
            try:
                self._step(rng, vols, senders)
                self.stats["epochs"] += 1
            except Exception as exc:  # the devnet goes on; the summary reports the failures
                self.stats["failures"] += 1
                self.stats["last_error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
                log.warning("devnet load step failed", extra={"reason": self.stats["last_error"]})
            epoch = max(epoch, int((time.time() - self.genesis_time) // self.period_s))

    def _step(self, rng: np.random.Generator, vols: dict[int, float], senders: list[ChainSender]) -> None:
        for iid in vols:
            vols[iid] = float(np.clip(vols[iid] + rng.normal() * VOL_STEP, 0.2, 1.5))
        traders = rng.choice(len(self.accounts), size=max(2, int(len(self.accounts) * TRADE_SHARE)), replace=False)
        with self.market_lock:
            batches = []
            for chain, sender in zip(self.chains, senders, strict=True):
                spots = {u: self._spot(sender, chain, u) * (1 + rng.normal() * SPOT_STEP) for u in NORMAL_MARKET}
                batch = TxBatch(sender)
                trades = make_trades([self.accounts[i] for i in traders.tolist()], rng, spots, vols)
                for k in range(0, len(trades), LEDGER_MAX_BATCH):
                    batch.add("PositionLedger", chain.deployment.ledger, "recordTrades",
                              [t.to_abi_tuple() for t in trades[k:k + LEDGER_MAX_BATCH]])
                add_marks(batch, chain, spots, vols, self.market_time, with_spots=True)
                self.stats["trades"] += len(trades)
                self.stats["transactions"] += len(batch)
                batches.append(batch)
            for batch in batches:
                batch.send()
            for batch in batches:
                batch.wait(timeout_s=max(30.0, 4 * self.period_s))

    @staticmethod
    def _spot(sender: ChainSender, chain: SeededChain, underlying: str) -> float:
        oracle = sender.contract("MarketOracle", chain.deployment.oracle).functions
        return int(oracle.spotOf(symbol_to_bytes32(underlying)).call()[0]) / PRICE_SCALE
