"""Each architecture learns a tiny set and reloads to the same outputs; training resumes exactly."""

import json

import numpy as np
import pytest
import torch
from lvm_helpers import unit_vectors

from fairtrial.recipes.lvm import stages
from fairtrial.recipes.lvm.models import ARCHITECTURES, load_model, predict
from fairtrial.recipes.lvm import RECIPE
from fairtrial.recipes.testing import FakeContext, kill_at, stage_params

K, DIM = 3, 16


def tiny_artifacts(tmp_path, n_windows=8):
    """Embedding matrix + windows artifacts by hand: n_windows disjoint windows of random units."""
    emb, win = tmp_path / "embed", tmp_path / "windows"
    emb.mkdir()
    win.mkdir()
    vecs = unit_vectors(n_windows * (K + 1), DIM, seed=1)
    np.save(emb / "embeddings.npy", vecs.astype(np.float16))
    w = np.arange(n_windows * (K + 1)).reshape(n_windows, K + 1)
    np.save(win / "train.npy", w)
    np.save(win / "valid.npy", w)  # validate on the same windows: we want memorisation here
    return {"embed": emb, "windows": win}, vecs.astype(np.float16).astype(np.float32), w


def params(arch, epochs, dropout=0.0, **train):
    return {"arch": arch, "window": {"k": K},
            "model": {"hidden": 32, "layers": 2, "heads": 2, "dropout": dropout},
            "train": {"epochs": epochs, "batch_size": 8, "lr": 3e-3, "warmup_frac": 0.0,
                      "patience": 1000, "loss": {"cosine": 1.0, "infonce": 0.0, "mse": 1.0},
                      **train}}


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_each_architecture_overfits_and_reloads(tmp_path, arch):
    torch.set_num_threads(1)
    inputs, vecs, w = tiny_artifacts(tmp_path)
    ctx = FakeContext(stage_params(RECIPE, "train", params(arch, epochs=150)), tmp_path / "train",
                      inputs, seed=0)
    summary = stages.train(ctx)
    hist = json.loads((ctx.out / "history.json").read_text())
    assert hist[-1]["train_loss"] < 0.05 * hist[0]["train_loss"]
    assert summary["best_valid_loss"] < 0.03
    model = load_model(ctx.out)
    ctx_v, tgt = vecs[w[:, :-1]], vecs[w[:, -1]]
    pred = predict(model, ctx_v)
    cos = (pred * tgt).sum(1) / np.linalg.norm(pred, axis=1) / np.linalg.norm(tgt, axis=1)
    assert cos.min() > 0.97
    # the checkpoint's best weights and the artifact's model give identical outputs
    ck = torch.load(ctx.checkpoint_dir / "last.pt", weights_only=False)
    again = load_model(ctx.out)
    again.load_state_dict(ck["state"]["best_model"])
    np.testing.assert_array_equal(predict(again, ctx_v), pred)


@pytest.mark.parametrize("arch", ["transformer", "gru"])
def test_interrupted_training_resumes_to_the_same_curve_and_weights(tmp_path, arch):
    torch.set_num_threads(1)
    inputs, vecs, w = tiny_artifacts(tmp_path, n_windows=24)
    p = stage_params(RECIPE, "train", params(arch, epochs=6, dropout=0.2, batch_size=4))  # dropout: the RNG state must resume too
    straight = FakeContext(p, tmp_path / "straight", inputs, seed=5)
    stages.train(straight)

    ck = tmp_path / "ckpt"
    killed = FakeContext(p, tmp_path / "killed", inputs, seed=5, checkpoint_dir=ck,
                         on_progress=kill_at(3, "epochs"))
    with pytest.raises(KeyboardInterrupt):
        stages.train(killed)
    assert not (tmp_path / "killed" / "model.pt").exists()
    resumed = FakeContext(p, tmp_path / "resumed", inputs, seed=5, checkpoint_dir=ck)
    summary = stages.train(resumed)
    assert summary["epochs_run"] == 6
    h1 = json.loads((straight.out / "history.json").read_text())
    h2 = json.loads((resumed.out / "history.json").read_text())
    assert h1 == h2  # the same loss curve, float for float
    a = predict(load_model(straight.out), vecs[w[:, :-1]])
    b = predict(load_model(resumed.out), vecs[w[:, :-1]])
    np.testing.assert_array_equal(a, b)
    # and a different seed really trains differently (the comparison above can fail)
    other = FakeContext(p, tmp_path / "other", inputs, seed=6)
    stages.train(other)
    assert json.loads((other.out / "history.json").read_text()) != h1


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_residual_last_starts_from_the_copy_last_predictor(arch):
    from fairtrial.recipes.lvm.models import build_model

    torch.manual_seed(0)
    model = build_model(arch, DIM, K, hidden=16, layers=1, heads=2, residual="last").eval()
    with torch.no_grad():
        model.out.weight.zero_()
        model.out.bias.zero_()
        x = torch.randn(4, K, DIM)
        y = model(x)
    torch.testing.assert_close(y, torch.nn.functional.normalize(x[:, -1], dim=-1))
