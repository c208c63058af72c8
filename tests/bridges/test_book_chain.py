"""Chain books on real anvil chains: the cold read, the merge into one portfolio, named failures, and the
incremental book (logs between pins) against a full re-read at every epoch, through reorgs below and above
the confirmation depth and a restart from the persisted blob."""

from __future__ import annotations

import random
import time
from typing import Any

import numpy as np
import pytest

from bridges import deploy
from bridges.anvil import rpc_call
from bridges.book import ChainBook
from bridges.book_merge import AccountIndex, merge_books
from bridges.book_reader import BookSync, contracts_of, read_books
from bridges.errors import InvalidChainValue
from bridges.statecodec import withdrawal_id
from node.crypto import bls
from tests.bridges.test_chain_support import (
    DAY,
    INSTR_CALL,
    INSTR_FUTURE,
    INSTR_PERP,
    USER_INDEX,
    get_sender,
    make_client,
    mine_at,
    pin_all,
    running_chains,
    setup_clearing,
)

GROUP_KEY = bls.g2_to_eip2537(bls.public_key(424242))
USDC = 10**6
ETH = 10**18
QTY = 10**8


def build_chains(chains: list[Any]) -> tuple[list[Any], int]:
    expiry = int(time.time()) + 30 * DAY
    return [setup_clearing(c, GROUP_KEY, expiry, home=(i == 0)) for i, c in enumerate(chains)], expiry


def owner_of(chain: Any) -> deploy.ChainSender:
    return deploy.ChainSender(chain.rpc_url, deploy.get_dev_key(0))


def test_cold_books_merge_two_chains_into_one_account() -> None:
    with running_chains(31337, 31338) as chains:
        (da, db), expiry = build_chains(chains)
        owner_a, owner_b = owner_of(chains[0]), owner_of(chains[1])
        user_a, user_b = get_sender(chains[0], USER_INDEX), get_sender(chains[1], USER_INDEX)
        deploy.mint_and_deposit(owner_a, da, user_a, "USDC", 10_000 * USDC)
        deploy.mint_and_deposit(owner_b, db, user_b, "USDC", 2_500 * USDC)
        deploy.mint_and_deposit(owner_b, db, user_b, "ETH", ETH // 2)
        deploy.mint_and_deposit(owner_a, da, owner_a, "USDC", 10**6 * USDC)
        deploy.mint_and_deposit(owner_b, db, owner_b, "USDC", 10**6 * USDC)
        deploy.record_trade(owner_a, da, user_a.address, owner_a.address, INSTR_CALL, QTY, 2_000 * USDC)  # user sells
        deploy.record_trade(owner_b, db, owner_b.address, user_b.address, INSTR_PERP, QTY // 2, 100_000 * USDC)
        deploy.record_trade(owner_b, db, user_b.address, owner_b.address, INSTR_FUTURE, QTY // 4, 100_400 * USDC)
        rid = deploy.request_withdrawal(user_b, db, "ETH", ETH // 4)
        clients = [make_client(c) for c in chains]
        epoch_time, pins = pin_all(chains, clients)
        deploy.mint_and_deposit(owner_a, da, user_a, "USDC", 777 * USDC)  # after the pin: not an input
        books = read_books(clients, {31337: da, 31338: db}, pins)
        inputs = merge_books(books, AccountIndex(), 31337, epoch_time)
        user = bytes.fromhex(user_a.address[2:])
        row = [bytes(a) for a in inputs.accounts].index(user)
        assert inputs.failures.rows.tolist() == []
        assert dict(zip(inputs.assets, inputs.collateral[row].tolist(), strict=True)) == {"ETH": 0.5, "USDC": 12_500.0}
        held = inputs.positions[row]
        kinds = sorted((inputs.instruments[c].kind, q) for c, q in zip(held.indices, held.data, strict=True))
        assert kinds == [("future", -0.25), ("option", -1.0), ("perp", 0.5)]
        call = next(i for i in inputs.instruments if i.kind == "option")
        days = (expiry - epoch_time) / DAY
        assert (call.strike, call.right, call.vol, call.days_to_expiry) == (110_000.0, "call", 0.52, days)
        # settlement: +2,000 premium, -50,000 + 0.5 * 100,000 for the perp, +25,100 - 0.25 * 100,400 for the future
        assert int(inputs.settlement[row]) == 2_000 * USDC
        assert inputs.market.spot == {"BTC": 100_000.0, "ETH": 3_000.0}
        assert inputs.market.forwards == {("BTC", days): 100_400.0}
        w = inputs.withdrawals
        assert (w.chain_id.tolist(), w.request_id.tolist(), w.asset, w.units.tolist()) == ([31338], [rid], ("ETH",), [0.25])
        assert w.withdrawal_id[0] == withdrawal_id(31338, db.vault, rid)
        assert [p[0] for p in inputs.pins] == [31337, 31338]


@pytest.fixture(scope="module")
def base_books() -> tuple[list[ChainBook], int, bytes]:
    with running_chains(31337, 31338) as chains:
        (da, db), _expiry = build_chains(chains)
        owner_b, user_b = owner_of(chains[1]), get_sender(chains[1], USER_INDEX)
        deploy.mint_and_deposit(owner_b, db, user_b, "USDC", 1_000 * USDC)
        deploy.mint_and_deposit(owner_b, db, owner_b, "USDC", 10**6 * USDC)
        deploy.record_trade(owner_b, db, owner_b.address, user_b.address, INSTR_CALL, QTY, 2_000 * USDC)
        clients = [make_client(c) for c in chains]
        epoch_time, pins = pin_all(chains, clients)
        return read_books(clients, {31337: da, 31338: db}, pins), epoch_time, bytes.fromhex(user_b.address[2:])


def failures_of(books: list[ChainBook], t: int, **kw: Any) -> dict[bytes, str]:
    inputs = merge_books(books, AccountIndex(), 31337, t, **kw)
    return {bytes(inputs.accounts[r]): f"{f}: {why}" for r, f, why in
            zip(inputs.failures.rows.tolist(), inputs.failures.fields, inputs.failures.reasons, strict=True)}


def copy(book: ChainBook) -> ChainBook:
    return ChainBook.from_bytes(book.to_bytes())


def test_invalid_values_fail_the_accounts_that_need_them(base_books: Any) -> None:
    (home, other), t, user = base_books
    assert failures_of([home, other], t) == {}
    broken = copy(home)
    broken.spots["BTC"] = (0, broken.spots["BTC"][1])
    assert "oracle.spot.BTC: price 0 <= 0" in failures_of([broken, other], t)[user]
    novol = copy(other)
    novol.vols.pop(INSTR_CALL)
    assert f"chain 31338 oracle.vol[{INSTR_CALL}]" in failures_of([home, novol], t)[user]
    nofwd = copy(home)
    nofwd.forwards.clear()
    assert "no forward for BTC" in failures_of([nofwd, other], t)[user]
    expiry = other.instruments[INSTR_CALL].expiry
    assert "is not after the epoch time" in failures_of([home, other], expiry + 1)[user]
    noprice = copy(home)
    noprice.asset_prices.pop("USDC")
    assert failures_of([noprice, other], t)[user] == "collateral.USDC: home oracle.asset.USDC: no price"
    with pytest.raises(InvalidChainValue, match="home_chain_id"):
        merge_books([other], AccountIndex(), 31337, t)
    with pytest.raises(InvalidChainValue, match="two books"):
        merge_books([home, home], AccountIndex(), 31337, t)


def test_invalid_stale_quotes_fail_the_accounts_that_need_them(base_books: Any) -> None:
    (home, other), t, user = base_books
    assert failures_of([home, other], t, max_quote_age_s=10**6) == {}
    assert "older than 500s" in failures_of([home, other], t + 1_000, max_quote_age_s=500)[user]
    fresh = copy(home)
    for table in ("spots", "forwards", "asset_prices"):
        target = getattr(fresh, table)
        for key, (value, _at) in list(target.items()):
            target[key] = (value, t + 1_000)
    assert f"chain 31338 oracle.vol.{INSTR_CALL}" in failures_of([fresh, other], t + 1_000, max_quote_age_s=500)[user]


# --- incremental book == full re-read at every epoch ------------------------------------------------------


class Actor:
    """Random contract calls on one chain (trades, deposits, requests, cancels, funding, marks, debt sweeps and
    payout requests)."""

    def __init__(self, chain: Any, deployment: Any, rng: random.Random) -> None:
        self.chain, self.d, self.rng = chain, deployment, rng
        self.owner = owner_of(chain)
        self.users = [get_sender(chain, i) for i in range(3, 7)]
        self.requests: list[tuple[Any, int]] = []

    def fund(self) -> None:
        deploy.mint_and_deposit(self.owner, self.d, self.owner, "USDC", 10**7 * USDC)
        for u in self.users:
            deploy.mint_and_deposit(self.owner, self.d, u, "USDC", 50_000 * USDC)

    def act(self) -> None:
        roll, u = self.rng.random(), self.rng.choice(self.users)
        if roll < 0.4:
            iid = self.rng.choice((INSTR_CALL, INSTR_FUTURE, INSTR_PERP))
            maker, taker = (self.owner.address, u.address) if self.rng.random() < 0.5 else (u.address, self.owner.address)
            deploy.record_trade(self.owner, self.d, maker, taker, iid, self.rng.randint(1, 30) * QTY // 10,
                                self.rng.randint(1_000, 120_000) * USDC + self.rng.randint(0, 99))
        elif roll < 0.55:
            deploy.mint_and_deposit(self.owner, self.d, u, "USDC", self.rng.randint(1, 5_000) * USDC)
        elif roll < 0.65:
            deploy.set_funding_indices(self.owner, self.d, {INSTR_PERP: self.rng.randint(-10**9, 10**9)})
        elif roll < 0.8 and len(self.requests) < 4:
            self.requests.append((u, deploy.request_withdrawal(u, self.d, "USDC", self.rng.randint(1, 100) * USDC)))
        elif roll < 0.9 and self.requests:
            who, rid = self.requests.pop(self.rng.randrange(len(self.requests)))
            who.transact("CollateralVault", self.d.vault, "cancelWithdrawal", rid)
        elif roll < 0.87:
            deploy.set_market(self.owner, self.d, spots={"BTC": self.rng.randint(50_000, 150_000) * USDC})
        else:
            self.settle()

    def settle(self) -> None:
        """Sweep the debt of a user that owes, or request a payout of cash a user is owed."""
        ledger = self.owner.contract("PositionLedger", self.d.ledger)
        cash = {u.address: int(ledger.functions.cashOf(u.address).call()) for u in self.users}
        owing = [u for u in self.users if cash[u.address] < 0]
        owed = [u for u in self.users if cash[u.address] >= USDC]
        if owed and len(self.requests) < 4 and (not owing or self.rng.random() < 0.5):
            u = self.rng.choice(owed)
            amount = self.rng.randint(1, min(cash[u.address] // USDC, 100)) * USDC
            self.requests.append((u, deploy.request_payout(u, self.d, amount)))
        elif owing:
            u = self.rng.choice(owing)
            deploy.sweep_debt(self.owner, self.d, u.address, self.rng.randint(1, 500) * USDC)


def head_time(chain: Any) -> int:
    return int(str(rpc_call(chain.rpc_url, "eth_getBlockByNumber", ["latest", False])["timestamp"]), 16)  # type: ignore[index]


@pytest.mark.slow
def test_incremental_book_equals_full_reread_through_reorgs_and_a_restart(tmp_path: Any) -> None:
    """Each epoch: random calls, then pin (confirmations 2) and advance the incremental book; it must equal a
    cold read at the same pin. Reorgs: a shallow one (below the confirmation depth: blocks not yet pinned
    are replaced) and a deep one (above it: blocks the book already applied are replaced and rolled back).
    A restart in the middle resumes from the persisted blob and moves on with logs only."""
    rng = random.Random(12)
    with running_chains(31337) as (chain,):
        (d,), _expiry = build_chains([chain])
        actor = Actor(chain, d, rng)
        actor.fund()
        client = make_client(chain, confirmations=2)
        sync = BookSync(client, contracts_of(d))
        cold_reads = 0
        for epoch in range(10):
            if epoch == 5:  # the deep reorg of epoch 6 returns here: this epoch's blocks will be replaced
                deep_snapshot = rpc_call(chain.rpc_url, "evm_snapshot")
            for _ in range(rng.randint(1, 6)):
                actor.act()
            if epoch == 3:  # shallow reorg: replace the unconfirmed tip before it is pinned
                snap = rpc_call(chain.rpc_url, "evm_snapshot")
                actor.act()
                rpc_call(chain.rpc_url, "evm_revert", [snap])
                actor.act()
            if epoch == 6:  # deep reorg: replace blocks the book applied at the last pin
                rpc_call(chain.rpc_url, "evm_revert", [deep_snapshot])
                for _ in range(3):
                    actor.act()
                actor.requests = [r for r in actor.requests if _is_open(d, client, r[1])]
            if epoch == 8:  # restart: a new sync from the persisted blob
                sync = BookSync(client, contracts_of(d), ChainBook.from_bytes(sync.book.to_bytes()))
            t = head_time(chain)
            for i in range(3):
                mine_at(chain, t + 1 + i)
            pin = client.pin_block(t)
            book = sync.advance(pin)
            cold_reads += sync.stats.cold
            full = BookSync(client, contracts_of(d)).cold_read(pin)
            assert book.content_hash() == full.content_hash(), f"epoch {epoch}"
            if epoch == 6:
                assert sync.stats.rolled_back_to is not None  # undone with the undo records, not re-read
            if epoch == 9:
                assert sync.stats.rpc_calls < 40 and not sync.stats.cold
        assert cold_reads == 1  # only the first epoch read every view


def _is_open(d: Any, client: Any, rid: int) -> bool:
    vault = deploy.ChainSender(client.config.rpc_url, deploy.get_dev_key(0)).contract("CollateralVault", d.vault)
    return int(vault.functions.getRequest(rid).call()[6]) == 1


def test_gap_in_the_logs_stalls_with_a_named_error() -> None:
    """A log missing between two pins (simulated by dropping one from the reply) is a sequence gap: the
    advance raises and the book stays at its last good block."""
    from bridges.book import EventSequenceGap

    with running_chains(31337) as (chain,):
        (d,), _expiry = build_chains([chain])
        owner, user = owner_of(chain), get_sender(chain, USER_INDEX)
        client = make_client(chain)
        sync = BookSync(client, contracts_of(d))
        _epoch_time, (pin,) = pin_all([chain], [client])
        book = sync.advance(pin)
        before = (book.block_number, book.content_hash())
        deploy.mint_and_deposit(owner, d, user, "USDC", 5 * USDC)
        deploy.mint_and_deposit(owner, d, user, "USDC", 6 * USDC)
        _t, (pin2,) = pin_all([chain], [client])
        real = client.get_logs
        client.get_logs = lambda *a, **k: [x for i, x in enumerate(real(*a, **k)) if i != 0]  # type: ignore[method-assign]
        with pytest.raises(EventSequenceGap, match="sequence"):
            sync.advance(pin2)
        assert (sync.book.block_number, sync.book.content_hash()) == before
        client.get_logs = real  # type: ignore[method-assign]
        assert sync.advance(pin2).block_number == pin2.number
        assert np.isclose(sync.book.balance_columns()[0].sum(), 11.0)


def test_an_older_pin_after_a_newer_one_rolls_back_and_moves_forward_by_logs() -> None:
    """A retried older epoch computed after a newer one: its pin lies between two recorded blocks; the book
    rolls back to the older recorded block and applies the logs up to that pin (no cold read)."""
    rng = random.Random(5)
    with running_chains(31337) as (chain,):
        (d,), _expiry = build_chains([chain])
        actor = Actor(chain, d, rng)
        actor.fund()
        client = make_client(chain)
        sync = BookSync(client, contracts_of(d))
        _t, (first,) = pin_all([chain], [client])
        sync.advance(first)
        middle = None
        for i in range(6):
            actor.act()
            if i == 2:
                _t, (middle,) = pin_all([chain], [client])
        _t, (last,) = pin_all([chain], [client])
        sync.advance(last)
        assert middle is not None and first.number < middle.number < last.number
        book = sync.advance(middle)
        assert not sync.stats.cold and sync.stats.rolled_back_to is not None
        assert book.block_number == middle.number
        assert book.content_hash() == BookSync(client, contracts_of(d)).cold_read(middle).content_hash()
        assert sync.advance(last).content_hash() == BookSync(client, contracts_of(d)).cold_read(last).content_hash()
