"""Versioned risk parameter sets: the immutable `RiskParams` that carries the whole model (the scenario
list itself and every term of docs/risk_v2.md), the default `RRA1`, Derive's `PM2`, the canonical byte
encoding and what-if overrides.

Invariants:
- `RiskParams` is frozen; mapping-like fields are tuples of `(key, value)` pairs sorted by key, so two
  equal parameter sets compare equal and encode to the same bytes (normalised in `__post_init__`);
  `scenarios` keeps its order (the order of the risk array).
- Every fractional value must be an exact multiple of 1e-12 (`FIXED_SCALE`); `encode_params` refuses
  anything else, so `decode_params(encode_params(p)) == p` holds for every encodable `p`.
- `validate_params` (`risk.param_checks`) is the single admission check: governance calls it to reject
  proposals, the what-if `params` override goes through it; every field has an explicit range.
- `RRA1` reproduces RISK_SPEC.md exactly: its new terms are neutral (no discounting, skew, basis,
  contingencies; IM factor 1), so its margin numbers are those of the RRA-1 engine bit for bit.
Nothing is persisted here; governance hashes the bytes of `encode_params`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from risk.errors import InvalidParams
from risk.param_checks import (
    FIXED_BOUNDS,
    INT_BOUNDS,
    KEYED_BOUNDS,
    MAX_ASSETS,
    MAX_NAME_CHARS,
    MAX_SCENARIOS,
    MAX_UNDERLYINGS,
    PER_ASSET,
    PER_UNDERLYING,
    SCENARIO_BOUNDS,
    SKEW_MODES,
    VOL_MODES,
    Bound,
    check_bounded,
    check_int,
    validate_params,
)
from risk.param_codec import (
    FIXED_SCALE,
    V1_FIXED_SCALE,
    Reader,
    enc_fixed,
    enc_int,
    enc_list,
    enc_map,
    enc_string,
    is_fixed,
)

__all__ = [
    "FIELD_NAMES", "FIXED_BOUNDS", "FIXED_FIELDS", "FIXED_SCALE", "INT_BOUNDS", "INT_FIELDS", "KEYED_BOUNDS",
    "MAX_ASSETS", "MAX_NAME_CHARS", "MAX_SCENARIOS", "MAX_UNDERLYINGS", "PAIR_FIELDS", "PM2", "RRA1",
    "SCENARIO_BOUNDS", "SKEW_MODES", "VOL_MODES", "Bound", "RiskParams", "Scenario", "compute_pm2_scenarios",
    "compute_rra1_scenarios", "decode_params", "encode_params", "make_pm2_params", "params_with_overrides",
    "validate_params",
]

MAGIC = b"RRAPARAM"
FORMAT_VERSION = 2
"""The encoding of a set format 1 cannot express (see `encode_params`)."""
FORMAT_V1 = 1
MAX_ENCODED_BYTES = 1 << 20
"""Bound on the size of an encoded parameter set accepted by `decode_params`."""

Pairs = tuple[tuple[str, float], ...]
Groups = tuple[tuple[tuple[str, ...], float], ...]


@dataclass(frozen=True)
class Scenario:
    """One scenario of the risk array: every price moves by `shock * PSR_u / price_steps` (relative), the
    vol follows `vol` (none, up, down, linear skew, abs skew) and the P&L is multiplied by `weight`."""

    name: str
    shock: float
    vol: str
    weight: float = 1.0


@dataclass(frozen=True)
class RiskParams:
    """Every parameter of the model (RISK_SPEC.md for RRA-1, docs/risk_v2.md for the v2 terms)."""

    version: int
    underlyings: tuple[str, ...]
    price_scan_range: Pairs  # PSR_u: a shock of price_steps steps moves u by PSR_u
    sigma_ref: Pairs  # ES-1 sigma_ref per underlying
    price_steps: int  # divisor of the scenario shocks
    scenarios: tuple[Scenario, ...]  # the scenario list, in risk-array order
    vol_up_coefficient: float  # up multiplier 1 + c_up * w
    vol_down_coefficient: float  # down multiplier max(0, 1 - c_down * w)
    w_exponent_short: float  # p when DTE <= threshold
    w_exponent_long: float  # p when DTE > threshold
    w_dte_threshold: float  # w = (threshold / max(DTE, floor)) ^ p
    w_dte_floor: float  # days
    vol_up_floor: float  # shocked-up vol is at least this
    skew_linear_cap: float  # linear skew: cap = slope * sqrt(tau) + cap
    skew_linear_cap_slope: float
    skew_abs_cap: float  # abs skew: the same with its own pair
    skew_abs_cap_slope: float
    skew_min_k_star: float  # k* = max(min, sqrt(tau) width (static + sqrt(tau) scale))
    skew_width_scale: float
    skew_vol_static: float
    skew_vol_scale: float
    look_ahead_days: float  # DTE' = max(DTE - look_ahead, 0)
    discount_long_base: float  # static discount of a non-negative expiry value
    discount_long_rate_mult: float
    discount_long_rate_add: float
    discount_short_base: float  # of a negative expiry value
    discount_short_rate_mult: float
    discount_short_rate_add: float
    basis_shock_up: float  # basis contingency: shocks (steps), factor add + mult * tau
    basis_shock_down: float
    basis_add_factor: float
    basis_mult_factor: float
    correlation_groups: Groups  # (members, credit); an underlying in at most one group
    short_option_minimum_rate: float  # SOM rate on |q| * S_u of short options
    im_factor: float  # IM = f_IM R + C_MM + C_IM
    maintenance_factor: float  # MM = factor R + C_MM
    peg_loss_threshold: float  # f_IM += (threshold - stable price) * factor below the threshold
    peg_loss_factor: float
    perp_mm_rate: float  # contingencies on |q| S of perps and of naked short options
    perp_im_rate: float
    naked_option_mm_rate: float
    naked_option_im_rate: float
    haircuts: Pairs  # valuation haircut per collateral asset (equity counts b p (1 - h))
    default_haircut: float  # valuation haircut of an asset not listed
    mm_haircuts: Pairs  # MM contingency per collateral asset (unlisted: 0)
    im_haircuts: Pairs  # IM contingency per collateral asset, on top of MM (unlisted: 0)
    risk_cancelling: tuple[tuple[str, str], ...]  # collateral asset -> underlying it moves with (in the grid)
    oracle_confidence_threshold: float  # oracle contingency (1 - c) margin N when c < threshold
    oracle_confidence_margin: float
    liquidation_penalty_rate: float  # LQ-1 penalty per |q| * S_u
    es_samples: int  # ES-1: N
    es_horizon_days: float  # h
    es_confidence: float  # 0.99
    use_rates: int = 0  # 1: option values and discounts use the market's per-expiry rates; 0: r = 0 (RRA-1)

    def __post_init__(self) -> None:
        object.__setattr__(self, "underlyings", tuple(sorted(self.underlyings)))
        for name in PAIR_FIELDS:
            object.__setattr__(self, name, _sorted_pairs(getattr(self, name)))
        object.__setattr__(self, "risk_cancelling", _sorted_pairs(self.risk_cancelling))
        groups = tuple((tuple(sorted(members)), credit) for members, credit in self.correlation_groups)
        object.__setattr__(self, "correlation_groups", tuple(sorted(groups)))
        object.__setattr__(self, "scenarios", tuple(_as_scenario(s) for s in self.scenarios))

    def get_psr(self, underlying: str) -> float:
        return dict(self.price_scan_range)[underlying]

    def get_sigma_ref(self, underlying: str) -> float:
        return dict(self.sigma_ref)[underlying]

    def get_haircut(self, asset: str) -> float:
        return dict(self.haircuts).get(asset, self.default_haircut)

    def get_mm_haircut(self, asset: str) -> float:
        return dict(self.mm_haircuts).get(asset, 0.0)

    def get_im_haircut(self, asset: str) -> float:
        return dict(self.im_haircuts).get(asset, 0.0)

    def get_risk_cancelling(self, asset: str) -> str | None:
        """The underlying a risk-cancelling collateral asset moves with in the grid, else None."""
        return dict(self.risk_cancelling).get(asset)

    def has_expiry_terms(self) -> bool:
        """True when a term is not linear in positions: static discounting, a skew scenario, the basis
        contingency or naked-short rates (each computed per expiry); else every option's scenario P&L is
        `weight * q * (V' - V)` and sums per position (RRA-1)."""
        neutral_discount = (self.discount_long_base, self.discount_short_base) == (1.0, 1.0) and not any(
            (self.discount_long_rate_mult, self.discount_long_rate_add, self.discount_short_rate_mult,
             self.discount_short_rate_add))
        skew = any(s.vol in SKEW_MODES for s in self.scenarios)
        basis = (self.basis_add_factor, self.basis_mult_factor) != (0.0, 0.0)
        naked = (self.naked_option_mm_rate, self.naked_option_im_rate) != (0.0, 0.0)
        return not neutral_discount or skew or basis or naked

    def to_dict(self) -> dict[str, Any]:
        """Readable JSON-ready form: per-key fields as objects, scenarios as a list of objects."""
        out: dict[str, Any] = {}
        for name in FIELD_NAMES:
            value = getattr(self, name)
            if name in PAIR_FIELDS or name == "risk_cancelling":
                out[name] = dict(value)
            elif name == "correlation_groups":
                out[name] = [{"members": list(m), "credit": c} for m, c in value]
            elif name == "scenarios":
                out[name] = [dataclasses.asdict(s) for s in value]
            elif isinstance(value, tuple):
                out[name] = list(value)
            else:
                out[name] = value
        return out


def _sorted_pairs(pairs: Any) -> tuple[tuple[str, Any], ...]:
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    return tuple(sorted((str(k), v) for k, v in items))


def _as_scenario(s: Any) -> Any:
    if isinstance(s, Mapping) and set(s) <= {"name", "shock", "vol", "weight"}:
        return Scenario(**s)
    return s


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(RiskParams))
INT_FIELDS = tuple(INT_BOUNDS)
FIXED_FIELDS = tuple(FIXED_BOUNDS)
PAIR_FIELDS = (*PER_UNDERLYING, *PER_ASSET)


def compute_rra1_scenarios(price_steps: int = 3, extreme_k: int = 6, extreme_weight: float = 0.35) -> tuple[Scenario, ...]:
    """RISK_SPEC.md section 2's grid: `s = 3 (k + n) + j` for `k = -n..n` with `j` down, none, up (weight
    1), then `k = -extreme_k` and `+extreme_k` with vol none and `extreme_weight`."""
    out = [Scenario(f"{k:+d} {vol}", float(k), vol, 1.0)
           for k in range(-price_steps, price_steps + 1) for vol in ("down", "none", "up")]
    out += [Scenario(f"extreme {k:+d}", float(k), "none", extreme_weight) for k in (-extreme_k, extreme_k)]
    return tuple(out)


RRA1 = RiskParams(
    version=1,
    underlyings=("BTC", "ETH"),
    price_scan_range=(("BTC", 0.15), ("ETH", 0.20)),
    sigma_ref=(("BTC", 0.60), ("ETH", 0.80)),
    price_steps=3,
    scenarios=compute_rra1_scenarios(3, 6, 0.35),
    vol_up_coefficient=0.50, vol_down_coefficient=0.25, w_exponent_short=0.30, w_exponent_long=0.13,
    w_dte_threshold=30.0, w_dte_floor=1.0, vol_up_floor=0.0,
    skew_linear_cap=0.0, skew_linear_cap_slope=0.0, skew_abs_cap=0.0, skew_abs_cap_slope=0.0,
    skew_min_k_star=0.01, skew_width_scale=0.0, skew_vol_static=0.0, skew_vol_scale=0.0,
    look_ahead_days=1.0,
    discount_long_base=1.0, discount_long_rate_mult=0.0, discount_long_rate_add=0.0,
    discount_short_base=1.0, discount_short_rate_mult=0.0, discount_short_rate_add=0.0,
    basis_shock_up=0.0, basis_shock_down=0.0, basis_add_factor=0.0, basis_mult_factor=0.0,
    correlation_groups=((("BTC", "ETH"), 0.70),),
    short_option_minimum_rate=0.01,
    im_factor=1.0, maintenance_factor=0.8, peg_loss_threshold=0.0, peg_loss_factor=0.0,
    perp_mm_rate=0.0, perp_im_rate=0.0, naked_option_mm_rate=0.0, naked_option_im_rate=0.0,
    haircuts=(("BTC", 0.15), ("ETH", 0.20), ("USDC", 0.0)),
    default_haircut=0.50,
    mm_haircuts=(), im_haircuts=(), risk_cancelling=(),
    oracle_confidence_threshold=0.0, oracle_confidence_margin=0.0,
    liquidation_penalty_rate=0.005,
    es_samples=1000, es_horizon_days=2.0, es_confidence=0.99,
)
"""The default parameter set of RISK_SPEC.md (RRA-1, version 1)."""


def compute_pm2_scenarios(extended: tuple[tuple[float, float], ...], skew_weight: float = 1.0) -> tuple[Scenario, ...]:
    """PM2's list (PM2_SPEC.md section 3) as shocks of a unit scan range (`x - 1`): 1.18 up, the 21 regular
    ones (1.135 .. 0.865 x down/none/up), 0.82 up, the `extended` (x, dampening) moves with vol up, then
    linear and abs skew."""
    def at(x: float, vol: str, weight: float = 1.0) -> Scenario:
        return Scenario(f"{x:g} {vol}", round(x - 1.0, 12), vol, weight)

    out = [at(1.18, "up")]
    out += [at(x, vol) for x in (1.135, 1.09, 1.045, 1.0, 0.955, 0.91, 0.865) for vol in ("down", "none", "up")]
    out.append(at(0.82, "up"))
    out += [at(x, "up", weight) for x, weight in extended]
    out += [Scenario("linear", 0.0, "linear", skew_weight), Scenario("abs", 0.0, "abs", skew_weight)]
    return tuple(out)


PM2_DEPLOY_EXTENDED = ((0.34, 0.21), (0.67, 0.42), (1.5, 0.2772), (2.0, 0.1386), (3.0, 0.0693), (4.0, 0.0462),
                       (5.0, 0.03465), (6.0, 0.02772))
"""The deploy config's extended moves: dampening 0.1386 / |x - 1|."""


def make_pm2_params(underlyings: tuple[str, ...] = ("BTC", "ETH"), **values: Any) -> RiskParams:
    """A PM2 parameter set (PM2_SPEC.md, "deploy" column unless `values` say otherwise): each underlying
    with a unit scan range and one step (a shock is `x - 1`), no look-ahead, no correlation credit, no
    short option minimum, no valuation haircut; the rest of RRA-1 (ES-1, LQ-1 penalty) kept."""
    base = dataclasses.replace(
        RRA1, version=1, underlyings=underlyings, price_scan_range=tuple((u, 1.0) for u in underlyings),
        sigma_ref=tuple((u, dict(RRA1.sigma_ref).get(u, 0.8)) for u in underlyings), price_steps=1,
        scenarios=compute_pm2_scenarios(PM2_DEPLOY_EXTENDED),
        vol_up_coefficient=0.5, vol_down_coefficient=0.3, w_exponent_short=0.3, w_exponent_long=0.13,
        w_dte_threshold=30.0, w_dte_floor=1.0, vol_up_floor=0.40,
        skew_linear_cap=0.25, skew_linear_cap_slope=-0.1, skew_abs_cap=0.25, skew_abs_cap_slope=-0.1,
        skew_min_k_star=0.01, skew_width_scale=4.0, skew_vol_static=0.6, skew_vol_scale=0.0,
        look_ahead_days=0.0,
        discount_long_base=1.05, discount_long_rate_mult=0.0, discount_long_rate_add=0.16,
        discount_short_base=0.95, discount_short_rate_mult=0.0, discount_short_rate_add=0.16,
        basis_shock_up=0.045, basis_shock_down=-0.045, basis_add_factor=0.5, basis_mult_factor=2.0,
        correlation_groups=(), short_option_minimum_rate=0.0,
        im_factor=1.0, maintenance_factor=0.8, peg_loss_threshold=0.99, peg_loss_factor=4.0,
        perp_mm_rate=0.03, perp_im_rate=0.01, naked_option_mm_rate=0.003, naked_option_im_rate=0.002,
        haircuts=(), default_haircut=0.0, use_rates=1,
        mm_haircuts=(("BTC", 0.02), ("ETH", 0.015)), im_haircuts=(("BTC", 0.01), ("ETH", 0.005)),
        risk_cancelling=tuple((u, u) for u in underlyings if u in ("BTC", "ETH")),
        oracle_confidence_threshold=0.55, oracle_confidence_margin=1.0,
    )
    params = dataclasses.replace(base, **values)
    validate_params(params)
    return params


PM2 = make_pm2_params()
"""Derive's PM2 with the deploy config (33 scenarios) for BTC and ETH, each margined on its own."""


# ---------------------------------------------------------------------------------------------
# canonical encoding


V1_INT_FIELDS = ("version", "price_steps", "es_samples")
V1_FIXED_FIELDS = (
    "vol_up_coefficient", "vol_down_coefficient", "w_exponent_short", "w_exponent_long", "w_dte_threshold",
    "look_ahead_days", "short_option_minimum_rate", "maintenance_factor", "default_haircut",
    "liquidation_penalty_rate", "es_horizon_days", "es_confidence",
)
V1_PAIR_FIELDS = ("price_scan_range", "sigma_ref", "haircuts")
V1_FIELDS = (*V1_INT_FIELDS, *V1_FIXED_FIELDS, *V1_PAIR_FIELDS, "underlyings", "correlation_groups")
V2_ONLY_FIELDS = tuple(n for n in FIELD_NAMES if n not in V1_FIELDS and n != "scenarios")
"""Fields format 1 does not carry: a set is format-1 shaped only when each equals RRA-1's (neutral) value."""
V1_EXTREME_K = Bound(1, 100)


def _v1_grid(p: RiskParams) -> tuple[int, float] | None:
    """(extreme_k, extreme_weight) when `p.scenarios` is RISK_SPEC.md's generated grid, else None."""
    if len(p.scenarios) != 3 * (2 * p.price_steps + 1) + 2:
        return None
    shock, weight = p.scenarios[-1].shock, p.scenarios[-1].weight
    if not float(shock).is_integer() or not V1_EXTREME_K.is_inside(shock):
        return None
    if p.scenarios != compute_rra1_scenarios(p.price_steps, int(shock), weight):
        return None
    return int(shock), weight


def _is_v1_shaped(p: RiskParams) -> bool:
    """True when format 1 expresses `p` exactly: the RRA-1 grid, every v2-only field at RRA-1's value and
    every fraction an exact multiple of 1e-9."""
    grid = _v1_grid(p)
    if grid is None or any(getattr(p, n) != getattr(RRA1, n) for n in V2_ONLY_FIELDS):
        return False
    fractions = [grid[1], *(getattr(p, n) for n in V1_FIXED_FIELDS),
                 *(v for n in V1_PAIR_FIELDS for _, v in getattr(p, n)), *(c for _, c in p.correlation_groups)]
    return all(is_fixed(float(x), V1_FIXED_SCALE) for x in fractions)


def _enc_common(p: RiskParams, pair_fields: tuple[str, ...], scale: int) -> list[tuple[str, bytes]]:
    items = [(name, enc_map([(k, enc_fixed(f"{name}.{k}", v, scale)) for k, v in getattr(p, name)]))
             for name in pair_fields]
    items.append(("underlyings", enc_list([enc_string(u) for u in p.underlyings])))
    groups = [
        enc_map([("credit", enc_fixed(f"correlation_groups[{i}].credit", credit, scale)),
                 ("members", enc_list([enc_string(u) for u in members]))])
        for i, (members, credit) in enumerate(p.correlation_groups)
    ]
    items.append(("correlation_groups", enc_list(groups)))
    return items


def _encode_v1(p: RiskParams, grid: tuple[int, float]) -> bytes:
    items = [(name, enc_int(getattr(p, name))) for name in V1_INT_FIELDS]
    items.append(("extreme_k", enc_int(grid[0])))
    items.append(("extreme_weight", enc_fixed("extreme_weight", grid[1], V1_FIXED_SCALE)))
    items += [(name, enc_fixed(name, getattr(p, name), V1_FIXED_SCALE)) for name in V1_FIXED_FIELDS]
    items += _enc_common(p, V1_PAIR_FIELDS, V1_FIXED_SCALE)
    return MAGIC + FORMAT_V1.to_bytes(2, "big") + enc_map(items)


def encode_params(p: RiskParams) -> bytes:
    """Canonical bytes of `p` (validated first): `b"RRAPARAM" || u16 format version || value`.

    Format 1 (the encoding before risk v2, kept so RRA-1's params hash and every digest that covers it stay
    byte for byte what they were) when `p` is RRA-1 shaped (`_is_v1_shaped`): a map of the version-1
    fields, the grid as `extreme_k` and `extreme_weight`, fractions at 1e-9. Format 2 otherwise.

    The value (`risk.param_codec`) is a map of every `RiskParams` field name: integers and fixed values
    as such; per-underlying and per-asset fields as maps of fixed values; `risk_cancelling` as a map of
    strings; `underlyings` as a sorted list of strings; `correlation_groups` as a list (sorted by
    members) of maps `{"credit": fixed, "members": sorted list of strings}`; `scenarios` as a list, in
    order, of maps `{"name": string, "shock": fixed, "vol": string, "weight": fixed}`.
    """
    validate_params(p)
    if _is_v1_shaped(p):
        grid = _v1_grid(p)
        assert grid is not None
        return _encode_v1(p, grid)
    items: list[tuple[str, bytes]] = []
    for name in INT_FIELDS:
        items.append((name, enc_int(getattr(p, name))))
    for name in FIXED_FIELDS:
        items.append((name, enc_fixed(name, getattr(p, name))))
    items += _enc_common(p, PAIR_FIELDS, FIXED_SCALE)
    items.append(("risk_cancelling", enc_map([(a, enc_string(u)) for a, u in p.risk_cancelling])))
    scenarios = [
        enc_map([("name", enc_string(s.name)), ("shock", enc_fixed(f"scenarios[{i}].shock", s.shock)),
                 ("vol", enc_string(s.vol)), ("weight", enc_fixed(f"scenarios[{i}].weight", s.weight))])
        for i, s in enumerate(p.scenarios)
    ]
    items.append(("scenarios", enc_list(scenarios)))
    return MAGIC + FORMAT_VERSION.to_bytes(2, "big") + enc_map(items)


def _decode_v1_fields(top: dict[str, Any]) -> dict[str, Any]:
    if set(top) != {*V1_FIELDS, "extreme_k", "extreme_weight"}:
        raise InvalidParams("encoding", "field set differs from format 1")
    k, weight = top.pop("extreme_k"), top.pop("extreme_weight")
    check_int("extreme_k", k, V1_EXTREME_K)
    price_steps = top["price_steps"]
    check_int("price_steps", price_steps, INT_BOUNDS["price_steps"])
    return dict(top, **{n: getattr(RRA1, n) for n in V2_ONLY_FIELDS},
                scenarios=compute_rra1_scenarios(price_steps, k, weight))


def decode_params(data: bytes) -> RiskParams:
    """Inverse of `encode_params` (formats 1 and 2); refuses anything that is not exactly a canonical
    encoding, so a format-2 payload of an RRA-1-shaped set is refused (its canonical form is format 1)."""
    if len(data) > MAX_ENCODED_BYTES:
        raise InvalidParams("encoding", "too large")
    if not data.startswith(MAGIC):
        raise InvalidParams("encoding", "bad magic")
    version = int.from_bytes(data[len(MAGIC):len(MAGIC) + 2], "big")
    if len(data) < len(MAGIC) + 2 or version not in (FORMAT_V1, FORMAT_VERSION):
        raise InvalidParams("encoding", "unsupported format version")
    reader = Reader(data, len(MAGIC) + 2, V1_FIXED_SCALE if version == FORMAT_V1 else FIXED_SCALE)
    top = reader.value()
    if reader.pos != len(data):
        raise InvalidParams("encoding", "trailing bytes")
    if not isinstance(top, dict):
        raise InvalidParams("encoding", "expected a map of fields")
    if version == FORMAT_V1:
        top = _decode_v1_fields(top)
    elif set(top) != set(FIELD_NAMES):
        raise InvalidParams("encoding", "field set differs from RiskParams")
    try:
        kwargs = dict(top, underlyings=tuple(top["underlyings"]),
                      correlation_groups=tuple((tuple(g["members"]), g["credit"]) for g in top["correlation_groups"]))
        if version == FORMAT_VERSION:
            kwargs["scenarios"] = tuple(Scenario(**s) for s in top["scenarios"])
            kwargs["risk_cancelling"] = tuple(top["risk_cancelling"].items())
        for name in (V1_PAIR_FIELDS if version == FORMAT_V1 else PAIR_FIELDS):
            kwargs[name] = tuple(top[name].items())
        params = RiskParams(**kwargs)
    except (TypeError, KeyError, AttributeError) as exc:
        raise InvalidParams("encoding", f"malformed structure ({exc})") from exc
    if encode_params(params) != data:
        raise InvalidParams("encoding", "not canonical")
    return params


# ---------------------------------------------------------------------------------------------
# overrides (the what-if `params` object, `clearingd gov propose --params-file`)

GRID_KEYS = ("price_steps", "extreme_k", "extreme_weight")
"""RRA-1 grid generator keys of an override: without `scenarios`, any of them regenerates the RRA-1 grid
(`compute_rra1_scenarios`, missing values from RRA-1) with `price_steps` as its divisor."""
_GRID_BOUNDS = {"price_steps": INT_BOUNDS["price_steps"], "extreme_k": Bound(1, 100)}


def _override_scenarios(value: Any) -> tuple[Any, ...]:
    if not isinstance(value, (list, tuple)):
        raise InvalidParams("scenarios", "expected a list of {name, shock, vol, weight}")
    if len(value) > MAX_SCENARIOS:
        raise InvalidParams("scenarios", f"more than {MAX_SCENARIOS} scenarios")
    out = []
    for i, s in enumerate(value):
        if not isinstance(s, Mapping) or not {"name", "shock", "vol"} <= set(s) <= {"name", "shock", "vol", "weight"}:
            raise InvalidParams(f"scenarios[{i}]", "expected the keys name, shock, vol and optionally weight")
        out.append(Scenario(s["name"], s["shock"], s["vol"], s.get("weight", 1.0)))
    return tuple(out)


def _override_value(name: str, base_value: Any, value: Any) -> Any:
    if name in PAIR_FIELDS or name == "risk_cancelling":
        if not isinstance(value, Mapping):
            raise InvalidParams(name, "expected an object of per-key values")
        merged = {**dict(base_value), **dict(value)}
        return tuple((k, v) for k, v in merged.items() if v is not None)
    if name == "scenarios":
        return _override_scenarios(value)
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


def _grid_from_keys(base: RiskParams, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The `scenarios` and `price_steps` changes of the RRA-1 grid generator keys (bounds checked first)."""
    values: dict[str, Any] = {"price_steps": base.price_steps, "extreme_k": 6, "extreme_weight": 0.35}
    for key in GRID_KEYS:
        if key in overrides:
            value = overrides[key]
            if key in _GRID_BOUNDS:
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                check_int(key, value, _GRID_BOUNDS[key])
            else:
                check_bounded(key, value, Bound(0.0, 1.0))
            values[key] = value
    return {"price_steps": values["price_steps"],
            "scenarios": compute_rra1_scenarios(values["price_steps"], values["extreme_k"], values["extreme_weight"])}


def params_with_overrides(base: RiskParams, overrides: Mapping[str, Any]) -> RiskParams:
    """`base` with the named fields replaced (per-key merge for per-underlying/per-asset maps, where a null
    value removes the key; when `underlyings` changes, the base's entries of removed underlyings are
    dropped from the per-underlying maps and `risk_cancelling`; the scenario list is replaced whole;
    `GRID_KEYS` regenerate the RRA-1 grid).

    Raises `InvalidParams` naming an unknown key or the first invalid field of the result.
    """
    if not isinstance(overrides, Mapping):
        raise InvalidParams("params", "expected an object")
    changes: dict[str, Any] = {}
    if "scenarios" not in overrides and any(k in overrides for k in GRID_KEYS):
        changes.update(_grid_from_keys(base, overrides))
    for name, value in overrides.items():
        if name in GRID_KEYS and name not in FIELD_NAMES:
            if "scenarios" in overrides:
                raise InvalidParams(str(name), "an RRA-1 grid key next to an explicit scenario list")
            continue
        if name not in FIELD_NAMES:
            raise InvalidParams(str(name)[:MAX_NAME_CHARS + 8], "unknown parameter")
        if name not in changes:
            changes[name] = _override_value(name, getattr(base, name), value)
    if "underlyings" in changes:
        kept = set(changes["underlyings"])
        for name in (*PER_UNDERLYING, "risk_cancelling"):
            pairs = changes.get(name, getattr(base, name))
            changes[name] = tuple((k, v) for k, v in pairs if (v if name == "risk_cancelling" else k) in kept
                                  or (k, v) in dict(overrides.get(name) or {}).items())
    try:
        params = dataclasses.replace(base, **changes)
    except TypeError as exc:
        raise InvalidParams("params", f"malformed override ({exc})") from exc
    validate_params(params)
    return params
