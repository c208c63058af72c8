"""node.devnet.seed on two real anvil chains: the demo book comes from matched trades at the market
against the house, so positions are as documented, the house holds the opposite ones, and every demo
account's cash offsets the mark value of its positions at entry."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from bridges.anvil import AnvilChain, start_chains
from bridges.deploy import ChainSender, get_dev_key
from bridges.statecodec import QTY_SCALE
from node.crypto import bls, threshold
from node.devnet.seed import (
    BOOK,
    DEPLOYER_KEY_INDEX,
    HOUSE_USDC,
    NORMAL_MARKET,
    SeededChain,
    get_demo_accounts,
    get_trade_price,
    seed_chain,
)
from risk.pricing import compute_black76_price

USDC = 10**6


@pytest.fixture(scope="module")
def seeded() -> Iterator[list[SeededChain]]:
    chains: list[AnvilChain] = start_chains([31501, 31502])
    try:
        genesis = int(time.time())
        group_key = get_group_key()
        yield [seed_chain(c, i, 7, 1, group_key, genesis) for i, c in enumerate(chains)]
    finally:
        for c in chains:
            c.stop()


def get_group_key() -> bytes:
    public_key, _shares, _ = threshold.deal_trusted(4, 3, b"seed-test")
    return bls.g2_to_eip2537(public_key)


def test_option_premium_is_the_black76_value() -> None:
    expected = compute_black76_price(100_000.0, 95_000.0, 30 / 365, 0.50, is_call=False)
    assert get_trade_price(4, NORMAL_MARKET) == round(expected * USDC)
    assert 3_000 * USDC < get_trade_price(4, NORMAL_MARKET) < 4_000 * USDC
    assert get_trade_price(1, NORMAL_MARKET) == get_trade_price(2, NORMAL_MARKET) == 100_000 * USDC
    assert get_trade_price(3, NORMAL_MARKET) == 3_000 * USDC


def test_demo_book_is_matched_against_the_house(seeded: list[SeededChain]) -> None:
    accounts = get_demo_accounts()
    for position, chain in enumerate(seeded):
        sender = ChainSender(chain.rpc_url, get_dev_key(DEPLOYER_KEY_INDEX))
        ledger = sender.contract("PositionLedger", chain.deployment.ledger).functions
        vault = sender.contract("CollateralVault", chain.deployment.vault).functions
        usdc = chain.deployment.get_token("USDC")
        house = sender.address
        assert vault.balanceOf(house, usdc).call() == HOUSE_USDC * USDC
        house_positions: dict[int, int] = {}
        house_cash = 0
        for name, legs in BOOK.items():
            collateral, trades = legs.get(position, (0.0, []))
            account = accounts[name]
            assert vault.balanceOf(account, usdc).call() == round(collateral * USDC)
            held = {iid: qty for iid, qty, _entry in ledger.getPositions(account, 0, 10).call()}
            assert held == {iid: round(qty * QTY_SCALE) for iid, qty in trades}
            cash = sum((-round(qty * QTY_SCALE) * get_trade_price(iid, NORMAL_MARKET)) // QTY_SCALE
                       for iid, qty in trades)
            assert ledger.cashOf(account).call() == cash
            # at entry the cash offsets the mark value of the positions (trades at the market)
            marks = sum(round(qty * QTY_SCALE) * get_trade_price(iid, NORMAL_MARKET) // QTY_SCALE for iid, qty in trades)
            assert abs(cash + marks) <= len(trades)
            for iid, qty in held.items():
                house_positions[iid] = house_positions.get(iid, 0) - qty
            house_cash -= cash
        held = {iid: qty for iid, qty, _entry in ledger.getPositions(house, 0, 10).call()}
        assert held == house_positions
        assert ledger.cashOf(house).call() == house_cash  # whole micro-USD prices: no rounding
