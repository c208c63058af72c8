"""The key sets a validator knows: members and public shares per key-set id, and its own shares.

A network keeps ONE group public key for its whole life; resharing (`node.crypto.reshare`) moves it
to a new key set (new members, threshold and share polynomial) whose id is the old one + 1. Which key
set signs an epoch is decided by governance at the epoch's pinned home-chain block, so the node may
need several sets at once: the old one until the activation epoch, the new one from it on, and a
pending one (members known from governance, public shares not yet) while the reshare runs.

`KeyRing` holds, per key-set id, a `ValidatorSet` (operator addresses; public shares empty while
pending) and, where this operator holds one, its 0-based index and secret share, plus the key set's
public commitments (needed to deal in the next reshare). Invariants: every set has the same network
id and group key; a set's members never change once known (a conflicting update is refused with
`KeyRingError`); a share is only added when it matches its public share; once a newer key set has
signed a state, the shares of older sets are retired (dropped). Persists nothing (the node writes
new shares to encrypted keystores and erases retired ones, see `node.validator`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from node.consensus.validation import ValidatorSet


class KeyRingError(ValueError):
    """A key set or share that conflicts with what the key ring already holds."""


@dataclass(frozen=True)
class OwnShare:
    index: int  # 0-based position of this operator in the key set's members (share index index + 1)
    share_sk: int


class KeyRing:
    """Key sets by id (see the module docstring); used from the trio loop only."""

    def __init__(self, genesis: ValidatorSet, address: bytes) -> None:
        self.network_id = genesis.network_id
        self.group_key = genesis.group_key
        self.address = address  # this node's operator address (20 bytes)
        self.genesis_keyset_id = genesis.keyset_id
        self.sets: dict[int, ValidatorSet] = {genesis.keyset_id: genesis}
        self.shares: dict[int, OwnShare] = {}
        self.keysets: dict[int, Any] = {}  # keyset id -> node.crypto.dkg.KeySet (commitments)

    # --- queries ---------------------------------------------------------------------------------

    def get_set(self, keyset_id: int) -> ValidatorSet | None:
        return self.sets.get(keyset_id)

    def get_operators(self, keyset_id: int) -> tuple[bytes, ...] | None:
        vset = self.sets.get(keyset_id)
        return None if vset is None else vset.operator_addresses

    def get_index(self, keyset_id: int) -> int | None:
        """This operator's 0-based position in the set's members, if it is one."""
        vset = self.sets.get(keyset_id)
        if vset is None or self.address not in vset.operator_addresses:
            return None
        return vset.operator_addresses.index(self.address)

    def get_share(self, keyset_id: int) -> OwnShare | None:
        return self.shares.get(keyset_id)

    def get_sealing_keyset(self) -> int | None:
        """The newest key set this operator is a member of (heartbeats and requests are sealed under it)."""
        ids = [k for k in self.sets if self.get_index(k) is not None]
        with_share = [k for k in ids if k in self.shares]
        if with_share:
            return max(with_share)
        return max(ids) if ids else None

    def get_latest_keyset_id(self) -> int:
        return max(self.sets)

    def describe(self) -> dict[str, dict[str, Any]]:
        """For status.json: per key-set id, own index, size, threshold and whether a share is held."""
        return {str(k): {"index": self.get_index(k), "n": v.n, "threshold": v.threshold,
                         "has_share": k in self.shares, "pending": not v.public_shares}
                for k, v in sorted(self.sets.items())}

    def describe_public(self) -> dict[str, dict[str, Any]]:
        """For status.json: the public data of every complete key set (what ListValidators serves)."""
        return {str(k): {"threshold": v.threshold, "index": self.get_index(k),
                         "operators": ["0x" + a.hex() for a in v.operator_addresses],
                         "public_shares": [p.hex() for p in v.public_shares]}
                for k, v in sorted(self.sets.items()) if v.public_shares}

    # --- updates ---------------------------------------------------------------------------------

    def add_members(self, keyset_id: int, members: tuple[bytes, ...], threshold: int) -> bool:
        """Record a key set's members (from governance); True if it was new. Public shares come later."""
        known = self.sets.get(keyset_id)
        if known is not None:
            if known.operator_addresses != members or known.threshold != threshold:
                raise KeyRingError(f"keyset {keyset_id}: members/threshold differ from the ones already known")
            return False
        self.sets[keyset_id] = ValidatorSet(self.network_id, keyset_id, members, (), threshold, self.group_key)
        return True

    def add_keyset(self, keyset: Any, members: tuple[bytes, ...]) -> ValidatorSet:
        """Complete a key set with its public commitments (a `node.crypto.dkg.KeySet`)."""
        if keyset.group_public_key != self.group_key:
            raise KeyRingError(f"keyset {keyset.keyset_id}: group key differs from the network's")
        n = len(members)
        shares = tuple(keyset.get_public_share(i + 1) for i in range(n))
        vset = ValidatorSet(self.network_id, keyset.keyset_id, members, shares,
                            keyset.threshold, self.group_key)
        known = self.sets.get(keyset.keyset_id)
        if known is not None and (known.operator_addresses != members or known.threshold != keyset.threshold
                                  or (known.public_shares and known.public_shares != vset.public_shares)):
            raise KeyRingError(f"keyset {keyset.keyset_id}: differs from the key set already known")
        self.sets[keyset.keyset_id] = vset
        self.keysets[keyset.keyset_id] = keyset
        return vset

    def add_share(self, keyset_id: int, index: int, share_sk: int) -> None:
        """Hold this operator's share of a complete key set; refused unless it matches the public share."""
        from node.crypto import bls

        vset = self.sets.get(keyset_id)
        if vset is None or not vset.public_shares:
            raise KeyRingError(f"keyset {keyset_id}: public shares unknown, cannot hold a share of it")
        if not 0 <= index < vset.n or vset.operator_addresses[index] != self.address:
            raise KeyRingError(f"keyset {keyset_id}: index {index} is not this operator's position")
        if bls.public_key(share_sk) != vset.public_shares[index]:
            raise KeyRingError(f"keyset {keyset_id}: share does not match public share {index + 1}")
        self.shares[keyset_id] = OwnShare(index, share_sk)

    def retire_shares(self, below: int) -> list[int]:
        """Forget this operator's shares of key sets older than `below` (a newer one has signed); the
        sets' public data stays (old states and partials still verify). Returns the retired ids."""
        retired = sorted(k for k in self.shares if k < below)
        for keyset_id in retired:
            del self.shares[keyset_id]
        return retired

