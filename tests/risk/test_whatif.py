"""What-if documents: the vectors under tests/vectors/risk, and one refusal test per bad-input class."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest

from risk.errors import InvalidInput
from risk.whatif import parse_whatif, simulate_whatif
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
