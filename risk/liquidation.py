"""The LQ-1 liquidation plan of RISK_SPEC.md section 4, reference form.

Only when `E < MM`: repeatedly close the whole open position that maximises `E' - IM'` after the close,
where closing turns the position's MtM into cash (equity unchanged) and costs `rate * |q| * S_u`; stop
as soon as `E >= IM` or no position is open. `IM'` and `MM'` are the margins of the open book after the
close (with the account's collateral: its contingencies and risk-cancelling terms stay). Positions with quantity 0 are not open.
Ties: scores within `TIE_TOLERANCE * max(|score|, 1)` of the best count as equal and the lowest original
index wins (the spec's own 1e-9 tolerance, so that the reference and the batch engine, which sum in
different orders, choose the same position). Nothing is persisted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

TIE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class LiquidationStep:
    position: int  # original index of the closed position
    penalty: float
    equity_after: float
    initial_margin_after: float
    maintenance_margin_after: float


def get_best_candidate(candidates: Sequence[int], scores: Sequence[float]) -> int:
    """Lowest index among the candidates whose score is within tolerance of the best score."""
    best = max(scores)
    floor = best - TIE_TOLERANCE * max(abs(best), 1.0)
    return min(c for c, s in zip(candidates, scores, strict=True) if s >= floor)


def compute_liquidation_plan(
    equity: float,
    initial_margin: float,
    maintenance_margin: float,
    quantities: Sequence[float],
    penalties: Sequence[float],
    margins_of: Callable[[list[int]], tuple[float, float]],
) -> tuple[LiquidationStep, ...]:
    """LQ-1 steps; `margins_of(open_indices)` returns (IM, MM) of that subset of positions."""
    if not equity < maintenance_margin:
        return ()
    open_positions = [i for i, q in enumerate(quantities) if q != 0.0]
    steps: list[LiquidationStep] = []
    im = initial_margin
    while open_positions and equity < im:
        after: dict[int, tuple[float, float]] = {}
        scores: list[float] = []
        for i in open_positions:
            after[i] = margins_of([j for j in open_positions if j != i])
            scores.append((equity - penalties[i]) - after[i][0])
        chosen = get_best_candidate(open_positions, scores)
        equity -= penalties[chosen]
        im, mm = after[chosen]
        open_positions.remove(chosen)
        steps.append(LiquidationStep(chosen, penalties[chosen], equity, im, mm))
    return tuple(steps)
