"""The decision rule: a verdict from an interval and the minimum effect of interest.

All quantities are "improvement": positive means the arm is better than the reference in the
endpoint's direction (lower perplexity, higher accuracy). docs/verdicts.md states the rule.
"""

from __future__ import annotations

import math
from typing import Any

SUPPORTED, REFUTED, INCONCLUSIVE = "supported", "refuted", "inconclusive"


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
                           "items_total": None, "items_extra": None, "note": ""}
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


def settle_text(s: dict[str, Any]) -> str:
    parts = []
    if s.get("seeds_extra"):
        parts.append(f"about {s['seeds_extra']} more seeds ({s['seeds_total']} in all, same items)")
    if s.get("items_extra"):
        parts.append(f"about {s['items_extra']:,} more items ({s['items_total']:,} in all, same seeds)")
    text = " or ".join(parts)
    if s.get("note"):
        text = f"{text}; {s['note']}" if text else s["note"]
    return text or "no estimate"
