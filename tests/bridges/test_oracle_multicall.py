"""Atomic oracle publishes: `MarketOracle.multicall` and `bridges.deploy.set_market` on a real anvil chain.

A publish of every table lands in one transaction and one block (the block before holds none of it); the
multicall keeps each call's `onlyPublisher` check; a failing inner call (sent raw, past the Python checks
and the gas estimate) reverts the whole transaction; the chain book advanced by logs over multicall
publishes equals a full read; above ORACLE_MAX_ROWS_PER_TX rows the publish is split between whole tables;
the worst-case transaction at the bound stays well under a 30M-gas block.
"""

from __future__ import annotations

from typing import Any

import pytest
from web3.logs import DISCARD

from bridges.anvil import rpc_call
from bridges.artifacts import get_abi
from bridges.book_reader import BookSync, contracts_of, read_oracle_tables
from bridges.chain import ChainClient, ChainConfig, Pin
from bridges.deploy import (
    ORACLE_MAX_BATCH,
    ORACLE_MAX_ROWS_PER_TX,
    ChainSender,
    DeploymentError,
    _market_calls,
    pack_oracle_calls,
    set_market,
    set_publisher,
)
from bridges.statecodec import symbol_to_bytes32
from tests.bridges.conftest import ChainEnv

PUBLISHER, OUTSIDER = 3, 4
EXPIRY = 1_893_456_000  # 2030-01-01
TABLES = ("spots", "forwards", "vols", "asset_prices", "confidences", "rates")
BLOCK_GAS_LIMIT = 30_000_000


@pytest.fixture
def env(chains: list[ChainEnv]) -> ChainEnv:
    """The first session chain (reverted after the test) with dev account PUBLISHER as oracle publisher."""
    set_publisher(chains[0].sender(), chains[0].deployment, chains[0].sender(PUBLISHER).address)
    return chains[0]


def make_market(n: int, price: int = 10**9, tag: str = "") -> dict[str, dict[Any, int]]:
    """`n` rows of each of the six tables (keys distinct per `tag`), in the contract's fixed point."""
    return {"spots": {f"S{tag}{i}": price + i for i in range(n)},
            "forwards": {(f"F{tag}{i}", EXPIRY + i): price + 2 * i for i in range(n)},
            "vols": {1_000 * sum(map(ord, tag)) + i + 1: 500_000 + i for i in range(n)},
            "asset_prices": {f"A{tag}{i}": price - i for i in range(n)},
            "confidences": {(1 + i % 2, f"C{tag}{i}", 0): 10**9 - i for i in range(n)},
            "rates": {(f"R{tag}{i}", EXPIRY): 5 * 10**7 + i for i in range(n)}}


def as_book_values(market: dict[str, dict[Any, int]]) -> dict[str, dict[Any, int]]:
    """`market` keyed as the chain book keys it (confidence kinds by name)."""
    kinds = {1: "spot", 2: "perp", 3: "expiry", 4: "asset"}
    out = {name: dict(table) for name, table in market.items()}
    out["confidences"] = {(kinds[k], s, e): v for (k, s, e), v in market["confidences"].items()}
    return out


def pin_at(client: ChainClient, number: int | str) -> Pin:
    block = client.get_block(number)
    return Pin(client.chain_id, block.number, block.hash, block.timestamp)


def oracle_values(env: ChainEnv, number: int | str = "latest") -> dict[str, dict[Any, int]]:
    """The oracle's tables at block `number`, read with the chain book's own reader."""
    client = ChainClient(ChainConfig(chain_id=env.chain_id, rpc_url=env.chain.rpc_url))
    book = read_oracle_tables(client, contracts_of(env.deployment), pin_at(client, number))
    return {name: {k: v for k, (v, _at) in getattr(book, name).items()} for name in TABLES}


def event_sequence(env: ChainEnv) -> int:
    return int(env.contract("MarketOracle").functions.eventSequence().call())


def encode(env: ChainEnv, function: str, *columns: list[Any]) -> bytes:
    return bytes.fromhex(env.contract("MarketOracle").encode_abi(function, args=list(columns))[2:])


def send_unestimated(sender: ChainSender, env: ChainEnv, data: list[bytes], gas: int = 5_000_000) -> dict[str, Any]:
    """A multicall transaction with a fixed gas limit (no estimate, which would refuse a reverting call), so
    the contract itself decides on chain; returns the receipt."""
    call = sender.contract("MarketOracle", env.deployment.oracle).functions.multicall(data)
    tx = call.build_transaction({"from": sender.address, "chainId": sender.chain_id, "gas": gas,
                                 "nonce": sender.w3.eth.get_transaction_count(sender.address, "pending")})
    tx_hash = sender.w3.eth.send_raw_transaction(sender.account.sign_transaction(tx).raw_transaction)
    return sender.wait_for_receipt("multicall", bytes(tx_hash))


def test_a_publish_of_every_table_is_one_transaction_in_one_block(env: ChainEnv) -> None:
    market = make_market(3)
    sequence0 = event_sequence(env)
    (receipt,) = set_market(env.sender(PUBLISHER), env.deployment, **market)
    block = env.sender().w3.eth.get_block(receipt["blockNumber"])
    assert [bytes(h) for h in block["transactions"]] == [bytes(receipt["transactionHash"])]
    assert oracle_values(env, receipt["blockNumber"]) == as_book_values(market)
    assert oracle_values(env, receipt["blockNumber"] - 1) == {name: {} for name in TABLES}  # none before it
    # every value event came from the oracle in this one transaction, sequences contiguous
    assert {log["address"] for log in receipt["logs"]} == {env.deployment.oracle}
    assert len(receipt["logs"]) == 6 * 3 and event_sequence(env) == sequence0 + 6 * 3


def test_a_non_publisher_multicall_reverts_and_writes_nothing(env: ChainEnv) -> None:
    outsider = env.sender(OUTSIDER)
    spots = encode(env, "setSpots", [symbol_to_bytes32("BTC")], [10**11])
    with pytest.raises(DeploymentError, match=rf"MarketOracle.multicall\(setSpots\): reverted "
                                              rf"NotPublisher\('{outsider.address.lower()}',\)"):
        set_market(outsider, env.deployment, spots={"BTC": 10**11})
    receipt = send_unestimated(outsider, env, [spots, spots])  # mined: the contract itself refuses it
    assert receipt["status"] == 0 and not receipt["logs"]
    assert event_sequence(env) == 0 and oracle_values(env)["spots"] == {}
    # msg.sender is the caller in every inner call: the owner (not a publisher) may batch owner-only calls,
    # and the outsider it authorises there may publish afterwards
    assert send_unestimated(env.sender(), env, [encode(env, "setPublisher", outsider.address, True)])["status"] == 1
    assert send_unestimated(outsider, env, [spots])["status"] == 1
    assert oracle_values(env)["spots"] == {"BTC": 10**11}


def test_a_failing_inner_call_reverts_the_whole_multicall(env: ChainEnv) -> None:
    publisher = env.sender(PUBLISHER)
    set_market(publisher, env.deployment, spots={"BTC": 10**11}, vols={4: 500_000})
    before, sequence = oracle_values(env), event_sequence(env)
    btc = symbol_to_bytes32("BTC")
    good = [encode(env, "setSpots", [btc], [9 * 10**10]), encode(env, "setVols", [4, 5], [600_000, 700_000])]
    bad_confidence = encode(env, "setConfidences", [1], [btc], [0], [10**9 + 1])  # above CONFIDENCE_ONE
    for data in ([*good, bad_confidence], [bad_confidence, *good], [*good, b"\xde\xad\xbe\xef"]):
        receipt = send_unestimated(publisher, env, data)
        assert receipt["status"] == 0 and not receipt["logs"]
        assert oracle_values(env) == before and event_sequence(env) == sequence
    # the same through ChainSender: the inner call's own error, or the index of a call that gave none
    oracle = publisher.contract("MarketOracle", env.deployment.oracle)
    with pytest.raises(DeploymentError, match=r"ValueOutOfRange\('confidence', 1000000001, 1000000000\)"):
        publisher.send("multicall", oracle.functions.multicall([*good, bad_confidence]), get_abi("MarketOracle"))
    with pytest.raises(DeploymentError, match=r"MulticallFailed\(2,\)"):
        publisher.send("multicall", oracle.functions.multicall([*good, b"\xde\xad\xbe\xef"]), get_abi("MarketOracle"))
    assert oracle_values(env) == before and event_sequence(env) == sequence
    assert send_unestimated(publisher, env, good)["status"] == 1
    assert oracle_values(env)["spots"] == {"BTC": 9 * 10**10}
    assert oracle_values(env)["vols"] == {4: 600_000, 5: 700_000}


def test_the_chain_book_applies_multicall_publishes_like_a_full_read(env: ChainEnv) -> None:
    client = ChainClient(ChainConfig(chain_id=env.chain_id, rpc_url=env.chain.rpc_url))
    sync = BookSync(client, contracts_of(env.deployment))
    sync.advance(pin_at(client, "latest"))
    publisher = env.sender(PUBLISHER)
    assert len(set_market(publisher, env.deployment, **make_market(4))) == 1
    updates = {**make_market(2, price=7 * 10**9), "vols": {1: 1, 2: 2, 9_999: 3}}  # old keys and new ones
    assert len(set_market(publisher, env.deployment, **updates)) == 1
    large = {"confidences": {(4, f"X{i}", 0): i for i in range(ORACLE_MAX_ROWS_PER_TX + 30)}}
    assert len(set_market(publisher, env.deployment, **large)) == 2  # above the bound: two transactions
    pin = pin_at(client, "latest")
    book = sync.advance(pin)
    assert not sync.stats.cold  # moved by the logs of the three publishes
    full = BookSync(client, contracts_of(env.deployment)).cold_read(pin)
    assert book.content_hash() == full.content_hash()
    assert book.sequences["oracle"] == event_sequence(env)
    assert {k: v for k, (v, _at) in book.spots.items()} == {**make_market(4)["spots"], **updates["spots"]}
    assert {k: v for k, (v, _at) in book.vols.items()} == {**make_market(4)["vols"], **updates["vols"]}


def test_above_the_bound_a_publish_is_split_between_whole_tables(env: ChainEnv) -> None:
    n = ORACLE_MAX_ROWS_PER_TX
    market = {"spots": {f"S{i}": 10**9 for i in range(n * 3 // 4)}, "vols": {i + 1: 1 for i in range(n // 2)},
              "confidences": {(4, f"C{i}", 0): 1 for i in range(2 * n + n // 4)}, "rates": {("BTC", EXPIRY): 5}}
    receipts = set_market(env.sender(PUBLISHER), env.deployment, **market)
    oracle = env.contract("MarketOracle")
    kinds = [[e.event for name in ("SpotSet", "VolSet", "ConfidenceSet", "RateSet")
              for e in getattr(oracle.events, name)().process_receipt(r, errors=DISCARD)] for r in receipts]
    # spots alone (vols do not fit beside them), vols whole then the confidences fill transactions in turn
    rest = len(market["confidences"]) - (n - n // 2) - n
    assert [len(k) for k in kinds] == [n * 3 // 4, n, n, rest + 1]
    assert set(kinds[0]) == {"SpotSet"} and kinds[1][:n // 2] == ["VolSet"] * (n // 2)
    assert kinds[3][-1] == "RateSet"
    assert len({r["blockNumber"] for r in receipts}) == len(receipts)
    got = oracle_values(env)
    assert got["spots"] == market["spots"] and got["vols"] == market["vols"] and got["rates"] == market["rates"]
    assert got["confidences"] == {("asset", s, e): v for (_k, s, e), v in market["confidences"].items()}


def test_pack_oracle_calls_keeps_tables_whole_where_they_fit() -> None:
    def shape(sizes: list[int], max_rows: int) -> list[list[tuple[str, int]]]:
        calls = [(f"t{i}", [list(range(size)), list(range(size))]) for i, size in enumerate(sizes)]
        return [[(f, len(cols[0])) for f, cols in tx] for tx in pack_oracle_calls(calls, max_rows)]

    assert shape([], 200) == []
    assert shape([3, 2, 1], 200) == [[("t0", 3), ("t1", 2), ("t2", 1)]]
    assert shape([150, 100, 30], 200) == [[("t0", 150)], [("t1", 100), ("t2", 30)]]
    assert shape([450, 1], 200) == [[("t0", 200)], [("t0", 200)], [("t0", 50), ("t1", 1)]]
    assert shape([50, 450, 1], 1_000) == [[("t0", 50), ("t1", ORACLE_MAX_BATCH), ("t1", ORACLE_MAX_BATCH),
                                           ("t1", 50), ("t2", 1)]]
    calls = _market_calls(*(make_market(2)[t] for t in TABLES))
    (only,) = pack_oracle_calls(calls, 12)
    assert [f for f, _cols in only] == ["setSpots", "setForwards", "setVols", "setAssetPrices", "setConfidences",
                                        "setRates"]


def test_a_republish_mined_in_a_later_second_than_its_estimate_has_the_gas_it_needs(env: ChainEnv) -> None:
    """Estimated in the second of the last write, rewriting the same values is a no-op for the estimate;
    mined later, every quote slot is written: set_market adds that gas per row."""
    publisher, vols = env.sender(PUBLISHER), {i + 1: 500_000 for i in range(ORACLE_MAX_ROWS_PER_TX)}
    set_market(publisher, env.deployment, vols=vols)
    t = env.sender().w3.eth.get_block("latest")["timestamp"]
    rpc_call(env.chain.rpc_url, "evm_setNextBlockTimestamp", [t + 1_000])
    (receipt,) = set_market(publisher, env.deployment, vols=vols)
    assert receipt["status"] == 1
    quote = env.contract("MarketOracle").functions.volOf(ORACLE_MAX_ROWS_PER_TX).call()
    assert tuple(quote) == (500_000, t + 1_000)


def test_a_full_transaction_of_new_keys_stays_well_under_a_block_and_multicall_saves_gas(env: ChainEnv) -> None:
    """The dearest row is a new confidence key: a transaction of ORACLE_MAX_ROWS_PER_TX of them uses at most
    40 % of a 30M-gas block, and the gas limit set_market gives it at most half. A small publish of every
    table as one multicall costs less gas than the same calls as separate transactions."""
    publisher = env.sender(PUBLISHER)
    confidences = {(1, f"NEW{i}", 0): 10**9 - i for i in range(ORACLE_MAX_ROWS_PER_TX)}  # keys no test used
    (receipt,) = set_market(publisher, env.deployment, confidences=confidences)
    limit = env.sender().w3.eth.get_transaction(receipt["transactionHash"])["gas"]
    assert receipt["gasUsed"] <= BLOCK_GAS_LIMIT * 2 // 5 and limit <= BLOCK_GAS_LIMIT // 2
    # the same shape of new keys both ways (distinct keys, so neither run finds the other's slots written)
    multicall_gas = sum(int(r["gasUsed"]) for r in set_market(publisher, env.deployment, **make_market(2, tag="m")))
    separate = make_market(2, tag="s")
    separate_gas = sum(int(publisher.transact("MarketOracle", env.deployment.oracle, f, *cols)["gasUsed"])
                       for f, cols in _market_calls(*(separate[t] for t in TABLES)))
    assert multicall_gas < separate_gas
