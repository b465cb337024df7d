"""Integrity checks, run before any comparison. Each returns a list of Findings; an empty list
means the check found nothing. tests/analysis/test_integrity.py makes each one fire and shows it
quiet on a fair study."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Mapping

import pandas as pd

from fairtrial.analysis.compare import Comparison, estimate, finish
from fairtrial.analysis.design import AnalysisContext, StudyDesign
from fairtrial.analysis.findings import Finding
from fairtrial.analysis.inputs import MODEL, keys, pair, series
from fairtrial.scores import UNDECLARED

BASELINE_RESAMPLES = 2_000    # the baseline check needs a rough interval, not a precise one

Cells = set[tuple[str, str]]
"""(arm, eval set) pairs that enter a decided comparison (as the arm or as its reference). The
baseline and item-count checks are loud only there: in a cross-evaluation a specialist that is
poor on another level's set is the expected off-diagonal cost, not a fault of the study."""


def _endpoint_rows(df: pd.DataFrame, design: StudyDesign) -> pd.DataFrame:
    return df[(df["metric"] == design.endpoint.metric) & (df["system"] == MODEL)]


def check_arms(df: pd.DataFrame, design: StudyDesign, complete: bool = True,
               arms_seen: set[str] | None = None) -> list[Finding]:
    """Scores from arms the design does not declare (`arms_seen`: the arms of the table before
    those were dropped); declared arms without endpoint scores."""
    out = []
    seen = arms_seen if arms_seen is not None else set(df["arm"].unique())
    unknown = sorted(seen - set(design.arms))
    if unknown:
        out.append(Finding("warning", "unknown_arm",
                           f"item scores for arms the study does not declare: {unknown}; they are "
                           "left out (was an arm renamed or removed from the study file?)",
                           {"arms": unknown}))
    have = {a for (a, m, sy, _) in keys(df) if m == design.endpoint.metric and sy == MODEL}
    absent = [a for a in design.arms if a not in have]
    if absent:
        sev = "warning" if complete else "info"
        out.append(Finding(sev, "arm_without_scores",
                           f"arms with no {design.endpoint.metric!r} scores yet: {absent}; they are "
                           "not compared", {"arms": absent}))
    return out


def check_eval_items(df: pd.DataFrame, design: StudyDesign) -> list[Finding]:
    """Items are identified by (eval set, item id). Two kinds of problem:
    - different content behind the same items (error: comparisons on the set are void): two
      declared eval-set digests differ (imported rows without one carry UNDECLARED, which claims
      nothing), or one item id carries two different item digests (optional column item_digest);
    - coverage (warning): an arm lacks items other arms have. It is never a mismatch: each pair
      of arms is compared on the items both have, and the finding names the arm, the count and a
      few ids."""
    out = []
    ep = _endpoint_rows(df, design)
    for eval_set, g in ep.groupby("eval_set", sort=True):
        declared = g[g["eval_set_digest"] != UNDECLARED]
        digests = declared.groupby("eval_set_digest")["arm"].unique()
        if len(digests) > 1:
            by_digest = {str(dg)[:12]: sorted(map(str, arms)) for dg, arms in digests.items()}
            out.append(Finding(
                "error", "eval_digest_mismatch",
                f"eval set {eval_set!r} has {len(digests)} different digests across runs "
                f"({'; '.join(f'{d}: {a}' for d, a in by_digest.items())}): the arms were not scored "
                "on the same items, so comparisons on this set are void. Re-run the evaluation with "
                "one eval set for every arm",
                {"eval_set": eval_set, "digests": by_digest}))
        if "item_digest" in g.columns:
            per_item = g.dropna(subset=["item_digest"]).groupby("item_id")["item_digest"].nunique()
            differ = sorted(map(str, per_item.index[per_item > 1]))
            if differ:
                arms = sorted(map(str, g.loc[g["item_id"].isin(differ), "arm"].unique()))
                out.append(Finding(
                    "error", "eval_digest_mismatch",
                    f"eval set {eval_set!r}: {len(differ):,} item ids carry different content in "
                    f"different arms (their item digests differ; e.g. {', '.join(differ[:3])}; arms "
                    f"{arms}): the arms were not scored on the same items, so comparisons on this "
                    "set are void. Score every arm on one version of the eval set",
                    {"eval_set": eval_set, "items": differ[:20], "n": len(differ), "arms": arms}))
        every = set(g["item_id"])
        lacking: dict[str, dict[str, Any]] = {}
        for arm, ga in g.groupby("arm", sort=False):
            per_rep = {int(r): every - set(gr["item_id"]) for r, gr in ga.groupby("replicate")}
            worst = max(per_rep.values(), key=len)
            if not worst:
                continue
            same = len({frozenset(v) for v in per_rep.values()}) == 1
            lacking[str(arm)] = {"n": len(worst), "ids": sorted(worst)[:5],
                                 "seeds": None if same else
                                 {str(r): len(v) for r, v in sorted(per_rep.items()) if v}}
        if lacking:
            parts = []
            for a in sorted(lacking):
                x = lacking[a]
                if x["seeds"] is None:
                    parts.append(f"{a} lacks {x['n']:,} (e.g. {', '.join(x['ids'][:3])})")
                else:
                    parts.append(f"{a}: " + ", ".join(f"seed {r} lacks {k}"
                                                      for r, k in x["seeds"].items()))
            out.append(Finding(
                "warning", "missing_items",
                f"eval set {eval_set!r}: {len(every):,} items in all, but some arms lack items ("
                + "; ".join(parts) + "). Each pair of arms is compared on the items both have "
                "(up to " + f"{max(x['n'] for x in lacking.values()):,}" + " left out); with 0/1 "
                "values the report also shows each comparison with the missing items counted as "
                "failures",
                {"eval_set": eval_set, "n_items": len(every), "lacking": lacking}))
    return out


def check_seeds(df: pd.DataFrame, design: StudyDesign, complete: bool = True) -> list[Finding]:
    """Unequal seed sets across arms (pairing uses the shared ones), or seeds the design declares
    that no arm reports."""
    out = []
    ep = _endpoint_rows(df, design)
    seeds = {a: sorted(map(int, g["replicate"].unique())) for a, g in ep.groupby("arm")}
    seeds = {a: s for a, s in seeds.items() if a in design.arms}
    if len({tuple(s) for s in seeds.values()}) > 1:
        shared = sorted(set.intersection(*(set(s) for s in seeds.values())))
        out.append(Finding(
            "warning" if complete else "info", "unequal_seeds",
            "arms have different seeds: " + "; ".join(f"{a}: {s}" for a, s in seeds.items())
            + f". Paired comparisons use the seeds both arms share (all arms share {shared})",
            {"seeds": seeds, "shared": shared}))
    if design.replicates and complete:
        declared = set(design.replicates)
        short = {a: sorted(declared - set(s)) for a, s in seeds.items() if declared - set(s)}
        if short:
            out.append(Finding(
                "warning", "missing_seeds",
                "declared seeds without scores: " + "; ".join(f"{a}: {s}" for a, s in short.items()),
                {"missing": short}))
    return out


def check_min_items(df: pd.DataFrame, design: StudyDesign,
                    decided: Cells | None = None) -> list[Finding]:
    """An endpoint computed on fewer than design.min_items items: a warning where the (arm, eval
    set) enters a decided comparison (`decided`; None = every cell does), one `info` per arm for
    the cells nobody decides on (a cross-evaluation's off-diagonal sets)."""
    out = []
    ep = _endpoint_rows(df, design)
    counts = ep.groupby(["arm", "eval_set", "replicate"])["item_id"].nunique()
    small = counts[counts < design.min_items]
    if not len(small):
        return out
    cells = sorted({(a, e, int(n)) for (a, e, _), n in small.items()})
    loud = [c for c in cells if _is_decided(decided, c[0], c[1])]
    if loud:
        out.append(Finding(
            "warning", "too_few_items",
            f"the endpoint {design.endpoint.metric!r} rests on fewer than {design.min_items} items "
            "in " + "; ".join(f"{a} on {e} ({n} items)" for a, e, n in loud[:8])
            + (" ..." if len(loud) > 8 else "") + ": intervals from so few items are unreliable",
            {"min_items": design.min_items, "cells": [list(c) for c in loud]}))
    for arm, quiet in _by_arm(c for c in cells if not _is_decided(decided, c[0], c[1])):
        out.append(Finding(
            "info", "too_few_items",
            f"arm {arm!r}: fewer than {design.min_items} {design.endpoint.metric!r} items on eval "
            "sets no decided comparison uses: " + ", ".join(f"{e} ({n})" for _, e, n in quiet)
            + "; their cells in the cross-evaluation matrix are rough",
            {"arm": arm, "min_items": design.min_items, "decided": False,
             "cells": [list(c) for c in quiet]}))
    return out


def _is_decided(decided: Cells | None, arm: str, eval_set: str) -> bool:
    return decided is None or (arm, eval_set) in decided


def _by_arm(cells: Iterable[tuple]) -> list[tuple[str, list[tuple]]]:
    """Group (arm, ...) tuples by arm, keeping their order."""
    groups: dict[str, list[tuple]] = {}
    for c in cells:
        groups.setdefault(c[0], []).append(c)
    return list(groups.items())


def _norm(text: str) -> str:
    return " ".join(str(text).split()).casefold()


def check_overlap(context: AnalysisContext) -> list[Finding]:
    """Eval items that appear inside the training texts: exact duplicates (error) and duplicates
    after collapsing whitespace and case (warning)."""
    out = []
    if not context.train_texts or not context.eval_texts:
        return out
    for who, texts in context.train_texts.items():
        exact = set(map(str, texts))
        normal = {_norm(t) for t in exact}
        for eval_set, items in context.eval_texts.items():
            ex = sorted(i for i, t in items.items() if str(t) in exact)
            nm = sorted(i for i, t in items.items() if str(t) not in exact and _norm(t) in normal)
            arm = "every arm" if who == "*" else f"arm {who!r}"
            if ex:
                out.append(Finding(
                    "error", "train_eval_overlap",
                    f"{len(ex)} of {len(items)} items of eval set {eval_set!r} appear verbatim in the "
                    f"training texts of {arm} (e.g. {ex[:3]}): the endpoint measures memorisation "
                    "on them. Deduplicate the training data against the eval set",
                    {"train": who, "eval_set": eval_set, "kind": "exact", "n": len(ex),
                     "n_items": len(items), "items": ex[:20]}))
            if nm:
                out.append(Finding(
                    "warning", "train_eval_overlap",
                    f"{len(nm)} of {len(items)} items of eval set {eval_set!r} match training texts "
                    f"of {arm} after collapsing whitespace and case (e.g. {nm[:3]})",
                    {"train": who, "eval_set": eval_set, "kind": "normalised", "n": len(nm),
                     "n_items": len(items), "items": nm[:20]}))
    return out


def check_splits(context: AnalysisContext) -> list[Finding]:
    """Splits the recipe could not reproduce from their seed."""
    out = []
    for sp in context.splits:
        if sp.get("reproducible", True):
            continue
        where = f" of arm {sp['arm']!r}" if sp.get("arm") else ""
        out.append(Finding(
            "error", "split_not_reproducible",
            f"split {sp.get('name', '?')!r}{where} is not reproducible from its seed "
            f"{sp.get('seed')!r}" + (f": {sp['details']}" if sp.get("details") else "")
            + "; the eval set may differ between runs",
            {k: v for k, v in sp.items()}))
    return out


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def check_config_drift(context: AnalysisContext) -> list[Finding]:
    """Runs whose effective params differ from the declared ones (e.g. an OOM back-off)."""
    per_arm: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for rec in context.effective_params:
        dec, eff = _flatten(rec.get("declared") or {}), _flatten(rec.get("effective") or {})
        for key in sorted(set(dec) | set(eff)):
            if dec.get(key) != eff.get(key):
                per_arm[str(rec.get("arm"))][key].append(
                    {"replicate": rec.get("replicate"), "stage": rec.get("stage"),
                     "declared": dec.get(key), "effective": eff.get(key)})
    out = []
    for arm, keys in sorted(per_arm.items()):
        parts = []
        for key, changes in keys.items():
            vals = sorted({f"{c['declared']!r} -> {c['effective']!r}" for c in changes})
            reps = sorted({c["replicate"] for c in changes}, key=str)
            parts.append(f"{key} {', '.join(vals)} (seeds {reps})")
        out.append(Finding(
            "warning", "config_drift",
            f"arm {arm!r} ran with params other than declared: " + "; ".join(parts)
            + ". Its results describe the effective config; check it still answers the question",
            {"arm": arm, "changes": {k: v for k, v in keys.items()}}))
    return out


def check_baselines(df: pd.DataFrame, design: StudyDesign, seed: int,
                    arms: Iterable[str] | None = None,
                    decided: Cells | None = None) -> tuple[list[Finding], list[Comparison]]:
    """A model that does not beat its arm's trivial baselines on the endpoint: an error when the
    model is no better at all, a warning when the interval includes no improvement. Only on the
    (arm, eval set) cells that enter a decided comparison (`decided`; None = every cell); on the
    others one `info` per arm lists the eval sets where the model is not clearly better."""
    out, comps = [], []
    metric = design.endpoint.metric
    arms = list(arms) if arms is not None else list(design.arms)
    alpha = design.decision.alpha
    ks = keys(df)
    quiet: list[tuple[str, str, str, Comparison]] = []     # (arm, system, eval set, comparison)
    for arm in arms:
        systems = sorted({sy for (a, m, sy, _) in ks if a == arm and m == metric and sy != MODEL})
        for system in systems:
            for eval_set in sorted({e for (a, m, sy, e) in ks if (a, m, sy) == (arm, metric, system)}):
                model = series(df, arm, metric, eval_set)
                base = series(df, arm, metric, eval_set, system=system)
                if model.empty or base.empty:
                    continue
                p = pair([model, base], broadcast_seedless=True)
                if p.x.shape[2] == 0:
                    continue
                c = Comparison(arm=arm, reference=f"baseline:{system}", metric=metric,
                               eval_set=eval_set, direction=design.endpoint.direction,
                               role="baseline", effect="absolute",
                               aggregation=design.aggregation(metric))
                d = estimate(c, p.x[::-1].copy(), n_resamples=BASELINE_RESAMPLES, seed=seed,
                             signflip=False)
                finish(c, d, 1 - alpha, decide=False)
                comps.append(c)
                lo, _ = c.diff_ci
                if c.diff > 0 and lo > 0:
                    continue
                if not _is_decided(decided, arm, eval_set):
                    quiet.append((arm, system, eval_set, c))
                elif c.diff <= 0:
                    out.append(Finding(
                        "error", "baseline_not_beaten",
                        f"arm {arm!r} does not beat the trivial baseline {system!r} on "
                        f"{eval_set!r}: {metric} {c.mean_arm:.4g} vs {c.mean_reference:.4g} "
                        f"({design.endpoint.direction} is better). The model learned nothing "
                        "useful; its comparisons mean little",
                        {"arm": arm, "baseline": system, "eval_set": eval_set,
                         "model": c.mean_arm, "baseline_mean": c.mean_reference,
                         "improvement": c.diff, "interval": list(c.diff_ci)}))
                else:
                    out.append(Finding(
                        "warning", "baseline_not_beaten",
                        f"arm {arm!r} is not clearly better than the trivial baseline {system!r} "
                        f"on {eval_set!r}: improvement {c.diff:.4g}, interval "
                        f"[{c.diff_ci[0]:.4g}, {c.diff_ci[1]:.4g}] includes none",
                        {"arm": arm, "baseline": system, "eval_set": eval_set,
                         "improvement": c.diff, "interval": list(c.diff_ci)}))
    for arm, rows in _by_arm(quiet):
        parts = [f"{e} {c.mean_arm:.4g} vs {system} {c.mean_reference:.4g}"
                 + ("" if c.diff <= 0 else " (better, within noise)") for _, system, e, c in rows]
        out.append(Finding(
            "info", "baseline_not_beaten",
            f"arm {arm!r} does not clearly beat its trivial baseline on eval sets no decided "
            f"comparison uses ({metric}, {design.endpoint.direction} is better): "
            + "; ".join(parts) + ". Expected off a specialist's own eval set; its decided "
            "comparisons are unaffected",
            {"arm": arm, "decided": False,
             "cells": [{"baseline": system, "eval_set": e, "model": c.mean_arm,
                        "baseline_mean": c.mean_reference, "improvement": c.diff,
                        "interval": list(c.diff_ci)} for _, system, e, c in rows]}))
    return out, comps


def run_all(df: pd.DataFrame, design: StudyDesign, context: AnalysisContext, seed: int,
            arms_seen: set[str] | None = None,
            decided: Cells | None = None) -> tuple[list[Finding], list[Comparison]]:
    """Every check, in the order the report lists them (errors sort first later). `df` holds the
    declared arms only; `arms_seen` every arm the table had; `decided` the (arm, eval set) cells
    that enter a decided comparison (None: every cell, as in a study without cross-evaluation)."""
    findings: list[Finding] = []
    findings += check_arms(df, design, context.complete, arms_seen)
    known = df
    findings += check_eval_items(known, design)
    findings += check_seeds(known, design, context.complete)
    findings += check_min_items(known, design, decided)
    findings += check_overlap(context)
    findings += check_splits(context)
    findings += check_config_drift(context)
    base, comps = check_baselines(known, design, seed, decided=decided)
    findings += base
    return findings, comps


def blocked_sets(findings: list[Finding]) -> set[str]:
    """Eval sets whose comparisons are void (different items behind one name)."""
    return {f.details["eval_set"] for f in findings if f.code == "eval_digest_mismatch"}


def severity_rank(f: Finding) -> int:
    return {"error": 0, "warning": 1, "info": 2}[f.severity]


__all__ = ["run_all", "check_arms", "check_eval_items", "check_seeds", "check_min_items",
           "check_overlap", "check_splits", "check_config_drift", "check_baselines",
           "blocked_sets", "severity_rank"]
