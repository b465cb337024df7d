"""The report as a list of neutral blocks (headings, paragraphs, tables, images), built once from an
AnalysisResult and rendered by markdown.py and html.py. Nothing here computes a statistic: it
formats what the result holds."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from fairtrial.analysis.analyze import describe


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Para:
    text: str
    kind: str = ""          # "headline", "partial", "note"


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    classes: list[str] = field(default_factory=list)   # per-row CSS class (e.g. the verdict)


@dataclass
class Image:
    title: str
    render: Callable[[], bytes | None]


def num(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if isinstance(v, (int,)) and not isinstance(v, bool):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def pct(v: float) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v * 100:+.1f}%"


def ci(pair, f=num) -> str:
    lo, hi = pair
    return f"[{f(lo)}, {f(hi)}]"


def p_fmt(p: float) -> str:
    if p is None or not math.isfinite(p):
        return "n/a"
    return f"{p:.2g}" if p >= 0.001 else "<0.001"


def _left_out(c) -> str:
    parts = []
    if c.dropped_items:
        parts.append(f"{c.dropped_items} items")
    if c.dropped_seeds:
        parts.append(f"seeds {c.dropped_seeds}")
    return ", ".join(parts) or "none"


GEOMEAN_NOTE = ("{metrics} {verb} aggregated as geometric means (per-item values are heavy-tailed): "
                "means are geometric means, the improvement is a difference of geometric means, "
                "and the relative improvement is the ratio of geometric means (1 - arm / reference "
                "when lower is better, arm / reference - 1 when higher is better), with intervals "
                "from a bootstrap of log values.")


def _mean_word(aggregation: str) -> str:
    return "geometric mean" if aggregation == "geomean" else "mean"


def _geomean_note(metrics) -> list:
    geo = list(dict.fromkeys(metrics))
    if not geo:
        return []
    return [Para(GEOMEAN_NOTE.format(metrics=", ".join(geo), verb="is" if len(geo) == 1 else "are"),
                 "note")]


def build(result) -> list:
    from fairtrial.report import plots

    doc: list = [Para(result.headline, "headline")]
    if not result.complete:
        pr = result.progress
        counts = ", ".join(f"{k}: {v}" for k, v in pr.items()) if pr else "counts not given"
        doc.append(Para(f"This study is incomplete ({counts}). Every number below covers only the "
                        "runs finished so far and may change.", "partial"))
    d = result.decision
    ep_agg = result.endpoint.get("aggregation", "mean")
    agg_text = "; aggregated as a geometric mean" if ep_agg == "geomean" else ""
    doc.append(Para(
        f"Endpoint: {result.endpoint['metric']} ({result.endpoint['direction']} is better"
        f"{agg_text}). Decision rule: {_rule_text(d)}", "note"))

    # ---- integrity
    doc.append(Heading("Integrity checks"))
    if result.findings:
        doc.append(Table(["severity", "check", "finding"],
                         [[f.severity, f.code, f.message] for f in result.findings],
                         [f"sev-{f.severity}" for f in result.findings]))
    elif not result.summaries and result.verdict == "none":
        doc.append(Para("No item scores yet: nothing to check."))
    else:
        doc.append(Para("No findings: same items and seeds for every compared arm, every model "
                        "beats its baselines, no train/eval overlap reported, configs as declared."))

    # ---- what the recipe's stages found (Recipe.report_sections)
    doc += _sections(getattr(result, "sections", None) or [])

    # ---- comparisons
    doc.append(Heading("Comparisons"))
    if result.comparisons:
        rel = result.comparisons[0].effect == "relative"
        eff = pct if rel else num
        word = _mean_word(ep_agg)
        doc.append(Table(["arm", "reference", "eval set", "seeds x items", f"reference {word}",
                          f"arm {word}", "relative improvement" if rel else "improvement",
                          "interval", "level", "verdict", "why"],
                         [[c.arm, c.reference, c.eval_set, f"{c.n_seeds} x {c.n_items:,}",
                           num(c.mean_reference), num(c.mean_arm), eff(c.estimate),
                           ci(c.interval, eff), f"{c.level * 100:.4g}%", c.verdict or "",
                           c.reason + (f"; to settle: {c.settle_text}" if c.settle_text else "")]
                          for c in result.comparisons],
                         [f"v-{c.verdict}" for c in result.comparisons]))
        doc.append(Para(
            "Improvement is in the endpoint's direction (positive = the arm is better). Intervals are "
            "percentile intervals of a two-level bootstrap (seeds, then items) at the corrected level "
            f"shown; the verdict is read on the {'relative' if rel else 'absolute'} interval.", "note"))
        if any(c.n_seeds == 1 for c in result.comparisons):
            doc.append(Para(
                "One replicate: where the table says 1 x N (external systems, or a one-seed study) "
                "the interval covers item sampling only; seed-to-seed variation is unknown and not "
                "in it, so the verdict is about these particular runs, not about training them "
                "again.", "note"))
        doc += _missing(result.comparisons, eff)
        doc += _paired(result.comparisons)
        doc += _geomean_note([result.endpoint["metric"]] if ep_agg == "geomean" else [])
        doc.append(Heading("Details", 3))
        doc.append(Table(["arm", "eval set", "improvement", "interval", "relative", "interval",
                          "effect size (d_z)", "p", "p adjusted", "p sign-flip", "left out"],
                         [[c.arm, c.eval_set, num(c.diff), ci(c.diff_ci), pct(c.rel), ci(c.rel_ci, pct),
                           num(c.effect_size, 3), p_fmt(c.p_value), p_fmt(c.p_adjusted),
                           p_fmt(c.p_signflip), _left_out(c)] for c in result.comparisons]))
        doc.append(Para(
            f"p: {P_WORDS[d.get('test', 'superiority')]}; p adjusted: {d['correction']}; p sign-flip: "
            "item-level sign-flip test (treats the trained models as fixed, so it ignores seed "
            "variance). d_z: mean over sd of the per-item improvements. Left out: items or seeds "
            "not shared by both arms.", "note"))
        doc.append(Image("Effects with corrected intervals (forest plot)", lambda: plots.forest(result)))
    else:
        doc.append(Para("No comparison could be made yet."))

    # ---- arms: one table per metric, arms (and baselines) x eval sets
    doc.append(Heading("Arms"))
    for metric in dict.fromkeys(s.metric for s in result.summaries):
        rows_m = [s for s in result.summaries if s.metric == metric]
        sets = list(dict.fromkeys(s.eval_set for s in rows_m))
        series = list(dict.fromkeys((s.arm, s.system) for s in rows_m))
        cell = {(s.arm, s.system, s.eval_set): s for s in rows_m}
        sizes = sorted({(s.n_seeds, s.n_items) for s in rows_m})
        table_rows = []
        for arm, system in series:
            row = [arm if system == "model" else f"{arm} / baseline:{system}"]
            for e in sets:
                x = cell.get((arm, system, e))
                row.append("" if x is None else f"{num(x.mean)} {ci(x.ci)}"
                           + ("" if len(sizes) == 1 else f" ({x.n_seeds}x{x.n_items})"))
            table_rows.append(row)
        word = _mean_word(rows_m[0].aggregation)
        doc.append(Heading(f"{metric}: {word} and {(1 - d['alpha']) * 100:g}% interval", 3))
        doc.append(Table(["arm", *sets], table_rows,
                         ["baseline" if sy != "model" else "" for _, sy in series]))
        if len(sizes) == 1:
            seeds_word = "seed" if sizes[0][0] == 1 else "seeds"
            doc.append(Para(f"{sizes[0][0]} {seeds_word} x {sizes[0][1]:,} items per cell.", "note"))
    doc.append(Image("Endpoint per arm with intervals", lambda: plots.endpoint_per_arm(result)))
    if result.baselines:
        doc.append(Heading("Models against their trivial baselines", 3))
        doc.append(Table(["arm", "baseline", "eval set", "model", "baseline mean", "improvement",
                          "interval"],
                         [[c.arm, c.reference, c.eval_set, num(c.mean_arm), num(c.mean_reference),
                           num(c.diff), ci(c.diff_ci)] for c in result.baselines]))

    if result.secondary:
        doc.append(Heading("Secondary metrics (reported, not decided)"))
        doc.append(Table(["metric", "arm", "reference", "eval set", "reference mean", "arm mean",
                          "improvement", "interval", "relative", "interval"],
                         [[c.metric, c.arm, c.reference, c.eval_set, num(c.mean_reference),
                           num(c.mean_arm), num(c.diff), ci(c.diff_ci), pct(c.rel), ci(c.rel_ci, pct)]
                          for c in result.secondary]))
        doc += _geomean_note(c.metric for c in result.secondary if c.aggregation == "geomean")

    if result.cross_eval is not None:
        doc += _cross_eval(result.cross_eval)
    if result.scaling is not None:
        doc += _scaling(result.scaling)
    if result.decision_tree is not None:
        doc += _tree(result.decision_tree)
    if result.pairwise is not None:
        doc += _pairwise(result.pairwise)

    doc += _provenance(result)
    return doc


P_WORDS = {
    "superiority": "two-level bootstrap test of no difference",
    "non_inferiority": "two-level bootstrap test of a loss of at least the margin (twice the share "
                       "of draws at or below -margin, so p < alpha goes with the interval's verdict)",
    "equivalence": "two one-sided bootstrap tests of the margins (the larger share of draws beyond "
                   "-margin or +margin)",
}
RULES = {
    "superiority": "Supported when the corrected interval lies entirely beyond the minimum effect; "
                   "refuted when it lies entirely below it; inconclusive otherwise.",
    "non_inferiority": "Supported when the corrected two-sided 1 - alpha interval's lower end is "
                       "above -margin (any loss is smaller than the margin); refuted when its "
                       "upper end is below -margin; inconclusive otherwise.",
    "equivalence": "Supported when the corrected 1 - 2 alpha interval (two one-sided tests, "
                   "TOST) lies entirely inside (-margin, +margin); refuted when it lies entirely "
                   "outside; inconclusive otherwise.",
}


def _rule_text(d: dict) -> str:
    test = d.get("test", "superiority")
    if test == "superiority":
        head = f"{d['effect']} minimum effect {d['min_effect']:g}"
    else:
        head = f"{test.replace('_', '-')} test, {d['effect']} margin {d['margin']:g}"
    return (f"{head}, alpha {d['alpha']:g}, correction {d['correction']}, compare "
            f"{d['compare']}. {RULES[test]}")


def _missing(comps, eff) -> list:
    """Comparisons where an arm lacks items of the eval set: the counts, and for 0/1 values (or a
    metric that declares its failure value) the result with the missing items counted as failures
    beside the one on the shared items."""
    rows = [c for c in comps if c.missing]
    if not rows:
        return []
    out: list = [Heading("Missing items", 3)]
    out.append(Table(["arm", "reference", "eval set", "items in the eval set", "arm lacks",
                      "reference lacks", "shared items: improvement", "verdict",
                      "missing as failures: reference", "arm", "improvement", "interval",
                      "verdict"],
                     [[c.arm, c.reference, c.eval_set, num(c.missing["eval_set_items"]),
                       num(c.missing["arm"]), num(c.missing["reference"]),
                       f"{eff(c.estimate)} {ci(c.interval, eff)}", c.verdict or ""]
                      + ([num(c.as_failures["mean_reference"]), num(c.as_failures["mean_arm"]),
                          eff(c.as_failures["estimate"]), ci(c.as_failures["interval"], eff),
                          c.as_failures["verdict"] or ""] if c.as_failures else
                         ["n/a (no failure value: not 0/1 values)", "", "", "", ""])
                      for c in rows]))
    out.append(Para(
        "The comparisons above pair the two arms on the items both have. Beside them, for 0/1 "
        "values and for metrics that declare a failure value (an F1 counts a missing answer as "
        "0), the same comparison on every item of the eval set (the items any arm has) with "
        "each missing item counted as a failure, at the same level and rule: if the two verdicts "
        "differ, the conclusion depends on the items one arm did not answer.", "note"))
    return out


def _paired(comps) -> list:
    """0/1 comparisons with one replicate: the 2x2 table of paired outcomes and McNemar's test."""
    rows = [c for c in comps if c.paired_outcomes]
    if not rows:
        return []
    out: list = [Heading("Paired outcomes (0/1 values, one replicate)", 3)]
    out.append(Table(["arm", "reference", "eval set", "both right", "only the arm right",
                      "only the reference right", "both wrong", "exact McNemar p"],
                     [[c.arm, c.reference, c.eval_set, num(c.paired_outcomes["both"]),
                       num(c.paired_outcomes["arm_only"]), num(c.paired_outcomes["reference_only"]),
                       num(c.paired_outcomes["neither"]), p_fmt(c.paired_outcomes["p_mcnemar"])]
                      for c in rows]))
    out.append(Para(
        "Only the discordant items (one arm right, the other wrong) carry the difference: the "
        "improvement in accuracy is (only the arm right - only the reference right) / items. The "
        "exact McNemar p is a binomial test of the discordant counts, uncorrected; it is a "
        "cross-check of the bootstrap's p, which decides (with the study's correction).", "note"))
    return out


def _cross_eval(x) -> list:
    from fairtrial.report import plots

    out: list = [Heading("Cross-evaluation matrix")]
    rows = []
    for a in x.arms:
        row = [a]
        for e in x.eval_sets:
            m = x.means.get(a, {}).get(e)
            mark = " (own)" if x.own.get(a) == e else ""
            row.append("" if m is None else f"{num(m)}{mark}")
        rows.append(row)
    geo = ", geometric means" if x.aggregation == "geomean" else ""
    out.append(Table([f"arm \\ eval set ({x.metric}, {x.direction} is better{geo})", *x.eval_sets],
                     rows))
    out.append(Image("Change against the control per arm and eval set (own sets outlined)",
                     lambda: plots.cross_eval_heatmap(x)))
    if x.gains:
        out.append(Heading("Specialisation gain (own eval set, against the control)", 3))
        out.append(Table(["arm", "own eval set", "gain", "interval", "level", "verdict"],
                         [[c.arm, c.eval_set, pct(c.rel), ci(c.rel_ci, pct), f"{c.level * 100:.4g}%",
                           c.verdict or ""] for c in x.gains], [f"v-{c.verdict}" for c in x.gains]))
    if x.off_diagonal:
        out.append(Heading("Off-diagonal cost (the other eval sets, pooled)", 3))
        out.append(Table(["arm", "eval sets", "change", "interval"],
                         [[c.arm, c.eval_set.removeprefix("other sets: "), pct(c.rel), ci(c.rel_ci, pct)]
                          for c in x.off_diagonal]))
    return out


def _scaling(s) -> list:
    from fairtrial.report import plots

    out: list = [Heading(f"Data scaling ({s.size_param}" + (f", by {s.group_param})" if s.group_param else ")"))]
    rows = []
    for g in s.groups:
        for p in g.points:
            rows.append([g.group, p["arm"], num(p["size"]), p["eval_set"], num(p["mean"]), ci(p["ci"])])
    out.append(Table(["group", "arm", "size", "eval set", "mean", "interval"], rows))
    changes = [(g, c) for g in s.groups for c in g.change]
    if changes:
        out.append(Heading("Change from the smallest to the largest size", 3))
        out.append(Table(["group", "from", "to", "eval set", "improvement", "interval", "relative",
                          "interval", "verdict"],
                         [[g.group, c.reference, c.arm, c.eval_set, num(c.diff), ci(c.diff_ci),
                           pct(c.rel), ci(c.rel_ci, pct), c.verdict or ""] for g, c in changes],
                         [f"v-{c.verdict}" for _, c in changes]))
    fits = [g for g in s.groups if g.fit]
    if fits:
        out.append(Heading("Learning-curve fit", 3))
        out.append(Table(["group", "fit", "a", "b", "c (asymptote)", "rms residual", "points", "note"],
                         [[g.group, g.fit["form"], num(g.fit["a"]), num(g.fit["b"]), num(g.fit["c"]),
                           num(g.fit["residual_rms"]), num(g.fit["n_points"]), g.fit.get("note", "")]
                          for g in fits]))
    out.append(Image("Learning curves", lambda: plots.learning_curves(s)))
    return out


def _tree(t) -> list:
    out: list = [Heading("Decision tree over endpoints")]
    out.append(Para("Targets: " + ", ".join(f"{m} {v:g}" for m, v in t.targets.items())
                    + ". success = every target met, partial = some, failure = none (point estimates; "
                    "'uncertain' when the interval straddles the target).", "note"))
    rows, cls = [], []
    for r in t.rows:
        for c in r.checks:
            op = ">=" if c["direction"] == "higher" else "<="
            rows.append([r.arm, r.outcome, c["metric"], c["eval_set"], num(c["mean"]), ci(c["ci"]),
                         f"{op} {c['target']:g}", ("met" if c["met"] else "missed")
                         + ("" if c["certain"] else " (uncertain)")])
            cls.append(f"o-{r.outcome}")
    out.append(Table(["arm", "outcome", "metric", "eval set", "mean", "interval", "target", "status"],
                     rows, cls))
    return out


def _pairwise(w) -> list:
    out: list = [Heading("Pairwise judgements (win / tie / loss)")]
    out.append(Table(["arm", "against", "eval set", "wins", "ties", "losses", "win rate (no ties)",
                      "interval (bootstrap)", "interval (Wilson, pooled)"],
                     [[x.arm, x.reference or "", x.eval_set, num(x.wins), num(x.ties), num(x.losses),
                       num(x.win_rate, 3), ci(x.ci, lambda v: num(v, 3)),
                       ci(x.wilson_ci, lambda v: num(v, 3))] for x in w]))
    return out


def _sections(sections) -> list:
    """A recipe's own sections: {"title", "text", "table": {"header", "rows"}, "bars": {...}}."""
    out: list = []
    for sec in sections:
        out.append(Heading(str(sec.get("title", ""))))
        if sec.get("text"):
            out.append(Para(str(sec["text"])))
        t = sec.get("table")
        if t:
            out.append(Table([str(h) for h in t["header"]],
                             [[v if isinstance(v, str) else num(v) for v in r] for r in t["rows"]]))
        if sec.get("bars"):
            out.append(Image(sec["bars"].get("title", ""), lambda b=sec["bars"]: _bars_png(b)))
    return out


def _bars_png(b: dict) -> bytes | None:
    """Bars per label, one series each (stacked or side by side)."""
    from fairtrial.report import plots

    labels, series = list(b.get("labels") or []), dict(b.get("series") or {})
    if not labels or not series:
        return None
    import numpy as np

    fig, ax = plots.plt.subplots(figsize=(min(1.0 + 0.9 * len(labels), 10), 3.4))
    x = np.arange(len(labels))
    bottom = np.zeros(len(labels))
    width = 0.8 if b.get("stacked") else 0.8 / len(series)
    for k, (name, vals) in enumerate(series.items()):
        v = np.asarray(vals, dtype=float)
        if b.get("stacked"):
            ax.bar(x, v, 0.8, bottom=bottom, label=str(name))
            bottom += v
        else:
            ax.bar(x - 0.4 + width * (k + 0.5), v, width, label=str(name))
    ax.set_xticks(x, labels, rotation=30 if len(labels) > 6 else 0)
    ax.set_ylabel(b.get("ylabel", ""))
    ax.legend(fontsize=7, frameon=False)
    return plots._png(fig)


def _provenance(result) -> list:
    out: list = [Heading("Provenance")]
    prov = dict(result.provenance)
    per_arm = prov.pop("per_arm", None)
    if prov:
        out.append(Table(["item", "value"],
                         [[str(k), v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)]
                          for k, v in prov.items()]))
    if per_arm:
        cols = sorted({k for v in per_arm.values() for k in v})
        out.append(Table(["arm", *cols], [[a, *[num(v.get(c)) for c in cols]] for a, v in per_arm.items()]))
    if not prov and not per_arm:
        out.append(Para("No provenance was given."))
    st = result.settings
    out.append(Para(f"Analysis: {st.get('interval', '')}; {st.get('n_resamples')} resamples, seed "
                    f"{st.get('seed')}, item draw {st.get('method')}.", "note"))
    return out
