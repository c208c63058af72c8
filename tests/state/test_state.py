"""The epoch state from chain books (events -> books -> merge -> pipeline): leaves, proofs, digest, the
withdrawal rule, failures, determinism across processes.

The book: A long 1 BTC perp bought from the house at 100,000 with 20,000 USDC on chain A and 10,000 on B and
two open 10,000 USDC requests (one per chain); B 500 USDC and 2 ETH with a 1 ETH request; C long a perp on
SOL (bought from E), an underlying RRA-1 does not know; D short 1 BTC perp against 1,000 USDC (liquidatable).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from bridges.book import ChainBook, Event
from bridges.book_merge import AccountIndex, merge_books
from bridges.errors import InvalidLeafValue
from bridges.merkle import verify_proof
from bridges.statecodec import (
    FLAG_LIQUIDATABLE,
    compute_inputs_digest,
    compute_leaf_hash,
    compute_state_digest,
    withdrawal_id,
)
from node.pipeline import compute_epoch_state
from node.state import MarginState
from risk.params import RRA1
from tests.bridges.book_factory import CONTRACTS, DECIMALS, GENESIS, USDC, WETH, EventFactory, address

REPO = Path(__file__).resolve().parents[2]
MICRO = 10**6
A, B, C, D, E, HOUSE = (address(i) for i in (11, 22, 33, 44, 77, 55))
EPOCH = 5
PARAMS_HASH = b"\x77" * 32
SOL_PERP = 100


def _book(cid: int, tag: str) -> tuple[ChainBook, EventFactory]:
    book = ChainBook(cid, {k: v[:-2] + tag * 2 for k, v in CONTRACTS.items()})
    book.advance_to(0, bytes(32))
    f = EventFactory(seed=cid)
    events = f.setup()
    events.append(f._event("ledger", "InstrumentRegistered", id=SOL_PERP, underlying=b"SOL".ljust(32, b"\0"),
                           kind=3, strike=0, expiry=0, right=0))
    events.append(f.spot("SOL", 150 * MICRO, GENESIS))
    book.apply_block(1, b"\x01" * 32, events, DECIMALS)
    return book, f


def build_books(extra: list[Event] | None = None, drop_request: int | None = None) -> list[ChainBook]:
    (a, fa), (b, fb) = _book(31337, "a"), _book(31338, "b")
    ev_a = [fa.deposit(HOUSE, USDC, 10**7 * MICRO), fa.deposit(A, USDC, 20_000 * MICRO),
            fa.deposit(D, USDC, 1_000 * MICRO), fa.deposit(C, USDC, 100 * MICRO),
            *fa.trade(HOUSE, A, 1, 10**8, 100_000 * MICRO), *fa.trade(D, HOUSE, 1, 10**8, 100_000 * MICRO),
            *fa.trade(E, C, SOL_PERP, 3 * 10**8, 150 * MICRO),
            fa.request(A, USDC, 10_000 * MICRO, 4, GENESIS)]
    ev_b = [fb.deposit(A, USDC, 10_000 * MICRO), fb.deposit(B, USDC, 500 * MICRO), fb.deposit(B, WETH, 2 * 10**18),
            fb.request(B, WETH, 10**18, 3, GENESIS), fb.request(A, USDC, 10_000 * MICRO, 4, GENESIS)]
    if drop_request is not None:
        ev_b.append(fb.cancel(drop_request))
    a.apply_block(2, b"\x02" * 32, [*ev_a, *(extra or [])], DECIMALS)
    b.apply_block(2, b"\x02" * 32, ev_b, DECIMALS)
    return [a, b]


def build_state(books: list[ChainBook] | None = None) -> MarginState:
    inputs = merge_books(books or build_books(), AccountIndex(), 31337, GENESIS + 3600)
    return compute_epoch_state(inputs, RRA1, network_id=7, keyset_id=1, epoch=EPOCH, params_hash=PARAMS_HASH)


def fingerprint(state: MarginState) -> str:
    h = hashlib.sha256(state.digest + state.root)
    for record in state.get_account_leaves():
        h.update(record.encoded + record.detail)
    for w in state.withdrawals:
        h.update(repr(w).encode())
    return h.hexdigest()


def leaf(state: MarginState, account: str):  # type: ignore[no-untyped-def]
    return state.leaves[state.get_index(account)]


def test_leaves_values_match_closed_forms() -> None:
    state = build_state()
    assert sorted(x.account.lower() for x in state.leaves) == sorted([A, B, D, HOUSE])
    a, b, d = leaf(state, A), leaf(state, B), leaf(state, D)
    # long 1 BTC perp: worst regular move -PSR = -15% -> 15,000 USD; MM 0.8 of it
    assert (a.im, a.mm) == (15_000 * MICRO, 12_000 * MICRO)
    # 30,000 USDC + cash -100,000 + perp marked at 100,000 = 30,000; both open requests deducted: 10,000 < IM
    assert a.equity == 10_000 * MICRO and a.approved_withdrawals == ()
    # USDC 500 + 2 ETH at 3,000 with a 20% haircut; 1 ETH requested (deduction 2,400) and approved (IM 0)
    assert (b.equity, b.im, b.mm, b.flags) == ((500 + 4_800 - 2_400) * MICRO, 0, 0, 0)
    assert state.details[state.get_index(B)].equity_before_withdrawals == (500 + 4_800) * MICRO
    assert d.flags == FLAG_LIQUIDATABLE and d.equity == 1_000 * MICRO < d.mm
    detail = state.details[state.get_index(A)]
    assert detail.worst_scenario == 0 and detail.risk_array[0] == -15_000 * MICRO  # k = -3, vol down
    assert detail.collateral_by_chain == ((31337, "USDC", 20_000 * MICRO), (31338, "USDC", 10_000 * MICRO))


def test_two_open_requests_on_two_chains_are_deducted_together_and_refused() -> None:
    state = build_state()
    decisions = {(w.chain_id, w.request_id): w for w in state.withdrawals}
    assert not decisions[(31337, 1)].approved and "< IM" in decisions[(31337, 1)].reason
    assert decisions[(31338, 1)].approved and decisions[(31338, 1)].deduction == 2_400 * MICRO  # B's ETH
    assert not decisions[(31338, 2)].approved
    # without the request on chain B, the one on chain A fits: 30,000 - 10,000 >= 15,000
    alone = build_state(build_books(drop_request=2))
    a = leaf(alone, A)
    assert a.approved_withdrawals == (withdrawal_id(31337, CONTRACTS["vault"][:-2] + "aa", 1),)
    assert a.equity == 20_000 * MICRO >= a.im


def test_root_proofs_and_digest() -> None:
    state = build_state()
    assert state.leaf_count == 4
    for x in state.leaves:
        assert verify_proof(state.root, compute_leaf_hash(x), state.get_proof(x.account))
    assert state.get_proof(A.upper().replace("0X", "0x")) == state.get_proof(A)
    inputs_digest = compute_inputs_digest(state.pins)
    assert state.digest == compute_state_digest(7, 1, EPOCH, inputs_digest, PARAMS_HASH, state.root, 4)
    records = state.get_account_leaves()
    assert [r.index for r in records] == [0, 1, 2, 3]
    with pytest.raises(KeyError):
        state.get_proof(C)


def test_invalid_accounts_get_no_leaf_and_are_reported() -> None:
    state = build_state()
    by_account = {f.account.lower(): f for f in state.failures}
    assert set(by_account) == {C, E}
    assert "SOL" in by_account[C].reason or "SOL" in by_account[C].field


def test_invalid_params_hash_is_refused() -> None:
    inputs = merge_books(build_books(), AccountIndex(), 31337, GENESIS + 3600)
    with pytest.raises(InvalidLeafValue, match="params_hash"):
        compute_epoch_state(inputs, RRA1, network_id=7, keyset_id=1, epoch=EPOCH, params_hash=b"\x00" * 31)


def test_state_is_identical_across_runs_and_processes() -> None:
    local = fingerprint(build_state())
    assert fingerprint(build_state()) == local
    code = "from tests.state.test_state import build_state, fingerprint; print(fingerprint(build_state()))"
    for seed in ("0", "12345"):
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                             env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"}, check=True)
        assert out.stdout.strip() == local


def test_invalid_unrepresentable_amount_fails_one_account_not_the_epoch() -> None:
    books = build_books()
    f = EventFactory(seed=31337)
    f.seq = dict(books[0].sequences)
    huge = address(66)
    books[0].apply_block(3, b"\x03" * 32, [f.deposit(huge, USDC, 10**20)], DECIMALS)  # 1e14 USD > int64 micro
    state = build_state(books)
    assert huge not in {x.account.lower() for x in state.leaves}
    failure = next(x for x in state.failures if x.account.lower() == huge)
    assert "int64" in failure.reason
    assert list(state.leaves) == list(build_state().leaves)
