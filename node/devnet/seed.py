"""Devnet chain setup: seed demo market data, instruments, collateral and portfolios (hedged across
chains, unhedged, fragile) on chains deployed with the demo tokens (`clearingd deploy --demo`, or
`seed_chain`, which deploys too).

Every demo position comes from a matched trade at the market against the house: the deployer, which
is the ledger's venue and trades its own book as maker, with 10,000,000 USDC of collateral on each
chain. Futures and perps trade at the current mark (the forward, = spot with r = 0, and spot); option
premiums at their RRA-1 Black-76 value (`risk.pricing`, r = 0, tau = days to expiry / 365 at the
seeding time, the oracle's vol). So each demo account's cash (-q * price) offsets the mark value of
its positions at entry and its equity starts at its collateral (to within a micro-USD of rounding);
the house holds the opposite of every demo position. The risk model v2 inputs are published once at
seeding at their neutral values (confidence 1 for every spot, perp, expiry and collateral asset, rate 0
for every expiry: `get_risk_inputs`), so the chain path is exercised and the demo margins are unchanged.

The demo book (RRA-1 figures at BTC 100,000 / ETH 3,000):
- `hedged`: long 1 BTC perp and short 10 ETH perp on chain A, short 1 BTC 30-day future on chain B,
  10,000 USDC on each chain. The BTC legs offset: IM ~6,000 against ~36,000 for the legs alone.
- `unhedged`: the same long BTC perp and short ETH perp without the future, 20,000 USDC on chain A.
- `fragile`: short 2 BTC 95,000 puts (30 days) on chain B against 24,000 USDC, sold at their Black-76
  value (2 x 3,423 USD of premium cash, offset by the puts' mark value): equity 24,000 >= IM ~20,350 at BTC
  100,000; after the `crash` mark change to BTC 90,000 the puts are worth 2 x 8,156, equity ~14,530 < MM
  ~18,830: liquidatable.
Keys are anvil's public dev keys (local chains only). Persists nothing; returns what it deployed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bridges.anvil import AnvilChain
from bridges.deploy import (
    CONFIDENCE_ASSET,
    CONFIDENCE_EXPIRY,
    CONFIDENCE_ONE,
    CONFIDENCE_PERP,
    CONFIDENCE_SPOT,
    DEMO_TOKENS,
    KIND_FUTURE,
    KIND_OPTION,
    KIND_PERP,
    RIGHT_PUT,
    ChainSender,
    Deployment,
    MatchedTrade,
    deploy_all,
    deposit_for_many,
    get_dev_key,
    mint,
    record_trades,
    register_instrument,
    set_market,
    set_publisher,
    set_venue,
)
from bridges.statecodec import PRICE_SCALE, QTY_SCALE, VOL_SCALE
from risk.pricing import compute_black76_price, compute_tau

DEPLOYER_KEY_INDEX = 0
DEMO_ACCOUNT_KEY_INDEX = {"hedged": 10, "unhedged": 11, "fragile": 12}
DEVNET_TOKENS = DEMO_TOKENS
DAY = 86_400
HOUSE_USDC = 10_000_000.0  # the house's (deployer's) collateral on each chain

# instrument id -> (underlying, kind, strike USD, days to expiry, right)
INSTRUMENTS: dict[int, tuple[str, int, float, int, int]] = {
    1: ("BTC", KIND_PERP, 0.0, 0, 0),
    2: ("BTC", KIND_FUTURE, 0.0, 30, 0),
    3: ("ETH", KIND_PERP, 0.0, 0, 0),
    4: ("BTC", KIND_OPTION, 95_000.0, 30, RIGHT_PUT),
}
VOLS = {4: 0.50}
NORMAL_MARKET = {"BTC": 100_000.0, "ETH": 3_000.0}
CRASH_MARKET = {"BTC": 90_000.0, "ETH": 3_000.0}
# account -> chain position (0 = A, 1 = B) -> (collateral USDC, [(instrument id, quantity)])
BOOK: dict[str, dict[int, tuple[float, list[tuple[int, float]]]]] = {
    "hedged": {0: (10_000.0, [(1, 1.0), (3, -10.0)]), 1: (10_000.0, [(2, -1.0)])},
    "unhedged": {0: (20_000.0, [(1, 1.0), (3, -10.0)])},
    "fragile": {1: (24_000.0, [(4, -2.0)])},
}


@dataclass(frozen=True)
class SeededChain:
    chain_id: int
    rpc_url: str
    deployment: Deployment


def get_demo_accounts() -> dict[str, str]:
    """Demo account name -> checksummed address."""
    from eth_account import Account

    return {name: Account.from_key(get_dev_key(i)).address for name, i in DEMO_ACCOUNT_KEY_INDEX.items()}


def get_expiry(genesis_time: int, days: int) -> int:
    return 0 if days == 0 else genesis_time + days * DAY


def publish_market(sender: ChainSender, deployment: Deployment, spots: dict[str, float],
                   genesis_time: int) -> tuple[int, int]:
    """Set spot, forwards (= spot, r = 0), asset prices and option vols on one chain's oracle; returns the
    block numbers of the first and the last of its transactions."""
    forwards = {(u, get_expiry(genesis_time, d)): round(spots[u] * PRICE_SCALE)
                for (u, kind, _, d, _) in INSTRUMENTS.values() if d}
    receipts = set_market(sender, deployment,
                          spots={u: round(p * PRICE_SCALE) for u, p in spots.items()},
                          forwards=forwards,
                          vols={iid: round(v * VOL_SCALE) for iid, v in VOLS.items()},
                          asset_prices={"USDC": PRICE_SCALE, "ETH": round(spots["ETH"] * PRICE_SCALE)})
    return int(receipts[0]["blockNumber"]), int(receipts[-1]["blockNumber"])


def get_risk_inputs(genesis_time: int) -> tuple[dict[tuple[int, str, int], int], dict[tuple[str, int], int]]:
    """The demo's risk model v2 inputs in the oracle's fixed point: full confidence (1.0) for every spot,
    perp, expiry and collateral asset, and a zero rate for every expiry; both are the `Market`'s neutral
    values, so the demo margins are those without them."""
    expiries = sorted({(u, get_expiry(genesis_time, d)) for (u, _k, _s, d, _r) in INSTRUMENTS.values() if d})
    confidences = {(CONFIDENCE_SPOT, u, 0): CONFIDENCE_ONE for u in NORMAL_MARKET}
    confidences |= {(CONFIDENCE_PERP, u, 0): CONFIDENCE_ONE for (u, k, _s, _d, _r) in INSTRUMENTS.values()
                    if k == KIND_PERP}
    confidences |= {(CONFIDENCE_EXPIRY, u, e): CONFIDENCE_ONE for u, e in expiries}
    confidences |= {(CONFIDENCE_ASSET, symbol, 0): CONFIDENCE_ONE for symbol, _name, _dec in DEVNET_TOKENS}
    return confidences, dict.fromkeys(expiries, 0)


def publish_risk_inputs(sender: ChainSender, deployment: Deployment, genesis_time: int) -> None:
    """Publish `get_risk_inputs` on one chain's oracle (once, at seeding: the values never change)."""
    confidences, rates = get_risk_inputs(genesis_time)
    set_market(sender, deployment, confidences=confidences, rates=rates)


def get_trade_price(instrument_id: int, spots: dict[str, float]) -> int:
    """Micro-USD price of one unit at the market `spots` at the seeding time: perps at spot, futures at
    their forward (= spot, r = 0), options at their RRA-1 Black-76 value with the demo vol."""
    underlying, kind, strike, days, right = INSTRUMENTS[instrument_id]
    if kind != KIND_OPTION:
        return round(spots[underlying] * PRICE_SCALE)
    value = compute_black76_price(spots[underlying], strike, compute_tau(days), VOLS[instrument_id],
                                  is_call=right != RIGHT_PUT)
    return round(value * PRICE_SCALE)


def seed_chain(chain: AnvilChain, position: int, network_id: int, keyset_id: int, group_key_eip2537: bytes,
               genesis_time: int) -> SeededChain:
    """Deploy (`deploy_all` with the demo tokens), wire the deployer as venue and publisher, and seed one
    chain's demo book (what `clearingd deploy --demo` then `seed_book` do); `position` 0 is chain A."""
    deployer_key = get_dev_key(DEPLOYER_KEY_INDEX)
    deployment = deploy_all(chain.rpc_url, deployer_key, network_id, keyset_id, group_key_eip2537,
                            tokens=DEMO_TOKENS)
    house = ChainSender(chain.rpc_url, deployer_key)
    set_venue(house, deployment, house.address)
    set_publisher(house, deployment, house.address)
    return seed_book(chain.rpc_url, position, deployment, genesis_time)


def seed_book(rpc_url: str, position: int, deployment: Deployment, genesis_time: int) -> SeededChain:
    """Seed the demo book on a chain deployed with the demo tokens, whose deployer (anvil dev key
    `DEPLOYER_KEY_INDEX`) is the ledger's venue and the oracle's publisher: instruments, market data,
    the house's and the demo accounts' collateral and their trades."""
    house = ChainSender(rpc_url, get_dev_key(DEPLOYER_KEY_INDEX))
    for iid, (underlying, kind, strike, days, right) in INSTRUMENTS.items():
        register_instrument(house, deployment, iid, underlying, kind, round(strike * PRICE_SCALE),
                            get_expiry(genesis_time, days), right)
    publish_market(house, deployment, NORMAL_MARKET, genesis_time)
    publish_risk_inputs(house, deployment, genesis_time)
    accounts = get_demo_accounts()
    deposits = {house.address: round(HOUSE_USDC * 10**6)}
    trades = []
    for name, legs in BOOK.items():
        if position in legs:
            usdc, account_trades = legs[position]
            deposits[accounts[name]] = round(usdc * 10**6)
            trades += [MatchedTrade(house.address, accounts[name], iid, round(qty * QTY_SCALE),
                                    get_trade_price(iid, NORMAL_MARKET)) for iid, qty in account_trades]
    mint(house, deployment, "USDC", house.address, sum(deposits.values()))
    deposit_for_many(house, deployment, "USDC", deposits)
    record_trades(house, deployment, trades)
    return SeededChain(deployment.chain_id, rpc_url, deployment)


def apply_crash(chains: Sequence[SeededChain], genesis_time: int) -> tuple[int, int]:
    """The demo mark change: BTC falls to 90,000 on every chain's oracle; returns the first and last block
    of the change on the first (home) chain, whose oracle gives the marks."""
    blocks = [publish_market(ChainSender(c.rpc_url, get_dev_key(DEPLOYER_KEY_INDEX)), c.deployment, CRASH_MARKET,
                             genesis_time) for c in chains]
    return blocks[0]


def compute_isolated_leg_margins(name: str, spots: dict[str, float] = NORMAL_MARKET) -> list[float]:
    """RRA-1 isolated margin of each leg of a demo account (what the legs would need unnetted)."""
    from risk.whatif import parse_whatif, simulate_whatif

    kinds = {KIND_PERP: "perp", KIND_FUTURE: "future", KIND_OPTION: "option"}
    positions = []
    for _usdc, trades in BOOK[name].values():
        for iid, qty in trades:
            underlying, kind, strike, days, right = INSTRUMENTS[iid]
            pos: dict[str, object] = {"kind": kinds[kind], "underlying": underlying, "quantity": qty}
            if days:
                pos["days_to_expiry"] = days
            if kind == KIND_OPTION:
                pos |= {"strike": strike, "right": "put" if right == RIGHT_PUT else "call", "vol": VOLS[iid]}
            positions.append(pos)
    doc = {"market": {"spot": dict(spots), "asset_prices": {"USDC": 1.0, "ETH": spots["ETH"]},
                      "forwards": [{"underlying": u, "days_to_expiry": d, "price": spots[u]}
                                   for u, d in sorted({(u, d) for (u, _k, _s, d, _r) in INSTRUMENTS.values() if d})]},
           "positions": positions, "collateral": {}}
    return list(simulate_whatif(parse_whatif(doc))["isolated_margins"])
