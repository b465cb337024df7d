"""The decoding loop of `fairtrial.ml.causal_lm.generate` against transformers' own `generate`:
greedy outputs equal row by row while finished rows leave the batch, stop strings cut the same,
sampling is seeded and follows transformers' warpers (top-p near 0 is greedy)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes" / "toolcall"))
from _fixtures import SLM, tiny_model  # noqa: E402

pytestmark = pytest.mark.skipif(not SLM.exists(), reason="shared data not at hand")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import torch

    from fairtrial.ml.causal_lm.model import load_causal_lm

    torch.set_num_threads(1)
    model, tok = load_causal_lm(str(tiny_model(tmp_path_factory.mktemp("tiny") / "model")))
    rows = [json.loads(x) for x in (SLM / "toolcall" / "test.jsonl").read_text().splitlines()][:7]
    system = {"role": "system", "content": "Answer with one tool call."}
    prompts = [[system, {"role": "user", "content": r["prompt"]}] for r in rows]
    prompts.append("Query: plain text, no template")
    return model, tok, prompts


def _reference(model, tok, prompt, *, eos, max_new_tokens, stop=()):
    """transformers' `generate` on one prompt alone (no padding), greedy, the same eos ids."""
    import torch
    from transformers import GenerationConfig

    from fairtrial.ml.causal_lm import generate as G

    text, chat = G.render(tok, prompt)
    ids = torch.tensor([tok(text, add_special_tokens=not chat)["input_ids"]])
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos,
                              pad_token_id=tok.pad_token_id, stop_strings=list(stop) or None)
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                             generation_config=config, tokenizer=tok if stop else None)
    return G._cut(tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True), list(stop))


def test_decoder_equals_transformers_generate(tiny):
    """Greedy, batches of 4 with rows that stop at different steps (a frequent token made an
    eos token, so the dropping of finished rows is exercised), with and without stop strings."""
    from fairtrial.ml.causal_lm import generate as G

    model, tok, prompts = tiny
    # the random tiny model rarely says <|im_end|>: make a token it does say mid-answer an eos
    probe = G.generate(model, tok, prompts, max_new_tokens=12, batch_size=4)
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in probe]
    firsts = {}
    for row in ids:
        for j, t in enumerate(row[:8]):
            firsts.setdefault(t, set()).add(j)
    frequent = max(firsts, key=lambda t: (len(firsts[t]), -t))
    old = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = [tok.eos_token_id, frequent]
    try:
        eos = G._eos_ids(model, tok)
        for stop in ((), ("</tool_call>", "\n")):
            ours = G.generate(model, tok, prompts, max_new_tokens=12, batch_size=4, stop=stop)
            ref = [_reference(model, tok, p, eos=eos, max_new_tokens=12, stop=stop)
                   for p in prompts]
            assert ours == ref, stop
        lengths = {len(tok(t, add_special_tokens=False)["input_ids"]) for t in
                   G.generate(model, tok, prompts, max_new_tokens=12, batch_size=4)}
        assert len(lengths) > 1       # rows did finish at different steps
    finally:
        model.generation_config.eos_token_id = old


def test_sampling_is_seeded_and_top_p_near_zero_is_greedy(tiny):
    from fairtrial.ml.causal_lm import generate as G

    model, tok, prompts = tiny
    kw = {"max_new_tokens": 10, "batch_size": 4}
    a = G.generate(model, tok, prompts, temperature=1.0, seed=3, **kw)
    assert a == G.generate(model, tok, prompts, temperature=1.0, seed=3, **kw)
    assert a != G.generate(model, tok, prompts, temperature=1.0, seed=4, **kw)
    greedy = G.generate(model, tok, prompts, **kw)
    assert G.generate(model, tok, prompts, temperature=1.0, top_p=1e-9, seed=5, **kw) == greedy


def test_generate_ids_suppress_and_stop_after_equal_transformers(tiny):
    """The token-id entry point with ilm's rules (ids never generated, a row done at its n-th
    occurrence of a token) gives, greedily, what transformers' `generate` gives with
    `suppress_tokens` and the same stopping criterion, each prompt alone; top_k = 1 is greedy."""
    import torch
    from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

    from fairtrial.ml.causal_lm import generate as G

    model, tok, prompts = tiny
    rows = [tok(G.render(tok, p)[0], add_special_tokens=False)["input_ids"] for p in prompts]
    eos = G._eos_ids(model, tok)
    free = G.generate_ids(model, rows, eos=eos, pad=tok.pad_token_id, max_new_tokens=12,
                          batch_size=4)
    # what the model says most (suppress it) and the next most frequent token (stop after 2)
    counts: dict[int, int] = {}
    for r in free:
        for t in r:
            counts[t] = counts.get(t, 0) + 1
    banned = [min(counts, key=lambda t: (-counts[t], t))]
    kept = G.generate_ids(model, rows, eos=eos, pad=tok.pad_token_id, max_new_tokens=12,
                          batch_size=4, suppress=banned)
    # a token some row says twice before its end: stopping after its second use cuts that row
    twice = {t for r in kept for t in r[:-1] if r[:-1].count(t) >= 2}
    marker = min(twice, key=lambda t: (-sum(r.count(t) for r in kept), t))
    ours = G.generate_ids(model, rows, eos=eos, pad=tok.pad_token_id, max_new_tokens=12,
                          batch_size=4, suppress=banned, stop_after=(marker, 2))
    assert all(banned[0] not in r for r in ours)

    class Second(StoppingCriteria):
        def __init__(self, start):
            self.start = start

        def __call__(self, input_ids, scores, **kwargs):
            return (input_ids[:, self.start:] == marker).sum(dim=1) >= 2

    for row, got in zip(rows, ours):
        ids = torch.tensor([row])
        config = GenerationConfig(max_new_tokens=12, do_sample=False, eos_token_id=eos,
                                  pad_token_id=tok.pad_token_id, suppress_tokens=banned)
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                 generation_config=config,
                                 stopping_criteria=StoppingCriteriaList([Second(len(row))]))
        ref = out[0, len(row):].tolist()
        while ref and ref[-1] == tok.pad_token_id and len(ref) > len(got):
            ref.pop()
        assert got == ref
    assert any(len(o) < len(k) for o, k in zip(ours, kept))    # the stopping rule did act
    top1 = G.generate_ids(model, rows, eos=eos, pad=tok.pad_token_id, max_new_tokens=12,
                          batch_size=4, temperature=1.0, top_k=1, seed=7)
    assert top1 == free
    with pytest.raises(ValueError, match="top_k >= 0"):
        G.generate_ids(model, rows, eos=eos, pad=tok.pad_token_id, top_k=-1)
