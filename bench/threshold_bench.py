"""Benchmark of threshold BLS and the in-process DKG; prints one JSON object.

Measures (median milliseconds over --reps runs) partial_sign, partial_verify, combine (t of n for
n = 7 and 16, t = floor(2n/3) + 1) and group_verify, plus dkg_seconds for a full in-process DKG at
n = 4, 7, 16 (one run each, or --dkg-runs). The baseline measured in the same run is a single-key
sign/verify with the same library and one py_ecc signature (the pure-Python oracle), so the figures
can be read as ratios on whatever machine runs this. Persists nothing.

Usage: .venv/bin/python bench/threshold_bench.py [--reps 30] [--dkg-runs 1]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from py_ecc.bls.hash_to_curve import hash_to_G1
from py_ecc.bls.point_compression import compress_G1
from py_ecc.optimized_bls12_381 import multiply

from node.crypto import bls, threshold
from node.crypto.dkg_bus import run_dkg_in_process

MSG = b"benchmark margin state digest"


def median_ms(fn: Callable[[], object], reps: int) -> float:
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(samples), 3)


def measure_baseline(reps: int) -> dict[str, float]:
    sk = int.from_bytes(hashlib.sha256(b"bench single key").digest(), "big") % bls.CURVE_ORDER  # full-size
    pk = bls.public_key(sk)
    sig = bls.sign(sk, MSG)

    def py_ecc_sign() -> bytes:
        return compress_G1(multiply(hash_to_G1(MSG, bls.DST_SIG, hashlib.sha256), sk)).to_bytes(48, "big")

    assert py_ecc_sign() == sig
    return {
        "single_sign_ms": median_ms(lambda: bls.sign(sk, MSG), reps),
        "single_verify_ms": median_ms(lambda: bls.verify(pk, MSG, sig), reps),
        "py_ecc_sign_ms": median_ms(py_ecc_sign, 1),
    }


def measure_threshold(reps: int) -> dict[str, object]:
    out: dict[str, object] = {"combine_ms": {}}
    for n in (7, 16):
        t = threshold.compute_default_threshold(n)
        group_pk, shares, public_shares = threshold.deal_trusted(n, t, b"bench")
        partials = {i: threshold.partial_sign(s, MSG) for i, s in shares.items()}
        chosen = {i: partials[i] for i in sorted(partials)[:t]}
        sig = threshold.combine(chosen, t)
        assert threshold.group_verify(group_pk, MSG, sig)
        out["combine_ms"][f"n{n}_t{t}"] = median_ms(lambda c=chosen, k=t: threshold.combine(c, k), reps)  # type: ignore[index]
        if n == 7:
            out["partial_sign_ms"] = median_ms(lambda s=shares[1]: threshold.partial_sign(s, MSG), reps)
            out["partial_verify_ms"] = median_ms(
                lambda p=public_shares[1], q=partials[1]: threshold.partial_verify(p, MSG, q), reps
            )
            out["group_verify_ms"] = median_ms(
                lambda g=group_pk, s=sig: threshold.group_verify(g, MSG, s), reps
            )
    return out


def measure_dkg(runs: int) -> dict[str, float]:
    out = {}
    for n in (4, 7, 16):
        t = threshold.compute_default_threshold(n)
        samples = []
        for _ in range(runs):
            start = time.perf_counter()
            outcome = run_dkg_in_process(n, t)
            samples.append(time.perf_counter() - start)
            assert not outcome.failures and len(outcome.results) == n
        out[str(n)] = round(statistics.median(samples), 3)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--dkg-runs", type=int, default=1)
    args = parser.parse_args()
    baseline = measure_baseline(args.reps)
    result: dict[str, object] = {"baseline": baseline, **measure_threshold(args.reps)}
    result["dkg_seconds"] = measure_dkg(args.dkg_runs)
    result["ratio_partial_sign_to_single_sign"] = round(
        float(result["partial_sign_ms"]) / baseline["single_sign_ms"],
        2,  # type: ignore[arg-type]
    )
    result["ratio_py_ecc_sign_to_partial_sign"] = round(
        baseline["py_ecc_sign_ms"] / float(result["partial_sign_ms"]),
        1,  # type: ignore[arg-type]
    )
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
