"""End to end through analyze(): known effects give the right verdicts, every shape its section."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from fairtrial.analysis import (AnalysisContext, CrossEval, DataScaling, Decision, DecisionTree,
                                Endpoint, Pairwise, StudyDesign, analyze)
from fairtrial.analysis.synthetic import make_scores, simulate_verdicts

R = 2_000


def two_arm(effect, direction="higher", min_effect=0.02, kind="relative", n_items=400, **kw):
    df = make_scores({"ctrl": 0.0, "arm": effect}, n_items=n_items, mean=10.0, seed_sd=0.02, **kw)
    d = StudyDesign(question="Does arm beat ctrl?", arms={"ctrl": {}, "arm": {}}, control="ctrl",
                    endpoint=Endpoint("score", direction),
                    decision=Decision(min_effect=min_effect, effect=kind))
    return analyze(df, d, n_resamples=R)


def test_known_effect_supported_and_covered():
    # true relative improvement: 0.6 / 10 = 6%, margin 2%
    r = two_arm(0.6)
    c = r.comparisons[0]
    assert r.verdict == "supported" and c.verdict == "supported"
    assert c.rel_ci[0] <= 0.06 <= c.rel_ci[1]
    assert c.rel_ci[0] > 0.02
    assert r.headline.startswith("Does arm beat ctrl? Supported: arm vs ctrl on test")
    assert "+6." in r.headline or "+5." in r.headline


def test_lower_is_better_flips_the_sign():
    # the arm's values are higher: worse when lower is better
    r = two_arm(0.6, direction="lower")
    c = r.comparisons[0]
    assert c.verdict == "refuted" and c.rel < 0 and "worse" in c.reason
    assert c.mean_arm > c.mean_reference


def test_no_effect_with_a_margin_is_refuted_inside_the_band():
    r = two_arm(0.0, min_effect=0.05)
    assert r.comparisons[0].verdict == "refuted"
    assert "no-effect band" in r.comparisons[0].reason


def test_a_floor_is_inconclusive_not_refuted():
    """Both arms score 0 on every item and seed (a 135M model on GSM8K): every bootstrap draw is
    0, the interval [0, 0] lies inside any no-effect band, yet it is no evidence of no effect."""
    df = make_scores({"ctrl": 0.0, "arm": 0.0}, n_items=30, mean=10.0, seed_sd=0.02)
    df["value"] = 0.0
    d = StudyDesign(question="q", arms={"ctrl": {}, "arm": {}}, control="ctrl",
                    endpoint=Endpoint("score", "higher"),
                    decision=Decision(min_effect=0.05, effect="absolute"))
    r = analyze(df, d, n_resamples=R)
    c = r.comparisons[0]
    assert "no variation" in r.headline       # the reader is told why, in the first line
    assert c.diff_ci == (0.0, 0.0)
    assert c.verdict == "inconclusive" and "no variation" in c.reason and "scores 0 " in c.reason
    # one arm different on one item: an ordinary comparison again
    df.loc[df.index[df["arm"] == "arm"][0], "value"] = 1.0
    assert "no variation" not in analyze(df, d, n_resamples=R).comparisons[0].reason


def test_small_effect_is_inconclusive_with_a_settle_estimate():
    r = two_arm(0.2, min_effect=0.02, n_items=100)
    c = r.comparisons[0]
    assert c.verdict == "inconclusive"
    assert c.settle is not None and (c.settle["seeds_extra"] or c.settle["items_extra"])
    assert "more" in c.settle_text


def test_absolute_effect_scale():
    r = two_arm(0.6, min_effect=0.3, kind="absolute")
    c = r.comparisons[0]
    assert c.effect == "absolute" and c.diff_ci[0] <= 0.6 <= c.diff_ci[1]
    assert c.verdict == "supported"


def test_holm_levels_and_step_down():
    df = make_scores({"ctrl": 0.0, "a": 1.0, "b": 0.9, "c": 0.0}, n_items=300, seed_sd=0.02)
    arms = {k: {} for k in ("ctrl", "a", "b", "c")}
    base = dict(question="q?", arms=arms, control="ctrl", endpoint=Endpoint("score", "higher"))
    holm = analyze(df, StudyDesign(**base, decision=Decision(min_effect=0.03)), n_resamples=R)
    levels = sorted(c.level for c in holm.comparisons)
    assert levels == pytest.approx([1 - 0.05, 1 - 0.05 / 2, 1 - 0.05 / 3])
    none = analyze(df, StudyDesign(**base, decision=Decision(min_effect=0.03, correction="none")),
                   n_resamples=R)
    assert all(c.level == pytest.approx(0.95) for c in none.comparisons)
    # the corrected interval is wider than the uncorrected one
    w = {c.arm: c.rel_ci[1] - c.rel_ci[0] for c in none.comparisons}
    assert all(c.rel_ci[1] - c.rel_ci[0] >= w[c.arm] for c in holm.comparisons)
    assert [c.verdict for c in holm.comparisons] == ["supported", "supported", "refuted"]


def test_all_pairs():
    df = make_scores({"a": 0.0, "b": 0.5, "c": 1.0}, n_items=200)
    d = StudyDesign(question="q?", arms={"a": {}, "b": {}, "c": {}},
                    endpoint=Endpoint("score", "higher"),
                    decision=Decision(min_effect=0.01, compare="all-pairs"))
    r = analyze(df, d, n_resamples=R)
    assert [(c.reference, c.arm) for c in r.comparisons] == [("a", "b"), ("a", "c"), ("b", "c")]


def test_cross_eval_shape():
    sets = ["A1", "B1"]
    shifts = {"general": 0.0, "A1-spec": {"A1": -1.0, "B1": 0.5}, "B1-spec": {"A1": 0.5, "B1": -1.0}}
    df = make_scores(shifts, eval_sets=sets, n_items=200, mean=20.0, seed_sd=0.02)
    d = StudyDesign(question="Do specialists win on their level?", arms={k: {} for k in shifts},
                    control="general", endpoint=Endpoint("ppl", "lower") if False else
                    Endpoint("score", "lower"), decision=Decision(min_effect=0.02),
                    cross_eval=CrossEval({"A1-spec": "A1", "B1-spec": "B1"}))
    r = analyze(df, d, n_resamples=R)
    # only own-set comparisons are decided
    assert [(c.arm, c.eval_set) for c in r.comparisons] == [("A1-spec", "A1"), ("B1-spec", "B1")]
    assert all(c.verdict == "supported" for c in r.comparisons)
    x = r.cross_eval
    assert x.eval_sets == ["A1", "B1"] and x.rel_vs_control["A1-spec"]["A1"] == pytest.approx(0.05, abs=0.015)
    cost = {c.arm: c for c in x.off_diagonal}
    assert cost["A1-spec"].rel < 0 and cost["A1-spec"].rel_ci[1] < 0     # worse off its own set
    assert cost["A1-spec"].rel_ci[0] <= -0.025 <= cost["A1-spec"].rel_ci[1]


def test_data_scaling_shape():
    arms, shifts = {}, {}
    for arch, c in (("gru", 3.0), ("tf", 2.5)):
        for n in (1000, 3000, 9000, 27000):
            arms[f"{arch}-{n}"] = {"train": {"size": n}, "arch": arch}
            shifts[f"{arch}-{n}"] = c + 2.0 * (n / 1000) ** -0.5
    df = make_scores(shifts, n_items=300, mean=0.0, item_sd=0.2, noise_sd=0.05, seed_sd=0.005)
    d = StudyDesign(question="Does more data help?", arms=arms, endpoint=Endpoint("loss", "lower")
                    if False else Endpoint("score", "lower"),
                    decision=Decision(min_effect=0.05), data_scaling=DataScaling("train.size", "arch"))
    r = analyze(df, d, n_resamples=R)
    assert [(c.reference, c.arm) for c in r.comparisons] == [("gru-1000", "gru-27000"), ("tf-1000", "tf-27000")]
    assert all(c.verdict == "supported" for c in r.comparisons)
    g = {g.group: g for g in r.scaling.groups}
    assert g["gru"].fit["b"] == pytest.approx(0.5, abs=0.1)
    assert g["tf"].fit["c"] == pytest.approx(2.5, abs=0.1)


def test_decision_tree_and_pairwise():
    rng = np.random.default_rng(0)
    ids = [f"p{j}" for j in range(200)]
    rows = []
    for arm, (acc, lat, pref) in {"base": (0.7, 300.0, 0.0), "new": (0.9, 150.0, 0.6)}.items():
        for s in (0, 1):
            for metric, v in (("acc", (rng.random(200) < acc).astype(float)),
                              ("latency", rng.normal(lat, 10, 200)),
                              ("pref", np.where(rng.random(200) < pref, 1.0,
                                                np.where(rng.random(200) < 0.5, 0.0, -1.0)))):
                rows.append(pd.DataFrame({"item_id": ids, "eval_set": "t", "eval_set_digest": "d",
                                          "metric": metric, "value": v, "system": "model",
                                          "arm": arm, "replicate": s}))
    df = pd.concat(rows)
    d = StudyDesign(question="q?", arms={"base": {}, "new": {}}, control="base",
                    endpoint=Endpoint("acc", "higher"), decision=Decision(min_effect=0.05, effect="absolute"),
                    metric_directions={"latency": "lower", "pref": "higher"},
                    decision_tree=DecisionTree({"acc": 0.85, "latency": 200.0}),
                    pairwise=Pairwise("pref"))
    r = analyze(df, d, n_resamples=R)
    out = {row.arm: row.outcome for row in r.decision_tree.rows}
    assert out == {"base": "failure", "new": "success"}
    (w,) = r.pairwise
    assert w.arm == "new" and w.wins + w.ties + w.losses == 400
    assert w.ci[0] <= w.win_rate <= w.ci[1] and w.wilson_ci[0] < w.win_rate < w.wilson_ci[1]
    assert w.win_rate > 0.7


def test_pairwise_metric_as_endpoint_is_one_sample():
    ids = [f"p{j}" for j in range(150)]
    rng = np.random.default_rng(1)
    df = pd.concat([pd.DataFrame({"item_id": ids, "eval_set": "t", "eval_set_digest": "d",
                                  "metric": "pref", "value": rng.choice([1.0, 0.0, -1.0], 150, p=[.6, .2, .2]),
                                  "system": "model", "arm": "new", "replicate": s}) for s in (0, 1, 2)])
    d = StudyDesign(question="Do judges prefer new?", arms={"new": {}}, endpoint=Endpoint("pref", "higher"),
                    decision=Decision(min_effect=0.1), pairwise=Pairwise("pref", reference=None))
    r = analyze(df, d, n_resamples=R)
    c = r.comparisons[0]
    assert c.effect == "absolute" and c.verdict == "supported" and c.diff == pytest.approx(0.4, abs=0.1)


def test_partial_report_and_json():
    df = make_scores({"ctrl": 0.0, "arm": 0.6}, n_items=100)
    d = StudyDesign(question="q?", arms={"ctrl": {}, "arm": {}, "late": {}}, control="ctrl",
                    endpoint=Endpoint("score", "higher"))
    r = analyze(df, d, AnalysisContext(complete=False, progress={"done": 4, "total": 9}), n_resamples=R)
    assert r.headline.startswith("PARTIAL REPORT, study incomplete (4 of 9 stage runs done)")
    assert {f.severity for f in r.findings if f.code == "arm_without_scores"} == {"info"}
    blob = json.loads(json.dumps(r.to_dict()))
    assert blob["comparisons"][0]["verdict"] == r.comparisons[0].verdict
    assert blob["complete"] is False


def test_reproducible_with_the_seed():
    df = make_scores({"ctrl": 0.0, "arm": 0.3}, n_items=100)
    d = StudyDesign(question="q?", arms={"ctrl": {}, "arm": {}}, control="ctrl",
                    endpoint=Endpoint("score", "higher"))
    a, b = analyze(df, d, n_resamples=500, seed=1), analyze(df, d, n_resamples=500, seed=1)
    c = analyze(df, d, n_resamples=500, seed=2)
    assert a.comparisons[0].rel_ci == b.comparisons[0].rel_ci != c.comparisons[0].rel_ci


# ---- simulation: false positives and power of the whole decision path (fast normal item draw,
# validated against the exact draw in tests/stats/test_stats_bootstrap.py)

def test_aa_simulation_rarely_supports():
    # 500 studies with no true effect, margin 0 (the hardest case), 3 seeds x 500 items
    out = simulate_verdicts(500, effect=0.0, min_effect=0.0, n_seeds=3, n_items=500,
                            seed_sd=0.05, rng_seed=11)
    # supported means the lower bound > 0: one side of a 95% interval, 2.5% expected;
    # allowed: alpha (5%) plus Monte-Carlo slack of 2 binomial sd at 500 studies
    assert out["supported"] <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / 500)
    assert out["coverage"] >= 0.92


def test_power_at_twice_the_minimum_effect():
    # true effect 0.2 = 2 x min_effect 0.1; 5 seeds x 1,000 items, item sd 1, noise sd 1, seed sd 0.02
    out = simulate_verdicts(300, effect=0.2, min_effect=0.1, n_seeds=5, n_items=1000,
                            seed_sd=0.02, rng_seed=12)
    assert out["supported"] >= 0.8
    assert out["refuted"] == 0.0
