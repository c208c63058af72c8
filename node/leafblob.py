"""The on-disk form of an epoch's `EpochLeaves`: row groups of columnar blobs (used by `node.store`).

An epoch's rows are cut into groups of `GROUP_ROWS` consecutive rows; each group is one blob:
a header (`HEADER`: magic, rows, risk width S, collateral rows m, JSON length) followed by the
group's slice of every column as little-endian numpy bytes, each section padded to 8 bytes, in the
order of `_layout`, then one JSON document with the group's sparse parts (the asset table, the
approvals and the verbatim records, keyed by the row inside the group). The store keys each group by
its first account, so one account is found by one index lookup plus a binary search in one blob,
and a whole epoch is the concatenation of its groups in order.

Invariants: `decode_epoch(encode_groups(x))` equals x column by column (and so record by record);
a blob that does not parse raises `LeafBlobError`. Persists nothing itself.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from node.leaves import CollateralRows, EpochLeaves, LeafDetail, as_account_keys
from node.records import AccountLeaf

GROUP_ROWS = 512
MAGIC = b"LVG1"
HEADER = struct.Struct("<4sIIII")  # magic, rows, risk width, collateral rows, JSON bytes


class LeafBlobError(ValueError):
    """A stored leaf group is not in this module's format."""


def _layout(g: int, width: int, m: int) -> list[tuple[str, str, tuple[int, ...]]]:
    return [("accounts", "u1", (g, 20)), ("equity", "<i8", (g,)), ("im", "<i8", (g,)), ("mm", "<i8", (g,)),
            ("flags", "<i8", (g,)), ("equity_before", "<i8", (g,)), ("risk", "<i8", (g, width)),
            ("worst", "<i4", (g,)), ("coll_offsets", "<i8", (g + 1,)), ("chain_id", "<i8", (m,)),
            ("asset", "<i4", (m,)), ("units_lo", "<u8", (m,)), ("units_hi", "<u8", (m,))]


def _pad(size: int) -> int:
    return -size % 8


@dataclass(frozen=True)
class GroupRow:
    """One group as the store writes it."""

    first_account: bytes
    first_row: int
    data: bytes


def _record_to_json(leaf: AccountLeaf) -> dict[str, Any]:
    return {"equity": str(leaf.equity), "im": str(leaf.im), "mm": str(leaf.mm), "flags": str(leaf.flags),
            "approved": [w.hex() for w in leaf.approved_withdrawals], "encoded": leaf.encoded.hex(),
            "detail": leaf.detail.hex()}


def _record_from_json(epoch: int, row: int, account: bytes, doc: dict[str, Any]) -> AccountLeaf:
    return AccountLeaf(epoch=epoch, index=row, account=account, equity=int(doc["equity"]), im=int(doc["im"]),
                       mm=int(doc["mm"]), flags=int(doc["flags"]),
                       approved_withdrawals=tuple(bytes.fromhex(w) for w in doc["approved"]),
                       encoded=bytes.fromhex(doc["encoded"]), detail=bytes.fromhex(doc["detail"]))


def _by_group(rows: Mapping[int, Any], group_rows: int) -> dict[int, dict[str, Any]]:
    """group start -> {row inside the group (as a JSON key): value}."""
    out: dict[int, dict[str, Any]] = {}
    for row in sorted(rows):
        lo = row - row % group_rows
        out.setdefault(lo, {})[str(row - lo)] = rows[row]
    return out


def encode_groups(leaves: EpochLeaves, group_rows: int = GROUP_ROWS) -> list[GroupRow]:
    n, d = len(leaves), leaves.detail
    coll = d.collateral
    approvals = _by_group({r: [w.hex() for w in ids] for r, ids in leaves.approvals.items()}, group_rows)
    verbatim = _by_group({r: _record_to_json(rec) for r, rec in leaves.verbatim.items()}, group_rows)
    out = []
    for lo in range(0, n, group_rows):
        hi = min(n, lo + group_rows)
        c0, c1 = int(coll.offsets[lo]), int(coll.offsets[hi])
        columns = {"accounts": leaves.accounts[lo:hi], "equity": leaves.equity[lo:hi], "im": leaves.im[lo:hi],
                   "mm": leaves.mm[lo:hi], "flags": leaves.flags[lo:hi], "equity_before": d.equity_before[lo:hi],
                   "risk": d.risk[lo:hi], "worst": d.worst[lo:hi], "coll_offsets": coll.offsets[lo:hi + 1] - c0,
                   "chain_id": coll.chain_id[c0:c1], "asset": coll.asset[c0:c1], "units_lo": coll.units_lo[c0:c1],
                   "units_hi": coll.units_hi[c0:c1]}
        sparse = {"assets": list(coll.assets), "approvals": approvals.get(lo, {}), "verbatim": verbatim.get(lo, {})}
        doc = json.dumps(sparse, sort_keys=True, separators=(",", ":")).encode()
        out.append(GroupRow(leaves.accounts[lo].tobytes(), lo, _pack(hi - lo, d.risk.shape[1], c1 - c0, columns, doc)))
    return out


def _pack(g: int, width: int, m: int, columns: Mapping[str, np.ndarray], doc: bytes) -> bytes:
    """Header, sections and JSON written once into one buffer (one copy of every column)."""
    layout = _layout(g, width, m)
    sizes = [math.prod(shape) * np.dtype(dtype).itemsize for _n, dtype, shape in layout]
    total = HEADER.size + sum(size + _pad(size) for size in sizes) + len(doc)
    buf = bytearray(total)
    HEADER.pack_into(buf, 0, MAGIC, g, width, m, len(doc))
    pos = HEADER.size
    for (name, dtype, shape), size in zip(layout, sizes, strict=True):
        np.frombuffer(buf, dtype=dtype, count=math.prod(shape), offset=pos).reshape(shape)[...] = columns[name]
        pos += size + _pad(size)
    buf[pos:] = doc
    return bytes(buf)


@dataclass(frozen=True)
class Group:
    """A decoded group: column views into the blob plus the sparse JSON part."""

    first_row: int
    columns: Mapping[str, np.ndarray]
    sparse: Mapping[str, Any]


def decode_group(first_row: int, data: bytes) -> Group:
    if len(data) < HEADER.size:
        raise LeafBlobError("leaf group: shorter than its header")
    magic, g, width, m, doc_len = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise LeafBlobError(f"leaf group: magic {magic!r}, expected {MAGIC!r}")
    pos, columns = HEADER.size, {}
    for name, dtype, shape in _layout(g, width, m):
        count = math.prod(shape)
        size = count * np.dtype(dtype).itemsize
        if pos + size > len(data):
            raise LeafBlobError(f"leaf group: section {name} runs past the end")
        columns[name] = np.frombuffer(data, dtype=dtype, count=count, offset=pos).reshape(shape)
        pos += size + _pad(size)
    if pos + doc_len != len(data):
        raise LeafBlobError("leaf group: length does not match its header")
    try:
        sparse = json.loads(data[pos:])
    except ValueError as exc:
        raise LeafBlobError("leaf group: sparse part is not JSON") from exc
    return Group(first_row, MappingProxyType(columns), sparse)


def _sparse_rows(groups: Sequence[Group], epoch: int, accounts: np.ndarray
                 ) -> tuple[dict[int, tuple[bytes, ...]], dict[int, AccountLeaf]]:
    approvals, verbatim = {}, {}
    base = 0
    for grp in groups:
        for key, ids in grp.sparse["approvals"].items():
            approvals[base + int(key)] = tuple(bytes.fromhex(w) for w in ids)
        for key, doc in grp.sparse["verbatim"].items():
            row = base + int(key)
            verbatim[row] = _record_from_json(epoch, row, accounts[row].tobytes(), doc)
        base += len(grp.columns["accounts"])
    return approvals, verbatim


def decode_epoch(epoch: int, groups: Sequence[Group]) -> EpochLeaves:
    """The leaves of consecutive groups (an epoch's, in row order: the first row of each group must
    follow the previous group's rows), numbered from 0."""
    expected = groups[0].first_row if groups else 0
    for g in groups:
        if g.first_row != expected:
            raise LeafBlobError(f"leaf group: starts at row {g.first_row}, expected {expected}")
        expected += len(g.columns["accounts"])
    def cat(name: str, empty_shape: tuple[int, ...], dtype: str) -> np.ndarray:
        if not groups:
            return np.zeros(empty_shape, dtype=dtype)
        return np.concatenate([g.columns[name] for g in groups]).astype(dtype, copy=False)

    width = groups[0].columns["risk"].shape[1] if groups else 0
    assets = sorted({a for g in groups for a in g.sparse["assets"]})
    index = {a: i for i, a in enumerate(assets)}
    asset = np.concatenate([np.array([index[a] for a in g.sparse["assets"]] or [0], dtype=np.int32)[g.columns["asset"]]
                            for g in groups]) if groups else np.zeros(0, dtype=np.int32)
    bases = np.cumsum([0] + [int(g.columns["coll_offsets"][-1]) for g in groups])
    offsets = np.concatenate([[0], *(g.columns["coll_offsets"][1:] + base for g, base in zip(groups, bases, strict=False))])
    accounts = cat("accounts", (0, 20), "u1")
    approvals, verbatim = _sparse_rows(groups, epoch, accounts)
    collateral = CollateralRows(offsets=offsets.astype(np.int64), chain_id=cat("chain_id", (0,), "i8"),
                                asset=asset.astype(np.int32), units_lo=cat("units_lo", (0,), "u8"),
                                units_hi=cat("units_hi", (0,), "u8"), assets=tuple(assets))
    detail = LeafDetail(equity_before=cat("equity_before", (0,), "i8"), risk=cat("risk", (0, width), "i8"),
                        worst=cat("worst", (0,), "i4"), collateral=collateral)
    return EpochLeaves(epoch=epoch, accounts=accounts, equity=cat("equity", (0,), "i8"), im=cat("im", (0,), "i8"),
                       mm=cat("mm", (0,), "i8"), flags=cat("flags", (0,), "i8"),
                       approvals=MappingProxyType(approvals), detail=detail, verbatim=MappingProxyType(verbatim))


def find_in_group(epoch: int, group: Group, account: bytes) -> AccountLeaf | None:
    """One account's record from its group (binary search), or None."""
    accounts = group.columns["accounts"]
    if len(account) != 20 or not len(accounts):
        return None
    keys = as_account_keys(accounts)
    local = int(np.searchsorted(keys, np.frombuffer(account, dtype="S20")[0]))
    if local >= len(keys) or accounts[local].tobytes() != account:
        return None
    return dataclasses.replace(decode_epoch(epoch, [group])[local], index=group.first_row + local)
