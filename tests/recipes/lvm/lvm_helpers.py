"""Data for the lvm tests (a tiny OneStopEnglish-shaped corpus, unit vectors). Stages run through
the recipe harness, fairtrial.recipes.testing (FakeContext, StageRunner)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]
SHARED_DATA = REPO / ".." / "shared" / "data"


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
