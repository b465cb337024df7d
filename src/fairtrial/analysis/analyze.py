"""The entry point: item scores + study design -> AnalysisResult.

Order of work, top to bottom: validate the table; run the integrity checks; summarise every arm;
enumerate the hypotheses (which arm against which reference, on which eval set); bootstrap each
once; set the corrected interval levels from the p-values; decide; then the secondary metrics and
the study shape's own section; finally the headline sentence.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from fairtrial.analysis import integrity
from fairtrial.analysis.compare import Comparison, decision_draws, estimate, finish
from fairtrial.analysis.decision import (EQUIVALENCE, INCONCLUSIVE, NON_INFERIORITY, REFUTED,
                                         SUPERIORITY, SUPPORTED, strength as strength_of)
from fairtrial.analysis.design import AnalysisContext, AnalysisInputError, StudyDesign
from fairtrial.analysis.findings import Finding
from fairtrial.analysis.inputs import MODEL, keys, pair, series, validate
from fairtrial.analysis.inputs import _groups as groups_of
from fairtrial.analysis.result import AnalysisResult
from fairtrial.analysis import shapes
from fairtrial.stats.bootstrap import N_RESAMPLES, SEED
from fairtrial.stats.multiple import adjust_p, alpha_levels


def analyze(scores: pd.DataFrame, design: StudyDesign, context: AnalysisContext | None = None,
            *, seed: int = SEED, n_resamples: int = N_RESAMPLES, method: str = "auto") -> AnalysisResult:
    """Analyse a study's item scores. Raises AnalysisInputError on unusable input (see inputs.py);
    everything else that is wrong with the study becomes a Finding in the result."""
    context = context or AnalysisContext()
    design.check()
    df = validate(scores, design)
    dec = design.decision
    level = 1 - dec.alpha

    arms_seen = set(df["arm"].unique())
    if arms_seen - set(design.arms):
        df = df[df["arm"].isin(list(design.arms))]
    one_sample = design.pairwise is not None and design.pairwise.metric == design.endpoint.metric
    pairs = _hypothesis_pairs(df, design, one_sample)
    # Which (arm, eval set) cells a verdict rests on: the baseline and item-count checks are loud
    # only there. Without cross-evaluation every cell counts (None).
    decided = None
    if design.cross_eval is not None:
        decided = {(arm, e) for _, arm, e in pairs} | {(ref, e) for ref, _, e in pairs if ref}
    findings, baselines = integrity.run_all(df, design, context, seed, arms_seen, decided)
    void_sets = integrity.blocked_sets(findings)

    # ---- arm summaries: every arm x metric x eval set x system the report shows
    metrics = [design.endpoint.metric, *design.endpoint.secondary]
    if design.decision_tree:
        metrics += list(design.decision_tree.targets)
    if design.pairwise:
        metrics.append(design.pairwise.metric)
    metrics = list(dict.fromkeys(metrics))
    have_metrics = {m for _, m, _, _ in keys(df)}
    for m in metrics[1:]:
        if m not in have_metrics:
            findings.append(Finding("warning", "metric_without_scores",
                                    f"metric {m!r} (named in the study) has no item scores", {"metric": m}))
    summaries = []
    order = {a: i for i, a in enumerate(design.arms)}
    cells = sorted(((a, m, sy, e) for a, m, sy, e in keys(df) if m in metrics),
                   key=lambda k: (order[k[0]], metrics.index(k[1]), k[3], k[2] != MODEL, k[2]))
    fixed = set(design.fixed_arms)
    for arm, metric, system, eval_set in cells:
        s = shapes.summarize(df, arm, metric, eval_set, system, level, n_resamples, seed,
                             aggregation=_aggregation(design, metric),
                             one_replicate=arm in fixed)
        if s is not None:
            summaries.append(s)

    # ---- hypotheses
    effect = "absolute" if one_sample else dec.effect
    if one_sample and dec.effect == "relative":
        findings.append(Finding("info", "effect_scale",
                                "the endpoint is a pairwise judgement (an improvement already); its "
                                "min_effect is read as absolute (mean preference), not relative", {}))
    comps: list[Comparison] = []
    draws = []
    for ref, arm, eval_set in pairs:
        c = Comparison(arm=arm, reference=ref or "no preference (0)", metric=design.endpoint.metric,
                       eval_set=eval_set, direction="higher" if one_sample else design.endpoint.direction,
                       effect=effect, min_effect=dec.min_effect, test=dec.test,
                       margin=dec.margin,
                       aggregation="mean" if one_sample else design.aggregation(design.endpoint.metric))
        if eval_set in void_sets:
            c.blocked_by.append("eval_digest_mismatch")
        d = _estimate_pair(df, c, ref, arm, eval_set, n_resamples, seed, method, fixed)
        if d is None:
            findings.append(Finding("warning", "not_compared",
                                    f"{arm} vs {c.reference} on {eval_set!r}: {c.reason}",
                                    {"arm": arm, "reference": c.reference, "eval_set": eval_set}))
        comps.append(c)
        draws.append(d)
    _decide(comps, draws, dec.alpha, dec.correction)
    if not one_sample:
        universes: dict = {}
        for (ref, arm, eval_set), c, d in zip(pairs, comps, draws):
            if d is not None:
                _paired_outcomes(c, d.x)
                _missing_as_failures(df, design, c, ref, arm, eval_set, n_resamples, seed, method,
                                     fixed, universes)
    one = _one_replicate(design, comps, summaries)
    if one is not None:
        findings.append(one)

    # ---- secondary metrics: same pairs, reported at the uncorrected level, not decided
    secondary = []
    if not one_sample:
        for metric in design.endpoint.secondary:
            if metric not in have_metrics:
                continue
            try:
                direction = design.direction(metric)
            except AnalysisInputError as err:
                findings.append(Finding("warning", "metric_direction_unknown", str(err), {"metric": metric}))
                continue
            for c0 in comps:
                if c0.reference not in design.arms:
                    continue
                c = Comparison(arm=c0.arm, reference=c0.reference, metric=metric, eval_set=c0.eval_set,
                               direction=direction, role="secondary", effect=effect,
                               aggregation=design.aggregation(metric))
                d = _estimate_pair(df, c, c0.reference, c0.arm, c0.eval_set, n_resamples, seed,
                                   method, fixed)
                if d is not None:
                    finish(c, d, level, decide=False)
                    secondary.append(c)

    # ---- the study shape's own section
    cross = scal = tree = wtl = None
    if design.cross_eval is not None:
        cross = shapes.cross_eval(df, design, summaries, [c for c in comps], level, n_resamples, seed)
    if design.data_scaling is not None:
        scal = shapes.scaling(design, summaries, comps)
        for g in scal.groups:
            if g.fit_error:
                findings.append(Finding("info", "curve_fit_failed",
                                        f"group {g.group!r}: {g.fit_error}", {"group": g.group}))
    if design.decision_tree is not None:
        tree = shapes.decision_tree(design, summaries)
    if design.pairwise is not None:
        wtl = shapes.win_tie_loss(df, design, level, n_resamples, seed)

    findings.sort(key=integrity.severity_rank)
    overall, headline = _headline(design, comps, findings, context)
    return AnalysisResult(
        question=design.question, name=design.name,
        endpoint={"metric": design.endpoint.metric, "direction": design.endpoint.direction,
                  "secondary": list(design.endpoint.secondary),
                  "aggregation": "mean" if one_sample else design.aggregation(design.endpoint.metric),
                  "aggregations": {m: design.aggregation(m) for m in metrics}},
        decision={"test": dec.test, "margin": dec.margin, "min_effect": dec.min_effect,
                  "effect": effect, "alpha": dec.alpha, "correction": dec.correction,
                  "compare": dec.compare},
        verdict=overall, headline=headline, findings=findings, comparisons=comps,
        secondary=secondary, baselines=baselines, summaries=summaries, cross_eval=cross,
        scaling=scal, decision_tree=tree, pairwise=wtl, provenance=dict(context.provenance),
        complete=context.complete, progress=dict(context.progress),
        settings={"seed": seed, "n_resamples": n_resamples, "method": method,
                  "interval": "percentile, two-level bootstrap (seeds, then items; crossed)"},
    )


def without_scores(design: StudyDesign, context: AnalysisContext | None = None) -> AnalysisResult:
    """The result of a study with no item scores (yet): no comparison and no verdict ("none"),
    for a study whose recipe reports what its stages found (AnalysisResult.sections, e.g. a
    curation funnel before any arm is trained and evaluated)."""
    context = context or AnalysisContext()
    design.check()
    dec = design.decision
    m = design.endpoint.metric
    return AnalysisResult(
        question=design.question, name=design.name,
        endpoint={"metric": m, "direction": design.endpoint.direction,
                  "secondary": list(design.endpoint.secondary),
                  "aggregation": design.aggregation(m), "aggregations": {m: design.aggregation(m)}},
        decision={"test": dec.test, "margin": dec.margin, "min_effect": dec.min_effect,
                  "effect": dec.effect, "alpha": dec.alpha, "correction": dec.correction,
                  "compare": dec.compare},
        verdict="none",
        headline=f"{design.question} No verdict: no item scores yet ({m} has not been measured "
                 "on any arm); what the study's stages found so far is reported below.",
        provenance=dict(context.provenance), complete=context.complete,
        progress=dict(context.progress), settings={})


def _aggregation(design: StudyDesign, metric: str) -> str:
    """A pairwise metric is counted (win / tie / loss) and its mean is a mean preference; every
    other metric is aggregated as declared."""
    if design.pairwise is not None and metric == design.pairwise.metric:
        return "mean"
    return design.aggregation(metric)


def _hypothesis_pairs(df: pd.DataFrame, design: StudyDesign,
                      one_sample: bool) -> list[tuple[str | None, str, str]]:
    """(reference, arm, eval_set) of every decided comparison, in a stable order."""
    sets: dict[str, set[str]] = {}
    for a, m, sy, e in keys(df):
        if m == design.endpoint.metric and sy == MODEL:
            sets.setdefault(a, set()).add(e)
    arms = [a for a in design.arms if a in sets]
    if one_sample:
        pairs = [(None, a) for a in arms]
    elif design.data_scaling is not None:
        pairs = []
        for members in shapes.scaling_groups(design).values():
            present = [a for a, _ in members if a in sets]
            if len(present) >= 2:
                pairs.append((present[0], present[-1]))
    elif design.decision.compare == "all-pairs":
        pairs = [(a, b) for i, a in enumerate(arms) for b in arms[i + 1:]]
    else:
        pairs = [(design.control, a) for a in arms if a != design.control]
    own = dict(design.cross_eval.own) if design.cross_eval else {}
    out = []
    for ref, arm in pairs:
        shared = sets[arm] if ref is None else sets[arm] & sets.get(ref, set())
        if arm in own:
            shared = {own[arm]} & shared
        out += [(ref, arm, e) for e in sorted(shared)]
    return out


def _series(df, arm: str, metric: str, eval_set: str, one: bool) -> pd.DataFrame:
    """An arm's replicate x item table; `one`: the first replicate only (a fixed system's rows
    repeat under every seed, and two fixed systems are compared once, not once per copy)."""
    t = series(df, arm, metric, eval_set)
    return t.iloc[:1] if one and len(t) > 1 else t


def _estimate_pair(df, c: Comparison, ref: str | None, arm: str, eval_set: str,
                   n_resamples: int, seed: int, method: str, fixed: set[str] = frozenset()):
    one = arm in fixed and (ref is None or ref in fixed)
    try:
        a = _series(df, arm, c.metric, eval_set, one)
        if ref is None:
            p = pair([a])
            x = np.stack([np.zeros_like(p.x[0]), p.x[0]])
        else:
            p = pair([_series(df, ref, c.metric, eval_set, one), a])
            x = p.x
    except ValueError as err:
        c.verdict, c.reason = INCONCLUSIVE, f"not compared: {err}"
        return None
    c.seeds, c.dropped_items, c.dropped_seeds = p.seeds, p.dropped_items, p.dropped_seeds
    if x.shape[2] == 0:
        c.verdict, c.reason = INCONCLUSIVE, "not compared: the arms share no item"
        return None
    return estimate(c, x, n_resamples=n_resamples, seed=seed, method=method)


def _missing_as_failures(df, design: StudyDesign, c: Comparison, ref: str | None, arm: str,
                         eval_set: str, n_resamples: int, seed: int, method: str,
                         fixed: set[str], universes: dict | None = None) -> None:
    """When either side lacks items of the eval set (the items any arm has on it), record the
    counts in `c.missing`; for 0/1 values (a declared proportion, or values that are all 0 or 1)
    and for metrics that declare a failure value (`Metric.missing`, e.g. 0.0 for an F1) also the
    comparison with every missing item counted as a failure, in `c.as_failures`: what the
    verdict would be if the missing answers were wrong."""
    if ref is None:
        return
    universes = {} if universes is None else universes
    if (c.metric, eval_set) not in universes:      # the items any arm has, and their values
        groups = [g for (a, m, sy, e), g in groups_of(df).items()
                  if (m, sy, e) == (c.metric, MODEL, eval_set)]
        universes[(c.metric, eval_set)] = (
            pd.Index(sorted(set().union(*(set(g["item_id"]) for g in groups)))),
            bool(all(np.isin(g["value"].to_numpy(), (0.0, 1.0)).all() for g in groups)))
    universe, all_binary = universes[(c.metric, eval_set)]
    if c.dropped_items == 0 and c.n_items == len(universe):
        return                                       # both arms have every item
    one = arm in fixed and ref in fixed
    tables = [_series(df, ref, c.metric, eval_set, one), _series(df, arm, c.metric, eval_set, one)]
    seeds = sorted(set(tables[0].index) & set(tables[1].index))
    if not seeds:
        return
    tables = [t.loc[seeds].reindex(columns=universe) for t in tables]
    lack = [int(len(universe) - t.notna().to_numpy().all(axis=0).sum()) for t in tables]
    if not any(lack):
        return
    c.missing = {"reference": lack[0], "arm": lack[1], "eval_set_items": len(universe)}
    declared = design.metric_missing.get(c.metric)
    binary = design.proportion(c.metric) or all_binary
    if (declared is None and not binary) or c.aggregation != "mean" or c.blocked_by:
        return
    fail = float(declared) if declared is not None else (0.0 if c.direction == "higher" else 1.0)
    x = np.stack([t.fillna(fail).to_numpy(dtype=np.float64) for t in tables])
    s = Comparison(arm=arm, reference=ref, metric=c.metric, eval_set=eval_set,
                   direction=c.direction, role="missing-as-failure", effect=c.effect,
                   min_effect=c.min_effect, test=c.test, margin=c.margin,
                   aggregation=c.aggregation)
    d = estimate(s, x, n_resamples=n_resamples, seed=seed, method=method, signflip=False)
    finish(s, d, 1 - c.alpha)                        # the same (corrected) alpha and rule
    c.as_failures = {"n_items": len(universe), "failure_value": fail,
                     "mean_reference": s.mean_reference, "mean_arm": s.mean_arm,
                     "estimate": s.estimate, "interval": list(s.interval), "p_value": s.p_value,
                     "verdict": s.verdict}


def _paired_outcomes(c: Comparison, x: np.ndarray) -> None:
    """The McNemar view of a 0/1 comparison with one replicate: on the shared items, how often
    only the arm is right, only the reference, both, neither; and the exact McNemar p-value
    (binomial test of the discordant pairs), which a researcher can set beside the bootstrap's."""
    if c.aggregation != "mean" or x.shape[1] != 1 or not np.isin(x, (0.0, 1.0)).all():
        return
    from scipy.stats import binomtest

    good = 1.0 if c.direction == "higher" else 0.0
    ref, arm = x[0, 0] == good, x[1, 0] == good
    b, r = int((arm & ~ref).sum()), int((ref & ~arm).sum())
    c.paired_outcomes = {"both": int((arm & ref).sum()), "arm_only": b, "reference_only": r,
                         "neither": int((~arm & ~ref).sum()),
                         "p_mcnemar": float(binomtest(b, b + r, 0.5).pvalue) if b + r else 1.0}


def _one_replicate(design: StudyDesign, comps: list[Comparison], summaries) -> Finding | None:
    """Arms with one replicate that enter a comparison: external systems (scores imported once)
    and arms of a one-seed study. Their intervals say nothing about seed-to-seed variation."""
    in_comps = {a for c in comps for a in (c.arm, c.reference) if a in design.arms}
    seeds = {}
    for s in summaries:
        if s.metric == design.endpoint.metric and s.system == MODEL and s.arm in in_comps:
            seeds[s.arm] = max(seeds.get(s.arm, 0), s.n_seeds)
    fixed = [a for a in design.arms if a in seeds and a in design.fixed_arms]
    single = [a for a in design.arms if seeds.get(a) == 1 and a not in design.fixed_arms]
    if not fixed and not single:
        return None
    parts = []
    if fixed:
        parts.append(f"{', '.join(fixed)} {'is an external system' if len(fixed) == 1 else 'are external systems'}"
                     " (scores imported once)")
    if single:
        parts.append(f"{', '.join(single)} {'has' if len(single) == 1 else 'have'} one seed")
    declared = len(design.replicates)
    extra = (f" The study declares {declared} seeds, but an external system's scores are one run: "
             "they are counted once, never as replicates." if fixed and declared > 1 else "")
    seeded = any(n > 1 for a, n in seeds.items() if a not in design.fixed_arms)
    return Finding(
        "info", "one_replicate",
        "one replicate: " + "; ".join(parts) + ". Their intervals cover item sampling only"
        + (" (plus the seeds of the trained arms they are compared with)" if seeded else "")
        + ": seed-to-seed variation, what another training run of the same system would change, "
        "is unknown, so the verdicts are about these particular runs." + extra,
        {"external": fixed, "one_seed": single})


def _decide(comps: list[Comparison], draws: list, alpha: float, correction: str) -> None:
    """Corrected levels, then verdicts (`finish` reads each test's interval at its comparison's
    alpha: 1 - alpha, or 1 - 2 alpha for equivalence). Holm is step-down: walking from the smallest p-value up,
    once a comparison is not supported, every later one is judged at that same (stricter) level."""
    live = [i for i, d in enumerate(draws) if d is not None]
    if not live:
        return
    p = [comps[i].p_value for i in live]
    # Ties are common (every strong comparison has p at the bootstrap floor 1/(B+1)); among them
    # the one whose interval is furthest beyond the margin, in standard errors, goes first.
    strength = []
    for i in live:
        c = comps[i]
        sd = float(np.nanstd(decision_draws(draws[i], c.effect)))
        strength.append(strength_of(c.test, c.estimate, sd, c.min_effect, c.margin or 0.0))
    order = sorted(range(len(live)),
                   key=lambda j: (not math.isfinite(p[j]), p[j] if math.isfinite(p[j]) else 0.0,
                                  -strength[j] if math.isfinite(strength[j]) else 0.0))
    alphas = alpha_levels(p, alpha, correction, order=order)
    adjusted = adjust_p(p, correction)
    stuck: float | None = None
    for j in order:
        i = live[j]
        a = alphas[j] if stuck is None else min(alphas[j], stuck)
        comps[i].p_adjusted = float(adjusted[j])
        finish(comps[i], draws[i], 1 - a)
        if correction == "holm" and comps[i].verdict != SUPPORTED and stuck is None:
            stuck = a


def _fmt_effect(v: float, effect: str) -> str:
    if not math.isfinite(v):
        return "n/a"
    return f"{v * 100:+.1f}%" if effect == "relative" else f"{v:+.4g}"


def describe(c: Comparison) -> str:
    """'A1-specialist vs general on A1: infill_ppl improved by +12.3% (97.5% CI +8.1% to +16.0%)'"""
    lo, hi = c.interval
    word = "improved" if c.estimate >= 0 else "worsened"
    return (f"{c.arm} vs {c.reference} on {c.eval_set}: {c.metric} {word} by "
            f"{_fmt_effect(c.estimate, c.effect)} ({_level(c.level)} CI {_fmt_effect(lo, c.effect)} "
            f"to {_fmt_effect(hi, c.effect)})")


def _level(level: float) -> str:
    return f"{level * 100:.4g}%"


def asked(c: Comparison) -> str:
    """The question a margin test asks of one comparison, in words:
    'lora-cep is non-inferior to api within 0.05 args_f1', 'b is equivalent to a within
    +-5% accuracy' (relative margins as percentages of the reference's mean)."""
    m = _fmt_effect(c.margin or 0.0, c.effect).lstrip("+")
    if c.test == NON_INFERIORITY:
        return f"{c.arm} is non-inferior to {c.reference} within {m} {c.metric}"
    if c.test == EQUIVALENCE:
        return f"{c.arm} is equivalent to {c.reference} within +-{m} {c.metric}"
    me = _fmt_effect(c.min_effect, c.effect).lstrip("+")
    return f"{c.arm} is better than {c.reference} by more than {me} {c.metric}"


def _asked_all(comps: list[Comparison]) -> str:
    """The margin test's question over several comparisons: 'is each arm non-inferior to api
    within 0.1 accuracy?'."""
    c = comps[0]
    m = _fmt_effect(c.margin or 0.0, c.effect).lstrip("+")
    if c.test == NON_INFERIORITY:
        return f"is each arm non-inferior to {c.reference} within {m} {c.metric}?"
    return f"is each pair equivalent within +-{m} {c.metric}?"


def _headline(design: StudyDesign, comps: list[Comparison], findings: list[Finding],
              context: AnalysisContext) -> tuple[str, str]:
    q = design.question.strip() or design.name or "Study"
    if design.decision.test != SUPERIORITY:
        return _margin_headline(q, comps, findings, context)
    m = design.decision.min_effect
    margin = (_fmt_effect(m, comps[0].effect) if comps else str(m)).lstrip("+")
    decided = [c for c in comps if c.verdict is not None]
    prefix, tail = _prefix_and_tail(findings, context)
    if not decided:
        return "none", f"{prefix}{q} No verdict yet: no comparison could be made.{tail}"
    verdicts = [c.verdict for c in decided]
    if len(decided) == 1:
        c = decided[0]
        why = f" ({c.reason})" if c.reason.startswith("no variation") else ""
        return c.verdict, (f"{prefix}{q} {c.verdict.capitalize()}: {describe(c)}; minimum effect "
                           f"{margin}{why}.{tail}")
    overall = verdicts[0] if len(set(verdicts)) == 1 else "mixed"
    counts = ", ".join(f"{verdicts.count(v)} {v}" for v in (SUPPORTED, REFUTED, INCONCLUSIVE)
                       if verdicts.count(v))
    best = max(decided, key=lambda c: c.estimate if math.isfinite(c.estimate) else -math.inf)
    return overall, (f"{prefix}{q} {overall.capitalize()} ({counts} of {len(decided)} comparisons, "
                     f"minimum effect {margin}); largest: {describe(best)}.{tail}")


def _prefix_and_tail(findings: list[Finding], context: AnalysisContext) -> tuple[str, str]:
    prefix = ""
    if not context.complete:
        pr = context.progress
        counts = f" ({pr.get('done', '?')} of {pr.get('total', '?')} stage runs done)" if pr else ""
        prefix = f"PARTIAL REPORT, study incomplete{counts}: "
    n_err = sum(f.severity == "error" for f in findings)
    tail = f" {n_err} integrity error{'s' if n_err != 1 else ''}: see below." if n_err else ""
    return prefix, tail


def _margin_headline(q: str, comps: list[Comparison], findings: list[Finding],
                     context: AnalysisContext) -> tuple[str, str]:
    """The headline of a non-inferiority or equivalence study: the question in words, then the
    verdict ('b is non-inferior to a within 0.1 accuracy: supported. b vs a on test: ...')."""
    prefix, tail = _prefix_and_tail(findings, context)
    decided = [c for c in comps if c.verdict is not None]
    if not decided:
        return "none", f"{prefix}{q} No verdict yet: no comparison could be made.{tail}"
    if len(decided) == 1:
        c = decided[0]
        why = f" ({c.reason})" if c.reason.startswith(("no variation", "integrity")) else ""
        return c.verdict, f"{prefix}{q} {asked(c)}: {c.verdict}{why}. {describe(c)}.{tail}"
    verdicts = [c.verdict for c in decided]
    overall = verdicts[0] if len(set(verdicts)) == 1 else "mixed"
    counts = ", ".join(f"{verdicts.count(v)} {v}" for v in (SUPPORTED, REFUTED, INCONCLUSIVE)
                       if verdicts.count(v))
    # the comparison that decides least well: the one furthest from "supported" is named
    rank = {REFUTED: 0, INCONCLUSIVE: 1, SUPPORTED: 2}

    def closeness(c: Comparison) -> float:      # higher: further inside the supported side
        if not math.isfinite(c.estimate):
            return -math.inf
        return c.estimate if c.test == NON_INFERIORITY else -abs(c.estimate)
    worst = min(decided, key=lambda c: (rank[c.verdict], closeness(c)))
    return overall, (f"{prefix}{q} {_asked_all(decided)} {overall} ({counts} of "
                     f"{len(decided)} comparisons); {asked(worst)}: {worst.verdict}. "
                     f"{describe(worst)}.{tail}")
