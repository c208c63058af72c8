"""Books -> merge -> pipeline: settlement in equity, the withdrawal rule, failures, determinism.

Figures are hand-computed from the contracts' cash rule (cash += floor(-q p / 1e8) per side) and RRA-1:
perps and futures settle at the mark (spot / forward), options are valued by the engine.
"""

from __future__ import annotations

import numpy as np

from bridges.book import ChainBook
from bridges.book_merge import AccountIndex, merge_books
from bridges.statecodec import FLAG_LIQUIDATABLE, withdrawal_id
from node.pipeline import compute_epoch_state
from risk.params import RRA1
from tests.bridges.book_factory import CONTRACTS, DECIMALS, GENESIS, USDC, EventFactory, address

MICRO = 10**6
A, B, HOUSE = address(1), address(2), address(3)
EPOCH_TIME = GENESIS + 3600


def two_books() -> tuple[ChainBook, ChainBook, EventFactory, EventFactory]:
    books, factories = [], []
    for cid, tag in ((31337, "a"), (31338, "b")):
        contracts = {k: v[:-2] + tag * 2 for k, v in CONTRACTS.items()}
        book = ChainBook(cid, contracts)
        book.advance_to(0, bytes(32))
        f = EventFactory(seed=cid)
        book.apply_block(1, b"\x01" * 32, f.setup(), DECIMALS)
        books.append(book)
        factories.append(f)
    return books[0], books[1], factories[0], factories[1]


def state_of(books: list[ChainBook], index: AccountIndex | None = None, epoch: int = 10):
    inputs = merge_books(books, index or AccountIndex(), 31337, EPOCH_TIME)
    return compute_epoch_state(inputs, RRA1, network_id=7, keyset_id=1, epoch=epoch, params_hash=b"\x55" * 32)


def leaf_of(state, account: str):
    return state.leaves[state.get_index(account)]


def test_perp_pnl_is_settled_into_equity_and_cannot_be_withdrawn():
    book_a, book_b, fa, _fb = two_books()
    book_a.apply_block(2, b"\x02" * 32, [fa.deposit(A, USDC, 20_000 * MICRO), fa.deposit(B, USDC, 200_000 * MICRO),
                                         *fa.trade(A, B, 1, 10**8, 100_000 * MICRO)], DECIMALS)  # A short 1 BTC perp
    s0 = state_of([book_a, book_b])
    assert leaf_of(s0, A).equity == 20_000 * MICRO  # entry at the mark: no P&L yet
    book_a.apply_block(3, b"\x03" * 32, [fa.spot("BTC", 120_000 * MICRO, GENESIS + 100)], DECIMALS)
    s1 = state_of([book_a, book_b])
    assert leaf_of(s1, A).equity == 0  # lost 20,000: the short perp's P&L is in equity
    assert leaf_of(s1, B).equity == 220_000 * MICRO
    assert leaf_of(s1, A).flags & FLAG_LIQUIDATABLE
    # a withdrawal of the (now lost) collateral is refused
    book_a.apply_block(4, b"\x04" * 32, [fa.request(A, USDC, 10_000 * MICRO, 3, GENESIS + 200)], DECIMALS)
    s2 = state_of([book_a, book_b])
    assert not any(d.approved for d in s2.withdrawals)
    assert leaf_of(s2, A).approved_withdrawals == ()


def test_option_premium_is_paid_so_buying_options_does_not_raise_free_collateral():
    book_a, book_b, fa, _fb = two_books()
    book_a.apply_block(2, b"\x02" * 32, [fa.deposit(A, USDC, 50_000 * MICRO), fa.deposit(B, USDC, 500_000 * MICRO)],
                       DECIMALS)
    before = state_of([book_a, book_b])
    free_before = leaf_of(before, A).equity - leaf_of(before, A).im
    # A buys 1 BTC call (instrument 4: 110,000 strike, 7 days) at 2,000 USD from B
    book_a.apply_block(3, b"\x03" * 32, fa.trade(B, A, 4, 10**8, 2_000 * MICRO), DECIMALS)
    after = state_of([book_a, book_b])
    leaf = leaf_of(after, A)
    assert fa.cash[A] == -2_000 * MICRO
    assert leaf.equity - leaf.im <= free_before  # the premium left the account
    assert leaf.equity < 50_000 * MICRO  # worth less than the 2,000 paid at these marks (far OTM)


def test_cross_chain_double_withdrawal_is_impossible():
    """The review's reproduction: 20,000 USDC on A, 15,000 on B, a request on B approved in epoch 1, then a
    request on A inside epoch 1's pin-to-publish window: epoch 2 approves neither (both deducted)."""
    book_a, book_b, fa, fb = two_books()
    book_a.apply_block(2, b"\x02" * 32, [fa.deposit(A, USDC, 20_000 * MICRO), fa.deposit(B, USDC, 10**6 * MICRO),
                                         *fa.trade(B, A, 1, 10**8, 100_000 * MICRO)], DECIMALS)  # A long 1 BTC perp
    book_b.apply_block(2, b"\x02" * 32, [fb.deposit(A, USDC, 15_000 * MICRO),
                                         fb.request(A, USDC, 15_000 * MICRO, 0, GENESIS)], DECIMALS)
    index = AccountIndex()
    s1 = state_of([book_a, book_b], index, epoch=1)
    approved1 = [d for d in s1.withdrawals if d.approved]
    assert [(d.chain_id, d.request_id) for d in approved1] == [(31338, 1)]
    book_a.apply_block(3, b"\x03" * 32, [fa.request(A, USDC, 15_000 * MICRO, 0, GENESIS + 1)], DECIMALS)
    s2 = state_of([book_a, book_b], index, epoch=2)
    assert not any(d.approved for d in s2.withdrawals)
    assert leaf_of(s1, A).im == 15_000 * MICRO  # RRA-1: 1 BTC perp, -15% scan
    assert leaf_of(s2, A).equity == 5_000 * MICRO  # both open requests deducted
    total_completable = sum(d.deduction for d in approved1)
    assert total_completable <= leaf_of(s1, A).equity + 15_000 * MICRO - leaf_of(s1, A).im


def test_requests_of_this_epoch_are_deducted_but_not_approved():
    book_a, book_b, fa, _fb = two_books()
    book_a.apply_block(2, b"\x02" * 32, [fa.deposit(A, USDC, 1_000 * MICRO),
                                         fa.request(A, USDC, 100 * MICRO, 4, GENESIS),
                                         fa.request(A, USDC, 100 * MICRO, 5, GENESIS)], DECIMALS)
    s = state_of([book_a, book_b], epoch=5)
    assert [d.approved for d in s.withdrawals] == [True, False]
    assert leaf_of(s, A).equity == 800 * MICRO
    assert leaf_of(s, A).approved_withdrawals == (withdrawal_id(31337, book_a.contracts["vault"], 1),)


def test_missing_mark_fails_the_account_not_the_epoch():
    book_a, book_b, fa, _fb = two_books()
    book_a.apply_block(2, b"\x02" * 32, [fa.deposit(A, USDC, 1_000 * MICRO), fa.deposit(B, USDC, 1_000 * MICRO),
                                         fa.deposit(HOUSE, USDC, 5 * MICRO), *fa.trade(B, A, 4, 10**8, 10 * MICRO)],
                       DECIMALS)
    book_a.vols.pop(4)
    s = state_of([book_a, book_b])
    assert {f.account.lower() for f in s.failures} == {A, B}
    assert "oracle.vol[4]" in s.failures[0].reason
    assert s.leaf_count == 1 and s.leaves[0].account.lower() == HOUSE  # the epoch goes on for the others
    assert leaf_of(s, HOUSE).equity == 5 * MICRO


def test_state_is_independent_of_account_discovery_order():
    book_a, book_b, fa, fb = two_books()
    accounts = [address(i) for i in range(10, 40)]
    for n in range(2, 6):
        book_a.apply_block(n, n.to_bytes(32, "big"), fa.random_block(accounts, 40, n, GENESIS + n), DECIMALS)
        book_b.apply_block(n, n.to_bytes(32, "big"), fb.random_block(accounts, 40, n, GENESIS + n), DECIMALS)
    one = state_of([book_a, book_b])
    again = ChainBook.from_bytes(book_b.to_bytes()), ChainBook.from_bytes(book_a.to_bytes())
    index = AccountIndex()
    for a in reversed(accounts):
        index.lookup(np.frombuffer(bytes.fromhex(a[2:]), dtype=np.uint8).reshape(1, 20))
    two = state_of([again[1], again[0]], index)
    assert one.digest == two.digest and one.leaf_count == two.leaf_count > 0
    assert np.array_equal([x.equity for x in one.leaves], [x.equity for x in two.leaves])
