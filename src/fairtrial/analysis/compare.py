"""Paired comparisons of two series (an arm against its reference) on the same seeds and items.

A comparison is computed in two steps because the interval level of one comparison depends on the
p-values of all the others (Holm): `estimate()` draws the bootstrap once and computes p-values,
`finish()` turns the draws into intervals at the corrected level and applies the decision rule.

A metric aggregated as a geometric mean ("geomean", e.g. perplexities, whose per-item values are
heavy-tailed) is analysed on the log scale: the bootstrap resamples log values, the paired
differences, the sign-flip test, d_z, the p-value and the settle estimate are all of log values.
The means shown are geometric means (exp of the mean log), the absolute improvement is the
difference of the two geometric means, and the relative improvement is the ratio
G_arm / G_ref - 1 (higher is better) or 1 - G_arm / G_ref (lower is better), i.e.
exp(mean log difference) - 1 or 1 - exp(mean log difference), with every interval the
back-transformed percentile interval of the log-scale draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fairtrial.analysis.decision import (EQUIVALENCE, INCONCLUSIVE, MARGIN_TESTS, SUPERIORITY,
                                         boundary, margin_p_value, settle, settle_text,
                                         verdict_for)
from fairtrial.stats.bootstrap import (N_RESAMPLES, SEED, bootstrap_p_value, percentile_interval,
                                       two_level)
from fairtrial.stats.permutation import sign_flip_p


@dataclass
class Comparison:
    """One arm against its reference on one metric and eval set. Effects are *improvements*:
    positive = the arm is better in the metric's direction. `rel` is the improvement as a fraction
    of the reference's mean."""
    arm: str
    reference: str
    metric: str
    eval_set: str
    direction: str
    role: str = "hypothesis"          # "hypothesis" (decided), "secondary" (reported only), ...
    aggregation: str = "mean"         # "mean" or "geomean" (log scale; see the module docstring)
    n_seeds: int = 0
    n_items: int = 0
    seeds: list[int] = field(default_factory=list)
    dropped_items: int = 0
    dropped_seeds: list[int] = field(default_factory=list)
    mean_arm: float = math.nan
    mean_reference: float = math.nan
    ci_arm: tuple[float, float] = (math.nan, math.nan)
    ci_reference: tuple[float, float] = (math.nan, math.nan)
    diff: float = math.nan
    diff_ci: tuple[float, float] = (math.nan, math.nan)
    rel: float = math.nan
    rel_ci: tuple[float, float] = (math.nan, math.nan)
    effect_size: float = math.nan     # mean / sd of the per-item (seed-averaged) improvements (log
                                      # improvements for a geomean metric)
    p_value: float = math.nan         # two-level bootstrap test of the test's null on the decision
                                      # scale: "no difference" (superiority), the margin's side
                                      # (non-inferiority, equivalence: decision.margin_p_value)
    p_signflip: float = math.nan      # item-level sign-flip test (models held fixed)
    p_adjusted: float = math.nan      # p_value after the study's correction
    level: float = 0.95               # confidence level of every interval above
    alpha: float = math.nan           # the comparison's alpha after the study's correction; the
                                      # level is 1 - alpha, or 1 - 2 alpha for equivalence (TOST)
    effect: str = "relative"          # the scale the decision uses
    test: str = SUPERIORITY           # superiority | non_inferiority | equivalence
    min_effect: float = 0.0           # superiority: the minimum effect of interest
    margin: float | None = None       # non-inferiority, equivalence: the margin (>= 0), on `effect`'s scale
    verdict: str | None = None
    reason: str = ""
    settle: dict[str, Any] | None = None
    settle_text: str = ""
    blocked_by: list[str] = field(default_factory=list)   # integrity codes that void the verdict
    missing: dict[str, int] | None = None
    """Items of the eval set (every arm's items together) that each side lacks, when any:
    {"arm": k, "reference": j, "eval_set_items": n}; the comparison itself uses the shared items."""
    paired_outcomes: dict[str, Any] | None = None
    """With 0/1 values and one replicate: the 2x2 table of paired outcomes on the shared items
    {"both", "arm_only", "reference_only", "neither", "p_mcnemar"} (exact McNemar: a two-sided
    binomial test of arm_only against arm_only + reference_only; uncorrected, a cross-check)."""
    as_failures: dict[str, Any] | None = None
    """With 0/1 values (or a metric declaring its failure value, `Metric.missing`) and missing
    items: the same comparison on every item of the eval set with each missing item counted as a
    failure (0 when higher is better, 1 when lower is, else the declared value), at the same
    level and rule: {"n_items", "mean_reference", "mean_arm", "estimate", "interval", "verdict"}."""

    @property
    def estimate(self) -> float:
        return self.rel if self.effect == "relative" else self.diff

    @property
    def interval(self) -> tuple[float, float]:
        return self.rel_ci if self.effect == "relative" else self.diff_ci


@dataclass
class _Draws:
    x: np.ndarray            # (2, S, N): reference, arm (log values for a geomean metric)
    ref: np.ndarray          # bootstrap means of the reference (geometric means for geomean)
    arm: np.ndarray
    sign: float              # +1 when higher is better, -1 when lower is better
    log: bool = False        # x is on the log scale (geomean)


def _rel(sign: float, arm, ref):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.abs(ref) > 0, sign * (arm - ref) / np.abs(ref), np.nan)


def to_scale(x: np.ndarray, aggregation: str) -> np.ndarray:
    """The values the bootstrap averages: x itself, or log(x) for a geometric mean (inputs.py
    has refused values <= 0 of a geomean metric)."""
    if aggregation == "geomean":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(x)
    if aggregation != "mean":
        raise ValueError(f"aggregation {aggregation!r} is not supported; use 'mean' or 'geomean'")
    return x


def estimate(c: Comparison, x: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = SEED,
             method: str = "auto", signflip: bool = True) -> _Draws:
    """Fill the point estimates and p-values of `c` from x (2, S, N) = (reference, arm).
    `signflip=False` skips the sign-flip p-value (simulations that only need verdicts)."""
    sign = 1.0 if c.direction == "higher" else -1.0
    _, s, n = x.shape
    c.n_seeds, c.n_items = s, n
    geo = c.aggregation == "geomean"
    x = to_scale(x, c.aggregation)
    d = two_level(x, n_resamples=n_resamples, seed=seed, method=method)
    back = np.exp if geo else (lambda v: v)            # log-mean -> geometric mean
    ref, arm = back(d.point)
    c.mean_reference, c.mean_arm = float(ref), float(arm)
    c.diff = float(sign * (arm - ref))
    c.rel = float(_rel(sign, arm, ref))
    per_item = sign * (x[1] - x[0]).mean(axis=0)
    sd = per_item.std(ddof=1) if n > 1 else math.nan
    c.effect_size = float(per_item.mean() / sd) if sd and sd > 0 else math.nan
    draws = _Draws(x=x, ref=back(d.means[:, 0]), arm=back(d.means[:, 1]), sign=sign, log=geo)
    if c.test in MARGIN_TESTS:
        # the margin is on the effect's scale: read the draws there, as the interval is
        c.p_value = margin_p_value(c.test, decision_draws(draws, c.effect), c.margin or 0.0)
    elif geo:
        # on the log scale, where the bootstrap lives: "no difference" is a mean log difference
        # of 0, for the relative and the absolute effect alike
        log_diff = sign * (d.means[:, 1] - d.means[:, 0])
        c.p_value = bootstrap_p_value(log_diff, float(sign * (d.point[1] - d.point[0])))
    else:
        c.p_value = bootstrap_p_value(decision_draws(draws, c.effect), c.estimate)
    if signflip and n:
        c.p_signflip = sign_flip_p(per_item, n_resamples=n_resamples, seed=seed)
    return draws


def decision_draws(d: _Draws, effect: str) -> np.ndarray:
    if effect == "relative":
        return _rel(d.sign, d.arm, d.ref)
    return d.sign * (d.arm - d.ref)


def interval_level(test: str, alpha: float) -> float:
    """The level of the interval a test reads at the (corrected) `alpha`: 1 - alpha (superiority,
    non-inferiority: each end is a one-sided test at alpha/2), or 1 - 2 alpha for equivalence
    (TOST: the two one-sided tests at alpha each; docs/verdicts.md says why)."""
    return 1 - 2 * alpha if test == EQUIVALENCE else 1 - alpha


def finish(c: Comparison, d: _Draws, level: float, decide: bool = True) -> None:
    """Intervals at `level` = 1 - alpha (alpha corrected; an equivalence test reads 1 - 2 alpha,
    `interval_level`); then, when `decide`, the verdict and the settle estimate."""
    c.alpha = round(1 - level, 15)      # 1 - (1 - 0.05) is 0.050000000000000044
    level = interval_level(c.test, c.alpha) if decide else level
    c.level = level
    c.ci_reference = percentile_interval(d.ref, level)
    c.ci_arm = percentile_interval(d.arm, level)
    c.diff_ci = percentile_interval(d.sign * (d.arm - d.ref), level)
    c.rel_ci = percentile_interval(_rel(d.sign, d.arm, d.ref), level)
    if not decide:
        return
    lo, hi = c.interval
    if c.blocked_by:
        c.verdict = INCONCLUSIVE
        c.reason = "integrity error: " + ", ".join(c.blocked_by)
        return
    if d.x.size and np.ptp(d.x) == 0:
        # a floor or ceiling: both arms score the same value on every item and seed, so every
        # bootstrap draw is that value and the interval has width 0, which would read as "no
        # effect, refuted" while the study simply cannot tell the arms apart
        value = float(np.exp(d.x.flat[0]) if d.log else d.x.flat[0])
        c.verdict = INCONCLUSIVE
        c.reason = (f"no variation: every item of both arms scores {value:g} on every seed (a "
                    f"floor or ceiling), so the zero-width interval is no evidence either way")
        return
    c.verdict, c.reason = verdict_for(c.test, lo, hi, c.min_effect, c.margin or 0.0)
    if c.verdict == INCONCLUSIVE:
        edge = boundary(c.test, c.estimate, c.min_effect, c.margin or 0.0)
        c.settle = settle(c.estimate, lo, hi, edge, c.n_seeds, c.n_items,
                          *_variance_parts(d, c.effect, c.mean_reference))
        c.settle_text = settle_text(c.settle)


def _variance_parts(d: _Draws, effect: str, ref_mean: float) -> tuple[float | None, float]:
    """(seed part, item part) of the estimate's variance on the decision scale. `settle` uses only
    their ratios to each other and to the interval (it fits z to the interval), so a geomean
    metric keeps its log differences as they are (near 0 they are the relative effect)."""
    diff = d.sign * (d.x[1] - d.x[0])                  # (S, N)
    if effect == "relative" and not d.log:
        diff = diff / abs(ref_mean) if ref_mean else diff * np.nan
    s, n = diff.shape
    per_seed = diff.mean(axis=1)
    per_item = diff.mean(axis=0)
    vs = float(per_seed.var(ddof=1) / s) if s > 1 else None
    vi = float(per_item.var(ddof=1) / n) if n > 1 else 0.0
    return vs, vi
