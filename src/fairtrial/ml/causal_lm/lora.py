"""LoRA adapters through peft: add, save, reload, merge.

    peft_model = add_lora(model, LoraSpec(r=8, alpha=16, dropout=0.05), seed=0)
    ... train (only the adapter's parameters require grad) ...
    save_adapter(peft_model, folder)                 # adapter_config.json + adapter_model.safetensors
    peft_model = load_adapter(base, folder)          # onto a freshly loaded base
    merged = merge(peft_model)                       # a plain transformers model, no peft inside

Targets. By default the attention projections: `q_proj, k_proj, v_proj, o_proj` on models that
have them (Llama, Mistral, Qwen2, SmolLM2, Gemma ...), otherwise peft's own default for the model
type (GPT-2: `c_attn`). Targets are checked against the model's modules before peft sees them,
so a typo is one line that lists the names the model has.

The merge rule. `merge` refuses a quantised base (bitsandbytes 4/8-bit, GPTQ, AWQ, packed GGUF):
adding the low-rank update to rounded weights and re-quantising rounds most of the update away
(or, for some formats, corrupts the weights), and the merged model no longer computes what the
adapter was trained and evaluated as. Load the base in float (`load_causal_lm` de-quantises a
GGUF file) and merge into that, or keep base + adapter unmerged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from fairtrial.ml.causal_lm.model import is_quantized
from fairtrial.ml.hub import ModelError

LLAMA_STYLE_TARGETS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
ADAPTER_CONFIG = "adapter_config.json"


class QuantizedBaseError(ModelError):
    """A merge into quantised weights, refused."""


@dataclass(frozen=True)
class LoraSpec:
    """LoRA's knobs; the defaults suit a Llama-style model of 0.1-8B parameters."""

    r: int = 8
    """Rank of the update B @ A."""
    alpha: float = 16
    """The update is scaled by alpha / r (alpha = 2r is the common choice)."""
    dropout: float = 0.05
    """Dropout on the adapter's input during training."""
    targets: tuple[str, ...] | None = None
    """Module names (last name component, e.g. "q_proj") to adapt; None: `default_targets`."""
    bias: Literal["none", "all", "lora_only"] = "none"
    modules_to_save: tuple[str, ...] = field(default_factory=tuple)
    """Whole modules trained and saved with the adapter (e.g. "lm_head" after resizing)."""

    def __post_init__(self):
        if self.r < 1:
            raise ModelError(f"lora.r must be at least 1, got {self.r}")
        if self.alpha <= 0:
            raise ModelError(f"lora.alpha must be positive, got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ModelError(f"lora.dropout must be in [0, 1), got {self.dropout}")


def module_names(model) -> set[str]:
    """Last name components of the model's leaf modules that LoRA can adapt (Linear, GPT-2's
    Conv1D, Embedding)."""
    kinds = ("Linear", "Conv1D", "Embedding")
    return {name.rsplit(".", 1)[-1] for name, m in model.named_modules()
            if name and type(m).__name__ in kinds}


def default_targets(model) -> tuple[str, ...]:
    """q/k/v/o projections where the model has them, else peft's default for its model type."""
    have = module_names(model)
    if set(LLAMA_STYLE_TARGETS) <= have:
        return LLAMA_STYLE_TARGETS
    from peft.utils import (
        TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_DEFAULTS,
    )

    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type in PEFT_DEFAULTS:
        return tuple(PEFT_DEFAULTS[model_type])
    raise ModelError(f"no default LoRA targets for model type {model_type!r}; set lora.targets "
                     f"to some of its modules: {', '.join(sorted(have))}")


def add_lora(model, spec: LoraSpec | None = None, *, seed: int = 0):
    """Wrap `model` in a peft LoRA model: the base is frozen, only the adapter (and
    `spec.modules_to_save`) train. The adapter's init (A random, B zero, so the wrapped model
    starts equal to the base) is a pure function of `seed` and leaves the caller's RNG alone."""
    from peft import LoraConfig, get_peft_model

    spec = spec or LoraSpec()
    targets = tuple(spec.targets) if spec.targets else default_targets(model)
    missing = [t for t in targets if t not in module_names(model)]
    if missing:
        raise ModelError(f"lora.targets: the model has no module named {', '.join(missing)}; "
                         f"it has {', '.join(sorted(module_names(model)))}")
    config = LoraConfig(task_type="CAUSAL_LM", r=spec.r, lora_alpha=spec.alpha,
                        lora_dropout=spec.dropout, target_modules=list(targets), bias=spec.bias,
                        modules_to_save=list(spec.modules_to_save) or None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return get_peft_model(model, config)


def save_adapter(peft_model, folder: str | Path) -> Path:
    """The adapter alone (adapter_config.json + adapter_model.safetensors, a few MB)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(str(folder))
    return folder


def load_adapter(base, folder: str | Path, *, trainable: bool = False):
    """A saved adapter on `base` (a freshly loaded base model; peft modifies it in place).
    `trainable=True` to continue training it."""
    from peft import PeftModel

    folder = Path(folder)
    if not (folder / ADAPTER_CONFIG).is_file():
        raise ModelError(f"{folder} holds no {ADAPTER_CONFIG}: not a saved LoRA adapter "
                         f"(expected the folder `save_adapter` wrote)")
    try:
        model = PeftModel.from_pretrained(base, str(folder), is_trainable=trainable)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ModelError(f"cannot load the LoRA adapter in {folder} onto this base model "
                         f"({type(e).__name__}: {' '.join(str(e).split())[:300]})") from e
    return model if trainable else model.eval()


def merge(peft_model):
    """Fold the adapter into the base weights and return the plain transformers model.
    Refuses a quantised base (see the module docstring). `safe_merge` makes peft check the merged
    weights for NaN/inf before it writes them."""
    if not hasattr(peft_model, "merge_and_unload"):
        raise ModelError("merge needs a model with a LoRA adapter (from add_lora or "
                         "load_adapter)")
    if is_quantized(peft_model):
        raise QuantizedBaseError(
            "refusing to merge a LoRA adapter into a quantised base model: the update would be "
            "rounded into the quantised weights and the merged model would not compute what was "
            "trained; load the base in float (e.g. de-quantised) and merge into that, or keep "
            "base + adapter unmerged")
    return peft_model.merge_and_unload(safe_merge=True)


def lora_for_training(base, params, *, seed: int = 0):
    """The base wrapped with a trainable adapter as `params` (a `params.LoraParams`: r, alpha,
    dropout, targets, upper_layers) says: (peft model, the number of decoder layers when only the
    upper ones train, else None)."""
    from fairtrial.ml.causal_lm.layers import train_upper_layers

    spec = LoraSpec(r=params.r, alpha=params.alpha, dropout=params.dropout,
                    targets=tuple(params.targets) if params.targets else None)
    peft_model = add_lora(base, spec, seed=seed)
    layers = train_upper_layers(peft_model, params.upper_layers) if params.upper_layers else None
    return peft_model, layers
