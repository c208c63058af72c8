"""The signing format of a margin state, as an integrator re-derives it (docs/integration/
verify-margin-state.md): leaf decoding and hashing, Merkle proofs, the inputs digest, the state
digest, the parameters hash, the BLS group-signature check and the EIP-2537 encodings.

Written from the documented formulas with third-party libraries only (eth-hash, eth-abi, eth-utils,
py-arkworks-bls12381): nothing of the node is imported, so a protocol can vendor this package alone.
Every check returns a bool or raises `VerificationError` naming what failed. Persists nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eth_abi import decode
from eth_hash.auto import keccak
from eth_utils import to_checksum_address
from py_arkworks_bls12381 import GT, G1Point, G2Point

# Domain tags: ASCII, the 32-byte ones right-padded with zero bytes (Solidity `bytes32 x = "..."`).
DST_STATE = b"CLEARING-V1-STATE".ljust(32, b"\0")
DST_INPUTS = b"CLEARING-V1-INPUTS".ljust(32, b"\0")
DST_PARAMS = b"CLEARING-RISK-PARAMS-V1"  # 23 bytes, not padded
# RFC 9380 hash_to_curve suite BLS12381G1_XMD:SHA-256_SSWU_RO_ under this domain separation tag.
BLS_DST = b"CLEARING-V1-BLS-SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_"
LEAF_ABI_TYPES = ("address", "int256", "uint256", "uint256", "uint256", "bytes32[]")
FLAG_LIQUIDATABLE = 1
USD_SCALE = 10**6  # micro-USD per USD
EIP2537_PAD = bytes(16)


class VerificationError(Exception):
    """A served margin report or signed state does not verify; the message names the check."""


@dataclass(frozen=True)
class LeafValues:
    """The six values of a margin leaf (the Solidity struct `MarginLeaf`), account EIP-55 checksummed."""

    account: str
    equity: int
    im: int
    mm: int
    flags: int
    approved_withdrawals: tuple[bytes, ...]

    @property
    def liquidatable(self) -> bool:
        return bool(self.flags & FLAG_LIQUIDATABLE)

    def as_abi_tuple(self) -> tuple[str, int, int, int, int, list[bytes]]:
        """The struct argument of a contract call (web3.py, ethers-style tuple)."""
        return (self.account, self.equity, self.im, self.mm, self.flags, list(self.approved_withdrawals))


def decode_leaf(encoded: bytes) -> LeafValues:
    """The leaf values of `abi.encode(account, equity, im, mm, flags, approvedWithdrawals)`."""
    try:
        account, equity, im, mm, flags, ids = decode(list(LEAF_ABI_TYPES), bytes(encoded))
    except Exception as exc:  # eth_abi raises several decoding errors
        raise VerificationError(f"leaf: not an ABI-encoded margin leaf ({exc})") from exc
    return LeafValues(to_checksum_address(account), equity, im, mm, flags, tuple(bytes(i) for i in ids))


def leaf_hash(encoded: bytes) -> bytes:
    """OpenZeppelin StandardMerkleTree leaf: keccak256(keccak256(abi.encode(values)))."""
    return keccak(keccak(bytes(encoded)))


def process_proof(leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root reached from a leaf hash by sorted-pair keccak (OpenZeppelin MerkleProof)."""
    node = leaf
    for sibling in proof:
        a, b = sorted((node, bytes(sibling)))
        node = keccak(a + b)
    return node


def inputs_digest(pins: Sequence[tuple[int, int, bytes]]) -> bytes:
    """keccak256(DST_INPUTS || uint32 n || (uint64 chain_id || uint64 block_number || bytes32 block_hash)
    for each pin in increasing chain id), integers big-endian."""
    ordered = sorted(pins, key=lambda p: p[0])
    body = b"".join(c.to_bytes(8, "big") + n.to_bytes(8, "big") + bytes(h) for c, n, h in ordered)
    return keccak(DST_INPUTS + len(ordered).to_bytes(4, "big") + body)


def state_digest(network_id: int, keyset_id: int, epoch: int, inputs: bytes, params_hash: bytes, root: bytes,
                 leaf_count: int) -> bytes:
    """keccak256(DST_STATE || uint64 network_id || uint32 keyset_id || uint64 epoch || inputs_digest ||
    params_hash || root || uint64 leaf_count): the message the group signs (abi.encodePacked)."""
    return keccak(DST_STATE + network_id.to_bytes(8, "big") + keyset_id.to_bytes(4, "big")
                  + epoch.to_bytes(8, "big") + bytes(inputs) + bytes(params_hash) + bytes(root)
                  + leaf_count.to_bytes(8, "big"))


def params_hash(encoded_params: bytes) -> bytes:
    """keccak256("CLEARING-RISK-PARAMS-V1" || encoded parameter set)."""
    return keccak(DST_PARAMS + bytes(encoded_params))


def verify_bls(group_public_key: bytes, message: bytes, signature: bytes) -> bool:
    """BLS min-sig check e(sig, g2) == e(H(message), pk): 48-byte compressed G1 signature, 96-byte
    compressed G2 key, H = hash_to_curve with BLS_DST. False for any invalid point or encoding."""
    try:
        sig = G1Point.from_compressed_bytes(bytes(signature))
        pk = G2Point.from_compressed_bytes(bytes(group_public_key))
    except (ValueError, TypeError):
        return False
    if sig == G1Point.identity() or pk == G2Point.identity():
        return False
    return bool(GT.pairing_check([sig, -G1Point.hash_to_curve(bytes(message), BLS_DST)], [G2Point(), pk]))


def _pad(xy: bytes) -> bytes:
    return b"".join(EIP2537_PAD + xy[i:i + 48] for i in range(0, len(xy), 48))


def _unpad(data: bytes, size: int, what: str) -> bytes:
    if len(data) != size or any(data[i:i + 16] != EIP2537_PAD for i in range(0, size, 64)):
        raise VerificationError(f"{what}: not a {size}-byte EIP-2537 encoding")
    return b"".join(data[i + 16:i + 64] for i in range(0, size, 64))


def g1_to_eip2537(compressed: bytes) -> bytes:
    """48-byte compressed G1 (a signature) -> 128-byte EIP-2537 x || y, each 64 bytes (16 zero + 48)."""
    return _pad(G1Point.from_compressed_bytes(bytes(compressed)).to_xy_bytes_be())


def g2_to_eip2537(compressed: bytes) -> bytes:
    """96-byte compressed G2 (a key) -> 256-byte EIP-2537 x.c0 || x.c1 || y.c0 || y.c1."""
    return _pad(G2Point.from_compressed_bytes(bytes(compressed)).to_xy_bytes_be())


def eip2537_to_g2(data: bytes) -> bytes:
    """256-byte EIP-2537 G2 (the registry's `groupPublicKey()`) -> 96-byte compressed, subgroup-checked."""
    try:
        point = G2Point.from_xy_bytes_be(_unpad(bytes(data), 256, "group key"))
    except ValueError as exc:
        raise VerificationError(f"group key: not a G2 point ({exc})") from exc
    if not point.is_in_subgroup() or point == G2Point.identity():
        raise VerificationError("group key: not in the prime-order subgroup")
    return point.to_compressed_bytes()
