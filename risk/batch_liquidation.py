"""LQ-1 liquidation plans inside the batch engine, for the (few) liquidatable accounts.

Same rule as `risk.liquidation` (greedy close maximising `E' - IM'`, ties within tolerance to the
lowest original position index, stop at `E >= IM`), evaluated with numpy over all candidates of a step
at once. A batch position is an (account, instrument) entry with a non-zero net quantity; its index in
a plan is the instrument's original column. Nothing is persisted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from risk.liquidation import LiquidationStep, get_best_candidate
from risk.params import RiskParams

if TYPE_CHECKING:
    import scipy.sparse as sp

    from risk.batch import _Prepared


def compute_requirement_of_masks(
    masks: np.ndarray, pnl: np.ndarray, uid: np.ndarray, som: np.ndarray, params: RiskParams
) -> np.ndarray:
    """R for each row of `masks` (candidates x positions, 1.0 = position kept)."""
    n_cand = masks.shape[0]
    joint = np.zeros((n_cand, pnl.shape[1]))
    separate = np.zeros(n_cand)
    presence = np.zeros((n_cand, len(params.underlyings)), dtype=bool)
    for u in range(len(params.underlyings)):
        in_u = masks * (uid == u)[None, :]
        if not in_u.any():
            continue
        arr = in_u @ pnl
        joint += arr
        separate += np.maximum(0.0, -arr.min(axis=1))
        presence[:, u] = in_u.any(axis=1)
    joint_loss = np.maximum(0.0, -joint.min(axis=1))
    credit = np.zeros(n_cand)
    for members, c in params.correlation_groups:
        outside = [i for i, u in enumerate(params.underlyings) if u not in members]
        credit = np.where(~presence[:, outside].any(axis=1), c, credit)
    several = presence.sum(axis=1) > 1
    correlated = np.where(several, joint_loss + (1.0 - credit) * (separate - joint_loss), joint_loss)
    return np.maximum(correlated, masks @ som)


def compute_account_plan(
    equity: float, initial_margin: float, pnl: np.ndarray, uid: np.ndarray, som: np.ndarray,
    penalty: np.ndarray, original: np.ndarray, params: RiskParams,
) -> tuple[LiquidationStep, ...]:
    """Greedy LQ-1 for one account; arrays are per open position, sorted by original index."""
    open_mask = np.ones(len(penalty))
    steps: list[LiquidationStep] = []
    im = initial_margin
    while open_mask.any() and equity < im:
        candidates = np.flatnonzero(open_mask)
        masks = np.repeat(open_mask[None, :], len(candidates), axis=0)
        masks[np.arange(len(candidates)), candidates] = 0.0
        after = compute_requirement_of_masks(masks, pnl, uid, som, params)
        scores = (equity - penalty[candidates]) - after
        chosen_original = get_best_candidate([int(original[c]) for c in candidates], [float(x) for x in scores])
        k = int(np.flatnonzero(original[candidates] == chosen_original)[0])
        local = int(candidates[k])
        equity -= float(penalty[local])
        im = float(after[k])
        open_mask[local] = 0.0
        steps.append(LiquidationStep(chosen_original, float(penalty[local]), equity, im,
                                     params.maintenance_factor * im))
    return tuple(steps)


def compute_batch_liquidation_plans(
    prep: _Prepared, positions: sp.csr_matrix, out: dict[str, np.ndarray], rows: np.ndarray,
    params: RiskParams,
) -> dict[int, tuple[LiquidationStep, ...]]:
    """LQ-1 plan of each liquidatable account row."""
    t = prep.table
    plans: dict[int, tuple[LiquidationStep, ...]] = {}
    for row in rows:
        s0, s1 = positions.indptr[row], positions.indptr[row + 1]
        cols, q = positions.indices[s0:s1], positions.data[s0:s1]
        keep = q != 0.0
        cols, q = cols[keep], q[keep]
        order = np.argsort(prep.original_column[cols], kind="stable")
        cols, q = cols[order], q[order]
        plans[int(row)] = compute_account_plan(
            float(out["equity"][row]), float(out["initial_margin"][row]), q[:, None] * t.risk[cols],
            t.underlying_index[cols], np.where(q < 0.0, -q * t.som[cols], 0.0), np.abs(q) * t.penalty[cols],
            prep.original_column[cols], params,
        )
    return plans
