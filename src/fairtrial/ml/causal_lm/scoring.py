"""Per-item scoring of a causal LM: summed NLL and target counts per example and token kind.

The raw material of perplexity endpoints: a recipe sums an item's examples and takes exp(nll / n)
over the kinds its metric counts. Summing, not averaging, lets the analysis aggregate
token-weighted as well.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from fairtrial.ml.causal_lm.tokens import Objective, collate, token_nll


def empty_sums(n: int, kinds: Sequence[int]) -> dict[str, np.ndarray]:
    """Zeroed `nll_<kind>` (float64) and `n_<kind>` (int64) arrays for n examples."""
    out = {}
    for kind in kinds:
        out[f"nll_{kind}"] = np.zeros(n, np.float64)
        out[f"n_{kind}"] = np.zeros(n, np.int64)
    return out


def score_examples(model, examples: Sequence[np.ndarray], objective: Objective,
                   kinds: Sequence[int], *, batch_size: int = 32, device: str = "cpu",
                   progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """Summed NLL (nats) and target counts per example and each of `kinds`. Batches are formed
    from examples sorted by length, so little padding is computed; results come back in input
    order. Runs in the model's own precision (no autocast): scores do not depend on the device's
    AMP setting."""
    lengths = np.asarray([len(e) for e in examples])
    order = np.argsort(lengths, kind="stable")
    sums = empty_sums(len(examples), kinds)
    was_training = model.training
    model.to(device).eval()
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            x, m, k = collate([examples[i] for i in idx], objective)
            keep = torch.isin(k, torch.tensor([int(kind) for kind in kinds], dtype=k.dtype))
            nll = token_nll(model, x.to(device), m.to(device), keep=keep).double().cpu().numpy()
            k = k.numpy()
            for kind in kinds:
                sel = k == kind
                sums[f"nll_{kind}"][idx] = (nll * sel).sum(axis=1)
                sums[f"n_{kind}"][idx] = sel.sum(axis=1)
            if progress is not None:
                progress(start + len(idx))
    model.train(was_training)
    return sums
