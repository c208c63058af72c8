"""Converters at the API boundary: margin numbers from leaves, both detail formats, int64 bounds."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from node.api.convert import OutOfRange, compute_health_bps, leaf_to_margin
from tests.store.factories import make_leaf


def test_health_in_basis_points() -> None:
    assert compute_health_bps(150, 100) == (15_000, False)
    assert compute_health_bps(-1, 3) == (-3_334, False)  # floor, as the scale documents
    assert compute_health_bps(5, 0) == (0, True)


def test_detail_formats_and_missing_detail() -> None:
    leaf = make_leaf(1, 3, b"\x05" * 20)
    empty = leaf_to_margin(replace(leaf, detail=b""))
    assert list(empty.risk_array_micro_usd) == [] and empty.worst_scenario == -1 and list(empty.collateral) == []
    garbage = leaf_to_margin(replace(leaf, detail=b"\xff{not json"))
    assert garbage.equity_micro_usd == leaf.equity and list(garbage.collateral) == []
    as_dict = json.dumps({"collateral_by_chain": {"31338": 7, "5": 9}, "worst_scenario": None}).encode()
    m = leaf_to_margin(replace(leaf, detail=as_dict))
    assert [(c.chain_id, c.value_micro_usd) for c in m.collateral] == [(5, 9), (31338, 7)]
    assert m.worst_scenario == -1


def test_invalid_amounts_beyond_int64_are_refused_not_wrapped() -> None:
    leaf = make_leaf(1, 3, b"\x05" * 20)
    with pytest.raises(OutOfRange, match="equity"):
        leaf_to_margin(replace(leaf, equity=2**63))
    with pytest.raises(OutOfRange, match="free_collateral"):
        leaf_to_margin(replace(leaf, equity=-(2**63) + 1, im=10))
