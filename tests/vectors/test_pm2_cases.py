"""Derive's public PM2 portfolio cases (tests/vectors/pm2, verbatim from derivexyz/v2-core @ 7736900d):
`clearingd margin import-derive CASE` prints a version-2 what-if document built from the case without its
`Result`, and `clearingd margin simulate --json` of it reproduces `Result.IM` as `free_collateral`,
`Result.MM` as `equity - maintenance_margin`, every scenario P&L (Derive's harness tolerance: 1e-8
relative, 1e-8 absolute when a value is below 1e-10) and the contingency breakdown."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from node.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
CASES = sorted((Path(__file__).resolve().parent / "pm2").glob("*.json"))
TOLERANCE = 1e-8


def close(got: float, want: float) -> bool:
    if abs(got) < 1e-10 or abs(want) < 1e-10:
        return abs(got - want) <= TOLERANCE
    return abs(got - want) <= TOLERANCE * abs(want)


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return out


def expected_pnl(result: dict[str, Any]) -> list[float]:
    """Derive's scenario P&Ls in the order of the case's scenario list (regular, tail, skew)."""
    return ([float(x[2]) for x in result["reg_losses"]] + [float(x[2]) for x in result["tail_losses"]]
            + [float(x[1]) for x in result["skew_losses"]])


def test_the_twelve_cases_are_present() -> None:
    assert len(CASES) == 12


@pytest.mark.parametrize("case_path", CASES, ids=[c.stem for c in CASES])
def test_case_reproduces_derive(case_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = json.loads(case_path.read_text())
    result = case.pop("Result")
    stripped = tmp_path / "case.json"
    stripped.write_text(json.dumps(case))  # the case without its Result: nothing is read from it
    doc_text = run_cli(["margin", "import-derive", str(stripped)], capsys)
    assert doc_text == run_cli(["margin", "import-derive", str(case_path)], capsys)  # Result ignored
    doc = json.loads(doc_text)
    assert doc["version"] == 2 and doc["params"]["base"] == "PM2"
    whatif = tmp_path / "whatif.json"
    whatif.write_text(doc_text)
    out = json.loads(run_cli(["margin", "simulate", str(whatif), "--json"], capsys))
    assert close(out["free_collateral"], result["IM"]), (out["free_collateral"], result["IM"])
    assert close(out["equity"] - out["maintenance_margin"], result["MM"])
    pnl = list(out["scenario_pnl"].values())
    assert len(pnl) == len(expected_pnl(result)) == len(case["Parameters"]["Scenarios"])
    for name, got, want in zip(out["scenario_pnl"], pnl, expected_pnl(result), strict=True):
        assert close(got, want), (name, got, want)
    assert out["risk_array"] == pnl
    c = out["contingencies"]
    breakdown = {"ForwardContingency": -out["basis_loss"], "MMPerpCont": -c["perp_mm"], "IMPerpCont": -c["perp_im"],
                 "MMBaseCont": -c["collateral_mm"], "IMBaseCont": -c["collateral_im"],
                 "MMOptionCont": -c["naked_option_mm"], "IMOptionCont": -c["naked_option_im"],
                 "OracleCont": -c["oracle"], "CollateralMTM": out["collateral_value"],
                 "OptionMTM": out["positions_mtm"]}
    for key, got in breakdown.items():
        assert close(got, result[key]), (key, got, result[key])


def test_cli_pipeline_across_processes(tmp_path: Path) -> None:
    """The two commands as a user runs them: separate processes, the document through a pipe."""
    case = CASES[[c.stem for c in CASES].index("test_13_risk_cancelling_btc_covered_call")]
    command = [sys.executable, "-m", "node.cli.main", "margin"]
    imported = subprocess.run([*command, "import-derive", str(case)], cwd=ROOT, capture_output=True, text=True,
                              timeout=120, check=True)
    simulated = subprocess.run([*command, "simulate", "-", "--json"], input=imported.stdout, cwd=ROOT,
                               capture_output=True, text=True, timeout=120, check=True)
    out = json.loads(simulated.stdout)
    result = json.loads(case.read_text())["Result"]
    assert close(out["free_collateral"], result["IM"]) and close(out["equity"] - out["maintenance_margin"], result["MM"])


def test_invalid_case_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = json.loads(CASES[0].read_text())
    del case["Parameters"]["VolShock"]["VOLRANGEUP"]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(case))
    assert main(["margin", "import-derive", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip() == "error: Parameters.VolShock.VOLRANGEUP: missing"
    case = json.loads(CASES[0].read_text())
    case["Parameters"]["Scenarios"][0]["SpotShock"] = "NaN"
    path.write_text(json.dumps(case))
    assert main(["margin", "import-derive", str(path)]) == 2
    assert capsys.readouterr().err.strip() == "error: Parameters.Scenarios[0].SpotShock: expected a finite number"
