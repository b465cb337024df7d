"""Intervals of one level: the Wilson interval of a proportion and the percentile bootstrap of a
plain mean, with the item draw that stats' two-level bootstrap (stats/bootstrap.py) builds on.

They live below the recipes, not in stats, because a recipe reports them for its own judged
comparisons (curate's win rates) and recipes may not import stats (../shared/DESIGN.md); stats
imports every name here from this module, so there is one copy.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from scipy import stats as sps

N_RESAMPLES = 10_000          # default number of bootstrap resamples
SEED = 20240601               # default bootstrap seed: reports are reproducible
EXACT_BUDGET = 2_000_000      # "auto" draws items exactly while n_resamples * N stays below this
NORMAL_MIN_ITEMS = 1_000      # ... and never uses the normal path below this many items
CHUNK_CELLS = 4_000_000       # exact path: resamples per chunk so one chunk holds ~this many counts

Method = Literal["auto", "exact", "normal"]


def wilson(successes: float, n: float, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion successes/n (Wilson 1927).

    statsmodels' proportion_confint does this too; it is not a dependency here for one formula.
    """
    if n <= 0:
        return (float("nan"), float("nan"))
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n]; got {successes} of {n}")
    z = sps.norm.ppf(1 - (1 - level) / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def percentile_interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval of 1-d bootstrap draws at confidence `level` (e.g. 0.95)."""
    if not 0 < level < 1:
        raise ValueError(f"confidence level must be in (0, 1); got {level}")
    d = np.asarray(draws, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return (float("nan"), float("nan"))
    a = (1 - level) / 2
    lo, hi = np.quantile(d, [a, 1 - a])
    return (float(lo), float(hi))


def check_kse(x: np.ndarray) -> np.ndarray:
    """Bootstrap data as a finite float array of shape (K quantities, S seeds, N items)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:             # (S, N): a single quantity
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"bootstrap data must have shape (K, S, N) or (S, N); got {x.shape}")
    if min(x.shape) == 0:
        raise ValueError(f"bootstrap data is empty: shape {x.shape} (K, seeds, items)")
    if not np.all(np.isfinite(x)):
        raise ValueError("bootstrap data holds NaN or infinite values")
    return x


def resolve_method(method: Method, n_resamples: int, n: int) -> str:
    """The item-draw path: "auto" is exact while n_resamples * N is small or N < 1,000."""
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1; got {n_resamples}")
    if method == "auto":
        method = "exact" if (n_resamples * n <= EXACT_BUDGET or n < NORMAL_MIN_ITEMS) else "normal"
    if method not in ("exact", "normal"):
        raise ValueError(f"method must be 'auto', 'exact' or 'normal'; got {method!r}")
    return method


def item_means(rng: np.random.Generator, flat: np.ndarray, n_resamples: int,
               method: str) -> np.ndarray:
    """(n_resamples, R) means of the R rows of `flat` (R, N) under shared draws of N items with
    replacement: one item draw per resample applies to every row (stats/bootstrap.py explains
    the exact and the normal path)."""
    r, n = flat.shape
    if method == "exact":
        out = np.empty((n_resamples, r))
        chunk = max(1, CHUNK_CELLS // n)
        for start in range(0, n_resamples, chunk):
            b = min(chunk, n_resamples - start)
            idx = rng.integers(0, n, size=(b, n))
            # counts per (resample, item) via one bincount over offset indices
            counts = np.bincount((idx + (np.arange(b) * n)[:, None]).ravel(),
                                 minlength=b * n).reshape(b, n).astype(np.float64)
            out[start:start + b] = counts @ flat.T / n
        return out
    mu = flat.mean(axis=1)
    centred = flat - mu[:, None]
    cov = centred @ centred.T / n                                      # ddof=0: the empirical law
    # eigh instead of cholesky: cov is often singular (e.g. K arms that agree on some seeds)
    vals, vecs = np.linalg.eigh(cov)
    root = vecs * np.sqrt(np.clip(vals, 0.0, None))
    z = rng.standard_normal((n_resamples, r))
    return mu + (z @ root.T) / np.sqrt(n)


def one_level_mean(values: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = SEED,
                   level: float = 0.95, method: Method = "auto") -> tuple[float, float]:
    """Percentile interval of a plain mean (one seed): the case scipy.stats.bootstrap covers,
    drawn as stats.two_level draws one seed, so both give the same interval on the same data."""
    x = check_kse(np.asarray(values, dtype=np.float64)[None, None, :])[0]   # (1, N)
    method = resolve_method(method, n_resamples, x.shape[1])
    means = item_means(np.random.default_rng(seed), x, n_resamples, method)[:, 0]
    # a mean cannot leave the range of its data (the normal draw can overshoot it slightly)
    return percentile_interval(np.clip(means, x.min(), x.max()), level)
