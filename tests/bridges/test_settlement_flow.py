"""Settlement on two real anvil chains: open, move the mark, close an option, a future and a perp on each
chain; the equity in the signed (and published) leaf equals the hand-computed value at every epoch, a
withdrawal of more than the true free collateral is refused by the state and by the vault (completing it
with the latest published state reverts `WithdrawalNotApproved`) while one within it is approved, and a
perp funding index move changes the leaf by the hand-computed floor amount.

Hand computation (docs/clearing.md): equity = USDC collateral + ledger cash (sum over trades of
floor(-q p / 1e8) micro-USD) + futures q F + perps q S (the home chain's marks) + options q V (Black-76 on the
home forward with each chain's vol; computed here with the scalar `risk.pricing` formula, so those epochs
compare to 2 micro-USD, the others exactly), minus every open withdrawal request (USDC at par), plus per perp
floor(-q (I - E) / 1e8) of funding.
"""

from __future__ import annotations

import time
from fractions import Fraction

import pytest

from bridges import deploy
from bridges.errors import DeploymentError
from bridges.statecodec import withdrawal_id
from node.crypto import bls
from risk.pricing import compute_black76_price
from tests.bridges.test_chain_support import (
    DAY,
    INSTR_CALL,
    INSTR_FUTURE,
    INSTR_PERP,
    mine_at,
    running_chains,
    set_up_two_chains,
)
from tests.bridges.test_withdrawal_flow import GROUP_PK, build_and_publish, complete, get_leaf

M = 10**6  # micro-USD per USD
QTY = 10**8
STRIKE = 110_000


def cash_of(trades: list[tuple[int, int]]) -> int:
    """Ledger cash of one side: sum of floor(-q * p / 1e8) over its (q 1e8, price micro-USD) trades."""
    return sum((-q * p) // QTY for q, p in trades)


def option_value(q: float, forward: float, days: float) -> float:
    return q * compute_black76_price(forward, STRIKE, days / 365.0, 0.52, True)


def test_open_move_close_settles_every_kind_on_both_chains() -> None:
    with running_chains(31337, 31338) as chains:
        expiry = int(time.time()) + 30 * DAY
        deployments, owners, users, publishers = set_up_two_chains(
            chains, bls.g2_to_eip2537(GROUP_PK), expiry, 100_000 * M)
        user = users[0].address
        # (instrument, signed user quantity 1e8, price micro-USD) per chain; the house takes the other side
        opens = [[(INSTR_PERP, 5 * QTY, 100_000 * M), (INSTR_FUTURE, -5 * QTY // 2, 100_400 * M),
                  (INSTR_CALL, 10 * QTY, 1_500 * M + 17)],
                 [(INSTR_PERP, -5 * QTY // 2, 100_000 * M), (INSTR_FUTURE, 5 * QTY, 100_400 * M),
                  (INSTR_CALL, -5 * QTY, 1_600 * M + 3)]]
        trades: list[tuple[int, int]] = []
        for owner, d, legs in zip(owners, deployments, opens, strict=True):
            for iid, q, price in legs:
                maker, taker = (owner.address, user) if q > 0 else (user, owner.address)
                deploy.record_trade(owner, d, maker, taker, iid, abs(q), price)
                trades.append((q, price))

        def expected(spot: int, forward: int, epoch_time: int, open_: bool, requested: int = 0) -> float:
            """Leaf equity: collateral + cash + marks, minus the open requests (USDC: haircut 0, deducted at par)."""
            value = 200_000 * M + cash_of(trades) - requested
            if open_:
                perp_q = sum(q for legs in opens for iid, q, _p in legs if iid == INSTR_PERP)
                fut_q = sum(q for legs in opens for iid, q, _p in legs if iid == INSTR_FUTURE)
                call_q = sum(q for legs in opens for iid, q, _p in legs if iid == INSTR_CALL)
                value += (perp_q * spot + fut_q * forward) // QTY
                value += option_value(call_q / QTY, forward / M, (expiry - epoch_time) / DAY) * M
            return value

        # epoch 1: opened at the marks (spot 100,000, forward 100,400)
        times: list[int] = []
        state = build_and_publish(chains, deployments, publishers, epoch=1, times=times)
        assert abs(get_leaf(state, user).equity - expected(100_000 * M, 100_400 * M, times[-1], True)) <= 2
        # epoch 2: BTC falls to 90,000 (forward 90,300): the long perp and long calls lose
        deploy.set_market(owners[0], deployments[0], spots={"BTC": 90_000 * M},
                          forwards={("BTC", expiry): 90_300 * M})
        state = build_and_publish(chains, deployments, publishers, epoch=2, times=times)
        leaf = get_leaf(state, user)
        assert abs(leaf.equity - expected(90_000 * M, 90_300 * M, times[-1], True)) <= 2
        assert leaf.equity < 200_000 * M
        # epoch 3: a withdrawal of more than the true free collateral is refused (and deducted in full)
        free = (leaf.equity - leaf.im) // M
        too_much_amount = (free + 1_000) * M
        too_much = deploy.request_withdrawal(users[1], deployments[1], "USDC", too_much_amount)
        state = build_and_publish(chains, deployments, publishers, epoch=3, times=times)
        leaf = get_leaf(state, user)
        assert abs(leaf.equity - expected(90_000 * M, 90_300 * M, times[-1], True, too_much_amount)) <= 2
        assert leaf.approved_withdrawals == ()
        # ... and the vault refuses to pay it with the latest published state
        with pytest.raises(DeploymentError, match="WithdrawalNotApproved"):
            complete(users[1], deployments[1], too_much, state)
        users[1].transact("CollateralVault", deployments[1].vault, "cancelWithdrawal", too_much)
        # epoch 4: one within the free collateral is approved
        within_amount = (free // 2) * M
        within = deploy.request_withdrawal(users[1], deployments[1], "USDC", within_amount)
        state = build_and_publish(chains, deployments, publishers, epoch=4, times=times)
        leaf = get_leaf(state, user)
        assert abs(leaf.equity - expected(90_000 * M, 90_300 * M, times[-1], True, within_amount)) <= 2
        assert leaf.approved_withdrawals == (withdrawal_id(31338, deployments[1].vault, within),)
        users[1].transact("CollateralVault", deployments[1].vault, "cancelWithdrawal", within)
        # epoch 5: everything closed at 90,000 / 90,300 and the calls bought / sold back at new premiums
        closes = {INSTR_PERP: 90_000 * M, INSTR_FUTURE: 90_300 * M, INSTR_CALL: 400 * M + 9}
        for owner, d, legs in zip(owners, deployments, opens, strict=True):
            for iid, q, _price in legs:
                price = closes[iid]
                maker, taker = (user, owner.address) if q > 0 else (owner.address, user)
                deploy.record_trade(owner, d, maker, taker, iid, abs(q), price)
                trades.append((-q, price))
        state = build_and_publish(chains, deployments, publishers, epoch=5)
        leaf = get_leaf(state, user)
        assert leaf.equity == expected(90_000 * M, 90_300 * M, 0, False)  # exact: only cash and collateral
        assert leaf.im == 0
        # the realised P&L, by hand: q (close - open) per leg, with floor rounding against the account per side
        realised = sum(q * (closes[iid] - p) // QTY for legs in opens for iid, q, p in legs)
        assert leaf.equity == 200_000 * M + cash_of(trades)
        assert abs(cash_of(trades) - realised) <= 12 and realised < 0


def rint_div(x: int) -> int:
    """rint(x / 1e8), ties to even (docs/clearing.md section 2)."""
    return round(Fraction(x, QTY))


def test_perp_funding_moves_the_signed_leaf_by_the_hand_computed_floor_amount() -> None:
    """Perps and a future only (no option: every figure is exact). Each funding index move between two
    epochs changes the signed leaf's equity by exactly sum floor(-q (I - E) / 1e8) over the account's perps
    (rounded down, against the account); closing a perp realises that funding into the ledger's cash."""
    with running_chains(31337, 31338) as chains:
        expiry = int(time.time()) + 30 * DAY
        deployments, owners, users, publishers = set_up_two_chains(
            chains, bls.g2_to_eip2537(GROUP_PK), expiry, 100_000 * M)
        user = users[0].address
        spot, forward = 100_000 * M, 100_400 * M
        # chain A: long 3.33333333 BTC perp; chain B: short 2.5 BTC perp and long 1.00000001 future
        q_a, q_b, q_f = 3 * QTY + QTY // 3, -5 * QTY // 2, QTY + 1
        deploy.record_trade(owners[0], deployments[0], owners[0].address, user, INSTR_PERP, q_a, spot + 7)
        deploy.record_trade(owners[1], deployments[1], user, owners[1].address, INSTR_PERP, -q_b, spot - 3)
        deploy.record_trade(owners[1], deployments[1], owners[1].address, user, INSTR_FUTURE, q_f, forward)
        cash = cash_of([(q_a, spot + 7), (q_b, spot - 3), (q_f, forward)])
        marks = rint_div(q_a * spot) + rint_div(q_b * spot) + rint_div(q_f * forward)
        state = build_and_publish(chains, deployments, publishers, epoch=1)
        before = get_leaf(state, user).equity
        assert before == 200_000 * M + cash + marks
        entries = [0, 0]
        for epoch, (i_a, i_b) in enumerate([(1_234_567_891, -765_432_109), (-765_432_101, 2_000_000_003)], start=2):
            deploy.set_funding_indices(owners[0], deployments[0], {INSTR_PERP: i_a})
            deploy.set_funding_indices(owners[1], deployments[1], {INSTR_PERP: i_b})
            state = build_and_publish(chains, deployments, publishers, epoch=epoch)
            funding = (-q_a * (i_a - entries[0])) // QTY + (-q_b * (i_b - entries[1])) // QTY
            assert get_leaf(state, user).equity == 200_000 * M + cash + marks + funding
            # the floor is not a rounding to nearest here: the hand value is the exact floor
            assert funding != rint_div(-q_a * (i_a - entries[0])) + rint_div(-q_b * (i_b - entries[1]))
        # close the chain A perp at the mark: its funding is realised into cash, the position's entry reset
        deploy.record_trade(owners[0], deployments[0], user, owners[0].address, INSTR_PERP, q_a, spot)
        cash += (-q_a * i_a) // QTY + cash_of([(-q_a, spot)])
        ledger = owners[0].contract("PositionLedger", deployments[0].ledger)
        assert int(ledger.functions.cashOf(user).call()) == (-q_a * i_a) // QTY + cash_of([(q_a, spot + 7), (-q_a, spot)])
        state = build_and_publish(chains, deployments, publishers, epoch=4)
        still_open = rint_div(q_b * spot) + rint_div(q_f * forward) + (-q_b * i_b) // QTY
        assert get_leaf(state, user).equity == 200_000 * M + cash + still_open


def test_expired_option_and_future_settle_at_the_published_price() -> None:
    """Positions past their expiry are not margined on a guess: until the home oracle publishes the
    settlement price (the forward of that expiry updated at or after it) the holder has no leaf; then
    the leaf carries collateral + cash + q max(P - K, 0) for the calls and q P for the future, exactly,
    with no margin for them, and a withdrawal of the freed value is approved."""
    with running_chains(31337, 31338) as chains:
        expiry = int(time.time()) + 30 * DAY
        deployments, owners, users, publishers = set_up_two_chains(
            chains, bls.g2_to_eip2537(GROUP_PK), expiry, 100_000 * M)
        user = users[0].address
        # chain A: the user buys 2 calls at 1,500.000017; chain B: the user sells 1 future at 100,400
        deploy.record_trade(owners[0], deployments[0], owners[0].address, user, INSTR_CALL, 2 * QTY, 1_500 * M + 17)
        deploy.record_trade(owners[1], deployments[1], user, owners[1].address, INSTR_FUTURE, QTY, 100_400 * M)
        trades = [(2 * QTY, 1_500 * M + 17), (-QTY, 100_400 * M)]
        state = build_and_publish(chains, deployments, publishers, epoch=1)
        assert get_leaf(state, user).im > 0
        for c in chains:  # past the expiry; the last forward was published before it
            mine_at(c, expiry + 60)
        state = build_and_publish(chains, deployments, publishers, epoch=2)
        failures = {f.account.lower(): f"{f.field}: {f.reason}" for f in state.failures}
        assert "no settlement price" in failures[user.lower()], failures
        assert user.lower() not in [leaf.account.lower() for leaf in state.leaves]
        settle = 123_456 * M + 789
        deploy.set_market(owners[0], deployments[0], forwards={("BTC", expiry): settle})
        state = build_and_publish(chains, deployments, publishers, epoch=3)
        leaf = get_leaf(state, user)
        expected = 200_000 * M + cash_of(trades) + 2 * (settle - STRIKE * M) - settle
        assert leaf.equity == expected and leaf.im == 0 and leaf.mm == 0
        request = deploy.request_withdrawal(users[1], deployments[1], "USDC", 100_000 * M)
        state = build_and_publish(chains, deployments, publishers, epoch=4)
        assert get_leaf(state, user).approved_withdrawals == (withdrawal_id(31338, deployments[1].vault, request),)
