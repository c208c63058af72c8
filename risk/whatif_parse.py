"""Parsing of the what-if document's market and positions (versions 1 and 2), with every number bounded.

Version 1 is RISK_SPEC.md section 6. Version 2 (docs/risk_v2.md section 7) adds, each optional with a
neutral default: per forward `fixed` (the settlement average already fixed), `rate`, `confidence` and an
`svi` slice; `market.spot_confidence`, `market.perps` (`{u: {mark, confidence}}`),
`market.asset_confidence`, `market.stable_price`; options without `vol` (their expiry's SVI slice gives
it); perps with `unrealised_pnl` and `funding`. A version-1 document refuses these keys as unknown.
Every refusal is `InvalidInput` naming the document path (`market.forwards[0].svi.rho`,
`positions[2].funding`). Nothing is persisted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from risk.errors import InvalidInput
from risk.instruments import (
    KINDS,
    MAX_RATE,
    RIGHTS,
    Expiry,
    Instrument,
    Market,
    Position,
    is_finite_number,
    validate_instrument,
)
from risk.param_checks import MAX_NAME_CHARS, Bound
from risk.params import RiskParams
from risk.svi import SviSlice, compute_svi_vol, validate_svi

MAX_POSITIONS = 200
"""Positions of one document: the LQ-1 plan costs O(n^3) scenario sums (200 liquidatable short options:
~7 s of CPU with RRA-1; with the largest admissible grid more, which the API's timeout cuts)."""
MAX_FORWARDS = 256
MAX_KEYS = 64
"""Entries of `market.spot`, `market.asset_prices`, `collateral` and the other name -> value objects."""
PRICE_BOUND = Bound(1e-12, 1e12)  # spot, forward and asset prices, strikes (USD)
VOL_BOUND = Bound(0.0, 10.0, lo_open=True)
DAYS_BOUND = Bound(0.0, 36_500.0)
QUANTITY_BOUND = Bound(-1e12, 1e12)
BALANCE_BOUND = Bound(0.0, 1e15)
CASH_BOUND = Bound(-1e15, 1e15)  # cash, perp unrealised P&L and funding
RATE_BOUND = Bound(0.0, MAX_RATE)
CONFIDENCE_BOUND = Bound(0.0, 1.0)
SVI_BOUNDS = {"a": Bound(-10.0, 10.0), "b": Bound(0.0, 100.0), "rho": Bound(-1.0, 1.0, lo_open=True, hi_open=True),
              "m": Bound(-10.0, 10.0), "sigma": Bound(0.0, 10.0, lo_open=True), "forward": PRICE_BOUND,
              "tau": Bound(0.0, 100.0, lo_open=True)}

_POSITION_KEYS = {"kind", "underlying", "days_to_expiry", "strike", "right", "vol", "quantity"}
_PERP_KEYS_V2 = {"unrealised_pnl", "funding"}
_MARKET_KEYS = {"spot", "forwards", "asset_prices"}
_MARKET_KEYS_V2 = {"spot_confidence", "perps", "asset_confidence", "stable_price"}
_FORWARD_KEYS = {"underlying", "days_to_expiry", "price"}
_FORWARD_KEYS_V2 = {"fixed", "rate", "confidence", "svi"}


@dataclass(frozen=True)
class ParsedMarket:
    market: Market
    svi: dict[Expiry, SviSlice]  # version 2: the slice of each expiry that has one


def get_object(value: Any, where: str, max_keys: int | None = None) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInput(where, "expected an object")
    if max_keys is not None and len(value) > max_keys:
        raise InvalidInput(where, f"more than {max_keys} entries")
    return value


def get_list(value: Any, where: str, max_items: int) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidInput(where, "expected a list")
    if len(value) > max_items:
        raise InvalidInput(where, f"more than {max_items} entries")
    return value


def get_number(value: Any, where: str, bound: Bound) -> float:
    if isinstance(value, int) and not isinstance(value, bool) and not bound.is_inside(value):
        shown = value if value.bit_length() <= 64 else f"an integer of {value.bit_length()} bits"
        raise InvalidInput(where, f"{shown} outside {bound.describe()}")  # before float(): may be huge
    if not is_finite_number(value):
        raise InvalidInput(where, "expected a finite number")
    x = float(value)
    if not bound.is_inside(x):
        raise InvalidInput(where, f"{x!r} outside {bound.describe()}")
    return x


def get_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_CHARS:
        raise InvalidInput(where, f"expected a name of 1..{MAX_NAME_CHARS} characters")
    return value


def key_path(where: str, key: Any) -> str:
    return f"{where}.{str(key)[:MAX_NAME_CHARS + 8]}"


def check_keys(value: Mapping[str, Any], where: str, allowed: set[str]) -> None:
    unknown = set(value) - allowed
    if unknown:
        raise InvalidInput(key_path(where, sorted(unknown, key=str)[0]), "unknown key")


def get_named_numbers(doc: Any, where: str, bound: Bound) -> dict[str, float]:
    return {get_name(k, key_path(where, k)): get_number(v, key_path(where, k), bound)
            for k, v in get_object(doc, where, MAX_KEYS).items()}


def _parse_svi(doc: Any, where: str) -> SviSlice:
    s = get_object(doc, where)
    check_keys(s, where, set(SVI_BOUNDS))
    values = {key: get_number(s.get(key), f"{where}.{key}", bound) for key, bound in SVI_BOUNDS.items()}
    slice_ = SviSlice(**values)
    validate_svi(slice_, where)
    return slice_


def _parse_perps(doc: Any) -> tuple[dict[str, float], dict[str, float]]:
    marks: dict[str, float] = {}
    confidence: dict[str, float] = {}
    for u, entry in get_object(doc, "market.perps", MAX_KEYS).items():
        where = key_path("market.perps", u)
        perp = get_object(entry, where)
        check_keys(perp, where, {"mark", "confidence"})
        if "mark" in perp:
            marks[get_name(u, where)] = get_number(perp["mark"], f"{where}.mark", PRICE_BOUND)
        if "confidence" in perp:
            confidence[get_name(u, where)] = get_number(perp["confidence"], f"{where}.confidence", CONFIDENCE_BOUND)
    return marks, confidence


def parse_market(doc: Any, version: int) -> ParsedMarket:
    market = get_object(doc, "market")
    check_keys(market, "market", _MARKET_KEYS | (_MARKET_KEYS_V2 if version == 2 else set()))
    spot = get_named_numbers(market.get("spot"), "market.spot", PRICE_BOUND)
    forwards: dict[Expiry, float] = {}
    v2: dict[str, dict[Expiry, float]] = {"fixed": {}, "rate": {}, "confidence": {}}
    svi: dict[Expiry, SviSlice] = {}
    for i, entry in enumerate(get_list(market.get("forwards", []), "market.forwards", MAX_FORWARDS)):
        where = f"market.forwards[{i}]"
        f = get_object(entry, where)
        check_keys(f, where, _FORWARD_KEYS | (_FORWARD_KEYS_V2 if version == 2 else set()))
        key = (get_name(f.get("underlying"), f"{where}.underlying"),
               get_number(f.get("days_to_expiry"), f"{where}.days_to_expiry", DAYS_BOUND))
        if key in forwards:
            raise InvalidInput(where, "duplicate forward")
        forwards[key] = get_number(f.get("price"), f"{where}.price", PRICE_BOUND)
        for name, bound in (("rate", RATE_BOUND), ("confidence", CONFIDENCE_BOUND)):
            if name in f:
                v2[name][key] = get_number(f[name], f"{where}.{name}", bound)
        if "fixed" in f:
            fixed = get_number(f["fixed"], f"{where}.fixed", Bound(0.0, PRICE_BOUND.hi))
            if fixed > forwards[key]:
                raise InvalidInput(f"{where}.fixed", "the fixed part exceeds the forward")
            v2["fixed"][key] = fixed
        if "svi" in f:
            svi[key] = _parse_svi(f["svi"], f"{where}.svi")
    perp_marks, perp_confidence = _parse_perps(market.get("perps", {}))
    stable = get_number(market.get("stable_price", 1.0), "market.stable_price", PRICE_BOUND)
    return ParsedMarket(Market(
        spot=spot, forwards=forwards,
        asset_prices=get_named_numbers(market.get("asset_prices", {}), "market.asset_prices", PRICE_BOUND),
        rates=v2["rate"], forward_fixed=v2["fixed"], expiry_confidence=v2["confidence"],
        spot_confidence=get_named_numbers(market.get("spot_confidence", {}), "market.spot_confidence",
                                          CONFIDENCE_BOUND),
        perp_marks=perp_marks, perp_confidence=perp_confidence,
        asset_confidence=get_named_numbers(market.get("asset_confidence", {}), "market.asset_confidence",
                                           CONFIDENCE_BOUND),
        stable_price=stable), svi)


def _option_vol(p: Mapping[str, Any], where: str, key: Expiry, strike: float, parsed: ParsedMarket) -> float:
    if "vol" in p or key not in parsed.svi:
        return get_number(p.get("vol"), f"{where}.vol", VOL_BOUND)
    vol = compute_svi_vol(strike, parsed.svi[key])
    if not vol > 0.0:
        raise InvalidInput(f"{where}.vol", "the SVI slice of its expiry gives a zero vol at this strike")
    return vol


def parse_position(doc: Any, where: str, parsed: ParsedMarket, params: RiskParams,
                   version: int) -> tuple[Position, float]:
    """The position and the cash it brings (a perp's unrealised P&L and funding, version 2)."""
    p = get_object(doc, where)
    kind = p.get("kind")
    allowed = _POSITION_KEYS | (_PERP_KEYS_V2 if version == 2 and kind == "perp" else set())
    check_keys(p, where, allowed)
    if kind not in KINDS:
        raise InvalidInput(f"{where}.kind", f"unknown kind {kind!r}")
    underlying = get_name(p.get("underlying"), f"{where}.underlying")
    days = strike = vol = 0.0
    right = ""
    if kind in ("option", "future"):
        days = get_number(p.get("days_to_expiry"), f"{where}.days_to_expiry", DAYS_BOUND)
    if kind == "option":
        strike = get_number(p.get("strike"), f"{where}.strike", PRICE_BOUND)
        right = p.get("right")  # type: ignore[assignment]
        if right not in RIGHTS:
            raise InvalidInput(f"{where}.right", f"expected call or put, got {right!r}")
        vol = _option_vol(p, where, (underlying, days), strike, parsed)
    instrument = Instrument(underlying, kind, days, strike, right, vol)
    validate_instrument(instrument, parsed.market, params, where)
    quantity = get_number(p.get("quantity"), f"{where}.quantity", QUANTITY_BOUND)
    cash = 0.0
    for name in sorted(_PERP_KEYS_V2 & set(p)):
        cash += get_number(p[name], f"{where}.{name}", CASH_BOUND)
    return Position(instrument, quantity), cash
