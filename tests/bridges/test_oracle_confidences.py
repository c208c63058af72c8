"""Risk model v2 inputs on chain: oracle confidences and per-expiry rates, from `MarketOracle` through the
chain book (events and cold read) and the merge into the PM2 margin of the pipeline, on real anvil chains."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

import numpy as np
import pytest

from bridges import deploy
from bridges.book import BookFormatOutdated, ChainBook
from bridges.book_merge import AccountIndex, ColumnarInputs, merge_books
from bridges.book_reader import BookSync, contracts_of
from bridges.deploy import DeploymentError, set_publisher, symbol_to_bytes32
from node.book_store import BookStore
from node.pipeline import compute_epoch_state
from risk.contingencies import compute_contingencies
from risk.instruments import Market, Position
from risk.params import RRA1, make_pm2_params
from risk.quantize import quantize_usd
from risk.reference import compute_account_risk
from tests.bridges.conftest import ChainEnv
from tests.bridges.test_book_chain import GROUP_KEY, QTY, USDC, owner_of
from tests.bridges.test_chain_support import (
    DAY,
    INSTR_CALL,
    INSTR_PERP,
    USER_INDEX,
    get_sender,
    make_client,
    pin_all,
    running_chains,
    setup_clearing,
)

SPOT, PERP, EXPIRY, ASSET = 1, 2, 3, 4
ONE = 10**9
PM2 = make_pm2_params()


def set_confidences(sender: Any, d: Any, values: list[tuple[int, str, int, int]]) -> None:
    sender.transact("MarketOracle", d.oracle, "setConfidences", [v[0] for v in values],
                    [symbol_to_bytes32(v[1]) for v in values], [v[2] for v in values], [v[3] for v in values])


def set_rates(sender: Any, d: Any, values: dict[tuple[str, int], int]) -> None:
    sender.transact("MarketOracle", d.oracle, "setRates", [symbol_to_bytes32(u) for u, _ in values],
                    [e for _, e in values], list(values.values()))


# --- contract ---------------------------------------------------------------------------------------------


def test_confidence_and_rate_setters_are_publisher_only_and_range_checked(chains: list[ChainEnv]) -> None:
    env = chains[0]
    owner, other = env.sender(), env.sender(USER_INDEX)
    d = env.deployment
    set_publisher(owner, d, owner.address)
    expiry = 2_000_000_000
    with pytest.raises(DeploymentError, match="NotPublisher"):
        set_confidences(other, d, [(SPOT, "BTC", 0, ONE)])
    with pytest.raises(DeploymentError, match="NotPublisher"):
        set_rates(other, d, {("BTC", expiry): 0})
    with pytest.raises(DeploymentError, match=r"ValueOutOfRange\('confidence'"):
        set_confidences(owner, d, [(SPOT, "BTC", 0, ONE + 1)])
    with pytest.raises(DeploymentError, match=r"ValueOutOfRange\('rate'"):
        set_rates(owner, d, {("BTC", expiry): 2 * ONE + 1})
    with pytest.raises(DeploymentError, match="InvalidConfidenceKind"):
        set_confidences(owner, d, [(5, "BTC", 0, ONE)])
    with pytest.raises(DeploymentError, match="InvalidExpiry"):
        set_confidences(owner, d, [(SPOT, "BTC", expiry, ONE)])  # a spot confidence has no expiry
    with pytest.raises(DeploymentError, match="InvalidExpiry"):
        set_confidences(owner, d, [(EXPIRY, "BTC", 0, ONE)])  # an expiry confidence needs one
    with pytest.raises(DeploymentError, match="ZeroKey"):
        set_rates(owner, d, {("BTC", 0): 0})
    for raw in (b"", b"BT\0C", b"BTC USD"):
        with pytest.raises(DeploymentError, match=r"InvalidKey\('underlying'"):
            owner.transact("MarketOracle", d.oracle, "setConfidences", [PERP], [raw.ljust(32, b"\0")], [0], [ONE])
        with pytest.raises(DeploymentError, match=r"InvalidKey\('underlying'"):
            owner.transact("MarketOracle", d.oracle, "setRates", [raw.ljust(32, b"\0")], [expiry], [0])
    with pytest.raises(DeploymentError, match=r"InvalidKey\('asset'"):
        owner.transact("MarketOracle", d.oracle, "setConfidences", [ASSET], [b"U SD".ljust(32, b"\0")], [0], [ONE])
    oracle = env.contract("MarketOracle")
    assert oracle.functions.inputCounts().call() == [0, 0]
    set_confidences(owner, d, [(SPOT, "BTC", 0, ONE), (EXPIRY, "BTC", expiry, 0), (SPOT, "BTC", 0, 400_000_000)])
    set_rates(owner, d, {("BTC", expiry): 2 * ONE})
    assert oracle.functions.inputCounts().call() == [2, 1]
    keys, quotes = oracle.functions.getConfidences(0, 10).call()
    assert [(k[0], k[2], q[0]) for k, q in zip(keys, quotes, strict=True)] == [(SPOT, 0, 400_000_000), (EXPIRY, expiry, 0)]
    assert oracle.functions.rateOf(symbol_to_bytes32("BTC"), expiry).call()[0] == 2 * ONE
    assert oracle.functions.confidenceOf(EXPIRY, symbol_to_bytes32("BTC"), expiry).call()[1] > 0


# --- book, merge and the PM2 margin -------------------------------------------------------------------------


def account_market(inputs: ColumnarInputs, row: int) -> tuple[list[Position], dict[str, float]]:
    held = inputs.positions[row]
    positions = [Position(inputs.instruments[c], float(q)) for c, q in zip(held.indices, held.data, strict=True)]
    collateral = {a: float(v) for a, v in zip(inputs.assets, inputs.collateral[row].tolist(), strict=True) if v}
    return positions, collateral


def im_of(inputs: ColumnarInputs, account: str, params: Any = PM2) -> int:
    state = compute_epoch_state(inputs, params, network_id=7, keyset_id=1, epoch=3, params_hash=b"\x55" * 32)
    return int(state.leaves[state.get_index(account)].im)


@pytest.fixture(scope="module")
def confidence_chain() -> Any:
    """One home chain: the user is long 0.5 BTC perp and short 1 call with USDC collateral; a first pin with no
    v2 inputs, then confidences (BTC spot below PM2's threshold) and a rate are published, a second pin."""
    with running_chains(31337) as chains:
        chain = chains[0]
        expiry = int(time.time()) + 30 * DAY
        d = setup_clearing(chain, GROUP_KEY, expiry, home=True)
        owner, user = owner_of(chain), get_sender(chain, USER_INDEX)
        deploy.mint_and_deposit(owner, d, user, "USDC", 50_000 * USDC)
        deploy.mint_and_deposit(owner, d, owner, "USDC", 10**6 * USDC)
        deploy.record_trade(owner, d, owner.address, user.address, INSTR_PERP, QTY // 2, 100_000 * USDC)
        deploy.record_trade(owner, d, user.address, owner.address, INSTR_CALL, QTY, 2_000 * USDC)
        client = make_client(chain)
        sync = BookSync(client, contracts_of(d))
        t0, (pin0,) = pin_all([chain], [client])
        before = ChainBook.from_bytes(sync.advance(pin0).to_bytes())
        set_confidences(owner, d, [(SPOT, "BTC", 0, 400_000_000), (PERP, "BTC", 0, 900_000_000),
                                   (EXPIRY, "BTC", expiry, 500_000_000), (ASSET, "USDC", 0, 990_000_000)])
        set_rates(owner, d, {("BTC", expiry): 50_000_000})
        t1, (pin1,) = pin_all([chain], [client])
        incremental = sync.advance(pin1)
        cold = BookSync(client, contracts_of(d)).cold_read(pin1)
        yield {"before": (before, t0), "after": (incremental, t1), "cold": cold, "expiry": expiry,
               "user": user.address.lower()}


def test_incremental_book_equals_cold_read_with_confidences_and_rates(confidence_chain: Any) -> None:
    book, cold, expiry = confidence_chain["after"][0], confidence_chain["cold"], confidence_chain["expiry"]
    assert book.confidences == cold.confidences
    assert {k: v for k, (v, _at) in book.confidences.items()} == {
        ("spot", "BTC", 0): 400_000_000, ("perp", "BTC", 0): 900_000_000,
        ("expiry", "BTC", expiry): 500_000_000, ("asset", "USDC", 0): 990_000_000}
    assert {k: v for k, (v, _at) in cold.rates.items()} == {("BTC", expiry): 50_000_000}
    assert book.content_hash() == cold.content_hash()
    assert confidence_chain["before"][0].content_hash() != cold.content_hash()
    restored = ChainBook.from_bytes(book.to_bytes())
    assert restored.content_hash() == book.content_hash()
    assert (restored.confidences, restored.rates) == (book.confidences, book.rates)


def test_market_carries_the_home_confidences_and_rates(confidence_chain: Any) -> None:
    book, t = confidence_chain["after"]
    days = (confidence_chain["expiry"] - t) / DAY
    market = merge_books([book], AccountIndex(), 31337, t).market
    assert (market.spot_confidence, market.perp_confidence, market.asset_confidence) == (
        {"BTC": 0.4}, {"BTC": 0.9}, {"USDC": 0.99})
    assert (market.expiry_confidence, market.rates) == ({("BTC", days): 0.5}, {("BTC", days): 0.05})


def test_low_confidence_raises_the_pm2_initial_margin_by_the_oracle_contingency(confidence_chain: Any) -> None:
    user = confidence_chain["user"]
    before, t0 = confidence_chain["before"]
    after, t1 = confidence_chain["after"]
    results = {}
    for name, book, t in (("before", before, t0), ("after", after, t1)):
        inputs = merge_books([book], AccountIndex(), 31337, t)
        row = [bytes(a) for a in inputs.accounts].index(bytes.fromhex(user[2:]))
        assert inputs.ok[row]
        positions, collateral = account_market(inputs, row)
        reference = compute_account_risk(positions, collateral, inputs.market, PM2, include_tail=False)
        im = im_of(inputs, user)
        assert im == int(quantize_usd(np.array([reference.initial_margin]))[0])  # the batch = the reference engine
        results[name] = (im, positions, collateral, inputs.market)
    im_before = results["before"][0]
    im_after, positions, collateral, market_after = results["after"]
    # the same positions and marks priced without the v2 inputs: the rise is the oracle contingency (plus the
    # rate's discounting of the short call), computed by the reference engine on the chain's Market
    neutral = Market(spot=market_after.spot, forwards=market_after.forwards, asset_prices=market_after.asset_prices,
                     rates=market_after.rates)
    no_oracle = compute_account_risk(positions, collateral, neutral, PM2, include_tail=False).initial_margin
    oracle = compute_contingencies(positions, collateral, market_after, PM2).oracle
    assert oracle > 1_000.0  # (1 - 0.4) * (0.5 * 100,000 perp + options + collateral): well above rounding
    assert abs(im_after - (int(quantize_usd(np.array([no_oracle]))[0]) + round(oracle * 1e6))) <= 2
    assert im_after > im_before


def test_rra1_margin_ignores_the_confidences(confidence_chain: Any) -> None:
    user = confidence_chain["user"]
    after, t1 = confidence_chain["after"]
    inputs = merge_books([after], AccountIndex(), 31337, t1)
    stripped = ChainBook.from_bytes(after.to_bytes())
    stripped.confidences.clear()
    plain = merge_books([stripped], AccountIndex(), 31337, t1)
    assert im_of(inputs, user, RRA1) == im_of(plain, user, RRA1)


def failures(book: ChainBook, t: int, **kw: Any) -> dict[str, str]:
    inputs = merge_books([book], AccountIndex(), 31337, t, **kw)
    return {"0x" + bytes(inputs.accounts[r]).hex(): f"{f}: {why}" for r, f, why in
            zip(inputs.failures.rows.tolist(), inputs.failures.fields, inputs.failures.reasons, strict=True)}


def test_stale_or_out_of_range_rates_fail_and_confidences_count_as_zero(confidence_chain: Any) -> None:
    """A rate the account needs that is stale or out of range fails it with the field named; a stale or
    out-of-range confidence is taken as 0 (the most conservative value: the full oracle charge under
    PM2, nothing under RRA-1), so one stale confidence cannot stop every collateral holder's margin."""
    user, expiry = confidence_chain["user"], confidence_chain["expiry"]
    book, t = confidence_chain["after"]
    later = t + 1_000

    def fresh_except(table: str, key: Any, value: int | None = None) -> ChainBook:
        copy = ChainBook.from_bytes(book.to_bytes())
        for name in ("spots", "forwards", "vols", "asset_prices", "confidences", "rates"):
            target = getattr(copy, name)
            for k, (v, _at) in list(target.items()):
                target[k] = (v, later)
        v, _at = getattr(copy, table)[key]
        getattr(copy, table)[key] = (v if value is None else value, t - 10**6 if value is None else later)
        return copy

    assert failures(fresh_except("spots", "BTC"), later, max_quote_age_s=10**6 // 2).get(user) is not None
    assert f"oracle.rate.BTC.{expiry}: updated at" in failures(fresh_except("rates", ("BTC", expiry)), later,
                                                               max_quote_age_s=500)[user]
    over = failures(fresh_except("rates", ("BTC", expiry), 2 * ONE + 1), later)
    assert f"oracle.rate.BTC.{expiry}: 2000000001 outside" in over[user]
    assert failures(fresh_except("spots", "ETH"), later, max_quote_age_s=10**9) == {}
    fresh = merge_books([fresh_except("spots", "ETH")], AccountIndex(), 31337, later, max_quote_age_s=500)
    days = (expiry - later) / DAY
    cases = {("spot", "BTC", 0): ("spot_confidence", "BTC"), ("perp", "BTC", 0): ("perp_confidence", "BTC"),
             ("expiry", "BTC", expiry): ("expiry_confidence", ("BTC", days)),
             ("asset", "USDC", 0): ("asset_confidence", "USDC")}
    for key, (field, market_key) in cases.items():
        for bad in (None, ONE + 1):  # stale, then out of range
            degraded = fresh_except("confidences", key, bad)
            inputs = merge_books([degraded], AccountIndex(), 31337, later, max_quote_age_s=500)
            assert failures(degraded, later, max_quote_age_s=500) == {}, key
            assert getattr(inputs.market, field)[market_key] == 0.0, key
            assert im_of(inputs, user) >= im_of(fresh, user), key  # PM2: at least the charge of the fresh value
            assert im_of(inputs, user, RRA1) == im_of(fresh, user, RRA1), key
    spot = merge_books([fresh_except("confidences", ("spot", "BTC", 0))], AccountIndex(), 31337, later,
                       max_quote_age_s=500)
    assert im_of(spot, user) > im_of(fresh, user)  # 0.4 -> 0: a strictly larger oracle charge


def test_an_old_format_blob_is_refused_and_read_again(confidence_chain: Any, tmp_path: Any) -> None:
    book = confidence_chain["after"][0]
    blob = book.to_bytes()
    n = int.from_bytes(blob[:8], "big")
    header = json.loads(blob[8:8 + n])
    header["version"] = 1
    del header["confidences"], header["rates"]
    head = json.dumps(header, separators=(",", ":")).encode()
    old = len(head).to_bytes(8, "big") + head + blob[8 + n:]
    with pytest.raises(BookFormatOutdated, match="read the chain again"):
        ChainBook.from_bytes(old)
    store = BookStore(tmp_path / "books.sqlite")
    store.save(book)
    assert store.load(31337).content_hash() == book.content_hash()
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE books SET blob = ? WHERE chain_id = 31337", (old,))
    assert store.load(31337) is None  # the node reads the chain again
