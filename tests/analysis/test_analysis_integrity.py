"""Each integrity check: one test that makes it fire, and a fair study on which all are quiet."""

import pandas as pd
import pytest

from fairtrial.analysis import AnalysisContext, Decision, Endpoint, StudyDesign, analyze
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
