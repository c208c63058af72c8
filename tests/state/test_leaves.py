"""node.leaves.EpochLeaves: columnar leaves against the per-leaf records (encoding, hashes, tree, detail),
exact round trips of record lists (verbatim rows included), lookups, and refusals naming the field."""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

import numpy as np
import pytest

from bridges.errors import InvalidLeafValue
from bridges.merkle import build_tree, keccak256
from bridges.statecodec import compute_leaf_hash, encode_margin_leaf
from node.leaves import CollateralRows, EpochLeaves, LeafDetail
from node.records import AccountDetail
from node.state import MarginState, build_margin_state
from tests.state.test_state import build_state
from tests.store.factories import make_epoch_leaves, make_state


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 8, 1000])
def test_columns_equal_per_leaf_records(n: int) -> None:
    leaves = make_epoch_leaves(4, n, seed=n)
    records = list(leaves)
    assert [r.index for r in records] == list(range(len(leaves)))
    hashes = leaves.compute_leaf_hashes()
    for i, r in enumerate(records):
        margin_leaf = leaves.get_margin_leaf(i)
        assert r.encoded == encode_margin_leaf(margin_leaf)
        assert hashes[i].tobytes() == compute_leaf_hash(margin_leaf)
        assert AccountDetail.from_json_bytes(r.detail) == leaves.get_detail(i)
    assert leaves.tree.root == build_tree([compute_leaf_hash(leaves.get_margin_leaf(i))
                                           for i in range(len(leaves))]).root


def test_records_round_trip_through_columns_exactly() -> None:
    leaves = make_epoch_leaves(4, 600, seed=3)
    records = list(leaves)
    again = EpochLeaves.from_records(4, records)
    assert not again.verbatim and dict(again.approvals) == dict(leaves.approvals)
    assert list(again) == records
    assert np.array_equal(again.compute_leaf_hashes(), leaves.compute_leaf_hashes())
    assert np.array_equal(again.detail.risk, leaves.detail.risk)


def test_records_the_columns_cannot_hold_are_kept_verbatim() -> None:
    _state, records = make_state(2, 6)
    big = dataclasses.replace(records[1], equity=-(2**200), im=2**255 - 1)  # stale encoding and detail too
    garbage = dataclasses.replace(records[3], encoded=b"leaf", detail=b"")
    other_detail = dataclasses.replace(records[4], detail=b'{"collateral_by_chain":{"31337":5}}')
    given = [records[0], big, records[2], garbage, other_detail, records[5]]
    leaves = EpochLeaves.from_records(2, given)
    assert sorted(leaves.verbatim) == [1, 3, 4]
    assert list(leaves) == given
    assert leaves.get(big.account) == big and leaves.get(b"\xff" * 20) is None
    hashes = leaves.compute_leaf_hashes()
    assert [h.tobytes() for h in hashes] == [keccak256(keccak256(r.encoded)) for r in given]


def test_find_is_a_binary_search_over_byte_order() -> None:
    leaves = make_epoch_leaves(1, 3000, seed=9)
    for row in (0, 1, 777, len(leaves) - 1):
        account = leaves.accounts[row].tobytes()
        assert leaves.find(account) == row and leaves.get(account).index == row
    assert leaves.find(bytes(20)) is None and leaves.find(b"\xff" * 20) is None
    assert leaves.find(leaves.accounts[5].tobytes()[:19] + b"\x00") in (None, 5)
    assert leaves.find(b"short") is None


def test_state_from_arrays_equals_state_from_inputs() -> None:
    """`build_margin_state` over the pipeline's leaves rebuilt from their stored records gives the same root,
    digest, leaves and details."""
    state = build_state()
    again = build_margin_state(network_id=state.network_id, keyset_id=state.keyset_id, epoch=state.epoch,
                               pins=state.pins, params_hash=state.params_hash,
                               leaves=EpochLeaves.from_records(state.epoch, list(state.get_account_leaves())))
    assert isinstance(again, MarginState)
    assert (again.root, again.digest, again.leaf_count) == (state.root, state.digest, state.leaf_count)
    assert again.leaves == state.leaves and list(again.details) == list(state.details)


def test_invalid_columns_name_the_field() -> None:
    good = make_epoch_leaves(1, 10, seed=1)
    fields = {f.name: getattr(good, f.name) for f in dataclasses.fields(EpochLeaves)}

    def build(**changes: object) -> EpochLeaves:
        return EpochLeaves(**{**fields, **changes})  # type: ignore[arg-type]

    with pytest.raises(InvalidLeafValue, match=r"accounts\[1\]: not strictly ascending"):
        build(accounts=np.ascontiguousarray(good.accounts[::-1]))
    with pytest.raises(InvalidLeafValue, match=r"mm\[0\]"):
        build(mm=np.full(len(good), -1, dtype=np.int64))
    with pytest.raises(InvalidLeafValue, match="equity"):
        build(equity=good.equity.astype(np.float64))
    with pytest.raises(InvalidLeafValue, match="approvals"):
        build(approvals=MappingProxyType({99: (bytes(32),)}))
    with pytest.raises(InvalidLeafValue, match=r"detail\.risk"):
        build(detail=dataclasses.replace(good.detail, risk=good.detail.risk[:3]))
    with pytest.raises(InvalidLeafValue, match=r"detail\.collateral"):
        build(detail=dataclasses.replace(good.detail, collateral=CollateralRows.empty(3)))
    with pytest.raises(InvalidLeafValue, match="collateral_by_chain"):
        CollateralRows.from_tuples([((1, "ETH", 2**128),)])
    with pytest.raises(InvalidLeafValue, match="collateral_by_chain"):
        CollateralRows.from_tuples([((1, "ETH", -1),)])
    _state, records = make_state(3, 4)
    with pytest.raises(InvalidLeafValue, match=r"leaves\[2\]\.index"):
        EpochLeaves.from_records(3, [records[0], records[1], records[3]])
    with pytest.raises(InvalidLeafValue, match=r"leaves\[0\]\.epoch"):
        EpochLeaves.from_records(4, records)
    with pytest.raises(InvalidLeafValue, match="accounts"):
        EpochLeaves.from_records(3, [dataclasses.replace(records[1], index=0), dataclasses.replace(records[0], index=1)])


def test_detail_collateral_beyond_int64_round_trips() -> None:
    rows = [((31337, "ETH", 2**127 + 5), (31338, "USDC", 7)), (), ((1, "WBTC", 2**64),)]
    coll = CollateralRows.from_tuples(rows)
    assert [coll.get(i) for i in range(3)] == rows and coll.assets == ("ETH", "USDC", "WBTC")
    detail = LeafDetail(np.zeros(3, dtype=np.int64), np.zeros((3, 0), dtype=np.int64),
                        np.full(3, -1, dtype=np.int32), coll)
    assert detail.collateral.get(0)[0][2] == 2**127 + 5
