"""Chain snapshots at pinned blocks on two real anvil chains, and their merge into one portfolio."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest

from bridges import deploy
from bridges.snapshot import (
    ChainSnapshot,
    merge_snapshots,
    read_chain_snapshot,
)
from bridges.statecodec import withdrawal_id
from node.crypto import bls
from tests.bridges.test_chain_support import (
    DAY,
    INSTR_CALL,
    INSTR_FUTURE,
    INSTR_PERP,
    USER_INDEX,
    get_sender,
    make_client,
    pin_all,
    running_chains,
    setup_clearing,
)

GROUP_KEY = bls.g2_to_eip2537(bls.public_key(424242))
USDC = 10**6
ETH = 10**18
QTY = 10**8


def build_two_chains(chains: list[Any]) -> tuple[list[Any], int]:
    expiry = int(time.time()) + 30 * DAY
    deployments = [setup_clearing(c, GROUP_KEY, expiry, home=(i == 0)) for i, c in enumerate(chains)]
    return deployments, expiry


def test_deposits_on_two_chains_merge_into_one_account() -> None:
    with running_chains(31337, 31338) as chains:
        (da, db), expiry = build_two_chains(chains)
        owner_a, owner_b = deploy.ChainSender(chains[0].rpc_url, deploy.get_dev_key(0)), \
            deploy.ChainSender(chains[1].rpc_url, deploy.get_dev_key(0))
        user_a, user_b = get_sender(chains[0], USER_INDEX), get_sender(chains[1], USER_INDEX)
        deploy.mint_and_deposit(owner_a, da, user_a, "USDC", 10_000 * USDC)
        deploy.mint_and_deposit(owner_b, db, user_b, "USDC", 2_500 * USDC)
        deploy.mint_and_deposit(owner_b, db, user_b, "ETH", ETH // 2)
        deploy.record_trade(owner_a, da, user_a.address, INSTR_CALL, -1 * QTY, 2_000 * USDC)
        deploy.record_trade(owner_b, db, user_b.address, INSTR_PERP, QTY // 2, 100_000 * USDC)
        deploy.record_trade(owner_b, db, user_b.address, INSTR_FUTURE, -QTY // 4, 100_400 * USDC)
        rid = deploy.request_withdrawal(user_b, db, "ETH", ETH // 4)
        clients = [make_client(c) for c in chains]
        epoch_time, pins = pin_all(chains, clients)
        # a deposit after the pin is not part of the epoch's inputs
        deploy.mint_and_deposit(owner_a, da, user_a, "USDC", 777 * USDC)
        snaps = [read_chain_snapshot(cl, d, p) for cl, d, p in zip(clients, (da, db), pins, strict=True)]
        for cl, p in zip(clients, pins, strict=True):
            cl.validate_pin(p)
        assert snaps[0].collateral == ((user_a.address, "USDC", 10_000 * USDC),)
        inputs = merge_snapshots(snaps, home_chain_id=31337, epoch_time=epoch_time)

        assert inputs.failures == ()
        assert [a.account for a in inputs.accounts] == [user_a.address]
        account = inputs.accounts[0]
        assert account.collateral == (("ETH", 0.5), ("USDC", 12_500.0))
        assert account.collateral_by_chain == ((31337, "USDC", 10_000 * USDC), (31338, "ETH", ETH // 2),
                                               (31338, "USDC", 2_500 * USDC))
        days = (expiry - epoch_time) / DAY
        kinds = {(p.instrument.kind, p.quantity) for p in account.positions}
        assert kinds == {("option", -1.0), ("perp", 0.5), ("future", -0.25)}
        call = next(p.instrument for p in account.positions if p.instrument.kind == "option")
        assert (call.strike, call.right, call.vol, call.days_to_expiry) == (110_000.0, "call", 0.52, days)
        assert inputs.market.spot == {"BTC": 100_000.0, "ETH": 3_000.0}
        assert inputs.market.forwards == {("BTC", days): 100_400.0}
        assert inputs.market.asset_prices == {"USDC": 1.0, "ETH": 3_000.0}
        assert [(w.chain_id, w.request_id, w.asset, w.units) for w in inputs.withdrawals] == [(31338, rid, "ETH", 0.25)]
        assert inputs.withdrawals[0].withdrawal_id == withdrawal_id(31338, db.vault, rid)
        assert tuple(p.chain_id for p in inputs.pins) == (31337, 31338)


def _with(snap: ChainSnapshot, **changes: Any) -> ChainSnapshot:
    return dataclasses.replace(snap, **changes)


@pytest.fixture(scope="module")
def base_snapshots() -> tuple[list[ChainSnapshot], int, str]:
    with running_chains(31337, 31338) as chains:
        (da, db), _expiry = build_two_chains(chains)
        owner_b = deploy.ChainSender(chains[1].rpc_url, deploy.get_dev_key(0))
        user_b = get_sender(chains[1], USER_INDEX)
        deploy.mint_and_deposit(owner_b, db, user_b, "USDC", 1_000 * USDC)
        deploy.record_trade(owner_b, db, user_b.address, INSTR_CALL, QTY, 2_000 * USDC)
        clients = [make_client(c) for c in chains]
        epoch_time, pins = pin_all(chains, clients)
        snaps = [read_chain_snapshot(cl, d, p) for cl, d, p in zip(clients, (da, db), pins, strict=True)]
        return snaps, epoch_time, user_b.address


def test_invalid_zero_spot_is_a_per_account_failure(base_snapshots: Any) -> None:
    (home, other), t, user = base_snapshots
    assert merge_snapshots([home, other], 31337, t).failures == ()
    bad = _with(home, spots=(("BTC", 0), ("ETH", 3_000 * USDC)))
    inputs = merge_snapshots([bad, other], 31337, t)
    assert inputs.accounts == ()
    (failure,) = inputs.failures
    assert failure.account == user and "oracle.spot.BTC" in failure.reason and "31337" in failure.reason


def test_invalid_missing_vol_names_chain_and_instrument(base_snapshots: Any) -> None:
    (home, other), t, _user = base_snapshots
    inputs = merge_snapshots([home, _with(other, vols=())], 31337, t)
    (failure,) = inputs.failures
    assert f"chain 31338 oracle.vol[{INSTR_CALL}]" in failure.reason
    assert failure.field == f"positions[31338:{INSTR_CALL}]"


def test_invalid_missing_forward_and_expired_instrument(base_snapshots: Any) -> None:
    (home, other), t, _user = base_snapshots
    (failure,) = merge_snapshots([_with(home, forwards=()), other], 31337, t).failures
    assert "no forward for BTC" in failure.reason
    expiry = other.instruments[INSTR_CALL - 1].expiry
    (failure,) = merge_snapshots([home, other], 31337, expiry).failures
    assert ".expiry" in failure.reason and "not after the epoch time" in failure.reason


def test_invalid_unpriced_collateral_and_unknown_instrument(base_snapshots: Any) -> None:
    (home, other), t, user = base_snapshots
    (failure,) = merge_snapshots([_with(home, asset_prices=(("ETH", 3_000 * USDC),)), other], 31337, t).failures
    assert failure.field == "collateral.USDC" and failure.account == user
    (failure,) = merge_snapshots([home, _with(other, instruments=())], 31337, t).failures
    assert "unknown instrument" in failure.reason


def test_invalid_merge_without_home_chain_or_with_duplicate_chain(base_snapshots: Any) -> None:
    from bridges.errors import InvalidChainValue

    (home, other), t, _user = base_snapshots
    with pytest.raises(InvalidChainValue, match="home_chain_id"):
        merge_snapshots([other], 31337, t)
    with pytest.raises(InvalidChainValue, match="two snapshots"):
        merge_snapshots([home, home], 31337, t)


def test_reorg_below_confirmation_depth_redoes_the_snapshot_at_the_new_canonical_block() -> None:
    """The pinned deposit block is replaced (deeper than `confirmations`) while the snapshot is read;
    the pin check catches it and the snapshot is read again at the new canonical block."""
    from bridges.anvil import rpc_call
    from tests.bridges.test_chain_support import mine_at

    with running_chains(31337) as (chain,):
        (d,), _expiry = build_two_chains([chain])
        owner = deploy.ChainSender(chain.rpc_url, deploy.get_dev_key(0))
        user = get_sender(chain, USER_INDEX)
        deploy.mint_and_deposit(owner, d, user, "USDC", 1_000 * USDC)
        t0 = int(str(rpc_call(chain.rpc_url, "eth_getBlockByNumber", ["latest", False])["timestamp"]), 16)  # type: ignore[index]
        snapshot_id = rpc_call(chain.rpc_url, "evm_snapshot")
        rpc_call(chain.rpc_url, "evm_setNextBlockTimestamp", [t0 + 10])
        user.transact("TestToken", d.get_token("USDC"), "approve", d.vault, 0)  # filler block at t0 + 10
        deploy.mint_and_deposit(owner, d, user, "USDC", 500 * USDC)  # fork blocks after t0 + 10
        for i in range(3):
            mine_at(chain, t0 + 100 + i)
        client = make_client(chain, confirmations=2)
        reads: list[ChainSnapshot] = []

        def read(pin: Any) -> ChainSnapshot:
            snap = read_chain_snapshot(client, d, pin)
            reads.append(snap)
            if len(reads) == 1:  # replace the fork: the second deposit never happened
                rpc_call(chain.rpc_url, "evm_revert", [snapshot_id])
                mine_at(chain, t0 + 20)
                for i in range(4):
                    mine_at(chain, t0 + 100 + i)
            return snap

        pin, snap = client.read_at_pin(lambda: client.pin_block(t0 + 50), read)
        assert len(reads) == 2
        assert reads[0].collateral == ((user.address, "USDC", 1_500 * USDC),)
        assert snap.collateral == ((user.address, "USDC", 1_000 * USDC),)
        assert snap.pin == pin and reads[0].pin.hash != pin.hash
        client.validate_pin(pin)


def test_invalid_stale_quotes_fail_the_accounts_that_need_them(base_snapshots: Any) -> None:
    (home, other), t, user = base_snapshots
    assert dict(home.quote_times).keys() >= {"spot.BTC", "asset.USDC"}
    assert all(t - 120 <= at <= t for _key, at in home.quote_times + other.quote_times)
    assert merge_snapshots([home, other], 31337, t, max_quote_age_s=10**6).failures == ()
    (failure,) = merge_snapshots([home, other], 31337, t + 1_000, max_quote_age_s=500).failures
    assert failure.account == user and "older than 500s" in failure.reason
    # only the vol of the other chain is stale: the failure names that chain's vol
    fresh_home = _with(home, quote_times=tuple((k, t + 1_000) for k, _at in home.quote_times))
    (failure,) = merge_snapshots([fresh_home, other], 31337, t + 1_000, max_quote_age_s=500).failures
    assert f"chain 31338 oracle.vol.{INSTR_CALL}" in failure.reason
