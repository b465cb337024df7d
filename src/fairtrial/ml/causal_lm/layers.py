"""Train only the upper decoder layers' trainable parameters (a LoRA adapter's, typically).

    n = train_upper_layers(peft_model, 8)     # adapters of the top 8 layers train, the rest freeze

Autograd stops at the lowest layer that holds a parameter needing a gradient, so freezing the
adapters of the lower layers cuts the backward pass through them (on SmolLM2-135M's 30 layers, the
top 8: most of the backward is skipped). peft's `layers_to_transform` does the same at wrap time
but needs the layer count and naming before wrapping; this works on any wrapped model whose
parameter names hold `.layers.<i>.` (Llama, Mistral, Qwen, SmolLM) or `.h.<i>.` (GPT-2).
"""

from __future__ import annotations

import re

from fairtrial.ml.hub import ModelError

_LAYER = re.compile(r"\.(?:layers|h|blocks)\.(\d+)\.")


def layer_of(name: str) -> int | None:
    m = _LAYER.search("." + name)
    return int(m.group(1)) if m else None


def train_upper_layers(model, n: int) -> int:
    """Freeze every trainable parameter outside the top `n` decoder layers (parameters outside any
    layer, e.g. a trained lm_head, stay as they were). Returns the number of layers the model has.
    ModelError when no parameter name shows a layer index or n is out of range."""
    layers = [layer_of(name) for name, _ in model.named_parameters()]
    found = sorted({i for i in layers if i is not None})
    if not found:
        raise ModelError("upper_layers: no parameter name holds a layer index (.layers.<i>.); "
                         "this model's layers cannot be told apart")
    total = found[-1] + 1
    if not 1 <= n <= total:
        raise ModelError(f"upper_layers = {n}: the model has {total} layers; give 1 to {total}")
    lowest = total - n
    for (name, p), i in zip(model.named_parameters(), layers):
        if i is not None and i < lowest and p.requires_grad:
            p.requires_grad_(False)
    return total
