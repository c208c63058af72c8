"""Event sequences of PositionLedger, CollateralVault and MarketOracle on a real anvil chain.

A mixed run of every state-changing call; then all logs of each contract since deployment: the
`sequence` fields are exactly 1..N in log order (N = `eventSequence()`), only the documented
administrative events carry none, and every event's absolute values equal the contract's views at
the event's block (for the last event of each key in that block)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eth_utils import event_abi_to_log_topic

from bridges.artifacts import get_abi
from bridges.deploy import (
    KIND_FUTURE,
    KIND_OPTION,
    KIND_PERP,
    RIGHT_PUT,
    MatchedTrade,
    deploy_test_token,
    deposit_for_many,
    mint,
    mint_and_deposit,
    record_trade,
    record_trades,
    register_instrument,
    request_payout,
    request_withdrawal,
    set_funding_indices,
    set_market,
    set_min_withdrawal,
    set_publisher,
    set_venue,
    sweep_debt,
)
from bridges.statecodec import FLAG_LIQUIDATABLE, QTY_SCALE, USD_SCALE, withdrawal_id
from tests.bridges.conftest import ChainEnv, GroupKey, make_signed_state
from tests.bridges.test_contracts_vault import get_leaf

EXPIRY = 1_900_000_000
USDC = 10**6
HOUSE, USER, OTHER, THIRD = 5, 3, 4, 6
UNSEQUENCED = {"VenueSet", "PublisherSet", "OwnershipTransferred", "VaultSet", "LedgerSet", "SettlementAssetSet",
               "PoolChanged"}


def run_mixed_calls(env: ChainEnv, group_key: GroupKey) -> None:
    d, owner, house = env.deployment, env.sender(), env.sender(HOUSE)
    user, other, third = (env.sender(i) for i in (USER, OTHER, THIRD))
    set_venue(owner, d, house.address)
    set_publisher(owner, d, house.address)
    register_instrument(owner, d, 1, "BTC", KIND_PERP)
    register_instrument(owner, d, 2, "BTC", KIND_OPTION, 95_000 * USD_SCALE, EXPIRY, RIGHT_PUT)
    set_market(house, d, spots={"BTC": 100_000 * USD_SCALE, "ETH": 3_000 * USD_SCALE},
               forwards={("BTC", EXPIRY): 100_500 * USD_SCALE}, vols={2: 500_000},
               asset_prices={"USDC": USD_SCALE, "WETH": 3_000 * USD_SCALE})
    mint_and_deposit(owner, d, house, "USDC", 1_000_000 * USDC)
    record_trade(house, d, house.address, user.address, 1, QTY_SCALE, 100_000 * USD_SCALE)
    register_instrument(owner, d, 3, "ETH", KIND_FUTURE, 0, EXPIRY)
    set_funding_indices(house, d, {1: 12_345_678})
    record_trades(house, d, [MatchedTrade(house.address, other.address, 2, -2 * QTY_SCALE, 3_456_789_123),
                             MatchedTrade(other.address, user.address, 1, QTY_SCALE // 3, 99_999_999_999),
                             MatchedTrade(house.address, user.address, 1, -QTY_SCALE // 7, 101_000 * USD_SCALE),
                             MatchedTrade(third.address, user.address, 3, 5 * QTY_SCALE, 3_001 * USD_SCALE)])
    set_market(house, d, spots={"BTC": 90_000 * USD_SCALE}, vols={2: 650_000})
    mint(owner, d, "USDC", house.address, 1_000 * USDC)
    deposit_for_many(house, d, "USDC", {user.address: 300 * USDC, other.address: 200 * USDC,
                                        third.address: 100 * USDC})
    mint_and_deposit(owner, d, user, "WETH", 10**18)
    first = request_withdrawal(user, d, "USDC", 50 * USDC)
    second = request_withdrawal(user, d, "USDC", 60 * USDC)
    third_rid = request_withdrawal(other, d, "USDC", 70 * USDC)
    user.transact("CollateralVault", d.vault, "cancelWithdrawal", second)
    set_min_withdrawal(owner, d, "USDC", 2 * USDC)
    sweep_debt(third, d, user.address, 100 * USDC)  # the user owes (it bought the perp); the house is owed
    payout = request_payout(house, d, 40 * USDC)
    approving = make_signed_state(group_key, 1, [
        get_leaf(env, USER, (withdrawal_id(env.chain_id, d.vault, first),)),
        get_leaf(env, OTHER, (withdrawal_id(env.chain_id, d.vault, third_rid),), FLAG_LIQUIDATABLE),
        get_leaf(env, HOUSE, (withdrawal_id(env.chain_id, d.vault, payout),))])
    env.publish(approving)
    for rid, index in ((first, USER), (third_rid, OTHER), (payout, HOUSE)):
        leaf, proof = approving.get_leaf_args(env.sender(index).address)
        third.transact("CollateralVault", d.vault, "completeWithdrawal", rid, 1, leaf, proof)
    third.transact("CollateralVault", d.vault, "flagLiquidation", other.address, 1,
                   *approving.get_leaf_args(other.address))
    healthy = make_signed_state(group_key, 2, [get_leaf(env, USER), get_leaf(env, OTHER)])
    env.publish(healthy)
    third.transact("CollateralVault", d.vault, "clearLiquidation", other.address, 2,
                   *healthy.get_leaf_args(other.address))
    deploy_test_token(owner, d, "WBTC", "Test Wrapped Bitcoin", 8, 10**4)
    record_trade(house, d, user.address, other.address, 1, QTY_SCALE, 99_000 * USD_SCALE)
    set_publisher(owner, d, house.address, authorised=False)
    owner.transact("PositionLedger", d.ledger, "transferOwnership", third.address)


def get_events(env: ChainEnv, name: str, address: str) -> list[tuple[str, dict[str, Any], int]]:
    """(event name, args, block number) of every log of contract `name` at `address`, in log order."""
    contract = env.contract(name, address)
    by_topic = {event_abi_to_log_topic(e): e["name"] for e in get_abi(name) if e["type"] == "event"}
    w3 = env.sender().w3
    logs = w3.eth.get_logs({"address": address, "fromBlock": env.deployment.start_block, "toBlock": "latest"})
    out = []
    for log in logs:
        event = by_topic[bytes(log["topics"][0])]
        out.append((event, dict(contract.events[event]().process_log(log)["args"]), int(log["blockNumber"])))
    return out


# event name -> [(view function, view args, the value the event says it has now, or a predicate on it)]
Check = Callable[[dict[str, Any]], list[tuple[str, tuple[Any, ...], Any]]]
REQUEST_COMPLETED, REQUEST_CANCELLED = 2, 3
CHECKS: dict[str, Check] = {
    "TradeRecorded": lambda a: [("positionOf", (a["account"], a["instrumentId"]), a["position"]),
                                ("fundingEntryOf", (a["account"], a["instrumentId"]), a["fundingEntry"]),
                                ("cashOf", (a["account"],), a["cash"])],
    "FundingIndexSet": lambda a: [("fundingIndexOf", (a["instrumentId"],), a["index"])],
    "InstrumentRegistered": lambda a: [("getInstrument", (a["id"],), (a["id"], a["underlying"], a["kind"],
                                                                      a["strike"], a["expiry"], a["right"]))],
    "AssetRegistered": lambda a: [("minWithdrawal", (a["token"],), a["minWithdrawal"])],
    "MinWithdrawalSet": lambda a: [("minWithdrawal", (a["token"],), a["amount"])],
    "Deposited": lambda a: [("balanceOf", (a["account"], a["token"]), a["balance"])],
    "WithdrawalCompleted": lambda a: [
        ("balanceOf", (a["account"], a["token"]), a["balance"]),
        ("getRequest", (a["requestId"],), lambda r: r[1:4] == (a["account"], a["token"], a["amount"])
         and r[6] == REQUEST_COMPLETED)],
    "WithdrawalRequested": lambda a: [("getRequest", (a["requestId"],), (
        a["requestId"], a["account"], a["token"], a["amount"], a["requestEpoch"], a["requestTime"], 1, False))],
    "PayoutRequested": lambda a: [("getRequest", (a["requestId"],), (
        a["requestId"], a["account"], a["token"], a["amount"], a["requestEpoch"], a["requestTime"], 1, True))],
    "PayoutCompleted": lambda a: [
        ("getRequest", (a["requestId"],), lambda r: r[1:4] == (a["account"], a["token"], a["amount"])
         and r[6] == REQUEST_COMPLETED and r[7])],
    "DebtSwept": lambda a: [("balanceOf", (a["account"], a["token"]), a["balance"])],
    "CashSettled": lambda a: [("cashOf", (a["account"],), a["cash"])],
    "WithdrawalCancelled": lambda a: [
        ("getRequest", (a["requestId"],), lambda r: r[1] == a["account"] and r[6] == REQUEST_CANCELLED)],
    "LiquidationFlagged": lambda a: [("frozenAtEpoch", (a["account"],), a["epoch"]),
                                     ("withdrawalFloorEpoch", (a["account"],), a["epoch"])],
    "LiquidationCleared": lambda a: [("frozenAtEpoch", (a["account"],), 0),
                                     ("liquidationStatusEpoch", (a["account"],), a["epoch"])],
    "SpotSet": lambda a: [("spotOf", (a["underlying"],), (a["price"], a["updatedAt"]))],
    "ForwardSet": lambda a: [("forwardOf", (a["underlying"], a["expiry"]), (a["price"], a["updatedAt"]))],
    "VolSet": lambda a: [("volOf", (a["instrumentId"],), (a["vol"], a["updatedAt"]))],
    "AssetPriceSet": lambda a: [("assetPriceOf", (a["asset"],), (a["price"], a["updatedAt"]))],
}


def normalise(value: Any) -> Any:
    return tuple(normalise(v) for v in value) if isinstance(value, (list, tuple)) else value


def test_sequences_are_consecutive_and_events_carry_the_views_values(chains: list[ChainEnv],
                                                                      group_key: GroupKey) -> None:
    env = chains[0]
    run_mixed_calls(env, group_key)
    d = env.deployment
    w3 = env.sender().w3
    seen: set[str] = set()
    for name, address in (("PositionLedger", d.ledger), ("CollateralVault", d.vault), ("MarketOracle", d.oracle)):
        events = get_events(env, name, address)
        sequenced = [(event, args, block) for event, args, block in events if event not in UNSEQUENCED]
        assert all("sequence" not in args for event, args, _ in events if event in UNSEQUENCED)
        assert [args["sequence"] for _e, args, _b in sequenced] == list(range(1, len(sequenced) + 1)), name
        assert env.contract(name, address).functions.eventSequence().call() == len(sequenced)
        # a view is compared with the LAST event of its block that sets it (a batch may set it twice)
        last = {(block, function, view_args): i for i, (event, args, block) in enumerate(sequenced)
                for function, view_args, _value in CHECKS[event](args)}
        for i, (event, args, block) in enumerate(sequenced):
            seen.add(event)
            if "updatedAt" in args or "requestTime" in args:
                assert args.get("updatedAt", args.get("requestTime")) == w3.eth.get_block(block)["timestamp"]
            for function, view_args, expected in CHECKS[event](args):
                if last[(block, function, view_args)] != i:
                    continue
                actual = getattr(env.contract(name, address).functions, function)(*view_args).call(
                    block_identifier=block)
                if callable(expected):
                    assert expected(normalise(actual)), (name, event, args, actual)
                else:
                    assert normalise(actual) == normalise(expected), (name, event, args)
    assert seen == set(CHECKS), set(CHECKS) - seen  # the run exercised every sequenced event
