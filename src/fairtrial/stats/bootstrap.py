"""Two-level paired bootstrap over seeds and items.

The data of one comparison is an array `x` of shape (K, S, N): K paired quantities (usually K=2:
the control and the arm), S seeds, N items, aligned so that x[:, s, i] are the same seed and the
same item id. One resample draws S seeds with replacement and N items with replacement and takes,
for every k, the mean over the drawn (seed, item) cells.

Seeds and items are *crossed*, not nested: every seed's model is scored on the same items, so an
item that is hard for one seed is hard for all of them. A resample therefore applies one item draw
to every drawn seed; resampling items independently inside each seed would treat the item
difficulty as independent noise and make intervals too narrow.

The plain crossed ("pigeonhole") bootstrap double-counts the seed x item noise and, with 3-5
seeds, underestimates the seed variance; the default corrects both (see `_seed_scale`), which
bench/sim_aa.py checks: nominal 95% intervals cover 95-97% of simulated true effects with 3 or 5
seeds, small or large seed variance.

Why this is written by hand: scipy.stats.bootstrap resamples one level (the unit is one
observation); it has no notion of a crossed seed x item design and no shared paired draw across K
statistics. The linear structure of a mean lets us do both with one matrix product per chunk:
mean_k = sum_s w_s/S * sum_i c_i/N * x[k, s, i], with w the seed counts and c the item counts.

Two paths for the item draw (`method`):
- "exact": the item counts c come from real index draws (np.bincount of uniform integers). Cost
  O(n_resamples * N); used when that is small.
- "normal": the item-mean vector (the K*S means under one item draw) is a mean of N iid draws from
  the empirical item distribution, so by the central limit theorem it is normal with the sample
  means and the empirical covariance / N. Drawing it directly costs O((K*S)^2) per resample
  instead of O(N). The seed draw stays exact. tests/stats/test_bootstrap.py checks the two paths
  agree within Monte-Carlo error; "auto" uses it only when N >= NORMAL_MIN_ITEMS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

# The one-level pieces (constants, the item draw, the percentile interval, the plain mean's
# interval) live in fairtrial.base.intervals, below the recipes, which report one-level intervals
# too; they are imported from there, not copied.
from fairtrial.base.intervals import (N_RESAMPLES, SEED, Method, check_kse,  # noqa: F401
                                      item_means, one_level_mean, percentile_interval,
                                      resolve_method)

T_CORRECTION = True           # widen the seed level for its few degrees of freedom (_seed_scale)


@dataclass(frozen=True)
class Draws:
    """Bootstrap draws of the K means: `means` has shape (n_resamples, K).
    `point` holds the K means of the data itself; `method` the item-draw path used."""
    means: np.ndarray
    point: np.ndarray
    method: str


def _seed_weights(rng: np.random.Generator, n: int, s: int) -> np.ndarray:
    """(n, S) counts of each seed in a resample of S seeds drawn with replacement."""
    if s == 1:
        return np.ones((n, 1))
    idx = rng.integers(0, s, size=(n, s)) + (np.arange(n) * s)[:, None]
    return np.bincount(idx.ravel(), minlength=n * s).reshape(n, s).astype(np.float64)


def _seed_scale(x: np.ndarray) -> np.ndarray:
    """Per-quantity factor for the seed level's deviations (K,).

    The plain crossed ("pigeonhole") bootstrap counts the seed x item noise twice: once in the
    spread of the per-seed means (sigma_e^2 / N of it) and once in the spread of the per-item means,
    so its variance is sigma_seed^2/S + sigma_item^2/N + 2 sigma_e^2/(S N) instead of one sigma_e^2
    term (Owen 2007, "The pigeonhole bootstrap"). With few seeds and noisy items that doubles the
    variance and halves the power. The items are resampled with the noise in them, so the seed
    level must carry sigma_seed^2 only: the per-seed deviations are shrunk by
    lambda = sqrt(max(0, 1 - (sigma_e^2 / N) / var(per-seed means))), with sigma_e^2 the two-way
    residual variance. A bootstrap of S seeds also has the ddof=0 variance, (S-1)/S of the usual
    one, which sqrt(S/(S-1)) restores: exactly where seeds are few this matters most.
    """
    k, s, n = x.shape
    m = x.mean(axis=2)
    var_m = m.var(axis=1, ddof=1)
    if n > 1:
        resid = x - m[:, :, None] - x.mean(axis=1, keepdims=True) + m.mean(axis=1)[:, None, None]
        var_e = (resid ** 2).sum(axis=(1, 2)) / ((s - 1) * (n - 1))
    else:
        var_e = np.zeros(k)
    with np.errstate(divide="ignore", invalid="ignore"):
        lam2 = np.where(var_m > 0, 1.0 - (var_e / n) / var_m, 0.0)
    # Few seeds also mean the seed variance itself is uncertain (S-1 degrees of freedom): widen
    # the seed level by the ratio of the t to the normal 97.5% quantile (2.2x at 3 seeds, 1.4x
    # at 5, 1.15x at 10), as a t interval would. Without it, with 3 seeds and a seed part that
    # dominates, a nominal 95% interval covers ~87% (bench/sim_aa.py).
    t_ratio = sps.t.ppf(0.975, s - 1) / sps.norm.ppf(0.975) if T_CORRECTION else 1.0
    return np.sqrt(np.clip(lam2, 0.0, 1.0)) * np.sqrt(s / (s - 1)) * t_ratio


def two_level(x: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = SEED,
              method: Method = "auto", seed_correction: bool = True) -> Draws:
    """Bootstrap draws of the means of x (K, S, N), resampling seeds and then items (crossed).
    `seed_correction` (default) removes the plain crossed bootstrap's double count of the seed x
    item noise and its small-sample bias at the seed level (see _seed_scale); False gives the
    plain pigeonhole bootstrap."""
    x = check_kse(x)
    k, s, n = x.shape
    method = resolve_method(method, n_resamples, n)
    rng = np.random.default_rng(seed)
    w = _seed_weights(rng, n_resamples, s) / s                        # (B, S)
    drawn = item_means(rng, x.reshape(k * s, n), n_resamples, method).reshape(n_resamples, k, s)
    if s > 1 and seed_correction:
        # Items resampled for every seed alike, plus the seed level as a separate, linear term:
        # the resampled seed weights applied to each seed's deviation from the mean, shrunk so
        # that it carries only the seed variance (see _seed_scale).
        m = x.mean(axis=2)                                             # (K, S) per-seed means
        dev = (m - m.mean(axis=1, keepdims=True)) * _seed_scale(x)[:, None]
        means = drawn.mean(axis=2) + (w - 1.0 / s) @ dev.T
    else:
        # the plain pigeonhole bootstrap: draw seeds, draw items, mean of the drawn cells
        means = np.einsum("bks,bs->bk", drawn, w)
    # A mean cannot leave the range of its data; the normal item draw and the stretched seed
    # weights can overshoot it slightly (e.g. an accuracy of 1.006), so clip to the range.
    means = np.clip(means, x.min(axis=(1, 2)), x.max(axis=(1, 2)))
    point = x.mean(axis=(1, 2))
    return Draws(means=means, point=point, method=method)


def bootstrap_p_value(draws: np.ndarray, estimate: float, null: float = 0.0) -> float:
    """Two-sided bootstrap test of `estimate == null`: the share of draws, centred on the estimate,
    at least as far from it as the estimate is from the null (Hall & Wilson 1991)."""
    d = np.asarray(draws, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size == 0 or not np.isfinite(estimate):
        return float("nan")
    extreme = np.abs(d - estimate) >= abs(estimate - null)
    return float((1 + extreme.sum()) / (1 + d.size))
