"""The ILM training loop: target kinds, loss masks, data order, exact resume, best checkpoint."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # _model_fixtures

from _model_fixtures import tiny_model, world  # noqa: E402,F401

from fairtrial.recipes.ilm.tokenizer import special_ids  # noqa: E402
from fairtrial.recipes.ilm.train import (CONTEXT, END, EOS_T, INFILL, PAD, START,  # noqa: E402
                                         TrainParams, collate, loss_weights, objective,
                                         target_kinds, train)

IDS = {"start_infill": 90, "end_infill": 91, "eos": 0}


def test_target_kinds_split_context_and_infill():
    # tokens: c c c [start] a a [end] b [end] [eos]
    ex = np.array([5, 6, 7, 90, 8, 9, 91, 10, 91, 0])
    kinds = target_kinds(ex, IDS)
    # target t is ex[t+1]
    assert kinds.tolist() == [CONTEXT, CONTEXT, START, INFILL, INFILL, END, INFILL, END, EOS_T]


def test_example_without_start_token_is_all_context():
    assert set(target_kinds(np.array([5, 6, 7, 8]), IDS).tolist()) == {CONTEXT}


def test_collate_pads_right_and_marks_padding():
    a, b = np.array([5, 90, 8, 91, 0]), np.array([5, 6, 90, 8, 9, 91, 0])
    x, m, k = collate([a, b], IDS)
    assert x.shape == (2, 7) and k.shape == (2, 6)
    assert m[0].tolist() == [1, 1, 1, 1, 1, 0, 0]
    assert k[0, 4:].tolist() == [PAD, PAD]
    x, m, k = collate([a, b], IDS, length=10)  # fixed-length (padded) layout
    assert x.shape == (2, 10) and int(m.sum()) == 12


def test_loss_weights_weighted_and_infill_only():
    ex = np.array([5, 6, 7, 90, 8, 9, 91, 0])
    _, _, k = collate([ex], IDS)
    w = loss_weights(k, TrainParams(context_weight=0.5, infill_weight=2.0))[0].tolist()
    assert w == [0.5, 0.5, 0.5, 2.0, 2.0, 2.0, 2.0]
    w = loss_weights(k, TrainParams(infill_only=True))[0].tolist()
    assert w == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="nothing to learn"):
        TrainParams(infill_only=True, infill_weight=0)


def _params(**kw):
    base = dict(steps=12, micro_batch=8, grad_accum=2, lr=3e-3, eval_every=4,
                checkpoint_every=6, warmup_frac=0.2, eval_examples=16)
    base.update(kw)
    return TrainParams(**base)


def test_training_lowers_the_loss(world):
    ids = special_ids(world.tok)
    model = tiny_model(world.tok)
    r = train(model, world.train, world.valid, _params(steps=30), ids=ids, seed=0)
    losses = [h["loss"] for h in r["history"]]
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:3])
    assert r["evals"][-1]["valid_infill_loss"] < r["evals"][0]["valid_infill_loss"]
    assert 0 < r["useful_tokens"] <= r["computed_tokens"]


def test_gradient_does_not_depend_on_the_micro_batch_split(world):
    """What the OOM back-off relies on: micro_batch 8 x accum 2 == micro_batch 16 x accum 1."""
    ids = special_ids(world.tok)
    a, b = tiny_model(world.tok), tiny_model(world.tok)
    ra = train(a, world.train, world.valid, _params(steps=3, micro_batch=8, grad_accum=2),
               ids=ids, seed=0)
    rb = train(b, world.train, world.valid, _params(steps=3, micro_batch=16, grad_accum=1),
               ids=ids, seed=0)
    la, lb = [h["loss"] for h in ra["history"]], [h["loss"] for h in rb["history"]]
    assert la == pytest.approx(lb, abs=1e-5)


def test_infill_only_loss_is_the_mean_over_infill_targets(world):
    ids = special_ids(world.tok)
    ex = world.train[:16]
    model = tiny_model(world.tok)
    from fairtrial.ml.causal_lm.tokens import token_nll

    x, m, k = collate(ex, ids)
    nll = token_nll(model, x, m).detach()
    w_inf = loss_weights(k, TrainParams(infill_only=True))
    w_all = loss_weights(k, TrainParams())
    # the infill-only loss is the mean over infill targets only, the default over all real ones
    infill = (k == INFILL) | (k == END) | (k == EOS_T)
    assert float((nll * w_inf).sum() / w_inf.sum()) == pytest.approx(float(nll[infill].mean()))
    assert float((nll * w_all).sum() / w_all.sum()) == pytest.approx(float(nll[m[:, 1:] > 0].mean()))


def test_interrupted_training_resumes_to_the_same_loss_curve(world, tmp_path):
    """Train 12 steps straight vs stop after step 6 and resume from the checkpoint: same losses
    and the same final weights. Dropout is on, so the RNG state must be restored too."""
    ids = special_ids(world.tok)
    p = _params()

    straight = tiny_model(world.tok, dropout=0.1)
    r1 = train(straight, world.train, world.valid, p, ids=ids, seed=7,
               checkpoint_dir=tmp_path / "a")

    class Interrupt(Exception):
        pass

    def stop_at_6(step, total, unit, message):
        if step == 6:
            raise Interrupt

    first = tiny_model(world.tok, dropout=0.1)
    with pytest.raises(Interrupt):
        train(first, world.train, world.valid, p, ids=ids, seed=7,
              checkpoint_dir=tmp_path / "b", progress=stop_at_6)
    assert (tmp_path / "b" / "last.pt").exists()
    # a fresh process: a new model object with another init and another global RNG state
    torch.manual_seed(12345)
    resumed = tiny_model(world.tok, dropout=0.1, seed=99)
    r2 = train(resumed, world.train, world.valid, p, ids=ids, seed=7,
               checkpoint_dir=tmp_path / "b")

    l1 = [h["loss"] for h in r1["history"]]
    l2 = [h["loss"] for h in r2["history"]]
    assert len(l1) == len(l2) == 12
    assert np.allclose(l1, l2, rtol=0, atol=1e-6)
    assert [e["valid_loss"] for e in r1["evals"]] == pytest.approx(
        [e["valid_loss"] for e in r2["evals"]], abs=1e-6)
    for (n, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), n


def test_resume_refuses_a_checkpoint_of_other_params(world, tmp_path):
    ids = special_ids(world.tok)
    train(tiny_model(world.tok), world.train, world.valid, _params(steps=6), ids=ids, seed=0,
          checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="different params"):
        train(tiny_model(world.tok), world.train, world.valid, _params(steps=6, grad_accum=3),
              ids=ids, seed=0, checkpoint_dir=tmp_path)


def test_best_checkpoint_is_selected(world, tmp_path):
    """With a learning rate that blows training up after a good start, the final weights are the
    best validated ones, not the last."""
    ids = special_ids(world.tok)
    p = _params(steps=16, lr=0.3, warmup_frac=0.0, schedule="constant", eval_every=2,
                grad_clip=0.0, select="best")
    model = tiny_model(world.tok)
    r = train(model, world.train, world.valid, p, ids=ids, seed=0, checkpoint_dir=tmp_path)
    losses = {e["step"]: e["valid_infill_loss"] for e in r["evals"]}
    best_step = min(losses, key=losses.get)
    assert r["selected_step"] == best_step == r["best"]["step"]
    assert (tmp_path / "best.pt").exists()
    # the model now holds the best weights: validating it again gives the best loss
    from fairtrial.ml.causal_lm.train import validate

    again = validate(model, world.valid, objective(ids, p), p.resolved(False), "cpu",
                     lambda: torch.autocast("cpu", enabled=False), max_len=64)
    assert again["valid_infill_loss"] == pytest.approx(losses[best_step], abs=1e-5)
    assert best_step < 16  # the setting does blow up, so "best" is a real choice here
    assert again["valid_infill_loss"] < losses[16]

    last = tiny_model(world.tok)
    r_last = train(last, world.train, world.valid, p.model_copy(update={"select": "last"}),
                   ids=ids, seed=0)
    assert r_last["selected_step"] == 16


def test_too_few_examples_for_the_batch_is_a_clear_error(world):
    ids = special_ids(world.tok)
    with pytest.raises(ValueError, match="micro_batch \\* train.grad_accum"):
        train(tiny_model(world.tok), world.train[:10], world.valid, _params(micro_batch=8),
              ids=ids, seed=0)


def test_learning_rate_default_depends_on_pretraining():
    from fairtrial.recipes.ilm.params import LR_FROM_SCRATCH, LR_PRETRAINED

    assert TrainParams().resolved(pretrained=False).lr == LR_FROM_SCRATCH
    assert TrainParams().resolved(pretrained=True).lr == LR_PRETRAINED
    assert TrainParams(lr=0.1).resolved(pretrained=True).lr == 0.1


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_path_trains_and_resumes(world, tmp_path, precision):
    """The GPU's mixed-precision path (autocast, fp16 loss scaling, the scaler's checkpointed
    state) run on the CPU: it learns, records what it used, and an interrupted run resumes to the
    same loss curve. A study on the CPU never takes this path (it stays fp32)."""
    ids = special_ids(world.tok)
    p = _params(steps=10, precision=precision)

    plain = train(tiny_model(world.tok), world.train, world.valid, p, ids=ids, seed=0)
    assert plain["precision"] == "fp32"  # the default on the CPU

    straight = tiny_model(world.tok)
    r1 = train(straight, world.train, world.valid, p, ids=ids, seed=3,
               checkpoint_dir=tmp_path / "a", amp_on_cpu=True)
    assert r1["precision"] == precision
    losses = [h["loss"] for h in r1["history"]]
    assert all(np.isfinite(losses)) and np.mean(losses[-3:]) < np.mean(losses[:3])
    # autocast really ran: the low-precision losses differ from the fp32 ones of the same run
    ref = train(tiny_model(world.tok), world.train, world.valid, p, ids=ids, seed=3)
    assert [h["loss"] for h in ref["history"]] != pytest.approx(losses, abs=1e-7)
    ck = torch.load(tmp_path / "a" / "last.pt", weights_only=False)
    if precision == "fp16":
        assert ck["scaler"]["scale"] > 0  # the loss scale is part of the exact-resume state
    else:
        assert ck["scaler"] == {}

    class Interrupt(Exception):
        pass

    def stop_at_5(step, total, unit, message):
        if step == 5:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(tiny_model(world.tok), world.train, world.valid, _params(steps=10, precision=precision,
              checkpoint_every=5), ids=ids, seed=3, checkpoint_dir=tmp_path / "b",
              progress=stop_at_5, amp_on_cpu=True)
    r2 = train(tiny_model(world.tok, seed=99), world.train, world.valid,
               _params(steps=10, precision=precision, checkpoint_every=5), ids=ids, seed=3,
               checkpoint_dir=tmp_path / "b", amp_on_cpu=True)
    assert [h["loss"] for h in r2["history"]] == pytest.approx(losses, abs=1e-6)
