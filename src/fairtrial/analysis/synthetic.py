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


def simulate_verdicts(n_studies: int, effect: float, min_effect: float, n_seeds: int = 3,
                      n_items: int = 500, item_sd: float = 1.0, seed_sd: float = 0.05,
                      noise_sd: float = 1.0, alpha: float = 0.05, n_resamples: int = 1_000,
                      method: str = "normal", rng_seed: int = 0, test: str = "superiority",
                      margin: float | None = None) -> dict[str, float]:
    """Share of verdicts over `n_studies` simulated two-arm studies (absolute effect scale,
    higher is better) with a true improvement `effect`, under `test` (with `margin` for the
    non-inferiority and equivalence tests). Each study draws fresh items, seed offsets and noise
    and goes through the same estimate/decide code as `analyze`."""
    from fairtrial.analysis.compare import Comparison, estimate, finish

    rng = np.random.default_rng(rng_seed)
    counts = {"supported": 0, "refuted": 0, "inconclusive": 0}
    covered = 0
    for k in range(n_studies):
        item = rng.normal(0, item_sd, n_items)
        x = np.empty((2, n_seeds, n_items))
        for arm, shift in ((0, 0.0), (1, effect)):
            x[arm] = (item + shift + rng.normal(0, seed_sd, (n_seeds, 1))
                      + rng.normal(0, noise_sd, (n_seeds, n_items)))
        c = Comparison(arm="arm", reference="control", metric="score", eval_set="test",
                       direction="higher", effect="absolute", min_effect=min_effect,
                       test=test, margin=margin)
        d = estimate(c, x, n_resamples=n_resamples, seed=k, method=method, signflip=False)
        finish(c, d, 1 - alpha)
        counts[c.verdict] += 1
        covered += c.diff_ci[0] <= effect <= c.diff_ci[1]
    out = {v: n / n_studies for v, n in counts.items()}
    out["coverage"] = covered / n_studies
    return out
