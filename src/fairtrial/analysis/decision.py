"""The decision rules: a verdict from an interval and the study's test (superiority against the
minimum effect of interest, non-inferiority or equivalence within a margin).

All quantities are "improvement": positive means the arm is better than the reference in the
endpoint's direction (lower perplexity, higher accuracy), so "worse" is always the negative side,
whatever the metric's direction. docs/verdicts.md states the rules and which interval each reads.
"""

from __future__ import annotations

import math
from typing import Any

SUPPORTED, REFUTED, INCONCLUSIVE = "supported", "refuted", "inconclusive"
SUPERIORITY, NON_INFERIORITY, EQUIVALENCE = "superiority", "non_inferiority", "equivalence"
TESTS = (SUPERIORITY, NON_INFERIORITY, EQUIVALENCE)
MARGIN_TESTS = (NON_INFERIORITY, EQUIVALENCE)
"""The tests that need a `margin` (and take no `min_effect`)."""


def verdict(lo: float, hi: float, min_effect: float) -> tuple[str, str]:
    """(verdict, reason) for an improvement interval [lo, hi] and a margin m = min_effect >= 0.

    supported:    lo > m        the whole interval is an improvement of at least m
    refuted:      hi < m        the improvement is credibly below m; the reason says whether the
                                arm is worse (hi < -m), within the no-effect band (-m < lo, hi < m),
                                or just smaller than m
    inconclusive: otherwise     the interval contains m
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return INCONCLUSIVE, "the interval could not be computed"
    m = min_effect
    if lo > m:
        return SUPPORTED, "the whole interval lies beyond the minimum effect"
    if hi < m:
        if hi < -m or (m == 0 and hi < 0):
            return REFUTED, "the arm is worse than the reference"
        if lo > -m:
            return REFUTED, "the whole interval lies inside the no-effect band"
        return REFUTED, "the improvement is smaller than the minimum effect"
    return INCONCLUSIVE, "the interval contains the minimum effect"


def non_inferiority(lo: float, hi: float, margin: float) -> tuple[str, str]:
    """(verdict, reason) of "the arm is not worse than the reference by more than `margin`".

    supported:    lo > -margin   the whole interval lies above -margin: any loss is smaller than it
    refuted:      hi < -margin   the arm is credibly worse than the reference by more than the margin
    inconclusive: otherwise      the interval contains -margin
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return INCONCLUSIVE, "the interval could not be computed"
    m = margin
    if lo > -m:
        if lo > 0:
            return SUPPORTED, "the whole interval lies above -margin (and above 0: the arm is better)"
        return SUPPORTED, "the whole interval lies above -margin: any loss is smaller than the margin"
    if hi < -m:
        return REFUTED, "the arm is worse than the reference by more than the margin"
    return INCONCLUSIVE, "the interval contains -margin"


def equivalence(lo: float, hi: float, margin: float) -> tuple[str, str]:
    """(verdict, reason) of "the arm and the reference differ by less than `margin` either way".

    supported:    -margin < lo and hi < margin   the whole interval lies inside the equivalence band
    refuted:      hi < -margin or lo > margin    the whole interval lies outside it (worse, or better)
    inconclusive: otherwise                      the interval contains -margin or +margin
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return INCONCLUSIVE, "the interval could not be computed"
    m = margin
    if -m < lo and hi < m:
        return SUPPORTED, "the whole interval lies inside (-margin, +margin)"
    if hi < -m:
        return REFUTED, "the arm is worse than the reference by more than the margin"
    if lo > m:
        return REFUTED, "the arm is better than the reference by more than the margin"
    return INCONCLUSIVE, "the interval contains a margin (-margin or +margin)"


def verdict_for(test: str, lo: float, hi: float, min_effect: float = 0.0,
           margin: float = 0.0) -> tuple[str, str]:
    """The verdict of `test` on the improvement interval [lo, hi]."""
    if test == SUPERIORITY:
        return verdict(lo, hi, min_effect)
    if test == NON_INFERIORITY:
        return non_inferiority(lo, hi, margin)
    if test == EQUIVALENCE:
        return equivalence(lo, hi, margin)
    raise ValueError(f"unknown test {test!r}; use one of {TESTS}")


def boundary(test: str, estimate: float, min_effect: float = 0.0, margin: float = 0.0) -> float:
    """The value the verdict of `test` turns on, nearest the estimate: the minimum effect
    (superiority), -margin (non-inferiority), or whichever of -margin, +margin is nearer the
    estimate (equivalence). Used to rank ties and to estimate what would settle a comparison."""
    if test == NON_INFERIORITY:
        return -margin
    if test == EQUIVALENCE:
        return margin if estimate >= 0 else -margin
    return min_effect


def strength(test: str, estimate: float, sd: float, min_effect: float = 0.0,
             margin: float = 0.0) -> float:
    """How far, in standard errors, the estimate lies on the "supported" side of its boundary
    (negative: on the other side). Ranks comparisons whose p-values tie."""
    if not sd > 0 or not math.isfinite(estimate):
        return 0.0
    if test == NON_INFERIORITY:
        return (estimate + margin) / sd
    if test == EQUIVALENCE:
        return (margin - abs(estimate)) / sd
    return (estimate - min_effect) / sd


def margin_p_value(test: str, draws, margin: float) -> float:
    """The p-value of a margin test's null hypothesis from bootstrap draws of the improvement, read
    the way its interval is (the share of draws on the null side of the margin, so p < alpha
    goes with a "supported" interval at that alpha):

    non-inferiority (null: improvement <= -margin; the two-sided 1 - alpha interval's lower end
    is its alpha/2 quantile): p = min(1, 2 * (1 + #{draw <= -margin}) / (1 + B));
    equivalence (TOST, nulls: <= -margin and >= +margin, each at alpha; the 1 - 2 alpha
    interval): p = (1 + max(#{draw <= -margin}, #{draw >= +margin})) / (1 + B).
    """
    import numpy as np

    d = np.asarray(draws, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return math.nan
    below = int((d <= -margin).sum())
    if test == NON_INFERIORITY:
        return min(1.0, 2 * (1 + below) / (1 + d.size))
    if test == EQUIVALENCE:
        return (1 + max(below, int((d >= margin).sum()))) / (1 + d.size)
    raise ValueError(f"margin_p_value is for the margin tests {MARGIN_TESTS}; got {test!r}")


def settle(estimate: float, lo: float, hi: float, min_effect: float, n_seeds: int, n_items: int,
           var_seeds: float | None, var_items: float) -> dict[str, Any]:
    """How many seeds or items would likely settle an inconclusive comparison.

    The interval's half-width is modelled as h = z * sqrt(var_seeds + var_items), the seed and the
    item parts of the estimate's variance (var_seeds = variance over seeds of the per-seed effect
    / S, var_items = variance over items of the seed-averaged per-item effect / N), with z fitted
    to the bootstrap interval. Each part shrinks as 1/n. It would settle when the half-width falls
    below the distance from the estimate to the margin, |estimate - m|, assuming the estimate stays
    where it is. Returns total and extra seeds (items fixed) and items (seeds fixed); None where
    adding only that kind cannot get there.
    """
    out: dict[str, Any] = {"seeds_total": None, "seeds_extra": None,
                           "items_total": None, "items_extra": None, "note": "",
                           "n_seeds": n_seeds, "n_items": n_items}
    gap = abs(estimate - min_effect)
    h = (hi - lo) / 2
    vs = var_seeds if var_seeds is not None and math.isfinite(var_seeds) else None
    total = (vs or 0.0) + var_items
    if not (math.isfinite(gap) and math.isfinite(h)) or total <= 0 or h <= 0:
        out["note"] = "no spread to scale"
        return out
    if gap < 1e-12 * max(1.0, abs(min_effect)):
        out["note"] = "the estimate sits on the minimum effect; more data is unlikely to settle it"
        return out
    budget = (gap * math.sqrt(total) / h) ** 2       # = (gap / z)^2: the variance we may keep
    if vs is not None and vs > 0 and budget > var_items:
        s = math.ceil(n_seeds * vs / (budget - var_items))
        out["seeds_total"], out["seeds_extra"] = max(s, n_seeds + 1), max(s, n_seeds + 1) - n_seeds
    if var_items > 0 and budget > (vs or 0.0):
        n = math.ceil(n_items * var_items / (budget - (vs or 0.0)))
        out["items_total"], out["items_extra"] = max(n, n_items + 1), max(n, n_items + 1) - n_items
    if vs is None:
        out["note"] = "one seed: the seed-to-seed variance is unknown, so only items are scaled"
    elif out["seeds_total"] is None and out["items_total"] is None:
        out["note"] = "neither more seeds nor more items alone would likely settle it"
    return out


MAX_SEEDS = 50
"""Past this many seeds in all, an estimate is not worth printing as a count ("about 4907 more
seeds"): the text says which of seeds or items would settle it sooner instead."""
MAX_ITEMS_FACTOR = 10
"""Likewise past this many times the items the comparison has."""


def settle_text(s: dict[str, Any]) -> str:
    """The estimate in words. Counts within the bounds (MAX_SEEDS seeds in all, MAX_ITEMS_FACTOR
    times the items) are printed; past them, only which kind would settle it sooner."""
    seeds, items = s.get("seeds_total"), s.get("items_total")
    n_seeds, n_items = s.get("n_seeds"), s.get("n_items")
    seeds_far = bool(seeds) and seeds > MAX_SEEDS
    items_far = bool(items) and bool(n_items) and items > MAX_ITEMS_FACTOR * n_items
    parts, beyond = [], []
    if s.get("seeds_extra") and not seeds_far:
        parts.append(f"about {s['seeds_extra']} more seeds ({s['seeds_total']} in all, same items)")
    if s.get("items_extra") and not items_far:
        parts.append(f"about {s['items_extra']:,} more items ({s['items_total']:,} in all, same seeds)")
    if seeds_far:
        beyond.append(f"more than {MAX_SEEDS} seeds")
    if items_far:
        beyond.append(f"more than {MAX_ITEMS_FACTOR}x the items ({MAX_ITEMS_FACTOR * n_items:,})")
    text = " or ".join(parts)
    if beyond and parts:
        # one kind is within reach, so it is the sooner one; say what the other would take
        text += f"; more {'seeds' if seeds_far else 'items'} alone would take {beyond[0]}"
    elif seeds_far and items_far and n_seeds:
        by_seeds, by_items = seeds / n_seeds, items / n_items
        kind, factor = ("seeds", by_seeds) if by_seeds <= by_items else ("items", by_items)
        text = (f"{beyond[0]} or {beyond[1]} would be needed; more {kind} would settle it "
                f"sooner (about {factor:,.0f}x the {kind})")
    elif beyond:
        other = "items" if seeds_far else "seeds"
        text = f"{beyond[0]} would be needed" + (
            "" if s.get("note") else f" (more {other} alone would not settle it)")
    if s.get("note"):
        text = f"{text}; {s['note']}" if text else s["note"]
    return text or "no estimate"
