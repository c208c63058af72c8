"""The merge's position matrix, settlement, presence and failures against a plain-Python model of the same books,
over randomized sequences of book changes with one account index kept across merges (as a node does) and a fresh
index each time: positions opened, changed and closed, new accounts on one chain or both, instruments added in an
order where local columns do not follow instrument ids, options losing their vol (their holders fail), cash."""

import random

import numpy as np

from bridges.book import COL_BITS, MAX_COLUMNS, AssetInfo, ChainBook, InstrumentInfo
from bridges.book_merge import AccountIndex, merge_books
from bridges.statecodec import QTY_SCALE

GENESIS = 1_700_000_000
T = GENESIS + 3600
EXPIRY = GENESIS + 30 * 86_400
CHAINS = (5, 9)


def _book(chain_id: int, rng: random.Random) -> ChainBook:
    tag = f"{chain_id:04x}"
    book = ChainBook(chain_id, {"vault": "0x" + "a" * 36 + tag, "ledger": "0x" + "b" * 36 + tag,
                                "oracle": "0x" + "d" * 36 + tag})
    book.add_asset(AssetInfo("USDC", "0x" + "c" * 36 + tag, 6))
    book.set_quote("asset_prices", "USDC", 10**6, GENESIS)
    book.set_quote("spots", "BTC", 100_000 * 10**6, GENESIS)
    book.set_quote("forwards", ("BTC", EXPIRY), 101_000 * 10**6, GENESIS)
    ids = list(range(1, 9))
    rng.shuffle(ids)  # local columns in a different order from the instrument ids
    for iid in ids:
        _add_instrument(book, iid)
    return book


def _add_instrument(book: ChainBook, iid: int) -> None:
    kind = ("perp", "future", "option", "option")[iid % 4]
    strike = (90_000 + 1_000 * iid) * 10**6 if kind == "option" else 0
    book.add_instrument(InstrumentInfo(iid, "BTC", kind, strike, 0 if kind == "perp" else EXPIRY,
                                       ("call", "put")[iid % 2] if kind == "option" else ""))
    if kind == "option":
        book.set_quote("vols", iid, 500_000, GENESIS)


def _step(books: list[ChainBook], accounts: list[bytes], rng: random.Random) -> None:
    for _ in range(rng.randint(1, 25)):
        book = rng.choice(books)
        if rng.random() < 0.2:
            accounts.append(rng.randbytes(20))
        row = book.get_row(rng.choice(accounts))
        iid = rng.choice(book.instrument_ids)
        qty = 0 if rng.random() < 0.25 else rng.randint(-10**12, 10**12)
        book.set_position(row, iid, qty, rng.randint(-10**6, 10**6))
        if rng.random() < 0.3:
            book.set_cash(row, rng.randint(-10**9, 10**9))
    if rng.random() < 0.1:
        book = rng.choice(books)
        _add_instrument(book, max(book.instrument_ids) + 1)
    if rng.random() < 0.15:
        book = rng.choice(books)
        options = [i for i in book.instrument_ids if book.instruments[i].kind == "option"]
        book.set_quote("vols", rng.choice(options), rng.choice((0, 400_000)), GENESIS)
    for book in books:
        book.positions.flush()


def _model(books: list[ChainBook]) -> tuple[dict[tuple[int, int], float], set[int], set[int], int]:
    """(row, column) -> quantity, present rows, failed rows and the column count, from the books' dicts."""
    accounts = sorted({a for b in books for a in b.addresses})
    rank = {a: i for i, a in enumerate(accounts)}
    entries: dict[tuple[int, int], float] = {}
    present: set[int] = set()
    failed: set[int] = set()
    column = 0
    for book in sorted(books, key=lambda b: b.chain_id):
        col_of = {}
        for iid in sorted(book.instrument_ids):
            info = book.instruments[iid]
            if info.kind != "option" or book.vols.get(iid, (0, 0))[0] > 0:
                col_of[book.col_of[iid]] = column
                column += 1
        for key, qty in zip(book.positions.keys.tolist(), book.positions.qty.tolist(), strict=True):
            if qty == 0:
                continue
            row = rank[book.addresses[key >> COL_BITS]]
            present.add(row)
            if (key & (MAX_COLUMNS - 1)) in col_of:
                entries[(row, col_of[key & (MAX_COLUMNS - 1)])] = qty / QTY_SCALE
            else:
                failed.add(row)
        present.update(rank[book.addresses[r]] for r, c in book.cash.items() if c)
    return entries, present, failed, column


def _check(books: list[ChainBook], index: AccountIndex) -> None:
    inputs = merge_books(books, index, CHAINS[0], T)
    entries, present, failed, n_columns = _model(books)
    p = inputs.positions
    assert p.shape == (len(index), n_columns) and p.has_canonical_format
    coo = p.tocoo()
    got = {(int(r), int(c)): float(v) for r, c, v in zip(coo.row, coo.col, coo.data, strict=True)}
    assert got == entries
    assert set(np.flatnonzero(inputs.present).tolist()) == present
    assert set(inputs.failures.rows.tolist()) == failed


def test_merge_matches_the_model_over_random_change_sequences() -> None:
    for seed in range(12):
        rng = random.Random(seed)
        books = [_book(c, rng) for c in CHAINS]
        accounts = [rng.randbytes(20) for _ in range(5)]
        kept = AccountIndex()
        for _ in range(15):
            _step(books, accounts, rng)
            _check(books, kept)
            _check(books, AccountIndex())


def test_kept_and_fresh_indexes_give_equal_inputs() -> None:
    rng = random.Random(99)
    books = [_book(c, rng) for c in CHAINS]
    accounts = [rng.randbytes(20) for _ in range(8)]
    kept = AccountIndex()
    for _ in range(10):
        _step(books, accounts, rng)
        a, b = merge_books(books, kept, CHAINS[0], T), merge_books(books, AccountIndex(), CHAINS[0], T)
        assert np.array_equal(a.accounts, b.accounts) and not a.accounts.flags.writeable
        for name in ("indptr", "indices", "data"):
            assert np.array_equal(getattr(a.positions, name), getattr(b.positions, name))
        assert np.array_equal(a.settlement, b.settlement) and np.array_equal(a.present, b.present)
