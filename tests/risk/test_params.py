"""RiskParams: canonical encoding round trip, determinism, refusal of invalid sets and overrides."""

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
    MAX_UNDERLYINGS,
    PAIR_FIELDS,
    RRA1,
    Bound,
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
    assert (RRA1.extreme_k, RRA1.extreme_weight, RRA1.maintenance_factor) == (6, 0.35, 0.8)
    assert (RRA1.es_samples, RRA1.es_horizon_days, RRA1.es_confidence) == (1000, 2.0, 0.99)
    validate_params(RRA1)


def test_encoding_round_trips_and_is_deterministic() -> None:
    data = encode_params(RRA1)
    assert data.startswith(MAGIC)
    assert decode_params(data) == RRA1
    assert encode_params(decode_params(data)) == data
    changed = params_with_overrides(RRA1, {"price_scan_range": {"BTC": 0.123456789}, "version": 2})
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
    ({"maintenance_factor": 1.2}, "maintenance_factor"),
    ({"maintenance_factor": 0.0}, "maintenance_factor"),
    ({"haircuts": (("BTC", 1.0),)}, "haircuts.BTC"),
    ({"haircuts": (("BTC", -0.1),)}, "haircuts.BTC"),
    ({"default_haircut": 1.0}, "default_haircut"),
    ({"correlation_groups": ((("BTC", "SOL"), 0.7),)}, "correlation_groups[0].members"),
    ({"correlation_groups": ((("BTC", "ETH"), 1.5),)}, "correlation_groups[0].credit"),
    ({"correlation_groups": ((("BTC",), 0.5), (("BTC", "ETH"), 0.5))}, "correlation_groups[1].members"),
    ({"extreme_weight": math.inf}, "extreme_weight"),
    ({"es_confidence": 1.0}, "es_confidence"),
    ({"es_samples": 0}, "es_samples"),
    ({"price_steps": 2.5}, "price_steps"),
    ({"version": True}, "version"),
    ({"vol_up_coefficient": 0.1234567891}, "vol_up_coefficient"),
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
                                     "extreme_k": 5.0})
    assert p.get_psr("BTC") == 0.15 and p.get_psr("ETH") == 0.25
    assert p.correlation_groups == () and p.extreme_k == 5 and isinstance(p.extreme_k, int)
    assert RRA1.get_psr("ETH") == 0.20  # the base is untouched


# ---------------------------------------------------------------------------------------------
# explicit bounds of every field (what-if overrides and governance proposals share them)

# Other fields set so that only the field under test decides (the extreme-move rule couples
# price_steps, extreme_k and the scan ranges).
CONTEXT: dict[str, dict] = {
    "price_steps": {"extreme_k": 1},
    "extreme_k": {"price_steps": 10, "price_scan_range": {"BTC": 0.05, "ETH": 0.05}},
    "price_scan_range": {"extreme_k": 1, "price_steps": 1},
}


def override_of(name: str, value: object) -> tuple[dict, str]:
    """The what-if override setting `name` to `value`, and the field an error must name."""
    if name in ("price_scan_range", "sigma_ref", "haircuts"):
        return {name: {"BTC": value}}, f"{name}.BTC"
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


ALL_BOUNDS = {**INT_BOUNDS, **FIXED_BOUNDS, **KEYED_BOUNDS}
EDGES = [(name, value, ok) for name, bound in ALL_BOUNDS.items() for value, ok in edge_values(name, bound)]


def test_every_field_has_an_explicit_bound() -> None:
    assert set(INT_BOUNDS) == set(INT_FIELDS) and set(FIXED_BOUNDS) == set(FIXED_FIELDS)
    assert set(KEYED_BOUNDS) == {*PAIR_FIELDS, "correlation_groups"}
    assert set(FIELD_NAMES) == {*INT_FIELDS, *FIXED_FIELDS, *PAIR_FIELDS, "underlyings", "correlation_groups"}
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
