"""Benchmark of the batch margin engine against the reference engine, measured in the same run.

Builds a synthetic market (BTC and ETH; options over 8 expiries x 64 strikes x call/put, futures per
expiry, perps and spot: 2,068 instruments) and N accounts of 10 positions each (half on one underlying,
half on both; collateral 20-60% of gross notional), excluded from timing. With `--params pm2` the market
also carries the v2 inputs (per-expiry rates, a 9th expiry 15 minutes from settlement with a fixed
forward part, confidences below the oracle threshold for one expiry and the ETH perp, perp marks off
spot, a stable below the peg threshold) and every account some cash. Then times `compute_margin_batch`
(wall, best of --repeat), the quantization, and the reference engine on a subsample (scaled per
account), and prints one JSON object per parameter set; `--params both` runs RRA-1 then PM2 on the same
accounts and adds the same-run ratio of their batch times (robust to the machine's load).

    .venv/bin/python bench/risk_bench.py --accounts 1000000 --params both
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from risk.batch import BatchInput, compute_margin_batch
from risk.instrument_table import compute_instrument_table
from risk.instruments import Instrument, Market, Position
from risk.params import PM2, RRA1, RiskParams
from risk.quantize import encode_quantized, quantized
from risk.reference import compute_account_risk

EXPIRIES = (1.0, 3.0, 7.0, 14.0, 30.0, 60.0, 90.0, 180.0)
SETTLING = 0.0104  # days: 15 minutes before expiry, half of the 30-minute settlement average fixed
SPOTS = {"BTC": 100_000.0, "ETH": 3_000.0}
PARAMS = {"rra1": RRA1, "pm2": PM2}
ASSETS = ("USDC", "BTC", "ETH")
POSITIONS_PER_ACCOUNT = 10


def build_market(strikes: int = 64, v2: bool = False) -> tuple[Market, list[Instrument]]:
    """The RRA-1 market, or with `v2` the same plus the v2 inputs (module docstring)."""
    rng = np.random.default_rng(7)
    forwards: dict[tuple[str, float], float] = {}
    instruments: list[Instrument] = []
    for u, s in SPOTS.items():
        for d in ((SETTLING, *EXPIRIES) if v2 else EXPIRIES):
            f = s * (1.0 + 0.05 * d / 365.0)
            forwards[(u, d)] = f
            for k in np.linspace(0.5, 1.6, strikes):
                for right in ("call", "put"):
                    vol = 0.45 + 0.25 * abs(np.log(k)) + 0.02 * rng.random()
                    instruments.append(Instrument(u, "option", d, float(round(k * f, 2)), right, float(vol)))
            instruments.append(Instrument(u, "future", d))
        instruments.append(Instrument(u, "perp"))
        instruments.append(Instrument(u, "spot"))
    market = Market(spot=dict(SPOTS), forwards=forwards, asset_prices={"USDC": 1.0, **SPOTS})
    if not v2:
        return market, instruments
    market = Market(
        spot=dict(SPOTS), forwards=forwards, asset_prices={"USDC": 1.0, **SPOTS},
        rates={key: 0.02 + 0.0002 * key[1] for key in forwards},
        forward_fixed={(u, SETTLING): 0.5 * forwards[(u, SETTLING)] for u in SPOTS},
        expiry_confidence={key: (0.5 if key[1] == 7.0 else 0.95) for key in forwards},
        spot_confidence={"BTC": 0.99, "ETH": 0.9}, perp_marks={"BTC": 100_050.0, "ETH": 2_998.0},
        perp_confidence={"BTC": 0.95, "ETH": 0.4}, asset_confidence={"ETH": 0.5}, stable_price=0.985)
    return market, instruments


def build_accounts(n: int, instruments: list[Instrument], seed: int = 11) -> tuple[sp.csr_matrix, np.ndarray]:
    """n accounts x 10 distinct instruments each; returns (positions CSR, collateral)."""
    rng = np.random.default_rng(seed)
    n_inst = len(instruments)
    block = n_inst // 2  # instruments are BTC first, then ETH
    single = rng.random(n) < 0.5
    k = POSITIONS_PER_ACCOUNT
    span = np.where(single, block, n_inst)[:, None]
    gaps = rng.integers(1, np.where(single, block // k, n_inst // k)[:, None], size=(n, k))
    start = rng.integers(0, n_inst, size=(n, 1))
    start = np.where(single[:, None], (start % 2) * block, start)
    cols = np.where(single[:, None], start + np.cumsum(gaps, axis=1) % block,
                    (start + np.cumsum(gaps, axis=1)) % span)
    cols = np.sort(cols, axis=1).astype(np.int32)
    unit = np.array([0.5 if x.underlying == "BTC" else 8.0 for x in instruments])
    spot = np.array([SPOTS[x.underlying] for x in instruments])
    qty = rng.normal(size=(n, k)) * unit[cols]
    indptr = np.arange(0, n * k + 1, k, dtype=np.int32)
    positions = sp.csr_matrix((qty.ravel(), cols.ravel(), indptr), shape=(n, n_inst))
    notional = (np.abs(qty) * spot[cols]).sum(axis=1)
    collateral = np.zeros((n, len(ASSETS)))
    collateral[:, 0] = notional * (0.15 + 0.3 * rng.random(n))
    collateral[:, 1] = 0.2 * notional * rng.random(n) / SPOTS["BTC"]
    collateral[:, 2] = 0.1 * notional * rng.random(n) / SPOTS["ETH"]
    return positions, collateral


def build_book(accounts: int, params: RiskParams, seed: int = 11) -> BatchInput:
    """The benchmark's book for a parameter set: the v2 market and cash when it has expiry terms."""
    v2 = params.has_expiry_terms()
    market, instruments = build_market(v2=v2)
    positions, collateral = build_accounts(accounts, instruments, seed=seed)
    cash = np.random.default_rng(seed + 1).normal(scale=10_000.0, size=accounts) if v2 else None
    return BatchInput(instruments, market, positions, collateral, list(ASSETS), cash)


def time_reference(inp: BatchInput, sample: int, params: RiskParams) -> float:
    """Seconds per account of the reference engine (no tail metrics, like the batch run)."""
    p = inp.positions
    start = time.perf_counter()
    for a in range(sample):
        s0, s1 = p.indptr[a], p.indptr[a + 1]
        positions = [Position(inp.instruments[c], float(q)) for c, q in zip(p.indices[s0:s1], p.data[s0:s1],
                                                                              strict=True)]
        compute_account_risk(positions, dict(zip(ASSETS, map(float, inp.collateral[a]), strict=True)),
                             inp.market, params, include_tail=False,
                             cash=0.0 if inp.cash is None else float(inp.cash[a]))
    return (time.perf_counter() - start) / sample


def run(name: str, args: argparse.Namespace) -> dict:
    """One parameter set: the timings and figures of the module docstring."""
    params = PARAMS[name]
    inp = build_book(args.accounts, params)
    t0 = time.perf_counter()
    compute_instrument_table(inp.instruments, inp.market, params)
    table_seconds = time.perf_counter() - t0
    runs, cpu, phases = [], [], []
    load_before = os.getloadavg()[0]
    for _ in range(max(1, args.repeat)):
        marks: list[tuple[str, float]] = []
        c0, t0 = time.process_time(), time.perf_counter()
        result = compute_margin_batch(inp, params, threads=args.threads,
                                      phase_hook=lambda name, m=marks: m.append((name, time.perf_counter())))
        runs.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        stamps = [t0] + [t for _, t in marks]
        phases.append({name: round(b - a, 4) for (name, _), a, b in zip(marks, stamps[:-1], stamps[1:], strict=True)})
    t0 = time.perf_counter()
    view = quantized(result)
    digest = hashlib.sha256(encode_quantized(view)).hexdigest()
    quantize_seconds = time.perf_counter() - t0
    seconds = min(runs)
    per_account_ref = time_reference(inp, min(args.reference_sample, args.accounts), params)
    return {
        "params": name,
        "scenarios": len(params.scenarios),
        "accounts": args.accounts,
        "positions": int(inp.positions.nnz),
        "instruments": len(inp.instruments),
        "threads": args.threads,
        "seconds": round(seconds, 4),
        "seconds_all_runs": [round(x, 4) for x in runs],
        "accounts_per_second": round(args.accounts / seconds),
        "cpu_seconds_all_runs": [round(x, 4) for x in cpu],
        "load_average_1m_before": round(load_before, 2),
        "phase_seconds_best_run": phases[runs.index(seconds)],
        "instrument_table_seconds": round(table_seconds, 4),
        "quantize_seconds": round(quantize_seconds, 4),
        "liquidatable_accounts": int(np.count_nonzero(result.liquidatable)),
        "errors": len(result.errors),
        "reference_seconds_per_account": round(per_account_ref, 6),
        "reference_seconds_scaled": round(per_account_ref * args.accounts, 1),
        "speedup_vs_reference": round(per_account_ref * args.accounts / seconds, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "quantized_sha256": digest,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--reference-sample", type=int, default=200)
    parser.add_argument("--params", choices=("rra1", "pm2", "both"), default="rra1")
    args = parser.parse_args(argv)
    names = ("rra1", "pm2") if args.params == "both" else (args.params,)
    results = [run(name, args) for name in names]
    for r in results:
        print(json.dumps(r))
    if len(results) == 2:
        print(json.dumps({"pm2_over_rra1_seconds": round(results[1]["seconds"] / results[0]["seconds"], 3),
                          "pm2_over_rra1_cpu": round(min(results[1]["cpu_seconds_all_runs"])
                                                     / min(results[0]["cpu_seconds_all_runs"]), 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
