"""ChainBook: events applied as assignments, sequence gaps refused, undo after reorgs, hashing, persistence.

The property test drives a book with random event blocks, rolls random suffixes back (a reorg) and
re-applies another fork, restarts from a persisted blob in the middle, and checks at every step that the
book equals an independent model and a book built from scratch with the canonical chain's events.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridges.book import BookRollbackTooDeep, ChainBook, Event, EventSequenceGap, PositionTable
from bridges.errors import InvalidChainValue
from tests.bridges.book_factory import CONTRACTS, DECIMALS, USDC, WETH, EventFactory, address

CHAIN = 31337


def block_hash(number: int, fork: int = 0) -> bytes:
    return number.to_bytes(16, "big") + fork.to_bytes(16, "big")


def new_book() -> ChainBook:
    book = ChainBook(CHAIN, CONTRACTS)
    book.advance_to(0, block_hash(0))
    return book


def model_positions(book: ChainBook) -> dict[tuple[str, int], int]:
    book.positions.flush()
    out = {}
    for key, qty in zip(book.positions.keys.tolist(), book.positions.qty.tolist(), strict=True):
        if qty:
            row, col = key >> 20, key & ((1 << 20) - 1)
            out[("0x" + book.addresses[row].hex(), book.instrument_ids[col])] = qty
    return out


def assert_matches_model(book: ChainBook, f: EventFactory) -> None:
    assert model_positions(book) == {k: v for k, v in f.positions.items() if v}
    assert {"0x" + book.addresses[r].hex(): c for r, c in book.cash.items()} == {k: v for k, v in f.cash.items() if v}
    tokens = {i: a.token.lower() for i, a in enumerate(book.assets)}
    assert {("0x" + book.addresses[r].hex(), tokens[a]): v for (r, a), v in book.balances.items()} == \
        {(k[0], k[1].lower()): v for k, v in f.balances.items() if v}
    assert set(book.requests) == set(f.requests)
    assert book.sequences == f.seq
    assert book.funding == {k: v for k, v in f.funding.items()}


def test_events_set_absolute_values_and_sequences():
    f = EventFactory(seed=3)
    book = new_book()
    book.apply_block(1, block_hash(1), f.setup(), DECIMALS)
    a, b = address(1), address(2)
    events = [f.deposit(a, USDC, 5_000 * 10**6), *f.trade(b, a, 1, 10**8, 100_000 * 10**6)]
    book.apply_block(2, block_hash(2), events, DECIMALS)
    assert_matches_model(book, f)
    assert f.cash[a] == -100_000 * 10**6 and f.cash[b] == 100_000 * 10**6
    units, base = book.balance_columns()
    assert units[book.row_of[bytes.fromhex(a[2:])], 0] == 5_000.0
    assert int(base[book.row_of[bytes.fromhex(a[2:])], 0, 1]) == 5_000 * 10**6


def test_invalid_sequence_gap_is_refused_and_block_left_unapplied():
    f = EventFactory(seed=4)
    book = new_book()
    book.apply_block(1, block_hash(1), f.setup(), DECIMALS)
    before = book.content_hash()
    first = f.deposit(address(1), USDC, 10)
    f.deposit(address(1), USDC, 10)  # emitted but "missed"
    third = f.deposit(address(1), USDC, 10)
    with pytest.raises(EventSequenceGap, match="sequence"):
        book.apply_block(2, block_hash(2), [first, third], DECIMALS)
    assert book.content_hash() == before and book.block_number == 1


def test_invalid_values_name_the_field():
    f = EventFactory(seed=5)
    book = new_book()
    book.apply_block(1, block_hash(1), f.setup(), DECIMALS)
    bad = Event("ledger", "TradeRecorded", {"sequence": f.seq["ledger"] + 1, "account": address(1),
                                            "instrumentId": 1, "position": 2**63, "cash": 0, "fundingEntry": 0})
    with pytest.raises(InvalidChainValue, match="quantity"):
        book.apply_block(2, block_hash(2), [bad], DECIMALS)
    unknown = Event("ledger", "TradeRecorded", {"sequence": f.seq["ledger"] + 1, "account": address(1),
                                                "instrumentId": 999, "position": 1, "cash": 0, "fundingEntry": 0})
    with pytest.raises(InvalidChainValue, match="unknown instrument 999"):
        book.apply_block(2, block_hash(2), [unknown], DECIMALS)


def test_oracle_key_that_is_not_ascii_is_ignored_not_fatal():
    f = EventFactory(seed=6)
    book = new_book()
    events = f.setup()
    f.seq["oracle"] += 1
    events.append(Event("oracle", "SpotSet", {"sequence": f.seq["oracle"], "underlying": b"\xff" * 32,
                                              "price": 1, "updatedAt": 1}))
    book.apply_block(1, block_hash(1), events, DECIMALS)
    assert book.ignored_keys == {"spots:" + "ff" * 32}
    assert "BTC" in book.spots and book.sequences["oracle"] == f.seq["oracle"]


def test_content_hash_is_independent_of_row_order_and_survives_persistence():
    f = EventFactory(seed=7)
    setup = f.setup()
    accounts = [address(i) for i in range(20)]
    blocks = [f.random_block(accounts, 30, 1, 1_700_000_000) for _ in range(5)]
    one = new_book()
    one.apply_block(1, block_hash(1), setup, DECIMALS)
    for i, events in enumerate(blocks):
        one.apply_block(2 + i, block_hash(2 + i), events, DECIMALS)
    restored = ChainBook.from_bytes(one.to_bytes())
    assert restored.content_hash() == one.content_hash()
    assert np.array_equal(restored.balance_columns()[0], one.balance_columns()[0])
    assert np.array_equal(restored.cash_array(), one.cash_array())
    # the same final state reached with accounts first seen in another order
    other = new_book()
    other.apply_block(1, block_hash(1), setup, DECIMALS)
    for a in reversed(accounts):
        other.get_row(bytes.fromhex(a[2:]))
    for i, events in enumerate(blocks):
        other.apply_block(2 + i, block_hash(2 + i), events, DECIMALS)
    assert other.addresses != one.addresses
    assert other.content_hash() == one.content_hash()


def test_rollback_below_history_is_refused():
    f = EventFactory(seed=8)
    book = ChainBook(CHAIN, CONTRACTS, history=2)
    book.advance_to(0, block_hash(0))
    book.apply_block(1, block_hash(1), f.setup(), DECIMALS)
    for n in range(2, 6):
        book.apply_block(n, block_hash(n), [f.deposit(address(1), USDC, 1)], DECIMALS)
    book.rollback_to(4)
    with pytest.raises(BookRollbackTooDeep):
        book.rollback_to(1)


def test_position_table_flush_inserts_updates_and_removes():
    t = PositionTable()
    for k in (5, 1, 9):
        t.set(k, (k, -k))
    t.flush()
    t.set(1, None)
    t.set(5, (50, 0))
    t.set(3, (3, 3))
    assert t.get(5) == (50, 0) and t.get(1) is None
    t.flush()
    assert t.keys.tolist() == [3, 5, 9] and t.qty.tolist() == [3, 50, 9]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6), steps=st.lists(st.tuples(st.integers(1, 25), st.integers(0, 3), st.booleans()),
                                                  min_size=3, max_size=10))
def test_incremental_book_equals_rebuild_through_reorgs_and_restarts(seed, steps):
    """Each step: a block of random events; sometimes a reorg replaces the last `depth` blocks by another
    fork first; sometimes the node restarts from its persisted blob. The book must always equal the
    factory's own model of the canonical chain."""
    f = EventFactory(seed=seed)
    accounts = [address(i) for i in range(12)]
    canonical: list[tuple[int, bytes, list[Event], EventFactory]] = []
    book = new_book()
    setup = f.setup()
    book.apply_block(1, block_hash(1), setup, DECIMALS)
    snapshots = [_copy(f)]
    number, fork = 1, 0
    for size, depth, restart in steps:
        depth = min(depth, len(canonical))
        if depth:
            number -= depth
            book.rollback_to(number)
            canonical = canonical[:len(canonical) - depth]
            f = _copy(snapshots[len(canonical)])
            snapshots = snapshots[:len(canonical) + 1]
            fork += 1
        number += 1
        events = f.random_block(accounts, size, number, 1_700_000_000 + number)
        book.apply_block(number, block_hash(number, fork), events, DECIMALS)
        canonical.append((number, block_hash(number, fork), events, _copy(f)))
        snapshots.append(_copy(f))
        if restart:
            book = ChainBook.from_bytes(book.to_bytes())
            # history is not persisted: a restart can only go forward (a deeper reorg means a cold read)
            snapshots = snapshots[-1:]
            canonical = []
        assert_matches_model(book, f)


def _copy(f: EventFactory) -> EventFactory:
    g = EventFactory(seed=f.seed)
    g.rng.setstate(f.rng.getstate())
    g.seq, g.positions, g.cash = dict(f.seq), dict(f.positions), dict(f.cash)
    g.balances, g.requests, g.next_request = dict(f.balances), dict(f.requests), f.next_request
    g.instruments, g.perps, g.funding = list(f.instruments), list(f.perps), dict(f.funding)
    g._entries = dict(f._entry)
    return g


def test_balance_columns_bulk_and_incremental_paths_agree_exactly():
    """Units are the correctly rounded amount / 10**decimals on both paths, huge 18-decimal amounts included."""
    f = EventFactory(seed=9)
    book = new_book()
    book.apply_block(1, block_hash(1), f.setup(), DECIMALS)
    amounts = [1, 10**6 + 1, 2**53 - 1, 2**53 + 1, 3 * 10**18 + 7, 2**70 + 12345, 2**127 - 1]
    events = [f.deposit(address(i), token, v) for i, v in enumerate(amounts) for token in (USDC, WETH)]
    book.apply_block(2, block_hash(2), events, DECIMALS)
    incremental = book.balance_columns()
    bulk = ChainBook.from_bytes(book.to_bytes()).balance_columns()  # every balance dirty: the bulk path
    for units, base in (incremental, bulk):
        for i, v in enumerate(amounts):
            row = book.row_of[bytes.fromhex(address(i)[2:])]
            assert units[row].tolist() == [v / 10**6, v / 10**18]
            assert [(int(h) << 64) | int(lo) for h, lo in base[row]] == [v, v]


def test_account_index_orders_by_address_and_keeps_ids():
    from bridges.book_merge import AccountIndex

    index = AccountIndex()
    rng = np.random.default_rng(3)
    first = rng.integers(0, 256, size=(500, 20), dtype=np.uint8)
    gids = index.lookup(first)
    assert gids.tolist() == list(range(500))
    second = np.concatenate([first[::7], rng.integers(0, 256, size=(300, 20), dtype=np.uint8), first[:3]])
    again = index.lookup(second)
    assert again[:len(first[::7])].tolist() == list(range(0, 500, 7))
    assert again[-3:].tolist() == [0, 1, 2] and len(index) == 800
    keys = index.addresses[index.order].view("S20").ravel()
    assert (keys[1:] > keys[:-1]).all()
    assert (index.ranks()[index.order] == np.arange(800)).all()


def test_cold_path_packed_pages_cut_short_are_completed():
    """`getPositionsPacked` may end a page early (its position bound): the reader asks again from where it
    stopped and gets every account exactly once."""
    from bridges.book_reader import _read_ledger

    accounts = [bytes([i + 1]) * 20 for i in range(5)]
    holdings = {a: [(1, (i + 1) * 10**8, 0), (2, -(i + 1), 7)] for i, a in enumerate(accounts)}

    def packed(offset: int, limit: int, cap: int = 3) -> bytes:  # at most `cap` positions per page
        out, n = b"", 0
        for a in accounts[offset:offset + limit]:
            if out and n + len(holdings[a]) > cap:
                break
            n += len(holdings[a])
            out += a + (5).to_bytes(8, "big", signed=True) + len(holdings[a]).to_bytes(4, "big")
            out += b"".join(i.to_bytes(8, "big") + q.to_bytes(8, "big", signed=True) + e.to_bytes(8, "big", signed=True)
                            for i, q, e in holdings[a])
        return out

    class Ledger:
        def call(self, name, *args):
            if name == "instrumentCount":
                return (2,)
            if name == "accountCount":
                return (len(accounts),)
            if name == "eventSequence":
                return (9,)
            if name == "getPositionsPacked":
                return (packed(*args),)
            raise AssertionError(name)

        def call_many(self, name, args_list):
            return [(packed(*a),) for a in args_list]

        def pages(self, count, name):
            if name == "getInstruments":
                return [([(1, b"BTC".ljust(32, b"\0"), 3, 0, 0, 0), (2, b"BTC".ljust(32, b"\0"), 2, 0, 10**10, 0)],)]
            return [([1, 2], [0, 0])]

    book = ChainBook(CHAIN, CONTRACTS)
    _read_ledger(book, Ledger())
    assert model_positions(book) == {("0x" + a.hex(), iid): q for a, h in holdings.items() for iid, q, _e in h}
    assert book.cash == dict.fromkeys(range(5), 5) and book.sequences["ledger"] == 9
