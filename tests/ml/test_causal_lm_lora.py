"""fairtrial.ml.causal_lm.lora on tiny from-scratch models: targets, seeded init, and the merge
rule (never into a quantised base). The real-model path is in test_causal_lm_smollm2.py."""

from __future__ import annotations

import pytest
import torch

from fairtrial.ml.causal_lm.lora import (LLAMA_STYLE_TARGETS, LoraSpec, QuantizedBaseError,
                                         add_lora, default_targets, merge)
from fairtrial.ml.causal_lm.model import build_causal_lm, is_quantized, parameter_counts
from fairtrial.ml.hub import ModelError

LLAMA = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64,
         "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "vocab_size": 128, "max_position_embeddings": 64}
GPT2 = {"model_type": "gpt2", "n_embd": 32, "n_layer": 2, "n_head": 4, "vocab_size": 128,
        "n_positions": 64, "bos_token_id": None, "eos_token_id": None}
X = torch.tensor([[5, 6, 7, 8, 9]])


def test_default_targets_by_family():
    assert default_targets(build_causal_lm(LLAMA)) == LLAMA_STYLE_TARGETS
    assert default_targets(build_causal_lm(GPT2)) == ("c_attn",)  # peft's default for GPT-2


def test_a_target_typo_lists_the_models_modules():
    with pytest.raises(ModelError, match=r"no module named qproj; it has .*q_proj"):
        add_lora(build_causal_lm(LLAMA), LoraSpec(targets=("qproj",)))
    with pytest.raises(ModelError, match="lora.r"):
        LoraSpec(r=0)


def test_the_adapter_starts_at_the_base_and_its_init_is_seeded():
    base_logits = build_causal_lm(LLAMA).eval()(X).logits
    a, b, c = (add_lora(build_causal_lm(LLAMA), seed=s).eval() for s in (0, 0, 1))
    torch.testing.assert_close(a(X).logits, base_logits, atol=0, rtol=0)  # B starts at zero
    A = [m.base_model.model.model.layers[0].self_attn.q_proj.lora_A["default"].weight
         for m in (a, b, c)]
    assert torch.equal(A[0], A[1]) and not torch.equal(A[0], A[2])
    total, trainable = parameter_counts(a)
    assert trainable == 2 * 8 * ((32 + 32) * 2 + (32 + 16) * 2)  # 2 layers, q,o 32->32, k,v 32->16
    assert total == parameter_counts(build_causal_lm(LLAMA))[0] + trainable


def _trained(model):
    """Give the adapter a non-zero update, as training would."""
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    return model.eval()


def test_merge_folds_the_adapter_into_a_float_base():
    model = _trained(add_lora(build_causal_lm(LLAMA), LoraSpec(dropout=0.0)))
    with torch.no_grad():
        expected = model(X).logits
        merged = merge(model)
        assert not any("lora" in n for n, _ in merged.named_modules())
        torch.testing.assert_close(merged(X).logits, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("how", ["quantization_config", "integer_weights"])
def test_merge_refuses_a_quantised_base(how):
    model = _trained(add_lora(build_causal_lm(LLAMA)))
    base = model.get_base_model()
    assert not is_quantized(model)
    if how == "quantization_config":  # how transformers marks a bitsandbytes / GPTQ / AWQ model
        base.config.quantization_config = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    else:  # packed integer weights in place of a float matrix
        mlp = base.model.layers[0].mlp
        mlp.up_proj.weight = torch.nn.Parameter(
            torch.zeros_like(mlp.up_proj.weight, dtype=torch.int8), requires_grad=False)
    assert is_quantized(model)
    with pytest.raises(QuantizedBaseError, match="refusing to merge a LoRA adapter into a "
                                                 "quantised base model"):
        merge(model)
    assert any("lora" in n for n, _ in model.named_modules())  # nothing was merged
