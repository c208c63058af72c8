"""SimulateMargin with version-2 what-if documents (docs/risk_v2.md section 7): the answer of
`clearingd margin simulate --json` for a Derive PM2 case imported with `margin import-derive`, the
structured form with every version-2 field, each scenario's P&L and the contingencies by name in the
response, and refusals naming the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import pytest

from node.api.errors import get_field_violations
from node.pb.clearing.api.v1 import api_pb2
from risk.derive_cases import case_to_whatif
from risk.whatif import parse_whatif, simulate_whatif
from tests.api.conftest import ApiEnv

REPO = Path(__file__).resolve().parents[2]
CASE = REPO / "tests" / "vectors" / "pm2" / "test_32_perps_perp_hedging.json"
SVI_CASE = REPO / "tests" / "vectors" / "pm2" / "test_13_risk_cancelling_btc_covered_call.json"


def text(v: Any) -> str:
    return v if isinstance(v, str) else repr(v)


def structured(doc: dict[str, Any]) -> api_pb2.WhatIf:
    """The message of a version-2 document (every field carried as a decimal string)."""
    m = doc["market"]
    forwards = []
    for f in m["forwards"]:
        svi = api_pb2.WhatIfSvi(**{k: text(v) for k, v in f["svi"].items()}) if "svi" in f else None
        forwards.append(api_pb2.WhatIfForward(svi=svi, **{k: text(v) for k, v in f.items() if k != "svi"}))
    market = api_pb2.WhatIfMarket(
        spot={k: text(v) for k, v in m["spot"].items()}, forwards=forwards,
        asset_prices={k: text(v) for k, v in m["asset_prices"].items()},
        spot_confidence={k: text(v) for k, v in m.get("spot_confidence", {}).items()},
        asset_confidence={k: text(v) for k, v in m.get("asset_confidence", {}).items()},
        perps={u: api_pb2.WhatIfPerp(**{k: text(v) for k, v in p.items()}) for u, p in m.get("perps", {}).items()},
        stable_price=text(m["stable_price"]))
    return api_pb2.WhatIf(
        market=market, positions=[api_pb2.WhatIfPosition(**{k: text(v) for k, v in p.items()})
                                  for p in doc["positions"]],
        collateral={k: text(v) for k, v in doc["collateral"].items()}, params_json=json.dumps(doc["params"]),
        version=2, cash=text(doc["cash"]))


@pytest.mark.parametrize("case", [CASE, SVI_CASE], ids=["perp_hedging", "covered_call_svi"])
def test_v2_document_by_json_and_by_message(api_env: ApiEnv, case: Path) -> None:
    raw = json.loads(case.read_text())
    doc = case_to_whatif(raw)
    expected = simulate_whatif(parse_whatif(json.loads(json.dumps(doc))))
    by_json = api_env.stub.SimulateMargin(api_pb2.SimulateMarginRequest(whatif_json=json.dumps(doc)), timeout=60)
    assert json.loads(by_json.result_json) == json.loads(json.dumps(expected))
    assert [(a.name, a.amount_micro_usd) for a in by_json.scenario_pnl] == [
        (k, round(v * 1_000_000)) for k, v in expected["scenario_pnl"].items()]
    named = {a.name: a.amount_micro_usd for a in by_json.contingencies}
    assert named["oracle"] == round(expected["contingencies"]["oracle"] * 1_000_000)
    assert named["basis_loss"] == round(expected["basis_loss"] * 1_000_000)
    assert by_json.free_collateral_micro_usd == round(raw["Result"]["IM"] * 1_000_000)
    by_msg = api_env.stub.SimulateMargin(api_pb2.SimulateMarginRequest(whatif=structured(doc)), timeout=60)
    assert by_msg == by_json


def test_v1_response_has_no_v2_fields(api_env: ApiEnv) -> None:
    doc = case_to_whatif(json.loads(CASE.read_text()))
    v1 = {"market": {"spot": doc["market"]["spot"], "forwards": [], "asset_prices": {"USDC": 1.0}},
          "positions": [{"kind": "perp", "underlying": "BTC", "quantity": 1}], "collateral": {"USDC": 50000}}
    resp = api_env.stub.SimulateMargin(api_pb2.SimulateMarginRequest(whatif_json=json.dumps(v1)), timeout=60)
    assert list(resp.scenario_pnl) == [] and list(resp.contingencies) == [] and resp.initial_margin_micro_usd > 0


@pytest.mark.parametrize(("change", "field"), [
    (lambda m: setattr(m.market.forwards[0], "rate", "-0.01"), "market.forwards[0].rate"),
    (lambda m: setattr(m.market.forwards[0], "rate", "nan"), "whatif.market.forwards[0].rate"),
    (lambda m: setattr(m.market.forwards[0], "confidence", "1.5"), "market.forwards[0].confidence"),
    (lambda m: setattr(m.market.forwards[0].svi, "a", "-1"), "market.forwards[0].svi"),
    (lambda m: m.market.spot_confidence.__setitem__("BTC", "-0.5"), "market.spot_confidence.BTC"),
    (lambda m: setattr(m, "version", 1), "cash"),  # a version-1 message refuses the version-2 fields
])
def test_invalid_v2_message_names_the_field(api_env: ApiEnv, change: Any, field: str) -> None:
    msg = structured(case_to_whatif(json.loads(SVI_CASE.read_text())))
    change(msg)
    with pytest.raises(grpc.RpcError) as err:
        api_env.stub.SimulateMargin(api_pb2.SimulateMarginRequest(whatif=msg), timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in get_field_violations(err.value)] == [field]
