"""LoRA training checkpoints hold only what trains (the adapter, the optimizer, RNG and schedule),
a small fraction of the model, and still resume exactly onto a freshly built base."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from fairtrial.ml import checkpoint
from fairtrial.ml.causal_lm.layers import train_upper_layers
from fairtrial.ml.causal_lm.lora import LoraSpec, add_lora
from fairtrial.ml.causal_lm.model import build_causal_lm
from fairtrial.ml.causal_lm.params import LoopParams
from fairtrial.ml.causal_lm.tokens import Objective
from fairtrial.ml.causal_lm.train import train

LLAMA = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
         "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "vocab_size": 4096, "max_position_embeddings": 64}
SEP = 3
PARAMS = LoopParams(steps=4, micro_batch=2, grad_accum=1, lr=1e-2, eval_every=2,
                    checkpoint_every=2)


def _kinds(ex):
    """Targets after the first SEP are the completion (kind 2), the rest prompt (kind 1)."""
    k = np.full(len(ex) - 1, 1, np.int8)
    where = np.flatnonzero(ex == SEP)
    if len(where):
        k[int(where[0]):] = 2
    return k


OBJ = Objective(pad_id=0, kinds=_kinds, weights=(0.0, 0.0, 1.0))


def _data(n=8, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        ex = rng.integers(4, 512, size=int(rng.integers(8, 16)))
        ex[int(rng.integers(2, 6))] = SEP
        out.append(ex)
    return out


def _lora_model():
    """The same base and adapter init every time: what a resumed stage builds."""
    return add_lora(build_causal_lm(LLAMA, seed=0), LoraSpec(r=4, dropout=0.1), seed=0)


class _Kill(Exception):
    pass


def _kill_at(n):
    def progress(step, total, **_):
        if step == n:
            raise _Kill
    return progress


def _adapter(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _size(obj) -> int:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.tell()


def test_a_lora_checkpoint_is_small_and_resumes_exactly(tmp_path):
    torch.set_num_threads(1)
    data, valid = _data(), _data(4, seed=1)
    kw = {"seed": 3, "max_len": 64, "objective": OBJ}

    straight = _lora_model()
    want = train(straight, data, valid, PARAMS, checkpoint_dir=tmp_path / "a", **kw)

    killed = _lora_model()
    with pytest.raises(_Kill):
        train(killed, data, valid, PARAMS, checkpoint_dir=tmp_path / "b", progress=_kill_at(3),
              **kw)
    last = tmp_path / "b" / "last.pt"
    saved = checkpoint.load(last)
    assert saved["step"] == 2
    full = _size(killed.state_dict())
    assert last.stat().st_size < 0.05 * full, (last.stat().st_size, full)  # adapter + Adam moments
    # the saved model part is exactly the adapter (no base weight, no frozen tensor)
    assert set(saved["model"]) == set(_adapter(killed))
    assert all("lora_" in k for k in saved["model"])

    resumed = _lora_model()  # a fresh process: base and adapter init rebuilt, then the checkpoint
    got = train(resumed, data, valid, PARAMS, checkpoint_dir=tmp_path / "b", **kw)
    assert [h["loss"] for h in got["history"]] == pytest.approx(
        [h["loss"] for h in want["history"]], abs=1e-6)
    assert len(got["history"]) == 4
    a, b = _adapter(straight), _adapter(resumed)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    # the base weights were never touched by training or by the resume
    base = build_causal_lm(LLAMA, seed=0).state_dict()
    frozen = {k.replace("base_model.model.", "").replace(".base_layer", ""): v
              for k, v in resumed.state_dict().items() if "lora_" not in k}
    assert all(torch.equal(frozen[k], base[k]) for k in base)


def test_full_model_checkpoints_still_hold_the_whole_model(tmp_path):
    torch.set_num_threads(1)
    model = build_causal_lm(LLAMA, seed=0)
    params = LoopParams(steps=2, micro_batch=2, lr=1e-3, eval_every=0, checkpoint_every=1)
    train(model, _data(), _data(2), params, checkpoint_dir=tmp_path, seed=0, max_len=64,
          objective=OBJ)
    saved = checkpoint.load(tmp_path / "last.pt")["model"]
    assert saved.keys() == model.state_dict().keys()


def test_a_checkpoint_of_other_trainable_parameters_is_refused(tmp_path):
    torch.set_num_threads(1)
    data = _data()
    train(_lora_model(), data, data, PARAMS, checkpoint_dir=tmp_path, seed=0, max_len=64,
          objective=OBJ)
    other = _lora_model()
    # only the top layer's adapter trains now: the checkpoint holds tensors this run freezes
    train_upper_layers(other, 1)
    with pytest.raises(ValueError, match="last.pt holds .* tensors this model does not train"):
        checkpoint.load_trained_state(other, checkpoint.load(tmp_path / "last.pt")["model"],
                                      tmp_path / "last.pt")
    wider = add_lora(build_causal_lm(LLAMA, seed=0),
                     LoraSpec(r=4, targets=("q_proj", "v_proj", "up_proj")), seed=0)
    with pytest.raises(ValueError, match="does not hold .* trainable tensors"):
        checkpoint.load_trained_state(wider, checkpoint.load(tmp_path / "last.pt")["model"],
                                      tmp_path / "last.pt")
