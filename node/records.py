"""Domain records the node persists and serves: signed margin states, account leaves, evidence.

Every field that is hashed or signed is an integer or bytes (never a float). Records are immutable;
the store keeps them exactly as given. `AccountLeaf.detail` is informational (risk array, worst
scenario, per-chain collateral: `AccountDetail` as canonical JSON) and is NOT part of the signed leaf;
`AccountLeaf.encoded` is the exact ABI encoding that was hashed into the Merkle tree. An epoch's
leaves travel as one columnar `node.leaves.EpochLeaves` (a sequence of `AccountLeaf` views).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


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
class AccountDetail:
    """Unsigned per-account detail for the gRPC API (micro-USD integers; collateral in token base units)."""

    account: str
    equity_before_withdrawals: int
    free_collateral: int  # leaf equity - IM
    risk_array: tuple[int, ...]  # joint P&L per scenario, micro-USD
    worst_scenario: int | None
    collateral_by_chain: tuple[tuple[int, str, int], ...]  # (chain id, asset, token base units)

    def to_json_bytes(self) -> bytes:
        return json.dumps({
            "account": self.account, "equity_before_withdrawals": self.equity_before_withdrawals,
            "free_collateral": self.free_collateral, "risk_array": list(self.risk_array),
            "worst_scenario": self.worst_scenario,
            "collateral_by_chain": [list(row) for row in self.collateral_by_chain],
        }, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json_bytes(cls, data: bytes) -> AccountDetail | None:
        """The detail `to_json_bytes` wrote, or None when `data` is anything else."""
        try:
            doc = json.loads(data)
        except ValueError:
            return None
        if not isinstance(doc, dict) or set(doc) != _DETAIL_KEYS:
            return None
        rows, risk, worst = doc["collateral_by_chain"], doc["risk_array"], doc["worst_scenario"]
        if not (isinstance(doc["account"], str) and _is_int(doc["equity_before_withdrawals"])
                and _is_int(doc["free_collateral"]) and isinstance(risk, list) and all(map(_is_int, risk))
                and (worst is None or _is_int(worst)) and isinstance(rows, list)
                and all(isinstance(r, list) and len(r) == 3 and _is_int(r[0]) and isinstance(r[1], str)
                        and _is_int(r[2]) for r in rows)):
            return None
        return cls(doc["account"], doc["equity_before_withdrawals"], doc["free_collateral"], tuple(risk), worst,
                   tuple((r[0], r[1], r[2]) for r in rows))


_DETAIL_KEYS = {"account", "equity_before_withdrawals", "free_collateral", "risk_array", "worst_scenario",
                "collateral_by_chain"}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Evidence:
    """Signed proof of misbehaviour, e.g. two different partials from one signer for one epoch."""

    kind: str  # "equivocation", ...
    epoch: int
    signer_index: int
    first: bytes  # the first signed envelope, as received
    second: bytes  # the conflicting signed envelope, as received
    note: str = field(default="")
