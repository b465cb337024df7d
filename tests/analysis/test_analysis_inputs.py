import numpy as np
import pandas as pd
import pytest

from fairtrial.analysis import (AnalysisInputError, Decision, Endpoint, StudyDesign, analyze)
from fairtrial.analysis.synthetic import make_scores
from fairtrial.errors import UserError


def design(**kw):
    base = dict(question="q?", arms={"ctrl": {}, "arm": {}}, control="ctrl",
                endpoint=Endpoint("score", "higher"), decision=Decision(min_effect=0.01))
    base.update(kw)
    return StudyDesign(**base)


@pytest.fixture
def scores():
    return make_scores({"ctrl": 0.0, "arm": 0.3}, n_items=40)


def test_missing_column(scores):
    with pytest.raises(AnalysisInputError, match=r"lack columns \['replicate'\]"):
        analyze(scores.drop(columns="replicate"), design(), n_resamples=200)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_value(scores, bad):
    scores.loc[7, "value"] = bad
    with pytest.raises(AnalysisInputError, match="NaN or infinite.*row 7"):
        analyze(scores, design(), n_resamples=200)


def test_duplicate_item(scores):
    dup = scores.iloc[[3]]
    with pytest.raises(AnalysisInputError, match="repeat an item id.*i00003"):
        analyze(pd.concat([scores, dup]), design(), n_resamples=200)


def test_endpoint_metric_absent(scores):
    with pytest.raises(AnalysisInputError, match="endpoint metric 'bleu' has no item scores.*score"):
        analyze(scores, design(endpoint=Endpoint("bleu", "higher")), n_resamples=200)


def test_control_without_scores(scores):
    with pytest.raises(AnalysisInputError, match="control arm 'ctrl' has no model scores"):
        analyze(scores[scores["arm"] != "ctrl"], design(), n_resamples=200)


def test_non_integer_replicate(scores):
    scores["replicate"] = scores["replicate"] + 0.5
    with pytest.raises(AnalysisInputError, match="replicate"):
        analyze(scores, design(), n_resamples=200)


def test_empty_table(scores):
    with pytest.raises(AnalysisInputError, match="empty"):
        analyze(scores.iloc[:0], design(), n_resamples=200)


def test_bad_design_lists_every_problem(scores):
    d = design(control="nobody", decision=Decision(alpha=2.0, correction="fdr", min_effect=-1))
    with pytest.raises(AnalysisInputError) as err:
        analyze(scores, d, n_resamples=200)
    msg = str(err.value)
    for part in ("control: 'nobody' is not an arm", "decision.alpha", "decision.correction",
                 "decision.min_effect"):
        assert part in msg


def test_input_error_is_a_user_error():
    # the CLI prints UserError without a traceback (exit code 2)
    assert issubclass(AnalysisInputError, UserError) and issubclass(AnalysisInputError, ValueError)


def test_own_eval_set_template():
    """[analysis] own_eval_set = "{train_level}": each arm's own eval set from its params (an arm
    without the param has none), as StudyDesign.from_spec reads the table."""
    from fairtrial.analysis.design import _shapes

    arms = {"general": {"train_level": "all"}, "A1-specialist": {"train_level": "A1"}, "odd": {}}
    shapes = _shapes({"own_eval_set": "{train_level}", "min_items": 50}, arms)
    assert dict(shapes["cross_eval"].own) == {"general": "all", "A1-specialist": "A1"}
    assert shapes["min_items"] == 50
