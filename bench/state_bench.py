"""State building and leaf storage benchmark: columnar path vs the per-leaf path, one JSON object.

From synthetic quantized arrays of N accounts (sorted accounts, int64 equity/im/mm/flags, 0.1 % of
rows with an approved withdrawal, a 23-scenario risk array, 1-2 collateral rows per account) it
measures, each path in its own child process (so each peak RSS is its own):
- new: `EpochLeaves` + leaf hashes + Merkle tree (`leaves_tree_s`), `SQLiteStore.put_signed_state`
  of the columns (`store_s`), then reads: the stored tree (`read_tree_s`, what the API snapshot
  loads), the whole epoch (`read_epoch_s`) and `get_leaf` latency (median of 200, `get_leaf_ms`);
- old: the pre-columnar per-leaf path re-implemented here as it was (one `MarginLeaf` and one
  detail object per account, two keccak calls per leaf, a Python loop per tree node, one
  `AccountLeaf` with JSON detail per account, one SQLite row per leaf). Its keccak is the native
  single-message function, faster than the old one, so its figures are a lower bound.
`--old-cap` limits the old path (default 100k accounts; above it the old path is skipped and
reported as such). Usage: `.venv/bin/python bench/state_bench.py --accounts 1000000`.
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import MappingProxyType

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bridges.merkle import keccak256
from bridges.statecodec import MarginLeaf, encode_margin_leaf
from node.leaves import CollateralRows, EpochLeaves, LeafDetail
from node.records import AccountDetail, AccountLeaf, ChainPin, SignedState
from node.store import MIGRATIONS, SQLiteStore

SCENARIOS = 23
ASSETS = ("ETH", "USDC", "WBTC")


def make_arrays(n: int, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    accounts = np.unique(rng.integers(0, 256, size=(n + n // 100 + 10, 20), dtype=np.uint8), axis=0)[:n]
    equity = rng.integers(-(10**12), 10**13, size=n, dtype=np.int64)
    im = rng.integers(0, 10**12, size=n, dtype=np.int64)
    mm = im * 8 // 10
    flags = (equity < mm).astype(np.int64)
    rows = rng.choice(n, size=max(1, n // 1000), replace=False)
    approvals = {int(r): (rng.bytes(32),) for r in rows}
    counts = rng.integers(1, 3, size=n)
    m = int(counts.sum())
    collateral = CollateralRows(offsets=np.concatenate(([0], np.cumsum(counts))).astype(np.int64),
                                chain_id=rng.choice([31337, 31338], size=m).astype(np.int64),
                                asset=rng.integers(0, len(ASSETS), size=m).astype(np.int32),
                                units_lo=rng.integers(0, 2**63, size=m, dtype=np.int64).astype(np.uint64),
                                units_hi=np.zeros(m, dtype=np.uint64), assets=ASSETS)
    detail = LeafDetail(equity_before=equity + 5, risk=rng.integers(-(10**11), 10**11, size=(n, SCENARIOS),
                                                                    dtype=np.int64),
                        worst=rng.integers(-1, SCENARIOS, size=n).astype(np.int32), collateral=collateral)
    return {"accounts": accounts, "equity": equity, "im": im, "mm": mm, "flags": flags, "approvals": approvals,
            "detail": detail}


def make_state(epoch: int, n: int, root: bytes) -> SignedState:
    return SignedState(network_id=7, keyset_id=1, epoch=epoch, pins=(ChainPin(31337, 10, b"\x01" * 32),),
                       inputs_digest=b"\x02" * 32, params_hash=b"\x03" * 32, root=root, leaf_count=n,
                       digest=b"\x04" * 32, signature=b"\x05" * 48, signers=(0, 1, 2))


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class Timer:
    """Wall and CPU seconds (all threads of the process) of a block: the machine may be shared, and
    CPU seconds show the work when wall time waits for cores."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def __enter__(self) -> Timer:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self._wall, time.process_time() - self._cpu

    def figures(self, name: str) -> dict:
        return {f"{name}_s": round(self.wall, 3), f"{name}_cpu_s": round(self.cpu, 3)}


def run_new(n: int, db: Path) -> dict:
    a = make_arrays(n)
    base_rss = peak_rss_mib()
    with Timer() as build:
        leaves = EpochLeaves(epoch=1, accounts=a["accounts"], equity=a["equity"], im=a["im"], mm=a["mm"],
                             flags=a["flags"], approvals=MappingProxyType(a["approvals"]), detail=a["detail"])
        root = leaves.tree.root
    with SQLiteStore(db) as store:
        with Timer() as put:
            store.put_signed_state(make_state(1, n, root), leaves)
        with Timer() as read_tree:
            tree = store.get_leaf_tree(1)
        assert tree is not None and tree.root == root
        with Timer() as read_epoch:
            again = store.get_epoch_leaves(1)
        assert again is not None and len(again) == n
        latencies = []
        for row in np.random.default_rng(2).integers(0, n, size=200).tolist():
            t0 = time.perf_counter()
            leaf = store.get_leaf(1, a["accounts"][row].tobytes())
            latencies.append((time.perf_counter() - t0) * 1000.0)
            assert leaf is not None and leaf.index == row
    return {**build.figures("leaves_tree"), **put.figures("store"), **read_tree.figures("read_tree"),
            **read_epoch.figures("read_epoch"), "get_leaf_ms": round(statistics.median(latencies), 3),
            "db_mib": round(db.stat().st_size / 2**20, 1), "peak_rss_mib": round(peak_rss_mib(), 1),
            "inputs_rss_mib": round(base_rss, 1)}


def _old_tree_root(hashes: list[bytes]) -> bytes:
    """The pre-columnar tree: sorted leaves, reversed placement, a Python loop per internal node."""
    n = len(hashes)
    order = sorted(range(n), key=hashes.__getitem__)
    nodes = [b""] * (n - 1) + [hashes[j] for j in reversed(order)]
    for i in range(n - 2, -1, -1):
        a, b = nodes[2 * i + 1], nodes[2 * i + 2]
        nodes[i] = keccak256(a + b) if a < b else keccak256(b + a)
    return nodes[0]


def _old_leaves(a: dict) -> tuple[list[MarginLeaf], list[AccountDetail]]:
    """One leaf object and one detail object per account, as the per-leaf builder made them."""
    names = ["0x" + row.tobytes().hex() for row in a["accounts"]]
    equity, im, mm, flags = (a[k].tolist() for k in ("equity", "im", "mm", "flags"))
    d = a["detail"]
    risk, worst, before = d.risk.tolist(), d.worst.tolist(), d.equity_before.tolist()
    leaves, details = [], []
    for i, name in enumerate(names):
        leaves.append(MarginLeaf(name, equity[i], im[i], mm[i], flags[i], a["approvals"].get(i, ())))
        details.append(AccountDetail(name, before[i], equity[i] - im[i], tuple(risk[i]),
                                     None if worst[i] < 0 else worst[i], d.collateral.get(i)))
    return leaves, details


def run_old(n: int, db: Path) -> dict:
    a = make_arrays(n)
    base_rss = peak_rss_mib()
    with Timer() as build:
        leaves, details = _old_leaves(a)
        root = _old_tree_root([keccak256(keccak256(encode_margin_leaf(leaf))) for leaf in leaves])
    with Timer() as put:
        records = [AccountLeaf(1, i, bytes.fromhex(leaf.account[2:]), leaf.equity, leaf.im, leaf.mm, leaf.flags,
                               leaf.approved_withdrawals, encode_margin_leaf(leaf), details[i].to_json_bytes())
                   for i, leaf in enumerate(leaves)]
        conn = _old_schema(db)
        state = make_state(1, n, root)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO states VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (1, 7, 1, "[]", state.inputs_digest, state.params_hash, root, n, state.digest, state.signature,
                      "[]"))
        conn.executemany("INSERT INTO leaves VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (
            (r.epoch, r.account, r.index, str(r.equity), str(r.im), str(r.mm), r.flags,
             b"".join(r.approved_withdrawals), r.encoded, r.detail) for r in records))
        conn.execute("COMMIT")
        conn.close()
    return {**build.figures("leaves_tree"), **put.figures("store"),
            "db_mib": round(db.stat().st_size / 2**20, 1), "peak_rss_mib": round(peak_rss_mib(), 1),
            "inputs_rss_mib": round(base_rss, 1)}


def _old_schema(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(db), isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    first = MIGRATIONS[0]
    assert isinstance(first, str)
    for statement in first.split(";"):
        if statement.strip():
            conn.execute(statement)
    return conn


def run_child(path: str, n: int) -> dict:
    cmd = [sys.executable, __file__, "--accounts", str(n), "--child", path]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=3600)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--old-cap", type=int, default=100_000, help="skip the old path above this many accounts")
    parser.add_argument("--child", choices=("new", "old"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        with tempfile.TemporaryDirectory() as tmp:
            run = run_new if args.child == "new" else run_old
            print(json.dumps(run(args.accounts, Path(tmp) / "bench.sqlite")))
        return
    report: dict = {"accounts": args.accounts, "new": run_child("new", args.accounts)}
    if args.accounts <= args.old_cap:
        report["old"] = run_child("old", args.accounts)
    else:
        report["old"] = f"skipped: more than --old-cap {args.old_cap} accounts"
    print(json.dumps(report, sort_keys=True))


if __name__ == "__main__":
    main()
