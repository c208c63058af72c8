"""compute_margin_state: leaves, Merkle proofs, digest, withdrawal approvals, failures, determinism."""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from bridges.chain import Pin
from bridges.merkle import verify_proof
from bridges.snapshot import AccountFailure, AccountInputs, MarginInputs, PendingWithdrawal
from bridges.statecodec import (
    FLAG_LIQUIDATABLE,
    compute_inputs_digest,
    compute_leaf_hash,
    compute_state_digest,
    withdrawal_id,
)
from node.state import InvalidStateInput, MarginState, compute_margin_state
from risk.instruments import Instrument, Market, Position
from risk.params import RRA1

REPO = Path(__file__).resolve().parents[2]
A = "0x" + "11" * 20  # perp + USDC on two chains, two withdrawals
B = "0x" + "22" * 20  # USDC only
C = "0x" + "33" * 20  # position in an underlying RRA-1 does not know
D = "0x" + "44" * 20  # short perp, little collateral: liquidatable
VAULT1, VAULT2 = "0x" + "a1" * 20, "0x" + "a2" * 20
PINS = (Pin(31337, 10, b"\x01" * 32, 1000), Pin(31338, 20, b"\x02" * 32, 1001))
PARAMS_HASH = b"\x77" * 32
EPOCH = 5
MICRO = 10**6


def perp(underlying: str = "BTC") -> Instrument:
    return Instrument(underlying=underlying, kind="perp")


def request(chain_id: int, vault: str, rid: int, account: str, asset: str, units: float, epoch: int,
            decimals: int = 6) -> PendingWithdrawal:
    return PendingWithdrawal(chain_id, rid, account, asset, int(units * 10**decimals), units, epoch,
                             withdrawal_id(chain_id, vault, rid))


def build_inputs() -> MarginInputs:
    market = Market(spot={"BTC": 100_000.0, "ETH": 3_000.0}, forwards={},
                    asset_prices={"USDC": 1.0, "ETH": 3_000.0})
    accounts = (
        AccountInputs(A, (Position(perp(), 1.0),), (("USDC", 30_000.0),),
                      ((31337, "USDC", 20_000 * MICRO), (31338, "USDC", 10_000 * MICRO))),
        AccountInputs(B, (), (("ETH", 2.0), ("USDC", 500.0),), ((31337, "USDC", 500 * MICRO),)),
        AccountInputs(C, (Position(perp("SOL"), 3.0),), (("USDC", 100.0),), ()),
        AccountInputs(D, (Position(perp(), -1.0),), (("USDC", 1_000.0),), ()),
    )
    withdrawals = (
        request(31338, VAULT2, 1, B, "ETH", 1.0, 3, decimals=18),  # earliest epoch first
        request(31337, VAULT1, 4, A, "USDC", 10_000.0, 4),
        request(31338, VAULT2, 2, A, "USDC", 10_000.0, 4),  # same epoch, later chain: loses
        request(31337, VAULT1, 5, B, "USDC", 100.0, EPOCH),  # not before this epoch
        request(31337, VAULT1, 6, D, "USDC", 1.0, 1),  # liquidatable account
    )
    failures = (AccountFailure("0x" + "55" * 20, "positions[31337:9]", "chain 31337 oracle.vol[9]: vol 0"),)
    return MarginInputs(epoch_time=2_000_000_000, home_chain_id=31337, pins=PINS, market=market,
                        accounts=accounts, withdrawals=withdrawals, failures=failures)


def build_state() -> MarginState:
    return compute_margin_state(build_inputs(), RRA1, PINS, network_id=7, keyset_id=1, epoch=EPOCH,
                                params_hash=PARAMS_HASH)


def fingerprint(state: MarginState) -> str:
    h = hashlib.sha256(state.digest + state.root)
    for leaf in state.get_account_leaves():
        h.update(leaf.encoded + leaf.detail)
    for w in state.withdrawals:
        h.update(repr(w).encode())
    return h.hexdigest()


def test_leaves_values_match_closed_forms() -> None:
    state = build_state()
    assert [leaf.account for leaf in state.leaves] == [A, B, D]
    a, b, d = state.leaves
    # long 1 BTC perp: worst regular move -PSR = -15% -> 15,000 USD; extreme 2 PSR * 0.35 = 10,500
    assert (a.im, a.mm) == (15_000 * MICRO, 12_000 * MICRO)
    # USDC 500 + 2 ETH at 3,000 with a 20% haircut, one ETH approved: deduction 2,400
    assert (b.equity, b.im, b.mm, b.flags) == ((500 + 4_800 - 2_400) * MICRO, 0, 0, 0)
    assert state.details[1].equity_before_withdrawals == (500 + 4_800) * MICRO
    assert d.flags == FLAG_LIQUIDATABLE and d.equity == 1_000 * MICRO < d.mm
    assert state.details[0].worst_scenario == 0  # k = -3, vol down
    assert state.details[0].risk_array[0] == -15_000 * MICRO


def test_two_withdrawals_in_one_epoch_cannot_spend_the_same_free_collateral() -> None:
    state = build_state()
    decisions = {(w.chain_id, w.request_id): w for w in state.withdrawals}
    assert [(w.chain_id, w.request_id) for w in state.withdrawals] == [(31338, 1), (31337, 4), (31338, 2),
                                                                      (31337, 5), (31337, 6)]
    assert decisions[(31337, 4)].approved and decisions[(31337, 4)].deduction == 10_000 * MICRO
    second = decisions[(31338, 2)]
    assert not second.approved and "< IM" in second.reason
    assert not decisions[(31337, 5)].approved and "not before" in decisions[(31337, 5)].reason
    assert not decisions[(31337, 6)].approved and decisions[(31337, 6)].reason == "account is liquidatable"
    a = state.leaves[state.get_index(A)]
    assert a.approved_withdrawals == (withdrawal_id(31337, VAULT1, 4),)
    assert a.equity == 20_000 * MICRO >= a.im  # 30,000 - 10,000 still covers IM 15,000
    assert state.details[0].free_collateral == 5_000 * MICRO


def test_withdrawal_approval_would_pass_alone() -> None:
    """Without the earlier request, the second one is approved: the refusal above is the shared budget."""
    inputs = build_inputs()
    alone = dataclasses.replace(inputs, withdrawals=tuple(w for w in inputs.withdrawals
                                                           if (w.chain_id, w.request_id) != (31337, 4)))
    state = compute_margin_state(alone, RRA1, PINS, 7, 1, EPOCH, PARAMS_HASH)
    assert state.leaves[state.get_index(A)].approved_withdrawals == (withdrawal_id(31338, VAULT2, 2),)


def test_root_proofs_and_digest() -> None:
    state = build_state()
    assert state.leaf_count == 3
    for leaf in state.leaves:
        assert verify_proof(state.root, compute_leaf_hash(leaf), state.get_proof(leaf.account))
    assert state.get_proof(A.upper().replace("0X", "0x")) == state.get_proof(A)
    inputs_digest = compute_inputs_digest([(p.chain_id, p.number, p.hash) for p in PINS])
    assert state.inputs_digest == inputs_digest
    assert state.digest == compute_state_digest(7, 1, EPOCH, inputs_digest, PARAMS_HASH, state.root, 3)
    records = state.get_account_leaves()
    assert [r.index for r in records] == [0, 1, 2] and records[0].account == bytes.fromhex(A[2:])
    with pytest.raises(KeyError):
        state.get_proof(C)


def test_invalid_accounts_get_no_leaf_and_are_reported() -> None:
    state = build_state()
    by_account = {f.account: f for f in state.failures}
    assert set(by_account) == {C, "0x" + "55" * 20}
    assert "SOL" in by_account[C].reason or "SOL" in by_account[C].field


def test_invalid_builder_arguments() -> None:
    inputs = build_inputs()
    with pytest.raises(InvalidStateInput, match="pins"):
        compute_margin_state(inputs, RRA1, PINS[:1], 7, 1, EPOCH, PARAMS_HASH)
    with pytest.raises(InvalidStateInput, match="params_hash"):
        compute_margin_state(inputs, RRA1, PINS, 7, 1, EPOCH, b"\x00" * 31)
    unsorted = dataclasses.replace(inputs, accounts=tuple(reversed(inputs.accounts)))
    with pytest.raises(InvalidStateInput, match="sorted"):
        compute_margin_state(unsorted, RRA1, PINS, 7, 1, EPOCH, PARAMS_HASH)


def test_state_is_identical_across_runs_and_processes() -> None:
    local = fingerprint(build_state())
    assert fingerprint(build_state()) == local
    code = "from tests.state.test_state import build_state, fingerprint; print(fingerprint(build_state()))"
    for seed in ("0", "12345"):
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                             env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"}, check=True)
        assert out.stdout.strip() == local


def test_invalid_unrepresentable_amount_fails_one_account_not_the_epoch() -> None:
    inputs = build_inputs()
    huge = AccountInputs("0x" + "66" * 20, (), (("USDC", 1e14),), ())  # 1e20 micro-USD > int64
    state = compute_margin_state(dataclasses.replace(inputs, accounts=(*inputs.accounts, huge)), RRA1, PINS, 7, 1,
                                 EPOCH, PARAMS_HASH)
    assert [leaf.account for leaf in state.leaves] == [A, B, D]
    failure = next(f for f in state.failures if f.account == huge.account)
    assert failure.field == "equity" and "int64" in failure.reason
    assert state.leaves == build_state().leaves
