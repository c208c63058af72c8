"""Resharing over the gossip transport: wall time of every session of one reshare, run in one process.

`python bench/reshare_bench.py [--sizes 4:3:5:4,7:5:10:7,13:9:16:11] [--runs 2]` prints one JSON object.
For each size (n_old:t_old:n_new:t_new) it runs the reshare of `node.consensus.reshare_session` with
real signed envelopes on the in-memory bus of the reshare tests (encryption-key announcements, deals,
responses; every session in this one process, so the figure is the total CPU of all parties), and as
the same-run baseline a fresh in-process DKG (`node.crypto.dkg.run_dkg_in_process`) of the new size.
Best of `--runs`. Persists nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run_size(n_old: int, t_old: int, n_new: int, t_new: int, runs: int) -> dict:
    from eth_hash.auto import keccak

    import tests.consensus.test_reshare_session as harness
    from node.crypto.dkg import run_dkg_in_process
    from node.p2p.envelope import get_operator_address

    keys = {}
    for i in range(max(n_old, n_new)):
        key = keccak(b"bench-operator" + i.to_bytes(4, "big"))
        keys[get_operator_address(key)] = key
    harness.OPERATOR_KEYS.update(keys)
    addresses = harness.ADDRESSES = tuple(keys)  # make_plan takes the old members from the harness
    reshare_s, dkg_s = [], []
    for _ in range(runs):
        old = harness.make_old_holders(n_old, t_old)
        plan = harness.make_plan(old, addresses[:n_new], t_new)
        start = time.perf_counter()
        outcome, _ = harness.run_reshare(plan, old)
        reshare_s.append(time.perf_counter() - start)
        harness.assert_one_new_keyset(plan, outcome)
        start = time.perf_counter()
        dkg = run_dkg_in_process(n_new, t_new)
        dkg_s.append(time.perf_counter() - start)
        if dkg.failures:
            raise RuntimeError(f"baseline DKG failed: {dkg.failures}")
    return {"n_old": n_old, "t_old": t_old, "n_new": n_new, "t_new": t_new,
            "reshare_over_gossip_s": round(min(reshare_s), 3), "baseline_fresh_dkg_in_process_s": round(min(dkg_s), 3),
            "ratio": round(min(reshare_s) / min(dkg_s), 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="4:3:5:4,5:4:4:3,7:5:10:7,13:9:16:11")
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    sizes = [tuple(int(x) for x in s.split(":")) for s in args.sizes.split(",")]
    rows = [run_size(*size, args.runs) for size in sizes]  # type: ignore[misc]
    print(json.dumps({"bench": "reshare", "load_average": os.getloadavg()[0], "runs": args.runs, "results": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
