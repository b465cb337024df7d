"""fairtrial.ml.causal_lm's generic parts: objectives, padding, data order, scoring by kind."""

import numpy as np
import pytest
import torch

from fairtrial.ml.causal_lm.batching import lengths_of, micro_batches, step_plan
from fairtrial.ml.causal_lm.scoring import score_examples
from fairtrial.ml.causal_lm.tokens import (
    Objective,
    collate,
    loss_weights,
    of_kinds,
    token_nll,
)

PROMPT, COMPLETION = 1, 2


def chat_kinds(sep):
    """A prompt/completion objective like the coming toolcall recipe's: targets after `sep` are
    the completion."""
    def kinds(ex):
        k = np.full(len(ex) - 1, PROMPT, np.int8)
        where = np.flatnonzero(ex == sep)
        if len(where):
            k[int(where[0]):] = COMPLETION
        return k
    return kinds


def test_objective_weights_tokens_by_kind_and_pads_with_zero_weight():
    obj = Objective(pad_id=0, kinds=chat_kinds(9), weights=(0.0, 0.0, 1.0),
                    report={"completion": (COMPLETION,)})
    x, m, k = collate([np.array([5, 6, 9, 7, 8]), np.array([5, 9, 7])], obj)
    assert x.tolist() == [[5, 6, 9, 7, 8], [5, 9, 7, 0, 0]]
    assert m.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert k.tolist() == [[1, 1, 2, 2], [1, 2, 0, 0]]
    assert loss_weights(k, obj.weights).tolist() == [[0, 0, 1, 1], [0, 1, 0, 0]]
    assert of_kinds(k, (PROMPT, COMPLETION)).sum() == 6
    with pytest.raises(ValueError, match="padding"):
        Objective(pad_id=0, kinds=chat_kinds(9), weights=(1.0, 1.0, 1.0))


def test_step_plan_is_deterministic_and_bucketed():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 200, size=1000)
    a = step_plan(lengths, 16, seed=3, epoch=0, batching="bucketed", pool=10)
    b = step_plan(lengths, 16, seed=3, epoch=0, batching="bucketed", pool=10)
    assert all((x == y).all() for x, y in zip(a, b))
    assert len(a) == 1000 // 16
    used = np.concatenate(a)
    assert len(set(used.tolist())) == len(used)  # every example at most once per epoch
    c = step_plan(lengths, 16, seed=3, epoch=1, batching="bucketed", pool=10)
    assert not all((x == y).all() for x, y in zip(a, c))  # another epoch, another order
    # bucketing: the length spread inside a step is far below that of random steps
    spread = np.mean([np.ptp(lengths[s]) for s in a])
    padded = step_plan(lengths, 16, seed=3, epoch=0, batching="padded", pool=10)
    assert spread < 0.2 * np.mean([np.ptp(lengths[s]) for s in padded])
    # micro-batches partition the step whatever their size
    mb = micro_batches(a[0], lengths, 4, "bucketed")
    assert sorted(np.concatenate(mb).tolist()) == sorted(a[0].tolist())
    assert lengths_of([np.zeros(3), np.zeros(5)]).tolist() == [3, 5]


class Bigram(torch.nn.Module):
    """A tiny causal LM with the transformers output shape (`.logits`)."""

    def __init__(self, vocab=12):
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(vocab, vocab)

    def forward(self, input_ids, attention_mask=None):
        return type("Out", (), {"logits": self.emb(input_ids)})()


def test_scoring_sums_nll_by_kind_in_input_order():
    obj = Objective(pad_id=0, kinds=chat_kinds(9), weights=(0.0, 1.0, 1.0))
    examples = [np.array([5, 6, 9, 7, 8]), np.array([5, 9, 7]), np.array([3, 4])]
    model = Bigram()
    sums = score_examples(model, examples, obj, (PROMPT, COMPLETION), batch_size=2)
    for i, ex in enumerate(examples):  # one at a time, unpadded: the same sums
        x = torch.as_tensor(ex)[None]
        nll = token_nll(model, x, torch.ones_like(x))[0].detach().double()
        kinds = torch.as_tensor(chat_kinds(9)(ex))
        for kind in (PROMPT, COMPLETION):
            sel = kinds == kind
            assert sums[f"nll_{kind}"][i] == pytest.approx(float(nll[sel].sum()), abs=1e-9)
            assert sums[f"n_{kind}"][i] == int(sel.sum())
    assert sums[f"n_{COMPLETION}"].tolist() == [2, 1, 0]
