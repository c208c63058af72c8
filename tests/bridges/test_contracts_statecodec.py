"""bridges.statecodec against independent encodings (eth_abi), range checks naming the field; the
columnar (batch) leaf hashes against the per-leaf ones and the deployed registry's `hashLeaf` view.
(The other contract parity checks are in test_contracts_registry.py and test_contracts_vault.py.)"""

from __future__ import annotations

import os
import random

import numpy as np
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
    compute_leaf_hashes_columnar,
    compute_state_digest,
    encode_leaf,
    symbol_to_bytes32,
    withdrawal_id,
)
from tests.bridges.conftest import ChainEnv

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


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def make_columns(n: int, seed: int) -> tuple[np.ndarray, ...]:
    """Random sorted accounts and amounts covering zero, negative and extreme int64 equity."""
    rng = np.random.default_rng(seed)
    accounts = np.unique(rng.integers(0, 256, size=(n, 20), dtype=np.uint8), axis=0)
    n = len(accounts)
    equity = rng.integers(INT64_MIN, INT64_MAX, size=n, dtype=np.int64, endpoint=True)
    equity[: min(n, 6)] = [0, -1, 1, INT64_MIN, INT64_MAX, -(10**12)][: min(n, 6)]
    im = rng.integers(0, INT64_MAX, size=n, dtype=np.int64, endpoint=True)
    mm = im // 2
    flags = rng.integers(0, 4, size=n, dtype=np.int64)
    if n > 2:
        im[1], mm[2], flags[0] = INT64_MAX, 0, INT64_MAX
    return accounts, equity, im, mm, flags


def make_leaf_objects(accounts: np.ndarray, equity: np.ndarray, im: np.ndarray, mm: np.ndarray, flags: np.ndarray,
                    approvals: dict[int, tuple[bytes, ...]]) -> list[MarginLeaf]:
    return [MarginLeaf("0x" + accounts[i].tobytes().hex(), int(equity[i]), int(im[i]), int(mm[i]), int(flags[i]),
                       approvals.get(i, ())) for i in range(len(accounts))]


@pytest.mark.parametrize("n,seed", [(0, 1), (1, 2), (7, 3), (500, 4), (20_000, 5)])
def test_columnar_leaf_hashes_equal_per_leaf(n: int, seed: int) -> None:
    columns = make_columns(n, seed)
    rnd = random.Random(seed)
    n = len(columns[0])
    approvals = {row: tuple(rnd.randbytes(32) for _ in range(rnd.randint(1, 4)))
                 for row in rnd.sample(range(n), min(n, 5))}
    approvals.update({row: () for row in rnd.sample(range(n), min(n, 2)) if row not in approvals})  # empty = none
    leaves = make_leaf_objects(*columns, approvals)
    got = compute_leaf_hashes_columnar(*columns, approvals)
    assert got.shape == (n, 32)
    assert [row.tobytes() for row in got] == compute_leaf_hashes(leaves)
    spot = [0, n - 1, *approvals][:12] if n else []
    assert all(got[i].tobytes() == keccak(keccak(encode(list(LEAF_ABI_TYPES), [
        leaves[i].account, leaves[i].equity, leaves[i].im, leaves[i].mm, leaves[i].flags,
        list(leaves[i].approved_withdrawals)]))) for i in spot)


def test_invalid_leaf_columns_name_the_field() -> None:
    accounts, equity, im, mm, flags = make_columns(4, 9)
    bad_im = im.copy()
    bad_im[2] = -5
    with pytest.raises(InvalidLeafValue, match=r"im\[2\]"):
        compute_leaf_hashes_columnar(accounts, equity, bad_im, mm, flags, {})
    with pytest.raises(InvalidLeafValue, match="flags"):
        compute_leaf_hashes_columnar(accounts, equity, im, mm, flags.astype(np.int32), {})
    with pytest.raises(InvalidLeafValue, match="mm"):
        compute_leaf_hashes_columnar(accounts, equity, im, mm[:2], flags, {})
    with pytest.raises(InvalidLeafValue, match="accounts"):
        compute_leaf_hashes_columnar(accounts[:, :19], equity, im, mm, flags, {})
    with pytest.raises(InvalidLeafValue, match="approvals"):
        compute_leaf_hashes_columnar(accounts, equity, im, mm, flags, {4: (bytes(32),)})
    with pytest.raises(InvalidLeafValue, match="approvals"):
        compute_leaf_hashes_columnar(accounts, equity, im, mm, flags, {True: (bytes(32),)})
    numpy_key = compute_leaf_hashes_columnar(accounts, equity, im, mm, flags, {np.int64(2): (bytes(32),)})
    assert np.array_equal(numpy_key, compute_leaf_hashes_columnar(accounts, equity, im, mm, flags, {2: (bytes(32),)}))
    with pytest.raises(InvalidLeafValue, match=r"approvals\[1\]\[0\]"):
        compute_leaf_hashes_columnar(accounts, equity, im, mm, flags, {1: (b"short",)})
    with pytest.raises(InvalidLeafValue, match=r"approvals\[1\]"):
        compute_leaf_hashes_columnar(accounts, equity, im, mm, flags, {1: (bytes(32),) * 65})


def test_columnar_leaf_hashes_equal_contract_view(chains: list[ChainEnv]) -> None:
    registry = chains[0].contract("MarginStateRegistry")
    columns = make_columns(12, 11)
    approvals = {3: (os.urandom(32),), 7: (os.urandom(32), os.urandom(32))}
    got = compute_leaf_hashes_columnar(*columns, approvals)
    for i, leaf in enumerate(make_leaf_objects(*columns, approvals)):
        assert registry.functions.hashLeaf(leaf.to_abi_tuple()).call() == got[i].tobytes()
