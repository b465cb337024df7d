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


def tiny_llama(seed=0):
    from fairtrial.ml.causal_lm.model import build_causal_lm

    return build_causal_lm({"model_type": "llama", "vocab_size": 64, "hidden_size": 32,
                            "intermediate_size": 64, "num_hidden_layers": 2,
                            "num_attention_heads": 2, "num_key_value_heads": 2,
                            "max_position_embeddings": 64}, seed=seed)


def test_token_nll_computes_the_output_layer_only_where_kept():
    """`keep` (the targets with a loss weight) gives the same NLL and gradient as the full
    computation masked, with the output layer run on the kept rows only."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.set_num_threads(1)
    model = tiny_llama()
    obj = Objective(pad_id=0, kinds=chat_kinds(9), weights=(0.0, 0.0, 1.0))
    rng = np.random.default_rng(0)
    examples = [np.r_[rng.integers(10, 64, 20), 9, rng.integers(10, 64, 5)],
                np.r_[rng.integers(10, 64, 11), 9, rng.integers(10, 64, 3)]]
    x, m, k = collate(examples, obj)
    w = loss_weights(k, obj.weights)
    keep = w > 0
    assert 0 < keep.sum() < 0.5 * k.numel()

    def run(kept):
        model.zero_grad(set_to_none=True)
        with FlopCounterMode(display=False) as fc:
            nll = token_nll(model, x, m, keep=kept)
            ((nll * w).sum() / w.sum()).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return nll.detach(), grads, fc.get_total_flops()

    full, g_full, f_full = run(None)
    part, g_part, f_part = run(keep)
    assert part.shape == full.shape
    torch.testing.assert_close(part[keep], full[keep], rtol=0, atol=1e-6)
    assert (part[~keep] == 0).all()
    assert g_part.keys() == g_full.keys()
    for name in g_full:
        torch.testing.assert_close(g_part[name], g_full[name], rtol=1e-5, atol=1e-7)
    assert f_part < f_full  # the output layer ran on fewer rows
    # a model without get_output_embeddings (Bigram) gets the full computation, masked
    bigram_x = torch.as_tensor(np.array([[5, 6, 9, 7, 8]]))
    kept = torch.tensor([[False, False, True, True]])
    got = token_nll(Bigram(), bigram_x, torch.ones_like(bigram_x), keep=kept)
    want = token_nll(Bigram(), bigram_x, torch.ones_like(bigram_x))
    assert torch.equal(got, want * kept)


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step")  # no optimizer step
def test_a_step_without_loss_weight_leaves_the_weights_alone():
    """Micro-batches whose targets all weigh 0 are skipped (no forward, no backward); a step made
    of them only changes nothing."""
    from fairtrial.ml.causal_lm.params import LoopParams
    from fairtrial.ml.causal_lm.train import train

    torch.set_num_threads(1)
    model = tiny_llama()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    prompt_only = [np.array([5, 6, 7, 8]), np.array([4, 5, 6])]  # no separator: all prompt
    obj = Objective(pad_id=0, kinds=chat_kinds(9), weights=(0.0, 0.0, 1.0))
    r = train(model, prompt_only, prompt_only, LoopParams(steps=2, micro_batch=1, grad_accum=2,
                                                          lr=1e-2, eval_every=0),
              obj, seed=0, max_len=64)
    assert [h["loss"] for h in r["history"]] == [0.0, 0.0] and r["useful_tokens"] == 0
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
