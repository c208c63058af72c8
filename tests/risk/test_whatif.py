"""What-if documents: the vectors under tests/vectors/risk, one refusal test per bad-input class, and the
version-2 inputs and outputs."""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from risk.bounded_json import compute_nesting_depth, strip_strings
from risk.errors import InvalidInput
from risk.params import MAX_NAME_CHARS
from risk.whatif import (
    MAX_FORWARDS,
    MAX_KEYS,
    MAX_POSITIONS,
    V2_OUTPUT_KEYS,
    WHATIF_JSON_LIMITS,
    load_whatif_json,
    parse_whatif,
    simulate_whatif,
)
from tests.risk.helpers import SPEC_DOCUMENT

VECTORS = sorted((Path(__file__).resolve().parents[1] / "vectors" / "risk").glob("*.json"))
OUTPUT_KEYS = [
    "initial_margin", "maintenance_margin", "equity", "free_collateral", "health", "liquidatable",
    "scan_loss_by_underlying", "separate_scan_loss", "joint_scan_loss", "correlated_margin",
    "short_option_minimum", "risk_array", "worst_scenario", "isolated_margins", "capital_efficiency_ratio",
    "collateral_value", "collateral_value_after_haircut", "positions_mtm", "greeks", "var99", "es99",
    "liquidation",
]


def assert_matches(got: Any, want: Any, path: str) -> None:
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), path
        for k in want:
            assert_matches(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_matches(g, w, f"{path}[{i}]")
    elif isinstance(want, bool) or want is None or (isinstance(want, int) and not isinstance(got, float)):
        assert got == want and type(got) is type(want), path
    else:
        assert abs(got - want) <= 1e-9 * max(abs(want), 1.0), (path, got, want)


@pytest.mark.parametrize("vector", VECTORS, ids=[v.stem for v in VECTORS])
def test_vector(vector: Path) -> None:
    case = json.loads(vector.read_text())
    out = simulate_whatif(parse_whatif(case["document"]))
    assert set(case["expected"]) <= set(out)
    for key, want in case["expected"].items():
        assert_matches(out[key], want, key)


def test_output_has_exactly_the_spec_keys_and_is_json() -> None:
    out = simulate_whatif(parse_whatif(SPEC_DOCUMENT))
    assert list(out) == OUTPUT_KEYS
    assert set(out["greeks"]) == {"delta_by_underlying", "dollar_delta", "gamma", "vega", "theta"}
    assert len(out["risk_array"]) == 23
    json.dumps(out, allow_nan=False)


def test_params_absent_or_null_is_rra1() -> None:
    doc = copy.deepcopy(SPEC_DOCUMENT)
    del doc["params"]
    assert simulate_whatif(parse_whatif(doc)) == simulate_whatif(parse_whatif(SPEC_DOCUMENT))


def mutate(path: list[Any], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(SPEC_DOCUMENT)
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


_DELETE = object()


def refused(doc: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        parse_whatif(doc)
    return info.value


def test_invalid_unknown_kind() -> None:
    assert refused(mutate(["positions", 2, "kind"], "swap")).field == "positions[2].kind"


def test_invalid_unknown_underlying() -> None:
    assert refused(mutate(["positions", 3, "underlying"], "SOL")).field == "positions[3].underlying"


def test_invalid_missing_forward() -> None:
    err = refused(mutate(["positions", 1, "days_to_expiry"], 60))
    assert err.field == "positions[1].days_to_expiry" and "missing forward" in err.reason


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "1", None, True])
def test_invalid_non_finite_or_non_number(bad: Any) -> None:
    assert refused(mutate(["positions", 0, "quantity"], bad)).field == "positions[0].quantity"
    assert refused(mutate(["market", "spot", "BTC"], bad)).field == "market.spot.BTC"


@pytest.mark.parametrize("bad", [0, -1.0])
def test_invalid_negative_or_zero_price(bad: float) -> None:
    assert refused(mutate(["market", "spot", "BTC"], bad)).field == "market.spot.BTC"
    assert refused(mutate(["market", "forwards", 0, "price"], bad)).field == "market.forwards[0].price"
    assert refused(mutate(["market", "asset_prices", "USDC"], bad)).field == "market.asset_prices.USDC"


@pytest.mark.parametrize("bad", [0, -0.2])
def test_invalid_vol(bad: float) -> None:
    assert refused(mutate(["positions", 0, "vol"], bad)).field == "positions[0].vol"


@pytest.mark.parametrize("bad", [0, -110000])
def test_invalid_strike(bad: float) -> None:
    assert refused(mutate(["positions", 0, "strike"], bad)).field == "positions[0].strike"


def test_invalid_negative_days() -> None:
    assert refused(mutate(["positions", 1, "days_to_expiry"], -1)).field == "positions[1].days_to_expiry"
    assert refused(mutate(["market", "forwards", 0, "days_to_expiry"], -3)).field == "market.forwards[0].days_to_expiry"


def test_invalid_negative_collateral() -> None:
    assert refused(mutate(["collateral", "BTC"], -0.1)).field == "collateral.BTC"


def test_invalid_unknown_collateral_asset() -> None:
    assert refused(mutate(["collateral", "DOGE"], 5)).field == "collateral.DOGE"


def test_invalid_unknown_param() -> None:
    err = refused(mutate(["params"], {"psr": {"BTC": 0.1}}))
    assert err.field == "params.psr" and "unknown" in err.reason


def test_invalid_param_value() -> None:
    assert refused(mutate(["params"], {"maintenance_factor": 2})).field == "params.maintenance_factor"


def test_invalid_option_right_and_missing_fields() -> None:
    assert refused(mutate(["positions", 0, "right"], "straddle")).field == "positions[0].right"
    assert refused(mutate(["positions", 0, "vol"], _DELETE)).field == "positions[0].vol"
    assert refused(mutate(["market", "spot"], _DELETE)).field == "market.spot"


def test_invalid_structure() -> None:
    assert refused([]).field == "document"
    assert refused(mutate(["positions"], {"a": 1})).field == "positions"
    assert refused(mutate(["positions", 0, "colour"], "red")).field == "positions[0].colour"
    assert refused(mutate(["extra"], 1)).field == "extra"


# ---------------------------------------------------------------------------------------------
# bounded JSON text (the public API's and the CLI's only way from text to a document)


def load_refused(text: str | bytes) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        load_whatif_json(text, "document")
    assert info.value.field == "document"
    return info.value


@pytest.mark.parametrize("text", [
    "[" * 200_000,  # the reproduction: 200 KB of [
    '{"a":' * 40_000,
    '{"params": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "[" * (WHATIF_JSON_LIMITS.max_depth + 1) + "]" * (WHATIF_JSON_LIMITS.max_depth + 1),
    '["x", "\\\\"' + ", [" * 50 + "]" * 50 + "]",  # an escaped backslash ends the string before the brackets
])
def test_invalid_deep_nesting_is_refused_before_parsing(text: str) -> None:
    assert "nested deeper than" in load_refused(text).reason


def test_nesting_inside_strings_is_not_counted() -> None:
    max_depth = WHATIF_JSON_LIMITS.max_depth
    doc = {"positions": [], "market": {"spot": {"[" * 100 + '\\"{{{': 1.0}}, "collateral": {}}
    assert load_whatif_json(json.dumps(doc), "document") == doc
    nested: Any = []
    for _ in range(max_depth - 2):
        nested = [nested]
    assert depth_of({"a": nested}) == max_depth  # exactly at the bound
    assert load_whatif_json(json.dumps({"a": nested}), "document") == {"a": nested}


json_values = st.recursive(st.none() | st.booleans() | st.integers(-10**30, 10**30) | st.text(max_size=8),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                           max_leaves=30)


def depth_of(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(value=json_values)
def test_linear_scan_depth_equals_the_parsed_depth(value: Any) -> None:
    text = json.dumps(value, ensure_ascii=False)
    assert compute_nesting_depth(strip_strings(text)) == depth_of(value)


@pytest.mark.parametrize(("text", "reason"), [
    ('{"collateral": {"USDC": 1e400}}', "outside the float64 range"),
    ('{"collateral": {"USDC": -1e400}}', "outside the float64 range"),
    ('{"collateral": {"USDC": ' + "9" * 10_000 + "}}", "number token of 10000 characters"),
    ('{"collateral": {"USDC": 1' + "0" * 40 + "}}", "number token of 41 characters"),
    ('{"collateral": {"USDC": NaN}}', "NaN is not a JSON number"),
    ('{"collateral": {"USDC": Infinity}}', "Infinity is not a JSON number"),
    ('{"collateral": {"USDC": -Infinity}}', "-Infinity is not a JSON number"),
    ("{not json", "invalid JSON"),
    ("[1]", "must be a JSON object"),
    (b"\xff\xfe{}", "not UTF-8"),
    ("{" + " " * (WHATIF_JSON_LIMITS.max_bytes) + "}", "larger than"),
])
def test_invalid_json_text_names_the_reason(text: str | bytes, reason: str) -> None:
    assert reason in load_refused(text).reason


def test_negative_zero_and_long_but_bounded_numbers_parse() -> None:
    doc = load_whatif_json('{"a": -0, "b": -0.0, "c": 1' + "0" * 39 + ', "d": 1e-400}', "document")
    assert doc == {"a": 0, "b": 0.0, "c": 10**39, "d": 0.0} and math.copysign(1.0, doc["b"]) == -1.0


def test_hostile_quotes_and_backslashes_scan_in_linear_time() -> None:
    """Each unterminated string runs to the end of the text: no rescan per quote (a quadratic scan of
    these 256 KB would take minutes)."""
    size = WHATIF_JSON_LIMITS.max_bytes // 2 - 2
    for text in ('"' + '\\"' * size, '["' + "\\" * (2 * size), '"' * (2 * size)):
        started = time.monotonic()
        load_refused(text)
        assert time.monotonic() - started < 5.0


# ---------------------------------------------------------------------------------------------
# counts and magnitudes of the document


def many(n: int) -> dict[str, float]:
    return {f"A{i}": 1.0 for i in range(n)}


@pytest.mark.parametrize(("path", "value", "field"), [
    (["positions"], [SPEC_DOCUMENT["positions"][2]] * (MAX_POSITIONS + 1), "positions"),
    (["market", "forwards"], [{"underlying": "BTC", "days_to_expiry": d, "price": 1.0} for d in range(MAX_FORWARDS + 1)],
     "market.forwards"),
    (["market", "spot"], many(MAX_KEYS + 1), "market.spot"),
    (["market", "asset_prices"], many(MAX_KEYS + 1), "market.asset_prices"),
    (["collateral"], many(MAX_KEYS + 1), "collateral"),
    (["positions", 0, "underlying"], "B" * (MAX_NAME_CHARS + 1), "positions[0].underlying"),
    (["positions", 0, "vol"], 10.000001, "positions[0].vol"),
    (["positions", 0, "strike"], 10**400, "positions[0].strike"),
    (["positions", 0, "strike"], 1.1e12, "positions[0].strike"),
    (["positions", 0, "days_to_expiry"], 36_501, "positions[0].days_to_expiry"),
    (["positions", 2, "quantity"], -1.0000001e12, "positions[2].quantity"),
    (["positions", 2, "quantity"], -(10**40), "positions[2].quantity"),
    (["market", "spot", "BTC"], 1e-13, "market.spot.BTC"),
    (["market", "forwards", 0, "price"], 2e12, "market.forwards[0].price"),
    (["collateral", "USDC"], 1.5e15, "collateral.USDC"),
])
def test_invalid_counts_and_magnitudes_name_the_field(path: list[Any], value: Any, field: str) -> None:
    err = refused(mutate(path, value))
    assert err.field == field, err


def test_documents_at_the_bounds_are_computed() -> None:
    doc = mutate(["positions"], [SPEC_DOCUMENT["positions"][2]] * MAX_POSITIONS)
    doc["collateral"] = {"USDC": 1e15}
    doc["positions"][0] = {**doc["positions"][0], "quantity": 1e12}
    out = simulate_whatif(parse_whatif(doc))
    assert len(out["isolated_margins"]) == MAX_POSITIONS and out["initial_margin"] > 0
    assert simulate_whatif(parse_whatif(mutate(["positions", 0, "vol"], 10.0)))["initial_margin"] > 0


# ---------------------------------------------------------------------------------------------
# version 2 (docs/risk_v2.md section 7)

V2_DOCUMENT: dict[str, Any] = {
    "version": 2,
    "market": {
        "spot": {"BTC": 100000.0, "ETH": 3000.0},
        "spot_confidence": {"BTC": 0.98},
        "stable_price": 0.97,
        "forwards": [
            {"underlying": "BTC", "days_to_expiry": 30, "price": 100400.0, "rate": 0.05, "confidence": 0.9,
             "svi": {"a": 0.02, "b": 0.05, "rho": -0.3, "m": 0.0, "sigma": 0.1, "forward": 100400.0, "tau": 30 / 365}},
            {"underlying": "BTC", "days_to_expiry": 0.01, "price": 100010.0, "fixed": 50000.0},
        ],
        "perps": {"BTC": {"mark": 100050.0, "confidence": 0.9}},
        "asset_prices": {"USDC": 1.0, "BTC": 100000.0},
        "asset_confidence": {"BTC": 0.99},
    },
    "positions": [
        {"kind": "option", "underlying": "BTC", "days_to_expiry": 30, "strike": 110000, "right": "call",
         "quantity": -1},
        {"kind": "option", "underlying": "BTC", "days_to_expiry": 30, "strike": 90000, "right": "put", "vol": 0.6,
         "quantity": 1},
        {"kind": "perp", "underlying": "BTC", "quantity": 0.5, "unrealised_pnl": 120.0, "funding": -3.5},
    ],
    "collateral": {"USDC": 10000, "BTC": 0.2},
    "cash": -2500.0,
    "params": {"base": "PM2"},
}


def v2(path: list[Any], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(V2_DOCUMENT)
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


def test_v2_output_adds_the_v2_keys_and_reads_every_input() -> None:
    from risk.params import PM2
    from risk.svi import SviSlice, compute_svi_vol

    w = parse_whatif(V2_DOCUMENT)
    assert w.params == PM2 and w.version == 2 and w.cash == -2500.0 + 120.0 - 3.5
    m = w.market
    assert (m.get_rate(("BTC", 30.0)), m.get_expiry_confidence(("BTC", 30.0)), m.stable_price) == (0.05, 0.9, 0.97)
    assert m.get_forward_fixed(("BTC", 0.01)) == 50000.0 and m.perp_marks == {"BTC": 100050.0}
    svi = SviSlice(0.02, 0.05, -0.3, 0.0, 0.1, 100400.0, 30 / 365)
    assert w.positions[0].instrument.vol == compute_svi_vol(110000.0, svi) and w.positions[1].instrument.vol == 0.6
    out = simulate_whatif(w)
    assert list(out) == [*OUTPUT_KEYS, *V2_OUTPUT_KEYS]
    assert list(out["scenario_pnl"]) == [s.name for s in PM2.scenarios]
    assert list(out["scenario_pnl"].values()) == out["risk_array"]
    assert out["free_collateral"] == out["equity"] - out["initial_margin"]
    c = out["contingencies"]
    assert out["maintenance_margin"] == 0.8 * out["requirement"] + c["maintenance"]
    assert c["perp_mm"] == 0.5 * 100000.0 * 0.03 and c["naked_option_mm"] == 100000.0 * 0.003
    assert out["im_factor"] == 1.0 + (0.99 - 0.97) * 4.0  # PM2's stable-depeg IM factor
    assert out["collateral_value"] == 10000.0 / 0.97 + 0.2 * 100000.0 / 0.97
    json.dumps(out, allow_nan=False)


def test_version_1_documents_are_unchanged_and_refuse_v2_keys() -> None:
    assert list(simulate_whatif(parse_whatif({**SPEC_DOCUMENT, "version": 1}))) == OUTPUT_KEYS
    assert refused({**SPEC_DOCUMENT, "cash": 5.0}).field == "cash"
    assert refused(mutate(["market", "stable_price"], 1.0)).field == "market.stable_price"
    assert refused(mutate(["market", "forwards", 0, "rate"], 0.01)).field == "market.forwards[0].rate"
    assert refused(mutate(["positions", 2, "funding"], 1.0)).field == "positions[2].funding"
    assert refused(mutate(["params"], {"base": "PM2"})).field == "params.base"
    assert refused({**SPEC_DOCUMENT, "version": 3}).field == "version"


@pytest.mark.parametrize(("path", "value", "field"), [
    (["market", "forwards", 0, "rate"], math.nan, "market.forwards[0].rate"),
    (["market", "forwards", 0, "rate"], -0.01, "market.forwards[0].rate"),
    (["market", "forwards", 0, "rate"], 2.5, "market.forwards[0].rate"),
    (["market", "forwards", 0, "confidence"], 1.01, "market.forwards[0].confidence"),
    (["market", "forwards", 0, "confidence"], -0.1, "market.forwards[0].confidence"),
    (["market", "spot_confidence", "BTC"], 1.5, "market.spot_confidence.BTC"),
    (["market", "asset_confidence", "BTC"], math.inf, "market.asset_confidence.BTC"),
    (["market", "perps", "BTC", "confidence"], 2, "market.perps.BTC.confidence"),
    (["market", "perps", "BTC", "mark"], 0, "market.perps.BTC.mark"),
    (["market", "perps", "BTC", "colour"], 1, "market.perps.BTC.colour"),
    (["market", "stable_price"], 0.0, "market.stable_price"),
    (["market", "forwards", 1, "fixed"], 100011.0, "market.forwards[1].fixed"),
    (["market", "forwards", 1, "fixed"], -1.0, "market.forwards[1].fixed"),
    (["market", "forwards", 0, "svi", "a"], -0.05, "market.forwards[0].svi"),
    (["market", "forwards", 0, "svi", "rho"], 1.0, "market.forwards[0].svi.rho"),
    (["market", "forwards", 0, "svi", "b"], -0.1, "market.forwards[0].svi.b"),
    (["market", "forwards", 0, "svi", "tau"], 0, "market.forwards[0].svi.tau"),
    (["market", "forwards", 0, "svi", "sigma"], math.nan, "market.forwards[0].svi.sigma"),
    (["market", "forwards", 0, "svi"], _DELETE, "positions[0].vol"),
    (["positions", 2, "unrealised_pnl"], math.nan, "positions[2].unrealised_pnl"),
    (["positions", 0, "funding"], 1.0, "positions[0].funding"),
    (["cash"], "-5", "cash"),
    (["params", "base"], "PM3", "params.base"),
    (["params", "scenarios"], [], "params.scenarios"),
    (["params", "scenarios"], [{"name": "x", "shock": math.nan, "vol": "up"}], "params.scenarios[0].shock"),
    (["params", "scenarios"], [{"name": "l", "shock": 0, "vol": "linear"}, {"name": "l2", "shock": 0, "vol": "linear"}],
     "params.scenarios[1].vol"),
])
def test_invalid_v2_inputs_name_the_field(path: list[Any], value: Any, field: str) -> None:
    err = refused(v2(path, value))
    assert err.field == field, err
