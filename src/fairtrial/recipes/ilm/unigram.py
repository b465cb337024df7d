"""The trivial baseline: a unigram language model over the tokenizer's vocabulary.

Fit on the token ids of the arm's training texts with add-k smoothing (k = 1: Laplace):

    p(w) = (count(w) + k) / (N + k * V)

where N is the number of counted tokens and V the vocabulary size (every token id of the
tokenizer, special tokens included, so nothing gets probability 0). The end of every training text
counts as one `<|end_infill|>`: the stop symbol of a unigram language model, as `</s>` is counted
once per sentence in the usual formulation, so `infill_ppl_with_end` compares the model with a
baseline that knows answers end, not one that gives the end token a pseudo-count.

It is scored on exactly the targets the model is scored on (evaluate.score_examples's kinds): a
model that does not beat it has learnt nothing beyond word frequencies. Blank tokens never occur
in raw text, so in `context_ppl` they get only the pseudo-count k; the gap to the model on that
metric is therefore partly about blanks.

Counting is numpy's bincount; nothing here needs a library beyond that.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from fairtrial.recipes.ilm.evaluate import SCORED_KINDS, empty_sums
from fairtrial.recipes.ilm.train import target_kinds


def fit_unigram(token_arrays: Iterable[Sequence[int]], vocab_size: int, *, k: float = 1.0,
                stop_id: int | None = None) -> np.ndarray:
    """Log-probabilities (natural log, shape (vocab_size,)) of an add-k smoothed unigram model.
    With `stop_id`, each array also counts one `stop_id` token (its end)."""
    if k <= 0:
        raise ValueError(f"unigram smoothing k must be > 0 (got {k}): a zero count would give "
                         f"an infinite perplexity")
    counts = np.zeros(vocab_size, np.float64)
    n_arrays = 0
    for arr in token_arrays:
        arr = np.asarray(arr, dtype=np.int64)
        if len(arr) and (arr.min() < 0 or arr.max() >= vocab_size):
            raise ValueError(f"token id {int(arr.max())} outside a vocabulary of {vocab_size}")
        counts += np.bincount(arr, minlength=vocab_size)
        n_arrays += 1
    if stop_id is not None:
        counts[stop_id] += n_arrays
    return np.log(counts + k) - np.log(counts.sum() + k * vocab_size)


def score_unigram(logp: np.ndarray, examples: Sequence[np.ndarray],
                  ids: dict[str, int]) -> dict[str, np.ndarray]:
    """Summed NLL and counts per example and target kind, like evaluate.score_examples."""
    sums = empty_sums(len(examples))
    for i, ex in enumerate(examples):
        ex = np.asarray(ex, dtype=np.int64)
        kinds = target_kinds(ex, ids)
        nll = -logp[ex[1:]]
        for kind in SCORED_KINDS:
            sel = kinds == kind
            sums[f"nll_{kind}"][i] = float(nll[sel].sum())
            sums[f"n_{kind}"][i] = int(sel.sum())
    return sums
