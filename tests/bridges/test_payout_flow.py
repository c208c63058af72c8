"""Payouts of realised gains on two real anvil chains (docs/clearing.md section 1): a winner and a loser trade
a BTC perp on chain A, the mark moves, both close (ledger cash +x / -x); a keeper sweeps the loser's USDC into
the vault's payout pool, the winner requests a payout, a signed state approves it and the winner receives
the tokens while its ledger cash falls by x. At every epoch the leaf equity is the hand-computed value and
the vault holds exactly the balances plus the pool; the incremental chain book equals a cold read.

Hand computation (USDC: price 1, haircut 0 under RRA-1): equity = USDC balances (both chains) + ledger cash
+ rint(q S) for the open perp, minus every open request (a payout at par).
Refusals: a payout above the cash (the vault at request; the state when two payouts together exceed it),
a payout with an empty pool, a payout whose cash fell after its approval (the vault's own checks), a
sweep of an account without debt, and `settleCash` from anyone but the vault.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from bridges import deploy
from bridges.anvil import rpc_call
from bridges.book_merge import WithdrawalColumns
from bridges.book_reader import BookSync, contracts_of
from bridges.errors import DeploymentError
from bridges.statecodec import withdrawal_id
from node.crypto import bls
from node.withdrawals import compute_deductions, decide_withdrawals
from tests.bridges.test_chain_support import (
    DAY,
    INSTR_PERP,
    get_sender,
    make_client,
    mine_at,
    running_chains,
    set_up_two_chains,
)
from tests.bridges.test_withdrawal_flow import GROUP_PK, build_and_publish, complete, get_leaf

M = 10**6  # micro-USD per USD; also USDC base units per USDC
QTY = 10**8
LOSER_INDEX, KEEPER_INDEX = 6, 7
USER_USDC = 50_000 * M  # the winner's deposit on each chain (set_up_two_chains)
LOSER_USDC = 30_000 * M
GAIN = 10_000 * M  # 1 BTC perp opened at 100,000, closed at 110,000


def usdc(sender: Any, d: Any) -> Any:
    return sender.contract("TestToken", d.get_token("USDC"))


def vault_holds_balances_plus_pool(owner: Any, d: Any, accounts: list[str]) -> int:
    """Asserts the vault invariant on one chain (every account holding USDC is listed) and returns the pool."""
    vault = owner.contract("CollateralVault", d.vault)
    token = d.get_token("USDC")
    listed = {a.lower() for a in vault.functions.getAccounts(0, 500).call()}
    assert listed <= {a.lower() for a in accounts}
    balances = sum(int(vault.functions.balanceOf(a, token).call()) for a in accounts)
    pool = int(vault.functions.payoutPool().call())
    assert int(usdc(owner, d).functions.balanceOf(d.vault).call()) == balances + pool
    return pool


def cash_of(owner: Any, d: Any, account: str) -> int:
    return int(owner.contract("PositionLedger", d.ledger).functions.cashOf(account).call())


def book_matches_cold_read(chain: Any, sync: BookSync) -> None:
    """Pin chain A's head and compare the incremental book with a cold read at that pin."""
    head = rpc_call(chain.rpc_url, "eth_getBlockByNumber", ["latest", False])
    t = int(str(head["timestamp"]), 16)  # type: ignore[index]
    mine_at(chain, t + 1)
    pin = sync.client.pin_block(t, lag_s=0, confirmations=0)
    book = sync.advance(pin)
    assert book.content_hash() == BookSync(sync.client, sync.contracts).cold_read(pin).content_hash()


def test_winner_is_paid_its_gain_from_the_swept_losers_collateral() -> None:
    with running_chains(31337, 31338) as chains:
        expiry = int(time.time()) + 30 * DAY
        deployments, owners, users, publishers = set_up_two_chains(
            chains, bls.g2_to_eip2537(GROUP_PK), expiry, USER_USDC)
        da, owner = deployments[0], owners[0]
        winner_s, loser_s, keeper = users[0], get_sender(chains[0], LOSER_INDEX), get_sender(chains[0], KEEPER_INDEX)
        winner, loser = winner_s.address, loser_s.address
        deploy.mint_and_deposit(owner, da, loser_s, "USDC", LOSER_USDC)
        holders = [owner.address, winner, loser]
        sync = BookSync(make_client(chains[0]), contracts_of(da))
        book_matches_cold_read(chains[0], sync)

        def leaf_equity(state: Any, account: str) -> int:
            return int(get_leaf(state, account).equity)

        # epoch 1: the winner buys 1 BTC perp from the loser at the mark 100,000
        deploy.record_trade(owner, da, loser, winner, INSTR_PERP, QTY, 100_000 * M)
        state = build_and_publish(chains, deployments, publishers, epoch=1)
        assert leaf_equity(state, winner) == 2 * USER_USDC - 100_000 * M + 100_000 * M
        assert leaf_equity(state, loser) == LOSER_USDC + 100_000 * M - 100_000 * M
        # epoch 2: the mark moves to 110,000
        deploy.set_market(owner, da, spots={"BTC": 110_000 * M})
        state = build_and_publish(chains, deployments, publishers, epoch=2)
        assert (leaf_equity(state, winner), leaf_equity(state, loser)) == (2 * USER_USDC + GAIN, LOSER_USDC - GAIN)
        # both close at 110,000: the gain and the loss are realised into the ledger's cash
        deploy.record_trade(owner, da, winner, loser, INSTR_PERP, QTY, 110_000 * M)
        assert (cash_of(owner, da, winner), cash_of(owner, da, loser)) == (GAIN, -GAIN)
        # a payout above the cash is refused by the vault; two that together exceed it by the state
        with pytest.raises(DeploymentError, match="InsufficientCash"):
            deploy.request_payout(winner_s, da, GAIN + 1)
        split = [deploy.request_payout(winner_s, da, 6_000 * M) for _ in range(2)]
        # epoch 3: both payouts deducted at par, neither approved (12,000 > the 10,000 of cash on chain A)
        state = build_and_publish(chains, deployments, publishers, epoch=3)
        assert leaf_equity(state, winner) == 2 * USER_USDC + GAIN - 12_000 * M
        assert leaf_equity(state, loser) == LOSER_USDC - GAIN
        assert get_leaf(state, winner).approved_withdrawals == ()
        reasons = {d.request_id: d.reason for d in state.withdrawals if d.chain_id == 31337}
        assert all("open payouts 12000000000 on chain 31337 > ledger cash 10000000000" in reasons[r] for r in split)
        with pytest.raises(DeploymentError, match="WithdrawalNotApproved"):
            complete(winner_s, da, split[0], state)
        for rid in split:
            winner_s.transact("CollateralVault", da.vault, "cancelWithdrawal", rid)
        book_matches_cold_read(chains[0], sync)
        # epoch 4: a payout of the whole gain is approved; the pool is still empty, so the vault refuses it
        payout = deploy.request_payout(winner_s, da, GAIN)
        state4 = build_and_publish(chains, deployments, publishers, epoch=4)
        assert leaf_equity(state4, winner) == 2 * USER_USDC  # the gain is deducted at par while requested
        assert get_leaf(state4, winner).approved_withdrawals == (withdrawal_id(31337, da.vault, payout),)
        with pytest.raises(DeploymentError, match="InsufficientPool"):
            complete(winner_s, da, payout, state4)
        assert vault_holds_balances_plus_pool(owner, da, holders) == 0
        # a keeper sweeps the loser: only its debt moves (asked for more), its equity does not change
        with pytest.raises(DeploymentError, match="NoDebt"):
            deploy.sweep_debt(keeper, da, winner, GAIN)
        assert deploy.sweep_debt(keeper, da, loser, 5 * GAIN) == GAIN
        assert cash_of(owner, da, loser) == 0
        assert vault_holds_balances_plus_pool(owner, da, holders) == GAIN
        with pytest.raises(DeploymentError, match="NoDebt"):
            deploy.sweep_debt(keeper, da, loser, 1)
        book_matches_cold_read(chains[0], sync)
        # the winner completes with epoch 4's approval and receives the tokens; its cash falls by the gain
        before = int(usdc(owner, da).functions.balanceOf(winner).call())
        complete(winner_s, da, payout, state4)
        assert int(usdc(owner, da).functions.balanceOf(winner).call()) - before == GAIN
        assert cash_of(owner, da, winner) == 0
        assert vault_holds_balances_plus_pool(owner, da, holders) == 0
        with pytest.raises(DeploymentError, match="RequestNotOpen"):
            complete(winner_s, da, payout, state4)
        book_matches_cold_read(chains[0], sync)
        # epoch 5: the winner keeps its deposits (the gain left as tokens), the loser paid its loss
        state = build_and_publish(chains, deployments, publishers, epoch=5)
        assert (leaf_equity(state, winner), leaf_equity(state, loser)) == (2 * USER_USDC, LOSER_USDC - GAIN)
        vault = owner.contract("CollateralVault", da.vault)
        assert int(vault.functions.balanceOf(loser, da.get_token("USDC")).call()) == LOSER_USDC - GAIN
        # only the vault moves ledger cash
        with pytest.raises(DeploymentError, match="NotVault"):
            owner.transact("PositionLedger", da.ledger, "settleCash", winner, GAIN)


def test_invalid_payout_completion_after_the_cash_fell_is_refused_by_the_vault() -> None:
    """The vault checks what it can itself: an approved payout whose account lost the cash since (a later
    trade) does not complete (InsufficientCash), even with the pool full."""
    with running_chains(31337, 31338) as chains:
        expiry = int(time.time()) + 30 * DAY
        deployments, owners, users, publishers = set_up_two_chains(
            chains, bls.g2_to_eip2537(GROUP_PK), expiry, USER_USDC)
        da, owner = deployments[0], owners[0]
        winner_s, loser_s = users[0], get_sender(chains[0], LOSER_INDEX)
        deploy.mint_and_deposit(owner, da, loser_s, "USDC", LOSER_USDC)
        deploy.record_trade(owner, da, loser_s.address, winner_s.address, INSTR_PERP, QTY, 100_000 * M)
        deploy.record_trade(owner, da, winner_s.address, loser_s.address, INSTR_PERP, QTY, 110_000 * M)
        assert deploy.sweep_debt(get_sender(chains[0], KEEPER_INDEX), da, loser_s.address, GAIN) == GAIN
        payout = deploy.request_payout(winner_s, da, GAIN)
        state = build_and_publish(chains, deployments, publishers, epoch=1)
        assert get_leaf(state, winner_s.address).approved_withdrawals == (withdrawal_id(31337, da.vault, payout),)
        # the winner buys back at a loss after the approval: its cash drops below the payout
        deploy.record_trade(owner, da, loser_s.address, winner_s.address, INSTR_PERP, QTY, 110_000 * M + 1)
        deploy.record_trade(owner, da, winner_s.address, loser_s.address, INSTR_PERP, QTY, 110_000 * M)
        assert cash_of(owner, da, winner_s.address) == GAIN - 1
        with pytest.raises(DeploymentError, match="InsufficientCash"):
            complete(winner_s, da, payout, state)


# --- the node's rule on synthetic columns (no chain) ------------------------------------------------------


def columns(rows: list[tuple[int, int, bool, int, int]]) -> WithdrawalColumns:
    """(row, chain id, payout, amount in USDC base units, chain cash) per request, in sorted order."""
    n = len(rows)
    return WithdrawalColumns(
        row=np.array([r[0] for r in rows], dtype=np.int64), chain_id=np.array([r[1] for r in rows], dtype=np.int64),
        request_id=np.arange(1, n + 1, dtype=np.int64), asset=("USDC",) * n, amount=tuple(r[3] for r in rows),
        units=np.array([r[3] / M for r in rows]), request_epoch=np.zeros(n, dtype=np.int64),
        withdrawal_id=tuple(bytes([i]) * 32 for i in range(n)), payout=np.array([r[2] for r in rows], dtype=bool),
        par=np.array([r[3] if r[2] else 0 for r in rows], dtype=np.int64),
        chain_cash=np.array([r[4] for r in rows], dtype=np.int64))


def test_payouts_deduct_at_par_and_fit_the_cash_of_their_chain() -> None:
    # account 0: a withdrawal and a payout on chain A (cash 5) and a payout on chain B (cash 3, asks 4)
    # account 1: two payouts on chain A whose sum equals its cash there
    w = columns([(0, 1, False, 2 * M, 5 * M), (0, 1, True, 5 * M, 5 * M), (0, 2, True, 4 * M, 3 * M),
                 (1, 1, True, 1 * M, 3 * M), (1, 1, True, 2 * M, 3 * M)])
    deduction = compute_deductions(w, {"USDC": 0.5}, lambda _a: 0.1)  # a payout ignores price and haircut
    assert deduction.tolist() == [900_000, 5 * M, 4 * M, 1 * M, 2 * M]
    ok = np.array([True, True])
    d = decide_withdrawals(w, deduction, 1, ok, np.array([100 * M, 100 * M]), np.array([0, 0]),
                           np.array([False, False]))
    assert d.approved.tolist() == [True, True, False, True, True]
    assert d.reasons[2] == "open payouts 4000000 on chain 2 > ledger cash 3000000 there"
    assert d.total.tolist() == [900_000 + 9 * M, 3 * M]
    # the existing rule still comes first: below IM after the deductions, nothing is approved
    d = decide_withdrawals(w, deduction, 1, ok, np.array([100 * M, 100 * M]), np.array([95 * M, 0]),
                           np.array([False, False]))
    assert d.approved.tolist() == [False, False, False, True, True]
    assert d.reasons[1].startswith("equity 100000000 - open requests 9900000 < IM")
