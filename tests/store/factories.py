"""Deterministic signed states and leaves for the store and API tests (records built by hand until
the state and crypto modules produce real ones; every field has the type and size of the real thing)."""

from __future__ import annotations

import hashlib
import json

from eth_abi import encode

from bridges.merkle import build_tree, make_keccak
from node.records import AccountLeaf, ChainPin, Evidence, SignedState


def h32(*parts: object) -> bytes:
    return hashlib.sha256(repr(parts).encode()).digest()


def make_account(i: int) -> bytes:
    return i.to_bytes(20, "big") if i else b"\x00" * 19 + b"\x01"


def make_leaf(epoch: int, index: int, account: bytes) -> AccountLeaf:
    equity = (index * 7_919 + epoch * 13) * 1_000_000 - 5_000_000_000
    im = (index % 97) * 10_000_000 + 1
    mm = im * 8 // 10
    flags = 1 if equity < mm else 0
    approved = (h32("wd", epoch, index),) if index % 5 == 0 else ()
    encoded = encode(["address", "int256", "uint256", "uint256", "uint256", "bytes32[]"],
                     ["0x" + account.hex(), equity, im, mm, flags, list(approved)])
    detail = json.dumps({
        "risk_array": [(-1) ** s * s * 1_000_000 for s in range(23)],
        "worst_scenario": 21,
        "collateral_by_chain": {"31337": 5_000_000 * index, "31338": 1_000_000},
        "health_bps": 0,
    }, sort_keys=True, separators=(",", ":")).encode()
    return AccountLeaf(epoch=epoch, index=index, account=account, equity=equity, im=im, mm=mm,
                       flags=flags, approved_withdrawals=approved, encoded=encoded, detail=detail)


def compute_root(leaves: list[AccountLeaf]) -> bytes:
    k = make_keccak()
    return build_tree([k(k(leaf.encoded)) for leaf in leaves]).root


def make_state(epoch: int, n_leaves: int, network_id: int = 7) -> tuple[SignedState, list[AccountLeaf]]:
    leaves = [make_leaf(epoch, i, make_account(i + 1)) for i in range(n_leaves)]
    pins = (ChainPin(31337, 100 + epoch, h32("b", 31337, epoch)), ChainPin(31338, 200 + epoch, h32("b", 31338, epoch)))
    state = SignedState(
        network_id=network_id, keyset_id=1, epoch=epoch, pins=pins, inputs_digest=h32("in", epoch),
        params_hash=h32("params"), root=compute_root(leaves), leaf_count=n_leaves, digest=h32("digest", epoch),
        signature=h32("sig", epoch) + h32("sig2", epoch)[:16], signers=(0, 1, 3),
    )
    return state, leaves


def make_evidence(epoch: int, signer: int) -> Evidence:
    return Evidence(kind="equivocation", epoch=epoch, signer_index=signer, first=h32("a", epoch, signer),
                    second=h32("b", epoch, signer), note="two partials")
