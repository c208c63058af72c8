"""The one definition of the margin-state wire format shared by the node and the contracts.

Defines the fixed-point scales, the leaf ABI types and their encoding, the leaf hash (OpenZeppelin
StandardMerkleTree: keccak256(keccak256(abi.encode(values)))), the inputs digest, the state digest
the validators sign, the admin (group-key rotation) digest, the per-epoch state commitment and the
withdrawal ids. Every byte here must equal what `MarginStateRegistry.sol` / `CollateralVault.sol`
compute (tests compare against the deployed contracts' views).

Invariants: only integers cross this boundary (never a float); every integer is range-checked
against its ABI type and a violation raises `InvalidLeafValue` naming the field; every digest starts
with its own domain tag. Persists nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from eth_utils import to_checksum_address

from bridges.errors import InvalidLeafValue
from bridges.merkle import keccak256 as keccak
from bridges.merkle import keccak256_batch, run_chunks

# --- fixed-point conventions (shared by every part of the node) ---
USD_SCALE = 10**6  # USD amounts and prices (spot, forward, strike, asset price): micro-USD
PRICE_SCALE = USD_SCALE
QTY_SCALE = 10**8  # signed position quantities
VOL_SCALE = 10**6  # implied vols

# --- leaf ---
LEAF_ABI_TYPES = ("address", "int256", "uint256", "uint256", "uint256", "bytes32[]")
FLAG_LIQUIDATABLE = 1
MAX_APPROVED_WITHDRAWALS = 64

# --- domain tags (bytes32, right-padded with zeros as Solidity's `bytes32 constant = "..."`) ---
DST_STATE = b"CLEARING-V1-STATE".ljust(32, b"\0")
DST_ADMIN = b"CLEARING-V1-ADMIN-ROTATE-KEY".ljust(32, b"\0")
DST_INPUTS = b"CLEARING-V1-INPUTS".ljust(32, b"\0")

EIP2537_G2_SIZE = 256
_UINT256_MAX = 2**256 - 1
_INT256_MIN = -(2**255)
_INT256_MAX = 2**255 - 1
_LEAF_HEAD = (6 * 32).to_bytes(32, "big")  # offset of the dynamic array in abi.encode(leaf values)


@dataclass(frozen=True)
class MarginLeaf:
    """One account's entry in a signed state; amounts in micro-USD, ids are 32-byte withdrawal ids."""

    account: str
    equity: int
    im: int
    mm: int
    flags: int = 0
    approved_withdrawals: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        validate_leaf(self)

    def is_liquidatable(self) -> bool:
        return bool(self.flags & FLAG_LIQUIDATABLE)

    def to_abi_tuple(self) -> tuple[str, int, int, int, int, list[bytes]]:
        """The `MarginLeaf` struct argument for contract calls (web3.py wants a checksummed address)."""
        return (to_checksum_address(self.account), self.equity, self.im, self.mm, self.flags, list(self.approved_withdrawals))


def _validate_uint(value: int, bits: int, field: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**bits:
        raise InvalidLeafValue(f"{field}: {value!r} is not a uint{bits}")


def _validate_bytes32(value: bytes, field: str) -> None:
    if not isinstance(value, bytes) or len(value) != 32:
        raise InvalidLeafValue(f"{field}: expected 32 bytes, got {value!r}")


def parse_address(address: str, field: str = "account") -> bytes:
    """20 raw bytes of a 0x-prefixed hex address (checksum not enforced)."""
    if not isinstance(address, str) or len(address) != 42 or not address.startswith("0x"):
        raise InvalidLeafValue(f"{field}: {address!r} is not a 0x-prefixed 20-byte address")
    try:
        return bytes.fromhex(address[2:])
    except ValueError as exc:
        raise InvalidLeafValue(f"{field}: {address!r} is not hex") from exc


def validate_leaf(leaf: MarginLeaf) -> None:
    parse_address(leaf.account)
    if not isinstance(leaf.equity, int) or not _INT256_MIN <= leaf.equity <= _INT256_MAX:
        raise InvalidLeafValue(f"equity: {leaf.equity!r} is not an int256")
    _validate_uint(leaf.im, 256, "im")
    _validate_uint(leaf.mm, 256, "mm")
    _validate_uint(leaf.flags, 256, "flags")
    if len(leaf.approved_withdrawals) > MAX_APPROVED_WITHDRAWALS:
        raise InvalidLeafValue(f"approved_withdrawals: {len(leaf.approved_withdrawals)} ids, "
                               f"at most {MAX_APPROVED_WITHDRAWALS}")
    for i, wid in enumerate(leaf.approved_withdrawals):
        _validate_bytes32(wid, f"approved_withdrawals[{i}]")


def encode_leaf(account: str, equity: int, im: int, mm: int, flags: int,
                approved_withdrawals: Sequence[bytes]) -> bytes:
    """abi.encode(account, equity, im, mm, flags, approvedWithdrawals), validated."""
    return encode_margin_leaf(MarginLeaf(account, equity, im, mm, flags, tuple(approved_withdrawals)))


def encode_margin_leaf(leaf: MarginLeaf) -> bytes:
    """abi.encode of an already validated leaf (hand-rolled: the layout is fixed, eth_abi is slow)."""
    ids = leaf.approved_withdrawals
    return b"".join((
        bytes(12), bytes.fromhex(leaf.account[2:]),
        (leaf.equity % 2**256).to_bytes(32, "big"),
        leaf.im.to_bytes(32, "big"),
        leaf.mm.to_bytes(32, "big"),
        leaf.flags.to_bytes(32, "big"),
        _LEAF_HEAD,
        len(ids).to_bytes(32, "big"),
        *ids,
    ))


def compute_leaf_hash(leaf: MarginLeaf) -> bytes:
    """StandardMerkleTree leaf hash: keccak256(bytes.concat(keccak256(abi.encode(values))))."""
    return keccak(keccak(encode_margin_leaf(leaf)))


def compute_inputs_digest(pins: Sequence[tuple[int, int, bytes]]) -> bytes:
    """keccak256(DST_INPUTS || uint32 count || (uint64 chainId || uint64 blockNumber || bytes32 hash)*),
    pins sorted by chain id; duplicate chain ids are refused."""
    ordered = sorted(pins, key=lambda p: p[0])
    parts = [DST_INPUTS, len(ordered).to_bytes(4, "big")]
    seen: set[int] = set()
    for chain_id, block_number, block_hash in ordered:
        _validate_uint(chain_id, 64, "pins.chain_id")
        _validate_uint(block_number, 64, "pins.block_number")
        _validate_bytes32(block_hash, "pins.block_hash")
        if chain_id in seen:
            raise InvalidLeafValue(f"pins.chain_id: {chain_id} appears twice")
        seen.add(chain_id)
        parts += [chain_id.to_bytes(8, "big"), block_number.to_bytes(8, "big"), block_hash]
    return keccak(b"".join(parts))


def compute_state_digest(network_id: int, keyset_id: int, epoch: int, inputs_digest: bytes,
                         params_hash: bytes, root: bytes, leaf_count: int) -> bytes:
    """keccak256(abi.encodePacked(DST_STATE, uint64 networkId, uint32 keysetId, uint64 epoch,
    inputsDigest, paramsHash, root, uint64 leafCount)): the message the validators sign."""
    _validate_uint(network_id, 64, "network_id")
    _validate_uint(keyset_id, 32, "keyset_id")
    _validate_uint(epoch, 64, "epoch")
    _validate_uint(leaf_count, 64, "leaf_count")
    _validate_bytes32(inputs_digest, "inputs_digest")
    _validate_bytes32(params_hash, "params_hash")
    _validate_bytes32(root, "root")
    return keccak(b"".join((
        DST_STATE, network_id.to_bytes(8, "big"), keyset_id.to_bytes(4, "big"), epoch.to_bytes(8, "big"),
        inputs_digest, params_hash, root, leaf_count.to_bytes(8, "big"),
    )))


def compute_admin_digest(network_id: int, chain_id: int, registry: str, nonce: int,
                         new_keyset_id: int, new_key: bytes) -> bytes:
    """keccak256(abi.encodePacked(DST_ADMIN, uint64 networkId, uint256 chainId, address registry,
    uint64 nonce, uint32 newKeysetId, bytes newKey)): the group-key rotation message (one chain,
    one registry, one nonce)."""
    _validate_uint(network_id, 64, "network_id")
    _validate_uint(chain_id, 256, "chain_id")
    _validate_uint(nonce, 64, "nonce")
    _validate_uint(new_keyset_id, 32, "new_keyset_id")
    if len(new_key) != EIP2537_G2_SIZE:
        raise InvalidLeafValue(f"new_key: expected {EIP2537_G2_SIZE} bytes (EIP-2537 G2), got {len(new_key)}")
    return keccak(b"".join((
        DST_ADMIN, network_id.to_bytes(8, "big"), chain_id.to_bytes(32, "big"),
        parse_address(registry, "registry"), nonce.to_bytes(8, "big"), new_keyset_id.to_bytes(4, "big"),
        new_key,
    )))


def compute_state_commitment(epoch: int, root: bytes) -> bytes:
    """keccak256(abi.encode(uint64 epoch, bytes32 root)): what the registry's ring keeps per epoch."""
    _validate_uint(epoch, 64, "epoch")
    _validate_bytes32(root, "root")
    return keccak(epoch.to_bytes(32, "big") + root)


def withdrawal_id(chain_id: int, vault: str, request_id: int) -> bytes:
    """keccak256(abi.encode(uint256 chainId, address vault, uint256 requestId)): approval id in a leaf."""
    _validate_uint(chain_id, 256, "chain_id")
    _validate_uint(request_id, 256, "request_id")
    return keccak(chain_id.to_bytes(32, "big") + bytes(12) + parse_address(vault, "vault")
                  + request_id.to_bytes(32, "big"))


def symbol_to_bytes32(symbol: str) -> bytes:
    """bytes32 of an ASCII symbol ("BTC" -> b"BTC" + 29 zero bytes), as Solidity's bytes32 literal."""
    raw = symbol.encode("ascii")
    if not 0 < len(raw) <= 32 or b"\0" in raw:
        raise InvalidLeafValue(f"symbol: {symbol!r} must be 1..32 ASCII characters")
    return raw.ljust(32, b"\0")


def bytes32_to_symbol(value: bytes) -> str:
    _validate_bytes32(value, "symbol")
    return value.rstrip(b"\0").decode("ascii")


def compute_leaf_hashes(leaves: Sequence[MarginLeaf]) -> list[bytes]:
    """Leaf hashes of many leaf objects (same values as `compute_leaf_hash`)."""
    return [keccak(keccak(encode_margin_leaf(leaf))) for leaf in leaves]


# --- columnar leaves: the same encoding and hash, for arrays of many accounts ---
LEAF_FIXED_SIZE = 7 * 32  # abi.encode of a leaf with no approved withdrawals


def _validate_column(values: np.ndarray, n: int, field: str, non_negative: bool) -> None:
    if not isinstance(values, np.ndarray) or values.dtype != np.int64 or values.shape != (n,):
        raise InvalidLeafValue(f"{field}: expected an int64 array of shape ({n},)")
    if non_negative and n and values.min() < 0:
        row = int(np.argmax(values < 0))
        raise InvalidLeafValue(f"{field}[{row}]: {int(values[row])} is not a uint256")


def validate_leaf_columns(accounts: np.ndarray, equity: np.ndarray, im: np.ndarray, mm: np.ndarray,
                          flags: np.ndarray, approvals: Mapping[int, Sequence[bytes]]) -> None:
    """Shapes, dtypes and ranges of columnar leaves; `InvalidLeafValue` names the field (and row)."""
    if not isinstance(accounts, np.ndarray) or accounts.dtype != np.uint8 or accounts.ndim != 2 \
            or accounts.shape[1] != 20:
        raise InvalidLeafValue("accounts: expected an (n, 20) uint8 array")
    n = accounts.shape[0]
    _validate_column(equity, n, "equity", False)
    _validate_column(im, n, "im", True)
    _validate_column(mm, n, "mm", True)
    _validate_column(flags, n, "flags", True)
    for row, ids in approvals.items():
        if not isinstance(row, int | np.integer) or isinstance(row, bool) or not 0 <= row < n:
            raise InvalidLeafValue(f"approvals: row {row!r} outside 0..{n - 1}")
        if len(ids) > MAX_APPROVED_WITHDRAWALS:
            raise InvalidLeafValue(f"approvals[{row}]: {len(ids)} ids, at most {MAX_APPROVED_WITHDRAWALS}")
        for i, wid in enumerate(ids):
            _validate_bytes32(wid, f"approvals[{row}][{i}]")


def encode_leaf_columns(accounts: np.ndarray, equity: np.ndarray, im: np.ndarray, mm: np.ndarray,
                        flags: np.ndarray) -> np.ndarray:
    """(n, 224) uint8: abi.encode of every row as a leaf with no approved withdrawals (validated input):
    each amount is the low 8 bytes of its 32-byte word, big-endian; negative equity fills the high
    24 bytes with 0xff (two's complement)."""
    n = accounts.shape[0]
    out = np.zeros((n, LEAF_FIXED_SIZE), dtype=np.uint8)
    out[:, 12:32] = accounts
    words = out.view(">u8")  # (n, 28): ABI word k is words[:, 4k:4k + 4]
    words[:, 7] = equity.view(np.uint64)  # the low 64 bits of the two's complement
    words[:, 4:7] = np.where(equity < 0, np.uint64(2**64 - 1), np.uint64(0))[:, None]
    words[:, 11] = im.view(np.uint64)
    words[:, 15] = mm.view(np.uint64)
    words[:, 19] = flags.view(np.uint64)
    words[:, 23] = 6 * 32  # offset of the (empty) approvals array; its length word stays zero
    return out


def compute_leaf_hashes_columnar(accounts: np.ndarray, equity: np.ndarray, im: np.ndarray, mm: np.ndarray,
                                 flags: np.ndarray, approvals: Mapping[int, Sequence[bytes]]) -> np.ndarray:
    """(n, 32) uint8 leaf hashes of columnar leaves, equal to `compute_leaf_hash` row by row: int64
    amounts (im, mm, flags >= 0) and `approvals` (row -> approved withdrawal ids, rows without ids
    omitted). Rows without approvals are encoded and hashed in bulk; the few with approvals one by one."""
    validate_leaf_columns(accounts, equity, im, mm, flags, approvals)
    hashes = np.empty((len(accounts), 32), dtype=np.uint8)

    def chunk(lo: int, hi: int) -> None:  # encode and hash twice, one cache-sized chunk of rows at a time
        encoded = encode_leaf_columns(accounts[lo:hi], equity[lo:hi], im[lo:hi], mm[lo:hi], flags[lo:hi])
        inner = keccak256_batch(encoded, hi - lo)
        hashes[lo:hi] = np.frombuffer(keccak256_batch(inner, hi - lo), dtype=np.uint8).reshape(hi - lo, 32)

    run_chunks(chunk, len(accounts))
    rows = sorted(row for row, ids in approvals.items() if ids)
    if rows:
        for row in rows:
            leaf = MarginLeaf("0x" + accounts[row].tobytes().hex(), int(equity[row]), int(im[row]), int(mm[row]),
                              int(flags[row]), tuple(approvals[row]))
            hashes[row] = np.frombuffer(compute_leaf_hash(leaf), dtype=np.uint8)
    return hashes
