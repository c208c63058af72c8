"""Synthetic clearing-contract event streams for the chain-book tests and the `--synthetic` benchmark.

`EventFactory` produces `bridges.book.Event`s exactly as the contracts would emit them (absolute values,
per-contract sequences), while tracking the resulting state itself in plain dicts, so a test can compare a
book against an independent model. Deterministic for a seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from bridges.book import Event

USDC = "0x" + "c0" * 20
WETH = "0x" + "e0" * 20
VAULT, LEDGER, ORACLE = "0x" + "a1" * 20, "0x" + "b1" * 20, "0x" + "d1" * 20
CONTRACTS = {"vault": VAULT, "ledger": LEDGER, "oracle": ORACLE}
DECIMALS = {USDC.lower(): 6, WETH.lower(): 18}
GENESIS = 1_700_000_000
DAY = 86_400


def address(i: int) -> str:
    return "0x" + (i * 2654435761 % 2**160).to_bytes(20, "big").hex()


@dataclass
class EventFactory:
    seed: int = 1
    rng: random.Random = field(init=False)
    seq: dict[str, int] = field(default_factory=lambda: {"vault": 0, "ledger": 0, "oracle": 0})
    positions: dict[tuple[str, int], int] = field(default_factory=dict)
    cash: dict[str, int] = field(default_factory=dict)
    balances: dict[tuple[str, str], int] = field(default_factory=dict)
    requests: dict[int, tuple[str, str, int]] = field(default_factory=dict)
    next_request: int = 1
    instruments: list[int] = field(default_factory=list)
    perps: list[int] = field(default_factory=list)
    funding: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def _event(self, contract: str, name: str, **args: object) -> Event:
        self.seq[contract] += 1
        return Event(contract, name, {"sequence": self.seq[contract], **args})

    def setup(self) -> list[Event]:
        """Two assets, instruments (perps, futures, options on BTC/ETH) and marks."""
        out = [self._event("vault", "AssetRegistered", symbol=b"USDC".ljust(32, b"\0"), token=USDC,
                           minWithdrawal=1_000_000),
               self._event("vault", "AssetRegistered", symbol=b"ETH".ljust(32, b"\0"), token=WETH, minWithdrawal=10**15)]
        iid = 1
        for u in ("BTC", "ETH"):
            raw = u.encode().ljust(32, b"\0")
            out.append(self._event("ledger", "InstrumentRegistered", id=iid, underlying=raw, kind=3, strike=0,
                                   expiry=0, right=0))
            self.instruments.append(iid)
            self.perps.append(iid)
            iid += 1
            for days in (7, 30):
                expiry = GENESIS + days * DAY
                out.append(self._event("ledger", "InstrumentRegistered", id=iid, underlying=raw, kind=2, strike=0,
                                       expiry=expiry, right=0))
                self.instruments.append(iid)
                iid += 1
                for k, right in ((0.9, 2), (1.1, 1)):
                    spot = 100_000 if u == "BTC" else 3_000
                    out.append(self._event("ledger", "InstrumentRegistered", id=iid, underlying=raw, kind=1,
                                           strike=int(spot * k) * 10**6, expiry=expiry, right=right))
                    out.append(self._event("oracle", "VolSet", instrumentId=iid, vol=550_000, updatedAt=GENESIS))
                    self.instruments.append(iid)
                    iid += 1
                out.append(self._event("oracle", "ForwardSet", underlying=raw, expiry=expiry,
                                       price=spot * 10**6, updatedAt=GENESIS))
            out.append(self._event("oracle", "SpotSet", underlying=raw, price=spot * 10**6, updatedAt=GENESIS))
        out.append(self._event("oracle", "AssetPriceSet", asset=b"USDC".ljust(32, b"\0"), price=10**6,
                               updatedAt=GENESIS))
        out.append(self._event("oracle", "AssetPriceSet", asset=b"ETH".ljust(32, b"\0"), price=3_000 * 10**6,
                               updatedAt=GENESIS))
        return out

    def deposit(self, account: str, token: str, amount: int) -> Event:
        key = (account, token)
        self.balances[key] = self.balances.get(key, 0) + amount
        return self._event("vault", "Deposited", account=account, token=token, amount=amount,
                           balance=self.balances[key])

    def trade(self, maker: str, taker: str, iid: int, qty: int, price: int) -> list[Event]:
        out = []
        for account, q in ((maker, -qty), (taker, qty)):
            old = self.positions.get((account, iid), 0)
            cash = self.cash.get(account, 0)
            index = self.funding.get(iid, 0)
            if iid in self.perps:
                cash += (-old * (index - self._entry.get((account, iid), 0))) // 10**8
                self._entry[(account, iid)] = index
            cash += (-q * price) // 10**8
            self.cash[account] = cash
            self.positions[(account, iid)] = old + q
            out.append(self._event("ledger", "TradeRecorded", venue=LEDGER, account=account, instrumentId=iid,
                                   quantity=q, price=price, position=old + q, cash=cash,
                                   fundingEntry=self._entry.get((account, iid), 0) if iid in self.perps else 0))
        return out

    @property
    def _entry(self) -> dict[tuple[str, int], int]:
        if not hasattr(self, "_entries"):
            self._entries: dict[tuple[str, int], int] = {}
        return self._entries

    def set_funding(self, iid: int, index: int) -> Event:
        self.funding[iid] = index
        return self._event("ledger", "FundingIndexSet", instrumentId=iid, index=index)

    def request(self, account: str, token: str, amount: int, epoch: int, at: int) -> Event:
        rid = self.next_request
        self.next_request += 1
        self.requests[rid] = (account, token, amount)
        return self._event("vault", "WithdrawalRequested", requestId=rid, account=account, token=token,
                           amount=amount, requestEpoch=epoch, requestTime=at)

    def complete(self, rid: int, epoch: int) -> Event:
        account, token, amount = self.requests.pop(rid)
        self.balances[(account, token)] -= amount
        return self._event("vault", "WithdrawalCompleted", requestId=rid, account=account, token=token,
                           amount=amount, approvalEpoch=epoch, balance=self.balances[(account, token)])

    def cancel(self, rid: int) -> Event:
        account, _token, _amount = self.requests.pop(rid)
        return self._event("vault", "WithdrawalCancelled", requestId=rid, account=account)

    def spot(self, underlying: str, price: int, at: int) -> Event:
        return self._event("oracle", "SpotSet", underlying=underlying.encode().ljust(32, b"\0"), price=price,
                           updatedAt=at)

    def random_block(self, accounts: list[str], size: int, epoch: int, at: int) -> list[Event]:
        """A block of random activity over `accounts`."""
        out: list[Event] = []
        for _ in range(size):
            roll = self.rng.random()
            a, b = self.rng.sample(accounts, 2)
            if roll < 0.45:
                iid = self.rng.choice(self.instruments)
                out += self.trade(a, b, iid, self.rng.randint(-300, 300) * 10**6 or 10**6,
                                  self.rng.randint(1, 120_000) * 10**6 + self.rng.randint(0, 99))
            elif roll < 0.65:
                out.append(self.deposit(a, self.rng.choice((USDC, WETH)), self.rng.randint(1, 10**12)))
            elif roll < 0.72:
                out.append(self.set_funding(self.rng.choice(self.perps), self.rng.randint(-10**9, 10**9)))
            elif roll < 0.82:
                locked: dict[tuple[str, str], int] = {}
                for acc, tok, amount in self.requests.values():
                    locked[(acc, tok)] = locked.get((acc, tok), 0) + amount
                free = {k: v - locked.get(k, 0) for k, v in self.balances.items()}
                held = sorted(k for k, v in free.items() if v > 10)
                if held:
                    acc, tok = self.rng.choice(held)
                    out.append(self.request(acc, tok, self.rng.randint(1, free[(acc, tok)] // 2), epoch, at))
            elif roll < 0.92 and self.requests:
                rid = self.rng.choice(sorted(self.requests))
                out.append(self.complete(rid, epoch) if self.rng.random() < 0.6 else self.cancel(rid))
            else:
                out.append(self.spot(self.rng.choice(("BTC", "ETH")), self.rng.randint(1_000, 200_000) * 10**6, at))
        return out
