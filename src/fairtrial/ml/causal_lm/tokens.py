"""Per-token losses of a causal LM: target kinds, loss weights per kind, padding, token NLL.

Every next-token target of an example has a kind, a small integer the recipe assigns (ilm: context,
infill text, end-of-answer ...; a chat fine-tune: prompt, completion). Kind 0 is padding. An
`Objective` says how to find the kinds of an example and how much each kind weighs in the loss;
the training loop, validation and scoring below know nothing else about the recipe.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

PAD = 0
"""The kind of a padding position; its weight is always 0."""


@dataclass(frozen=True)
class Objective:
    """What a recipe tells the generic loop about its examples."""

    pad_id: int
    """Token id the right padding is filled with (never a target: its weight is 0)."""
    kinds: Callable[[np.ndarray], np.ndarray]
    """Kinds of the len(example) - 1 next-token targets of one example (never PAD)."""
    weights: Sequence[float]
    """Loss weight of each kind, indexed by kind; weights[PAD] must be 0."""
    report: Mapping[str, Sequence[int]] = field(default_factory=dict)
    """Validation also reports the mean NLL over these kinds, as `valid_<name>_loss`."""

    def __post_init__(self) -> None:
        if self.weights[PAD] != 0:
            raise ValueError(f"the weight of padding (kind {PAD}) must be 0, not "
                             f"{self.weights[PAD]}")


def collate(examples: Sequence[np.ndarray], objective: Objective, length: int | None = None):
    """Right-padded (input_ids, attention_mask, kinds) tensors; `length` pads (or cuts) to a fixed
    width, else to the longest example. kinds has one column less (targets, not inputs)."""
    width = length or max(len(e) for e in examples)
    n = len(examples)
    input_ids = np.full((n, width), objective.pad_id, np.int64)
    mask = np.zeros((n, width), np.int64)
    kinds = np.zeros((n, width - 1), np.int8)
    for i, e in enumerate(examples):
        e = np.asarray(e[:width], dtype=np.int64)
        input_ids[i, :len(e)] = e
        mask[i, :len(e)] = 1
        kinds[i, :len(e) - 1] = objective.kinds(e)
    return torch.from_numpy(input_ids), torch.from_numpy(mask), torch.from_numpy(kinds)


def token_nll(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
              keep: torch.Tensor | None = None) -> torch.Tensor:
    """Per-target negative log-likelihood, shape (batch, length-1), in fp32.

    `keep` (bool, shape (batch, length-1)): only these targets are needed (those with a loss
    weight, or a kind being scored); the output layer and the NLL are computed at them alone and
    the other targets get 0. With a 49k-token vocabulary the output layer is a fifth of a small
    model's forward pass and as much of its backward pass, and a chat fine-tune's prompt tokens
    (weight 0) are most of every example, so this is the largest single saving of a LoRA step.
    How: a forward pre-hook on the model's output layer (`get_output_embeddings()`) gathers the
    kept positions' hidden states before the layer, so the model's own code after it (e.g.
    logit soft-capping) still runs; a model whose output layer cannot be found or is called
    differently gets the full computation, masked."""
    targets = input_ids[:, 1:]
    get_head = getattr(model, "get_output_embeddings", None)  # transformers models have it
    head = get_head() if keep is not None and get_head is not None else None
    if head is None:  # the full computation: every target
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1]
        nll = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1),
                              reduction="none").view(input_ids.size(0), -1)
        return nll if keep is None else nll * keep
    keep = keep.to(device=input_ids.device, dtype=torch.bool)

    def gather_kept(_module, args):
        if not args or args[0].dim() != 3 or args[0].shape[:2] != input_ids.shape:
            return None  # not the call we expect: leave it alone (caught below)
        return (args[0][:, :-1][keep].unsqueeze(0), *args[1:])

    handle = head.register_forward_pre_hook(gather_kept)
    try:
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    finally:
        handle.remove()
    if logits.shape[:2] == input_ids.shape:  # the hook did not apply: mask the full result
        logits = logits[:, :-1]
        nll = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1),
                              reduction="none").view(input_ids.size(0), -1)
        return nll * keep
    nll_kept = F.cross_entropy(logits[0].float(), targets[keep], reduction="none")
    return nll_kept.new_zeros(keep.shape).masked_scatter(keep, nll_kept)


def loss_weights(kinds: torch.Tensor, weights: Sequence[float]) -> torch.Tensor:
    """The loss weight of every target: `weights` looked up by kind (fp32)."""
    return torch.tensor([float(w) for w in weights])[kinds.long()]


def of_kinds(kinds: torch.Tensor, which: Sequence[int]) -> torch.Tensor:
    """Boolean mask of the targets whose kind is one of `which`."""
    mask = torch.zeros_like(kinds, dtype=torch.bool)
    for k in which:
        mask |= kinds == k
    return mask
