"""How much memory training a causal LM needs, estimated before anything is allocated, and how
much the device has: the up-front check a training stage makes so that a model too large fails at
once with the numbers, not after minutes with an out-of-memory error."""

from __future__ import annotations

BYTES_PER_PARAM = 4
"""An fp32 weight. Mixed precision keeps fp32 master weights, so this holds under autocast."""
BYTES_PER_TRAINABLE = 12
"""Per trainable parameter on top of its weight: its fp32 gradient (4) and AdamW's exp_avg and
exp_avg_sq (8)."""


def training_gb(n_params: int, trainable: int | None = None, activations_gb: float = 0.0) -> float:
    """Weights of `n_params` parameters, gradients and AdamW state of the `trainable` ones (all of
    them by default: a full fine-tune needs 16 bytes per parameter; LoRA only a few MB of state),
    plus an activation estimate, in GB."""
    trainable = n_params if trainable is None else trainable
    return (n_params * BYTES_PER_PARAM + trainable * BYTES_PER_TRAINABLE) / 2**30 + activations_gb


def activation_gb(n_layer: int, n_embd: int, micro_batch: int, seq_len: int,
                  vocab_size: int) -> float:
    """A rough upper estimate of training activations for one micro-batch in fp32: about 16
    floats per token per layer per channel for a transformer block (attention + MLP, kept for the
    backward pass) plus the logits and their gradient. Good to a factor of two, which is all the
    up-front check needs."""
    tokens = micro_batch * seq_len
    floats = tokens * (16 * n_layer * n_embd + 2 * vocab_size)
    return floats * 4 / 2**30


def available_memory_gb(device: str) -> float:
    """Free memory of the device: a CUDA device's free memory, else the machine's available RAM."""
    if device.startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info()
        return free / 2**30
    import psutil

    return psutil.virtual_memory().available / 2**30
