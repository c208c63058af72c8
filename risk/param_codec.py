"""The canonical tagged byte encoding under `risk.params.encode_params`: values, not field meanings.

A value is
- `0x01 || i64`: an integer;
- `0x02 || i64`: a fraction as `round(x * scale)`, scale 1e12 (`FIXED_SCALE`; the format-1 encoding of
  RRA-1-shaped sets uses `V1_FIXED_SCALE`, 1e9), x an exact multiple of 1/scale within int64;
- `0x03 || u32 len || utf-8`: a string;
- `0x04 || u32 count || values`: a list (order significant);
- `0x05 || u32 count || (u32 len || utf-8 key || value)*`: a map, keys strictly sorted by their UTF-8 bytes.
All integers are big-endian. `Reader.value` is the inverse and refuses anything that is not exactly of this
form (truncation, unknown tags, unsorted keys, nesting beyond `MAX_DEPTH`). Errors are `InvalidParams`
naming `encoding` (reading) or the field being written. Pure; nothing is persisted.
"""

from __future__ import annotations

import math
from typing import Any

from risk.errors import InvalidParams

FIXED_SCALE = 10**12
"""Fixed-point scale of every fractional parameter in the canonical encoding (1e-12 resolution)."""
V1_FIXED_SCALE = 10**9
"""Fixed-point scale of format 1 (the encoding before risk v2; RRA-1-shaped sets still use it)."""
INT64_MAX = (1 << 63) - 1
MAX_DEPTH = 4
T_INT, T_FIXED, T_STR, T_LIST, T_MAP = 1, 2, 3, 4, 5


def is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def check_fixed(field: str, x: object, scale: int = FIXED_SCALE) -> float:
    """`x` as a float if it is a finite exact multiple of 1/scale within int64, else `InvalidParams(field)`."""
    if not is_number(x):
        raise InvalidParams(field, f"expected a number, got {type(x).__name__}")
    try:
        value = float(x)  # type: ignore[arg-type]
    except OverflowError as exc:
        raise InvalidParams(field, "outside the float64 range") from exc
    if not math.isfinite(value):
        raise InvalidParams(field, "not finite")
    scaled = round(value * scale)
    if abs(scaled) > INT64_MAX or scaled / scale != value:
        raise InvalidParams(field, f"not an exact multiple of 1e-{len(str(scale)) - 1} within int64")
    return value


def is_fixed(x: float, scale: int) -> bool:
    """True when `x` is an exact multiple of 1/scale within int64 (`check_fixed` would accept it)."""
    scaled = round(x * scale)
    return abs(scaled) <= INT64_MAX and scaled / scale == x


def enc_str(s: str) -> bytes:
    raw = s.encode("utf-8")
    return len(raw).to_bytes(4, "big") + raw


def enc_string(s: str) -> bytes:
    return bytes([T_STR]) + enc_str(s)


def enc_int(n: int) -> bytes:
    return bytes([T_INT]) + n.to_bytes(8, "big", signed=True)


def enc_fixed(field: str, x: float, scale: int = FIXED_SCALE) -> bytes:
    return bytes([T_FIXED]) + round(check_fixed(field, x, scale) * scale).to_bytes(8, "big", signed=True)


def enc_map(items: list[tuple[str, bytes]]) -> bytes:
    items = sorted(items, key=lambda kv: kv[0].encode("utf-8"))
    body = b"".join(enc_str(k) + v for k, v in items)
    return bytes([T_MAP]) + len(items).to_bytes(4, "big") + body


def enc_list(values: list[bytes]) -> bytes:
    return bytes([T_LIST]) + len(values).to_bytes(4, "big") + b"".join(values)


class Reader:
    """Reads values from `data` starting at `pos`; fractions at `scale`."""

    def __init__(self, data: bytes, pos: int, scale: int = FIXED_SCALE) -> None:
        self.data, self.pos, self.scale = data, pos, scale

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise InvalidParams("encoding", "truncated")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def string(self) -> str:
        try:
            return self.take(self.u32()).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidParams("encoding", "invalid utf-8") from exc

    def value(self, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise InvalidParams("encoding", "nested too deeply")
        tag = self.take(1)[0]
        if tag == T_INT:
            return int.from_bytes(self.take(8), "big", signed=True)
        if tag == T_FIXED:
            return int.from_bytes(self.take(8), "big", signed=True) / self.scale
        if tag == T_STR:
            return self.string()
        if tag == T_LIST:
            return [self.value(depth + 1) for _ in range(self.u32())]
        if tag == T_MAP:
            out: dict[str, Any] = {}
            prev: bytes | None = None
            for _ in range(self.u32()):
                key = self.string()
                raw = key.encode("utf-8")
                if prev is not None and raw <= prev:
                    raise InvalidParams("encoding", "map keys not strictly sorted")
                prev = raw
                out[key] = self.value(depth + 1)
            return out
        raise InvalidParams("encoding", f"unknown tag {tag}")
