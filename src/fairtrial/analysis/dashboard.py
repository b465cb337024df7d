"""The dashboard's item-by-item view of two arms (its compare page): per item, the mean over the
seeds both arms have of (a - b), paired on item and seed, and the items where they disagree most.

Descriptive only (no interval, no verdict: those are `analyze`'s, shown on the report page), but
every number the dashboard shows comes from `analysis`, so these live here and not in a view.
Input: the item-score table `collect.gather` returns (columns arm, system, metric, eval_set,
item_id, replicate, value)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


def arms_with_scores(scores: pd.DataFrame) -> list[str]:
    """The arms that have any item scores, sorted."""
    return sorted(set(scores["arm"])) if not scores.empty else []


def _model_rows(scores: pd.DataFrame, metric: str) -> pd.DataFrame:
    # the arms' own systems, not their trivial baselines
    return scores[(scores["metric"] == metric) & (scores["system"] == "model")]


def eval_sets_of(scores: pd.DataFrame, metric: str) -> list[str]:
    """The eval sets with item scores of `metric`, sorted."""
    return sorted(set(_model_rows(scores, metric)["eval_set"]))


@dataclass(frozen=True)
class ItemDifference:
    item_id: str
    a: float
    """Arm a's mean over the paired seeds."""
    b: float
    diff: float
    """The mean over the paired seeds of (a - b)."""


@dataclass(frozen=True)
class PairedDifferences:
    seeds: list[int]
    """The seeds (replicates) on which both arms have scores of some item."""
    n_items: int
    """Items with at least one (item, seed) pair scored by both arms."""
    only_a: int
    """(item, seed) pairs only arm a has."""
    only_b: int
    mean_a: float | None
    """The mean over the paired items of a's per-item mean (None: no paired item)."""
    mean_b: float | None
    mean_diff: float | None
    a_higher: int
    """Paired items whose mean difference is above 0."""
    b_higher: int
    ties: int
    items: list[ItemDifference]
    """The `top` items of the largest |diff|, largest first (ties in item order)."""


def paired_differences(scores: pd.DataFrame, a: str, b: str, metric: str, eval_set: str,
                       top: int = 25) -> PairedDifferences:
    """Arms a and b on one metric and eval set, paired on (item, seed); a duplicate (item, seed)
    row of one arm counts once (its first value)."""
    df = _model_rows(scores, metric)
    df = df[df["eval_set"] == eval_set]
    pa = df[df["arm"] == a].set_index(["item_id", "replicate"])["value"]
    pb = df[df["arm"] == b].set_index(["item_id", "replicate"])["value"]
    pa = pa[~pa.index.duplicated()]
    pb = pb[~pb.index.duplicated()]
    both = pa.index.intersection(pb.index)
    diff = (pa.loc[both] - pb.loc[both]).groupby(level="item_id").mean()
    va = pa.loc[both].groupby(level="item_id").mean()
    vb = pb.loc[both].groupby(level="item_id").mean()
    order = diff.abs().sort_values(ascending=False, kind="stable").index[:max(0, top)]
    n = len(diff)
    return PairedDifferences(
        seeds=sorted({int(s) for s in both.get_level_values("replicate")}),
        n_items=n, only_a=len(pa.index.difference(both)), only_b=len(pb.index.difference(both)),
        mean_a=float(va.mean()) if n else None, mean_b=float(vb.mean()) if n else None,
        mean_diff=float(diff.mean()) if n else None,
        a_higher=int((diff > 0).sum()), b_higher=int((diff < 0).sum()),
        ties=int((diff == 0).sum()),
        items=[ItemDifference(item_id=str(i), a=float(va[i]), b=float(vb[i]), diff=float(diff[i]))
               for i in order])
