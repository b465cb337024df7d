"""Loss-curve scenarios shared by the fixture writer and the equality test.

The same tiny ilm and lvm trainings, with fixed seeds, are run by `write_fixtures()` (once, on the
code before the move to fairtrial.ml; see fixtures/loss_curves.json for the command and commit)
and by tests/ml/test_loss_curves.py (on the code of today): equal curves mean the move changed
structure, not results.

    .venv/bin/python tests/ml/_curves.py    # rewrites fixtures/loss_curves.json (do not, unless
                                             # a result is meant to change)
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
FIXTURE = HERE / "fixtures" / "loss_curves.json"
sys.path.insert(0, str(TESTS / "recipes" / "ilm"))  # _model_fixtures
sys.path.insert(0, str(TESTS / "recipes" / "lvm"))  # lvm_helpers

ILM_SCENARIOS = {
    # bucketed batching, dropout on (the RNG stream matters), warm-up + cosine, 2 micro-batches
    "bucketed_dropout": dict(params=dict(steps=12, micro_batch=8, grad_accum=2, lr=3e-3,
                                         eval_every=4, checkpoint_every=6, warmup_frac=0.2,
                                         eval_examples=16),
                             dropout=0.1, seed=7),
    # padded batching, unequal loss weights per token kind, linear schedule, select last
    "padded_weighted_linear": dict(params=dict(steps=8, micro_batch=16, grad_accum=1, lr=3e-3,
                                               batching="padded", pad_to=64, context_weight=0.5,
                                               infill_weight=2.0, schedule="linear",
                                               warmup_frac=0.25, eval_every=4, select="last",
                                               eval_examples=16),
                                   dropout=0.0, seed=1),
    # the GPU's mixed-precision path on the CPU: fp16 autocast and loss scaling
    "fp16_amp_on_cpu": dict(params=dict(steps=6, micro_batch=8, grad_accum=2, lr=3e-3,
                                        precision="fp16", eval_every=3, eval_examples=16,
                                        warmup_frac=0.2),
                            dropout=0.0, seed=3, amp_on_cpu=True),
}

LVM_K, LVM_DIM = 3, 16
LVM_SCENARIOS = {
    "transformer_dropout": dict(arch="transformer", seed=5, n_windows=24,
                                model=dict(hidden=32, layers=2, heads=2, dropout=0.2),
                                train=dict(epochs=6, batch_size=4, lr=3e-3, warmup_frac=0.2,
                                           patience=1000,
                                           loss=dict(cosine=1.0, infonce=0.0, mse=1.0))),
    "gru_accum_infonce": dict(arch="gru", seed=2, n_windows=24,
                              model=dict(hidden=32, layers=1, heads=2, dropout=0.1),
                              train=dict(epochs=5, batch_size=4, grad_accum=2, lr=3e-3,
                                         warmup_frac=0.25, patience=2,
                                         loss=dict(cosine=1.0, infonce=0.5, mse=0.0))),
}


def run_ilm(name: str, root: Path, world=None) -> dict:
    import torch
    from _model_fixtures import build_world, tiny_model

    from fairtrial.recipes.ilm.tokenizer import special_ids
    from fairtrial.recipes.ilm.train import TrainParams, train

    torch.set_num_threads(1)
    world = world or build_world(Path(tempfile.mkdtemp(dir=root)))
    s = ILM_SCENARIOS[name]
    model = tiny_model(world.tok, dropout=s["dropout"])
    r = train(model, world.train, world.valid, TrainParams(**s["params"]),
              ids=special_ids(world.tok), seed=s["seed"], checkpoint_dir=root / f"ilm_{name}",
              amp_on_cpu=s.get("amp_on_cpu", False))
    return {"loss": [h["loss"] for h in r["history"]], "lr": [h["lr"] for h in r["history"]],
            "valid_loss": [e["valid_loss"] for e in r["evals"]],
            "valid_infill_loss": [e["valid_infill_loss"] for e in r["evals"]],
            "selected_step": r["selected_step"], "precision": r["precision"],
            "data_digest": data_digest(world.train)}


def data_digest(examples) -> str:
    h = hashlib.sha256()
    for e in examples:
        h.update(np.asarray(e, np.int64).tobytes() + b"|")
    return h.hexdigest()[:16]


def lvm_artifacts(root: Path, n_windows: int):
    from lvm_helpers import unit_vectors

    emb, win = root / "embed", root / "windows"
    emb.mkdir(parents=True)
    win.mkdir(parents=True)
    vecs = unit_vectors(n_windows * (LVM_K + 1), LVM_DIM, seed=1)
    np.save(emb / "embeddings.npy", vecs.astype(np.float16))
    w = np.arange(n_windows * (LVM_K + 1)).reshape(n_windows, LVM_K + 1)
    np.save(win / "train.npy", w)
    np.save(win / "valid.npy", w[::2])
    return {"embed": emb, "windows": win}


def lvm_params(name: str) -> dict:
    s = LVM_SCENARIOS[name]
    return {"arch": s["arch"], "window": {"k": LVM_K}, "model": s["model"], "train": s["train"]}


def lvm_steps(name: str, epochs_run: int) -> int:
    """Optimizer steps of an lvm scenario after `epochs_run` epochs (recipes/lvm/training.py:
    ceil(windows / (batch_size x grad_accum)) per epoch), for its tolerance."""
    s = LVM_SCENARIOS[name]
    per_epoch = math.ceil(s["n_windows"] / (s["train"]["batch_size"]
                                            * s["train"].get("grad_accum", 1)))
    return per_epoch * epochs_run


def run_lvm(name: str, root: Path, **ctx_kwargs) -> dict:
    import torch
    from fairtrial.recipes.lvm import stages
    from fairtrial.recipes.lvm import RECIPE
    from fairtrial.recipes.testing import FakeContext, stage_params

    torch.set_num_threads(1)
    s = LVM_SCENARIOS[name]
    inputs = lvm_artifacts(root / "in", s["n_windows"])
    ctx = FakeContext(stage_params(RECIPE, "train", lvm_params(name)), root / "train", inputs,
                      seed=s["seed"], **ctx_kwargs)
    summary = stages.train(ctx)
    hist = json.loads((ctx.out / "history.json").read_text())
    return {"history": hist, "best_epoch": summary["best_epoch"],
            "stopped_early": summary["stopped_early"]}


def write_fixtures() -> None:
    import torch
    from _model_fixtures import build_world

    rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                         cwd=TESTS.parent).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        world = build_world(root / "world")
        out = {"note": ("loss curves of the pre-fairtrial.ml code (recipes/ilm/train.py and "
                        "recipes/lvm/training.py as committed at `commit`, unmodified in the "
                        "working tree), written by `.venv/bin/python tests/ml/_curves.py`"),
               "commit": rev, "torch": torch.__version__,
               "ilm": {n: run_ilm(n, root, world) for n in ILM_SCENARIOS},
               "lvm": {n: run_lvm(n, root / f"lvm_{n}") for n in LVM_SCENARIOS}}
    FIXTURE.parent.mkdir(exist_ok=True)
    FIXTURE.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    sys.path.insert(0, str(TESTS.parent / "src"))
    write_fixtures()
    print(f"wrote {FIXTURE}")
