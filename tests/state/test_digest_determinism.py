"""The signed digest of a 20,000-account book (two chain books -> merge -> pipeline) is identical under every
SIMD dispatch this CPU allows (`NPY_DISABLE_CPU_FEATURES`, separate processes), for any hash seed, and equal
to the digest of the same book restored from its persisted blobs: validators on different hardware agree.
The same holds for the devnet's own book (`tests/state/devnet_book.py`: the demo accounts and the house plus
20,000 load accounts, as `clearingd devnet --accounts 20000` seeds them), before and after the demo's crash."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

CHILD = """
import sys
sys.path.insert(0, {repo!r}); sys.path.insert(0, {bench!r})
import numpy as np
from epoch_pipeline_bench import CHAINS, GENESIS, build_instruments, seed_book
from bridges.book import ChainBook
from bridges.book_merge import AccountIndex, merge_books
from node.pipeline import compute_epoch_state
from risk.params import RRA1
rng = np.random.default_rng(21)
instruments = build_instruments()
addresses = rng.integers(0, 256, size=(20_000, 20), dtype=np.uint8)
books = [seed_book(cid, addresses, instruments, rng) for cid in CHAINS]
restored = [ChainBook.from_bytes(b.to_bytes()) for b in books]
for bs in (books, restored):
    inputs = merge_books(bs, AccountIndex(), CHAINS[0], GENESIS + 3600)
    state = compute_epoch_state(inputs, RRA1, 7, 1, 3, b"\\x55" * 32)
    print(state.digest.hex(), state.leaf_count)
from tests.state.devnet_book import (DEVNET_CHAIN_IDS, DEVNET_MAX_QUOTE_AGE_S, apply_devnet_crash,
                                     build_devnet_books)
T = {market_time}
devnet = build_devnet_books(T, {load_accounts})
restored = [ChainBook.from_bytes(b.to_bytes()) for b in devnet]
for bs, crash in ((devnet, False), (restored, False), (devnet, True)):
    if crash:
        apply_devnet_crash(bs, T)
    inputs = merge_books(bs, AccountIndex(), DEVNET_CHAIN_IDS[0], T + 60, DEVNET_MAX_QUOTE_AGE_S)
    state = compute_epoch_state(inputs, RRA1, 7, 1, 3, b"\x55" * 32)
    print(state.digest.hex(), state.leaf_count, int(inputs.ok.sum()))
"""
DEVNET_MARKET_TIME = 1_760_000_000  # the seeding time of the devnet book (its expiries count from it)
DEVNET_LOAD_ACCOUNTS = 20_000  # `clearingd devnet --accounts 20000`: the demo book and 20,000 load accounts


def restricted_settings() -> list[str]:
    """Each `NPY_DISABLE_CPU_FEATURES` value that removes a dispatch level this CPU has."""
    from numpy._core._multiarray_umath import __cpu_features__ as found

    groups = [("X86_V4", "AVX512_ICL", "AVX512_SPR"), ("X86_V3",), ("ASIMDHP", "ASIMDDP", "ASIMDFHM")]
    out = []
    for group in groups:
        present = [g for g in group if found.get(g)]
        if present:
            out.append(" ".join(present))
    if any(found.get(g) for g in ("X86_V4", "AVX512F")) and found.get("X86_V3"):
        out.append("X86_V4 AVX512_ICL AVX512_SPR X86_V3")
    return out


def run_child(env_extra: dict[str, str]) -> list[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONHASHSEED": "0", **env_extra}
    code = CHILD.format(repo=str(REPO), bench=str(REPO / "bench"), market_time=DEVNET_MARKET_TIME,
                        load_accounts=DEVNET_LOAD_ACCOUNTS)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.split("\n")[:5]


@pytest.mark.slow
def test_book_digest_identical_under_every_dispatch_and_after_restore() -> None:
    baseline = run_child({})
    assert baseline[0] == baseline[1], "a book restored from its blob must give the same digest"
    assert int(baseline[0].split()[1]) == 20_000
    # the devnet's book (tests/state/devnet_book.py): every account valued, restored from its blobs alike,
    # and the demo's crash changes the digest
    assert baseline[2] == baseline[3] and baseline[2] != baseline[4]
    assert baseline[2].split()[1:] == [str(4 + DEVNET_LOAD_ACCOUNTS)] * 2
    assert run_child({"PYTHONHASHSEED": "4242"}) == baseline
    settings = restricted_settings()
    for value in settings:
        assert run_child({"NPY_DISABLE_CPU_FEATURES": value}) == baseline, value
