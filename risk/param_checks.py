"""Admission check of a risk parameter set: `validate_params` and the explicit bound of every field.

Every field has a range (`INT_BOUNDS`, `FIXED_BOUNDS`, `KEYED_BOUNDS`, `SCENARIO_BOUNDS`) and every
collection a count limit (`MAX_UNDERLYINGS`, `MAX_ASSETS`, `MAX_SCENARIOS`, `MAX_NAME_CHARS`), so no
admitted set makes the engine's work unbounded (at most 65 scenarios, 10,000 tail samples) or leaves
float64 range. Cross-field rules: every scenario and basis move keeps every price > 0; at most one
linear-skew and one abs-skew scenario, each without a spot move; `maintenance_factor <= im_factor` (so
the IM surplus never exceeds the MM surplus); per asset `mm_haircut + im_haircut <= 1`; a risk-cancelling
asset names a listed underlying. Every refusal is `InvalidParams(field, reason)` with the field's path
(`scenarios[3].shock`, `im_haircuts.BTC`, ...). Pure; nothing is persisted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from risk.errors import InvalidParams
from risk.param_codec import INT64_MAX, check_fixed, is_number

if TYPE_CHECKING:
    from risk.params import RiskParams


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


VOL_MODES = ("none", "up", "down", "linear", "abs")
"""Vol mode of a scenario: unchanged, shocked up/down (relative, by time to expiry), linear or abs skew."""
SKEW_MODES = ("linear", "abs")

INT_BOUNDS: dict[str, Bound] = {
    "version": Bound(1, INT64_MAX),
    "price_steps": Bound(1, 10),  # the divisor of the scenario shocks
    "es_samples": Bound(1, 10_000),  # ES-1 revalues every position N times
    "use_rates": Bound(0, 1),  # 1: pricing and discounting take the market's rates; 0: every rate is 0
}
"""Integer fields: closed ranges."""

FIXED_BOUNDS: dict[str, Bound] = {
    "vol_up_coefficient": Bound(0.0, 10.0),
    "vol_down_coefficient": Bound(0.0, 10.0),
    "w_exponent_short": Bound(0.0, 5.0),
    "w_exponent_long": Bound(0.0, 5.0),
    "w_dte_threshold": Bound(0.0, 3650.0, lo_open=True),
    "w_dte_floor": Bound(0.0, 3650.0, lo_open=True),
    "vol_up_floor": Bound(0.0, 10.0),
    "skew_linear_cap": Bound(0.0, 10.0),
    "skew_linear_cap_slope": Bound(-10.0, 10.0),
    "skew_abs_cap": Bound(0.0, 10.0),
    "skew_abs_cap_slope": Bound(-10.0, 10.0),
    "skew_min_k_star": Bound(0.0, 10.0, lo_open=True),
    "skew_width_scale": Bound(0.0, 100.0),
    "skew_vol_static": Bound(-10.0, 10.0),
    "skew_vol_scale": Bound(-10.0, 10.0),
    "look_ahead_days": Bound(0.0, 365.0),
    "discount_long_base": Bound(0.0, 10.0, lo_open=True),
    "discount_long_rate_mult": Bound(0.0, 10.0),
    "discount_long_rate_add": Bound(-1.0, 1.0),
    "discount_short_base": Bound(0.0, 10.0, lo_open=True),
    "discount_short_rate_mult": Bound(0.0, 10.0),
    "discount_short_rate_add": Bound(-1.0, 1.0),
    "basis_shock_up": Bound(0.0, 1000.0),
    "basis_shock_down": Bound(-1000.0, 0.0),
    "basis_add_factor": Bound(0.0, 100.0),
    "basis_mult_factor": Bound(0.0, 100.0),
    "short_option_minimum_rate": Bound(0.0, 1.0),
    "im_factor": Bound(0.0, 10.0, lo_open=True),
    "maintenance_factor": Bound(0.0, 1.0, lo_open=True),
    "peg_loss_threshold": Bound(0.0, 2.0),
    "peg_loss_factor": Bound(0.0, 100.0),
    "perp_mm_rate": Bound(0.0, 1.0),
    "perp_im_rate": Bound(0.0, 1.0),
    "naked_option_mm_rate": Bound(0.0, 1.0),
    "naked_option_im_rate": Bound(0.0, 1.0),
    "default_haircut": Bound(0.0, 1.0, hi_open=True),
    "oracle_confidence_threshold": Bound(0.0, 1.0),
    "oracle_confidence_margin": Bound(0.0, 10.0),
    "liquidation_penalty_rate": Bound(0.0, 1.0, hi_open=True),
    "es_horizon_days": Bound(0.0, 365.0),
    "es_confidence": Bound(0.0, 1.0, lo_open=True, hi_open=True),
}
"""Scalar fractional fields."""

KEYED_BOUNDS: dict[str, Bound] = {
    "price_scan_range": Bound(0.0, 1.0, lo_open=True),
    "sigma_ref": Bound(0.0, 10.0, lo_open=True),
    "haircuts": Bound(0.0, 1.0, hi_open=True),
    "mm_haircuts": Bound(0.0, 1.0),
    "im_haircuts": Bound(0.0, 1.0),
    "correlation_groups": Bound(0.0, 1.0),  # the credit of each group
}
"""Per-underlying, per-asset and per-group values."""

SCENARIO_BOUNDS: dict[str, Bound] = {
    "shock": Bound(-1000.0, 1000.0),  # in steps of PSR_u / price_steps
    "weight": Bound(0.0, 10.0),
}
"""Numeric fields of each scenario."""

PER_UNDERLYING = ("price_scan_range", "sigma_ref")
PER_ASSET = ("haircuts", "mm_haircuts", "im_haircuts")
MAX_UNDERLYINGS = 32
MAX_ASSETS = 64
"""Entries of each per-asset map."""
MAX_SCENARIOS = 65
MAX_NAME_CHARS = 32
"""Length of an underlying, asset or scenario name."""
MAX_MOVE = 10.0
"""Largest relative price move of a scenario (a shocked price at most 11 times the current one)."""


def show(x: int | float) -> str:
    """A number for an error message; a huge integer by its size (str() of it may be refused)."""
    if isinstance(x, int) and x.bit_length() > 64:
        return f"an integer of {x.bit_length()} bits"
    return repr(x)


def check_bounded(field: str, x: object, bound: Bound) -> float:
    if is_number(x) and isinstance(x, int) and not bound.is_inside(x):  # before float(): may be huge
        raise InvalidParams(field, f"{show(x)} outside {bound.describe()}")
    value = check_fixed(field, x)
    if not bound.is_inside(value):
        raise InvalidParams(field, f"{value!r} outside {bound.describe()}")
    return value


def check_int(field: str, x: object, bound: Bound) -> None:
    if not isinstance(x, int) or isinstance(x, bool):
        raise InvalidParams(field, f"expected an integer, got {type(x).__name__}")
    if not bound.is_inside(x):
        raise InvalidParams(field, f"{show(x)} outside {bound.describe()}")


def check_name(field: str, name: object) -> None:
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_CHARS:
        raise InvalidParams(field, f"invalid name {str(name)[:MAX_NAME_CHARS + 8]!r} (1..{MAX_NAME_CHARS} characters)")


def _check_underlyings(p: RiskParams) -> None:
    if not isinstance(p.underlyings, tuple) or not p.underlyings:
        raise InvalidParams("underlyings", "empty")
    if len(p.underlyings) > MAX_UNDERLYINGS:
        raise InvalidParams("underlyings", f"more than {MAX_UNDERLYINGS} underlyings")
    for u in p.underlyings:
        check_name("underlyings", u)
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
        check_bounded(f"{name}.{k}", v, KEYED_BOUNDS[name])
    for u in p.underlyings:
        if u not in keys:
            raise InvalidParams(f"{name}.{u}", "missing for a listed underlying")


def _check_per_asset(p: RiskParams, name: str) -> None:
    pairs = getattr(p, name)
    if len(pairs) > MAX_ASSETS:
        raise InvalidParams(name, f"more than {MAX_ASSETS} assets")
    for asset, h in pairs:
        check_name(name, asset)
        check_bounded(f"{name}.{asset}", h, KEYED_BOUNDS[name])
    if len({a for a, _ in pairs}) != len(pairs):
        raise InvalidParams(name, "duplicate asset")


def _check_asset_maps(p: RiskParams) -> None:
    for name in PER_ASSET:
        _check_per_asset(p, name)
    mm = dict(p.mm_haircuts)
    for asset, im in p.im_haircuts:
        if mm.get(asset, 0.0) + im > 1.0:
            raise InvalidParams(f"im_haircuts.{asset}", "mm_haircut + im_haircut above 1")
    if len(p.risk_cancelling) > MAX_ASSETS:
        raise InvalidParams("risk_cancelling", f"more than {MAX_ASSETS} assets")
    for asset, u in p.risk_cancelling:
        check_name("risk_cancelling", asset)
        if u not in p.underlyings:
            raise InvalidParams(f"risk_cancelling.{asset}", f"unknown underlying {str(u)[:40]!r}")
    if len({a for a, _ in p.risk_cancelling}) != len(p.risk_cancelling):
        raise InvalidParams("risk_cancelling", "duplicate asset")


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
        check_bounded(f"correlation_groups[{i}].credit", credit, KEYED_BOUNDS["correlation_groups"])


def _check_scenarios(p: RiskParams) -> None:
    if not isinstance(p.scenarios, tuple) or not p.scenarios:
        raise InvalidParams("scenarios", "no scenarios")
    if len(p.scenarios) > MAX_SCENARIOS:
        raise InvalidParams("scenarios", f"more than {MAX_SCENARIOS} scenarios")
    names: set[str] = set()
    skews: set[str] = set()
    for i, s in enumerate(p.scenarios):
        where = f"scenarios[{i}]"
        if not all(hasattr(s, key) for key in ("name", "shock", "vol", "weight")):
            raise InvalidParams(where, "expected a scenario {name, shock, vol, weight}")
        check_name(f"{where}.name", s.name)
        if s.name in names:
            raise InvalidParams(f"{where}.name", f"duplicate scenario name {s.name!r}")
        names.add(s.name)
        for key, bound in SCENARIO_BOUNDS.items():
            check_bounded(f"{where}.{key}", getattr(s, key), bound)
        if s.vol not in VOL_MODES:
            raise InvalidParams(f"{where}.vol", f"expected one of {', '.join(VOL_MODES)}, got {str(s.vol)[:40]!r}")
        if s.vol in SKEW_MODES:
            if s.vol in skews:
                raise InvalidParams(f"{where}.vol", f"a second {s.vol}-skew scenario (at most one)")
            skews.add(s.vol)
            if s.shock != 0.0:
                raise InvalidParams(f"{where}.shock", f"a {s.vol}-skew scenario moves no price (shock must be 0)")


def _check_moves(p: RiskParams) -> None:
    """Every scenario and basis move keeps every price > 0 and at most `MAX_MOVE` above."""
    shocks = [(f"scenarios[{i}].shock", s.name, s.shock) for i, s in enumerate(p.scenarios)]
    shocks += [("basis_shock_up", "basis up", p.basis_shock_up), ("basis_shock_down", "basis down", p.basis_shock_down)]
    for u, psr in p.price_scan_range:
        for field, name, shock in shocks:
            move = shock * psr / p.price_steps
            if move <= -1.0:
                where = f"price_scan_range.{u}" if field.startswith("scenarios") else field
                raise InvalidParams(where, f"scenario {name!r} moves {u} by {move:.6g}: price reaches zero")
            if move > MAX_MOVE:
                raise InvalidParams(field, f"scenario {name!r} moves {u} by {move:.6g} (at most {MAX_MOVE:g})")


def validate_params(p: RiskParams) -> None:
    """Raise `InvalidParams(field, reason)` unless `p` is admissible and exactly encodable.

    Governance proposals and what-if overrides are admitted by this one check."""
    for name, bound in INT_BOUNDS.items():
        check_int(name, getattr(p, name), bound)
    _check_underlyings(p)
    for name in PER_UNDERLYING:
        _check_per_underlying(p, name)
    _check_scenarios(p)
    for name, bound in FIXED_BOUNDS.items():
        check_bounded(name, getattr(p, name), bound)
    _check_moves(p)
    if p.maintenance_factor > p.im_factor:
        raise InvalidParams("maintenance_factor", f"{p.maintenance_factor!r} above im_factor {p.im_factor!r}")
    _check_asset_maps(p)
    _check_groups(p)
