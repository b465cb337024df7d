"""Training losses, combinable with weights: MSE, cosine distance, InfoNCE (in-batch negatives)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def infonce(pred: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """Cross-entropy of picking each prediction's own target among the batch's targets.
    This is the training-time version of the retrieval endpoint (rank among candidates)."""
    logits = F.normalize(pred, dim=-1) @ F.normalize(target, dim=-1).T / temperature
    return F.cross_entropy(logits, torch.arange(len(pred), device=pred.device))


def combined_loss(pred: torch.Tensor, target: torch.Tensor, mse: float = 0.0, cosine: float = 0.0,
                  infonce_weight: float = 0.0, temperature: float = 0.05) -> torch.Tensor:
    loss = pred.new_zeros(())
    if mse:
        loss = loss + mse * F.mse_loss(pred, target)
    if cosine:
        loss = loss + cosine * (1 - F.cosine_similarity(pred, target, dim=-1)).mean()
    if infonce_weight and len(pred) > 1:
        loss = loss + infonce_weight * infonce(pred, target, temperature)
    return loss
