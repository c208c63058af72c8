"""The committed artifacts match a fresh offline compilation of bridges/contracts/*.sol, and the
loader serves them by name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bridges.artifacts import get_abi, get_contract_names, load_artifact
from bridges.errors import ArtifactNotFound

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOYABLE = ("MarginStateRegistry", "CollateralVault", "PositionLedger", "MarketOracle", "TestToken")


@pytest.mark.slow
def test_artifacts_match_sources() -> None:
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "compile_contracts.py"), "--check"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_every_source_contract_has_an_artifact() -> None:
    names = set(get_contract_names())
    assert set(DEPLOYABLE) <= names
    for path in (REPO_ROOT / "bridges" / "contracts").glob("*.sol"):
        text = path.read_text()
        assert any(f"contract {n} " in text or f"library {n} " in text or f"interface {n} " in text
                   for n in names), path.name


@pytest.mark.parametrize("name", DEPLOYABLE)
def test_deployable_artifacts_are_complete(name: str) -> None:
    artifact = load_artifact(name)
    assert artifact.name == name
    assert artifact.bytecode.startswith("0x") and len(artifact.bytecode) > 100
    assert artifact.deployed_bytecode.startswith("0x") and len(artifact.deployed_bytecode) > 100
    assert artifact.solc_version.startswith("0.8.37")
    assert len(artifact.source_hash) == 64
    assert any(e.get("type") == "constructor" for e in get_abi(name))


def test_invalid_artifact_name_raises() -> None:
    with pytest.raises(ArtifactNotFound, match="NoSuchContract"):
        load_artifact("NoSuchContract")
    with pytest.raises(ArtifactNotFound):
        load_artifact("../pyproject")
