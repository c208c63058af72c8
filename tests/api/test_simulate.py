"""SimulateMargin gives exactly what `clearingd margin simulate --json` prints (same function, same
bytes), for the JSON and the structured form, and refuses bad documents naming the same field."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from node.api.errors import get_field_violations
from node.pb.clearing.api.v1 import api_pb2
from risk.whatif import parse_whatif, simulate_whatif
from tests.api.conftest import ApiEnv

REPO = Path(__file__).resolve().parents[2]
DOC = {
    "market": {
        "spot": {"BTC": 100000.0, "ETH": 3000.0},
        "forwards": [{"underlying": "BTC", "days_to_expiry": 30, "price": 100400.0}],
        "asset_prices": {"USDC": 1.0, "BTC": 100000.0, "ETH": 3000.0},
    },
    "positions": [
        {"kind": "option", "underlying": "BTC", "days_to_expiry": 30, "strike": 110000, "right": "call",
         "vol": 0.52, "quantity": -1},
        {"kind": "future", "underlying": "BTC", "days_to_expiry": 30, "quantity": -1},
        {"kind": "perp", "underlying": "BTC", "quantity": 0.5},
        {"kind": "spot", "underlying": "BTC", "quantity": 1},
    ],
    "collateral": {"USDC": 10000, "BTC": 0.2},
    "params": None,
}


def cli_simulate(tmp_path: Path, doc: object) -> subprocess.CompletedProcess:
    path = tmp_path / "whatif.json"
    path.write_text(json.dumps(doc))
    return subprocess.run([sys.executable, "-m", "node.cli.main", "margin", "simulate", str(path), "--json"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


def structured(doc: dict) -> api_pb2.WhatIf:
    m = doc["market"]
    return api_pb2.WhatIf(
        market=api_pb2.WhatIfMarket(
            spot={k: repr(v) for k, v in m["spot"].items()},
            forwards=[api_pb2.WhatIfForward(underlying=f["underlying"], days_to_expiry=str(f["days_to_expiry"]),
                                            price=repr(f["price"])) for f in m["forwards"]],
            asset_prices={k: repr(v) for k, v in m["asset_prices"].items()}),
        positions=[api_pb2.WhatIfPosition(**{k: (v if isinstance(v, str) else repr(v)) for k, v in p.items()})
                   for p in doc["positions"]],
        collateral={k: repr(v) for k, v in doc["collateral"].items()})


def test_simulate_equals_cli_and_simulate_whatif(api_env: ApiEnv, tmp_path: Path) -> None:
    cli = cli_simulate(tmp_path, DOC)
    assert cli.returncode == 0, cli.stderr
    resp = api_env.stub.SimulateMargin(api_pb2.SimulateMarginRequest(whatif_json=json.dumps(DOC)), timeout=60)
    assert resp.result_json + "\n" == cli.stdout
    expected = simulate_whatif(parse_whatif(copy.deepcopy(DOC)))
    assert json.loads(resp.result_json) == json.loads(json.dumps(expected))
    assert resp.initial_margin_micro_usd == round(expected["initial_margin"] * 1_000_000)
    assert resp.maintenance_margin_micro_usd == round(expected["maintenance_margin"] * 1_000_000)
    assert resp.equity_micro_usd == round(expected["equity"] * 1_000_000)
    assert resp.free_collateral_micro_usd == round(expected["free_collateral"] * 1_000_000)
    assert resp.liquidatable == expected["liquidatable"]
    assert resp.worst_scenario == (expected["worst_scenario"] if expected["worst_scenario"] is not None else -1)
    assert resp.initial_margin_micro_usd > 0


def test_structured_whatif_gives_the_same_answer(api_env: ApiEnv) -> None:
    by_json = api_env.stub.SimulateMargin(api_pb2.SimulateMarginRequest(whatif_json=json.dumps(DOC)), timeout=60)
    by_msg = api_env.stub.SimulateMargin(api_pb2.SimulateMarginRequest(whatif=structured(DOC)), timeout=60)
    assert by_msg == by_json


def bad(path: list, value: object) -> dict:
    doc = copy.deepcopy(DOC)
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


@pytest.mark.parametrize("doc", [
    bad(["positions", 0, "kind"], "swap"),
    bad(["positions", 0, "strike"], -5),
    bad(["positions", 0, "vol"], 0),
    bad(["positions", 1, "underlying"], "DOGE"),
    bad(["collateral", "USDC"], -1),
    bad(["market", "spot", "BTC"], 0),
    bad(["positions", 0, "days_to_expiry"], 45),  # no forward for BTC at 45 days
])
def test_invalid_whatif_names_the_same_field_as_the_cli(api_env: ApiEnv, tmp_path: Path, doc: dict) -> None:
    cli = cli_simulate(tmp_path, doc)
    assert cli.returncode == 2  # with --json: the error object on stdout, the same line on stderr
    assert json.loads(cli.stdout) == {"error": cli.stderr.strip().removeprefix("error: "), "exit_code": 2}
    cli_field = cli.stderr.removeprefix("error: ").split(": ", 1)[0]
    with pytest.raises(grpc.RpcError) as err:
        api_env.stub.SimulateMargin(api_pb2.SimulateMarginRequest(whatif_json=json.dumps(doc)), timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in get_field_violations(err.value)] == [cli_field]


@pytest.mark.parametrize(("request_", "field"), [
    (api_pb2.SimulateMarginRequest(), "document"),
    (api_pb2.SimulateMarginRequest(whatif_json="{"), "whatif_json"),
    (api_pb2.SimulateMarginRequest(whatif_json="[1]"), "whatif_json"),
    (api_pb2.SimulateMarginRequest(whatif_json='{"collateral": {"USDC": NaN}}'), "whatif_json"),
    (api_pb2.SimulateMarginRequest(whatif=api_pb2.WhatIf(collateral={"USDC": "ten"})), "whatif.collateral.USDC"),
    (api_pb2.SimulateMarginRequest(whatif=api_pb2.WhatIf(collateral={"USDC": "inf"})), "whatif.collateral.USDC"),
])
def test_invalid_simulate_requests(api_env: ApiEnv, request_: api_pb2.SimulateMarginRequest, field: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        api_env.stub.SimulateMargin(request_, timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in get_field_violations(err.value)] == [field]


HOSTILE = {
    "nesting": "[" * 200_000,
    "huge number": json.dumps(DOC).replace('"USDC": 10000', '"USDC": 1e400'),
    "long integer": json.dumps(DOC).replace('"USDC": 10000', '"USDC": ' + "9" * 5000),
    "nan": json.dumps(DOC).replace('"USDC": 10000', '"USDC": NaN'),
    "unbounded es_samples": json.dumps({**DOC, "params": {"es_samples": 2**62}}),
    "unbounded price_steps": json.dumps({**DOC, "params": {"price_steps": 10**6}}),
    "too many positions": json.dumps({**DOC, "positions": DOC["positions"] * 51}),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_invalid_hostile_document_gives_the_same_message_in_cli_and_api(
        api_env: ApiEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    from node.cli.main import main

    path = tmp_path / "whatif.json"
    path.write_text(HOSTILE[name])
    assert main(["margin", "simulate", str(path), "--json"]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("error: ")
    assert json.loads(out) == {"error": err.strip().removeprefix("error: "), "exit_code": 2}  # --json: on stdout too
    with pytest.raises(grpc.RpcError) as rpc:
        api_env.stub.SimulateMargin(api_pb2.SimulateMarginRequest(whatif_json=HOSTILE[name]), timeout=60)
    assert rpc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    [violation] = get_field_violations(rpc.value)
    cli_field, cli_reason = err.strip().removeprefix("error: ").split(": ", 1)
    assert violation.field == ("whatif_json" if cli_field == "document" else cli_field)
    assert violation.description == cli_reason
