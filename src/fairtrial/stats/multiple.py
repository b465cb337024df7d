"""Multiple-comparison correction: adjusted p-values and per-comparison interval levels.

statsmodels.stats.multitest does the p-value part, but it is a heavy dependency for ten lines and
it does not give the per-comparison interval levels the decision rule needs, so both are here.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np

Correction = Literal["holm", "bonferroni", "none"]
CORRECTIONS = ("holm", "bonferroni", "none")


def _check(correction: str) -> None:
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {CORRECTIONS}; got {correction!r}")


def adjust_p(p: Sequence[float], correction: Correction = "holm") -> np.ndarray:
    """Adjusted p-values (Holm step-down, Bonferroni, or unchanged). NaN stays NaN."""
    _check(correction)
    p = np.asarray(p, dtype=np.float64)
    m = int(np.isfinite(p).sum())
    out = p.copy()
    if correction == "none" or m == 0:
        return out
    if correction == "bonferroni":
        return np.minimum(1.0, p * m)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))   # step-down: adjusted p is monotone
        out[i] = running
    return out


def alpha_levels(p: Sequence[float], alpha: float, correction: Correction = "holm",
                 order: Sequence[int] | None = None) -> np.ndarray:
    """The per-comparison alpha at which each comparison's interval is computed.

    bonferroni: alpha/m for all. none: alpha. holm: ordered by p-value (smallest first), the j-th
    (0-based) gets alpha/(m-j), the level at which Holm's step-down tests it. A NaN p-value is
    ranked last. `order` (indices, strongest first) overrides the ranking, e.g. to break ties.
    """
    _check(correction)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1); got {alpha}")
    p = np.asarray(p, dtype=np.float64)
    m = p.size
    if correction == "none" or m == 0:
        return np.full(m, alpha)
    if correction == "bonferroni":
        return np.full(m, alpha / m)
    if order is None:
        key = np.where(np.isfinite(p), p, np.inf)
        order = np.argsort(key, kind="stable")
    out = np.empty(m)
    for rank, i in enumerate(order):
        out[i] = alpha / (m - rank)
    return out
