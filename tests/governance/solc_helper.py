"""Test helper: compile `bridges/contracts/Governance.sol` with the pinned solcjs (standard JSON,
evmVersion prague) when the shared artifact `bridges/artifacts/Governance.json` is not there yet.

Returns (abi, bytecode hex). Nothing is persisted.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "bridges" / "contracts" / "Governance.sol"
ARTIFACT = REPO / "bridges" / "artifacts" / "Governance.json"
SOLCJS = REPO / "node_modules" / ".bin" / "solcjs"


def compile_governance() -> tuple[list, str]:
    if ARTIFACT.is_file():
        art = json.loads(ARTIFACT.read_text())
        bytecode = art.get("bytecode") or art.get("bin") or ""
        if isinstance(bytecode, dict):
            bytecode = bytecode.get("object", "")
        if art.get("abi") and bytecode:
            return art["abi"], bytecode if bytecode.startswith("0x") else "0x" + bytecode
    std = {
        "language": "Solidity",
        "sources": {"Governance.sol": {"content": SOURCE.read_text()}},
        "settings": {
            "evmVersion": "prague",
            "optimizer": {"enabled": True, "runs": 200},
            "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}},
        },
    }
    out = subprocess.run([str(SOLCJS), "--standard-json"], input=json.dumps(std), capture_output=True,
                         text=True, timeout=120, check=True).stdout
    result = json.loads(out[out.index("{"):])
    errors = [e for e in result.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise RuntimeError("solc: " + "; ".join(e["formattedMessage"] for e in errors))
    c = result["contracts"]["Governance.sol"]["Governance"]
    return c["abi"], "0x" + c["evm"]["bytecode"]["object"]
