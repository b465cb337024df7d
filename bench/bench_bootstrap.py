"""Benchmark: the two-level paired bootstrap against scipy.stats.bootstrap, measured in the same run.

    .venv/bin/python bench/bench_bootstrap.py [--items 100000] [--seeds 5] [--resamples 10000]

Target (the issue): 10,000 resamples over 100,000 items x 5 seeds, two paired arms, under 2 s.
Reference: scipy.stats.bootstrap (percentile) on the one-level case (the seed-averaged items of
one arm), the closest thing scipy does. scipy at 10,000 resamples x 100,000 items would hold 10^9
draws; it is timed at --ref-resamples (default 500) and scaled linearly, which the printout says.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import stats as sps

from fairtrial.stats.bootstrap import percentile_interval, two_level


def timed(fn, repeat: int = 1):
    best = float("inf")
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--resamples", type=int, default=10_000)
    ap.add_argument("--ref-resamples", type=int, default=500)
    a = ap.parse_args()

    rng = np.random.default_rng(0)
    item = rng.exponential(1.0, a.items)                       # skewed per-item losses
    x = np.stack([item + rng.normal(0, 0.02, (a.seeds, 1)) + rng.normal(0, 0.5, (a.seeds, a.items))
                  for _ in range(2)])
    x[1] -= 0.01
    print(f"data: 2 arms x {a.seeds} seeds x {a.items:,} items; {a.resamples:,} resamples")

    t_auto, d = timed(lambda: two_level(x, a.resamples, seed=1), repeat=3)
    print(f"fairtrial two_level, auto ({d.method} item draw), two-level paired: {t_auto:.3f} s "
          f"(target < 2 s: {'met' if t_auto < 2 else 'MISSED'})")

    r = a.ref_resamples
    t_exact, e = timed(lambda: two_level(x, r, seed=2, method="exact"))
    print(f"fairtrial two_level, exact item draw, {r:,} resamples: {t_exact:.3f} s "
          f"(= {t_exact * a.resamples / r:.1f} s scaled to {a.resamples:,})")
    diff_auto = d.means[:, 1] - d.means[:, 0]
    diff_exact = e.means[:, 1] - e.means[:, 0]
    print(f"  95% interval of the difference: auto {np.round(percentile_interval(diff_auto, .95), 5)}"
          f", exact {np.round(percentile_interval(diff_exact, .95), 5)}")

    v = x[0].mean(axis=0)                                      # one level: seed-averaged items
    t_ref, ref = timed(lambda: sps.bootstrap((v,), np.mean, n_resamples=r, method="percentile",
                                             vectorized=True, batch=50, random_state=3))
    t_ref_full = t_ref * a.resamples / r
    t_one, ours = timed(lambda: two_level(v[None, None, :], a.resamples, seed=4))
    print(f"scipy.stats.bootstrap, one level, {r:,} resamples: {t_ref:.3f} s "
          f"(= {t_ref_full:.1f} s scaled to {a.resamples:,}); "
          f"interval {np.round(ref.confidence_interval, 5)}")
    print(f"fairtrial two_level, one level, {a.resamples:,} resamples: {t_one:.3f} s; interval "
          f"{np.round(percentile_interval(ours.means[:, 0], .95), 5)}")
    print(f"ratio scipy one-level / fairtrial one-level (same resamples): {t_ref_full / t_one:.0f}x")
    print(f"ratio scipy one-level / fairtrial two-level paired: {t_ref_full / t_auto:.0f}x")
    print(f"ratio fairtrial exact / auto item draw: {t_exact * a.resamples / r / t_auto:.0f}x")


if __name__ == "__main__":
    main()
