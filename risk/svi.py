"""SVI volatility slices (one per expiry) of the what-if document v2: Derive's `SVI.getVol`
(PM2_SPEC.md section 1), reference form (`math`; an option's vol is resolved when the document is parsed,
so nothing of this reaches a signed leaf).

For a slice `(a, b, rho, m, sigma, forward, tau)` (tau in years) and a strike K:
`k = clamp(ln(K / forward), -4 sqrt(a + b sigma), 4 sqrt(a + b sigma))`,
`w = min(a + b (sqrt((k - m)^2 + sigma^2) + rho (k - m)), 144)` (total variance, capped) and the vol is
`sqrt(w / tau)`. A slice is admitted only when its total variance is non-negative everywhere:
`b >= 0`, `|rho| < 1`, `sigma > 0`, `tau > 0` and the minimum `a + b sigma sqrt(1 - rho^2) >= 0`.
Refusals are `InvalidInput` naming the slice's field. Nothing is persisted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from risk.errors import InvalidInput

MAX_TOTAL_VARIANCE = 144.0


@dataclass(frozen=True)
class SviSlice:
    a: float
    b: float
    rho: float
    m: float
    sigma: float
    forward: float
    tau: float  # years


def validate_svi(s: SviSlice, where: str) -> None:
    """Raise `InvalidInput` unless the slice has a non-negative total variance at every strike."""
    if not s.b >= 0.0:
        raise InvalidInput(f"{where}.b", "must be >= 0")
    if not -1.0 < s.rho < 1.0:
        raise InvalidInput(f"{where}.rho", "must be in (-1, 1)")
    if not s.sigma > 0.0:
        raise InvalidInput(f"{where}.sigma", "must be > 0")
    if not s.tau > 0.0:
        raise InvalidInput(f"{where}.tau", "must be > 0 (years)")
    if not s.forward > 0.0:
        raise InvalidInput(f"{where}.forward", "must be > 0")
    if s.a + s.b * s.sigma * math.sqrt(1.0 - s.rho * s.rho) < 0.0:
        raise InvalidInput(where, "negative total variance (a + b sigma sqrt(1 - rho^2) < 0)")


def compute_svi_vol(strike: float, s: SviSlice) -> float:
    """The slice's vol at `strike` (Derive's `SVI.getVol`)."""
    limit = 4.0 * math.sqrt(s.a + s.b * s.sigma)
    k = max(-limit, min(limit, math.log(strike / s.forward)))
    d = k - s.m
    w = min(s.a + s.b * (math.sqrt(d * d + s.sigma * s.sigma) + s.rho * d), MAX_TOTAL_VARIANCE)
    return math.sqrt(max(w, 0.0) / s.tau)
