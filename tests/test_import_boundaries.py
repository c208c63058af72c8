"""The package import boundaries of DESIGN.md: risk imports nothing of the node, governance only
risk, bridges only risk and governance; the published client (`clearing_client`) only the generated
protos (`node.pb`) and third-party libraries."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIRST_PARTY = {"risk", "node", "bridges", "governance", "clearing_client"}
ALLOWED = {
    "risk": {"risk"},
    "governance": {"governance", "risk"},
    "bridges": {"bridges", "risk", "governance"},
}
RISK_THIRD_PARTY = {"numpy", "scipy"}


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_stay_inside_boundary(package: str) -> None:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for root in imported_roots(path) & FIRST_PARTY - ALLOWED[package]:
            bad.append(f"{path.relative_to(ROOT)} imports {root}")
    assert not bad, bad


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                names.add("<relative>")
            elif node.module:
                names.add(node.module)
    return names


def test_client_imports_only_generated_protos_and_third_party() -> None:
    bad = []
    for path in sorted((ROOT / "clearing_client").rglob("*.py")):
        for name in imported_modules(path):
            root = name.split(".")[0]
            allowed = name.startswith("node.pb.") or root == "clearing_client" or root not in FIRST_PARTY
            if name == "<relative>" or not allowed:
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, bad
    assert any((ROOT / "clearing_client").rglob("*.py"))


def test_risk_uses_only_stdlib_numpy_scipy() -> None:
    import sys

    bad = []
    for path in sorted((ROOT / "risk").rglob("*.py")):
        for root in imported_roots(path) - FIRST_PARTY:
            if root not in RISK_THIRD_PARTY and root not in sys.stdlib_module_names and root != "__future__":
                bad.append(f"{path.relative_to(ROOT)} imports {root}")
    assert not bad, bad


def test_boundary_check_detects_a_violation(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("import os\nfrom node.store import Store\nfrom . import x\n")
    assert imported_roots(sample) == {"os", "node"}
