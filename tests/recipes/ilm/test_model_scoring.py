"""Evaluation metrics and the unigram baseline: exact values on hand-made inputs."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # _model_fixtures

from _model_fixtures import tiny_model, world  # noqa: E402,F401

from fairtrial.recipes.ilm import METRICS  # noqa: E402
from fairtrial.recipes.ilm.evaluate import (EvalParams, evaluate_model,  # noqa: E402
                                            item_rows, score_examples)
from fairtrial.recipes.ilm.tokenizer import special_ids  # noqa: E402
from fairtrial.recipes.ilm.unigram import fit_unigram, score_unigram  # noqa: E402

IDS = {"start_infill": 6, "end_infill": 7, "eos": 0}


def test_unigram_probabilities_match_hand_counts():
    # vocabulary of 8; counts: token 1 x3, token 2 x1, stop (7) once per text = 2, N = 6
    logp = fit_unigram([[1, 1, 2], [1]], vocab_size=8, k=1.0, stop_id=7)
    p = np.exp(logp)
    assert p.sum() == pytest.approx(1.0)
    assert p[1] == pytest.approx((3 + 1) / (6 + 8))
    assert p[2] == pytest.approx((1 + 1) / 14)
    assert p[7] == pytest.approx((2 + 1) / 14)
    assert p[5] == pytest.approx(1 / 14)
    # add-k with another k
    p = np.exp(fit_unigram([[1, 1, 2], [1]], vocab_size=8, k=0.5))
    assert p[1] == pytest.approx(3.5 / (4 + 4))
    with pytest.raises(ValueError, match="k must be > 0"):
        fit_unigram([[1]], 8, k=0)
    with pytest.raises(ValueError, match="outside a vocabulary"):
        fit_unigram([[9]], 8)


def test_unigram_scores_the_same_targets_as_the_model_with_exact_values():
    logp = fit_unigram([[1, 1, 2], [1]], vocab_size=8, k=1.0, stop_id=7)
    # context: 1 2 3 | start | answer 1 1 end | answer 2 end | eos
    ex = np.array([1, 2, 3, 6, 1, 1, 7, 2, 7, 0])
    sums = score_unigram(logp, [ex], IDS)
    p = np.exp(logp)
    nll = lambda *toks: -sum(math.log(p[t]) for t in toks)  # noqa: E731
    rows, skipped = item_rows(["doc"], sums, eval_set="A1", digest="d", system="unigram")
    by = {r["metric"]: r for r in rows}
    assert skipped == 0
    # infill text: 1, 1, 2 (no end tokens, no eos)
    assert by["infill_ppl"]["n_tokens"] == 3
    assert by["infill_ppl"]["value"] == pytest.approx(math.exp(nll(1, 1, 2) / 3))
    assert by["infill_ppl_with_end"]["n_tokens"] == 5
    assert by["infill_ppl_with_end"]["value"] == pytest.approx(math.exp(nll(1, 1, 2, 7, 7) / 5))
    # context: targets 2, 3 (the first token has no prediction; the start token is left out)
    assert by["context_ppl"]["n_tokens"] == 2
    assert by["context_ppl"]["nll_sum"] == pytest.approx(nll(2, 3))
    assert {r["system"] for r in rows} == {"unigram"}


def test_item_rows_sum_examples_of_one_item_before_the_perplexity():
    sums = score_unigram(fit_unigram([[1, 2, 2]], 8), [np.array([1, 6, 1, 7, 0]),
                                                       np.array([1, 6, 2, 2, 7, 0])], IDS)
    rows, _ = item_rows(["d", "d"], sums, eval_set="A1", digest="x")
    infill = [r for r in rows if r["metric"] == "infill_ppl"]
    assert len(infill) == 1 and infill[0]["n_tokens"] == 3
    assert infill[0]["value"] == pytest.approx(
        math.exp(float(sums["nll_3"].sum()) / 3))


def test_model_scores_equal_a_direct_computation(world):
    """score_examples on a batch of mixed lengths == one example at a time through the model."""
    ids = special_ids(world.tok)
    model = tiny_model(world.tok).eval()
    examples = world.valid[:7]
    sums = score_examples(model, examples, ids, batch_size=3)
    for i, ex in enumerate(examples):
        x = torch.tensor(ex.astype(np.int64))[None]
        with torch.no_grad():
            logp = torch.log_softmax(model(x).logits[0, :-1].double(), -1)
        tgt = x[0, 1:]
        nll = -logp[torch.arange(len(tgt)), tgt].numpy()
        s = int(np.flatnonzero(ex == ids["start_infill"])[0])
        answer = np.arange(len(tgt)) >= s
        text = answer & (ex[1:] != ids["end_infill"]) & (ex[1:] != ids["eos"])
        assert sums["nll_3"][i] == pytest.approx(nll[text].sum(), rel=1e-4)
        assert sums["n_3"][i] == text.sum()
        assert sums["nll_1"][i] == pytest.approx(nll[:s - 1].sum(), rel=1e-4)
        assert sums["n_4"][i] == (ex == ids["end_infill"]).sum()


def test_evaluate_model_rows_cover_every_item_metric_and_level(world):
    ids = special_ids(world.tok)
    rows, summary = evaluate_model(tiny_model(world.tok), world.testset_dir, ids, EvalParams())
    import json

    assert set(summary) == {"A1", "B1"}
    for level in ("A1", "B1"):
        meta = json.loads((world.testset_dir / level / "meta.json").read_text())
        mine = [r for r in rows if r["eval_set"] == level]
        assert {r["eval_set_digest"] for r in mine} == {meta["eval_set_digest"]}
        assert len({r["item_id"] for r in mine}) == 6  # 12 examples, two per document
        assert {r["metric"] for r in mine} == {m.name for m in METRICS}
        assert all(r["value"] > 1 and math.isfinite(r["value"]) for r in mine)
    with pytest.raises(ValueError, match="eval.levels"):
        evaluate_model(tiny_model(world.tok), world.testset_dir, ids, EvalParams(levels=["C2"]))


def test_too_long_test_examples_are_an_error_not_a_silent_cut(world):
    ids = special_ids(world.tok)
    from fairtrial.recipes.ilm.model import ModelParams, build_model

    small = build_model(ModelParams(n_layer=1, n_embd=16, n_head=2, n_positions=16), world.tok)
    with pytest.raises(ValueError, match="longer than the model's 16 positions"):
        evaluate_model(small, world.testset_dir, ids, EvalParams())
