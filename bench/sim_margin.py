"""Non-inferiority and equivalence: the false "supported" rate when the true effect sits exactly
on the margin, the worst case each test must hold at alpha (issue 24). Not a test.

    .venv/bin/python bench/sim_margin.py [--studies 2000]

Each simulated study is the one of bench/sim_aa.py (fairtrial.analysis.synthetic.simulate_verdicts):
two arms, items with a shared difficulty (sd 1), per-cell noise (sd 1), a per-arm-and-seed offset
(seed sd), the two-level bootstrap (1,000 resamples, normal item draw) and the verdict at alpha
0.05 through the same estimate/finish code as `fairtrial report`. The true improvement is set to
the boundary of the test's null hypothesis: -margin for non-inferiority, +margin and -margin for
equivalence (and min_effect for superiority, as a reference row). A "supported" verdict there is
false. Reference: alpha, the most the rate may be; the nominal rate of each interval beside it
(alpha/2 for the two-sided 1 - alpha interval, alpha for TOST's 1 - 2 alpha interval). The MC
error is the binomial standard error sqrt(r (1 - r) / n) of the measured rate. Coverage: the
share of the intervals the verdict read (at `level`) that contain the true effect.
"""

from __future__ import annotations

import argparse
import math
import time

from fairtrial.analysis.synthetic import simulate_verdicts

ALPHA = 0.05
CASES = [
    # (label, test, true effect, margin or min_effect, seeds, items, seed_sd, nominal rate)
    ("superiority at min_effect 0.1 (reference)", "superiority", 0.1, 0.1, 3, 500, 0.05, ALPHA / 2),
    ("non-inferiority, true -0.1, 3 x 500", "non_inferiority", -0.1, 0.1, 3, 500, 0.05, ALPHA / 2),
    ("non-inferiority, true -0.1, 5 x 1000", "non_inferiority", -0.1, 0.1, 5, 1000, 0.02, ALPHA / 2),
    ("non-inferiority, true -0.1, 1 x 500", "non_inferiority", -0.1, 0.1, 1, 500, 0.0, ALPHA / 2),
    ("equivalence, true +0.2, 3 x 500", "equivalence", 0.2, 0.2, 3, 500, 0.05, ALPHA),
    ("equivalence, true -0.2, 3 x 500", "equivalence", -0.2, 0.2, 3, 500, 0.05, ALPHA),
    ("equivalence, true +0.1, 5 x 1000", "equivalence", 0.1, 0.1, 5, 1000, 0.02, ALPHA),
    ("equivalence, true +0.2, 1 x 500", "equivalence", 0.2, 0.2, 1, 500, 0.0, ALPHA),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--studies", type=int, default=2000)
    n = ap.parse_args().studies
    print(f"{n} simulated studies per row, alpha {ALPHA}: a false 'supported' rate must be at most "
          "alpha (within MC error)")
    print(f"{'case':44s} {'false supported':>16s} {'MC error':>9s} {'nominal':>8s} {'alpha':>6s} "
          f"{'level':>6s} {'coverage':>8s} {'time':>6s}")
    for row, (label, test, effect, m, seeds, items, seed_sd, nominal) in enumerate(CASES):
        t = time.perf_counter()
        sup = test == "superiority"
        r = simulate_verdicts(n, effect, m if sup else 0.0, n_seeds=seeds, n_items=items,
                              seed_sd=seed_sd, alpha=ALPHA, rng_seed=24 + row, test=test,
                              margin=None if sup else m)
        rate = r["supported"]
        se = math.sqrt(rate * (1 - rate) / n)
        level = 1 - 2 * ALPHA if test == "equivalence" else 1 - ALPHA
        print(f"{label:44s} {rate:16.4f} {se:9.4f} {nominal:8.3f} {ALPHA:6.3f} {level:6.2f} "
              f"{r['coverage']:8.3f} {time.perf_counter() - t:5.1f}s")


if __name__ == "__main__":
    main()
