"""MarginInputSource on a real anvil chain: books moved by logs between epochs, a corrupted book caught by the
background full-read check and rebuilt cold at the next epoch, calls serialised, books persisted and resumed."""

from __future__ import annotations

import threading
import time
from typing import Any

from bridges import deploy
from node.book_store import BookStore
from node.consensus.margin_inputs import MarginInputSource
from tests.bridges.test_book_chain import build_chains, owner_of
from tests.bridges.test_chain_support import USER_INDEX, get_sender, make_client, mine_at, running_chains

USDC = 10**6


def next_epoch_time(chain: Any) -> int:
    from bridges.anvil import rpc_call

    t = int(str(rpc_call(chain.rpc_url, "eth_getBlockByNumber", ["latest", False])["timestamp"]), 16)  # type: ignore[index]
    mine_at(chain, t + 1)
    mine_at(chain, t + 2)
    return t


def wait_for(condition: Any, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_background_check_catches_a_wrong_book_and_the_next_epoch_rebuilds_it(tmp_path: Any) -> None:
    with running_chains(31337) as (chain,):
        (d,), _expiry = build_chains([chain])
        owner, user = owner_of(chain), get_sender(chain, USER_INDEX)
        deploy.mint_and_deposit(owner, d, user, "USDC", 1_000 * USDC)
        source = MarginInputSource([make_client(chain)], {31337: d}, 31337, network_id=7, keyset_id=1,
                                   full_check_every=2, persist_every=1, book_store=BookStore(tmp_path / "b.sqlite"))
        first = source.compute_epoch(1, next_epoch_time(chain))
        assert source.counters["cold_reads"] == 1 and first.leaf_count == 1
        deploy.mint_and_deposit(owner, d, user, "USDC", 5 * USDC)
        second = source.compute_epoch(2, next_epoch_time(chain))  # by logs; a background check starts
        assert source.counters["cold_reads"] == 1 and second.root != first.root
        wait_for(lambda: source._checker is not None and not source._checker.is_alive())
        assert source.counters == {"book_mismatches": 0, "book_checks": 1, "cold_reads": 1}
        # corrupt the incremental book (as a bug would): the next due check finds it, the epoch after rebuilds
        sync = source.syncs[31337]
        row = sync.book.row_of[bytes.fromhex(user.address[2:])]
        sync.book.set_balance(row, d.get_token("USDC"), 999_999 * USDC)
        t3 = next_epoch_time(chain)
        wrong = source.compute_epoch(3, t3)
        assert wrong.root != MarginInputSource([make_client(chain)], {31337: d}, 31337, network_id=7,
                                               keyset_id=1).compute_epoch(3, t3).root
        source.compute_epoch(4, next_epoch_time(chain))  # the check is due: it runs at this pin
        wait_for(lambda: source.counters["book_mismatches"] == 1)
        t5 = next_epoch_time(chain)
        fixed = source.compute_epoch(5, t5)
        assert source.counters["cold_reads"] == 2 and sync.stats.cold
        assert fixed.root == MarginInputSource([make_client(chain)], {31337: d}, 31337, network_id=7,
                                               keyset_id=1).compute_epoch(5, t5).root
        # a restart resumes from the persisted books and moves on with logs only
        resumed = MarginInputSource([make_client(chain)], {31337: d}, 31337, network_id=7, keyset_id=1,
                                    book_store=BookStore(tmp_path / "b.sqlite"))
        resumed.compute_epoch(6, next_epoch_time(chain))
        assert resumed.counters["cold_reads"] == 0


def test_concurrent_calls_are_serialised() -> None:
    with running_chains(31337) as (chain,):
        (d,), _expiry = build_chains([chain])
        source = MarginInputSource([make_client(chain)], {31337: d}, 31337, network_id=7, keyset_id=1)
        active, peak = [0], [0]
        real = source._compute_epoch

        def counting(epoch: int, target: int) -> Any:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
            try:
                time.sleep(0.05)
                return real(epoch, target)
            finally:
                active[0] -= 1

        source._compute_epoch = counting  # type: ignore[method-assign]
        t = next_epoch_time(chain)
        threads = [threading.Thread(target=source.compute_epoch, args=(e, t)) for e in range(1, 5)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        assert peak[0] == 1
