"""PositionLedger and MarketOracle on a real anvil chain: owner-only registration, authorised
venues and publishers, positions and quotes through the paginated views."""

from __future__ import annotations

import pytest

from bridges.deploy import (
    KIND_FUTURE,
    KIND_OPTION,
    KIND_PERP,
    RIGHT_CALL,
    RIGHT_PUT,
    record_trade,
    register_instrument,
    set_market,
    set_publisher,
    set_venue,
)
from bridges.errors import DeploymentError
from bridges.statecodec import QTY_SCALE, USD_SCALE, bytes32_to_symbol, symbol_to_bytes32
from tests.bridges.conftest import ChainEnv

EXPIRY = 1_900_000_000
VENUE = 5
PUBLISHER = 6
USER = 3
OTHER = 4


def setup_instruments(env: ChainEnv) -> None:
    owner = env.sender()
    register_instrument(owner, env.deployment, 1, "BTC", KIND_OPTION, 100_000 * USD_SCALE, EXPIRY, RIGHT_CALL)
    register_instrument(owner, env.deployment, 2, "BTC", KIND_PERP)
    register_instrument(owner, env.deployment, 3, "ETH", KIND_FUTURE, 0, EXPIRY)
    set_venue(owner, env.deployment, env.sender(VENUE).address)


def test_trades_accumulate_into_positions(chains: list[ChainEnv]) -> None:
    env = chains[0]
    setup_instruments(env)
    venue, user, other = env.sender(VENUE), env.sender(USER).address, env.sender(OTHER).address
    record_trade(venue, env.deployment, user, 1, -2 * QTY_SCALE, 1_500 * USD_SCALE)
    record_trade(venue, env.deployment, user, 2, QTY_SCALE // 2, 100_000 * USD_SCALE)
    record_trade(venue, env.deployment, other, 2, -QTY_SCALE // 2, 100_000 * USD_SCALE)
    receipt = record_trade(venue, env.deployment, user, 1, QTY_SCALE, 1_600 * USD_SCALE)
    ledger = env.contract("PositionLedger")
    event = ledger.events.TradeRecorded().process_receipt(receipt)[0]["args"]
    assert (event["sequence"], event["account"], event["position"]) == (4, user, -QTY_SCALE)
    assert ledger.functions.positionOf(user, 1).call() == -QTY_SCALE
    assert ledger.functions.getAccounts(0, 10).call() == [user, other]
    assert [tuple(p) for p in ledger.functions.getPositions(user, 0, 10).call()] == [(1, -QTY_SCALE), (2, QTY_SCALE // 2)]
    assert [tuple(p) for p in ledger.functions.getPositions(user, 1, 10).call()] == [(2, QTY_SCALE // 2)]
    instruments = ledger.functions.getInstruments(0, 10).call()
    assert [(i[0], bytes32_to_symbol(i[1]), i[2], i[3], i[4], i[5]) for i in instruments] == [
        (1, "BTC", KIND_OPTION, 100_000 * USD_SCALE, EXPIRY, RIGHT_CALL),
        (2, "BTC", KIND_PERP, 0, 0, 0),
        (3, "ETH", KIND_FUTURE, 0, EXPIRY, 0),
    ]
    assert ledger.functions.getInstruments(2, 1).call()[0][0] == 3
    assert ledger.functions.instrumentCount().call() == 3


def test_invalid_ledger_calls_refused(chains: list[ChainEnv]) -> None:
    env = chains[0]
    setup_instruments(env)
    owner, venue, user = env.sender(), env.sender(VENUE), env.sender(USER)
    with pytest.raises(DeploymentError, match="NotVenue"):
        record_trade(user, env.deployment, user.address, 1, QTY_SCALE, 1)
    with pytest.raises(DeploymentError, match="UnknownInstrument"):
        record_trade(venue, env.deployment, user.address, 99, QTY_SCALE, 1)
    with pytest.raises(DeploymentError, match="ZeroQuantity"):
        record_trade(venue, env.deployment, user.address, 1, 0, 1)
    with pytest.raises(DeploymentError, match="NotOwner"):
        register_instrument(user, env.deployment, 9, "BTC", KIND_PERP)
    with pytest.raises(DeploymentError, match="InstrumentAlreadyRegistered"):
        register_instrument(owner, env.deployment, 2, "BTC", KIND_PERP)
    with pytest.raises(DeploymentError, match="InvalidInstrument"):  # an option needs a right
        register_instrument(owner, env.deployment, 9, "BTC", KIND_OPTION, 1, EXPIRY)
    with pytest.raises(DeploymentError, match="InvalidInstrument"):  # a perp has no expiry
        register_instrument(owner, env.deployment, 9, "BTC", KIND_PERP, 0, EXPIRY)
    with pytest.raises(DeploymentError, match="InvalidInstrument"):  # a put needs a strike
        register_instrument(owner, env.deployment, 9, "BTC", KIND_OPTION, 0, EXPIRY, RIGHT_PUT)
    set_venue(owner, env.deployment, venue.address, authorised=False)
    with pytest.raises(DeploymentError, match="NotVenue"):
        record_trade(venue, env.deployment, user.address, 1, QTY_SCALE, 1)


def test_oracle_batches_and_views(chains: list[ChainEnv]) -> None:
    env = chains[1]
    publisher = env.sender(PUBLISHER)
    set_publisher(env.sender(), env.deployment, publisher.address)
    set_market(publisher, env.deployment,
               spots={"BTC": 100_000 * USD_SCALE, "ETH": 3_000 * USD_SCALE},
               forwards={("BTC", EXPIRY): 101_000 * USD_SCALE},
               vols={1: 550_000, 3: 700_000},
               asset_prices={"USDC": USD_SCALE, "WETH": 3_000 * USD_SCALE})
    set_market(publisher, env.deployment, spots={"BTC": 99_000 * USD_SCALE})
    oracle = env.contract("MarketOracle")
    assert oracle.functions.counts().call() == [2, 1, 2, 2]
    keys, quotes = oracle.functions.getSpots(0, 10).call()
    assert [bytes32_to_symbol(k) for k in keys] == ["BTC", "ETH"]
    assert [q[0] for q in quotes] == [99_000 * USD_SCALE, 3_000 * USD_SCALE]
    assert all(q[1] > 0 for q in quotes)
    fkeys, fquotes = oracle.functions.getForwards(0, 10).call()
    assert [(bytes32_to_symbol(k[0]), k[1]) for k in fkeys] == [("BTC", EXPIRY)] and fquotes[0][0] == 101_000 * USD_SCALE
    vkeys, vquotes = oracle.functions.getVols(0, 10).call()
    assert vkeys == [1, 3] and [q[0] for q in vquotes] == [550_000, 700_000]
    assert oracle.functions.assetPriceOf(symbol_to_bytes32("WETH")).call()[0] == 3_000 * USD_SCALE
    assert oracle.functions.spotOf(symbol_to_bytes32("SOL")).call() == (0, 0)
    assert oracle.functions.getAssetPrices(1, 10).call()[0] == [symbol_to_bytes32("WETH")]


def test_invalid_oracle_calls_refused(chains: list[ChainEnv]) -> None:
    env = chains[1]
    publisher = env.sender(PUBLISHER)
    with pytest.raises(DeploymentError, match="NotPublisher"):
        set_market(publisher, env.deployment, spots={"BTC": 1})
    set_publisher(env.sender(), env.deployment, publisher.address)
    with pytest.raises(DeploymentError, match="LengthMismatch"):
        publisher.transact("MarketOracle", env.deployment.oracle, "setSpots", [symbol_to_bytes32("BTC")], [1, 2])
    with pytest.raises(DeploymentError, match="ValueTooLarge"):
        set_market(publisher, env.deployment, spots={"BTC": 2**192})
    with pytest.raises(DeploymentError, match="ZeroKey"):
        set_market(publisher, env.deployment, vols={0: 1})
    with pytest.raises(DeploymentError, match="NotOwner"):
        set_publisher(publisher, env.deployment, publisher.address)
