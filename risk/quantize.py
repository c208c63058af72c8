"""Integer consensus view of a batch result: amounts in micro-USD (int64) and a flags bitfield.

Rounding rule (the only one): `quantize_usd(x) = rint(x * 1e6)` in float64 with numpy's round half to
even, after checking every value is finite and `|x * 1e6| < 2^63`; anything else raises
`QuantizationError`. In `quantized(result)`: `free_collateral = equity - initial_margin` and the
liquidatable flag are computed from the quantized integers (so a signed leaf is self-consistent:
`FLAG_LIQUIDATABLE` iff `equity < maintenance_margin` in integers); accounts in error carry zeros and
`FLAG_ERROR`. Nothing is persisted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from risk.errors import QuantizationError

if TYPE_CHECKING:
    from risk.batch import BatchResult

MICRO_USD_PER_USD = 1_000_000
FLAG_LIQUIDATABLE = 1 << 0
FLAG_ERROR = 1 << 1
_LIMIT = float(2**63 - 1024)  # largest float64 below 2^63 with margin
_CHUNK = 1 << 15  # elements per pass of quantize_usd (256 KiB of float64)


def quantize_usd(values: np.ndarray, name: str = "amount") -> np.ndarray:
    """float64 USD -> int64 micro-USD, round half to even; raises on non-finite or out of range."""
    x = np.asarray(values, dtype=np.float64)
    flat = x.ravel()
    out = np.empty(flat.shape, dtype=np.int64)
    scaled = np.empty(min(len(flat), _CHUNK), dtype=np.float64)
    for lo in range(0, len(flat), _CHUNK):  # cache-sized chunks: each element read once from memory
        part = scaled[:min(_CHUNK, len(flat) - lo)]
        np.multiply(flat[lo:lo + len(part)], float(MICRO_USD_PER_USD), out=part)
        np.rint(part, out=part)
        # a NaN fails both comparisons, an infinity one of them
        if not (part.max() < _LIMIT and part.min() > -_LIMIT):
            raise QuantizationError(name, "not finite" if not np.isfinite(x).all() else "outside int64 micro-USD")
        out[lo:lo + len(part)] = part
    return out.reshape(x.shape) if x.ndim else out[0]


@dataclass(frozen=True)
class QuantizedBatch:
    """Per-account integers of the signed margin state (micro-USD; flags bit 0 liquidatable, bit 1 error)."""

    equity: np.ndarray  # int64, signed
    initial_margin: np.ndarray  # int64
    maintenance_margin: np.ndarray  # int64
    free_collateral: np.ndarray  # int64 = equity - initial_margin
    flags: np.ndarray  # uint32


def quantized(result: BatchResult) -> QuantizedBatch:
    ok = result.ok

    def q(values: np.ndarray, name: str) -> np.ndarray:
        return quantize_usd(np.where(ok, values, 0.0), name)

    equity = q(result.equity, "equity")
    im = q(result.initial_margin, "initial_margin")
    mm = q(result.maintenance_margin, "maintenance_margin")
    flags = np.where(ok & (equity < mm), FLAG_LIQUIDATABLE, 0) | np.where(ok, 0, FLAG_ERROR)
    return QuantizedBatch(equity=equity, initial_margin=im, maintenance_margin=mm,
                          free_collateral=equity - im, flags=flags.astype(np.uint32))


def encode_quantized(q: QuantizedBatch) -> bytes:
    """Canonical bytes of the view: the five arrays, little-endian, concatenated in field order."""
    return b"".join(np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()
                    for a in (q.equity, q.initial_margin, q.maintenance_margin, q.free_collateral, q.flags))
