"""The instruction-following difficulty score on a tiny random model: the ratio of the response's
losses with and without the prompt, equal to a direct computation and independent of batching."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny():
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import LlamaConfig, PreTrainedTokenizerFast

    from fairtrial.ml.causal_lm.model import build_causal_lm

    words = ["<pad>", "<unk>", "<u>", "<a>", "what", "is", "two", "plus", "three", "five", "four", "the", "sky", "blue", "green"]
    tk = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tk.pre_tokenizer = Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", unk_token="<unk>")
    tok.chat_template = "{% for m in messages %}<u> {{ m['content'] }} {% endfor %}<a>"
    cfg = LlamaConfig(vocab_size=len(words), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
    return build_causal_lm(cfg, seed=0), tok


def _direct(model, ids, start):
    logits = model(input_ids=torch.tensor([ids])).logits[0, :-1]
    nll = torch.nn.functional.cross_entropy(logits.float(), torch.tensor(ids[1:]), reduction="none")
    return float(nll[start - 1:].double().mean())


def test_ifd_matches_direct_computation_and_batching(tiny):
    from fairtrial.recipes.curate.ifd import _template, ifd_scores

    model, tok = tiny
    prompts = ["what is two plus three", "the sky", "what is", "two plus two plus two plus two"]
    responses = ["five", "blue green blue", "the sky is blue", "four"]
    c1, u1, _ = ifd_scores(model, tok, prompts, responses, batch_size=1)
    c4, u4, r4 = ifd_scores(model, tok, prompts, responses, batch_size=8)
    np.testing.assert_allclose(c1, c4, rtol=1e-5)   # right padding changes nothing
    np.testing.assert_allclose(u1, u4, rtol=1e-5)
    np.testing.assert_allclose(r4, c4 / u4)
    with torch.no_grad():
        for k, (p, r) in enumerate(zip(prompts, responses)):
            resp = tok(r, add_special_tokens=False)["input_ids"]
            head, empty = _template(tok, p), _template(tok, "")
            assert c4[k] == pytest.approx(_direct(model, head + resp, len(head)), rel=1e-5)
            assert u4[k] == pytest.approx(_direct(model, empty + resp, len(empty)), rel=1e-5)
    assert np.all(np.isfinite(r4)) and np.all(r4 > 0)


def test_ifd_empty_response_is_nan(tiny):
    from fairtrial.recipes.curate.ifd import ifd_scores

    model, tok = tiny
    _, _, r = ifd_scores(model, tok, ["the sky"], [""])
    assert np.isnan(r[0])


def test_quality_stage_scores_and_removes_by_ifd(tiny, tmp_path):
    import json

    import pyarrow.parquet as pq

    from fairtrial.recipes.curate import RECIPE
    from fairtrial.recipes.testing import StageRunner

    model, tok = tiny
    folder = tmp_path / "tiny"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    src = tmp_path / "a.jsonl"
    src.write_text("".join(json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in [
        ("what is two plus three", "five."), ("the sky is what", "blue."), ("what is two plus two", "four.")]))
    run = StageRunner(RECIPE, tmp_path / "run", {
        "sources": [{"name": "s", "path": str(src), "format": "instruction", "prompt_field": "prompt",
                     "response_field": "completion"}],
        "quality": {"ifd": True, "ifd_model": str(folder), "max_ifd": 1e-9}})
    run.upto("quality")
    t = pq.read_table(run.dirs["quality"] / "verdicts.parquet").to_pylist()
    assert all(r["ifd"] > 0 and r["ifd"] == pytest.approx(r["loss_with_prompt"] / r["loss_without_prompt"])
               for r in t)
    funnel = json.loads((run.dirs["quality"] / "funnel.json").read_text())
    assert funnel["removed"] == {"ifd": {"s": 3}}
