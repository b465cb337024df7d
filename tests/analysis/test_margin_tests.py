"""Issue 24: non-inferiority and equivalence tests (docs/verdicts.md, "The three tests").

The rules on constructed intervals; the analysis reading the right interval (two-sided 1 - alpha
for non-inferiority, TOST's 1 - 2 alpha for equivalence, both Holm-corrected) in the endpoint's
direction; `check` refusing bad [decision] tables; and an evaluation-only study end to end through
the installed `fairtrial`, its verdicts checked against a paired bootstrap written here in numpy.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fairtrial.analysis import analyze
from fairtrial.analysis.decision import (equivalence, margin_p_value, non_inferiority,
                                         verdict_for)
from fairtrial.analysis.design import Decision, Endpoint, StudyDesign
from fairtrial.analysis.synthetic import make_scores


# ---- the rules on constructed intervals (improvements: negative = the arm is worse)

@pytest.mark.parametrize("lo,hi,margin,expected,why", [
    (-0.04, 0.02, 0.05, "supported", "above -margin"),
    (0.01, 0.06, 0.05, "supported", "the arm is better"),
    (-0.06, 0.02, 0.05, "inconclusive", "contains -margin"),
    (-0.20, -0.06, 0.05, "refuted", "worse than the reference by more than the margin"),
    (-0.05, 0.02, 0.05, "inconclusive", "contains"),            # lo == -margin is not above it
    (-0.01, 0.01, 0.0, "inconclusive", "contains"),             # margin 0: superiority at 0
    (float("nan"), 0.1, 0.05, "inconclusive", "could not"),
])
def test_non_inferiority_rule(lo, hi, margin, expected, why):
    v, reason = non_inferiority(lo, hi, margin)
    assert v == expected and why in reason
    assert verdict_for("non_inferiority", lo, hi, margin=margin) == (v, reason)


@pytest.mark.parametrize("lo,hi,margin,expected,why", [
    (-0.04, 0.04, 0.05, "supported", "inside"),
    (-0.06, 0.04, 0.05, "inconclusive", "contains a margin"),
    (-0.04, 0.06, 0.05, "inconclusive", "contains a margin"),
    (-0.10, 0.10, 0.05, "inconclusive", "contains a margin"),
    (-0.20, -0.06, 0.05, "refuted", "worse"),
    (0.06, 0.20, 0.05, "refuted", "better"),
    (-0.05, 0.04, 0.05, "inconclusive", "contains"),            # the band is open
    (0.0, 0.0, 0.0, "inconclusive", "contains"),                # margin 0: never inside
    (0.01, 0.02, 0.0, "refuted", "better"),
])
def test_equivalence_rule(lo, hi, margin, expected, why):
    v, reason = equivalence(lo, hi, margin)
    assert v == expected and why in reason
    assert verdict_for("equivalence", lo, hi, margin=margin) == (v, reason)


def test_superiority_is_todays_rule():
    assert verdict_for("superiority", 0.06, 0.10, min_effect=0.05)[0] == "supported"
    assert verdict_for("superiority", -0.03, 0.03, min_effect=0.05)[0] == "refuted"
    with pytest.raises(ValueError, match="unknown test"):
        verdict_for("noninferiority", 0, 1)


def test_margin_p_values_agree_with_the_percentile_interval():
    draws = np.random.default_rng(0).normal(-0.02, 0.02, 20_000)
    lo, hi = np.quantile(draws, [0.025, 0.975])
    for margin in (0.01, 0.03, 0.05, 0.06, 0.08):
        p = margin_p_value("non_inferiority", draws, margin)
        assert (p < 0.05) == (lo > -margin)
    lo90, hi90 = np.quantile(draws, [0.05, 0.95])
    for margin in (0.03, 0.05, 0.06, 0.08):
        p = margin_p_value("equivalence", draws, margin)
        assert (p < 0.05) == (-margin < lo90 and hi90 < margin)


# ---- the analysis: which interval, which direction

def _design(test: str, margin: float, direction: str = "higher", arms=("ctrl", "arm"),
            effect: str = "absolute", alpha: float = 0.05, correction: str = "holm"):
    return StudyDesign(question="Can it replace the control?", control=arms[0],
                       arms={a: {} for a in arms}, endpoint=Endpoint("score", direction),
                       decision=Decision(test=test, margin=margin, effect=effect, alpha=alpha,
                                         correction=correction))


def test_non_inferiority_reads_the_two_sided_interval_and_equivalence_tost():
    df = make_scores({"ctrl": 0.0, "arm": -0.05}, seeds=(0, 1, 2), n_items=300, rng_seed=3)
    ni = analyze(df, _design("non_inferiority", 0.3), n_resamples=2000)
    eq = analyze(df, _design("equivalence", 0.3), n_resamples=2000)
    sup = analyze(df, StudyDesign(question="q", control="ctrl", arms={"ctrl": {}, "arm": {}},
                                  endpoint=Endpoint("score", "higher"),
                                  decision=Decision(effect="absolute")), n_resamples=2000)
    c_ni, c_eq, c_sup = ni.comparisons[0], eq.comparisons[0], sup.comparisons[0]
    assert (c_ni.test, c_ni.margin, c_ni.level, c_ni.alpha) == ("non_inferiority", 0.3, 0.95, 0.05)
    assert c_eq.test == "equivalence" and c_eq.level == pytest.approx(0.90)
    assert c_ni.diff_ci == pytest.approx(c_sup.diff_ci)        # the same interval as superiority
    assert c_eq.diff_ci[0] > c_ni.diff_ci[0] and c_eq.diff_ci[1] < c_ni.diff_ci[1]
    assert c_ni.verdict == "supported" and c_eq.verdict == "supported"
    d = ni.to_dict()
    assert d["decision"]["test"] == "non_inferiority" and d["decision"]["margin"] == 0.3
    assert d["comparisons"][0]["test"] == "non_inferiority"
    assert ni.headline.startswith("Can it replace the control? arm is non-inferior to ctrl within "
                                  "0.3 score: supported.")
    assert "arm is equivalent to ctrl within +-0.3 score: supported." in eq.headline


def test_worse_is_the_bad_side_whatever_the_direction():
    # lower is better: the arm's values are higher by 0.5, i.e. 0.5 worse
    df = make_scores({"ctrl": 0.0, "arm": 0.5}, seeds=(0, 1, 2), n_items=400, noise_sd=0.5,
                     seed_sd=0.02, rng_seed=5)
    lower = analyze(df, _design("non_inferiority", 0.2, direction="lower"), n_resamples=2000)
    c = lower.comparisons[0]
    assert c.diff < -0.4 and c.diff_ci[1] < -0.2 and c.verdict == "refuted"
    assert "worse than the reference by more than the margin" in c.reason
    # the same numbers with higher is better: 0.5 better, non-inferior
    higher = analyze(df, _design("non_inferiority", 0.2, direction="higher"), n_resamples=2000)
    assert higher.comparisons[0].verdict == "supported"


def test_relative_margin_is_a_fraction_of_the_reference_mean():
    # mean 10, arm 0.3 lower: -3% relative; a 5% margin holds it, a 1% margin does not
    df = make_scores({"ctrl": 0.0, "arm": -0.3}, seeds=(0, 1, 2), n_items=400, noise_sd=0.3,
                     seed_sd=0.02, rng_seed=7)
    ok = analyze(df, _design("non_inferiority", 0.05, effect="relative"), n_resamples=2000)
    tight = analyze(df, _design("non_inferiority", 0.01, effect="relative"), n_resamples=2000)
    assert ok.comparisons[0].rel == pytest.approx(-0.03, abs=0.005)
    assert ok.comparisons[0].verdict == "supported" and tight.comparisons[0].verdict == "refuted"
    assert "within 5.0% score" in ok.headline


def test_holm_orders_margin_tests_by_their_own_p_values():
    # two arms: "close" is non-inferior, "far" is clearly worse. Holm judges the smaller p first
    # at alpha/2 (its own p, not "no difference": by that, "far" would come first and fail)
    df = make_scores({"ctrl": 0.0, "close": -0.02, "far": -1.0}, seeds=(0, 1, 2), n_items=300,
                     noise_sd=0.3, seed_sd=0.02, rng_seed=11)
    r = analyze(df, _design("non_inferiority", 0.3, arms=("ctrl", "close", "far")),
                n_resamples=2000)
    c = {x.arm: x for x in r.comparisons}
    assert c["close"].verdict == "supported" and c["close"].level == pytest.approx(0.975)
    assert c["far"].verdict == "refuted" and c["far"].level == pytest.approx(0.95)   # then alpha/1
    assert r.verdict == "mixed" and "is each arm non-inferior to ctrl within 0.3 score?" in r.headline
    assert "far is non-inferior to ctrl within 0.3 score: refuted" in r.headline


@pytest.mark.parametrize("test", ["non_inferiority", "equivalence"])
def test_a_floor_is_inconclusive_for_the_margin_tests(test):
    ids = [f"q{i}" for i in range(50)]
    df = pd.DataFrame([{"item_id": i, "eval_set": "t", "eval_set_digest": "d", "metric": "score",
                        "value": 0.0, "system": "model", "arm": a, "replicate": 0}
                       for a in ("ctrl", "arm") for i in ids])
    r = analyze(df, _design(test, 0.1), n_resamples=500)
    c = r.comparisons[0]
    assert c.verdict == "inconclusive" and c.reason.startswith("no variation")
    assert "(no variation" in r.headline


# ---- check: one-line errors, exit 2

STUDY = """\
question = "Can b replace a?"
external_arms = ["a", "b", "c"]
control = "a"

[metrics.accuracy]
direction = "higher"
aggregation = "proportion"

[endpoint]
metric = "accuracy"

[decision]
test = "{test}"
margin = 0.10
effect = "absolute"
"""


@pytest.mark.parametrize("test,change,key,words", [
    ("non_inferiority", ("margin = 0.10", "margin = -0.1"), "decision.margin", "margin must be >= 0"),
    ("equivalence", ("margin = 0.10", "margin = -0.1"), "decision.margin", "margin must be >= 0"),
    ("superiority", ("", ""), "decision.margin", "a superiority test uses"),
    ("non_inferiority", ("margin = 0.10\n", ""), "decision.test", "needs a margin"),
    ("equivalence", ("margin = 0.10\n", ""), "decision.test", "needs a margin"),
    ("non_inferiority", ('control = "a"\n', ""), "decision.test", 'name it with control = "<arm>"'),
    ("non_inferiority", ("margin = 0.10", "margin = 0.1\ncompare = \"all-pairs\""),
     "decision.compare", 'use compare = "control"'),
    ("non_inferiority", ("margin = 0.10", "margin = 0.1\nmin_effect = 0.02"), "decision.min_effect",
     "uses margin"),
    ("equivalence", ("margin = 0.10", "margin = 0.1\nalpha = 0.5"), "decision.alpha", "below 0.5"),
])
def test_check_refuses_bad_decision_tables(cli, make_study, test, change, key, words):
    text = STUDY.replace(*change).replace("{test}", test)
    p = cli("check", make_study(text), check=2)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    hit = [ln for ln in lines if f": {key}: " in ln]
    assert len(hit) == 1 and words in hit[0], p.stderr
    assert len(lines) == 1, p.stderr                    # one error, on one line


# ---- end to end: import, report --json, an independent paired bootstrap

N = 400
RESAMPLES = 4000
SEED = 3


def outcomes() -> dict[str, np.ndarray]:
    """0/1 per item, paired through a shared difficulty: b about 2 points below a, c 25 below."""
    rng = np.random.default_rng(24)
    easy = rng.random(N)
    flip = rng.random(N) < 0.06
    return {"a": (easy < 0.70).astype(float),
            "b": ((easy < 0.68) ^ flip).astype(float),
            "c": (easy < 0.45).astype(float)}


def numpy_bootstrap(ref: np.ndarray, arm: np.ndarray, level: float, b: int = 20_000):
    """A paired percentile bootstrap of mean(arm) - mean(ref) over items, written here."""
    rng = np.random.default_rng(99)
    idx = rng.integers(0, len(ref), size=(b, len(ref)))
    d = arm[idx].mean(axis=1) - ref[idx].mean(axis=1)
    a = (1 - level) / 2
    return tuple(np.quantile(d, [a, 1 - a]))


@pytest.mark.parametrize("test", ["non_inferiority", "equivalence"])
def test_end_to_end_verdicts_agree_with_an_independent_bootstrap(cli, make_study, tmp_path, test):
    study = make_study(STUDY.replace("{test}", test))
    y = outcomes()
    for arm in "abc":
        f = tmp_path / f"{arm}.jsonl"
        f.write_text("".join(json.dumps({"item_id": f"q{i:04d}", "metric": "accuracy",
                                         "value": float(y[arm][i]), "eval_set": "bench"}) + "\n"
                             for i in range(N)))
        cli("import", study, f, "--arm", arm, check=0)
    rep = json.loads(cli("report", study, "--json", "--resamples", RESAMPLES, "--seed", SEED,
                         check=0).stdout)
    assert rep["decision"]["test"] == test and rep["decision"]["margin"] == 0.10
    comps = {c["arm"]: c for c in rep["comparisons"]}
    assert set(comps) == {"b", "c"}
    margin = 0.10
    for arm, c in comps.items():
        assert c["test"] == test and c["margin"] == margin and c["reference"] == "a"
        # Holm over two comparisons: the first judged at alpha/2, then (b supported) alpha
        alpha = c["alpha"]
        assert alpha in (pytest.approx(0.025), pytest.approx(0.05))
        assert c["level"] == pytest.approx(1 - alpha if test == "non_inferiority" else 1 - 2 * alpha)
        lo, hi = numpy_bootstrap(y["a"], y[arm], c["level"])
        assert c["diff"] == pytest.approx(y[arm].mean() - y["a"].mean(), abs=1e-12)
        # the two bootstraps agree within Monte-Carlo error (about 0.002 here)
        assert c["diff_ci"] == pytest.approx([lo, hi], abs=0.008)
        rule = non_inferiority if test == "non_inferiority" else equivalence
        assert rule(lo, hi, margin)[0] == c["verdict"]
    assert comps["b"]["verdict"] == "supported" and comps["c"]["verdict"] == "refuted"
    assert comps["b"]["alpha"] == pytest.approx(0.025) and comps["c"]["alpha"] == pytest.approx(0.05)
    assert rep["verdict"] == "mixed"
    words = "non-inferior to a within 0.1" if test == "non_inferiority" else \
        "equivalent to a within +-0.1"
    assert f"c is {words} accuracy: refuted" in rep["headline"]
    md = (tmp_path / "ws" / "studies" / "study" / "report.md").read_text()
    assert md.splitlines()[0].endswith(rep["headline"]) or rep["headline"] in md
    assert ("lower end is above -margin" if test == "non_inferiority" else "TOST") in md


# ---- the _test recipe: arm_noise and seed_sd (issue 24, item 4)

def _scores(tmp_path, seed: int, **params) -> np.ndarray:
    from fairtrial.recipes.enginetest import RECIPE, TestParams
    from fairtrial.recipes.testing import StageRunner

    run = StageRunner(RECIPE, tmp_path / f"{seed}-{abs(hash(tuple(sorted(params.items()))))}",
                      TestParams(**params).model_dump(), seed=seed)
    run.upto("score")
    t = pd.read_parquet(run.dirs["score"] / "item_scores.parquet")
    return t[t["system"].fillna("model") == "model"]["value"].to_numpy()


def test_test_recipe_defaults_keep_one_noise_draw(tmp_path):
    # today's formula: difficulty + effect + one noise draw for every arm and seed
    n = 30
    base = 1.0 + np.random.default_rng(12345).normal(scale=0.5, size=n)
    want = base + 0.2 + np.random.default_rng([0, 7]).normal(scale=0.1, size=n)
    for seed in (0, 3):
        assert np.array_equal(_scores(tmp_path, seed, n_items=n, effect=0.2), want)


def test_test_recipe_arm_noise_and_seed_sd_make_something_to_settle(tmp_path):
    kw = dict(n_items=2000, noise=0.3, arm_noise=True)
    a0, b0 = _scores(tmp_path, 0, effect=0.0, **kw), _scores(tmp_path, 0, effect=0.1, **kw)
    a1 = _scores(tmp_path, 1, effect=0.0, **kw)
    d = b0 - a0                                  # independent noise: sd 0.3 * sqrt(2) per item
    assert d.std() == pytest.approx(0.3 * np.sqrt(2), rel=0.06)
    assert d.mean() == pytest.approx(0.1, abs=0.03)
    assert not np.array_equal(a0, a1)            # each seed its own draw
    assert np.array_equal(a0, _scores(tmp_path, 0, effect=0.0, **kw))     # deterministic
    # seed_sd: one shift of every item per seed
    shifts = [(_scores(tmp_path, s, effect=0.0, seed_sd=0.5, **dict(kw, noise=0.0))
               - 1.0 - np.random.default_rng(12345).normal(scale=0.5, size=2000)) for s in range(8)]
    per_seed = [x.mean() for x in shifts]
    assert all(np.ptp(x) < 1e-12 for x in shifts)                # the same shift on every item
    assert np.std(per_seed) > 0.1                                # and it varies by seed
    # without arm_noise the seed shift is shared by the arms of a seed: it cancels when paired
    kw2 = dict(n_items=50, seed_sd=0.5)
    assert np.allclose(_scores(tmp_path, 2, effect=0.1, **kw2) - _scores(tmp_path, 2, **kw2), 0.1)
