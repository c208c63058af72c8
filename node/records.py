"""Domain records the node persists and serves: signed margin states, account leaves, evidence.

Every field that is hashed or signed is an integer or bytes (never a float). Records are immutable;
the store keeps them exactly as given. `AccountLeaf.detail` is informational (risk array, worst
scenario, per-chain collateral) and is NOT part of the signed leaf; `AccountLeaf.encoded` is the exact
ABI encoding that was hashed into the Merkle tree.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ChainPin:
    """One chain's pinned input block for an epoch."""

    chain_id: int
    number: int
    block_hash: bytes  # 32 bytes


@dataclass(frozen=True)
class SignedState:
    """A margin state signed by at least `threshold` validators (group BLS signature, min-sig)."""

    network_id: int
    keyset_id: int
    epoch: int
    pins: tuple[ChainPin, ...]
    inputs_digest: bytes  # 32
    params_hash: bytes  # 32
    root: bytes  # 32, Merkle root of the leaves
    leaf_count: int
    digest: bytes  # 32, the signed message
    signature: bytes  # 48, compressed G1 group signature
    signers: tuple[int, ...]  # validator indices whose partials were combined


@dataclass(frozen=True)
class AccountLeaf:
    """One account's signed leaf in an epoch's Merkle tree, plus unsigned detail for the API."""

    epoch: int
    index: int  # position in the sorted leaf list
    account: bytes  # 20-byte EVM address
    equity: int  # micro-USD, signed
    im: int  # micro-USD
    mm: int  # micro-USD
    flags: int  # bit 0: liquidatable
    approved_withdrawals: tuple[bytes, ...]  # 32-byte withdrawal ids approved in this state
    encoded: bytes  # the ABI-encoded leaf values that were hashed
    detail: bytes = b""  # canonical JSON: risk array, worst scenario, per-chain collateral (not signed)


@dataclass(frozen=True)
class Evidence:
    """Signed proof of misbehaviour, e.g. two different partials from one signer for one epoch."""

    kind: str  # "equivocation", ...
    epoch: int
    signer_index: int
    first: bytes  # the first signed envelope, as received
    second: bytes  # the conflicting signed envelope, as received
    note: str = field(default="")
