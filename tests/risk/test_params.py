"""RiskParams: canonical encoding round trip, determinism, refusal of invalid sets and overrides."""

from __future__ import annotations

import dataclasses
import math

import pytest

from risk.errors import InvalidParams
from risk.params import (
    MAGIC,
    RRA1,
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
