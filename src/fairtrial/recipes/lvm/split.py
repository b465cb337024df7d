"""Seeded document splits and nested training subsets.

The original study split windows, so overlapping windows of one document sat on both sides. Here
the unit of splitting is a group of documents (a document, or all documents sharing a key such as
OneStopEnglish's topic), and the training-size arms take a prefix of one fixed permutation of the
training groups, so the smaller training set is contained in the larger one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def assign_splits(groups: Sequence[str], seed: int, val: float, test: float) -> dict[str, str]:
    """group -> "train" | "val" | "test". Deterministic from the seed and the set of groups
    (the input order does not matter: groups are sorted before the seeded shuffle)."""
    uniq = sorted(set(groups))
    n = len(uniq)
    if n < 3 and val > 0 or n < 2:
        raise ValueError(f"only {n} document group(s); a train/val/test split needs at least "
                         f"{3 if val > 0 else 2}")
    order = np.random.default_rng(seed).permutation(n)
    # at least one group in every requested split, the rest to train
    n_test = max(1, round(test * n))
    n_val = max(1, round(val * n)) if val > 0 else 0
    if n_test + n_val >= n:
        raise ValueError(f"{n} groups cannot give {n_test} test + {n_val} val groups and still "
                         "leave training groups; lower split.val / split.test or add documents")
    out = {}
    for rank, i in enumerate(order):
        g = uniq[i]
        out[g] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return out


def train_order(train_groups: Sequence[str], seed: int) -> list[str]:
    """The fixed permutation of the training groups that every train_fraction takes a prefix of.
    Seeded from the split seed (offset so it is not the split permutation itself)."""
    uniq = sorted(set(train_groups))
    order = np.random.default_rng([seed, 1]).permutation(len(uniq))
    return [uniq[i] for i in order]


def nested_subset(ordered_groups: Sequence[str], fraction: float) -> list[str]:
    """The first ceil(fraction * n) groups: nested in fraction by construction."""
    if not 0 < fraction <= 1:
        raise ValueError(f"train_fraction must be in (0, 1], got {fraction}")
    n = max(1, math.ceil(fraction * len(ordered_groups) - 1e-9))
    return list(ordered_groups[:n])
