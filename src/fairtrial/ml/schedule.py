"""Learning-rate schedules: linear warm-up, then cosine or linear decay to a floor, or constant.

One hand-written function, not transformers' schedulers, because those give other numbers:
`get_cosine_schedule_with_warmup` (and its `min_lr_rate` variant), `get_linear_schedule_with_warmup`
and `get_constant_schedule_with_warmup` warm up as step / warmup, so the first step trains at a
learning rate of 0, where ours warm up as (step + 1) / warmup; and the linear one decays to 0, with
no floor. The recipes' results were made with these numbers, so the function stays (transformers'
cosine with warmup = 0 and min_lr_rate = floor is the same curve, which the tests check).

Each recipe keeps its own floor and warm-up rounding: ilm decays to `min_lr_frac` (default 0.1)
after int(warmup_frac * total) warm-up steps; lvm decays to 0.1 after at least one warm-up step.
"""

from __future__ import annotations

import math
from typing import Literal

Kind = Literal["cosine", "linear", "constant"]


def lr_factor(step: int, total: int, warmup: int, kind: Kind = "cosine",
              floor: float = 0.0) -> float:
    """Multiplier of the peak learning rate at optimizer step `step` (0-based) of `total`:
    (step + 1) / warmup during the `warmup` warm-up steps, then `kind` from 1 down to `floor`
    (reached at step `total`)."""
    if step < warmup:
        return (step + 1) / warmup
    if kind == "constant":
        return 1.0
    frac = min(1.0, (step - warmup) / max(1, total - warmup))
    if kind == "linear":
        return floor + (1 - floor) * (1 - frac)
    if kind == "cosine":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * frac))
    raise ValueError(f"unknown schedule {kind!r}; expected cosine, linear or constant")


def lambda_lr(optimizer, total: int, warmup: int, kind: Kind = "cosine", floor: float = 0.0):
    """A torch LambdaLR following `lr_factor`; its state_dict holds the step, so it resumes."""
    import torch

    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total, warmup, kind, floor))
