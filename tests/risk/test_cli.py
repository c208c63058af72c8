"""`clearingd margin simulate FILE [--json]` through the real entry point."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from node.cli.main import main
from risk.whatif import parse_whatif, simulate_whatif
from tests.risk.helpers import SPEC_DOCUMENT


def write(tmp_path: Path, doc: object, name: str = "whatif.json") -> str:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(path)


def test_simulate_json_prints_the_output_object(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["margin", "simulate", write(tmp_path, SPEC_DOCUMENT), "--json"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert json.loads(out) == json.loads(json.dumps(simulate_whatif(parse_whatif(SPEC_DOCUMENT))))


def test_simulate_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["margin", "simulate", write(tmp_path, SPEC_DOCUMENT)]) == 0
    out = capsys.readouterr().out
    assert "initial_margin" in out and "6,160.46" in out and "risk_array:" in out


def test_invalid_document_exits_2_with_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = copy.deepcopy(SPEC_DOCUMENT)
    doc["positions"][0]["strike"] = -5
    assert main(["margin", "simulate", write(tmp_path, doc), "--json"]) == 2
    out, err = capsys.readouterr()
    assert err.strip() == "error: positions[0].strike: -5 outside [1e-12, 1e+12]"
    assert json.loads(out) == {"error": "positions[0].strike: -5 outside [1e-12, 1e+12]", "exit_code": 2}  # --json
    assert main(["margin", "simulate", write(tmp_path, doc)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip() == "error: positions[0].strike: -5 outside [1e-12, 1e+12]"  # text: stderr only


def test_invalid_json_and_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["margin", "simulate", write(tmp_path, "{not json")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: document: invalid JSON")
    assert main(["margin", "simulate", write(tmp_path, '{"market": NaN}')]) == 2
    assert main(["margin", "simulate", str(tmp_path / "absent.json")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "error: document: cannot read" in err


def test_simulate_table_of_a_version_2_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from risk.derive_cases import case_to_whatif

    case = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "pm2" / "test_32_perps_perp_hedging.json")
                      .read_text())
    assert main(["margin", "simulate", write(tmp_path, case_to_whatif(case))]) == 0
    out = capsys.readouterr().out
    assert "contingency.oracle_perp" in out and "90,000.00" in out and "pnl[1.18 up]" in out
    assert "worst_scenario_name" in out and "free_collateral" in out and "-76,506.39" in out
