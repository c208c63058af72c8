"""The signed view of a 20,000-account book, under RRA-1 and under PM2 (the benchmark's v2 market: rates,
a settling expiry, skew, discounting, basis, contingencies, risk-cancelling collateral), is the same bits
under every SIMD dispatch this CPU allows and for 1 or 2 threads: each setting runs in its own process with `NPY_DISABLE_CPU_FEATURES`, the settings
derived at run time from the dispatch targets numpy found (AVX2 hosts: default and X86_V3 disabled;
AVX-512 hosts also every AVX-512 level disabled in turn)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ACCOUNTS = 20_000

CHILD = """
import hashlib, json, sys
sys.path.insert(0, {root!r})
import numpy as np
from numpy._core._multiarray_umath import __cpu_features__
from risk import detmath
from risk.batch import compute_margin_batch
from risk.params import PM2, RRA1
from risk.quantize import encode_quantized, quantized
from tests.risk.helpers import make_bench_book

out = {{"features": {{k: bool(v) for k, v in __cpu_features__.items()}}}}
for name, params in (("rra1", RRA1), ("pm2", PM2)):
    book = make_bench_book({accounts}, params=params)
    for threads in (1, 2):
        result = compute_margin_batch(book, params, threads=threads)
        out[f"leaves_{{name}}_{{threads}}"] = hashlib.sha256(encode_quantized(quantized(result))).hexdigest()
        out[f"risk_{{name}}_{{threads}}"] = hashlib.sha256(result.risk_array.tobytes() + result.worst_scenario.tobytes()
                                                         + result.liquidation.equity_after.tobytes()).hexdigest()
        out[f"liquidatable_{{name}}"] = int(result.liquidatable.sum())
x = np.linspace(-40.0, 40.0, 100_001)
parts = (detmath.exp(x), detmath.log(np.abs(x) + 1e-300), detmath.norm_cdf(x), detmath.power(np.abs(x) + 0.5, 0.3))
out["detmath"] = hashlib.sha256(b"".join(p.tobytes() for p in parts)).hexdigest()
print(json.dumps(out))
"""


def dispatch_settings() -> list[str]:
    """'' (default dispatch) then, for each dispatch target found on this CPU from the highest down, the
    setting that disables it and every target above it."""
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    found = [t for t in __cpu_dispatch__ if __cpu_features__.get(t)]
    return [""] + [" ".join(found[i:]) for i in range(len(found) - 1, -1, -1)]


def run_child(disabled: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "NPY_DISABLE_CPU_FEATURES"}
    if disabled:
        env["NPY_DISABLE_CPU_FEATURES"] = disabled
    run = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT), accounts=ACCOUNTS)], env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, f"NPY_DISABLE_CPU_FEATURES={disabled!r}: {run.stderr[-3000:]}"
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_signed_view_identical_under_every_dispatch_and_thread_count() -> None:
    settings = dispatch_settings()
    runs = {s: run_child(s) for s in settings}
    for disabled, out in runs.items():
        for feature in disabled.split():
            assert out["features"][feature] is False, (disabled, feature)  # the restriction took effect
        for name in ("rra1", "pm2"):
            assert out[f"leaves_{name}_1"] == out[f"leaves_{name}_2"], (disabled, name)
            assert out[f"risk_{name}_1"] == out[f"risk_{name}_2"], (disabled, name)
            assert out[f"liquidatable_{name}"] > 0
    for key in ("leaves_rra1_1", "risk_rra1_1", "leaves_pm2_1", "risk_pm2_1", "detmath"):
        assert len({out[key] for out in runs.values()}) == 1, {s: out[key] for s, out in runs.items()}
