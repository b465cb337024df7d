"""The ILM model: a GPT-2-family causal language model from transformers.

Two ways to get one:
  - `pretrained = "gpt2"` (a hub name) or `pretrained = "/models/gpt2-medium"` (a local folder):
    `AutoModelForCausalLM.from_pretrained`, as the paper did (GPT-2 small fine-tuned);
  - `pretrained = None`: a fresh GPT-2 built from `n_layer`, `n_embd`, `n_head`, `n_positions`,
    which is what a CPU study or a test uses.
Either way the token embeddings are resized to the tokenizer, which carries the ILM special
tokens (blanks, `<|start_infill|>`, `<|end_infill|>`) on top of the base vocabulary.

Memory is checked before any weights are allocated: parameters, gradients and AdamW's two moment
buffers cost 16 bytes per parameter in fp32, so a model that cannot fit in the declared memory
fails at once with the parameter to change, not after minutes of loading.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# The ILM special tokens (Donahue et al. 2020) and their ids come from the data side's tokenizer
# module, so both sides of the recipe look them up the same way.
from fairtrial.recipes.ilm.tokenizer import (BLANK_TOKENS, END_INFILL, EOS,  # noqa: E402,F401
                                             START_INFILL, special_ids)
from fairtrial.recipes.ilm.params import ModelParams  # noqa: E402,F401 (declared with all params)

# The name of the resolved-config file saved beside every model folder and checkpoint.
CONFIG_FILE = "fairtrial_config.json"


# ---------------------------------------------------------------------------------------------
# tokenizer


def load_tokenizer(folder: str | Path):
    """The tokenizer artifact (a folder `AutoTokenizer.from_pretrained` reads), checked for the ILM
    special tokens. Raises ValueError naming the folder and what is missing."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"tokenizer folder {folder} does not exist; expected the output of the "
                         f"ilm tokenizer stage (a folder with tokenizer.json)")
    try:
        tok = AutoTokenizer.from_pretrained(str(folder))
    except Exception as e:  # transformers raises OSError/ValueError/TypeError by case
        raise ValueError(f"cannot load a tokenizer from {folder}: {e}") from e
    special_ids(tok)  # raises ValueError naming the missing token
    if tok.pad_token is None:
        tok.pad_token = EOS
    return tok


# ---------------------------------------------------------------------------------------------
# memory


def model_shape(params: ModelParams, vocab_size: int) -> dict[str, int]:
    """Parameter count, layers, width and positions without allocating weights: the model is
    built on the meta device from its config (for a pretrained model, only config.json is read)."""
    import torch
    from transformers import AutoModelForCausalLM

    from fairtrial.ml.causal_lm.model import max_positions

    config = _config(params, vocab_size)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    model.resize_token_embeddings(vocab_size, mean_resizing=False)  # no statistics on meta
    # tied input/output embeddings are one tensor: count each tensor once
    n = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    return {"n_params": n, "n_layer": int(config.num_hidden_layers),
            "n_embd": int(config.hidden_size), "n_positions": max_positions(config)}


def count_parameters(params: ModelParams, vocab_size: int) -> int:
    return model_shape(params, vocab_size)["n_params"]


def check_memory(params: ModelParams, n_params: int, device: str,
                 activation_gb: float = 0.0) -> float:
    """Raise ValueError when weights + gradients + AdamW state (+ an activation estimate) exceed
    `model.memory_gb` (or the device's free memory when it is None). Returns the estimate in GB.
    The estimate and the free memory are the ML layer's (fairtrial.ml.causal_lm.memory)."""
    from fairtrial.ml.causal_lm.memory import available_memory_gb, training_gb

    need = training_gb(n_params, activations_gb=activation_gb)
    have = params.memory_gb if params.memory_gb is not None else available_memory_gb(device)
    where = "model.memory_gb" if params.memory_gb is not None else f"free memory on {device}"
    if need > have:
        size = (f"model.pretrained={params.pretrained!r}" if params.pretrained else
                f"model.n_layer={params.n_layer}, model.n_embd={params.n_embd}")
        raise ValueError(
            f"the model ({size}: {n_params / 1e6:.1f}M parameters) needs about {need:.2f} GB to "
            f"train (16 bytes per parameter for weights, gradients and AdamW state"
            f"{' plus activations' if activation_gb else ''}) but {where} is {have:.2f} GB; "
            f"use a smaller model (lower model.n_layer / model.n_embd) or raise model.memory_gb")
    return need


# ---------------------------------------------------------------------------------------------
# building and loading


def _config(params: ModelParams, vocab_size: int):
    from transformers import GPT2Config

    if params.pretrained is not None:  # the one hub-or-folder rule, GGUF and short names too
        from fairtrial.ml.causal_lm.model import load_config

        return load_config(params.pretrained, what="model.pretrained")
    return GPT2Config(
        vocab_size=vocab_size, n_layer=params.n_layer, n_embd=params.n_embd,
        n_head=params.n_head, n_positions=params.n_positions,
        resid_pdrop=params.dropout, embd_pdrop=params.dropout, attn_pdrop=params.dropout,
        bos_token_id=None, eos_token_id=None, pad_token_id=None)


def build_model(params: ModelParams, tokenizer, seed: int = 0):
    """A causal LM ready for ILM training: pretrained weights (fairtrial.ml's loader: a hub name,
    a local folder, a GGUF file or a short name) or a fresh GPT-2 (seeded), with its embeddings
    resized to the tokenizer and eos/pad ids set from it."""
    import torch

    from fairtrial.ml.causal_lm.model import build_causal_lm, load_causal_lm

    vocab = len(tokenizer)
    torch.manual_seed(seed)  # the rows added by resize below are seeded
    if params.pretrained is not None:
        model = load_causal_lm(params.pretrained, tokenizer=False, what="model.pretrained")
    else:
        model = build_causal_lm(_config(params, vocab), seed=seed)
    if model.get_input_embeddings().weight.shape[0] != vocab:
        # mean_resizing initialises the new special-token rows at the mean of the old ones, so
        # they start on the data manifold instead of at random (transformers' default)
        model.resize_token_embeddings(vocab, mean_resizing=params.pretrained is not None)
    eos = tokenizer.convert_tokens_to_ids(EOS)
    model.config.eos_token_id = eos
    model.config.pad_token_id = eos
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.eos_token_id = eos
        model.generation_config.pad_token_id = eos
    return model


def save_model(model, tokenizer, folder: Path, resolved: dict[str, Any]) -> Path:
    """The final model folder: save_pretrained + the tokenizer + the resolved config, so that
    `load_model(folder)` and `fairtrial infill` need nothing else."""
    from fairtrial.ml.causal_lm.model import save_model as save_with_provenance

    folder = save_with_provenance(model, tokenizer, folder)  # + versions, parameter count
    (folder / CONFIG_FILE).write_text(json.dumps(resolved, indent=2, sort_keys=True, default=str))
    return folder


def load_model(folder: str | Path, device: str = "cpu"):
    """(model, tokenizer) from a folder written by `save_model` (or any folder holding a causal LM
    and a tokenizer with the ILM special tokens). Raises ValueError naming the folder."""
    from fairtrial.ml.causal_lm.model import load_causal_lm

    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"model folder {folder} does not exist; give the model/ folder of a "
                         f"finished ilm train run")
    if not (folder / "config.json").exists():
        raise ValueError(f"{folder} holds no config.json: not a saved model folder "
                         f"(expected the model/ folder of an ilm train run)")
    tok = load_tokenizer(folder)
    model = load_causal_lm(folder, tokenizer=False, device=device, what="the ilm model")
    return model, tok
