"""The model stages end to end on the tiny world (train -> evaluate, baseline), and infill with the
trained model."""

import json
import re
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # _model_fixtures

from _model_fixtures import FakeContext, trained, world  # noqa: E402,F401

from fairtrial.recipes.api import StageContext, StageError  # noqa: E402
from fairtrial.recipes.ilm import RECIPE  # noqa: E402
from fairtrial.recipes.ilm import METRICS  # noqa: E402
from fairtrial.recipes.ilm.infill import infill, infill_with_answers, to_context  # noqa: E402
from fairtrial.recipes.ilm.params import oom_policy  # noqa: E402
from fairtrial.recipes.ilm.stages import baseline as baseline_stage  # noqa: E402
from fairtrial.recipes.ilm.stages import evaluate as evaluate_stage  # noqa: E402
from fairtrial.recipes.ilm.stages import train as train_stage  # noqa: E402
from fairtrial.recipes.testing import stage_params  # noqa: E402
from fairtrial.scores import REQUIRED  # noqa: E402


def _ctx(tmp_path, params, inputs, stage="train", **kw):
    return FakeContext(params=stage_params(RECIPE, stage, params), out=tmp_path / "out",
                       inputs=inputs, checkpoint_dir=tmp_path / "ck", **kw)


def test_declarations():
    by = {s.name: s for s in RECIPE.stages}
    assert list(by) == ["prepare", "tokenizer", "examples", "testset", "train", "evaluate",
                        "baseline"]
    assert [s.fn.__module__ for s in RECIPE.stages] == ["fairtrial.recipes.ilm.stages"] * 7
    assert by["train"].seeded and by["train"].checkpoints and by["train"].oom is not None
    assert set(by["train"].needs) == {"examples", "tokenizer"}
    assert by["evaluate"].emits_scores and by["baseline"].emits_scores
    assert set(by["baseline"].needs) == {"prepare", "testset", "tokenizer"}
    assert {m.name for m in METRICS} == {"infill_ppl", "infill_ppl_with_end", "context_ppl"}
    assert all(m.direction == "lower" for m in METRICS)
    assert isinstance(FakeContext(params={}, out=Path(".")), StageContext)


def test_oom_policy_halves_the_nested_micro_batch():
    p = {"model": {"n_layer": 2}, "train": {"micro_batch": 8, "grad_accum": 2}}
    q = oom_policy(p)
    assert q["train"] == {"micro_batch": 4, "grad_accum": 4} and q["model"] == p["model"]
    assert oom_policy({"train": {}})["train"] == {"micro_batch": 8, "grad_accum": 2}  # defaults 16, 1
    assert oom_policy({"train": {"micro_batch": 1, "grad_accum": 64}}) is None


def test_train_stage_writes_a_loadable_model_with_its_config(trained):
    model_dir = trained.out / "model"
    cfg = json.loads((model_dir / "fairtrial_config.json").read_text())
    assert cfg["train"]["steps"] == 60 and cfg["model"]["n_embd"] == 32 and cfg["seed"] == 0
    assert (model_dir / "tokenizer.json").exists() and (model_dir / "config.json").exists()
    log = [json.loads(x) for x in (trained.out / "train_log.jsonl").read_text().splitlines()]
    assert sum(r["kind"] == "step" for r in log) == 60
    s = trained.summary
    assert s["steps"] == 60 and s["best_valid_infill_loss"] > 0
    # progress was reported per step, with tokens per second in the message
    assert trained.progress_calls[-1][:3] == (60, 60, "step")
    assert re.search(r"[\d,]+ tok/s", trained.progress_calls[-1][3])
    assert trained.heartbeats > 0  # validation batches say they are alive
    # the tiny model learnt something: last losses well below the first
    losses = [r["loss"] for r in log if r["kind"] == "step"]
    assert sum(losses[-5:]) < 0.7 * sum(losses[:5])


def test_train_stage_bad_params_are_stage_errors(world, tmp_path):
    inputs = {"examples": world.examples_dir, "tokenizer": world.tokenizer_dir}
    with pytest.raises(StageError, match="params.train"):
        train_stage(_ctx(tmp_path, {"train": {"micro_bach": 4}}, inputs))
    with pytest.raises(StageError, match="model.memory_gb"):
        train_stage(_ctx(tmp_path, {"model": {"n_layer": 24, "n_embd": 1024, "n_head": 16,
                                              "memory_gb": 0.5}}, inputs))
    with pytest.raises(StageError, match="tokenizer folder"):
        train_stage(_ctx(tmp_path, {}, {**inputs, "tokenizer": tmp_path / "nope"}))


def test_evaluate_stage_writes_valid_item_scores(trained, world, tmp_path):
    ctx = _ctx(tmp_path, {"eval": {"batch_size": 5}},
               {"train": trained.out, "testset": world.testset_dir,
                "tokenizer": world.tokenizer_dir}, stage="evaluate")
    summary = evaluate_stage(ctx)
    table = pq.read_table(ctx.out / "item_scores.parquet").to_pylist()
    assert all(c in table[0] for c in (*REQUIRED, "nll_sum", "n_tokens"))
    assert {r["system"] for r in table} == {"model"}
    assert {r["eval_set"] for r in table} == {"A1", "B1"}
    for level in ("A1", "B1"):
        digest = json.loads((world.testset_dir / level / "meta.json").read_text())["eval_set_digest"]
        assert {r["eval_set_digest"] for r in table if r["eval_set"] == level} == {digest}
    assert len(table) == 2 * 6 * 3  # levels x documents x metrics
    assert set(summary["levels"]) == {"A1", "B1"}
    # the trained model beats the unigram baseline on infill perplexity (both token-weighted)
    base_ctx = _ctx(tmp_path / "b", {"train_level": "all"},
                    {"prepare": world.prepare_dir, "testset": world.testset_dir,
                     "tokenizer": world.tokenizer_dir}, stage="baseline")
    base = baseline_stage(base_ctx)
    for level in ("A1", "B1"):
        assert summary["levels"][level]["infill_ppl"] < base["levels"][level]["infill_ppl"]


def test_baseline_stage_uses_only_the_arm_level(world, tmp_path):
    inputs = {"prepare": world.prepare_dir, "testset": world.testset_dir,
              "tokenizer": world.tokenizer_dir}
    all_ = baseline_stage(_ctx(tmp_path / "all", {"train_level": "all"}, inputs,
                                stage="baseline"))
    a1 = baseline_stage(_ctx(tmp_path / "a1", {"train_level": "A1"}, inputs, stage="baseline"))
    assert all_["n_train_texts"] == 60 and a1["n_train_texts"] == 30
    rows = pq.read_table(tmp_path / "a1" / "out" / "item_scores.parquet").to_pylist()
    assert {r["system"] for r in rows} == {"unigram"}
    assert {r["metric"] for r in rows} == {m.name for m in METRICS}
    with pytest.raises(StageError, match="no training texts"):
        baseline_stage(_ctx(tmp_path / "c2", {"train_level": "C2"}, inputs, stage="baseline"))


def test_blank_syntax():
    ctx, kinds = to_context("She _ to school every _ . [sentence] A snake_case name.")
    assert kinds == ["word", "word", "sentence"]
    # the space before a blank goes with the answer, as in the training examples
    assert ctx == ("She<|blank_word|> to school every<|blank_word|> .<|blank_sentence|> "
                   "A snake_case name.")
    assert to_context("<|blank_ngram|> went home")[1] == ["ngram"]
    assert to_context("no blanks here")[1] == []


def test_infill_fills_every_blank(trained):
    text = "She _ to school every _ ."
    outs = infill(trained.out, text, temperature=1.0, top_k=20, top_p=0.95, n=3, seed=1,
                  max_new_tokens=20)
    assert len(outs) == 3
    for out in outs:
        assert "<|" not in out and "_" not in out
        assert out.startswith("She") and " to school every" in out and out.endswith(" .")
    # seeded: the same call gives the same samples
    assert infill(trained.out, text, temperature=1.0, n=3, seed=1, max_new_tokens=20) == \
        infill(trained.out, text, temperature=1.0, n=3, seed=1, max_new_tokens=20)
    # the answers are in the text, in order
    (filled, answers), = infill_with_answers(trained.out / "model", text, temperature=0,
                                             max_new_tokens=20)
    assert len(answers) == 2
    assert filled == "She" + answers[0] + " to school every" + answers[1] + " ."


def test_infill_errors(trained, tmp_path):
    with pytest.raises(ValueError, match="no blanks"):
        infill(trained.out, "nothing to fill")
    with pytest.raises(ValueError, match="does not exist"):
        infill(tmp_path / "missing", "She _ .")


def test_train_stage_resumes_from_its_checkpoint_dir(world, tmp_path):
    """Kill the stage mid-run (the progress call raises), run it again with the same
    checkpoint_dir: it continues from the checkpoint and ends with the straight run's losses."""
    params = {"model": {"n_layer": 1, "n_embd": 16, "n_head": 2, "n_positions": 64,
                        "dropout": 0.1},
              "train": {"steps": 8, "micro_batch": 16, "checkpoint_every": 4, "eval_every": 0}}
    inputs = {"examples": world.examples_dir, "tokenizer": world.tokenizer_dir}

    def losses(ctx):
        rows = [json.loads(x) for x in (ctx.out / "train_log.jsonl").read_text().splitlines()]
        return [r["loss"] for r in rows if r["kind"] == "step"]

    straight = _ctx(tmp_path / "a", params, inputs, seed=3)
    train_stage(straight)

    class Killed(Exception):
        pass

    killed = _ctx(tmp_path / "b", params, inputs, seed=3)

    def die_at_5(done, total=None, unit="it", message=""):
        if done == 5:
            raise Killed
    killed.on_progress = die_at_5
    with pytest.raises(Killed):
        train_stage(killed)
    again = _ctx(tmp_path / "b", params, inputs, seed=3)
    train_stage(again)
    assert again.progress_calls[0][0] == 5  # resumed after the step-4 checkpoint
    assert losses(again) == pytest.approx(losses(straight), abs=1e-6)


def test_infill_does_not_stop_before_every_blank_is_answered(trained, tmp_path):
    """A model rigged to prefer <|endoftext|> above all (then <|end_infill|>, then one word) must
    still close every blank: eos is suppressed until then, so the word shows up in answers."""
    import torch

    from fairtrial.recipes.ilm.model import load_model, save_model
    from fairtrial.recipes.ilm.tokenizer import special_ids

    model, tok = load_model(trained.out / "model")
    ids = special_ids(tok)
    word = tok(" to", add_special_tokens=False)["input_ids"][0]
    assert word not in ids.values()
    with torch.no_grad():
        # every position's final hidden state becomes v (ln_f weight 0, bias v); logits = wte @ v
        v = torch.zeros(model.config.n_embd)
        v[0] = 1.0
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.copy_(v)
        wte = model.transformer.wte.weight
        wte[:, 0] = 0.0
        wte[ids["eos"], 0], wte[ids["end_infill"], 0], wte[word, 0] = 12.0, 10.0, 10.0
    save_model(model, tok, tmp_path / "rigged", {})
    results = infill_with_answers(tmp_path / "rigged", "She _ to _ every _ .", temperature=1.0,
                                  top_p=1.0, n=6, seed=0, max_new_tokens=30)
    answers = [a for _, row in results for a in row]
    assert len(answers) == 18
    piece = tok.decode([word]).strip()
    assert any(piece in a for a in answers)  # without suppression: eos first, all empty
