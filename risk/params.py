"""Versioned risk parameter sets (RRA-1 and successors): the immutable `RiskParams`, its canonical
byte encoding, validation and what-if overrides.

Invariants:
- `RiskParams` is frozen; mapping-like fields are tuples of `(key, value)` pairs sorted by key, so two
  equal parameter sets compare equal and encode to the same bytes (normalised in `__post_init__`).
- Every fractional value must be an exact multiple of 1e-9 (`FIXED_SCALE`); `encode_params` refuses
  anything else, so `decode_params(encode_params(p)) == p` holds for every encodable `p`.
- `validate_params` is the single admission check (governance calls it to reject proposals, the
  what-if `params` override goes through it): every field has an explicit range (`INT_BOUNDS`,
  `FIXED_BOUNDS`, `KEYED_BOUNDS`, `MAX_UNDERLYINGS`, `MAX_ASSETS`, `MAX_NAME_CHARS`), so no admitted
  set makes the engine's work unbounded (at most 65 scenarios, 10,000 tail samples).
Nothing is persisted here; governance hashes the bytes of `encode_params`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from risk.errors import InvalidParams

FIXED_SCALE = 10**9
"""Fixed-point scale of every fractional parameter in the canonical encoding (1e-9 resolution)."""

MAGIC = b"RRAPARAM"
FORMAT_VERSION = 1
MAX_ENCODED_BYTES = 1 << 20
"""Bound on the size of an encoded parameter set accepted by `decode_params`."""

_INT64_MAX = (1 << 63) - 1

Pairs = tuple[tuple[str, float], ...]
Groups = tuple[tuple[tuple[str, ...], float], ...]


@dataclass(frozen=True)
class RiskParams:
    """Every parameter named by RISK_SPEC.md; see the spec section in each comment."""

    version: int
    underlyings: tuple[str, ...]
    price_scan_range: Pairs  # section 2: PSR_u
    sigma_ref: Pairs  # section 5: sigma_ref per underlying
    price_steps: int  # section 2: regular k in -n..n, move k * PSR / n
    vol_up_coefficient: float  # up multiplier 1 + c_up * w
    vol_down_coefficient: float  # down multiplier max(0, 1 - c_down * w)
    w_exponent_short: float  # p when DTE <= threshold
    w_exponent_long: float  # p when DTE > threshold
    w_dte_threshold: float  # w = (threshold / max(DTE, 1)) ^ p
    look_ahead_days: float  # DTE' = max(DTE - look_ahead, 0)
    extreme_k: int  # extreme scenarios at k = -extreme_k and +extreme_k
    extreme_weight: float  # P&L weight of the extreme scenarios
    correlation_groups: Groups  # section 3: (members, credit); an underlying in at most one group
    short_option_minimum_rate: float  # section 3: SOM rate on |q| * S_u of short options
    maintenance_factor: float  # MM = factor * R
    haircuts: Pairs  # section 4: haircut per collateral asset
    default_haircut: float  # haircut of an asset not listed
    liquidation_penalty_rate: float  # LQ-1 penalty per |q| * S_u
    es_samples: int  # section 5: N
    es_horizon_days: float  # h
    es_confidence: float  # 0.99

    def __post_init__(self) -> None:
        object.__setattr__(self, "underlyings", tuple(sorted(self.underlyings)))
        for name in ("price_scan_range", "sigma_ref", "haircuts"):
            object.__setattr__(self, name, _sorted_pairs(getattr(self, name)))
        groups = tuple((tuple(sorted(members)), credit) for members, credit in self.correlation_groups)
        object.__setattr__(self, "correlation_groups", tuple(sorted(groups)))

    def get_psr(self, underlying: str) -> float:
        return dict(self.price_scan_range)[underlying]

    def get_sigma_ref(self, underlying: str) -> float:
        return dict(self.sigma_ref)[underlying]

    def get_haircut(self, asset: str) -> float:
        return dict(self.haircuts).get(asset, self.default_haircut)


def _sorted_pairs(pairs: Any) -> Pairs:
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    return tuple(sorted((str(k), v) for k, v in items))


RRA1 = RiskParams(
    version=1,
    underlyings=("BTC", "ETH"),
    price_scan_range=(("BTC", 0.15), ("ETH", 0.20)),
    sigma_ref=(("BTC", 0.60), ("ETH", 0.80)),
    price_steps=3,
    vol_up_coefficient=0.50,
    vol_down_coefficient=0.25,
    w_exponent_short=0.30,
    w_exponent_long=0.13,
    w_dte_threshold=30.0,
    look_ahead_days=1.0,
    extreme_k=6,
    extreme_weight=0.35,
    correlation_groups=((("BTC", "ETH"), 0.70),),
    short_option_minimum_rate=0.01,
    maintenance_factor=0.8,
    haircuts=(("BTC", 0.15), ("ETH", 0.20), ("USDC", 0.0)),
    default_haircut=0.50,
    liquidation_penalty_rate=0.005,
    es_samples=1000,
    es_horizon_days=2.0,
    es_confidence=0.99,
)
"""The default parameter set of RISK_SPEC.md (RRA-1, version 1)."""

INT_FIELDS = ("version", "price_steps", "extreme_k", "es_samples")
FIXED_FIELDS = (
    "vol_up_coefficient", "vol_down_coefficient", "w_exponent_short", "w_exponent_long",
    "w_dte_threshold", "look_ahead_days", "extreme_weight", "short_option_minimum_rate",
    "maintenance_factor", "default_haircut", "liquidation_penalty_rate", "es_horizon_days",
    "es_confidence",
)
PAIR_FIELDS = ("price_scan_range", "sigma_ref", "haircuts")
FIELD_NAMES = tuple(f.name for f in dataclasses.fields(RiskParams))


# ---------------------------------------------------------------------------------------------
# validation


@dataclass(frozen=True)
class Bound:
    """Admissible range of one numeric parameter: `lo`..`hi`, each end open or closed."""

    lo: float
    hi: float
    lo_open: bool = False
    hi_open: bool = False

    def describe(self) -> str:
        return f"{'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"

    def is_inside(self, x: float) -> bool:
        above = x > self.lo if self.lo_open else x >= self.lo
        below = x < self.hi if self.hi_open else x <= self.hi
        return above and below


INT_BOUNDS: dict[str, Bound] = {
    "version": Bound(1, _INT64_MAX),
    "price_steps": Bound(1, 10),  # grid of 3 (2n + 1) + 2 scenarios: at most 65
    "extreme_k": Bound(1, 100),
    "es_samples": Bound(1, 10_000),  # ES-1 revalues every position N times
}
"""Integer fields: closed ranges. Cost bounds: scenarios and tail samples per position."""

FIXED_BOUNDS: dict[str, Bound] = {
    "vol_up_coefficient": Bound(0.0, 10.0),
    "vol_down_coefficient": Bound(0.0, 10.0),
    "w_exponent_short": Bound(0.0, 5.0),
    "w_exponent_long": Bound(0.0, 5.0),
    "w_dte_threshold": Bound(0.0, 3650.0, lo_open=True),
    "look_ahead_days": Bound(0.0, 365.0),
    "extreme_weight": Bound(0.0, 1.0),
    "short_option_minimum_rate": Bound(0.0, 1.0),
    "maintenance_factor": Bound(0.0, 1.0, lo_open=True),
    "default_haircut": Bound(0.0, 1.0, hi_open=True),
    "liquidation_penalty_rate": Bound(0.0, 1.0, hi_open=True),
    "es_horizon_days": Bound(0.0, 365.0),
    "es_confidence": Bound(0.0, 1.0, lo_open=True, hi_open=True),
}
"""Scalar fractional fields."""

KEYED_BOUNDS: dict[str, Bound] = {
    "price_scan_range": Bound(0.0, 1.0, lo_open=True, hi_open=True),
    "sigma_ref": Bound(0.0, 10.0, lo_open=True),
    "haircuts": Bound(0.0, 1.0, hi_open=True),
    "correlation_groups": Bound(0.0, 1.0),  # the credit of each group
}
"""Per-underlying, per-asset and per-group values."""

MAX_UNDERLYINGS = 32
MAX_ASSETS = 64
"""Entries of `haircuts`."""
MAX_NAME_CHARS = 32
"""Length of an underlying or asset name."""


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _show(x: int | float) -> str:
    """A number for an error message; a huge integer by its size (str() of it may be refused)."""
    if isinstance(x, int) and x.bit_length() > 64:
        return f"an integer of {x.bit_length()} bits"
    return repr(x)


def _check_fixed(field: str, x: object) -> float:
    if not _is_number(x):
        raise InvalidParams(field, f"expected a number, got {type(x).__name__}")
    try:
        value = float(x)  # type: ignore[arg-type]
    except OverflowError as exc:
        raise InvalidParams(field, "outside the float64 range") from exc
    if not math.isfinite(value):
        raise InvalidParams(field, "not finite")
    scaled = round(value * FIXED_SCALE)
    if abs(scaled) > _INT64_MAX or scaled / FIXED_SCALE != value:
        raise InvalidParams(field, "not an exact multiple of 1e-9 within int64")
    return value


def _check_bounded(field: str, x: object, bound: Bound) -> None:
    if _is_number(x) and isinstance(x, int) and not bound.is_inside(x):  # before float(): may be huge
        raise InvalidParams(field, f"{_show(x)} outside {bound.describe()}")
    value = _check_fixed(field, x)
    if not bound.is_inside(value):
        raise InvalidParams(field, f"{value!r} outside {bound.describe()}")


def _check_int(field: str, x: object, bound: Bound) -> None:
    if not isinstance(x, int) or isinstance(x, bool):
        raise InvalidParams(field, f"expected an integer, got {type(x).__name__}")
    if not bound.is_inside(x):
        raise InvalidParams(field, f"{_show(x)} outside {bound.describe()}")


def _check_name(field: str, name: object) -> None:
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_CHARS:
        raise InvalidParams(field, f"invalid name {str(name)[:MAX_NAME_CHARS + 8]!r} (1..{MAX_NAME_CHARS} characters)")


def _check_underlyings(p: RiskParams) -> None:
    if not isinstance(p.underlyings, tuple) or not p.underlyings:
        raise InvalidParams("underlyings", "empty")
    if len(p.underlyings) > MAX_UNDERLYINGS:
        raise InvalidParams("underlyings", f"more than {MAX_UNDERLYINGS} underlyings")
    for u in p.underlyings:
        _check_name("underlyings", u)
    if len(set(p.underlyings)) != len(p.underlyings):
        raise InvalidParams("underlyings", "duplicate underlying")


def _check_per_underlying(p: RiskParams, name: str) -> None:
    pairs = getattr(p, name)
    if len(pairs) > MAX_UNDERLYINGS:
        raise InvalidParams(name, f"more than {MAX_UNDERLYINGS} entries")
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise InvalidParams(name, "duplicate underlying")
    for k, v in pairs:
        if k not in p.underlyings:
            raise InvalidParams(f"{name}.{k[:MAX_NAME_CHARS + 8]}", "unknown underlying")
        _check_bounded(f"{name}.{k}", v, KEYED_BOUNDS[name])
    for u in p.underlyings:
        if u not in keys:
            raise InvalidParams(f"{name}.{u}", "missing for a listed underlying")


def _check_haircuts(p: RiskParams) -> None:
    if len(p.haircuts) > MAX_ASSETS:
        raise InvalidParams("haircuts", f"more than {MAX_ASSETS} assets")
    for asset, h in p.haircuts:
        _check_name("haircuts", asset)
        _check_bounded(f"haircuts.{asset}", h, KEYED_BOUNDS["haircuts"])
    if len({a for a, _ in p.haircuts}) != len(p.haircuts):
        raise InvalidParams("haircuts", "duplicate asset")


def _check_groups(p: RiskParams) -> None:
    seen: set[str] = set()
    if len(p.correlation_groups) > MAX_UNDERLYINGS:
        raise InvalidParams("correlation_groups", f"more than {MAX_UNDERLYINGS} groups")
    for i, group in enumerate(p.correlation_groups):
        if not (isinstance(group, tuple) and len(group) == 2):
            raise InvalidParams(f"correlation_groups[{i}]", "expected (members, credit)")
        members, credit = group
        if not members:
            raise InvalidParams(f"correlation_groups[{i}].members", "empty group")
        for u in members:
            if u not in p.underlyings:
                raise InvalidParams(f"correlation_groups[{i}].members", f"unknown underlying {str(u)[:40]!r}")
            if u in seen:
                raise InvalidParams(f"correlation_groups[{i}].members", f"{u!r} is in two groups")
            seen.add(u)
        _check_bounded(f"correlation_groups[{i}].credit", credit, KEYED_BOUNDS["correlation_groups"])


def validate_params(p: RiskParams) -> None:
    """Raise `InvalidParams(field, reason)` unless `p` is admissible and exactly encodable.

    Every field has an explicit range (`INT_BOUNDS`, `FIXED_BOUNDS`, `KEYED_BOUNDS`, the count and
    name limits): governance proposals and what-if overrides are admitted by this one check, so no
    parameter set can make the engine's work (scenarios, tail samples, names) unbounded."""
    for name, bound in INT_BOUNDS.items():
        _check_int(name, getattr(p, name), bound)
    _check_underlyings(p)
    _check_per_underlying(p, "price_scan_range")
    _check_per_underlying(p, "sigma_ref")
    for u, psr in p.price_scan_range:
        if p.extreme_k * psr / p.price_steps >= 1.0:
            raise InvalidParams(f"price_scan_range.{u}", "extreme move of -extreme_k steps reaches a zero price")
    for name, bound in FIXED_BOUNDS.items():
        _check_bounded(name, getattr(p, name), bound)
    _check_haircuts(p)
    _check_groups(p)


# ---------------------------------------------------------------------------------------------
# canonical encoding

_T_INT, _T_FIXED, _T_STR, _T_LIST, _T_MAP = 1, 2, 3, 4, 5


def _enc_str(s: str) -> bytes:
    raw = s.encode("utf-8")
    return len(raw).to_bytes(4, "big") + raw


def _enc_int(tag: int, n: int) -> bytes:
    return bytes([tag]) + n.to_bytes(8, "big", signed=True)


def _enc_fixed(field: str, x: float) -> bytes:
    return _enc_int(_T_FIXED, round(_check_fixed(field, x) * FIXED_SCALE))


def _enc_map(items: list[tuple[str, bytes]]) -> bytes:
    items = sorted(items, key=lambda kv: kv[0].encode("utf-8"))
    body = b"".join(_enc_str(k) + v for k, v in items)
    return bytes([_T_MAP]) + len(items).to_bytes(4, "big") + body


def _enc_list(values: list[bytes]) -> bytes:
    return bytes([_T_LIST]) + len(values).to_bytes(4, "big") + b"".join(values)


def encode_params(p: RiskParams) -> bytes:
    """Canonical bytes of `p` (validated first).

    Format: `b"RRAPARAM" || u16 format version (1) || value`, all integers big-endian, where a value is
    - `0x01 || i64`: an integer field;
    - `0x02 || i64`: a fraction as `round(x * 1e9)` (x must be an exact multiple of 1e-9);
    - `0x03 || u32 len || utf-8`: a string;
    - `0x04 || u32 count || values`: a list (order significant);
    - `0x05 || u32 count || (u32 len || utf-8 key || value)*`: a map, keys sorted by their UTF-8 bytes.
    The top level is a map of every `RiskParams` field name. Per-underlying and per-asset fields are maps
    of fixed values; `underlyings` is a sorted list of strings; `correlation_groups` is a list (sorted by
    members) of maps `{"credit": fixed, "members": sorted list of strings}`.
    """
    validate_params(p)
    items: list[tuple[str, bytes]] = []
    for name in INT_FIELDS:
        items.append((name, _enc_int(_T_INT, getattr(p, name))))
    for name in FIXED_FIELDS:
        items.append((name, _enc_fixed(name, getattr(p, name))))
    for name in PAIR_FIELDS:
        items.append((name, _enc_map([(k, _enc_fixed(f"{name}.{k}", v)) for k, v in getattr(p, name)])))
    items.append(("underlyings", _enc_list([bytes([_T_STR]) + _enc_str(u) for u in p.underlyings])))
    groups = [
        _enc_map([
            ("credit", _enc_fixed(f"correlation_groups[{i}].credit", credit)),
            ("members", _enc_list([bytes([_T_STR]) + _enc_str(u) for u in members])),
        ])
        for i, (members, credit) in enumerate(p.correlation_groups)
    ]
    items.append(("correlation_groups", _enc_list(groups)))
    return MAGIC + FORMAT_VERSION.to_bytes(2, "big") + _enc_map(items)


class _Reader:
    def __init__(self, data: bytes, pos: int) -> None:
        self.data, self.pos = data, pos

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
        if depth > 4:
            raise InvalidParams("encoding", "nested too deeply")
        tag = self.take(1)[0]
        if tag == _T_INT:
            return int.from_bytes(self.take(8), "big", signed=True)
        if tag == _T_FIXED:
            return int.from_bytes(self.take(8), "big", signed=True) / FIXED_SCALE
        if tag == _T_STR:
            return self.string()
        if tag == _T_LIST:
            return [self.value(depth + 1) for _ in range(self.u32())]
        if tag == _T_MAP:
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


def decode_params(data: bytes) -> RiskParams:
    """Inverse of `encode_params`; refuses anything that is not exactly a canonical encoding."""
    if len(data) > MAX_ENCODED_BYTES:
        raise InvalidParams("encoding", "too large")
    if not data.startswith(MAGIC):
        raise InvalidParams("encoding", "bad magic")
    reader = _Reader(data, len(MAGIC))
    if int.from_bytes(reader.take(2), "big") != FORMAT_VERSION:
        raise InvalidParams("encoding", "unsupported format version")
    top = reader.value()
    if reader.pos != len(data):
        raise InvalidParams("encoding", "trailing bytes")
    if not isinstance(top, dict) or set(top) != set(FIELD_NAMES):
        raise InvalidParams("encoding", "field set differs from RiskParams")
    try:
        groups = tuple((tuple(g["members"]), g["credit"]) for g in top["correlation_groups"])
        kwargs = dict(top, correlation_groups=groups, underlyings=tuple(top["underlyings"]))
        for name in PAIR_FIELDS:
            kwargs[name] = tuple(top[name].items())
        params = RiskParams(**kwargs)
    except (TypeError, KeyError, AttributeError) as exc:
        raise InvalidParams("encoding", f"malformed structure ({exc})") from exc
    if encode_params(params) != data:
        raise InvalidParams("encoding", "not canonical")
    return params


# ---------------------------------------------------------------------------------------------
# overrides (the what-if `params` object)


def _override_value(name: str, base_value: Any, value: Any) -> Any:
    if name in PAIR_FIELDS:
        if not isinstance(value, Mapping):
            raise InvalidParams(name, "expected an object of per-key values")
        return tuple({**dict(base_value), **dict(value)}.items())
    if name == "underlyings":
        if not isinstance(value, (list, tuple)) or not all(isinstance(u, str) for u in value):
            raise InvalidParams(name, "expected a list of names")
        return tuple(value)
    if name == "correlation_groups":
        if not isinstance(value, (list, tuple)):
            raise InvalidParams(name, "expected a list of {members, credit}")
        out = []
        for i, g in enumerate(value):
            if not isinstance(g, Mapping) or set(g) != {"members", "credit"}:
                raise InvalidParams(f"{name}[{i}]", "expected exactly the keys members and credit")
            if not isinstance(g["members"], (list, tuple)):
                raise InvalidParams(f"{name}[{i}].members", "expected a list of names")
            out.append((tuple(g["members"]), g["credit"]))
        return tuple(out)
    if name in INT_FIELDS and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def params_with_overrides(base: RiskParams, overrides: Mapping[str, Any]) -> RiskParams:
    """`base` with the named fields replaced (per-key merge for per-underlying/per-asset maps).

    Raises `InvalidParams` naming an unknown key or the first invalid field of the result.
    """
    if not isinstance(overrides, Mapping):
        raise InvalidParams("params", "expected an object")
    changes: dict[str, Any] = {}
    for name, value in overrides.items():
        if name not in FIELD_NAMES:
            raise InvalidParams(str(name), "unknown parameter")
        changes[name] = _override_value(name, getattr(base, name), value)
    try:
        params = dataclasses.replace(base, **changes)
    except TypeError as exc:
        raise InvalidParams("params", f"malformed override ({exc})") from exc
    validate_params(params)
    return params
