"""Compiled contract artifacts (ABI and bytecode) by contract name.

The JSON files under `bridges/artifacts/` are produced by `scripts/compile_contracts.py` from
`bridges/contracts/*.sol` with the pinned solcjs and are committed; `tests/bridges/test_artifacts.py`
fails when they no longer match the sources. This module only reads them (cached, immutable).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from bridges.errors import ArtifactNotFound

ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"


@dataclass(frozen=True)
class Artifact:
    """One compiled contract. `bytecode`/`deployed_bytecode` are 0x-prefixed hex (empty for interfaces)."""

    name: str
    source_name: str
    abi: tuple[dict[str, Any], ...]
    bytecode: str
    deployed_bytecode: str
    source_hash: str
    solc_version: str

    def get_abi(self) -> list[dict[str, Any]]:
        """A fresh list (web3.py wants a list; the cached tuple stays untouched)."""
        return list(self.abi)


@lru_cache(maxsize=64)
def load_artifact(name: str) -> Artifact:
    """The artifact of contract `name` (e.g. "MarginStateRegistry"); raises ArtifactNotFound."""
    path = ARTIFACTS_DIR / f"{name}.json"
    if not name.isidentifier() or not path.is_file():
        raise ArtifactNotFound(f"contract {name!r}: no artifact at bridges/artifacts/{name}.json")
    data = json.loads(path.read_text())
    return Artifact(
        name=data["contractName"],
        source_name=data["sourceName"],
        abi=tuple(data["abi"]),
        bytecode=data["bytecode"],
        deployed_bytecode=data["deployedBytecode"],
        source_hash=data["sourceHash"],
        solc_version=data["solcVersion"],
    )


def get_abi(name: str) -> list[dict[str, Any]]:
    return load_artifact(name).get_abi()


def get_bytecode(name: str) -> str:
    return load_artifact(name).bytecode


def get_contract_names() -> list[str]:
    return sorted(p.stem for p in ARTIFACTS_DIR.glob("*.json"))
