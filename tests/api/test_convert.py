"""Converters at the API boundary: margin numbers from leaves, the detail format, int64 bounds, EIP-55."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from node.api.convert import OutOfRange, compute_health_bps, format_address, leaf_to_margin
from node.pb.clearing.api.v1 import api_pb2
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
    m = leaf_to_margin(replace(leaf, detail=as_dict))  # not the state module's format: no rows
    assert list(m.collateral) == [] and m.worst_scenario == -1
    rows = json.dumps({"collateral_by_chain": [[5, "USDC", 9], [31338, "ETH", 10**18]]}).encode()
    m = leaf_to_margin(replace(leaf, detail=rows))
    assert [(c.chain_id, c.asset, c.amount) for c in m.collateral] == [(5, "USDC", "9"), (31338, "ETH", str(10**18))]
    assert "value_micro_usd" not in api_pb2.ChainCollateral.DESCRIPTOR.fields_by_name


def test_addresses_leave_checksummed() -> None:
    leaf = make_leaf(1, 3, bytes.fromhex("5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"))
    assert leaf_to_margin(leaf).account == "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # EIP-55 example
    assert format_address("0xfb6916095ca1df60bb79ce92ce3ea74c37c5d359") == "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"
    assert format_address("") == ""


def test_invalid_amounts_beyond_int64_are_refused_not_wrapped() -> None:
    leaf = make_leaf(1, 3, b"\x05" * 20)
    with pytest.raises(OutOfRange, match="equity"):
        leaf_to_margin(replace(leaf, equity=2**63))
    with pytest.raises(OutOfRange, match="free_collateral"):
        leaf_to_margin(replace(leaf, equity=-(2**63) + 1, im=10))
