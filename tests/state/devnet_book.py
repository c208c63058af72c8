"""The devnet's book built without chains: the `ChainBook`s that `clearingd devnet [--accounts N]` seeds,
made from the same seeding code's data (`node.devnet.seed`: demo instruments, market, risk inputs,
collateral and matched trades; `node.devnet.load`: load instruments, marks, collateral and the seeded
rounds of random matched trades) turned into the events the contracts would emit, applied with
`ChainBook.apply_block`. No tests here: used by tests/state/test_digest_determinism.py, and checked
against books read from really seeded anvil chains by tests/state/test_devnet_book.py.

Quotes carry `market_time` as their update time; contract and token addresses are parameters (the real
chains' in the comparison test, fixed ones otherwise). Persists nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bridges.book import ChainBook, Event
from bridges.deploy import DEFAULT_MIN_WITHDRAWAL, DEMO_TOKENS, KIND_OPTION, MatchedTrade
from bridges.statecodec import PRICE_SCALE, QTY_SCALE, VOL_SCALE, symbol_to_bytes32
from node.devnet import load, seed

DEVNET_CHAIN_IDS = (31337, 31338)  # node.devnet.runner.DevnetOptions.chain_ids; the first is home
DEVNET_MAX_QUOTE_AGE_S = 86_400  # node.devnet.homes: the devnet's network file bound


def get_fixed_addresses(chain_id: int) -> dict[str, str]:
    """Contract and token addresses of a synthetic devnet chain (any fixed values do)."""
    tag = chain_id.to_bytes(2, "big").hex()
    return {"vault": "0x" + "a1" * 18 + tag, "ledger": "0x" + "b1" * 18 + tag, "oracle": "0x" + "d1" * 18 + tag,
            "USDC": "0x" + "c0" * 18 + tag, "ETH": "0x" + "e0" * 18 + tag}


@dataclass
class _Emitter:
    """The events of one chain's contracts, with their sequences and the ledger's absolute values."""

    tokens: Mapping[str, str]
    market_time: int
    events: list[Event] = field(default_factory=list)
    seq: dict[str, int] = field(default_factory=lambda: {"vault": 0, "ledger": 0, "oracle": 0})
    balances: dict[tuple[str, str], int] = field(default_factory=dict)
    positions: dict[tuple[str, int], int] = field(default_factory=dict)
    cash: dict[str, int] = field(default_factory=dict)

    def emit(self, contract: str, name: str, **args: Any) -> None:
        self.seq[contract] += 1
        self.events.append(Event(contract, name, {"sequence": self.seq[contract], **args}))

    def instrument(self, iid: int, underlying: str, kind: int, strike: int, expiry: int, right: int) -> None:
        self.emit("ledger", "InstrumentRegistered", id=iid, underlying=symbol_to_bytes32(underlying), kind=kind,
                  strike=strike, expiry=expiry, right=right)

    def market(self, spots: Mapping[str, int] | None = None, forwards: Mapping[tuple[str, int], int] | None = None,
               vols: Mapping[int, int] | None = None, asset_prices: Mapping[str, int] | None = None) -> None:
        """`bridges.deploy.set_market`'s setters in its order (spots, forwards, vols, asset prices)."""
        at = self.market_time
        for u, p in (spots or {}).items():
            self.emit("oracle", "SpotSet", underlying=symbol_to_bytes32(u), price=p, updatedAt=at)
        for (u, e), p in (forwards or {}).items():
            self.emit("oracle", "ForwardSet", underlying=symbol_to_bytes32(u), expiry=e, price=p, updatedAt=at)
        for iid, v in (vols or {}).items():
            self.emit("oracle", "VolSet", instrumentId=iid, vol=v, updatedAt=at)
        for sym, p in (asset_prices or {}).items():
            self.emit("oracle", "AssetPriceSet", asset=symbol_to_bytes32(sym), price=p, updatedAt=at)

    def deposit(self, account: str, symbol: str, amount: int) -> None:
        key = (account.lower(), symbol)
        self.balances[key] = self.balances.get(key, 0) + amount
        self.emit("vault", "Deposited", account=account, token=self.tokens[symbol], amount=amount,
                  balance=self.balances[key])

    def trade(self, t: MatchedTrade) -> None:
        """`PositionLedger.processTrade` with funding index 0 (the devnet never sets one)."""
        for account, q in ((t.maker, -t.quantity), (t.taker, t.quantity)):
            key = (account.lower(), t.instrument_id)
            position = self.positions.get(key, 0) + q
            self.positions[key] = position
            cash = self.cash.get(account.lower(), 0) + (-q * t.price) // QTY_SCALE
            self.cash[account.lower()] = cash
            self.emit("ledger", "TradeRecorded", venue=self.tokens["venue"], account=account,
                      instrumentId=t.instrument_id, quantity=q, price=t.price, position=position, cash=cash,
                      fundingEntry=0)


def _demo_market(spots: Mapping[str, float], market_time: int) -> dict[str, Any]:
    """What `seed.publish_market` sets, in the oracle's fixed point."""
    forwards = {(u, seed.get_expiry(market_time, d)): round(spots[u] * PRICE_SCALE)
                for (u, _k, _s, d, _r) in seed.INSTRUMENTS.values() if d}
    return {"spots": {u: round(p * PRICE_SCALE) for u, p in spots.items()}, "forwards": forwards,
            "vols": {iid: round(v * VOL_SCALE) for iid, v in seed.VOLS.items()},
            "asset_prices": {"USDC": PRICE_SCALE, "ETH": round(spots["ETH"] * PRICE_SCALE)}}


def _seed_demo(em: _Emitter, position: int, house: str) -> None:
    """`seed.seed_book` on one chain."""
    t = em.market_time
    for iid, (underlying, kind, strike, days, right) in seed.INSTRUMENTS.items():
        em.instrument(iid, underlying, kind, round(strike * PRICE_SCALE), seed.get_expiry(t, days), right)
    em.market(**_demo_market(seed.NORMAL_MARKET, t))
    confidences, rates = seed.get_risk_inputs(t)
    for (kind, sym, expiry), value in confidences.items():
        em.emit("oracle", "ConfidenceSet", kind=kind, key=symbol_to_bytes32(sym), expiry=expiry, confidence=value,
                updatedAt=t)
    for (sym, expiry), value in rates.items():
        em.emit("oracle", "RateSet", underlying=symbol_to_bytes32(sym), expiry=expiry, rate=value, updatedAt=t)
    accounts = seed.get_demo_accounts()
    deposits = {house: round(seed.HOUSE_USDC * 10**6)}
    trades = []
    for name, legs in seed.BOOK.items():
        if position in legs:
            usdc, account_trades = legs[position]
            deposits[accounts[name]] = round(usdc * 10**6)
            trades += [MatchedTrade(house, accounts[name], iid, round(qty * QTY_SCALE),
                                    seed.get_trade_price(iid, seed.NORMAL_MARKET)) for iid, qty in account_trades]
    for account, amount in deposits.items():
        em.deposit(account, "USDC", amount)
    for trade in trades:
        em.trade(trade)


def _seed_load(em: _Emitter, position: int, accounts: Sequence[str]) -> None:
    """`load.seed_chain_load` on one chain (seed `100 + position`, as `load.seed_load`)."""
    t = em.market_time
    for i in load.LOAD_INSTRUMENTS:
        em.instrument(i.id, i.underlying, i.kind, round(i.strike * PRICE_SCALE), seed.get_expiry(t, i.days), i.right)
    vols = {i.id: load.BASE_VOL for i in load.LOAD_INSTRUMENTS if i.kind == KIND_OPTION}
    spots = dict(seed.NORMAL_MARKET)
    forwards = sorted({(i.underlying, seed.get_expiry(t, i.days)) for i in load.LOAD_INSTRUMENTS if i.days})
    em.market(forwards={(u, e): round(spots[u] * PRICE_SCALE) for u, e in forwards},
              vols={iid: round(v * VOL_SCALE) for iid, v in vols.items()})
    for account in accounts:
        em.deposit(account, "USDC", load.COLLATERAL_USDC * 10**6)
    rng = np.random.default_rng(100 + position)
    for _round in range(load.POSITIONS_PER_CHAIN):
        for trade in load.make_trades(accounts, rng, spots, vols):
            em.trade(trade)


def build_devnet_books(market_time: int, load_accounts: int = 0, crash: bool = False,
                       addresses: Sequence[Mapping[str, str]] | None = None) -> list[ChainBook]:
    """The devnet's chain books after seeding (and after `seed.apply_crash` when `crash`), one per
    `DEVNET_CHAIN_IDS`; `addresses` per chain: contract ("vault", "ledger", "oracle") and token ("USDC",
    "ETH") addresses (default `get_fixed_addresses`)."""
    from eth_account import Account

    from bridges.deploy import get_dev_key

    house = Account.from_key(get_dev_key(seed.DEPLOYER_KEY_INDEX)).address
    load_venue = Account.from_key(get_dev_key(load.LOAD_KEY_INDEX)).address
    accounts = load.get_load_addresses(load_accounts) if load_accounts else []
    books = []
    for position, chain_id in enumerate(DEVNET_CHAIN_IDS):
        where = dict(addresses[position]) if addresses else get_fixed_addresses(chain_id)
        em = _Emitter({**where, "venue": house}, market_time)
        for symbol, _name, _decimals in DEMO_TOKENS:  # deploy_all: one asset per demo token
            em.emit("vault", "AssetRegistered", symbol=symbol_to_bytes32(symbol), token=where[symbol],
                    minWithdrawal=DEFAULT_MIN_WITHDRAWAL[symbol])
        _seed_demo(em, position, house)
        if accounts:
            em.tokens = {**em.tokens, "venue": load_venue}
            _seed_load(em, position, accounts)
        book = ChainBook(chain_id, {k: where[k] for k in ("vault", "ledger", "oracle")})
        decimals = {where[symbol].lower(): d for symbol, _name, d in DEMO_TOKENS}
        book.apply_block(1, _block_hash(chain_id, 1), em.events, decimals)
        books.append(book)
    if crash:
        apply_devnet_crash(books, market_time)
    return books


def _block_hash(chain_id: int, number: int) -> bytes:
    return chain_id.to_bytes(16, "big") + number.to_bytes(16, "big")


def apply_devnet_crash(books: Sequence[ChainBook], market_time: int) -> None:
    """`seed.apply_crash`: the crash market published on every chain's oracle, as the books' next block."""
    for book in books:
        em = _Emitter({}, market_time)
        em.seq = dict(book.sequences)
        em.market(**_demo_market(seed.CRASH_MARKET, market_time))
        number = int(book.block_number or 0) + 1
        book.apply_block(number, _block_hash(book.chain_id, number), em.events)
