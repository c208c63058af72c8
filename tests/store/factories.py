"""Real signed margin states for the store and API tests: leaves ABI-encoded by `bridges.statecodec`,
the root from `bridges.merkle` (the chain's StandardMerkleTree), the state digest of
`compute_state_digest`, and a 3-of-4 BLS threshold signature combined from partials of a
deterministic test key set (`deal_trusted`, tests only), so every state verifies under the group key.

Everything is a pure function of its arguments (child processes rebuild identical records).
`detail` is the state module's `AccountDetail` JSON (risk array, worst scenario, per-chain
collateral in token base units), exactly what the node persists.
"""

from __future__ import annotations

import functools
import hashlib
import random
from types import MappingProxyType

import numpy as np

from bridges.merkle import build_tree, make_keccak
from bridges.statecodec import MarginLeaf, compute_inputs_digest, compute_state_digest, encode_margin_leaf
from node.crypto import threshold
from node.leaves import CollateralRows, EpochLeaves, LeafDetail
from node.records import AccountLeaf, ChainPin, Evidence, SignedState
from node.state import AccountDetail

N_VALIDATORS, THRESHOLD = 4, 3
SIGNERS = (0, 1, 3)  # validator indices; BLS share index = validator index + 1


def h32(*parts: object) -> bytes:
    return hashlib.sha256(repr(parts).encode()).digest()


@functools.cache
def get_test_keyset() -> tuple[bytes, dict[int, int], dict[int, bytes]]:
    """(group public key, shares by BLS index, public shares by BLS index) of the test key set."""
    return threshold.deal_trusted(N_VALIDATORS, THRESHOLD, b"clearing-tests")


def make_account(i: int) -> bytes:
    return i.to_bytes(20, "big") if i else b"\x00" * 19 + b"\x01"


def make_leaf(epoch: int, index: int, account: bytes) -> AccountLeaf:
    equity = (index * 7_919 + epoch * 13) * 1_000_000 - 5_000_000_000
    im = (index % 97) * 10_000_000 + 1
    mm = im * 8 // 10
    flags = 1 if equity < mm else 0
    approved = (h32("wd", epoch, index),) if index % 5 == 0 else ()
    encoded = encode_margin_leaf(MarginLeaf("0x" + account.hex(), equity, im, mm, flags, approved))
    detail = AccountDetail(
        account="0x" + account.hex(), equity_before_withdrawals=equity, free_collateral=equity - im,
        risk_array=tuple((-1) ** s * s * 1_000_000 for s in range(23)), worst_scenario=21,
        collateral_by_chain=((31337, "USDC", 5_000_000 * index), (31338, "ETH", 3 * 10**18 + index)),
    ).to_json_bytes()
    return AccountLeaf(epoch=epoch, index=index, account=account, equity=equity, im=im, mm=mm,
                       flags=flags, approved_withdrawals=approved, encoded=encoded, detail=detail)


def compute_root(leaves: list[AccountLeaf]) -> bytes:
    k = make_keccak()
    return build_tree([k(k(leaf.encoded)) for leaf in leaves]).root


def sign_digest(digest: bytes) -> bytes:
    _group, shares, _public = get_test_keyset()
    partials = {i + 1: threshold.partial_sign(shares[i + 1], digest) for i in SIGNERS}
    return threshold.combine(partials, THRESHOLD)


def make_state(epoch: int, n_leaves: int, network_id: int = 7) -> tuple[SignedState, list[AccountLeaf]]:
    leaves = [make_leaf(epoch, i, make_account(i + 1)) for i in range(n_leaves)]
    pins = (ChainPin(31337, 100 + epoch, h32("b", 31337, epoch)), ChainPin(31338, 200 + epoch, h32("b", 31338, epoch)))
    inputs = compute_inputs_digest([(p.chain_id, p.number, p.block_hash) for p in pins])
    params_hash, root, keyset_id = h32("params"), compute_root(leaves), 1
    digest = compute_state_digest(network_id, keyset_id, epoch, inputs, params_hash, root, n_leaves)
    state = SignedState(network_id=network_id, keyset_id=keyset_id, epoch=epoch, pins=pins, inputs_digest=inputs,
                        params_hash=params_hash, root=root, leaf_count=n_leaves, digest=digest,
                        signature=sign_digest(digest), signers=SIGNERS)
    return state, leaves


def make_epoch_leaves(epoch: int, n: int, seed: int = 0, scenarios: int = 23) -> EpochLeaves:
    """Random columnar leaves: extreme int64 amounts, approvals on some rows, 0-3 collateral rows per
    account with amounts beyond 2^64, accounts ending and starting with zero bytes."""
    rng = np.random.default_rng(seed)
    rnd = random.Random(seed)
    raw = rng.integers(0, 256, size=(n, 20), dtype=np.uint8)
    raw[: n // 4, -3:] = 0
    raw[n // 4: n // 2, :4] = 0
    accounts = np.unique(raw, axis=0)
    n = len(accounts)
    i64 = np.iinfo(np.int64)
    equity = rng.integers(i64.min, i64.max, size=n, dtype=np.int64, endpoint=True)
    equity[: min(n, 3)] = [0, i64.min, i64.max][: min(n, 3)]
    im = rng.integers(0, 10**15, size=n, dtype=np.int64)
    mm = im // 2
    flags = (equity < mm).astype(np.int64)
    approvals = {row: tuple(rnd.randbytes(32) for _ in range(rnd.randint(1, 3))) for row in rnd.sample(range(n), n // 50)}
    collateral = [tuple((31337 + k, rnd.choice(["USDC", "ETH", "WBTC"]), rnd.choice([0, 5, 10**19, 2**127 + 3]))
                        for k in range(rnd.randint(0, 3))) for _ in range(n)]
    detail = LeafDetail(equity_before=equity // 2, risk=rng.integers(-(10**12), 10**12, size=(n, scenarios), dtype=np.int64),
                        worst=rng.integers(-1, scenarios, size=n).astype(np.int32),
                        collateral=CollateralRows.from_tuples(collateral))
    return EpochLeaves(epoch=epoch, accounts=accounts, equity=equity, im=im, mm=mm, flags=flags,
                       approvals=MappingProxyType(approvals), detail=detail)


def make_evidence(epoch: int, signer: int) -> Evidence:
    return Evidence(kind="equivocation", epoch=epoch, signer_index=signer, first=h32("a", epoch, signer),
                    second=h32("b", epoch, signer), note="two partials")
