"""RiskParams: canonical encoding round trip, determinism, refusal of invalid sets and overrides (every
field, the scenario list and the cross-field rules), RRA-1 and PM2 values."""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import pytest

from risk.errors import InvalidParams
from risk.params import (
    FIELD_NAMES,
    FIXED_BOUNDS,
    FIXED_FIELDS,
    FIXED_SCALE,
    INT_BOUNDS,
    INT_FIELDS,
    KEYED_BOUNDS,
    MAGIC,
    MAX_ASSETS,
    MAX_NAME_CHARS,
    MAX_SCENARIOS,
    MAX_UNDERLYINGS,
    PAIR_FIELDS,
    PM2,
    RRA1,
    SCENARIO_BOUNDS,
    Bound,
    Scenario,
    compute_rra1_scenarios,
    decode_params,
    encode_params,
    params_with_overrides,
    validate_params,
)


def test_rra1_values_are_the_spec() -> None:
    assert RRA1.get_psr("BTC") == 0.15 and RRA1.get_psr("ETH") == 0.20
    assert RRA1.get_sigma_ref("BTC") == 0.60 and RRA1.get_sigma_ref("ETH") == 0.80
    assert RRA1.correlation_groups == ((("BTC", "ETH"), 0.70),)
    assert RRA1.get_haircut("USDC") == 0.0 and RRA1.get_haircut("BTC") == 0.15
    assert RRA1.get_haircut("ETH") == 0.20 and RRA1.get_haircut("DOGE") == 0.50
    extreme = RRA1.scenarios[21:]
    assert [(s.shock, s.vol, s.weight) for s in extreme] == [(-6.0, "none", 0.35), (6.0, "none", 0.35)]
    assert (RRA1.price_steps, RRA1.maintenance_factor, RRA1.im_factor) == (3, 0.8, 1.0)
    assert (RRA1.es_samples, RRA1.es_horizon_days, RRA1.es_confidence) == (1000, 2.0, 0.99)
    assert not RRA1.has_expiry_terms() and RRA1.w_dte_floor == 1.0 and RRA1.vol_up_floor == 0.0
    validate_params(RRA1)


def test_pm2_values_are_the_deploy_config() -> None:
    """PM2_SPEC.md section 5, deploy column, and section 3's 33 scenarios."""
    assert len(PM2.scenarios) == 33 and PM2.has_expiry_terms()
    x = [round(1.0 + s.shock, 12) for s in PM2.scenarios]
    assert x[:2] == [1.18, 1.135] and x[22] == 0.82
    assert [(x[i], s.weight) for i, s in enumerate(PM2.scenarios) if s.weight != 1.0] == [
        (0.34, 0.21), (0.67, 0.42), (1.5, 0.2772), (2.0, 0.1386), (3.0, 0.0693), (4.0, 0.0462), (5.0, 0.03465),
        (6.0, 0.02772)]
    assert [s.vol for s in PM2.scenarios[-2:]] == ["linear", "abs"]
    assert (PM2.vol_up_coefficient, PM2.vol_down_coefficient, PM2.vol_up_floor) == (0.5, 0.3, 0.40)
    assert (PM2.discount_long_base, PM2.discount_long_rate_add, PM2.discount_short_base) == (1.05, 0.16, 0.95)
    assert (PM2.basis_shock_up, PM2.basis_shock_down, PM2.basis_add_factor, PM2.basis_mult_factor) == (
        0.045, -0.045, 0.5, 2.0)
    assert (PM2.perp_mm_rate, PM2.perp_im_rate, PM2.naked_option_mm_rate, PM2.naked_option_im_rate) == (
        0.03, 0.01, 0.003, 0.002)
    assert (PM2.peg_loss_threshold, PM2.peg_loss_factor, PM2.oracle_confidence_threshold) == (0.99, 4.0, 0.55)
    assert (PM2.look_ahead_days, PM2.short_option_minimum_rate, PM2.correlation_groups) == (0.0, 0.0, ())
    assert decode_params(encode_params(PM2)) == PM2


def test_encoding_round_trips_and_is_deterministic() -> None:
    data = encode_params(RRA1)
    assert data.startswith(MAGIC)
    assert decode_params(data) == RRA1
    assert encode_params(decode_params(data)) == data
    changed = params_with_overrides(RRA1, {"price_scan_range": {"BTC": 0.123456789012}, "version": 2})
    assert decode_params(encode_params(changed)) == changed
    assert encode_params(changed) != data


def test_encoding_ignores_construction_order() -> None:
    shuffled = dataclasses.replace(RRA1, underlyings=("ETH", "BTC"),
                                   haircuts=(("USDC", 0.0), ("ETH", 0.2), ("BTC", 0.15)))
    assert shuffled == RRA1
    assert encode_params(shuffled) == encode_params(RRA1)


def test_invalid_decode_of_tampered_bytes() -> None:
    data = bytearray(encode_params(RRA1))
    with pytest.raises(InvalidParams):
        decode_params(bytes(data) + b"\x00")
    with pytest.raises(InvalidParams):
        decode_params(b"XXXXXXXX" + bytes(data[8:]))
    with pytest.raises(InvalidParams):
        decode_params(bytes(data[:-3]))


@pytest.mark.parametrize(("change", "field"), [
    ({"price_scan_range": (("BTC", 0.0), ("ETH", 0.2))}, "price_scan_range.BTC"),
    ({"price_scan_range": (("BTC", -0.1), ("ETH", 0.2))}, "price_scan_range.BTC"),
    ({"price_scan_range": (("BTC", math.nan), ("ETH", 0.2))}, "price_scan_range.BTC"),
    ({"price_scan_range": (("BTC", 0.15),)}, "price_scan_range.ETH"),
    ({"sigma_ref": (("BTC", 0.6),)}, "sigma_ref.ETH"),
    ({"price_scan_range": (("BTC", 0.6), ("ETH", 0.2))}, "price_scan_range.BTC"),
    ({"price_scan_range": (("BTC", 1.2), ("ETH", 0.2))}, "price_scan_range.BTC"),
    ({"maintenance_factor": 1.2}, "maintenance_factor"),
    ({"maintenance_factor": 0.0}, "maintenance_factor"),
    ({"haircuts": (("BTC", 1.0),)}, "haircuts.BTC"),
    ({"haircuts": (("BTC", -0.1),)}, "haircuts.BTC"),
    ({"default_haircut": 1.0}, "default_haircut"),
    ({"correlation_groups": ((("BTC", "SOL"), 0.7),)}, "correlation_groups[0].members"),
    ({"correlation_groups": ((("BTC", "ETH"), 1.5),)}, "correlation_groups[0].credit"),
    ({"correlation_groups": ((("BTC",), 0.5), (("BTC", "ETH"), 0.5))}, "correlation_groups[1].members"),
    ({"scenarios": (Scenario("a", 1.0, "none", math.inf),)}, "scenarios[0].weight"),
    ({"es_confidence": 1.0}, "es_confidence"),
    ({"es_samples": 0}, "es_samples"),
    ({"price_steps": 2.5}, "price_steps"),
    ({"version": True}, "version"),
    ({"vol_up_coefficient": 0.1234567890123}, "vol_up_coefficient"),
    ({"maintenance_factor": 0.9, "im_factor": 0.85}, "maintenance_factor"),
    ({"mm_haircuts": (("BTC", 0.6),), "im_haircuts": (("BTC", 0.5),)}, "im_haircuts.BTC"),
    ({"risk_cancelling": (("WBTC", "SOL"),)}, "risk_cancelling.WBTC"),
    ({"scenarios": ()}, "scenarios"),
    ({"scenarios": (Scenario("a", math.nan, "up"),)}, "scenarios[0].shock"),
    ({"scenarios": (Scenario("a", 1.0, "sideways"),)}, "scenarios[0].vol"),
    ({"scenarios": (Scenario("a", 1.0, "up", -0.5),)}, "scenarios[0].weight"),
    ({"scenarios": (Scenario("a", 1.0, "up"), Scenario("a", 2.0, "up"))}, "scenarios[1].name"),
    ({"scenarios": (Scenario("l", 0.0, "linear"), Scenario("l2", 0.0, "linear"))}, "scenarios[1].vol"),
    ({"scenarios": (Scenario("l", 0.5, "linear"),)}, "scenarios[0].shock"),
    ({"scenarios": (Scenario("far", 300.0, "up"),)}, "scenarios[0].shock"),
    ({"scenarios": (Scenario("a", 1.0, "up"),) * (MAX_SCENARIOS + 1)}, "scenarios"),
    ({"basis_shock_down": -30.0}, "basis_shock_down"),
    ({"underlyings": ()}, "underlyings"),
])
def test_invalid_params_are_refused(change: dict, field: str) -> None:
    bad = dataclasses.replace(RRA1, **change)
    with pytest.raises(InvalidParams) as info:
        validate_params(bad)
    assert info.value.field == field
    with pytest.raises(InvalidParams):
        encode_params(bad)


def test_invalid_override_unknown_key() -> None:
    with pytest.raises(InvalidParams) as info:
        params_with_overrides(RRA1, {"price_scan_rnage": {"BTC": 0.1}})
    assert info.value.field == "price_scan_rnage"


def test_invalid_override_value() -> None:
    with pytest.raises(InvalidParams) as info:
        params_with_overrides(RRA1, {"haircuts": {"BTC": 2}})
    assert info.value.field == "haircuts.BTC"


def test_overrides_merge_per_key() -> None:
    p = params_with_overrides(RRA1, {"price_scan_range": {"ETH": 0.25}, "correlation_groups": [],
                                     "extreme_k": 5.0, "mm_haircuts": {"BTC": 0.02}})
    assert p.get_psr("BTC") == 0.15 and p.get_psr("ETH") == 0.25
    assert p.correlation_groups == () and p.scenarios == compute_rra1_scenarios(3, 5, 0.35)
    assert p.get_mm_haircut("BTC") == 0.02 and p.get_mm_haircut("ETH") == 0.0
    assert RRA1.get_psr("ETH") == 0.20  # the base is untouched


def test_rra1_grid_keys_regenerate_the_grid() -> None:
    """The RRA-1 generator keys of a version-1 override: the same grid the RRA-1 engine built."""
    p = params_with_overrides(RRA1, {"price_steps": 2, "extreme_weight": 0.5})
    assert p.price_steps == 2 and len(p.scenarios) == 17
    assert [(s.shock, s.vol) for s in p.scenarios[:3]] == [(-2.0, "down"), (-2.0, "none"), (-2.0, "up")]
    assert [(s.shock, s.weight) for s in p.scenarios[15:]] == [(-6.0, 0.5), (6.0, 0.5)]
    with pytest.raises(InvalidParams) as info:
        params_with_overrides(RRA1, {"extreme_k": 3, "scenarios": []})
    assert info.value.field == "extreme_k"


def test_scenario_list_override_replaces_the_whole_list() -> None:
    tails = [{"name": f"tail {x}", "shock": x, "vol": "up", "weight": 0.1} for x in (-9.0, 9.0, 12.0)]
    p = params_with_overrides(RRA1, {"scenarios": [*(dataclasses.asdict(s) for s in RRA1.scenarios), *tails]})
    assert len(p.scenarios) == 26 and p.scenarios[:23] == RRA1.scenarios and p.scenarios[25].name == "tail 12.0"
    assert decode_params(encode_params(p)) == p and encode_params(p) != encode_params(RRA1)
    reordered = dataclasses.replace(p, scenarios=p.scenarios[::-1])
    assert encode_params(reordered) != encode_params(p)  # the order is the risk array's: it is encoded
    with pytest.raises(InvalidParams) as info:
        params_with_overrides(RRA1, {"scenarios": [{"name": "a", "shock": 1, "vol": "up"}, {"name": "b"}]})
    assert info.value.field == "scenarios[1]"


# ---------------------------------------------------------------------------------------------
# explicit bounds of every field (what-if overrides and governance proposals share them)

# Other fields set so that only the field under test decides (the extreme-move rule couples
# price_steps, extreme_k and the scan ranges).
CONTEXT: dict[str, dict] = {
    "price_steps": {"extreme_k": 1},
    "price_scan_range": {"scenarios": [{"name": "half down", "shock": -1, "vol": "none"}], "price_steps": 2},
    "maintenance_factor": {"im_factor": 1.0},
    "im_factor": {"maintenance_factor": 1e-12},
    "basis_shock_up": {"price_scan_range": {"BTC": 0.001, "ETH": 0.001}},
    "basis_shock_down": {"price_scan_range": {"BTC": 0.001, "ETH": 0.001}},
}


def override_of(name: str, value: object) -> tuple[dict, str]:
    """The what-if override setting `name` to `value`, and the field an error must name."""
    if name in PAIR_FIELDS:
        return {name: {"BTC": value}}, f"{name}.BTC"
    if name in SCENARIO_BOUNDS:
        scenario = {"name": "only", "shock": 0.0, "vol": "none", name: value}
        return {"scenarios": [scenario], "price_scan_range": {"BTC": 1e-3, "ETH": 1e-3}}, f"scenarios[0].{name}"
    if name == "correlation_groups":
        return {name: [{"members": ["BTC", "ETH"], "credit": value}]}, "correlation_groups[0].credit"
    return {name: value}, name


def edge_values(name: str, bound: Bound) -> list[tuple[object, bool]]:
    """(value, admissible) just inside and just outside each end of `bound`."""
    step = 1 if name in INT_BOUNDS else Fraction(1, FIXED_SCALE)

    def num(x: Fraction | int) -> object:
        return int(x) if name in INT_BOUNDS else float(x)

    lo, hi = Fraction(bound.lo), Fraction(bound.hi)
    return [
        (num(lo + step), True) if bound.lo_open else (num(lo), True),
        (num(lo), False) if bound.lo_open else (num(lo - step), False),
        (num(hi - step), True) if bound.hi_open else (num(hi), True),
        (num(hi), False) if bound.hi_open else (num(hi + step), False),
    ]


ALL_BOUNDS = {**INT_BOUNDS, **FIXED_BOUNDS, **KEYED_BOUNDS, **SCENARIO_BOUNDS}
EDGES = [(name, value, ok) for name, bound in ALL_BOUNDS.items() for value, ok in edge_values(name, bound)]


def test_every_field_has_an_explicit_bound() -> None:
    assert set(INT_BOUNDS) == set(INT_FIELDS) and set(FIXED_BOUNDS) == set(FIXED_FIELDS)
    assert set(KEYED_BOUNDS) == {*PAIR_FIELDS, "correlation_groups"}
    assert set(FIELD_NAMES) == {*INT_FIELDS, *FIXED_FIELDS, *PAIR_FIELDS, "underlyings", "correlation_groups",
                                "scenarios", "risk_cancelling"}
    assert set(SCENARIO_BOUNDS) == {f.name for f in dataclasses.fields(Scenario)} - {"name", "vol"}
    for name in FIELD_NAMES:  # RRA-1 itself lies inside every bound
        if name in INT_BOUNDS or name in FIXED_BOUNDS:
            assert ALL_BOUNDS[name].is_inside(getattr(RRA1, name)), name


@pytest.mark.parametrize(("name", "value", "ok"), EDGES, ids=[f"{n}={v!r}" for n, v, _ in EDGES])
def test_params_override_bounds(name: str, value: object, ok: bool) -> None:
    override, field = override_of(name, value)
    overrides = {**CONTEXT.get(name, {}), **override}
    if ok:
        params = params_with_overrides(RRA1, overrides)
        assert decode_params(encode_params(params)) == params
        return
    with pytest.raises(InvalidParams) as info:
        params_with_overrides(RRA1, overrides)
    assert info.value.field == field
    assert "outside" in info.value.reason


@pytest.mark.parametrize(("override", "field"), [
    ({"es_samples": 10**10000}, "es_samples"),
    ({"price_steps": 2**64}, "price_steps"),
    ({"price_steps": 1e300}, "price_steps"),
    ({"extreme_k": 2**64}, "extreme_k"),
    ({"scenarios": [{"name": "a", "shock": 10**400, "vol": "up"}]}, "scenarios[0].shock"),
    ({"scenarios": [{"name": "a", "shock": 1, "vol": "up"}] * 10_000}, "scenarios"),
    ({"sigma_ref": {"BTC": 10**400}}, "sigma_ref.BTC"),
    ({"vol_up_coefficient": -(10**400)}, "vol_up_coefficient"),
    ({"underlyings": [f"U{i}" for i in range(MAX_UNDERLYINGS + 1)]}, "underlyings"),
    ({"underlyings": ["BTC", "ETH", "X" * (MAX_NAME_CHARS + 1)]}, "underlyings"),
    ({"haircuts": {f"A{i}": 0.1 for i in range(MAX_ASSETS + 1)}}, "haircuts"),
    ({"haircuts": {"A" * (MAX_NAME_CHARS + 1): 0.1}}, "haircuts"),
    ({"price_scan_range": {f"U{i}": 0.1 for i in range(1000)}}, "price_scan_range"),
])
def test_invalid_huge_values_and_counts_are_refused_by_name(override: dict, field: str) -> None:
    with pytest.raises(InvalidParams) as info:
        params_with_overrides(RRA1, override)
    assert info.value.field == field


def test_invalid_governance_proposal_beyond_a_bound_is_never_activated() -> None:
    """A proposer that hand-writes canonical bytes with `es_samples` beyond its bound: every node's
    tally (the same `validate_params`) declares the proposal INVALID, naming the field."""
    from governance.lifecycle import ProposalStatus
    from governance.tally import derive_governance_state
    from tests.governance.helpers import GENESIS, WIDE_BTC, make_param_proposal, make_votes

    key = b"es_samples"
    old = len(key).to_bytes(4, "big") + key + b"\x01" + (1000).to_bytes(8, "big", signed=True)
    new = len(key).to_bytes(4, "big") + key + b"\x01" + (10**9).to_bytes(8, "big", signed=True)
    payload = encode_params(WIDE_BTC).replace(old, new)
    assert payload != encode_params(WIDE_BTC)
    state = derive_governance_state(GENESIS, [make_param_proposal(payload=payload)], make_votes(1, [1, 1, 1, 1]), 11)
    assert state.proposals[0].status is ProposalStatus.INVALID
    assert "es_samples" in state.proposals[0].reason and state.proposals[0].params is None
