"""Which examples form each optimizer step, and how a step is split into micro-batches.

- Bucketed (default): examples are shuffled, sorted by length inside pools of `pool` optimizer
  steps, and each micro-batch is padded only to its own longest example, so almost every token
  computed is a real one. Bucketing rather than packing: examples never share an attention window,
  so no block-diagonal mask is needed and the loss is that of unpacked training.
- Padded: every example is padded (or cut) to one width (the reference layout).
- Data order is a pure function of (seed, epoch, step), independent of the micro-batch size, so a
  resumed run recomputes its position from the step counter, and an out-of-memory back-off that
  halves the micro-batch trains on the same steps.
"""

from __future__ import annotations

import numpy as np


def step_plan(lengths: np.ndarray, batch: int, seed: int, epoch: int, batching: str,
              pool: int) -> list[np.ndarray]:
    """The example indices of every optimizer step of one epoch (the last partial batch is left
    out). Bucketed: shuffled, sorted by length within pools of `pool` steps, steps shuffled."""
    rng = np.random.default_rng([seed, epoch])
    n_steps = len(lengths) // batch
    perm = rng.permutation(len(lengths))[:n_steps * batch]
    if batching == "padded":
        return [perm[i * batch:(i + 1) * batch] for i in range(n_steps)]
    steps = []
    for start in range(0, len(perm), pool * batch):
        chunk = perm[start:start + pool * batch]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        steps += [chunk[i:i + batch] for i in range(0, len(chunk), batch)]
    order = rng.permutation(len(steps))
    return [steps[i] for i in order]


def micro_batches(step: np.ndarray, lengths: np.ndarray, micro: int,
                  batching: str) -> list[np.ndarray]:
    """The micro-batches of one step (sorted by length when bucketed)."""
    if batching == "bucketed":
        step = step[np.argsort(lengths[step], kind="stable")]
    return [step[i:i + micro] for i in range(0, len(step), micro)]


def lengths_of(data) -> np.ndarray:
    """Token lengths of a dataset: its `.lengths()` when it has one (token shards), else len()."""
    if hasattr(data, "lengths"):
        return np.asarray(data.lengths(), dtype=np.int64)
    return np.asarray([len(data[i]) for i in range(len(data))], dtype=np.int64)
