"""MarginInputSource on a real anvil chain: books moved by logs between epochs, a corrupted book caught by the
background full-read check and rebuilt cold at the next epoch, calls serialised, books persisted and resumed."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import pytest

from bridges import deploy
from bridges.telemetry import Telemetry, set_telemetry
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


class RecordingTelemetry(Telemetry):
    def __init__(self) -> None:
        self.without_leaf: list[dict[str, int]] = []

    def accounts_without_leaf(self, counts: Mapping[str, int]) -> None:
        self.without_leaf.append(dict(counts))


def test_quote_age_bound_fails_accounts_on_stale_marks_and_no_bound_keeps_them(
        caplog: pytest.LogCaptureFixture) -> None:
    from tests.bridges.test_chain_support import INSTR_CALL

    telemetry = RecordingTelemetry()
    set_telemetry(telemetry)
    caplog.set_level(logging.INFO, logger="node.consensus.margin_inputs")
    with running_chains(31337) as (chain,), contextlib.ExitStack() as stack:
        stack.callback(set_telemetry, None)
        (d,), _expiry = build_chains([chain])
        owner, user = owner_of(chain), get_sender(chain, USER_INDEX)
        deploy.mint_and_deposit(owner, d, user, "USDC", 50_000 * USDC)
        deploy.mint_and_deposit(owner, d, owner, "USDC", 10**6 * USDC)
        deploy.record_trade(owner, d, owner.address, user.address, INSTR_CALL, 10**8, 1_000 * USDC)  # user buys 1
        bounded = MarginInputSource([make_client(chain)], {31337: d}, 31337, network_id=7, keyset_id=1,
                                    max_quote_age_s=3_600)
        unbounded = MarginInputSource([make_client(chain)], {31337: d}, 31337, network_id=7, keyset_id=1)

        def accounts(state: Any) -> set[str]:
            return {"0x" + leaf.account.hex() for leaf in state.leaves}

        fresh = next_epoch_time(chain)
        assert user.address.lower() in accounts(bounded.compute_epoch(1, fresh))
        mine_at(chain, fresh + 7_200)  # two hours later, nobody republished the marks
        stale = next_epoch_time(chain)
        late = bounded.compute_epoch(2, stale)
        assert user.address.lower() not in accounts(late) and owner.address.lower() not in accounts(late)
        assert {f.account for f in late.failures} == {user.address.lower(), owner.address.lower()}  # stored, served
        assert telemetry.without_leaf[-2:] == [{}, {"stale_quote": 2}]  # told to the operator: metric and log
        warned = [r for r in caplog.records if r.getMessage() == "accounts without a leaf"]
        assert len(warned) == 1 and warned[0].epoch == 2 and warned[0].by_reason == {"stale_quote": 2}
        assert any("older than 3600s" in e for e in warned[0].examples)
        kept = unbounded.compute_epoch(2, stale)
        assert {user.address.lower(), owner.address.lower()} <= accounts(kept) and kept.root != late.root
        deploy.set_market(owner, d, spots={"BTC": 100_000 * USDC}, forwards={("BTC", _expiry): 100_000 * USDC},
                          vols={INSTR_CALL: 520_000}, asset_prices={"USDC": USDC})  # republished: usable again
        assert user.address.lower() in accounts(bounded.compute_epoch(3, next_epoch_time(chain)))
        assert telemetry.without_leaf[-1] == {}
        assert [r.getMessage() for r in caplog.records if r.getMessage().startswith(("accounts without", "every"))][
            -1] == "every account has a leaf again"


def fund_three_accounts(chain: Any) -> tuple[Any, Any, Any, Any]:
    """Contracts on `chain` and 1M USDC each for the owner (venue), a user and a bystander."""
    (d,), _expiry = build_chains([chain])
    owner, user, bystander = owner_of(chain), get_sender(chain, USER_INDEX), get_sender(chain, USER_INDEX + 1)
    for who in (owner, user, bystander):
        deploy.mint_and_deposit(owner, d, who, "USDC", 10**6 * USDC)
    return d, owner, user, bystander


def test_invalid_oracle_price_above_bound_and_settlement_past_int64_fail_accounts_not_the_epoch() -> None:
    """One publisher sets BTC's spot to 2^100 (the oracle stores up to 2^192): before, copying the mark into
    the merge's int64 columns raised OverflowError and no epoch could be computed; now the quote is invalid
    and only the holders of BTC instruments fail. Then, at a valid spot, a venue's 9e10-BTC perp settles past
    2^62 micro-USD: before, the merge raised InvalidChainValue (epoch halted); now those two accounts fail."""
    from tests.bridges.test_chain_support import INSTR_PERP

    with running_chains(31337) as (chain,):
        d, owner, user, bystander = fund_three_accounts(chain)
        deploy.record_trade(owner, d, owner.address, user.address, INSTR_PERP, 10**8, 100_000 * USDC)
        source = MarginInputSource([make_client(chain)], {31337: d}, 31337, network_id=7, keyset_id=1)
        deploy.set_market(owner, d, spots={"BTC": 2**100})
        state = source.compute_epoch(1, next_epoch_time(chain))
        assert {"0x" + leaf.account.hex() for leaf in state.leaves} == {bystander.address.lower()}
        failed = {f.account: f for f in state.failures}
        assert set(failed) == {user.address.lower(), owner.address.lower()}
        assert all("oracle.spot.BTC" in f.reason and "above" in f.reason for f in failed.values())

        deploy.set_market(owner, d, spots={"BTC": 10**14})  # 1e8 USD: valid
        deploy.record_trade(owner, d, owner.address, user.address, INSTR_PERP, 9 * 10**18, 1)
        state = source.compute_epoch(2, next_epoch_time(chain))
        assert {"0x" + leaf.account.hex() for leaf in state.leaves} == {bystander.address.lower()}
        failed = {f.account: f for f in state.failures}
        assert set(failed) == {user.address.lower(), owner.address.lower()}
        assert all("settlement value" in f.reason for f in failed.values()), failed


def test_invalid_huge_position_fails_its_accounts_and_the_epoch_is_still_computed() -> None:
    """A position whose scenario P&L is beyond int64 micro-USD (1e9 BTC calls) fails the two accounts holding
    it; before, quantizing the risk array raised and no epoch could be computed at all."""
    from tests.bridges.test_chain_support import INSTR_CALL

    with running_chains(31337) as (chain,):
        d, owner, user, bystander = fund_three_accounts(chain)
        deploy.record_trade(owner, d, owner.address, user.address, INSTR_CALL, 10**17, 1_000 * USDC)
        source = MarginInputSource([make_client(chain)], {31337: d}, 31337, network_id=7, keyset_id=1)
        state = source.compute_epoch(1, next_epoch_time(chain))
        assert {"0x" + leaf.account.hex() for leaf in state.leaves} == {bystander.address.lower()}
