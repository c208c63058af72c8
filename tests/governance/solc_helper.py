"""Test helper: compile `bridges/contracts/Governance.sol` from source with the pinned solcjs
(standard JSON, evmVersion prague, optimizer 200 runs, as `scripts/compile_contracts.py`), so the
tests exercise the source even when the committed artifact lags behind. Cached per process.

Returns (abi, bytecode hex). Nothing is persisted.
"""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "bridges" / "contracts" / "Governance.sol"
SOLCJS = REPO / "node_modules" / ".bin" / "solcjs"


@functools.cache
def compile_governance() -> tuple[list, str]:
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
