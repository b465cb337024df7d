"""A deployment-quantised copy of a model: int8 dynamic quantisation on a CPU, and its size on
disk.

    q = quantize_int8(merged)                  # a copy; `merged` is left as it is
    size = save_quantized(q, folder)           # bytes of the saved weights
    q = load_quantized(float_folder, folder)   # the float model's config, quantised, these weights
    compare(next_token_logprobs(merged, tok, p), next_token_logprobs(q, tok, p))  # what it cost

Dynamic quantisation (`torch.ao.quantization.quantize_dynamic`) stores every `nn.Linear` weight as
int8 with one scale per tensor and quantises activations on the fly; embeddings and norms stay in
float. It needs no calibration data and runs on any x86 or ARM CPU. It is how a study asks "does
compression cost accuracy?" on a CPU; on a GPU, bitsandbytes or torchao are the libraries to use.

PyTorch marks `torch.ao.quantization` as deprecated in favour of torchao (pytorch/ao#2259); it still
works, and its warnings are silenced here. When torchao is a dependency, its
`Int8DynamicActivationInt8WeightConfig` is the replacement.

A quantised model cannot be saved with `save_pretrained` (safetensors has no packed int8 type), so
its `state_dict` is saved with `torch.save` and loaded back into a freshly quantised copy of the
float model (`load_quantized`). The quantised copy is never a base to merge a LoRA adapter into
(`lora.merge` refuses quantised bases).
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path

import torch

from fairtrial.ml.hub import ModelError

WEIGHTS = "model_int8.pt"


def quantize_int8(model):
    """An int8 dynamically quantised copy of `model` (every nn.Linear), on the CPU, in eval mode."""
    if next(model.parameters()).dtype != torch.float32:
        raise ModelError("int8 dynamic quantisation needs a float32 model; load it with "
                         "dtype=float32")
    float_copy = copy.deepcopy(model).cpu().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (DeprecationWarning, UserWarning, FutureWarning))
        return torch.ao.quantization.quantize_dynamic(float_copy, {torch.nn.Linear},
                                                      dtype=torch.qint8)


def save_quantized(model, folder: str | Path) -> int:
    """Save the quantised weights to `folder/model_int8.pt` (temp file + rename) and return the
    file's size in bytes."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / WEIGHTS
    tmp = path.with_suffix(".tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)
    return path.stat().st_size


def load_quantized(float_model, folder: str | Path):
    """The quantised model saved in `folder`, rebuilt on `float_model` (the same architecture,
    e.g. the merged model it was made from, or the float folder loaded again)."""
    path = Path(folder) / WEIGHTS
    if not path.is_file():
        raise ModelError(f"{folder} holds no {WEIGHTS}: not a quantised model saved by "
                         f"save_quantized")
    q = quantize_int8(float_model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (DeprecationWarning, UserWarning, FutureWarning))
        q.load_state_dict(torch.load(path, weights_only=False))
    return q


def size_on_disk(path: str | Path) -> int:
    """Bytes of a file, or of every file under a folder (a saved model)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
