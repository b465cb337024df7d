"""Reading the item-score table: validation at the boundary, and paired matrices for the stats.

The table has the columns of fairtrial.scores (item_id, eval_set, eval_set_digest, metric, value,
system) plus `arm` and `replicate`, added by the integrator. Rows with system == "model" are the
arm's model; other systems are trivial baselines that came with the arm.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fairtrial.analysis.design import AnalysisInputError, StudyDesign
from fairtrial.scores import REQUIRED

COLUMNS = REQUIRED + ("arm", "replicate")
KEY = ["arm", "replicate", "eval_set", "metric", "system", "item_id"]
MODEL = "model"


def validate(scores: pd.DataFrame, design: StudyDesign) -> pd.DataFrame:
    """Return a clean copy (string keys, float values, int replicates) or raise
    AnalysisInputError naming the column, rows and what was expected."""
    if not isinstance(scores, pd.DataFrame):
        raise AnalysisInputError(f"item scores must be a pandas DataFrame; got {type(scores).__name__}")
    missing = [c for c in COLUMNS if c not in scores.columns]
    if missing:
        raise AnalysisInputError(
            f"item scores lack columns {missing}; required: {list(COLUMNS)} "
            "(arm and replicate are added from the study's records)")
    if scores.empty:
        raise AnalysisInputError("item scores are empty: no evaluation has finished yet")
    df = scores.copy()
    for c in ("item_id", "eval_set", "eval_set_digest", "metric", "system", "arm"):
        if df[c].isna().any():
            rows = df.index[df[c].isna()][:5].tolist()
            raise AnalysisInputError(f"item scores: column {c!r} is empty in rows {rows}")
        df[c] = df[c].astype(str)
    try:
        df["value"] = pd.to_numeric(df["value"], errors="raise").astype(np.float64)
    except (ValueError, TypeError) as err:
        raise AnalysisInputError(f"item scores: column 'value' must be numeric ({err})") from None
    bad = ~np.isfinite(df["value"].to_numpy())
    if bad.any():
        first = df.loc[bad].iloc[0]
        raise AnalysisInputError(
            f"item scores: {int(bad.sum())} values are NaN or infinite, first at row "
            f"{df.index[bad][0]} (arm {first['arm']!r}, replicate {first['replicate']}, metric "
            f"{first['metric']!r}, item {first['item_id']!r}); a stage must write finite values")
    try:
        rep = pd.to_numeric(df["replicate"], errors="raise")
        if not np.all(np.equal(np.mod(rep, 1), 0)):
            raise ValueError("not whole numbers")
        df["replicate"] = rep.astype(np.int64)
    except (ValueError, TypeError) as err:
        raise AnalysisInputError(f"item scores: column 'replicate' must hold integer seeds ({err})") from None
    dup = df.duplicated(KEY, keep=False)
    if dup.any():
        d = df.loc[dup, KEY].iloc[0]
        raise AnalysisInputError(
            f"item scores: {int(dup.sum())} rows repeat an item id within one (arm, replicate, "
            f"eval_set, metric, system), e.g. item {d['item_id']!r} of arm {d['arm']!r} replicate "
            f"{d['replicate']} eval set {d['eval_set']!r} metric {d['metric']!r}; each item is "
            "scored once per run")
    # A geometric mean is taken on the log scale: a zero or negative value has no logarithm.
    for metric in design.analysed_metrics():
        if design.aggregation(metric) != "geomean":
            continue
        bad = (df["metric"] == metric).to_numpy() & (df["value"].to_numpy() <= 0)
        if bad.any():
            first = df.loc[bad].iloc[0]
            raise AnalysisInputError(
                f"item scores: metric {metric!r} is aggregated as a geometric mean, but "
                f"{int(bad.sum())} of its values are <= 0, first at row {df.index[bad][0]} (arm "
                f"{first['arm']!r}, replicate {first['replicate']}, system {first['system']!r}, "
                f"item {first['item_id']!r}, value {first['value']:g}); a geomean metric must be "
                "positive (declare it with aggregation 'mean' if it is not)")
    # A proportion is a share of 0/1 item values (right or wrong): anything else is a mistake.
    for metric in design.analysed_metrics():
        if not design.proportion(metric):
            continue
        v = df["value"].to_numpy()
        bad = (df["metric"] == metric).to_numpy() & (v != 0.0) & (v != 1.0)
        if bad.any():
            first = df.loc[bad].iloc[0]
            raise AnalysisInputError(
                f"item scores: metric {metric!r} is declared a proportion (0/1 values), but "
                f"{int(bad.sum())} of its values are neither 0 nor 1, first at row "
                f"{df.index[bad][0]} (arm {first['arm']!r}, item {first['item_id']!r}, value "
                f"{first['value']:g}); declare it with aggregation 'mean' if it is not")
    ep = design.endpoint.metric
    if not (df["metric"] == ep).any():
        raise AnalysisInputError(
            f"endpoint metric {ep!r} has no item scores; metrics present: "
            f"{sorted(df['metric'].unique())}")
    if design.control is not None:
        ctrl = df[(df["arm"] == design.control) & (df["metric"] == ep) & (df["system"] == MODEL)]
        if ctrl.empty:
            raise AnalysisInputError(
                f"control arm {design.control!r} has no model scores on {ep!r}; arms with scores: "
                f"{sorted(df['arm'].unique())}. Wait for its evaluation or fix its failure")
    return df


@dataclass
class Paired:
    """Aligned values x[k, s, i] for the K given (arm, system) series, on the seeds and items
    they all share. `dropped_items` / `dropped_seeds` count what one side had and another lacked."""
    x: np.ndarray
    seeds: list[int]
    items: list[str]
    dropped_items: int
    dropped_seeds: list[int]


_CACHE: dict[int, tuple[weakref.ref, dict]] = {}


def _groups(df: pd.DataFrame) -> dict:
    """(arm, metric, system, eval_set) -> rows, computed once per table: filtering a large table
    by four string columns for every series is what made the analysis slow."""
    hit = _CACHE.get(id(df))
    if hit is not None and hit[0]() is df:
        return hit[1]
    groups = {k: g for k, g in df.groupby(["arm", "metric", "system", "eval_set"], sort=False)}
    for key in [k for k, (ref, _) in _CACHE.items() if ref() is None]:
        del _CACHE[key]
    _CACHE[id(df)] = (weakref.ref(df), groups)
    return groups


def keys(df: pd.DataFrame) -> list[tuple[str, str, str, str]]:
    """Every (arm, metric, system, eval_set) with scores."""
    return list(_groups(df))


def series(df: pd.DataFrame, arm: str, metric: str, eval_sets: str | list[str],
           system: str = MODEL) -> pd.DataFrame:
    """replicate x item table of one arm's values. With several eval sets the items are keyed
    "eval_set/item_id" so that equal ids from different sets stay apart."""
    sets = [eval_sets] if isinstance(eval_sets, str) else list(eval_sets)
    groups = _groups(df)
    parts = [groups[(arm, metric, system, e)] for e in sets if (arm, metric, system, e) in groups]
    if not parts:
        return pd.DataFrame()
    sub = parts[0] if len(parts) == 1 else pd.concat(parts)
    key = sub["item_id"] if len(sets) == 1 else sub["eval_set"] + "/" + sub["item_id"]
    return sub.assign(_key=key).pivot(index="replicate", columns="_key", values="value")


def pair(tables: list[pd.DataFrame], broadcast_seedless: bool = False) -> Paired:
    """Align several replicate x item tables on their shared seeds and shared items.

    An item counts as shared when every table has it for every shared seed. With
    broadcast_seedless, a table whose seeds do not overlap the others' (a baseline scored once) is
    averaged over its seeds and used for every seed.
    """
    if any(t.empty for t in tables):
        raise ValueError("a series has no scores")
    seeded = tables
    if broadcast_seedless:     # tables sharing no seed with the first one are broadcast below
        seeded = [t for t in tables if set(t.index) & set(tables[0].index)]
    seeds = sorted(set.intersection(*(set(t.index) for t in seeded)))
    all_seeds = sorted(set.union(*(set(t.index) for t in tables)))
    if not seeds:
        raise ValueError("the series share no seed")
    aligned = []
    for t in tables:
        if broadcast_seedless and not set(seeds) & set(t.index):
            t = pd.DataFrame([t.mean(axis=0)] * len(seeds), index=seeds)
        aligned.append(t.loc[seeds])
    # pandas Index set operations are hashed: much faster than Python sets of item ids
    common = aligned[0].columns[aligned[0].notna().to_numpy().all(axis=0)]
    every = aligned[0].columns
    for t in aligned[1:]:
        common = common.intersection(t.columns[t.notna().to_numpy().all(axis=0)])
        every = every.union(t.columns)
    items = common.sort_values()
    x = np.stack([t[items].to_numpy(dtype=np.float64) for t in aligned]) if len(items) else \
        np.empty((len(tables), len(seeds), 0))
    return Paired(x=x, seeds=seeds, items=[str(i) for i in items],
                  dropped_items=len(every) - len(items),
                  dropped_seeds=[s for s in all_seeds if s not in seeds])
