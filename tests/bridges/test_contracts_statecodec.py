"""bridges.statecodec against independent encodings (eth_abi), range checks naming the field.
(Parity with the deployed contracts is in test_contracts_registry.py and test_contracts_vault.py.)"""

from __future__ import annotations

import os

import pytest
from eth_abi import encode
from eth_abi.packed import encode_packed
from eth_hash.auto import keccak

from bridges.errors import InvalidLeafValue
from bridges.statecodec import (
    DST_ADMIN,
    DST_INPUTS,
    DST_STATE,
    LEAF_ABI_TYPES,
    MarginLeaf,
    compute_admin_digest,
    compute_inputs_digest,
    compute_leaf_hash,
    compute_leaf_hashes,
    compute_state_digest,
    encode_leaf,
    symbol_to_bytes32,
    withdrawal_id,
)

ACCOUNT = "0x" + "ab" * 20


@pytest.mark.parametrize("equity,ids", [(0, 0), (-1, 1), (2**255 - 1, 3), (-(2**255), 0)])
def test_leaf_encoding_equals_eth_abi(equity: int, ids: int) -> None:
    approved = tuple(os.urandom(32) for _ in range(ids))
    values = [ACCOUNT, equity, 12, 2**256 - 1, 1, list(approved)]
    assert encode_leaf(ACCOUNT, equity, 12, 2**256 - 1, 1, approved) == encode(list(LEAF_ABI_TYPES), values)
    leaf = MarginLeaf(ACCOUNT, equity, 12, 2**256 - 1, 1, approved)
    assert compute_leaf_hash(leaf) == keccak(keccak(encode(list(LEAF_ABI_TYPES), values)))
    assert compute_leaf_hashes([leaf, leaf]) == [compute_leaf_hash(leaf)] * 2


def test_digests_equal_packed_encodings() -> None:
    inputs, params, root, key = os.urandom(32), os.urandom(32), os.urandom(32), os.urandom(256)
    assert compute_state_digest(7, 3, 9, inputs, params, root, 5) == keccak(encode_packed(
        ["bytes32", "uint64", "uint32", "uint64", "bytes32", "bytes32", "bytes32", "uint64"],
        [DST_STATE, 7, 3, 9, inputs, params, root, 5]))
    registry = "0x" + "cd" * 20
    assert compute_admin_digest(7, 31337, registry, 2, 4, key) == keccak(encode_packed(
        ["bytes32", "uint64", "uint256", "address", "uint64", "uint32", "bytes"],
        [DST_ADMIN, 7, 31337, registry, 2, 4, key]))
    assert withdrawal_id(31337, registry, 5) == keccak(encode(["uint256", "address", "uint256"], [31337, registry, 5]))
    assert len({DST_STATE, DST_ADMIN, DST_INPUTS}) == 3


def test_inputs_digest_sorted_by_chain_id() -> None:
    h1, h2 = os.urandom(32), os.urandom(32)
    digest = compute_inputs_digest([(31338, 20, h2), (31337, 10, h1)])
    assert digest == compute_inputs_digest([(31337, 10, h1), (31338, 20, h2)])
    assert digest == keccak(DST_INPUTS + (2).to_bytes(4, "big") + (31337).to_bytes(8, "big") + (10).to_bytes(8, "big")
                            + h1 + (31338).to_bytes(8, "big") + (20).to_bytes(8, "big") + h2)
    assert digest != compute_inputs_digest([(31337, 11, h1), (31338, 20, h2)])


def test_invalid_values_name_the_field() -> None:
    with pytest.raises(InvalidLeafValue, match="equity"):
        MarginLeaf(ACCOUNT, 2**255, 0, 0)
    with pytest.raises(InvalidLeafValue, match="im"):
        MarginLeaf(ACCOUNT, 0, -1, 0)
    with pytest.raises(InvalidLeafValue, match="account"):
        MarginLeaf("0x1234", 0, 0, 0)
    with pytest.raises(InvalidLeafValue, match=r"approved_withdrawals\[0\]"):
        MarginLeaf(ACCOUNT, 0, 0, 0, 0, (b"x",))
    with pytest.raises(InvalidLeafValue, match="keyset_id"):
        compute_state_digest(1, 2**32, 1, bytes(32), bytes(32), bytes(32), 1)
    with pytest.raises(InvalidLeafValue, match="root"):
        compute_state_digest(1, 1, 1, bytes(32), bytes(32), bytes(31), 1)
    with pytest.raises(InvalidLeafValue, match="chain_id"):
        compute_inputs_digest([(1, 1, bytes(32)), (1, 2, bytes(32))])
    with pytest.raises(InvalidLeafValue, match="new_key"):
        compute_admin_digest(1, 1, ACCOUNT, 0, 1, bytes(96))
    with pytest.raises(InvalidLeafValue, match="symbol"):
        symbol_to_bytes32("")
    with pytest.raises(InvalidLeafValue, match="equity"):
        MarginLeaf(ACCOUNT, 1.5, 0, 0)  # type: ignore[arg-type]
