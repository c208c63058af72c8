"""The bulk apply of a block (runs of trades and quotes as array assignments) against the event-by-event
reference path (`ChainBook.bulk_apply = False`).

Random blocks with long runs of trades (the same position written several times in one run, new accounts)
and quotes (keys that are not printable ASCII, every quote table), mixed with the other events, and, in
some blocks, one corrupted event (a sequence gap, an unknown instrument, a value outside int64, an account
that is not 20 bytes, a missing argument). After every block both books must hold the same state (content
hash, rows, cash, positions, ignored keys) or have raised the same error and stayed where they were; random
rollbacks are applied to both.
"""

from __future__ import annotations

import copy
import random
from dataclasses import replace

import numpy as np
import pytest

from bridges.book import ChainBook, Event
from tests.bridges.book_factory import CONTRACTS, DECIMALS, GENESIS, EventFactory, address

CHAIN = 31337


def block_hash(number: int, fork: int) -> bytes:
    return number.to_bytes(16, "big") + fork.to_bytes(16, "big")


def state(book: ChainBook) -> tuple[object, ...]:
    book.positions.flush()
    return (book.content_hash(), book.block_number, list(book.addresses), dict(book.cash),
            book.positions.keys.tolist(), book.positions.qty.tolist(), book.positions.entry.tolist(),
            dict(book.sequences), set(book.ignored_keys), dict(book.vols), dict(book.spots),
            book.cash_array().tolist())


def quotes(f: EventFactory, rng: random.Random, at: int) -> list[Event]:
    out = []
    for _ in range(rng.randint(1, 30)):
        roll = rng.random()
        raw = rng.choice([b"BTC", b"ETH", b"SOL", b"\x01bad", b""]).ljust(32, b"\0")
        if roll < 0.5:
            out.append(f._event("oracle", "VolSet", instrumentId=rng.choice(f.instruments), vol=rng.randint(1, 10**6),
                                updatedAt=at))
        elif roll < 0.65:
            out.append(f._event("oracle", "SpotSet", underlying=raw, price=rng.randint(1, 10**12), updatedAt=at))
        elif roll < 0.8:
            out.append(f._event("oracle", "ForwardSet", underlying=raw, expiry=GENESIS + rng.randint(1, 9) * 86_400,
                                price=rng.randint(1, 10**12), updatedAt=at))
        elif roll < 0.9:
            out.append(f._event("oracle", "ConfidenceSet", kind=rng.choice([1, 2, 3, 4, 9]), key=raw,
                                expiry=rng.randint(0, 5), confidence=rng.randint(0, 10**9), updatedAt=at))
        else:
            out.append(f._event("oracle", "RateSet", underlying=raw, expiry=rng.randint(0, 5),
                                rate=rng.randint(0, 10**8), updatedAt=at))
    return out


def trades(f: EventFactory, rng: random.Random, accounts: list[str]) -> list[Event]:
    out = []
    for _ in range(rng.randint(1, 40)):
        a, b = rng.sample(accounts, 2)
        out += f.trade(a, b, rng.choice(f.instruments[:4]), rng.randint(-50, 50) * 10**6 or 10**6,
                       rng.randint(1, 120_000) * 10**6)
    return out


def corrupt(events: list[Event], rng: random.Random) -> list[Event]:
    """One event of the block changed so that the block must be refused (or, for a key, ignored)."""
    i = rng.randrange(len(events))
    e = events[i]
    args = dict(e.args)
    choice = rng.choice(["sequence", "instrument", "int64", "account", "missing", "min"])
    if choice == "sequence":
        args["sequence"] = int(args["sequence"]) + rng.choice([1, -1, 2])
    elif choice == "missing":
        args.pop(rng.choice([k for k in args if k != "sequence"]))
    elif e.name == "TradeRecorded":
        if choice == "instrument":
            args["instrumentId"] = 999
        elif choice == "int64":
            args[rng.choice(["position", "cash", "fundingEntry"])] = rng.choice([2**63, 2**70, -(2**63) - 5])
        elif choice == "min":
            args[rng.choice(["position", "cash", "fundingEntry"])] = -(2**63)
        else:
            args["account"] = "0x" + "ab" * 19
    return [*events[:i], replace(e, args=args), *events[i + 1:]]


@pytest.mark.parametrize("seed", range(40))
def test_bulk_apply_equals_event_by_event(seed: int) -> None:
    rng = random.Random(seed)
    f = EventFactory(seed=seed)
    accounts = [address(i) for i in range(rng.choice([3, 8, 30]))]
    books = [ChainBook(CHAIN, CONTRACTS, history=8), ChainBook(CHAIN, CONTRACTS, history=8)]
    books[1].bulk_apply = False
    setup = f.setup()
    for book in books:
        book.advance_to(0, block_hash(0, 0))
        book.apply_block(1, block_hash(1, 0), setup, DECIMALS)
    number, fork = 1, 0
    models = {1: copy.deepcopy(f)}  # the factory's model after each applied block, for rollbacks and refusals
    for _step in range(25):
        if rng.random() < 0.15 and number > 2:
            back = number - rng.randint(1, min(3, number - 1))
            for book in books:
                book.rollback_to(back)
            number, fork = back, fork + 1
            f = copy.deepcopy(models[number])
        at = GENESIS + number
        parts = [trades(f, rng, accounts), quotes(f, rng, at), f.random_block(accounts, rng.randint(0, 6), 1, at),
                 trades(f, rng, [*accounts, address(100 + number)])]
        events = [e for part in parts for e in part]  # in the order their sequences were taken
        bad = rng.random() < 0.3 and events
        if bad:
            events = corrupt(events, rng)
        errors = []
        for book in books:
            try:
                book.apply_block(number + 1, block_hash(number + 1, fork), events, DECIMALS)
                errors.append(None)
            except Exception as exc:  # the two paths must raise the same error
                errors.append((type(exc), str(exc)))
        assert errors[0] == errors[1]
        assert state(books[0]) == state(books[1])
        if errors[0] is None:
            number += 1
            models[number] = copy.deepcopy(f)
        else:
            f = copy.deepcopy(models[number])
            f.rng.seed(rng.random())
        assert np.array_equal(books[0].balance_columns()[1], books[1].balance_columns()[1])
