"""Benchmark of the epoch pipeline: chain books moved by events -> merge -> risk -> leaves + tree -> digest.

Two modes, one JSON object each:
- `--synthetic`: no chains. Two chain books are seeded in bulk (excluded from timing) with N accounts,
  ~10 positions each over the full instrument set (half on each chain) and USDC on both chains; then
  `--epochs` steady epochs in which `--trade-share` of the accounts trade (matched trades, two events each)
  and every mark moves (spot, forwards and every option vol on both chains), applied as event blocks.
  The "full re-read" of this mode rebuilds both books from their serialized columns and a fresh account
  index (what a node does from a cold start without RPC); it is reported as such.
- chains (default): two anvil chains seeded through the contracts (`bench/chain_seed.py`); the cold epoch
  reads every view, steady epochs move the books with logs, and the full re-read path (every view at the
  same pins) is timed in the same run.

Per stage (seconds): pin, read_apply, merge, risk, settle, leaves (leaves + tree + digest), records;
eth_calls per epoch (chain mode), peak RSS.
    .venv/bin/python bench/epoch_pipeline_bench.py --synthetic --accounts 1000000
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bridges.book import AssetInfo, ChainBook, Event, InstrumentInfo
from bridges.book_merge import AccountIndex, merge_books
from node.pipeline import compute_epoch_state
from risk.params import RRA1

GENESIS = 1_700_000_000
DAY = 86_400
EXPIRIES = (1, 3, 7, 14, 30, 60, 90, 180)
SPOTS = {"BTC": 100_000, "ETH": 3_000}
STRIKES = 60
POSITIONS_PER_ACCOUNT = 10
MICRO = 10**6
CHAINS = (31337, 31338)


def build_instruments() -> list[InstrumentInfo]:
    out: list[InstrumentInfo] = []
    iid = 1
    for u, s in SPOTS.items():
        out.append(InstrumentInfo(iid, u, "perp", 0, 0, ""))
        iid += 1
        out.append(InstrumentInfo(iid, u, "spot", 0, 0, ""))
        iid += 1
        for d in EXPIRIES:
            expiry = GENESIS + d * DAY
            out.append(InstrumentInfo(iid, u, "future", 0, expiry, ""))
            iid += 1
            for k in np.linspace(0.6, 1.5, STRIKES):
                for right in ("call", "put"):
                    out.append(InstrumentInfo(iid, u, "option", round(k * s) * MICRO, expiry, right))
                    iid += 1
    return out


def seed_book(chain_id: int, addresses: np.ndarray, instruments: list[InstrumentInfo], rng: np.random.Generator
              ) -> ChainBook:
    """A book of `addresses` with ~5 positions each on this chain, USDC collateral and marks (bulk)."""
    tag = chain_id.to_bytes(2, "big").hex()
    book = ChainBook(chain_id, {"vault": "0x" + "a" * 36 + tag, "ledger": "0x" + "b" * 36 + tag,
                                "oracle": "0x" + "d" * 36 + tag})
    for info in instruments:
        book.add_instrument(info)
    book.add_asset(AssetInfo("USDC", "0x" + "c" * 36 + tag, 6, MICRO))
    n = len(addresses)
    book.addresses = [bytes(a) for a in addresses]
    book.row_of = {a: i for i, a in enumerate(book.addresses)}
    k = POSITIONS_PER_ACCOUNT // 2
    cols = np.sort(rng.choice(len(instruments), size=(n, k), replace=True), axis=1)
    cols = np.unique(np.arange(n)[:, None] * (1 << 20) + cols)
    qty = (rng.normal(size=len(cols)) * 5e7).astype(np.int64)
    qty[qty == 0] = 1
    book.positions.keys, book.positions.qty = cols.astype(np.int64), qty
    book.positions.entry = np.zeros(len(cols), dtype=np.int64)
    notional = np.bincount((cols >> 20).astype(np.int64), weights=np.abs(qty) / 1e8 * 50_000, minlength=n)
    balances = (notional * rng.uniform(0.3, 0.8, n) + 1_000).astype(np.int64) * MICRO
    book.balances = {(i, 0): int(b) for i, b in enumerate(balances.tolist())}
    book._dirty_units = set(book.balances)
    cash = (rng.normal(size=n) * 1e9).astype(np.int64)
    book.cash = {i: int(c) for i, c in enumerate(cash.tolist()) if c}
    book._dirty_cash = set(book.cash)
    for u, s in SPOTS.items():
        book.spots[u] = (s * MICRO, GENESIS)
        for d in EXPIRIES:
            book.forwards[(u, GENESIS + d * DAY)] = (s * MICRO, GENESIS)
    for info in instruments:
        if info.kind == "option":
            book.vols[info.id] = (550_000, GENESIS)
    book.asset_prices["USDC"] = (MICRO, GENESIS)
    book.block_number, book.block_hash = 1, bytes(32)
    book.sequences = {"vault": 1, "ledger": 1, "oracle": 1}
    return book


class SyntheticStream:
    """Event blocks of a steady epoch for one book: matched trades of a share of the accounts and marks."""

    def __init__(self, book: ChainBook, rng: np.random.Generator) -> None:
        self.book, self.rng = book, rng

    def _event(self, contract: str, name: str, **args: object) -> Event:
        self.book_seq[contract] += 1
        return Event(contract, name, {"sequence": self.book_seq[contract], **args})

    def block(self, epoch: int, traders: np.ndarray, move: float) -> list[Event]:
        book = self.book
        self.book_seq = dict(book.sequences)
        at = GENESIS + epoch
        out: list[Event] = []
        ids = book.instrument_ids
        partners = self.rng.permutation(traders)
        positions: dict[int, int] = {}
        cashes: dict[int, int] = {}
        for a, b in zip(traders.tolist(), partners.tolist(), strict=True):
            if a == b:
                continue
            iid = ids[int(self.rng.integers(len(ids)))]
            q = int(self.rng.integers(1, 100)) * 10**6
            for row, side in ((a, q), (b, -q)):
                key = (row << 20) | book.col_of[iid]
                if key not in positions:
                    old = book.positions.get(key)
                    positions[key] = old[0] if old else 0
                positions[key] += side
                cashes[row] = cashes.get(row, book.cash.get(row, 0)) + (-side * 50_000 * MICRO) // 10**8
                out.append(self._event("ledger", "TradeRecorded", account=book.addresses[row], instrumentId=iid,
                                       quantity=side, price=50_000 * MICRO, position=positions[key],
                                       cash=cashes[row], fundingEntry=0))
        for u, s in SPOTS.items():
            raw = u.encode().ljust(32, b"\0")
            price = int(s * MICRO * move)
            out.append(self._event("oracle", "SpotSet", underlying=raw, price=price, updatedAt=at))
            for d in EXPIRIES:
                out.append(self._event("oracle", "ForwardSet", underlying=raw, expiry=GENESIS + d * DAY, price=price,
                                       updatedAt=at))
        vol = int(550_000 * (0.9 + 0.2 * self.rng.random()))
        for iid in ids:
            if book.instruments[iid].kind == "option":
                out.append(self._event("oracle", "VolSet", instrumentId=iid, vol=vol, updatedAt=at))
        return out


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_epoch(books: list[ChainBook], index: AccountIndex, epoch: int) -> tuple[dict[str, float], object]:
    stages: dict[str, float] = {}
    t = time.perf_counter()
    inputs = merge_books(books, index, CHAINS[0], GENESIS + 3600)
    stages["merge"] = time.perf_counter() - t
    mark = [time.perf_counter()]

    def hook(stage: str) -> None:
        now = time.perf_counter()
        stages[stage] = now - mark[0]
        mark[0] = now

    state = compute_epoch_state(inputs, RRA1, 7, 1, epoch, b"\x55" * 32, hook)
    t = time.perf_counter()
    state.get_account_leaves()
    stages["records"] = time.perf_counter() - t
    return stages, state


def synthetic(args: argparse.Namespace) -> dict[str, object]:
    rng = np.random.default_rng(5)
    instruments = build_instruments()
    addresses = rng.integers(0, 256, size=(args.accounts, 20), dtype=np.uint8)
    t = time.perf_counter()
    books = [seed_book(cid, addresses, instruments, rng) for cid in CHAINS]
    seed_s = time.perf_counter() - t
    positions = sum(len(b.positions) for b in books)
    index = AccountIndex()
    t = time.perf_counter()
    cold_stages, cold_state = run_epoch(books, index, 1)
    cold = time.perf_counter() - t
    streams = [SyntheticStream(b, rng) for b in books]
    steady, per_stage = [], []
    for epoch in range(2, 2 + args.epochs):
        traders = rng.choice(args.accounts, size=max(2, int(args.accounts * args.trade_share)), replace=False)
        blocks = [s.block(epoch, traders, 1.0 + 0.01 * (epoch % 5)) for s in streams]  # generated outside timing
        t = time.perf_counter()
        for book, events in zip(books, blocks, strict=True):
            book.apply_block(epoch, epoch.to_bytes(32, "big"), events)
        apply_s = time.perf_counter() - t
        stages, state = run_epoch(books, index, epoch)
        stages["read_apply"] = apply_s
        steady.append(time.perf_counter() - t)
        per_stage.append(stages)
    t = time.perf_counter()
    reread = [ChainBook.from_bytes(b.to_bytes()) for b in books]
    _stages, full_state = run_epoch(reread, AccountIndex(), 1 + args.epochs)
    full = time.perf_counter() - t
    if full_state.digest != state.digest:
        raise SystemExit("full re-read and incremental books give different digests")
    median = statistics.median(steady)
    return {
        "mode": "synthetic", "accounts": args.accounts, "positions": positions, "leaves": state.leaf_count,
        "epochs": args.epochs, "trade_share": args.trade_share, "seed_seconds": round(seed_s, 3),
        "cold_epoch_seconds": round(cold, 3), "cold_stages": {k: round(v, 3) for k, v in cold_stages.items()},
        "steady_epoch_seconds": round(median, 3), "steady_epoch_all": [round(x, 3) for x in steady],
        "steady_stages_median": {k: round(statistics.median(s[k] for s in per_stage), 3) for k in per_stage[0]},
        "full_reread_seconds": round(full, 3),
        "full_reread_mode": "books rebuilt from their serialized columns + fresh account index (no RPC)",
        "speedup_vs_full_reread": round(full / median, 1), "rpc_calls_per_epoch": 0,
        "peak_rss_mib": round(peak_rss_mib(), 1), "digest_matches_full_reread": True,
        "cold_leaves": cold_state.leaf_count,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--trade-share", type=float, default=0.01)
    parser.add_argument("--synthetic", action="store_true")
    args = parser.parse_args()
    if args.synthetic:
        print(json.dumps(synthetic(args), indent=2))
        return
    from bench.chain_pipeline import run_chains  # type: ignore[import-not-found]

    print(json.dumps(run_chains(args), indent=2))


if __name__ == "__main__":
    main()
