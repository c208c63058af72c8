"""The canonical parameter encoding keeps RRA-1 byte for byte: an RRA-1-shaped set (RISK_SPEC.md's grid,
every v2 term neutral, fractions at 1e-9) is encoded in format 1, the encoding from before risk v2, so its
params hash and every state digest that covers it are what they were; anything else is format 2. Payloads
written before v2 (format 1) decode again.

The vectors below were computed by the code before risk v2 (the commit that merged the CPU-determinism
work), not by this code.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridges.statecodec import compute_inputs_digest, compute_state_digest
from governance.params import compute_params_hash
from risk.errors import InvalidParams
from risk.param_codec import FIXED_SCALE
from risk.params import PM2, RRA1, Scenario, compute_rra1_scenarios, decode_params, encode_params

RRA1_PARAMS_HASH_V1 = "2f0495f2c93e3499e7a29387e60bef1a86f71fd52a1e62ebcf794bc4997bf277"
"""compute_params_hash(RRA1) before risk v2."""
MM_075_PAYLOAD_V1 = bytes.fromhex(
    "525241504152414d0001050000001600000012636f7272656c6174696f6e5f67726f75707304000000010500000002000000"
    "06637265646974020000000029b92700000000076d656d626572730400000002030000000342544303000000034554480000"
    "000f64656661756c745f6861697263757402000000001dcd65000000000d65735f636f6e666964656e636502000000003b02"
    "33800000000f65735f686f72697a6f6e5f646179730200000000773594000000000a65735f73616d706c6573010000000000"
    "0003e80000000965787472656d655f6b0100000000000000060000000e65787472656d655f77656967687402000000001"
    "4dc9380000000086861697263757473050000000300000003425443020000000008f0d1800000000345544802000000000b"
    "ebc2000000000455534443020000000000000000000000186c69717569646174696f6e5f70656e616c74795f7261746502"
    "00000000004c4b400000000f6c6f6f6b5f61686561645f6461797302000000003b9aca00000000126d61696e74656e616e63"
    "655f666163746f7202000000002cb417800000001070726963655f7363616e5f72616e676505000000020000000342544302"
    "0000000008f0d1800000000345544802000000000bebc2000000000b70726963655f737465707301000000000000000300000"
    "01973686f72745f6f7074696f6e5f6d696e696d756d5f72617465020000000000989680000000097369676d615f72656605"
    "0000000200000003425443020000000023c346000000000345544802000000002faf08000000000b756e6465726c79696e67"
    "730400000002030000000342544303000000034554480000000776657273696f6e0100000000000000010000001476"
    "6f6c5f646f776e5f636f656666696369656e7402000000000ee6b28000000012766f6c5f75705f636f656666696369656e74"
    "02000000001dcd65000000000f775f6474655f7468726573686f6c640200000006fc23ac000000000f775f6578706f6e656e"
    "745f6c6f6e67020000000007bfa48000000010775f6578706f6e656e745f73686f7274020000000011e1a300"
)
"""encode_params(RRA1 with maintenance_factor 0.75) before risk v2: a parameter proposal of that time."""
MM_075_HASH_V1 = "3b78cb0b8ca34d04bf8bb27041d10da2a2d140e29a69fbe57fc0da107ca3aa6b"
STATE_DIGEST_V1 = "11e721db5b62083f2fca6e3e3feed44f1c7bddb465e7ed4ff1a5859551bcdc47"
"""compute_state_digest(7, 1, 42, inputs, compute_params_hash(RRA1), 0x33.., 10004) before risk v2."""


def _format(payload: bytes) -> int:
    return int.from_bytes(payload[8:10], "big")


def test_rra1_params_hash_and_state_digest_are_those_before_v2() -> None:
    assert _format(encode_params(RRA1)) == 1
    assert compute_params_hash(RRA1).hex() == RRA1_PARAMS_HASH_V1
    inputs = compute_inputs_digest([(31337, 120, b"\x11" * 32), (31338, 95, b"\x22" * 32)])
    digest = compute_state_digest(7, 1, 42, inputs, compute_params_hash(RRA1), b"\x33" * 32, 10004)
    assert digest.hex() == STATE_DIGEST_V1


def test_a_payload_written_before_v2_decodes_to_the_same_set_and_hash() -> None:
    params = decode_params(MM_075_PAYLOAD_V1)
    assert params == dataclasses.replace(RRA1, maintenance_factor=0.75)
    assert encode_params(params) == MM_075_PAYLOAD_V1
    assert compute_params_hash(params).hex() == MM_075_HASH_V1


@pytest.mark.parametrize("change", [
    {"vol_up_floor": 0.3},
    {"im_factor": 1.25},
    {"mm_haircuts": (("BTC", 0.02),)},
    {"maintenance_factor": 0.8 + 1e-12},  # not a multiple of 1e-9
    {"scenarios": (*RRA1.scenarios[:-1], Scenario("extreme +6", 6.0, "up", 0.35))},
])
def test_sets_format_1_cannot_express_are_format_2_and_round_trip(change: dict[str, object]) -> None:
    params = dataclasses.replace(RRA1, **change)  # type: ignore[arg-type]
    payload = encode_params(params)
    assert _format(payload) == 2
    assert decode_params(payload) == params
    assert compute_params_hash(params) != compute_params_hash(RRA1)


def test_pm2_is_format_2_and_a_regenerated_rra1_grid_stays_format_1() -> None:
    assert _format(encode_params(PM2)) == 2
    wide = dataclasses.replace(RRA1, price_steps=4, scenarios=compute_rra1_scenarios(4, 8, 0.25))
    payload = encode_params(wide)
    assert _format(payload) == 1
    assert decode_params(payload) == wide


def test_invalid_format_2_payload_of_an_rra1_shaped_set_is_not_canonical() -> None:
    floor = dataclasses.replace(RRA1, vol_up_floor=0.3)
    raw = b"vol_up_floor"
    def enc(x: float) -> bytes:
        return len(raw).to_bytes(4, "big") + raw + b"\x02" + round(x * FIXED_SCALE).to_bytes(8, "big", signed=True)
    payload = encode_params(floor)
    assert payload.count(enc(0.3)) == 1
    rra1_as_format_2 = payload.replace(enc(0.3), enc(0.0))
    with pytest.raises(InvalidParams, match=r"encoding.*not canonical"):
        decode_params(rra1_as_format_2)


def test_invalid_format_1_payloads_name_the_field() -> None:
    key = b"extreme_k"
    field = len(key).to_bytes(4, "big") + key + b"\x01"
    assert MM_075_PAYLOAD_V1.count(field + (6).to_bytes(8, "big")) == 1
    for bad in (0, 101):
        with pytest.raises(InvalidParams, match="extreme_k"):
            decode_params(MM_075_PAYLOAD_V1.replace(field + (6).to_bytes(8, "big"), field + bad.to_bytes(8, "big")))
    with pytest.raises(InvalidParams, match="unsupported format version"):
        decode_params(MM_075_PAYLOAD_V1[:8] + b"\x00\x03" + MM_075_PAYLOAD_V1[10:])
    with pytest.raises(InvalidParams, match="trailing bytes"):
        decode_params(MM_075_PAYLOAD_V1 + b"\x00")


nine = st.integers(1, 10**9 - 1).map(lambda n: n / 10**9)


@settings(max_examples=60, deadline=None)
@given(mm=nine, som=nine.filter(lambda x: x <= 0.5), psr=st.integers(1, 30).map(lambda n: n / 100),
       steps=st.integers(1, 5), k=st.integers(1, 12), weight=nine, credit=nine)
def test_rra1_shaped_sets_are_format_1_and_round_trip(mm: float, som: float, psr: float, steps: int, k: int,
                                                      weight: float, credit: float) -> None:
    if k * max(psr, 0.2) / steps >= 1.0:  # the extreme moves keep prices > 0
        k = 1
    params = dataclasses.replace(
        RRA1, maintenance_factor=mm, short_option_minimum_rate=som, price_steps=steps,
        price_scan_range=(("BTC", psr), ("ETH", 0.2)), scenarios=compute_rra1_scenarios(steps, k, weight),
        correlation_groups=((("BTC", "ETH"), credit),))
    payload = encode_params(params)
    assert _format(payload) == 1
    assert decode_params(payload) == params
