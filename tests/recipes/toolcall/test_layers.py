"""`fairtrial.ml.causal_lm.layers.train_upper_layers` (written for this recipe's `train.upper_layers`;
tested here, beside its only user)."""

from __future__ import annotations

import pytest

from fairtrial.ml.causal_lm.layers import layer_of, train_upper_layers
from fairtrial.ml.hub import ModelError


def _lora_model(n_layers: int):
    from fairtrial.ml.causal_lm.lora import add_lora
    from fairtrial.ml.causal_lm.model import build_causal_lm

    base = build_causal_lm({"model_type": "llama", "hidden_size": 16, "intermediate_size": 32,
                            "num_hidden_layers": n_layers, "num_attention_heads": 2,
                            "num_key_value_heads": 2, "vocab_size": 64}, seed=0)
    return add_lora(base, seed=0)


def test_only_the_top_layers_adapters_train_and_the_backward_stops_there():
    import torch

    model = _lora_model(4)
    assert train_upper_layers(model, 1) == 4
    trainable = {layer_of(n) for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {3}
    x = torch.randint(0, 64, (2, 8))
    model(input_ids=x, labels=x).loss.backward()
    grads = {layer_of(n) for n, p in model.named_parameters() if p.grad is not None}
    assert grads == {3}


def test_out_of_range_is_a_clear_error():
    with pytest.raises(ModelError, match="the model has 2 layers; give 1 to 2"):
        train_upper_layers(_lora_model(2), 3)


def test_layer_index_from_names():
    assert layer_of("base_model.model.model.layers.12.self_attn.q_proj.lora_A.default.weight") == 12
    assert layer_of("transformer.h.3.attn.c_attn.weight") == 3
    assert layer_of("lm_head.weight") is None
