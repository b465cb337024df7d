"""Metrics aggregated as geometric means (perplexities): everything on the log scale, reported as
geometric means and ratios. Synthetic log-normal data with a known multiplicative effect."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import gmean

from fairtrial.analysis import (AnalysisInputError, CrossEval, Decision, Endpoint, StudyDesign,
                                analyze)
from fairtrial.report import render_markdown
from fairtrial.scores import eval_set_digest

R = 1_000


def lognormal_scores(ratio, n_items=300, seeds=(0, 1, 2, 3, 4), item_sd=1.5, noise_sd=0.8,
                     seed_sd=0.03, rng_seed=0, eval_sets=("test",), baseline=None):
    """log value = log 200 + item difficulty + seed offset + noise; the arm multiplies every
    value by `ratio` (per eval set when a dict). Heavy-tailed like per-item perplexities."""
    rng = np.random.default_rng(rng_seed)
    ids = [f"i{j:05d}" for j in range(n_items)]
    frames = []
    for e in eval_sets:
        item = rng.normal(math.log(200), item_sd, n_items)
        dg = eval_set_digest([f"{e}/{i}" for i in ids])
        for arm, r in (("ctrl", 1.0), ("arm", ratio)):
            r = r.get(e, 1.0) if isinstance(r, dict) else r
            systems = {"model": r, **({"unigram": baseline} if baseline else {})}
            for system, mult in systems.items():
                for s in seeds:
                    off = rng.normal(0, seed_sd) if system == "model" else 0.0
                    v = np.exp(item + math.log(mult) + off + rng.normal(0, noise_sd, n_items))
                    frames.append(pd.DataFrame({
                        "item_id": ids, "eval_set": e, "eval_set_digest": dg, "metric": "ppl",
                        "value": v, "system": system, "arm": arm, "replicate": s}))
    return pd.concat(frames, ignore_index=True)


def design(agg="geomean", direction="lower", **kw):
    return StudyDesign(question="q?", arms={"ctrl": {}, "arm": {}}, control="ctrl",
                       endpoint=Endpoint("ppl", direction), decision=Decision(min_effect=0.05),
                       metric_aggregations={"ppl": agg}, **kw)


def test_geomean_interval_covers_the_true_ratio_and_is_narrower_than_the_mean():
    # the arm's perplexity is 0.8 x the control's on every item: a true improvement of 20%
    widths = {"geomean": [], "mean": []}
    for k in range(4):
        df = lognormal_scores(0.8, rng_seed=k)
        for agg in widths:
            c = analyze(df, design(agg), n_resamples=R).comparisons[0]
            widths[agg].append(c.rel_ci[1] - c.rel_ci[0])
            if agg == "geomean":
                assert c.rel_ci[0] <= 0.2 <= c.rel_ci[1]
                assert c.aggregation == "geomean" and c.verdict == "supported"
    # the arithmetic mean of heavy-tailed values is dominated by a few items: a wider interval
    assert np.mean(widths["mean"]) > 1.5 * np.mean(widths["geomean"])


def test_higher_is_better_ratio():
    # a "higher is better" geomean metric 1.25 x larger: exp(mean log difference) - 1 = 25%
    df = lognormal_scores(1.25, rng_seed=7)
    c = analyze(df, design(direction="higher"), n_resamples=R).comparisons[0]
    assert c.rel_ci[0] <= 0.25 <= c.rel_ci[1] and c.rel > 0.15


def test_means_are_geometric_and_effects_are_ratios_and_differences_of_them():
    df = lognormal_scores(0.8, seeds=(0, 1, 2), rng_seed=3)
    r = analyze(df, design(), n_resamples=R)
    c = r.comparisons[0]
    g = {a: gmean(df.loc[(df["arm"] == a) & (df["system"] == "model"), "value"]) for a in ("ctrl", "arm")}
    assert c.mean_reference == pytest.approx(g["ctrl"]) and c.mean_arm == pytest.approx(g["arm"])
    assert c.diff == pytest.approx(g["ctrl"] - g["arm"])                 # lower is better
    assert c.rel == pytest.approx(1 - g["arm"] / g["ctrl"])              # 1 - exp(mean log diff)
    # intervals are back-transformed from the log scale: the relative one maps to a ratio interval
    # that holds the point ratio, and the arm's interval is positive
    lo, hi = c.rel_ci
    assert lo < c.rel < hi < 1 and c.ci_arm[0] > 0
    s = {(x.arm, x.system): x for x in r.summaries}
    assert s[("arm", "model")].mean == pytest.approx(g["arm"])
    assert s[("arm", "model")].aggregation == "geomean"
    lo, hi = s[("arm", "model")].ci
    assert 0 < lo < g["arm"] < hi
    assert r.endpoint["aggregation"] == "geomean"


def test_p_value_and_sign_flip_on_the_log_scale():
    # one huge item in the arm: on the arithmetic scale it swamps a real 20% improvement; on the
    # log scale it is one item among 300
    df = lognormal_scores(0.8, rng_seed=1)
    hit = (df["arm"] == "arm") & (df["item_id"] == "i00000")
    df.loc[hit, "value"] = df.loc[hit, "value"] * 1e4
    geo = analyze(df, design("geomean"), n_resamples=R).comparisons[0]
    ari = analyze(df, design("mean"), n_resamples=R).comparisons[0]
    assert geo.verdict == "supported" and geo.p_signflip < 0.01
    assert ari.rel < 0 and ari.verdict != "supported"


def test_baselines_and_cross_eval_use_geometric_means():
    df = lognormal_scores({"A": 0.7, "B": 1.3}, seeds=(0, 1, 2), eval_sets=("A", "B"),
                          baseline=1.5, rng_seed=2)
    d = design(cross_eval=CrossEval({"arm": "A"}))
    r = analyze(df, d, n_resamples=R)
    b = next(c for c in r.baselines if c.arm == "arm" and c.eval_set == "A")
    sel = df[(df["arm"] == "arm") & (df["eval_set"] == "A")]
    gm, gb = (gmean(sel.loc[sel["system"] == sy, "value"]) for sy in ("model", "unigram"))
    assert b.aggregation == "geomean" and b.diff == pytest.approx(gb - gm)
    x = r.cross_eval
    assert x.rel_vs_control["arm"]["A"] == pytest.approx(1 - x.means["arm"]["A"] / x.means["ctrl"]["A"])
    assert x.off_diagonal[0].aggregation == "geomean" and x.off_diagonal[0].rel < 0
    assert x.aggregation == "geomean" and "ppl, lower is better, geometric means" in render_markdown(r)


def test_report_says_geometric_mean():
    r = analyze(lognormal_scores(0.8, seeds=(0, 1, 2)), design(), n_resamples=R)
    md = render_markdown(r)
    assert "geometric mean" in md and "ppl: geometric mean and 95% interval" in md
    r = analyze(lognormal_scores(0.8, seeds=(0, 1, 2)), design("mean"), n_resamples=R)
    assert "geometric" not in render_markdown(r)


def test_non_positive_values_of_a_geomean_metric_are_refused():
    df = lognormal_scores(0.8, seeds=(0, 1))
    df.loc[5, "value"] = 0.0
    with pytest.raises(AnalysisInputError, match=r"'ppl' is aggregated as a geometric mean.*<= 0"):
        analyze(df, design(), n_resamples=R)
    analyze(df, design("mean"), n_resamples=R)         # fine as an arithmetic mean


def test_median_is_refused_clearly_and_unknown_aggregations_too():
    df = lognormal_scores(0.8, seeds=(0, 1))
    with pytest.raises(AnalysisInputError, match="aggregation 'median' is not supported"):
        analyze(df, design("median"), n_resamples=R)
    with pytest.raises(AnalysisInputError, match="metric_aggregations.ppl: 'mode'"):
        analyze(df, design("mode"), n_resamples=R)
    # a median metric the study does not analyse is no obstacle
    d = StudyDesign(question="q?", arms={"ctrl": {}, "arm": {}}, control="ctrl",
                    endpoint=Endpoint("ppl", "lower"), metric_aggregations={"rank": "median"})
    analyze(df, d, n_resamples=R)


def test_a_design_carries_aggregations():
    d = StudyDesign(question="q", arms={"a": {}, "b": {}}, control="a",
                    endpoint=Endpoint("ppl", "lower", ("acc",)),
                    metric_directions={"ppl": "lower", "acc": "higher"},
                    metric_aggregations={"ppl": "geomean", "acc": "mean"})
    assert d.aggregation("ppl") == "geomean" and d.aggregation("acc") == "mean"
    assert StudyDesign(question="q", arms={"a": {}, "b": {}}, control="a",
                       endpoint=Endpoint("ppl", "lower")).aggregation("ppl") == "mean"
