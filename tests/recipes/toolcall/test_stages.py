"""The toolcall stages end to end on a tiny chat model (seconds), through the recipe harness."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _fixtures import HERMES, SLM, tiny_model

from fairtrial.recipes.api import StageError
from fairtrial.recipes.testing import StageRunner
from fairtrial.recipes.toolcall import RECIPE
from fairtrial.scores import read_item_scores

pytestmark = pytest.mark.skipif(not SLM.exists(), reason="shared data not at hand")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def _params(tiny, **over):
    p = {"model": str(tiny),
         "data": {"toolcall": str(SLM / "toolcall"), "structured": str(SLM / "structured"),
                  "max_train": 8, "max_eval": 6},
         "prompt": {"max_len": 1024},
         "train": {"steps": 3, "micro_batch": 2, "lr": 1e-3, "checkpoint_every": 2,
                   "upper_layers": 1},
         "generate": {"max_new_tokens": 8, "batch_size": 4}}
    for k, v in over.items():
        p[k] = {**p[k], **v} if isinstance(v, dict) and isinstance(p.get(k), dict) else v
    return p


def test_chain_scores_every_eval_item_of_both_tracks(tiny, tmp_path):
    run = StageRunner(RECIPE, tmp_path, _params(tiny), seed=0)
    run.upto("score")
    run.run("baseline")
    gate = json.loads((run.dirs["render"] / "gate.json").read_text())
    assert gate["passed"] and gate["n_train"] == 16 and gate["supervised_tokens"]["min"] >= 1
    info = json.loads((run.dirs["train"] / "train.json").read_text())
    assert info["adapter"] and info["layers"] == 2
    assert (run.dirs["train"] / "adapter" / "adapter_config.json").is_file()
    t = read_item_scores(run.dirs["score"] / "item_scores.parquet").to_pandas()
    assert set(t["eval_set"]) == {"toolcall", "structured"}
    for track, endpoint in (("toolcall", "args_f1"), ("structured", "field_f1")):
        rows = t[(t.eval_set == track) & (t.metric == endpoint)]
        assert len(rows) == 6 and rows["item_id"].is_unique
        assert {endpoint + "_tolerant", "repairs"} <= set(t[t.eval_set == track]["metric"])
    b = read_item_scores(run.dirs["baseline"] / "item_scores.parquet").to_pandas()
    assert set(b["system"]) == {"name_only", "copy_prompt"}
    # the baselines cover exactly the items the model was scored on, with the same digest
    for track in ("toolcall", "structured"):
        mine = t[(t.eval_set == track) & (t.metric == "exact_match")]
        theirs = b[(b.eval_set == track) & (b.metric == "exact_match")]
        assert sorted(mine.item_id) == sorted(theirs.item_id)
        assert set(mine.eval_set_digest) == set(theirs.eval_set_digest)
    titles = [s["title"] for s in RECIPE.report_sections(run.dirs, run.params)]
    assert titles == ["Strict and tolerant parsing", "Error types"]
    got = RECIPE.integrity(run.dirs, run.params)
    assert len(got["train_texts"]) == 16 and set(got["eval_texts"]) == {"toolcall", "structured"}
    outputs = [json.loads(x) for x in (run.dirs["generate"] / "outputs.jsonl").read_text()
               .splitlines()]
    assert len(outputs) == 12 and all("seconds" in o and "new_tokens" in o for o in outputs)


def test_prompt_only_arm_trains_nothing(tiny, tmp_path):
    run = StageRunner(RECIPE, tmp_path, _params(tiny, train={"adapter": False},
                                                prompt={"prefix": "cep"}), seed=0)
    run.upto("train")
    assert not (run.dirs["train"] / "adapter").exists()
    ev = [json.loads(x) for x in (run.dirs["render"] / "eval.jsonl").read_text().splitlines()]
    assert ev[0]["messages"][-1]["content"].startswith("Output rules:")


def test_hermes_completions_on_the_wrapper_track_are_stopped_by_the_gate(tiny, tmp_path):
    data = {"toolcall": {"path": str(HERMES), "format": "hermes-fc",
                         "eval_path": str(SLM / "toolcall"), "eval_format": "slm-swap"},
            "structured": None, "max_train": 5, "max_eval": 3}
    run = StageRunner(RECIPE, tmp_path, _params(tiny, data=data), seed=0)
    run.run("model")
    run.run("prepare")
    gate = (r"format gate failed: 55 of 55 training and validation completions are not in "
            r"their track's format \(e\.g\. .*train\.jsonl:1")
    with pytest.raises(StageError, match=gate):
        run.run("render")
    assert not any((tmp_path).rglob("examples.npz"))
    allowed = StageRunner(RECIPE, tmp_path / "b",
                          _params(tiny, data=data, prompt={"allow_format_mismatch": True}), seed=0)
    allowed.upto("render")
    sections = RECIPE.report_sections(allowed.dirs, allowed.params)
    assert sections[0]["title"].startswith("Integrity: format gate failed")
    assert "55 of 55 training and validation completions" in sections[0]["text"]


def test_missing_chat_template_is_a_clear_error(tmp_path):
    folder = tiny_model(tmp_path / "plain", template=False)
    run = StageRunner(RECIPE, tmp_path / "run", _params(folder), seed=0)
    with pytest.raises(StageError, match="has no chat template"):
        run.run("model")


def test_unknown_lora_target_names_the_modules_that_exist(tiny, tmp_path):
    run = StageRunner(RECIPE, tmp_path, _params(tiny, train={"targets": ["qkv"]}), seed=0)
    run.upto("render")
    with pytest.raises(StageError, match=r"no module named qkv; it has .*q_proj"):
        run.run("train")


def test_unknown_prefix_is_refused_with_the_known_ones(tiny, tmp_path):
    with pytest.raises(Exception, match=r'unknown prefix "cpe"; built-in prefixes: none, cep'):
        StageRunner(RECIPE, tmp_path, _params(tiny, prompt={"prefix": "cpe"}))


def test_eval_reference_outside_the_track_format_names_file_and_line(tiny, tmp_path):
    data = {"structured": {"path": str(SLM / "structured")}, "toolcall": None,
            "eval_file": "eval100"}
    run = StageRunner(RECIPE, tmp_path, _params(tiny, data=data), seed=0)
    with pytest.raises(StageError, match=r"eval100\.jsonl:1: the reference completion is not in "
                                         r"the structured track's format"):
        run.run("prepare")


def test_loss_mask_covers_exactly_the_completion_and_end_of_turn(tiny):
    import numpy as np

    from fairtrial.ml.causal_lm.model import load_tokenizer
    from fairtrial.recipes.toolcall.params import PromptParams
    from fairtrial.ml.causal_lm.chat import COMPLETION, assistant_header, example, kinds_fn
    from fairtrial.recipes.toolcall.render import prompt_text

    tok = load_tokenizer(str(tiny))
    item = {"prompt": "Request: weather?", "system": "",
            "completion": '<tool_call name="w">{"city": "Paris"}</tool_call>'}
    ids, plen = example(tok, prompt_text(tok, item, PromptParams()), item["completion"])
    kinds = kinds_fn(assistant_header(tok))(ids)
    n_completion = len(tok(item["completion"], add_special_tokens=False)["input_ids"]) + 1
    assert int((kinds == COMPLETION).sum()) == n_completion == len(ids) - plen
    assert np.all(kinds[:plen - 1] != COMPLETION)
    cut = kinds_fn(assistant_header(tok))(ids[:plen - 2])      # cut inside the prompt
    assert not np.any(cut == COMPLETION)


def test_train_resumes_to_the_straight_runs_losses(tiny, tmp_path):
    from fairtrial.recipes.testing import kill_at

    over = {"train": {"steps": 4, "checkpoint_every": 2}}
    straight = StageRunner(RECIPE, tmp_path / "a", _params(tiny, **over), seed=1)
    straight.upto("train")
    resumed = StageRunner(RECIPE, tmp_path / "b", _params(tiny, **over), seed=1)
    resumed.upto("render")
    with pytest.raises(KeyboardInterrupt):
        resumed.run("train", on_progress=kill_at(3, "step"))
    resumed.run("train")

    def losses(run):
        return [json.loads(x)["loss"] for x in
                (run.dirs["train"] / "train_log.jsonl").read_text().splitlines()]

    assert losses(resumed) == pytest.approx(losses(straight), abs=1e-6)
    assert len(losses(straight)) == 4


def test_quantised_base_is_refused_unless_allowed(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr("fairtrial.ml.causal_lm.sft.is_quantized", lambda model: True)
    run = StageRunner(RECIPE, tmp_path, _params(tiny), seed=0)
    run.upto("render")
    with pytest.raises(StageError, match="is quantised.*model.allow_quantized = true"):
        run.run("train")
    allowed = StageRunner(RECIPE, tmp_path / "b",
                          _params(tiny, model={"name": str(tiny), "allow_quantized": True}), seed=0)
    allowed.upto("train")
    assert json.loads((allowed.dirs["train"] / "train.json").read_text())["quantized_base"]
    titles = [s["title"] for s in RECIPE.report_sections(allowed.dirs, allowed.params)]
    assert titles == ["Integrity: quantised base"]


def test_eval100_requests_are_all_training_requests_and_the_report_says_so(tiny, tmp_path):
    from fairtrial.analysis import AnalysisContext
    from fairtrial.analysis.integrity import check_overlap

    data = {"toolcall": str(SLM / "toolcall"), "structured": None, "eval_file": "eval100",
            "max_train": None, "max_eval": None}
    run = StageRunner(RECIPE, tmp_path, _params(tiny, data=data), seed=0)
    run.run("prepare")
    run.dirs["train"] = tmp_path / "none"        # no train artifact yet: counted as trained
    got = RECIPE.integrity({"prepare": run.dirs["prepare"]}, run.params)
    found = check_overlap(AnalysisContext(train_texts={"lora": got["train_texts"]},
                                          eval_texts=got["eval_texts"]))
    exact = [f for f in found if f.details["kind"] == "exact"]
    assert len(exact) == 1 and exact[0].details["n"] == 100 and exact[0].severity == "error"
    # the default eval file (test.jsonl) shares no request with train.jsonl
    data = {"structured": None, "max_train": None, "max_eval": None}
    clean = StageRunner(RECIPE, tmp_path / "b", _params(tiny, data=data), seed=0)
    clean.run("prepare")
    got = RECIPE.integrity({"prepare": clean.dirs["prepare"]}, clean.params)
    assert not check_overlap(AnalysisContext(train_texts={"lora": got["train_texts"]},
                                             eval_texts=got["eval_texts"]))


def test_batched_with_shared_prefix_equals_one_at_a_time(tiny):
    """Batched generation gives the one-at-a-time texts: length-sorted batches, left padding and
    the shared-prefix KV cache (`share_prefix`) change speed, not outputs (greedy)."""
    import torch

    from fairtrial.ml.causal_lm import generate as G
    from fairtrial.ml.causal_lm.model import load_causal_lm

    torch.set_num_threads(1)
    model, tok = load_causal_lm(str(tiny))
    rows = [json.loads(x) for x in (SLM / "toolcall" / "test.jsonl").read_text().splitlines()][:7]
    system = {"role": "system", "content": "Answer with one tool call."}
    prompts = [[system, {"role": "user", "content": r["prompt"]}] for r in rows]
    prompts.append("Query: plain text, no template")  # no shared prefix with the others
    kw = {"max_new_tokens": 6, "stop": ["</tool_call>"]}
    single = [G.generate(model, tok, [p], batch_size=1, **kw)[0] for p in prompts]
    shared = G.generate(model, tok, prompts, batch_size=4, **kw)
    plain = G.generate(model, tok, prompts, batch_size=4, share_prefix=False, **kw)
    assert shared == single and plain == single
    assert any(single)  # the tiny model does say something
    # the chat prompts do share their first tokens, and the batch order is by length
    enc = [tok(G.render(tok, p)[0], add_special_tokens=False)["input_ids"] for p in prompts[:7]]
    assert G._shared(enc) >= G.MIN_SHARED
    assert G._shared([[1] * 20, [2] * 20]) == 0
    assert G._shared([[5] * 10, [5] * 10]) == 9  # every row keeps one token of its own
