"""The merge check (`fairtrial.ml.causal_lm.merge_check`) on a tiny from-scratch Llama with a
LoRA adapter given a non-zero update: quiet on a clean merge, firing on a merge with the adapter
scaled and on merges into weights rounded to 8 and 4 bits; the refusal to merge into a quantised
base unless forced, and then flagged."""

from __future__ import annotations

import pytest
import torch

from fairtrial.ml.causal_lm.lora import LoraSpec, QuantizedBaseError, add_lora, merge
from fairtrial.ml.causal_lm.merge_check import (
    MAX_MEAN_KL,
    MIN_TOP1_AGREEMENT,
    compare,
    merge_and_check,
    next_token_logprobs,
)
from fairtrial.ml.causal_lm.model import build_causal_lm
from fairtrial.ml.hub import ModelError

# initializer_range 0.2 (not 0.02): peaked next-token distributions, like a trained model's
LLAMA = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
         "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "vocab_size": 256, "max_position_embeddings": 64, "initializer_range": 0.2}
G = torch.Generator().manual_seed(0)
PROMPTS = [torch.randint(0, 256, (int(n),), generator=G).tolist()
           for n in torch.randint(4, 16, (64,), generator=G)]


def adapted(seed: int = 0):
    """A LoRA adapter with a real (non-zero) update, as after training."""
    model = add_lora(build_causal_lm(LLAMA, seed=seed), LoraSpec(r=8, alpha=16, dropout=0.0),
                     seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


def round_base(model, bits: int) -> None:
    """Round the base's linear weights to a symmetric per-row integer grid (what a quantised
    copy holds), leaving the adapter as it is."""
    levels = 2 ** (bits - 1) - 1
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_" not in n and p.ndim == 2 and "embed" not in n:
                step = p.abs().amax(dim=1, keepdim=True) / levels
                p.copy_(torch.round(p / step) * step)


def test_a_clean_merge_passes():
    model = adapted()
    base_only = next_token_logprobs(build_causal_lm(LLAMA, seed=0), None, PROMPTS)
    merged, check = merge_and_check(model, None, PROMPTS)
    assert check.passed and check.n_prompts == 64 and not check.forced, check.message
    assert check.top1_agreement == 1.0 and check.mean_kl < 1e-6
    assert "passed on 64 held-out prompts" in check.message
    # how far the adapter moved the base is measured: the check could see a lost update
    assert check.adapter_mean_kl > MAX_MEAN_KL and check.relative_kl < 1e-4
    assert check.adapter_mean_kl == pytest.approx(
        compare(next_token_logprobs(merged, None, PROMPTS), base_only).mean_kl, rel=1e-3)
    assert not any("lora" in n for n, _ in merged.named_modules())


def test_a_merge_with_the_adapter_scaled_fails():
    model = adapted()
    before = next_token_logprobs(model, None, PROMPTS)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.mul_(2.0)  # e.g. alpha / r applied twice
    check = compare(before, next_token_logprobs(merge(model), None, PROMPTS))
    assert not check.passed and check.mean_kl > MAX_MEAN_KL, check.message
    print(check.message)


@pytest.mark.parametrize("bits", [8, 4])
def test_a_merge_into_a_rounded_copy_fails(bits):
    model = adapted()
    before = next_token_logprobs(model, None, PROMPTS)
    round_base(model, bits)  # the adapter trained on float weights, merged into a rounded copy
    check = compare(before, next_token_logprobs(merge(model), None, PROMPTS))
    print(f"{bits}-bit: {check.message}")
    assert not check.passed, check.message
    if bits == 4:
        assert check.top1_agreement < MIN_TOP1_AGREEMENT


def test_a_quantised_base_is_refused_unless_forced_and_then_flagged():
    model = adapted()
    model.get_base_model().config.quantization_config = {"quant_method": "bitsandbytes",
                                                         "load_in_4bit": True}
    with pytest.raises(QuantizedBaseError, match="refusing to merge"):
        merge_and_check(model, None, PROMPTS)
    assert any("lora" in n for n, _ in model.named_modules())  # nothing merged
    _, check = merge_and_check(model, None, PROMPTS, force=True)
    assert check.forced and "QUANTISED base (forced)" in check.message
    assert check.to_dict()["forced"] is True


def test_the_relative_bound_catches_a_small_update_merged_into_rounded_weights():
    """Inside both absolute bounds, but the merge's error is larger than the adapter's change."""
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(64, 256, generator=g) * 10  # peaked, as a trained model's
    base = torch.log_softmax(logits, -1)
    adapter = torch.log_softmax(logits + 0.02 * torch.randn(64, 256, generator=g), -1)
    merged = torch.log_softmax(logits + 0.05 * torch.randn(64, 256, generator=g), -1)
    absolute = compare(adapter, merged)
    assert absolute.passed and absolute.relative_kl is None
    check = compare(adapter, merged, base=base)
    assert check.mean_kl < MAX_MEAN_KL and check.top1_agreement >= MIN_TOP1_AGREEMENT
    assert check.relative_kl > 1 and not check.passed, check.message
    assert "the merge's error is" in check.message
    assert compare(adapter, merged, base=base, max_relative_kl=None).passed  # the bound is off


def test_thresholds_and_bad_input():
    model = adapted()
    before = next_token_logprobs(model, None, PROMPTS)
    assert compare(before, before).passed
    # left padding in batches computes what each prompt alone computes
    alone = next_token_logprobs(model, None, PROMPTS, batch_size=1)
    torch.testing.assert_close(before, alone, atol=1e-5, rtol=1e-5)
    strict = compare(before, before + 0.0, max_mean_kl=0.0, min_top1_agreement=1.0)
    assert strict.passed and strict.mean_kl == 0.0
    with pytest.raises(ModelError, match="10 held-out prompts given, at least 64"):
        next_token_logprobs(model, None, PROMPTS[:10])
    with pytest.raises(ModelError, match="different prompts or vocabularies"):
        compare(before, before[:10])
    with pytest.raises(ModelError, match="different prompts or vocabularies"):
        compare(before, before, base=before[:3])
    with pytest.raises(ModelError, match="min_top1_agreement must be in"):
        compare(before, before, min_top1_agreement=2)


def test_int8_dynamic_quantisation_is_smaller_and_measured_by_the_same_check(tmp_path):
    from fairtrial.ml.causal_lm.quantize import (
        load_quantized,
        quantize_int8,
        save_quantized,
        size_on_disk,
    )

    merged = merge(adapted())
    q = quantize_int8(merged)
    assert "DynamicQuantizedLinear" in repr(q) and "DynamicQuantized" not in repr(merged)
    float_bytes = tmp_path / "float.pt"
    torch.save(merged.state_dict(), float_bytes)
    size = save_quantized(q, tmp_path / "q")
    assert size == size_on_disk(tmp_path / "q") < size_on_disk(float_bytes)
    before = next_token_logprobs(merged, None, PROMPTS)
    check = compare(before, next_token_logprobs(q, None, PROMPTS))
    print(f"int8 dynamic: {size} vs {size_on_disk(float_bytes)} bytes; {check.message}")
    assert check.mean_kl > 0  # it does change the model, by a measured amount
    again = load_quantized(merged, tmp_path / "q")
    assert torch.equal(next_token_logprobs(again, None, PROMPTS),
                       next_token_logprobs(q, None, PROMPTS))
    with pytest.raises(ModelError, match="holds no model_int8.pt"):
        load_quantized(merged, tmp_path)


@pytest.mark.skipif(not __import__("os").environ.get("FAIRTRIAL_SMOLLM2_MERGE"),
                    reason="SmolLM2-135M merge measurement (~1 min): set FAIRTRIAL_SMOLLM2_MERGE=1")
def test_smollm2_clean_and_rounded_merges(tmp_path):
    """The same check on SmolLM2-135M-Instruct with 64 GSM8K test questions as held-out chat
    prompts: clean merge vs merges into copies rounded to 8 and 4 bits (printed; -s to see)."""
    import json
    from pathlib import Path

    from fairtrial.ml.causal_lm.model import load_causal_lm

    data = Path(__file__).resolve().parents[2].parent / "shared/data/gsm8k/test.jsonl"
    prompts = [[{"role": "user", "content": json.loads(line)["question"]}]
               for line in data.read_text().splitlines()[:64]]
    model, tok = load_causal_lm("smollm2-135m")
    base = next_token_logprobs(model, tok, prompts)
    peft = add_lora(model, LoraSpec(r=8, alpha=16, dropout=0.0), seed=0)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for n, p in peft.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.01)  # a small update
    peft.eval()
    before = next_token_logprobs(peft, tok, prompts)
    adapter_effect = compare(base, before)
    print(f"SmolLM2 base vs base+adapter: {adapter_effect.message}")
    state = {k: v.clone() for k, v in peft.state_dict().items()}
    results = {}
    for bits in (None, 8, 4):
        peft.load_state_dict(state)
        if bits:
            round_base(peft, bits)
        merged = merge(peft)  # in place; the next round restores the weights from `state`
        results[bits] = compare(before, next_token_logprobs(merged, tok, prompts), base=base)
        print(f"SmolLM2 merge into {'float32' if bits is None else f'{bits}-bit'} weights: "
              f"{results[bits].message}")
        peft = add_lora(merged, LoraSpec(r=8, alpha=16, dropout=0.0), seed=0).eval()
    assert adapter_effect.mean_kl > 1e-4  # the adapter changes the model
    assert results[None].passed and not results[8].passed and not results[4].passed
