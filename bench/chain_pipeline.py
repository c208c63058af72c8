"""Chain mode of `bench/epoch_pipeline_bench.py`: the node's epoch pipeline on two real anvil chains.

Seeding (`bench/chain_seed.py`, excluded from timing): the production contracts, ~2k instruments and marks
with transactions, N accounts with ~10 positions each (about half on each chain) and USDC on both chains
written into the contracts' storage. Then, through the production input source
(`node.consensus.margin_inputs.MarginInputSource`, the real `ChainClient`s):
- one cold epoch: pin, cold read of both books (every view), merge, risk, leaves + tree + digest;
- `--epochs` steady epochs: `--trade-share` of the accounts trade (real `recordTrades` transactions of
  matched trades, so the logs carry the real absolute values) and every mark moves (real `setSpots`,
  `setForwards`, `setVols` transactions) on both chains; the node then advances both books by logs and runs
  the pipeline. Anvil's block cost is kept out of the timing: each epoch's transactions are sent, mined in
  one block (automine off, explicit timestamp) and a successor block is mined (so the pin is final) BEFORE
  the node's timer starts; the timer covers `compute_epoch` only (pin search included);
- the full re-read path on the same chains at the same pins: a fresh input source (no books, a fresh
  account index) computing the last steady epoch again (cold read of both books + merge + pipeline); its
  digest must equal the incremental one.
RPC: every HTTP request of the node's clients goes through a counting `requests.Session` (HTTP requests,
JSON-RPC calls inside batches, response bytes), per chain. Prints one JSON object (see `run_chains`).
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import numpy as np
import requests
from web3 import HTTPProvider

from bench.chain_seed import MAX_GAS_PER_TX, MICRO, NETWORK_ID, VOL, BenchChain, add_marks, seed_chains
from bench.epoch_pipeline_bench import CHAINS, SPOTS, build_instruments, peak_rss_mib
from bridges.book import InstrumentInfo
from bridges.chain import ChainClient, ChainConfig
from node.consensus.digest import compute_state_digest
from node.consensus.margin_inputs import MarginInputSource
from node.devnet.txbatch import TxBatch

STAGES = ("pin", "read_apply", "merge", "risk", "settle", "leaves", "records")
EPOCH_SPACING_S = 12
TRADES_PER_TX = 200  # PositionLedger.MAX_BATCH
NO_CHECK = 10**9  # the input source's periodic full re-read check stays off; the bench times that path itself
KEYSET_ID = 1


class CountingSession(requests.Session):
    """Counts HTTP requests, JSON-RPC calls (batch members) and bytes of the JSON-RPC traffic."""

    def __init__(self) -> None:
        super().__init__()
        self.reset()

    def reset(self) -> None:
        self.requests = self.calls = self.bytes_in = self.bytes_out = 0

    def post(self, url: Any, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        response = super().post(url, *args, **kwargs)
        data = kwargs.get("data") or b""
        body = data if isinstance(data, bytes) else str(data).encode()
        self.requests += 1
        self.calls += max(1, body.count(b'"jsonrpc"'))
        self.bytes_out += len(body)
        self.bytes_in += len(response.content)
        return response

    def snapshot(self) -> dict[str, int]:
        return {"http_requests": self.requests, "jsonrpc_calls": self.calls, "response_bytes": self.bytes_in,
                "request_bytes": self.bytes_out}


class CountingClient(ChainClient):
    """The production `ChainClient` whose HTTP provider uses a `CountingSession` (bench only)."""

    def __init__(self, config: ChainConfig) -> None:
        super().__init__(config)
        self.session = CountingSession()
        self._provider = HTTPProvider(config.rpc_url, request_kwargs={"timeout": config.timeout_s},
                                      session=self.session, exception_retry_configuration=None)


def make_source(chains: list[BenchChain]) -> tuple[MarginInputSource, list[CountingClient]]:
    clients = [CountingClient(ChainConfig(bc.chain.chain_id, bc.rpc_url, timeout_s=120.0)) for bc in chains]
    source = MarginInputSource(clients, {bc.chain.chain_id: bc.deployment for bc in chains}, CHAINS[0], NETWORK_ID,
                               KEYSET_ID, full_check_every=NO_CHECK)
    return source, clients


def close_epoch(chains: list[BenchChain], target: int) -> None:
    """A block at `target` on every chain (holding what was sent) and a successor, so the pin is final."""
    for bc in chains:
        bc.mine(target)
        bc.mine(target + 1)


def send_epoch(chains: list[BenchChain], instruments: list[InstrumentInfo], rng: np.random.Generator,
               traders: np.ndarray, epoch: int) -> list[TxBatch]:
    """One steady epoch's transactions on both chains (matched trades of `traders`, every mark), signed and
    queued (sent by `TxBatch.wait`)."""
    move = 1.0 + 0.01 * (epoch % 5)
    vol = int(VOL * (0.9 + 0.2 * rng.random()))
    batches = []
    for bc in chains:
        assert bc.accounts is not None
        addresses = bc.accounts.addresses
        batch = TxBatch(bc.owner, MAX_GAS_PER_TX)
        partners = rng.permutation(traders)
        trades = []
        for a, b in zip(traders.tolist(), partners.tolist(), strict=True):
            if a == b:
                continue
            info = instruments[int(rng.integers(len(instruments)))]
            price = int(SPOTS[info.underlying] * MICRO * (0.05 if info.kind == "option" else 1.0))
            trades.append(("0x" + addresses[a].hex(), "0x" + addresses[b].hex(), info.id,
                           int(rng.integers(1, 100)) * 10**6, price))
        for k in range(0, len(trades), TRADES_PER_TX):
            batch.add("PositionLedger", bc.deployment.ledger, "recordTrades", trades[k:k + TRADES_PER_TX])
        add_marks(batch, bc.deployment, instruments, move, vol)
        batches.append(batch)
    return batches


def run_epoch(source: MarginInputSource, clients: list[CountingClient], epoch: int, target: int
              ) -> tuple[float, dict[str, float], dict[str, Any], bytes, int]:
    for c in clients:
        c.session.reset()
    t = time.perf_counter()
    computed = source.compute_epoch(epoch, target)
    elapsed = time.perf_counter() - t
    rpc = {str(c.chain_id): c.session.snapshot() | {"counted_by_book_sync": s.stats.rpc_calls,
                                                     "logs": s.stats.logs, "blocks": s.stats.blocks}
           for c, s in zip(clients, source.syncs.values(), strict=True)}
    digest = compute_state_digest(NETWORK_ID, KEYSET_ID, epoch, computed.inputs_digest, computed.params_hash,
                                  computed.root, computed.leaf_count)
    return elapsed, dict(source.last_stages), rpc, digest, computed.leaf_count


def total_rpc(rpc: dict[str, Any]) -> dict[str, Any]:
    return {**rpc, "total": {k: sum(v[k] for v in rpc.values()) for k in next(iter(rpc.values()))}}


def anvil_peak_rss_mib(chains: list[BenchChain]) -> dict[str, float]:
    out = {}
    for bc in chains:
        assert bc.chain.process is not None
        for line in open(f"/proc/{bc.chain.process.pid}/status").read().splitlines():  # noqa: SIM115
            if line.startswith("VmHWM:"):
                out[str(bc.chain.chain_id)] = round(int(line.split()[1]) / 1024, 1)
    return out


def median_stages(stages: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(statistics.median(s.get(k, 0.0) for s in stages), 3) for k in (*STAGES, "total")}


def run_chains(args: Any) -> dict[str, Any]:
    """Seed, one cold epoch, `args.epochs` steady epochs, the full re-read at the last pins; one JSON dict."""
    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    rng = np.random.default_rng(7)
    instruments = build_instruments()
    t = time.perf_counter()
    chains = seed_chains(args.accounts, instruments, rng, say)
    seed_s = time.perf_counter() - t
    try:
        return measure(args, chains, instruments, rng, seed_s, say)
    finally:
        for bc in chains:
            bc.chain.stop()


def measure(args: Any, chains: list[BenchChain], instruments: list[InstrumentInfo], rng: np.random.Generator,
            seed_s: float, say: Any) -> dict[str, Any]:
    n = args.accounts
    source, clients = make_source(chains)
    target = max(bc.latest_timestamp() for bc in chains) + EPOCH_SPACING_S
    close_epoch(chains, target)
    cold_s, cold_stages, cold_rpc, _digest, leaves = run_epoch(source, clients, 1, target)
    say(f"cold epoch: {cold_s:.2f}s {cold_stages}")
    steady, stages, rpcs, chain_s, sent = [], [], [], [], []
    digest = b""
    for epoch in range(2, 2 + args.epochs):
        t = time.perf_counter()
        traders = rng.choice(n, size=max(2, int(n * args.trade_share)), replace=False)
        batches = send_epoch(chains, instruments, rng, traders, epoch)
        sent.append({str(bc.chain.chain_id): len(b) for bc, b in zip(chains, batches, strict=True)})
        target += EPOCH_SPACING_S
        for bc, batch in zip(chains, batches, strict=True):
            batch.wait(mine=lambda bc=bc, t=target: bc.mine(t))
            bc.mine(target + 1)
        chain_s.append(time.perf_counter() - t)
        elapsed, st, rpc, digest, leaves = run_epoch(source, clients, epoch, target)
        steady.append(elapsed)
        stages.append(st)
        rpcs.append(rpc)
        say(f"epoch {epoch}: chains {chain_s[-1]:.1f}s (not timed), node {elapsed:.3f}s {st}")
    last_epoch = 1 + args.epochs
    fresh, fresh_clients = make_source(chains)
    full_s, full_stages, full_rpc, full_digest, _ = run_epoch(fresh, fresh_clients, last_epoch, target)
    say(f"full re-read: {full_s:.2f}s {full_stages}")
    if full_digest != digest:
        raise SystemExit(f"full re-read digest {full_digest.hex()} != incremental {digest.hex()}")
    median = statistics.median(steady)
    per_chain = {cid: {k: statistics.median(r[cid][k] for r in rpcs) for k in rpcs[0][cid]} for cid in rpcs[0]}
    return {
        "mode": "chains", "accounts": n, "positions": sum(bc.info["positions"] for bc in chains),
        "instruments": len(instruments), "leaves": leaves, "epochs": args.epochs, "trade_share": args.trade_share,
        "seed_seconds": round(seed_s, 1), "seed": {str(bc.chain.chain_id): bc.info for bc in chains},
        "cold_epoch_seconds": round(cold_s, 3), "cold_stages": round_stages(cold_stages),
        "cold_rpc": total_rpc(cold_rpc),
        "steady_epoch_seconds": round(median, 3), "steady_epoch_all": [round(x, 3) for x in steady],
        "steady_stages_median": median_stages(stages),
        "rpc_calls_per_epoch": total_rpc({c: {k: v[k] for k in ("http_requests", "jsonrpc_calls",
                                                                 "counted_by_book_sync")}
                                          for c, v in per_chain.items()}),
        "bytes_per_epoch": total_rpc({c: {"response_bytes": v["response_bytes"], "request_bytes": v["request_bytes"]}
                                      for c, v in per_chain.items()}),
        "logs_per_epoch": {c: v["logs"] for c, v in per_chain.items()},
        "transactions_per_epoch": sent[0],
        "chain_seconds_per_epoch_not_timed": round(statistics.median(chain_s), 1),
        "full_reread_seconds": round(full_s, 3), "full_reread_stages": round_stages(full_stages),
        "full_reread_rpc": total_rpc(full_rpc),
        "full_reread_mode": "fresh MarginInputSource at the last steady epoch's pins: cold read of both books "
                            "(every view) + fresh account index + merge + pipeline",
        "speedup_vs_full_reread": round(full_s / median, 1), "digest_matches_full_reread": True,
        "peak_rss_mib": round(peak_rss_mib(), 1), "anvil_peak_rss_mib": anvil_peak_rss_mib(chains),
        "timing": "each steady epoch's transactions are sent, mined in one block at the epoch's timestamp and a "
                  "successor block is mined before the node's timer starts; the timer covers "
                  "MarginInputSource.compute_epoch (pin search, advance by logs, merge, pipeline, records) only; "
                  "the periodic full check of the input source is off (the full re-read is timed separately)",
    }


def round_stages(stages: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 3) for k, v in stages.items()}
