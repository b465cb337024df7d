"""A/A and power simulation of the decision rule: how often each verdict comes out when the truth
is known. Not a test (tests/analysis/test_analysis_analyze.py asserts the two key numbers).

    .venv/bin/python bench/sim_aa.py [--studies 500]

Each simulated study: two arms, items with a shared difficulty (sd 1), per-cell noise (sd 1), a
per-arm-and-seed offset (seed sd), the two-level bootstrap (1,000 resamples, normal item draw) and
the verdict at alpha 0.05. Reference: the nominal rates (alpha/2 one-sided false support at a zero
margin; 95% interval coverage).
"""

from __future__ import annotations

import argparse
import time

from fairtrial.analysis.synthetic import simulate_verdicts

CASES = [
    # (label, effect, min_effect, seeds, items, seed_sd)
    ("A/A, margin 0, 3 seeds, small seed sd", 0.0, 0.0, 3, 500, 0.02),
    ("A/A, margin 0, 3 seeds, large seed sd", 0.0, 0.0, 3, 500, 0.10),
    ("A/A, margin 0, 5 seeds, large seed sd", 0.0, 0.0, 5, 500, 0.10),
    ("A/A, margin 0.1", 0.0, 0.1, 3, 500, 0.05),
    ("effect 2 x margin, 3 seeds x 500 items", 0.2, 0.1, 3, 500, 0.02),
    ("effect 2 x margin, 5 seeds x 1000 items", 0.2, 0.1, 5, 1000, 0.02),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--studies", type=int, default=500)
    n = ap.parse_args().studies
    print(f"{n} simulated studies per row; nominal: false 'supported' <= 2.5% at margin 0, coverage 95%")
    print(f"{'case':44s} {'supported':>9s} {'refuted':>8s} {'inconcl.':>8s} {'coverage':>8s} {'time':>6s}")
    for label, effect, margin, seeds, items, seed_sd in CASES:
        t = time.perf_counter()
        r = simulate_verdicts(n, effect, margin, n_seeds=seeds, n_items=items, seed_sd=seed_sd,
                              rng_seed=1)
        print(f"{label:44s} {r['supported']:9.3f} {r['refuted']:8.3f} {r['inconclusive']:8.3f} "
              f"{r['coverage']:8.3f} {time.perf_counter() - t:5.1f}s")


if __name__ == "__main__":
    main()
