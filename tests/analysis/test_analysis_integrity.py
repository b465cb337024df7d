"""Each integrity check: one test that makes it fire, and a fair study on which all are quiet."""

import re

import pandas as pd
import pytest

from fairtrial.analysis import (AnalysisContext, CrossEval, Decision, Endpoint, StudyDesign,
                                analyze)
from fairtrial.analysis.synthetic import make_scores

R = 300   # resamples: the checks need no precision


def design(**kw):
    base = dict(question="q?", arms={"ctrl": {}, "arm": {}}, control="ctrl", replicates=(0, 1, 2),
                endpoint=Endpoint("score", "higher"), decision=Decision(min_effect=0.01))
    base.update(kw)
    return StudyDesign(**base)


def fair():
    # the model beats its unigram baseline by far
    return make_scores({"ctrl": 0.0, "arm": 0.3}, n_items=60, baselines={"unigram": -5.0})


def codes(result, severity=None):
    return {f.code for f in result.findings if severity is None or f.severity == severity}


def test_fair_study_is_quiet():
    ctx = AnalysisContext(train_texts={"*": ["a training text", "another one"]},
                          eval_texts={"test": {"i1": "an eval text"}},
                          splits=[{"name": "test", "seed": 0, "reproducible": True}],
                          effective_params=[{"arm": "arm", "replicate": 0, "declared": {"lr": 1e-3},
                                             "effective": {"lr": 1e-3}}])
    r = analyze(fair(), design(), ctx, n_resamples=R)
    assert r.findings == []


def test_eval_digest_mismatch_voids_the_comparison():
    df = fair()
    df.loc[df["arm"] == "arm", "eval_set_digest"] = "other"
    r = analyze(df, design(), n_resamples=R)
    assert "eval_digest_mismatch" in codes(r, "error")
    c = r.comparisons[0]
    assert c.verdict == "inconclusive" and "eval_digest_mismatch" in c.reason


def test_missing_items_are_counted_and_left_out():
    df = fair()
    drop = (df["arm"] == "arm") & (df["replicate"] == 1) & df["item_id"].isin(["i00000", "i00001"])
    r = analyze(df[~drop], design(), n_resamples=R)
    f = next(f for f in r.findings if f.code == "missing_items")
    assert f.severity == "warning" and "seed 1 lacks 2" in f.message
    assert r.comparisons[0].n_items == 58 and r.comparisons[0].dropped_items == 2


def test_train_eval_overlap_exact_and_normalised():
    ctx = AnalysisContext(train_texts={"arm": ["The cat sat.", "Some  OTHER text", "unrelated"]},
                          eval_texts={"test": {"e1": "The cat sat.", "e2": "some other text",
                                               "e3": "fresh"}})
    r = analyze(fair(), design(), ctx, n_resamples=R)
    fs = [f for f in r.findings if f.code == "train_eval_overlap"]
    assert {(f.severity, f.details["kind"], tuple(f.details["items"])) for f in fs} == {
        ("error", "exact", ("e1",)), ("warning", "normalised", ("e2",))}


def test_split_not_reproducible():
    ctx = AnalysisContext(splits=[{"name": "test", "seed": 3, "reproducible": False,
                                   "details": "shuffle used the global RNG"}])
    r = analyze(fair(), design(), ctx, n_resamples=R)
    f = next(f for f in r.findings if f.code == "split_not_reproducible")
    assert f.severity == "error" and "global RNG" in f.message


def test_unequal_seeds():
    df = fair()
    r = analyze(df[~((df["arm"] == "arm") & (df["replicate"] == 2))], design(), n_resamples=R)
    assert {"unequal_seeds", "missing_seeds"} <= codes(r, "warning")
    assert r.comparisons[0].n_seeds == 2 and r.comparisons[0].dropped_seeds == [2]


def test_config_drift_from_oom_back_off():
    ctx = AnalysisContext(effective_params=[
        {"arm": "arm", "replicate": 1, "stage": "train",
         "declared": {"train": {"micro_batch": 32, "grad_accum": 1}},
         "effective": {"train": {"micro_batch": 16, "grad_accum": 2}}}])
    r = analyze(fair(), design(), ctx, n_resamples=R)
    f = next(f for f in r.findings if f.code == "config_drift")
    assert "train.micro_batch 32 -> 16" in f.message and f.details["arm"] == "arm"


@pytest.mark.parametrize("shift,severity", [(+2.0, "error"), (-0.02, "warning")])
def test_model_not_beating_baseline(shift, severity):
    df = make_scores({"ctrl": 0.0, "arm": 0.3}, n_items=60, baselines={"unigram": shift},
                     noise_sd=1.0)
    r = analyze(df, design(), n_resamples=R)
    sev = {f.severity for f in r.findings if f.code == "baseline_not_beaten"}
    assert severity in sev


def test_too_few_items():
    df = make_scores({"ctrl": 0.0, "arm": 0.3}, n_items=12)
    r = analyze(df, design(), n_resamples=R)
    assert "too_few_items" in codes(r, "warning")
    r = analyze(df, design(min_items=10), n_resamples=R)
    assert "too_few_items" not in codes(r)


def test_unknown_arm_and_arm_without_scores():
    df = pd.concat([fair(), make_scores({"ghost": 0.0}, n_items=60)])
    r = analyze(df, design(arms={"ctrl": {}, "arm": {}, "late": {}}), n_resamples=R)
    assert {"unknown_arm", "arm_without_scores"} <= codes(r, "warning")
    assert all(c.arm != "ghost" for c in r.comparisons)


# ---- cross-evaluation: the checks are loud only where a decided comparison looks
def cross_design(**kw):
    return design(arms={"ctrl": {}, "A-spec": {}, "B-spec": {}},
                  cross_eval=CrossEval({"A-spec": "A", "B-spec": "B"}), **kw)


def cross_scores(a_spec=None, ctrl=0.0, n_items=60):
    """Specialists far better than the baseline on their own set and worse elsewhere."""
    return make_scores({"ctrl": ctrl,
                        "A-spec": a_spec or {"A": 3.0, "B": -6.0, "C": -6.0},
                        "B-spec": {"A": -6.0, "B": 3.0, "C": 3.0}},
                       eval_sets=("A", "B", "C"), n_items=n_items, baselines={"unigram": -2.0})


def by_code(result, code):
    return [f for f in result.findings if f.code == code]


def test_cross_eval_off_diagonal_baseline_is_one_info_per_arm():
    r = analyze(cross_scores(), cross_design(), n_resamples=R)
    fs = by_code(r, "baseline_not_beaten")
    assert [(f.severity, f.details["arm"]) for f in fs] == [("info", "A-spec"), ("info", "B-spec")]
    a = fs[0]
    assert [c["eval_set"] for c in a.details["cells"]] == ["B", "C"]
    assert re.search(r"B [\d.]+ vs unigram [\d.]+; C [\d.]+ vs unigram", a.message)
    assert "within noise" not in a.message
    assert not r.errors and "integrity error" not in r.headline


def test_cross_eval_own_set_and_control_keep_their_severity():
    # A-spec worse than its baseline on its own set; the control worse on A (decided: A-spec's
    # reference there) and on C (nobody's own set: not decided)
    df = cross_scores(a_spec={"A": -6.0, "B": -6.0, "C": -6.0},
                      ctrl={"A": -6.0, "B": 3.0, "C": -6.0})
    r = analyze(df, cross_design(), n_resamples=R)
    loud = {(f.details["arm"], f.details["eval_set"]) for f in by_code(r, "baseline_not_beaten")
            if f.severity == "error"}
    assert loud == {("A-spec", "A"), ("ctrl", "A")}
    quiet = {f.details["arm"]: [c["eval_set"] for c in f.details["cells"]]
             for f in by_code(r, "baseline_not_beaten") if f.severity == "info"}
    assert quiet == {"A-spec": ["B", "C"], "B-spec": ["A"], "ctrl": ["C"]}


def test_without_cross_eval_every_eval_set_is_loud():
    df = cross_scores()
    r = analyze(df, design(arms={"ctrl": {}, "A-spec": {}, "B-spec": {}}), n_resamples=R)
    sev = {(f.details["arm"], f.details["eval_set"]): f.severity
           for f in by_code(r, "baseline_not_beaten")}
    assert sev == {("A-spec", "B"): "error", ("A-spec", "C"): "error", ("B-spec", "A"): "error"}


def test_cross_eval_too_few_items_grades_by_decided_cells():
    df = cross_scores()
    few = {"A": [f"i{j:05d}" for j in range(20)], "C": [f"i{j:05d}" for j in range(10)]}
    keep = ~df["eval_set"].isin(list(few)) | df.apply(
        lambda r: r["item_id"] in few.get(r["eval_set"], []), axis=1)
    r = analyze(df[keep], cross_design(), n_resamples=R)
    fs = by_code(r, "too_few_items")
    warn = [f for f in fs if f.severity == "warning"]
    assert len(warn) == 1
    assert {(a, e) for a, e, _ in warn[0].details["cells"]} == {("A-spec", "A"), ("ctrl", "A")}
    info = {f.details["arm"]: [(e, n) for _, e, n in f.details["cells"]]
            for f in fs if f.severity == "info"}
    assert info == {"A-spec": [("C", 10)], "B-spec": [("A", 20), ("C", 10)], "ctrl": [("C", 10)]}


def test_fair_cross_eval_study_is_quiet():
    df = make_scores({"ctrl": 0.0, "A-spec": {"A": 0.5}, "B-spec": {"B": 0.5}},
                     eval_sets=("A", "B", "C"), n_items=60, baselines={"unigram": -5.0})
    r = analyze(df, cross_design(), n_resamples=R)
    assert r.findings == []
