"""PositionLedger and MarketOracle on a real anvil chain: owner-only registration, authorised
venues and publishers, positions and quotes through the paginated views."""

from __future__ import annotations

import pytest
from web3.exceptions import ContractCustomError

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
from tests.bridges.conftest import ChainEnv, get_revert_name

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


def test_matched_trades_accumulate_into_positions(chains: list[ChainEnv]) -> None:
    env = chains[0]
    setup_instruments(env)
    venue, user, other = env.sender(VENUE), env.sender(USER).address, env.sender(OTHER).address
    house = venue.address  # a venue trading its own book is the maker
    record_trade(venue, env.deployment, house, user, 1, -2 * QTY_SCALE, 1_500 * USD_SCALE)
    record_trade(venue, env.deployment, other, user, 2, QTY_SCALE // 2, 100_000 * USD_SCALE)
    receipt = record_trade(venue, env.deployment, house, user, 1, QTY_SCALE, 1_600 * USD_SCALE)
    ledger = env.contract("PositionLedger")
    taker_event, maker_event = (e["args"] for e in ledger.events.TradeRecorded().process_receipt(receipt))
    assert (taker_event["sequence"], taker_event["account"], taker_event["position"]) == (3 + 5, user, -QTY_SCALE)
    assert (maker_event["sequence"], maker_event["account"], maker_event["position"]) == (3 + 6, house, QTY_SCALE)
    assert ledger.functions.positionOf(user, 1).call() == -QTY_SCALE
    assert ledger.functions.getAccounts(0, 10).call() == [user, house, other]
    assert ledger.functions.accountCount().call() == 3
    assert ledger.functions.isAccount(other).call() and not ledger.functions.isAccount(env.sender(9).address).call()
    assert [tuple(p) for p in ledger.functions.getPositions(user, 0, 10).call()] == \
        [(1, -QTY_SCALE, 0), (2, QTY_SCALE // 2, 0)]
    assert [tuple(p) for p in ledger.functions.getPositions(user, 1, 10).call()] == [(2, QTY_SCALE // 2, 0)]
    assert ledger.functions.positionCount(other).call() == 1
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
    owner, user = env.sender(), env.sender(USER)
    with pytest.raises(DeploymentError, match="NotOwner"):
        register_instrument(user, env.deployment, 9, "BTC", KIND_PERP)
    with pytest.raises(DeploymentError, match="NotOwner"):
        set_venue(user, env.deployment, user.address)
    with pytest.raises(DeploymentError, match="InstrumentAlreadyRegistered"):
        register_instrument(owner, env.deployment, 2, "BTC", KIND_PERP)
    with pytest.raises(DeploymentError, match="InvalidInstrument"):  # an option needs a right
        register_instrument(owner, env.deployment, 9, "BTC", KIND_OPTION, 1, EXPIRY)
    with pytest.raises(DeploymentError, match="InvalidInstrument"):  # a perp has no expiry
        register_instrument(owner, env.deployment, 9, "BTC", KIND_PERP, 0, EXPIRY)
    with pytest.raises(DeploymentError, match="InvalidInstrument"):  # a put needs a strike
        register_instrument(owner, env.deployment, 9, "BTC", KIND_OPTION, 0, EXPIRY, RIGHT_PUT)
    with pytest.raises(DeploymentError, match="InvalidInstrument"):
        register_instrument(owner, env.deployment, 0, "BTC", KIND_PERP)
    for raw in (b"", b"BT\0C", b"BTC\xe2\x82\xbf", b"BTC USD", b"\0BTC"):
        with pytest.raises(DeploymentError, match=r"InvalidKey\('underlying'"):
            owner.transact("PositionLedger", env.deployment.ledger, "registerInstrument",
                           (9, raw.ljust(32, b"\0"), KIND_PERP, 0, 0, 0))
    assert env.contract("PositionLedger").functions.instrumentCount().call() == 3


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
    with pytest.raises(DeploymentError, match="BatchTooLarge"):
        publisher.transact("MarketOracle", env.deployment.oracle, "setVols", [1] * 201, [1] * 201)
    # the contract's own checks, called directly (set_market refuses these before sending)
    oracle, btc = env.deployment.oracle, symbol_to_bytes32("BTC")
    with pytest.raises(DeploymentError, match="ValueTooLarge"):
        publisher.transact("MarketOracle", oracle, "setSpots", [btc], [2**192])
    with pytest.raises(DeploymentError, match=r"ZeroKey\('instrumentId'"):
        publisher.transact("MarketOracle", oracle, "setVols", [0], [1])
    with pytest.raises(DeploymentError, match=r"ZeroKey\('expiry'"):
        publisher.transact("MarketOracle", oracle, "setForwards", [btc], [0], [1])
    with pytest.raises(DeploymentError, match="NotOwner"):
        set_publisher(publisher, env.deployment, publisher.address)
    assert env.contract("MarketOracle").functions.eventSequence().call() == 0


BAD_KEYS = {
    "empty": b"",
    "embedded zero": b"BT\0C",
    "leading zero": b"\0BTC",
    "non-ASCII": "BTC\u20bf".encode(),
    "space": b"BTC USD",
    "control byte": b"BTC\n",
    "DEL": b"BTC\x7f",
}


@pytest.mark.parametrize("name", sorted(BAD_KEYS))
def test_invalid_oracle_keys_refused_naming_the_field(chains: list[ChainEnv], name: str) -> None:
    env = chains[1]
    publisher = env.sender(PUBLISHER)
    set_publisher(env.sender(), env.deployment, publisher.address)
    key = BAD_KEYS[name].ljust(32, b"\0")
    calls = [("setSpots", "underlying", [[key], [1]]), ("setForwards", "underlying", [[key], [EXPIRY], [1]]),
             ("setAssetPrices", "asset", [[key], [1]])]
    for function, field, args in calls:
        with pytest.raises(DeploymentError, match=rf"InvalidKey\('{field}', '{key.hex()}'\)"):
            publisher.transact("MarketOracle", env.deployment.oracle, function, *args)
    # one bad key in a batch refuses the whole batch
    with pytest.raises(DeploymentError, match="InvalidKey"):
        publisher.transact("MarketOracle", env.deployment.oracle, "setSpots", [symbol_to_bytes32("BTC"), key], [1, 2])
    assert env.contract("MarketOracle").functions.counts().call() == [0, 0, 0, 0]


def is_printable_key(key: bytes) -> bool:
    """Python reference of AsciiKeyLib.isValid: 1..32 bytes 0x21..0x7e, then only zero padding."""
    text = key.rstrip(b"\0")
    return len(text) > 0 and all(0x21 <= b <= 0x7E for b in text)


def test_key_check_matches_the_reference_on_edge_bytes(chains: list[ChainEnv]) -> None:
    """Every byte value at the first, a middle and the last position, plus full-width keys: the
    contract's branch-free check accepts exactly the keys the Python reference accepts."""
    env = chains[1]
    publisher = env.sender(PUBLISHER)
    set_publisher(env.sender(), env.deployment, publisher.address)
    oracle = env.contract("MarketOracle")
    keys = [bytes([b]).ljust(32, b"\0") for b in range(256)]
    keys += [(b"A" * 15 + bytes([b])).ljust(32, b"\0") for b in (0x00, 0x01, 0x20, 0x21, 0x7E, 0x7F, 0x80, 0xFF)]
    keys += [b"~" * 31 + bytes([b]) for b in (0x00, 0x20, 0x21, 0x41, 0x7E, 0x7F, 0x80, 0xFF)]
    keys += [b"!" * 32, b"A" * 30 + b"\0A", b"\0" * 31 + b"A"]
    for key in keys:
        call = oracle.functions.setSpots([key], [1])
        try:
            call.call({"from": publisher.address})
            accepted = True
        except ContractCustomError as exc:  # the revert must be InvalidKey, nothing else
            assert "InvalidKey" in get_revert_name(exc), key.hex()
            accepted = False
        assert accepted == is_printable_key(key), key.hex()
