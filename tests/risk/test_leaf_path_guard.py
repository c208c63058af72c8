"""The leaf path (`compute_margin_batch` + `quantized`) uses no platform-dependent numerics: at run time with
libm, numpy's transcendental ufuncs, scipy.special and every matrix product made to raise, and statically
(operators that bypass module attributes: `@`, `**`, array methods such as `.sum` or `.dot`)."""

from __future__ import annotations

import ast
import inspect
import math
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.special

import risk.contingencies
import risk.pricing
from risk.batch import compute_margin_batch
from risk.params import PM2, RRA1, RiskParams
from risk.quantize import encode_quantized, quantized
from tests.risk.helpers import make_bench_book

ROOT = Path(__file__).resolve().parents[2]
NUMPY_BANNED = ("exp", "log", "power", "expm1", "log1p", "exp2", "log2", "log10", "float_power", "dot", "matmul",
                "einsum", "tensordot", "inner", "vdot")
MATH_BANNED = ("exp", "log", "pow", "expm1", "log1p", "log2", "log10", "erf", "erfc")
SPECIAL_BANNED = ("ndtr", "ndtri", "erf", "erfc", "log_ndtr")
SPARSE_PRODUCTS = ((sp._base._spbase, ("_matmul_dispatch", "_rmatmul_dispatch", "dot")),
                   (sp._compressed._cs_matrix, ("_matmul_vector", "_matmul_multivector", "_matmul_sparse")))

LEAF_MODULES = ("detmath", "accumulation", "batch", "batch_accounts", "batch_liquidation", "instrument_table",
                "quantize")
LEAF_FUNCTIONS = (risk.pricing.compute_black76_price_array, risk.contingencies.compute_im_factor)
BANNED_CALLS = frozenset({*NUMPY_BANNED, *MATH_BANNED, *SPECIAL_BANNED, "sinh", "cosh", "tanh", "sum", "nansum",
                          "mean", "average", "prod", "std", "var", "fsum"})


def _raiser(name: str):
    def call(*_args, **_kwargs):
        raise AssertionError(f"{name} called on the leaf path")
    return call


def _ban_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    banned = {}
    for module, names in ((np, NUMPY_BANNED), (math, MATH_BANNED), (scipy.special, SPECIAL_BANNED)):
        for name in names:
            banned[id(getattr(module, name))] = f"{module.__name__}.{name}"
            monkeypatch.setattr(module, name, _raiser(f"{module.__name__}.{name}"))
    for mod_name, module in list(sys.modules.items()):  # names imported into the risk package's modules
        if mod_name == "risk" or mod_name.startswith("risk."):
            for attr, value in list(vars(module).items()):
                if id(value) in banned:
                    monkeypatch.setattr(module, attr, _raiser(f"{mod_name}.{attr}"))
    for cls, names in SPARSE_PRODUCTS:
        for name in names:
            monkeypatch.setattr(cls, name, _raiser(f"scipy.sparse {name}"))


@pytest.mark.parametrize("params", [RRA1, PM2], ids=["rra1", "pm2"])
def test_leaf_path_runs_with_platform_numerics_banned(monkeypatch: pytest.MonkeyPatch, params: RiskParams) -> None:
    book = make_bench_book(3000, params=params)
    before = compute_margin_batch(book, params)
    _ban_everywhere(monkeypatch)
    with pytest.raises(AssertionError, match=r"numpy\.exp"):
        np.exp(np.ones(3))  # the ban is in force
    with pytest.raises(AssertionError, match=r"scipy\.sparse"):
        _ = book.positions @ np.ones(book.positions.shape[1])
    result = compute_margin_batch(book, params, threads=2)
    assert result.liquidatable.any() and len(result.liquidation.account) > 0
    assert encode_quantized(quantized(result)) == encode_quantized(quantized(before))
    assert result.risk_array.tobytes() == before.risk_array.tobytes()


def _violations(tree: ast.AST, own_names: frozenset[str] = frozenset()) -> list[str]:
    """Operators and calls of the leaf path that could differ across CPUs or library builds."""
    found = []
    for node in ast.walk(tree):
        where = f"line {getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.BinOp | ast.AugAssign) and isinstance(node.op, ast.MatMult):
            found.append(f"{where}: matrix product @")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            exact = all(isinstance(v, ast.Constant) and type(v.value) is int for v in (node.left, node.right))
            if not exact:
                found.append(f"{where}: ** (libm pow / np.power)")
        if isinstance(node, ast.AugAssign) and isinstance(node.op, ast.Pow):
            found.append(f"{where}: **=")
        if isinstance(node, ast.ImportFrom) and node.module in ("math", "scipy.special", "numpy"):
            found += [f"{where}: from {node.module} import {a.name}" for a in node.names if a.name in BANNED_CALLS]
        if isinstance(node, ast.Call):
            func = node.func
            via_detmath = isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) \
                and func.value.id == "detmath"
            if isinstance(func, ast.Attribute) and func.attr in BANNED_CALLS and not via_detmath:
                found.append(f"{where}: .{func.attr}()")
            if isinstance(func, ast.Name) and func.id in BANNED_CALLS and func.id not in own_names:
                found.append(f"{where}: {func.id}()")
    return found


def test_leaf_path_source_has_no_platform_numerics() -> None:
    problems = []
    for name in LEAF_MODULES:
        tree = ast.parse((ROOT / "risk" / f"{name}.py").read_text())
        own = frozenset(n.name for n in tree.body if isinstance(n, ast.FunctionDef)) if name == "detmath" else frozenset()
        problems += [f"risk/{name}.py {v}" for v in _violations(tree, own)]
    for func in LEAF_FUNCTIONS:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
        problems += [f"{func.__module__}.{func.__name__} {v}" for v in _violations(tree)]
    assert problems == []


def test_static_check_catches_each_kind_of_violation() -> None:
    source = textwrap.dedent("""
        from math import exp
        a = np.exp(x) + np.log(y) + scipy.special.ndtr(z) + math.log(w)
        b = m @ v
        c = (30 / d) ** 0.3
        e = arr.sum(axis=1) + np.sum(arr) + arr.dot(v) + np.einsum("ij->i", arr)
        f = exp(x) + detmath.exp(x) + 2 ** 63
    """)
    found = _violations(ast.parse(source))
    for needle in ("import exp", ".exp()", ".log()", ".ndtr()", "@", "**", ".sum()", ".dot()", ".einsum()", " exp()"):
        assert any(needle in v for v in found), needle
    assert len(found) == 12  # detmath.exp and 2 ** 63 (exact integer arithmetic) are allowed
