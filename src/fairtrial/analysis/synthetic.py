"""Synthetic item scores with known effects: for tests, the A/A simulation and demos.

value[arm, seed, item, eval_set] = mean + item difficulty + arm shift (on the arm's eval sets)
                                   + seed offset (per arm and seed) + cell noise
Item difficulty is shared by every arm and seed (the same test document is hard for everyone);
the seed offset is what makes seeds matter.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from fairtrial.scores import eval_set_digest


def make_scores(shifts: Mapping[str, float | Mapping[str, float]], seeds: Sequence[int] = (0, 1, 2),
                n_items: int = 200, eval_sets: Sequence[str] = ("test",), metric: str = "score",
                mean: float = 10.0, item_sd: float = 2.0, seed_sd: float = 0.1,
                noise_sd: float = 1.0, baselines: Mapping[str, float] | None = None,
                rng_seed: int = 0) -> pd.DataFrame:
    """Item scores for every arm in `shifts` (arm -> shift, or arm -> {eval_set: shift}).

    `baselines` adds, to every arm, a trivial baseline system (name -> its mean shift) scored
    like a model with no seed offset.
    """
    rng = np.random.default_rng(rng_seed)
    frames = []
    difficulty = {e: rng.normal(0, item_sd, n_items) for e in eval_sets}
    ids = [f"i{j:05d}" for j in range(n_items)]
    digests = {e: eval_set_digest([f"{e}/{i}" for i in ids]) for e in eval_sets}
    systems = {"model": None, **{b: s for b, s in (baselines or {}).items()}}
    for arm, shift in shifts.items():
        for system, bshift in systems.items():
            for s in seeds:
                offset = rng.normal(0, seed_sd) if system == "model" else 0.0
                for e in eval_sets:
                    sh = shift.get(e, 0.0) if isinstance(shift, Mapping) else shift
                    if system != "model":
                        sh = bshift
                    v = mean + difficulty[e] + sh + offset + rng.normal(0, noise_sd, n_items)
                    frames.append(pd.DataFrame({
                        "item_id": ids, "eval_set": e, "eval_set_digest": digests[e],
                        "metric": metric, "value": v, "system": system, "arm": arm, "replicate": s}))
    return pd.concat(frames, ignore_index=True)
