"""PositionLedger on a real anvil chain: matched trades move both sides' positions and realised cash
(hand-computed), rounding is always against the account, perp funding is realised on trade, and
every bound, authority and batch rule is refused with its named error."""

from __future__ import annotations

import pytest

from bridges.deploy import (
    KIND_FUTURE,
    KIND_OPTION,
    KIND_PERP,
    RIGHT_CALL,
    MatchedTrade,
    record_trade,
    record_trades,
    register_instrument,
    set_funding_indices,
    set_venue,
)
from bridges.errors import DeploymentError
from bridges.statecodec import QTY_SCALE, USD_SCALE
from tests.bridges.conftest import ChainEnv

EXPIRY = 1_900_000_000
CALL, PERP, FUTURE = 1, 2, 3
VENUE, TAKER, MAKER, THIRD = 5, 3, 4, 6
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1


def setup_ledger(env: ChainEnv) -> None:
    owner = env.sender()
    register_instrument(owner, env.deployment, CALL, "BTC", KIND_OPTION, 100_000 * USD_SCALE, EXPIRY, RIGHT_CALL)
    register_instrument(owner, env.deployment, PERP, "BTC", KIND_PERP)
    register_instrument(owner, env.deployment, FUTURE, "ETH", KIND_FUTURE, 0, EXPIRY)
    set_venue(owner, env.deployment, env.sender(VENUE).address)


def floor_cash(quantity: int, price: int) -> int:
    """Python reference of the contract's cash change of one side: floor(-q * p / 1e8)."""
    return (-quantity * price) // QTY_SCALE


def book(env: ChainEnv, account: str, instrument_id: int) -> tuple[int, int, int]:
    """(position, cash, funding entry) of `account` in `instrument_id` from the ledger's views."""
    ledger = env.contract("PositionLedger").functions
    return (ledger.positionOf(account, instrument_id).call(), ledger.cashOf(account).call(),
            ledger.fundingEntryOf(account, instrument_id).call())


def trade(env: ChainEnv, maker: str, taker: str, instrument_id: int, quantity: int, price: int) -> dict:
    return record_trade(env.sender(VENUE), env.deployment, maker, taker, instrument_id, quantity, price)


def test_perp_buy_and_close_settle_cash_on_both_sides(chains: list[ChainEnv]) -> None:
    env = chains[0]
    setup_ledger(env)
    taker, maker = env.sender(TAKER).address, env.sender(MAKER).address
    receipt = trade(env, maker, taker, PERP, QTY_SCALE, 100_000 * USD_SCALE)
    assert book(env, taker, PERP) == (QTY_SCALE, -100_000_000_000, 0)
    assert book(env, maker, PERP) == (-QTY_SCALE, 100_000_000_000, 0)
    events = env.contract("PositionLedger").events.TradeRecorded().process_receipt(receipt)
    assert [(e["args"]["account"], e["args"]["quantity"], e["args"]["position"], e["args"]["cash"])
            for e in events] == [(taker, QTY_SCALE, QTY_SCALE, -100_000_000_000),
                                 (maker, -QTY_SCALE, -QTY_SCALE, 100_000_000_000)]
    assert {e["args"]["venue"] for e in events} == {env.sender(VENUE).address}
    # the taker closes by selling at 120,000: realised +20,000 USD, the maker -20,000 USD
    trade(env, maker, taker, PERP, -QTY_SCALE, 120_000 * USD_SCALE)
    assert book(env, taker, PERP) == (0, 20_000 * USD_SCALE, 0)
    assert book(env, maker, PERP) == (0, -20_000 * USD_SCALE, 0)


def test_option_premium_and_future_cash_of_both_sides(chains: list[ChainEnv]) -> None:
    env = chains[0]
    setup_ledger(env)
    taker, maker = env.sender(TAKER).address, env.sender(MAKER).address
    # the taker buys 2 calls at 1,500.5 USD: pays 3,001 USD of premium; the maker (writer) receives it
    trade(env, maker, taker, CALL, 2 * QTY_SCALE, 1_500_500_000)
    assert book(env, taker, CALL) == (2 * QTY_SCALE, -3_001_000_000, 0)
    assert book(env, maker, CALL) == (-2 * QTY_SCALE, 3_001_000_000, 0)
    # sells one back at 1,600: cash -3,001 + 1,600 = -1,401 USD
    trade(env, maker, taker, CALL, -QTY_SCALE, 1_600 * USD_SCALE)
    assert book(env, taker, CALL) == (QTY_SCALE, -1_401_000_000, 0)
    assert book(env, maker, CALL) == (-QTY_SCALE, 1_401_000_000, 0)
    # the taker sells 0.25 ETH future at 3,000 (+750 USD), buys it back at 2,900 (-725 USD): +25 USD on
    # the future; cash is one number per account, so it adds to the option's -1,401
    trade(env, maker, taker, FUTURE, -QTY_SCALE // 4, 3_000 * USD_SCALE)
    assert book(env, taker, FUTURE) == (-QTY_SCALE // 4, -651_000_000, 0)
    trade(env, maker, taker, FUTURE, QTY_SCALE // 4, 2_900 * USD_SCALE)
    assert book(env, taker, FUTURE) == (0, -1_376_000_000, 0)
    assert book(env, maker, FUTURE) == (0, 1_376_000_000, 0)
    ledger = env.contract("PositionLedger").functions
    accounts, cash, counts = ledger.getAccountsInfo(0, 10).call()
    assert (accounts, cash, counts) == ([taker, maker], [-1_376_000_000, 1_376_000_000], [2, 2])
    assert ledger.getAccountsInfo(1, 10).call() == [[maker], [1_376_000_000], [2]]
    assert [tuple(p) for p in ledger.getPositions(taker, 0, 10).call()] == [(CALL, QTY_SCALE, 0), (FUTURE, 0, 0)]


def test_rounding_is_always_against_the_account(chains: list[ChainEnv]) -> None:
    env = chains[1]
    setup_ledger(env)
    taker, maker = env.sender(TAKER).address, env.sender(MAKER).address
    # odd quantities and prices: q * p is not a multiple of 1e8, so both sides round down
    trades = [(3, 33_333_333), (-7, 1), (1, 1), (-123_456_789, 98_765_432_109), (99_999_999, 3), (QTY_SCALE, 7)]
    expected_taker = expected_maker = 0
    for quantity, price in trades:
        before_t, before_m = book(env, taker, CALL)[1], book(env, maker, CALL)[1]
        trade(env, maker, taker, CALL, quantity, price)
        delta_t, delta_m = book(env, taker, CALL)[1] - before_t, book(env, maker, CALL)[1] - before_m
        assert (delta_t, delta_m) == (floor_cash(quantity, price), floor_cash(-quantity, price))
        assert delta_t + delta_m == (0 if quantity * price % QTY_SCALE == 0 else -1)
        expected_taker += delta_t
        expected_maker += delta_m
    assert (book(env, taker, CALL)[1], book(env, maker, CALL)[1]) == (expected_taker, expected_maker)
    assert expected_taker + expected_maker == -5  # five of the six products are not whole micro-USD


def test_perp_funding_is_realised_on_trade_and_the_entry_updated(chains: list[ChainEnv]) -> None:
    env = chains[0]
    setup_ledger(env)
    venue = env.sender(VENUE)
    taker, maker, third = env.sender(TAKER).address, env.sender(MAKER).address, env.sender(THIRD).address
    trade(env, maker, taker, PERP, 2 * QTY_SCALE, 100_000 * USD_SCALE)  # entries 0
    assert book(env, taker, PERP) == (2 * QTY_SCALE, -200_000 * USD_SCALE, 0)
    receipt = set_funding_indices(venue, env.deployment, {PERP: 50 * USD_SCALE})  # longs owe 50 USD per unit
    event = env.contract("PositionLedger").events.FundingIndexSet().process_receipt(receipt)[0]["args"]
    assert (event["instrumentId"], event["index"]) == (PERP, 50 * USD_SCALE)
    # funding is unrealised until the side trades: cash unchanged
    assert book(env, taker, PERP) == (2 * QTY_SCALE, -200_000 * USD_SCALE, 0)
    # the taker buys 1 more from a third account: realises -100 USD first, then pays 100,000
    trade(env, third, taker, PERP, QTY_SCALE, 100_000 * USD_SCALE)
    assert book(env, taker, PERP) == (3 * QTY_SCALE, (-300_000 - 100) * USD_SCALE, 50 * USD_SCALE)
    # a new side starts at the current index and realises nothing
    assert book(env, third, PERP) == (-QTY_SCALE, 100_000 * USD_SCALE, 50 * USD_SCALE)
    # the maker (short 2, entry 0) has not traded since: still entry 0, its +100 USD unrealised
    assert book(env, maker, PERP) == (-2 * QTY_SCALE, 200_000 * USD_SCALE, 0)
    # the index falls to 30.000001 USD: the long 3 receives floor(-3 * (30_000_001 - 50_000_000)) micro-USD
    set_funding_indices(venue, env.deployment, {PERP: 30_000_001})
    trade(env, maker, taker, PERP, -QTY_SCALE, 100_000 * USD_SCALE)
    funding = (-3 * QTY_SCALE * (30_000_001 - 50 * USD_SCALE)) // QTY_SCALE
    assert funding == 59_999_997
    assert book(env, taker, PERP) == (2 * QTY_SCALE, (-300_100 + 100_000) * USD_SCALE + funding, 30_000_001)
    # the maker realises floor(2 * 30_000_001) = +60 USD and 2 micro-USD, then pays 100,000 for one unit
    assert book(env, maker, PERP) == (-QTY_SCALE, (200_000 - 100_000) * USD_SCALE + 60_000_002, 30_000_001)
    # negative indices and odd products round against the account too
    set_funding_indices(venue, env.deployment, {PERP: -1})
    trade(env, third, maker, PERP, QTY_SCALE // 3, 1)  # maker short 1: pays when the index falls
    maker_funding = (QTY_SCALE * (-1 - 30_000_001)) // QTY_SCALE
    assert book(env, maker, PERP)[1] == 100_060_000_002 + maker_funding + floor_cash(QTY_SCALE // 3, 1)
    ledger = env.contract("PositionLedger").functions
    assert ledger.fundingIndexOf(PERP).call() == -1
    assert ledger.getFundingIndices(0, 10).call() == [[CALL, PERP, FUTURE], [0, -1, 0]]
    assert ledger.getFundingIndices(1, 1).call() == [[PERP], [-1]]
    # non-perp positions carry no funding entry
    trade(env, maker, taker, CALL, QTY_SCALE, 1_000 * USD_SCALE)
    assert book(env, taker, CALL)[2] == 0


def test_batch_of_matched_trades_is_atomic(chains: list[ChainEnv]) -> None:
    env = chains[1]
    setup_ledger(env)
    venue = env.sender(VENUE)
    taker, maker, third = env.sender(TAKER).address, env.sender(MAKER).address, env.sender(THIRD).address
    batch = [MatchedTrade(maker, taker, PERP, QTY_SCALE, 100_000 * USD_SCALE),
             MatchedTrade(third, taker, CALL, -QTY_SCALE, 2_000 * USD_SCALE),
             MatchedTrade(taker, third, PERP, QTY_SCALE // 2, 101_000 * USD_SCALE)]
    record_trades(venue, env.deployment, batch)
    assert book(env, taker, PERP)[:2] == (QTY_SCALE // 2, -100_000 * USD_SCALE + 2_000 * USD_SCALE + 50_500 * USD_SCALE)
    assert book(env, third, CALL)[0] == QTY_SCALE and book(env, third, PERP)[0] == QTY_SCALE // 2
    with pytest.raises(DeploymentError, match="SelfTrade"):  # the second trade fails: nothing is written
        record_trades(venue, env.deployment, [MatchedTrade(maker, taker, PERP, 1, 1), MatchedTrade(taker, taker, PERP, 1, 1)])
    assert book(env, taker, PERP)[0] == QTY_SCALE // 2
    with pytest.raises(DeploymentError, match="BatchTooLarge"):
        venue.transact("PositionLedger", env.deployment.ledger, "recordTrades",
                       [MatchedTrade(maker, taker, PERP, 1, 1).to_abi_tuple()] * 201)


def test_invalid_trades_refused_with_named_errors(chains: list[ChainEnv]) -> None:
    env = chains[0]
    setup_ledger(env)
    taker, maker = env.sender(TAKER).address, env.sender(MAKER).address
    zero = "0x" + "00" * 20
    cases = [
        ((maker, taker, PERP, 0, 1), "ZeroQuantity"),
        ((maker, taker, 99, 1, 1), "UnknownInstrument"),
        ((maker, maker, PERP, 1, 1), "SelfTrade"),
        ((zero, taker, PERP, 1, 1), r"ZeroAddress\('maker'"),
        ((maker, zero, PERP, 1, 1), r"ZeroAddress\('taker'"),
        ((maker, taker, PERP, INT64_MAX + 1, 1), "QuantityOutOfRange"),
        ((maker, taker, PERP, -(INT64_MAX + 1), 1), "QuantityOutOfRange"),
        ((maker, taker, PERP, 1, UINT64_MAX + 1), "PriceOutOfRange"),
        ((maker, taker, PERP, QTY_SCALE, 2**63), "CashOutOfRange"),  # the taker would owe 2^63 micro-USD
    ]
    for args, error in cases:
        with pytest.raises(DeploymentError, match=error):
            trade(env, *args)
    # the widest bounds are accepted: |quantity| = int64 max at price 0, price = uint64 max
    trade(env, maker, taker, PERP, INT64_MAX, 0)
    trade(env, maker, taker, CALL, 1, UINT64_MAX)
    with pytest.raises(DeploymentError, match="PositionOutOfRange"):
        trade(env, maker, taker, PERP, 1, 0)
    trade(env, maker, taker, PERP, -INT64_MAX, 0)  # back to 0
    assert book(env, taker, PERP)[0] == 0
    assert env.contract("PositionLedger").functions.eventSequence().call() == 3 + 6  # 3 instruments, 3 trades


def test_only_venues_write_trades_and_funding(chains: list[ChainEnv]) -> None:
    env = chains[0]
    setup_ledger(env)
    owner, venue, user = env.sender(), env.sender(VENUE), env.sender(TAKER)
    maker = env.sender(MAKER).address
    with pytest.raises(DeploymentError, match="NotVenue"):
        record_trade(user, env.deployment, maker, user.address, PERP, QTY_SCALE, 1)
    with pytest.raises(DeploymentError, match="NotVenue"):
        record_trades(owner, env.deployment, [MatchedTrade(maker, user.address, PERP, 1, 1)])
    with pytest.raises(DeploymentError, match="NotVenue"):
        set_funding_indices(user, env.deployment, {PERP: 1})
    with pytest.raises(DeploymentError, match="NotPerp"):
        set_funding_indices(venue, env.deployment, {PERP: 1, CALL: 1})
    with pytest.raises(DeploymentError, match="NotPerp"):
        set_funding_indices(venue, env.deployment, {FUTURE: 1})
    with pytest.raises(DeploymentError, match="UnknownInstrument"):
        set_funding_indices(venue, env.deployment, {42: 1})
    with pytest.raises(DeploymentError, match="FundingIndexOutOfRange"):
        set_funding_indices(venue, env.deployment, {PERP: INT64_MAX + 1})
    with pytest.raises(DeploymentError, match="FundingIndexOutOfRange"):
        set_funding_indices(venue, env.deployment, {PERP: -(INT64_MAX + 1)})
    with pytest.raises(DeploymentError, match="LengthMismatch"):
        venue.transact("PositionLedger", env.deployment.ledger, "setFundingIndices", [PERP], [1, 2])
    with pytest.raises(DeploymentError, match="BatchTooLarge"):
        venue.transact("PositionLedger", env.deployment.ledger, "setFundingIndices", [PERP] * 201, [1] * 201)
    set_funding_indices(venue, env.deployment, {PERP: -INT64_MAX})
    assert env.contract("PositionLedger").functions.fundingIndexOf(PERP).call() == -INT64_MAX
    set_venue(owner, env.deployment, venue.address, authorised=False)
    with pytest.raises(DeploymentError, match="NotVenue"):
        record_trade(venue, env.deployment, maker, user.address, PERP, QTY_SCALE, 1)
