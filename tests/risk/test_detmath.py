"""risk.detmath: accuracy against mpmath (exact to 120 bits) and libm, IEEE special values, independence of
array layout, a pinned digest of the outputs (the same bits on every platform), the FPU-mode check."""

from __future__ import annotations

import hashlib
import math
import platform
import subprocess
import sys
from pathlib import Path

import mpmath
import numpy as np
import pytest

from risk import detmath

ROOT = Path(__file__).resolve().parents[2]
INF, NAN = math.inf, math.nan
mpmath.mp.prec = 120


def ulp_errors(got: np.ndarray, exact: list) -> np.ndarray:
    """|got - exact| in ulps of the exact value (subnormal ulp below 2^-1022)."""
    out = []
    for g, e in zip(got.tolist(), exact, strict=True):
        ref = float(e)
        out.append(float(abs(mpmath.mpf(g) - e)) / math.ulp(ref) if ref != 0.0 else (0.0 if g == 0.0 else INF))
    return np.array(out)


def rng_points(lo: float, hi: float, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(lo, hi, n)


@pytest.mark.parametrize(("lo", "hi"), [(-708.39, -1.0), (-1.0, 1.0), (-1e-9, 1e-9), (1.0, 709.78)])
def test_exp_below_one_ulp(lo: float, hi: float) -> None:
    x = rng_points(lo, hi, 2000, seed=1)
    assert ulp_errors(detmath.exp(x), [mpmath.exp(mpmath.mpf(v)) for v in x.tolist()]).max() < 1.0


def test_exp_with_subnormal_result_within_one_subnormal_ulp() -> None:
    x = rng_points(-745.13, -708.4, 2000, seed=1)
    assert ulp_errors(detmath.exp(x), [mpmath.exp(mpmath.mpf(v)) for v in x.tolist()]).max() <= 1.0


def test_log_below_one_ulp() -> None:
    rng = np.random.default_rng(2)
    x = np.concatenate([np.exp2(rng.uniform(-1074, 1024, 3000)), rng.uniform(0.5, 2.0, 3000),
                        1.0 + rng.uniform(-1e-9, 1e-9, 500)])
    assert ulp_errors(detmath.log(x), [mpmath.log(mpmath.mpf(v)) for v in x.tolist()]).max() < 1.0


@pytest.mark.parametrize(("lo", "hi"), [(-37.5, -20.0), (-20.0, -1.77), (-1.77, -1.19), (-1.19, 0.0), (0.0, 1.77),
                                        (1.77, 8.3)])
def test_norm_cdf_below_two_and_a_half_ulp(lo: float, hi: float) -> None:
    x = rng_points(lo, hi, 1500, seed=3)
    errors = ulp_errors(detmath.norm_cdf(x), [mpmath.ncdf(mpmath.mpf(v)) for v in x.tolist()])
    assert errors.max() < 2.5 and errors.mean() < 0.6


def test_power_on_the_vol_weight_range_within_two_ulp() -> None:
    """`(30 / max(DTE, 1)) ^ p`: p = 0.30 up to 30 days, 0.13 beyond (RRA-1), DTE up to 11 years."""
    days = np.concatenate([np.linspace(0.0, 30.0, 1201), rng_points(30.0, 4000.0, 1500, seed=4)])
    base = 30.0 / np.where(days > 1.0, days, 1.0)
    p = np.where(days <= 30.0, 0.30, 0.13)
    exact = [mpmath.power(mpmath.mpf(b), mpmath.mpf(e)) for b, e in zip(base.tolist(), p.tolist(), strict=True)]
    assert ulp_errors(detmath.power(base, p), exact).max() <= 2.0


def test_power_error_grows_with_the_exponent_argument_only() -> None:
    x, y = rng_points(1e-3, 1e3, 2000, seed=5), rng_points(-3.0, 3.0, 2000, seed=6)
    exact = [mpmath.power(mpmath.mpf(a), mpmath.mpf(b)) for a, b in zip(x.tolist(), y.tolist(), strict=True)]
    bound = 1.0 + 1.5 * np.abs(y * np.array([math.log(v) for v in x.tolist()]))
    assert (ulp_errors(detmath.power(x, y), exact) <= bound).all()


def test_exp_and_log_within_one_ulp_of_libm_densely() -> None:
    # both are faithful (< 1 ulp from exact), so they can differ by at most one ulp
    x = np.linspace(-745.0, 709.0, 400_001)
    ours, libm = detmath.exp(x), np.array([math.exp(v) for v in x.tolist()])
    assert (np.abs(ours - libm) <= np.array([math.ulp(v) for v in libm.tolist()])).all()
    y = np.exp2(np.linspace(-1070.0, 1023.0, 400_001))
    ours, libm = detmath.log(y), np.array([math.log(v) for v in y.tolist()])
    assert (np.abs(ours - libm) <= np.array([math.ulp(v) for v in libm.tolist()])).all()


def test_special_values() -> None:
    tiny = 5e-324
    assert detmath.exp([0.0, -0.0, INF, -INF, 709.79, -745.14, 1e-300]).tolist() == [1.0, 1.0, INF, 0.0, INF, 0.0, 1.0]
    assert detmath.exp(-745.13) == tiny and detmath.exp(709.78) > 1.79e308
    assert np.isnan(detmath.exp(NAN))
    assert detmath.log([0.0, -0.0, 1.0, INF]).tolist() == [-INF, -INF, 0.0, INF]
    assert np.isnan(detmath.log([-1.0, -INF, NAN, -tiny])).all()
    assert detmath.log(tiny) == math.log(tiny) and detmath.log(2.0**-1022) == math.log(2.0**-1022)
    assert detmath.power([0.0, 0.0, INF, INF, 2.0, NAN, 1.0, 4.0], [2.0, -2.0, 2.0, -2.0, 0.0, 0.0, NAN, 0.5]).tolist() \
        == [0.0, INF, INF, 0.0, 1.0, 1.0, 1.0, 2.0]
    assert np.isnan(detmath.power([-2.0, 2.0], [0.5, NAN])).all()
    assert detmath.norm_cdf([0.0, -0.0, INF, -INF, -40.0, 9.0]).tolist() == [0.5, 0.5, 1.0, 0.0, 0.0, 1.0]
    assert 0.0 < detmath.norm_cdf(-38.0) < 1e-315 and np.isnan(detmath.norm_cdf(NAN))
    assert detmath.sqrt([4.0, 0.0]).tolist() == [2.0, 0.0]


def test_results_do_not_depend_on_array_layout() -> None:
    """Vector loops and their scalar tails, strides and 0-d inputs give the same bits."""
    x = rng_points(-30.0, 30.0, 1003, seed=7)
    for fn, arg in ((detmath.exp, x), (detmath.log, np.abs(x) + 1e-3), (detmath.norm_cdf, x)):
        full = fn(arg)
        assert fn(arg[::-1])[::-1].tobytes() == full.tobytes()
        assert fn(arg[1::3]).tobytes() == full[1::3].tobytes()
        assert fn(arg.reshape(17, 59).T).T.ravel().tobytes() == full.tobytes()
        assert np.array([fn(v) for v in arg[:40].tolist()]).tobytes() == full[:40].tobytes()


GRID_DIGEST = "b4395f7b73716284d0de85725ce5de435ef2954f2c70611951a3d224ace3f6ad"


def grid_outputs() -> bytes:
    """Outputs of every function on a fixed dense grid, as little-endian bytes."""
    x = np.linspace(-746.0, 710.0, 200_001)
    y = np.exp2(np.linspace(-1074.0, 1023.0, 200_001))
    days = np.linspace(0.0, 400.0, 40_001)
    z = np.linspace(-40.0, 10.0, 200_001)
    parts = (detmath.exp(x), detmath.log(y), detmath.power(30.0 / np.where(days > 1.0, days, 1.0), 0.3),
             detmath.power(y[::50], -0.7), detmath.norm_cdf(z))
    return b"".join(p.astype("<f8").tobytes() for p in parts)


def test_outputs_are_pinned() -> None:
    """The same bits on every CPU and library build: a change of this digest is a consensus change."""
    assert hashlib.sha256(grid_outputs()).hexdigest() == GRID_DIGEST


def test_environment_check_passes_here() -> None:
    detmath.check_environment()


@pytest.mark.skipif(platform.machine() != "x86_64" or sys.platform != "linux", reason="fesetround constant of x86-64")
def test_environment_check_refuses_another_rounding_mode() -> None:
    script = (
        "import ctypes, ctypes.util, sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from risk import detmath\n"
        "ctypes.CDLL(ctypes.util.find_library('m')).fesetround(0x800)  # FE_UPWARD\n"
        "try:\n    detmath.check_environment()\nexcept detmath.FloatingPointEnvironmentError:\n    print('refused')\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert run.stdout.strip() == "refused"
