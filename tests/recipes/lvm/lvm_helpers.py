"""A small stand-in for the engine's StageContext, and helpers to run lvm stages in a chain."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from fairtrial.recipes.api import StageContext

REPO = Path(__file__).resolve().parents[3]
SHARED_DATA = REPO / ".." / "shared" / "data"


class FakeContext:
    def __init__(self, params, out: Path, inputs=None, seed=None, checkpoint_dir=None,
                 interrupt_after_epochs=None):
        self.params = params
        self.seed = seed
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.inputs = dict(inputs or {})
        self.checkpoint_dir = Path(checkpoint_dir or (self.out.parent / (self.out.name + ".ckpt")))
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.log = logging.getLogger("test.lvm")
        self.device = "cpu"
        self.progress_calls = []
        self.heartbeats = 0
        self.interrupt_after_epochs = interrupt_after_epochs

    def progress(self, done, total=None, unit="it", message=""):
        self.progress_calls.append((done, total, unit))
        if unit == "epochs" and self.interrupt_after_epochs == done:
            raise KeyboardInterrupt("simulated kill")

    def heartbeat(self):
        self.heartbeats += 1


class Chain:
    """Runs stages one after another in tmp folders, wiring ctx.inputs like the engine."""

    def __init__(self, root: Path, params: dict, seed: int = 0):
        self.root, self.params, self.seed = Path(root), params, seed
        self.dirs: dict[str, Path] = {}

    def run(self, name: str, **ctx_kwargs):
        from fairtrial.recipes.lvm import RECIPE

        stage = RECIPE.stage(name)
        out = self.root / name
        ctx = FakeContext(self.params, out, {n: self.dirs[n] for n in stage.needs},
                          seed=self.seed if stage.seeded else None, **ctx_kwargs)
        assert isinstance(ctx, StageContext)
        summary = stage.fn(ctx)
        self.dirs[name] = out
        return summary


def write_corpus(folder: Path, n_topics: int = 6, levels=("Ele", "Adv"), n_sent: int = 9,
                 short_topics: int = 0) -> Path:
    """A tiny OneStopEnglish-shaped corpus: topic files at each level; `short_topics` topics have
    fewer sentences than a window needs."""
    root = folder / "Texts-SeparatedByReadingLevel"
    for lv in levels:
        d = root / f"{lv}-Txt"
        d.mkdir(parents=True, exist_ok=True)
        for t in range(n_topics):
            n = 3 if t < short_topics else n_sent
            sents = [f"Topic {t} level {lv} sentence number {i} says something." for i in range(n)]
            (d / f"Topic{t}-{lv.lower()}.txt").write_text(" ".join(sents) + "\n")
    return folder


def unit_vectors(n, d, seed=0):
    v = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)
